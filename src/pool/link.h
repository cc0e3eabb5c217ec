/* The link between a client and a server: the only code that links and
 * unlinks them (client->server, server->client), and that decides, at each
 * transaction boundary, whether the server goes back to its pool.
 *
 * A link starts with link_open (the client got a server: its parameters are
 * synced, then its messages flow) or link_for_login (the client waits on a
 * server being opened for it). It ends with link_maybe_release (the
 * transaction is over: release, or keep it for a pinned or session-mode
 * client), link_client_leaves (the client goes: the server is released,
 * rolled back, drained or closed) or link_cut (the server goes). All on the
 * client's worker. */
#pragma once

#include <stdbool.h>

struct client;
struct server;

/* C (CL_ACTIVE) got S: link them, sync C's session parameters onto S if they
 * differ, then forward C's pending messages. */
void link_open(struct server *s, struct client *c);

/* S's parameter sync for its linked client (there is one) finished: start
 * forwarding. */
void link_synced(struct server *s);

/* S is being opened for C, which waits for it (CL_WAITING). */
void link_for_login(struct server *s, struct client *c);

/* Unlink S and its client, if any, and return that client (NULL if none).
 * Neither changes state: the caller says what happens to each. */
struct client *link_cut(struct server *s);

/* Unlink S from its client; an active client goes back to CL_IDLE. */
void link_end(struct server *s);

/* Release S if the link is at a transaction boundary (transaction mode and
 * not pinned, or FORCE for a session's end). Returns true if the client was
 * unlinked (S went back to the pool, or is being reset or closed). */
bool link_maybe_release(struct server *s, bool force);

/* C is going away (closing, or giving up waiting): unlink it from its
 * server, which is released if clean, rolled back if idle in a
 * transaction, drained if replies are still owed, else closed. */
void link_client_leaves(struct client *c);

/* S drains for a client that left (s->draining): complete on the protocol
 * what the client left half done (a CopyFail for a copy in progress, a Sync
 * after extended messages), so that the backend reaches a ReadyForQuery.
 * Also when a COPY the client had sent starts only after it left. Returns
 * 0, or -1 if S cannot be drained (the caller closes it). */
int link_drain_protocol(struct server *s);
