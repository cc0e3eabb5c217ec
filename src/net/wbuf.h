/* Direct writes for bufferevents. A bufferevent normally arms its write
 * event whenever data is queued and disarms it once written: two epoll_ctl
 * calls per message. With a wbuf, the bufferevent's own EV_WRITE stays off:
 * queued output is written through net/transport with one system call on
 * the same loop turn (worker_defer), and a write event of the wbuf's own is
 * added only while the socket would block. The owner's write callback, set
 * on the bufferevent, runs as libevent would run it: when such a wait ends
 * with the output at its low watermark (and see wbuf_pause_reader,
 * wbuf_drain). Owners whose write callback runs call wbuf_written().
 *
 * Over TLS (wbuf_set_ssl, once the handshake is done) the same path
 * encrypts: nothing above it knows the difference. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct bufferevent;
struct event;
struct ssl_st;
struct worker;

struct wbuf {
	struct worker *w;        /* borrowed: the worker whose loop flushes it */
	struct bufferevent *bev; /* borrowed */
	struct ssl_st *ssl;      /* borrowed: TLS session over the socket, or NULL */
	struct event *ev;        /* owned, made when first needed: EV_WRITE while blocked */
	size_t tls_retry;        /* net/transport's retry length for SSL_write */
	size_t notify_below;
	int fd;
	int qidx;                /* position in the worker's flush queue, -1 if not queued */
	int timeout_ms;          /* wbuf_drain's limit, 0: none */
	bool notify;             /* run the write callback once output is at most notify_below */
	bool waiting;            /* ev is added: the socket would block */
};

/* Start direct writes for BEV on W (in plaintext). Returns 0 / -1. */
int wbuf_attach(struct wbuf *wb, struct worker *w, struct bufferevent *bev)
	__attribute__((warn_unused_result));
/* Stop (before the bufferevent is freed or moved). Safe if never attached. */
void wbuf_detach(struct wbuf *wb);
/* From now on write through SSL (its handshake done), or in plaintext. */
void wbuf_set_ssl(struct wbuf *wb, struct ssl_st *ssl);
/* Write what is queued now. A write error reaches the bufferevent's event
 * callback (BEV_EVENT_WRITING | BEV_EVENT_ERROR) on a later loop turn. */
void wbuf_flush(struct wbuf *wb);
/* From the owner's write callback: the output drained. */
void wbuf_written(struct wbuf *wb);
/* Write everything queued and run the write callback once the output is
 * empty (at once, deferred, if it is already). If it is not written within
 * TIMEOUT_MS (0: no limit), the event callback gets BEV_EVENT_WRITING |
 * BEV_EVENT_TIMEOUT instead. */
void wbuf_drain(struct wbuf *wb, int timeout_ms);
#define WBUF_HIGH_WATER (1u << 20)  /* pause the producer past 1 MiB queued */
#define WBUF_LOW_WATER (256u << 10) /* resume it once drained to 256 KiB */

struct rbuf;

/* Back-pressure: if DST has more than WBUF_HIGH_WATER bytes queued, stop
 * reading SRC, and make sure DST's owner's write callback runs once the
 * output has drained to WBUF_LOW_WATER, even if a direct write drains it at
 * once; that callback resumes SRC. Returns true if SRC was paused. */
bool wbuf_pause_reader(struct wbuf *dst, struct rbuf *src);
/* W's deferred event: flush every queued wbuf. */
void wbuf_flush_all(struct worker *w);
