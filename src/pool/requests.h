/* The queue of requests outstanding on a server connection (struct
 * server.reqs), and what each reply does to it: which request it answers,
 * whether it reaches the client, and the replies pgmux writes itself
 * (ParseComplete for a statement already prepared, CloseComplete for a
 * client's Close) exactly where the server's would have gone.
 * Internal to src/pool/. Runs on the server's worker thread. */
#pragma once

#include "pool/conn.h"

#include <stdbool.h>
#include <stdint.h>

/* Queue R on S. A request sent after an error, before the Sync that ends
 * it, is skipped by the backend: it is undone at once instead. A fake reply
 * with nothing ahead of it goes out now. Holds R's ss/cs. Returns 0 / -1. */
int req_push(struct server *s, const struct req *r) __attribute__((warn_unused_result));
static inline struct req *req_head(struct server *s)
{
	return s->reqs.count ? &s->reqs.v[s->reqs.head] : NULL;
}
/* The Nth request (0 = head). */
struct req *req_at(struct server *s, uint32_t n);
/* Remove the head (done with it: ParseComplete confirms a statement). */
void req_pop(struct server *s);
/* An ErrorResponse answered the head extended-protocol request: the backend
 * skips everything up to the next Sync; undo what those requests did, newest
 * first. */
void req_error(struct server *s);
/* Write the fake replies now at the head of the queue. */
void req_emit_fakes(struct server *s);
/* Drop the Syncs queued after the head while the backend was in copy-in mode
 * (it ignores them). */
void req_drop_copy_syncs(struct server *s, uint64_t after_seq);
/* The same for the Syncs up to client message UPTO_SEQ only (a CopyDone
 * that the client sent before the copy had begun ends it there). */
void req_drop_copy_syncs_upto(struct server *s, uint64_t after_seq, uint64_t upto_seq);
/* Undo and remove the Nth request (0 = head): the backend consumes it
 * without an answer (a message it got during copy-in). */
void req_remove(struct server *s, uint32_t n);
/* Undo every queued request, newest first, as if the backend had skipped
 * them all (the server is lost before it answered any: relink.c), and empty
 * the queue. */
void req_undo_all(struct server *s);
/* Forget every request (server closing), releasing what they hold. */
void req_clear(struct server *s);

/* True if nothing is queued but Closes of pgmux's own (of orphaned or stale
 * copies): for the client, a segment starts with its next message. */
bool req_only_own_closes(struct server *s);

/* A reply of TYPE (not ReadyForQuery, ErrorResponse, CommandComplete: the
 * caller handles those) arrived: pop what it answers. Returns 1 if it goes to
 * the client, 0 if it is pgmux's own (drop it), -1 if it answers nothing
 * that was asked (protocol desync: the caller closes the server). */
int req_reply(struct server *s, char type);
