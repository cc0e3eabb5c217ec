/* Direct writes for bufferevents. A bufferevent normally arms its write
 * event whenever data is queued and disarms it once written: two epoll_ctl
 * calls per message. With a wbuf, EV_WRITE stays disabled; queued output is
 * written with one writev on the same loop turn (worker_defer), and
 * EV_WRITE is enabled only while the socket would block. Owners whose write
 * callback sees an empty output call wbuf_written(). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct bufferevent;
struct worker;

struct wbuf {
	struct worker *w;        /* borrowed: the worker whose loop flushes it */
	struct bufferevent *bev; /* borrowed */
	int qidx;                /* position in the worker's flush queue, -1 if not queued */
	bool notify;             /* run the write callback once output is at most notify_below */
	size_t notify_below;
};

/* Start direct writes for BEV on W. Returns 0 / -1. */
int wbuf_attach(struct wbuf *wb, struct worker *w, struct bufferevent *bev)
	__attribute__((warn_unused_result));
/* Stop (before the bufferevent is freed or moved). Safe if never attached. */
void wbuf_detach(struct wbuf *wb);
/* Write what is queued now. */
void wbuf_flush(struct wbuf *wb);
/* From the owner's write callback: the output drained, go back to direct
 * writes. */
void wbuf_written(struct wbuf *wb);
/* Back-pressure: make sure the owner's write callback runs once the output
 * has drained to LOW bytes, even if a direct write drains it at once (a
 * plain bufferevent would then never call it). */
void wbuf_notify_below(struct wbuf *wb, size_t low);
/* W's deferred event: flush every queued wbuf. */
void wbuf_flush_all(struct worker *w);
