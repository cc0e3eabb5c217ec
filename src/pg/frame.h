/* Message framing on input evbuffers: where the next protocol message
 * starts, how long it is, whether it is all there, and the state of a
 * message whose body is streamed on (or dropped) as its bytes arrive.
 *
 * The pool layer's read loops (client login, idle and forwarding, server
 * idle and forwarding, local cancel, the idle Parse) frame through here and
 * nowhere else; the length limits per sender and type are pg/proto's. No
 * I/O: the buffers are filled by net/rbuf. */
#pragma once

#include "pg/proto.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;

/* Who sends the bytes: picks the length limits (proto_client_max_len,
 * proto_server_max_len). */
enum frame_peer {
	FRAME_CLIENT_LOGIN, /* a client before AuthenticationOk */
	FRAME_CLIENT,       /* a logged-in client */
	FRAME_SERVER,       /* a PostgreSQL backend */
};

/* The header of one message, and how much of it is in the buffer. */
struct frame {
	char type;    /* type byte (set even when the length is refused) */
	uint32_t len; /* the length field: body + 4 */
	size_t total; /* the whole message: 1 + len */
	size_t avail; /* bytes in the buffer from the message's first one on */
};

/* Peek at the message starting OFF bytes into IN, without consuming
 * anything. PROTO_AGAIN: fewer than 5 bytes there yet. PROTO_ERROR: the
 * length field is under 4 or over PEER's limit for the type (F->type is
 * set for the log line; nothing after it can be framed, so the connection
 * must close). PROTO_OK: F holds the header; the body may still be
 * arriving (frame_whole). */
enum proto_result frame_peek(struct evbuffer *in, size_t off, enum frame_peer peer,
			     struct frame *f);

/* All of F's bytes are in the buffer. */
static inline bool frame_whole(const struct frame *f)
{
	return f->avail >= f->total;
}

/* How many of F's bytes can be taken now: all of it, or what has come. */
static inline size_t frame_have(const struct frame *f)
{
	return f->avail < f->total ? f->avail : f->total;
}

/* The length word of the packet at the front of IN before the protocol
 * starts (StartupMessage, SSLRequest, GSSENCRequest, CancelRequest: no
 * type byte). PROTO_AGAIN: under 4 bytes; PROTO_ERROR: under 8 or over
 * PROTO_STARTUP_MAX_LEN; else PROTO_OK. *LEN is the length word (with
 * ERROR too, for the log line). */
enum proto_result frame_peek_startup(struct evbuffer *in, uint32_t *len);

/* A message passed on as its bytes arrive: the part of it still to come,
 * and whether that part goes on or is dropped. */
struct frame_stream {
	uint32_t left; /* bytes of the message not taken yet; 0: none in progress */
	bool drop;     /* drop them instead of passing them on */
};

/* The first N bytes of F (N = frame_have) have been taken: the rest, if
 * any, follows on ST, dropped when DROP. */
static inline void frame_stream_start(struct frame_stream *st, const struct frame *f, size_t n,
				      bool drop)
{
	st->left = (uint32_t)(f->total - n);
	st->drop = drop && st->left > 0;
}

/* How many of AVAIL buffered bytes belong to the message in progress. */
static inline size_t frame_stream_chunk(const struct frame_stream *st, size_t avail)
{
	return avail < st->left ? avail : st->left;
}

/* N more of its bytes have been taken. True when the message is over. */
static inline bool frame_stream_took(struct frame_stream *st, size_t n)
{
	st->left -= (uint32_t)n;
	if (st->left == 0)
		st->drop = false;
	return st->left == 0;
}

/* Remove the whole message F (frame_whole) from the front of IN into M, as
 * proto_msg_take does. Returns 0, or -1 on allocation failure (IN is
 * unchanged then); call proto_msg_cleanup either way. */
int frame_take(struct evbuffer *in, const struct frame *f, struct proto_msg *m)
	__attribute__((warn_unused_result));
