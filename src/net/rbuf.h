/* Reads for bufferevents without the FIONREAD ioctl. A socket bufferevent
 * asks the kernel how much is readable before every read: one extra system
 * call per message, and system calls are most of a pooler's cost. With an
 * rbuf, the bufferevent's own EV_READ stays off; a persistent read event of
 * ours reads into its input buffer (one recv) and calls the
 * owner's read or event callback, with the bufferevent's signatures.
 *
 * The bytes come through net/transport: over TLS (rbuf_set_ssl, once the
 * handshake is done) the same read event runs SSL_read, and bytes OpenSSL
 * already holds are read without waiting for the socket. */
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
	struct ssl_st *ssl;      /* borrowed: TLS session over the socket, or NULL */
	bool on;                 /* the read event is added */
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
/* From now on read through SSL (its handshake done), or in plaintext. */
void rbuf_set_ssl(struct rbuf *rb, struct ssl_st *ssl);
/* Before the next read, show FN the first byte waiting on the socket
 * (recv MSG_PEEK: one more system call, once). Plain sockets only. */
void rbuf_peek_first(struct rbuf *rb, rbuf_peek_fn fn);
