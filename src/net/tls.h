/* TLS on both sides: the SSL_CTX built from the client_tls_* settings
 * (pgmux as a TLS server) and the one built from server_tls_* (pgmux as a
 * TLS client of PostgreSQL), each swappable at run time; the upgrade of an
 * accepted connection after an SSLRequest answered 'S' (or at once, for
 * direct TLS), and of a server connection after PostgreSQL answered 'S'.
 *
 * A TLS connection is a libevent OpenSSL bufferevent over the same socket:
 * its input and output evbuffers hold plaintext, so everything above the
 * transport (net/rbuf, net/wbuf) reads and writes them as it does a plain
 * socket's. No TLS below 1.2, no renegotiation, no compression. */
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
/* A bufferevent on BASE running SSL over FD: the handshake towards the
 * server, or (ESTABLISHED) one already done, when a connection moves to
 * another worker. Freeing it closes neither FD nor SSL. */
struct bufferevent *tls_connect_bev(struct event_base *base, int fd, SSL *ssl, bool established);

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
/* A bufferevent on BASE that runs the server side of a TLS handshake on FD
 * with the installed context, and then carries plaintext. Freeing it
 * closes FD and frees its SSL. NULL on failure (FD left open). */
struct bufferevent *tls_accept_bev(struct event_base *base, int fd);
/* Whether ALPN "postgresql" was negotiated on BEV (required of a direct TLS
 * connection, PostgreSQL 17's sslnegotiation=direct; a client offering
 * other protocols only is refused in the handshake). */
bool tls_alpn_postgresql(struct bufferevent *bev);
/* The CommonName of the certificate the client on BEV presented, if it
 * presented one and it verified: 0 with the name in BUF, or -1 (no TLS,
 * no certificate, not verified, no CN, a CN with a NUL byte or longer
 * than LEN - 1). */
int tls_peer_cn(struct bufferevent *bev, char *buf, size_t len);
/* Whether BEV is a TLS bufferevent. */
bool tls_is_tls(struct bufferevent *bev);
/* The first OpenSSL error queued on BEV ("" if none), for logs. */
const char *tls_error(struct bufferevent *bev, char *buf, size_t len);
/* tls-server-end-point channel binding data for BEV (RFC 5929): the hash
 * of the certificate pgmux presented, with the certificate's signature
 * digest (SHA-256 for MD5 and SHA-1). Returns its length (at most LEN), or
 * 0 if BEV is not TLS or the certificate's signature has no single digest
 * (Ed25519, RSA-PSS): SCRAM-SHA-256-PLUS is then not offered. */
size_t tls_server_end_point(struct bufferevent *bev, unsigned char *out, size_t len);
/* The same for the certificate the peer presented (a PostgreSQL server,
 * for SCRAM-SHA-256-PLUS towards it). */
size_t tls_peer_end_point(struct bufferevent *bev, unsigned char *out, size_t len);
/* The negotiated protocol and cipher of BEV, for logs. */
const char *tls_describe(struct bufferevent *bev, char *buf, size_t len);
