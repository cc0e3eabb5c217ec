/* Client connections: startup, authentication, the client half of the data
 * path (forwarding to the linked server), waiting for a server, timeouts,
 * and the one finalize function client_close(). */
#pragma once

#include <stdbool.h>

struct client;
struct server;
struct worker;

/* Listener callback: a new client socket on W. */
/* The value of reported parameter NAME this client last saw, or NULL; and
 * record that it saw VALUE (returns 0 / -1). What every client of a pool
 * sees alike (the pool's welcome set) is kept once, by the pool. */
const char *client_view_get(const struct client *c, const char *name);
int client_view_set(struct client *c, const char *name, const char *value)
	__attribute__((warn_unused_result));
enum client_state;
/* The only writer of a client's state: moves C to ST and keeps its pool's
 * per-state counts (pool_counts). */
void client_set_state(struct client *c, enum client_state st);
void client_accept(struct worker *w, int fd, const char *addr);

/* Finalize C: send a FATAL ErrorResponse with SQLSTATE (if not NULL), log
 * event=client_close with REASON, release or close its server, and free it
 * on a later loop turn. Safe to call more than once. */
void client_close(struct client *c, const char *sqlstate, const char *reason, const char *fmt,
		  ...) __attribute__((format(printf, 4, 5)));

/* C's server was lost before answering; C's input holds again what it had
 * sent: take another server (relink.c). */
void client_relink(struct client *c);

/* S (fresh from login or taken from the pool) is C's now. */
void client_use_server(struct client *c, struct server *s);

/* The link is ready (parameters in sync): forward what C has sent. */
void client_forward(struct client *c);

/* The first server of a login told us the server's parameters: finish C's
 * login (AuthenticationOk ... ReadyForQuery). */
void client_finish_login(struct client *c);

/* Resume reading from C after back-pressure from its server eased. */
void client_resume(struct client *c);

/* Worker hooks: the inbox wake, the 100 ms tick, and shutdown. */
void client_on_wake(struct worker *w);
void client_on_tick(struct worker *w);
/* Every 100 ms tick: query_timeout. */
void client_on_fast_tick(struct worker *w);
/* Stop accepting-side work on W: close idle clients with 57P01, mark the
 * others to close at the end of their transaction. Worker thread. */
void client_shutdown_worker(struct worker *w);
/* W's deferred work: free the clients finalized on W. */
void client_reap_all(struct worker *w);
/* Number of clients across all workers. */
int client_count(void);

/* A cancel for C arrived while C waits for a server: answer its pending
 * query with 57014 locally. C's worker thread. */
void client_cancel_local(struct client *c);
