/* TLS on both sides: the SSL_CTX built from the client_tls_* settings
 * (pgmux as a TLS server) and the one built from server_tls_* (pgmux as a
 * TLS client of PostgreSQL), each swappable at run time; the upgrade of an
 * accepted connection after an SSLRequest answered 'S' (or at once, for
 * direct TLS), and of a server connection after PostgreSQL answered 'S'.
 *
 * The handshake runs on a libevent OpenSSL bufferevent of its own over the
 * connection's socket (tls_handshake_bev); once it is done that goes
 * (tls_handshake_done) and the SSL carries the data path in net/transport,
 * under the connection's plain bufferevent: no OpenSSL bufferevent, with
 * its write event re-armed around every message, is left on the hot path.
 * No TLS below 1.2, no renegotiation, no compression. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct bufferevent;
struct config;
struct event_base;
typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;


/* The accepting context for CFG's client_tls_* settings, refcount 1, or
 * NULL with ERR set (naming the setting) if they cannot be used. NULL with
 * ERR empty if client_tls_sslmode is disable. */
SSL_CTX *tls_accept_ctx_new(const struct config *cfg, char *err, size_t errlen);

/* The context for server connections, from server_tls_*: refcount 1, or
 * NULL with ERR set if the settings cannot be used, or NULL with ERR empty
 * if server_tls_sslmode is disable or allow (no SSLRequest is sent). */
SSL_CTX *tls_connect_ctx_new(const struct config *cfg, char *err, size_t errlen);
/* Install it (as tls_accept_ctx_install); VERIFY_NAME: verify-full, check
 * the host name or IP against the server's certificate. */
void tls_connect_ctx_install(SSL_CTX *ctx, bool verify_name);
bool tls_connecting(void);
/* A client-side SSL for a connection to HOST (SNI unless HOST is an
 * address; the name check under verify-full). NULL on failure. */
SSL *tls_connect_ssl(const char *host);
/* A server-side SSL from the installed accepting context. NULL on failure. */
SSL *tls_accept_ssl(void);
/* A bufferevent on BASE that runs SSL's handshake over FD (as the TLS
 * server if ACCEPTING, else as the client) and reports BEV_EVENT_CONNECTED,
 * or _ERROR / _EOF, to its event callback; keep its EV_READ off. Freeing it
 * closes neither FD nor SSL. NULL on failure. */
struct bufferevent *tls_handshake_bev(struct event_base *base, int fd, SSL *ssl, bool accepting);
/* After BEV_EVENT_CONNECTED: free HS, moving anything it decrypted into
 * DST's input (the connection's plain bufferevent, whose rbuf and wbuf go
 * on over the SSL). Returns 0 / -1 (out of memory; HS is freed anyway). */
int tls_handshake_done(struct bufferevent *hs, struct bufferevent *dst);

/* Session tickets are sealed with keys that rotate every this many seconds
 * (a ticket resumes for one to two periods); also the session lifetime. */
#define TLS_TICKET_KEY_SECONDS 3600
/* Make a new current ticket key now (the current one becomes the previous
 * one: tickets sealed with it still resume, once). Returns 0 / -1. */
int tls_rotate_ticket_keys(void);

/* The context new client connections use: install (takes CTX's reference;
 * the previous one is released once no connection uses it), and whether
 * one is installed. Any thread. */
void tls_accept_ctx_install(SSL_CTX *ctx);
bool tls_accepting(void);
/* Release the installed context (at exit). */
void tls_shutdown(void);

/* The first byte of a TLS record carrying a handshake (a ClientHello sent
 * at once: direct TLS). No startup packet starts with it: its length word
 * would exceed the 10,000-byte limit. */
#define TLS_HANDSHAKE_BYTE 0x16

/* Write the single byte REPLY ('S') on FD now. 0, or -1 if it could not be
 * written at once (a fresh socket always takes one byte). */
int tls_send_reply(int fd, char reply);
/* Whether ALPN "postgresql" was negotiated on SSL (required of a direct TLS
 * connection, PostgreSQL 17's sslnegotiation=direct; a client offering
 * other protocols only is refused in the handshake). */
bool tls_alpn_postgresql(SSL *ssl);
/* The CommonName of the certificate the client on SSL presented, if it
 * presented one and it verified: 0 with the name in BUF, or -1 (no TLS,
 * no certificate, not verified, no CN, a CN with a NUL byte or longer
 * than LEN - 1). */
int tls_peer_cn(SSL *ssl, char *buf, size_t len);
/* The first OpenSSL error queued on the handshake bufferevent BEV ("" if
 * none), for logs. */
const char *tls_error(struct bufferevent *bev, char *buf, size_t len);
/* tls-server-end-point channel binding data for SSL (RFC 5929): the hash
 * of the certificate pgmux presented, with the certificate's signature
 * digest (SHA-256 for MD5 and SHA-1). Returns its length (at most LEN), or
 * 0 if SSL is NULL or the certificate's signature has no single digest
 * (Ed25519, RSA-PSS): SCRAM-SHA-256-PLUS is then not offered. */
size_t tls_server_end_point(SSL *ssl, unsigned char *out, size_t len);
/* The same for the certificate the peer presented (a PostgreSQL server,
 * for SCRAM-SHA-256-PLUS towards it). */
size_t tls_peer_end_point(SSL *ssl, unsigned char *out, size_t len);
/* The negotiated protocol and cipher of SSL ("none" if NULL), for logs. */
const char *tls_describe(SSL *ssl, char *buf, size_t len);
