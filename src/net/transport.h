/* The bytes of a connection once it carries the protocol: the only code
 * that reads from or writes to a client's or a server's socket, plain or
 * TLS, behind one interface. Plain: one recv(2) per read and one writev(2)
 * per flush. TLS: SSL_read and SSL_write on the same socket, so a TLS
 * connection costs the system calls a plain one does (two per message,
 * no epoll_ctl), and nothing else (net/rbuf, net/wbuf, pool/) knows
 * which it is.
 *
 * The handshake itself runs in net/tls; transport_tls_start hands the
 * session over once it is done. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct evbuffer;
typedef struct ssl_st SSL;

/* Largest plaintext of one TLS record (RFC 8446 5.1). */
#define TRANSPORT_TLS_RECORD 16384

/* Read into BUF (up to LEN bytes) what FD has now, through SSL when SSL is
 * set (then it keeps reading while OpenSSL holds bytes it already took from
 * the socket). Returns the bytes read, 0 at the end of the stream (a TLS
 * peer that closes without close_notify has still said all it said), or -1
 * with errno: EAGAIN (nothing yet), or the error (EPROTO for a TLS one). */
ssize_t transport_read(int fd, SSL *ssl, char *buf, size_t len);
/* Whether SSL holds bytes received but not yet returned by transport_read:
 * FD will not become readable for them. */
bool transport_pending(SSL *ssl);
/* Write from the front of OUT and drain what went: one writev (plain), or
 * SSL_write a record at a time. *RETRY carries OpenSSL's rule that a write
 * which would have blocked is repeated with at least as many bytes (start
 * it at 0, keep it with the connection). Returns the bytes written (0 if OUT
 * is empty), or -1 with errno: EAGAIN when nothing could be written now,
 * else the error (EPROTO for a TLS one). */
int transport_write(struct evbuffer *out, int fd, SSL *ssl, size_t *retry);
/* What the last TLS error on this thread was, for logs ("" if none yet). */
const char *transport_last_error(void);
/* Ready SSL, whose handshake is done, for transport_read and
 * transport_write: partial writes, moving write buffers, read-ahead (one
 * recv takes as many records as have arrived), an EOF without close_notify
 * read as an end of stream. */
void transport_tls_start(SSL *ssl);
/* Say close_notify (unless the connection broke or the peer already
 * closed; never blocks) and free SSL. NULL is fine. */
void transport_tls_close(SSL *ssl);
