/* A link whose server turns out dead before it answered anything moves to
 * another server, so that the client never sees a failure the pool could
 * have avoided: a server killed while it was parked (pg_terminate_backend,
 * idle_session_timeout, a restart) is noticed only when the next client's
 * first message reaches it.
 *
 * While a link has sent nothing to its client, the client's bytes consumed
 * on it are kept (up to RELINK_LOG_MAX). If the server then dies in a way
 * that proves nothing durable happened — any loss while pgmux was still
 * applying the client's settings, or a FATAL 57P01 (admin shutdown) or 57P05
 * (idle session timeout) as its first reply when the only statements the
 * link ran start a transaction block (BEGIN: the backend rolls the block
 * back) — everything the link noted is undone, the bytes go back to the
 * client's input, and the client takes another server. Any other loss is
 * reported to the client as before: a statement that may have committed,
 * or had any other effect, is never silently run again. Client's worker
 * thread. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct client;
struct server;
struct evbuffer;

#define RELINK_LOG_MAX (64u * 1024) /* bytes kept for a replay; beyond, no replay */
#define RELINK_MAX_TRIES 8          /* dead servers skipped for one client message */

/* C was just linked to a server: start keeping what it sends. */
void relink_begin(struct client *c);
/* C's link is about to consume the first N bytes of its input IN. */
void relink_log(struct client *c, struct evbuffer *in, size_t n);
/* C's link sends a message that runs statements; BEGIN_ONLY: they only
 * start a transaction block. */
void relink_ran(struct client *c, bool begin_only);
/* The next N bytes C's link consumes are a copy of bytes already kept
 * (the 0A000 retry feeds a captured segment back). */
void relink_skip(struct client *c, size_t n);
/* Something of the link reached the client: it cannot move any more. */
void relink_stop(struct client *c);
/* S is lost (WHY for the log); FATAL_SQLSTATE is the SQLSTATE of a FATAL
 * it sent first, or NULL. Returns true if its client was moved to another
 * server (S has been closed), false if the caller must report the loss. */
bool relink_try(struct server *s, const char *fatal_sqlstate, const char *why);
/* Free C's kept bytes. */
void relink_free(struct client *c);
