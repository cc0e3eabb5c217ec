/* Reads for bufferevents without the FIONREAD ioctl. A socket bufferevent
 * asks the kernel how much is readable before every read: one extra system
 * call per message, and system calls are most of a pooler's cost. With an
 * rbuf, the bufferevent's own EV_READ stays off; a persistent read event of
 * ours reads into its input buffer (one recv) and calls the
 * owner's read or event callback, with the bufferevent's signatures.
 *
 * On a TLS bufferevent (net/tls) the bufferevent reads and decrypts itself:
 * the rbuf then only turns its EV_READ on and off, and the owner's
 * callbacks, set on the bufferevent, run from libevent's. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct bufferevent;
struct event;
struct worker;

typedef void (*rbuf_read_fn)(struct bufferevent *bev, void *arg);
typedef void (*rbuf_event_fn)(struct bufferevent *bev, short what, void *arg);
/* Sees the first byte a socket has to give before anything is read; returns
 * true if it took the socket over (the rbuf may be detached by then). */
typedef bool (*rbuf_peek_fn)(struct bufferevent *bev, unsigned char first, void *arg);

struct rbuf {
	struct bufferevent *bev; /* borrowed: its input buffer receives the bytes */
	struct event *ev;        /* owned: EV_READ | EV_PERSIST on the socket */
	rbuf_read_fn read_cb;
	rbuf_event_fn event_cb;  /* gets BEV_EVENT_READING | BEV_EVENT_EOF or _ERROR */
	void *arg;
	bool on;                 /* the read event is added (TLS: EV_READ enabled) */
	bool tls;                /* bev is a TLS bufferevent: it reads itself */
	rbuf_peek_fn peek;       /* once: called with the first byte before it is read */
};

/* Read BEV's socket on W's base. Starts stopped. Returns 0 / -1. */
int rbuf_attach(struct rbuf *rb, struct worker *w, struct bufferevent *bev, rbuf_read_fn read_cb,
		rbuf_event_fn event_cb, void *arg) __attribute__((warn_unused_result));
/* Free the event (before the bufferevent goes). Safe if never attached. */
void rbuf_detach(struct rbuf *rb);
void rbuf_start(struct rbuf *rb);
/* Read what the socket holds now into the input, without callbacks (after
 * a write error: a peer that closed may have said why first). Returns the
 * bytes added. */
size_t rbuf_read_pending(struct rbuf *rb);
void rbuf_stop(struct rbuf *rb);
/* Before the next read, show FN the first byte waiting on the socket
 * (recv MSG_PEEK: one more system call, once). Plain sockets only. */
void rbuf_peek_first(struct rbuf *rb, rbuf_peek_fn fn);
