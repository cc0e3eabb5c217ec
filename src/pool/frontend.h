/* The client half of transaction pooling: Query, Parse, Bind, Describe and
 * Close from a client are read whole, their session effects noted (see
 * session.h), and statement names rewritten to the server's own (see
 * pstmt.h); errors the server would give (42P05, 26000, and 0A000 for
 * session_pinning = deny) are raised on the server itself, so that they
 * land in the right place of a pipeline with the transaction state the
 * backend would have. Internal to src/pool/. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct client;
struct server;
struct frame;
struct req;
struct evbuffer;

enum fe_result {
	FE_DONE,   /* the message was consumed (forwarded, rewritten or answered) */
	FE_WAIT,   /* not all of it has arrived yet */
	FE_CLOSED, /* the client or the server was closed */
};

/* True for the message types frontend_message handles. */
static inline bool frontend_wants(char type)
{
	return type == 'Q' || type == 'P' || type == 'B' || type == 'D' || type == 'C';
}

/* Handle the message framed by H at the start of C's input, linked to S in
 * transaction pooling. */
enum fe_result frontend_message(struct client *c, struct server *s, const struct frame *h);

/* C is streaming a Query or Parse too large to hold (c->large, c->stream.left
 * bytes of it still to come): pass on up to AVAIL bytes from the start of
 * IN, inspecting them. Returns the bytes consumed (0: wait for more; the
 * end of a Query is judged whole). C may have been closed. */
size_t frontend_large_chunk(struct client *c, struct server *s, struct evbuffer *in, size_t avail);
/* Drop C's streaming state (C is going away). */
void frontend_large_free(struct client *c);

/* Keep a copy of a message passed on as is (Execute, Sync, Flush...) for a
 * possible retry: TOTAL bytes at the start of IN (maybe not all there yet). */
void frontend_capture(struct server *s, char type, struct evbuffer *in, size_t total);

/* C has no server and its input starts with Parse(name) + Sync of a
 * statement pgmux has seen prepared (same text and parameter types, one
 * plain statement): record the name and answer ParseComplete +
 * ReadyForQuery without borrowing a server. Returns true if it did. */
bool frontend_idle_parse(struct client *c);

/* Close the server statements waiting in S's to_close list, if nothing is
 * in flight on S. Call only between two client messages. */
void frontend_flush_closes(struct server *s);

/* The Bind or Describe at the head of S's queue (HEAD) failed in a way that
 * says the server copy of its statement is stale ("cached plan must not
 * change result type", "cache lookup failed", an object that a fresh Parse
 * may resolve again): that copy is closed and every server re-prepares the
 * statement from now on. Returns true if the failed segment will be sent
 * again once its ReadyForQuery arrives (the caller then drops the error): the
 * message was the first of an implicit transaction, nothing of the segment
 * has reached the client, and, if SHAPE_MAY_CHANGE (0A000), the segment asks
 * for the row description (so the client learns the new row type). */
bool frontend_stale_plan(struct server *s, const struct req *head, bool shape_may_change);
/* The ReadyForQuery ending the failed try arrived: send the segment again. */
void frontend_replay(struct server *s);
