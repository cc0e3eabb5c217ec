/* Internal to the server connection's files (server.c, server_login.c) and
 * to pool/link.c, which links servers to clients: the server functions they
 * share. Other modules use pool/server.h. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "pool/conn.h"

struct bufferevent;
struct pool;
struct worker;

/* Run W's deferred work (release, reap) at the end of this loop turn. */
void schedule_deferred(struct worker *w);
struct server *server_new(struct pool *p, struct worker *w);
/* Close the socket and free; no pool accounting. */
void server_free(struct server *s);
/* Done with its client: back to the pool at the end of this loop turn. */
void queue_release(struct server *s);
/* Run pgmux's own SQL on S (SV_INTERNAL); AFTER says what follows its
 * ReadyForQuery. Returns 0 / -1 (out of memory). */
int server_start_internal(struct server *s, const char *sql, enum server_after after);

/* bufferevent callbacks of a server connection */
void server_read_cb(struct bufferevent *bev, void *arg);
void server_write_cb(struct bufferevent *bev, void *arg);
void server_event_cb(struct bufferevent *bev, short what, void *arg);

/* Login half (server_login.c). */
void login_fail(struct server *s, const char *sqlstate, const char *msg);
/* A whole message during login. Returns -1 if the server was closed. */
int handle_login_msg(struct server *s, char type, const uint8_t *body, size_t len);
/* TCP connected: send the startup packet. */
void on_connected(struct server *s);
/* TLS towards the server (server_login.c): the answer to the SSLRequest
 * arrived; the handshake finished. */
void on_tls_answer(struct server *s);
void on_tls_connected(struct server *s);
/* server_tls_sslmode = prefer and TLS did not work out (the handshake
 * failed, or the answer was neither S nor N): connect again in plaintext,
 * once, as libpq does. Returns false (nothing done) in other modes or on
 * the second try; true if it took the server over (even if that failed
 * and the login was failed). */
bool server_tls_fallback(struct server *s, const char *why);
