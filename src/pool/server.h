/* Server connections: connect and log in to PostgreSQL, forward its replies
 * to the linked client while tracking every sync point, run pgmux's own
 * queries (parameter sync, DISCARD ALL, ROLLBACK). Linking to a client and
 * the release decision are pool/link's. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct client;
struct pool;
struct server;
struct worker;
enum server_state;

/* The only writer of a server's state: moves S to ST and keeps its pool's
 * per-state counts (pool_counts). */
void server_set_state(struct server *s, enum server_state st);

/* Open a new server for P on W; the pool slot is already counted. C, if not
 * NULL, is the client waiting for exactly this server. On failure the slot
 * is freed and C is told. */
void server_connect(struct pool *p, struct worker *w, struct client *c);

/* Any thread, for a server in no callback and linked to no one (taken out
 * of the idle list): close it, free it and its pool slot. */
void server_destroy(struct server *s, const char *reason);

/* Worker W's thread: make S (taken from the pool, or handed over detached)
 * usable on W and process bytes that arrived while it was parked. Returns
 * 0, or -1 if S was dead (it has been destroyed and its slot freed). */
int server_take(struct server *s, struct worker *w) __attribute__((warn_unused_result));

/* S's worker: drop S's bufferevent (the socket stays open) so that another
 * worker can adopt it with server_attach. */
void server_detach(struct server *s);
/* Adopt a detached S on W. Returns 0 / -1. */
int server_attach(struct server *s, struct worker *w) __attribute__((warn_unused_result));

/* The client forwarded a message of TYPE on the link (for sync tracking). */
void server_note_client_msg(struct server *s, char type);

/* Finalize S from the data path; its client, if any, gets 08006. */
void server_close(struct server *s, const char *reason);
/* The same, with SQLSTATE and CLIENT_MSG for the client instead of 08006. */
void server_close_client_error(struct server *s, const char *reason, const char *sqlstate,
			       const char *client_msg);

/* Deferred per-worker work: hand releasing servers back to pools, free
 * finalized ones. Called by the worker's deferred event. */
void server_run_deferred(struct worker *w);

/* Called about every 100 ms for each linked server when query_timeout is
 * set: cancel a request the server has not answered for query_timeout
 * seconds, and close the server (its client gets 57014) if the cancel gets
 * no answer within a second. S's worker. */
void server_check_query_timeout(struct server *s, uint64_t now);

/* Start a forwarded cancel to S's backend; the link stays until it ends. */
void server_send_cancel(struct server *s);
