/* Direct writes for bufferevents. A bufferevent normally arms its write
 * event whenever data is queued and disarms it once written: two epoll_ctl
 * calls per message. With a wbuf, EV_WRITE stays disabled; queued output is
 * written with one writev on the same loop turn (worker_defer), and
 * EV_WRITE is enabled only while the socket would block. Owners whose write
 * callback sees an empty output call wbuf_written().
 *
 * On a TLS bufferevent (net/tls) the bufferevent encrypts and writes
 * itself: EV_WRITE stays enabled and libevent writes whenever output is
 * queued; flushing is then libevent's, and the owner's write callback runs
 * whenever the output drains to its low watermark. */
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
	bool tls;                /* bev is a TLS bufferevent: it writes itself */
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
#define WBUF_HIGH_WATER (1u << 20)  /* pause the producer past 1 MiB queued */
#define WBUF_LOW_WATER (256u << 10) /* resume it once drained to 256 KiB */

struct rbuf;

/* Back-pressure: if DST has more than WBUF_HIGH_WATER bytes queued, stop
 * reading SRC, and make sure DST's owner's write callback runs once the
 * output has drained to WBUF_LOW_WATER, even if a direct write drains it at
 * once (a plain bufferevent would then never call it); that callback resumes
 * SRC. Returns true if SRC was paused. */
bool wbuf_pause_reader(struct wbuf *dst, struct rbuf *src);
/* W's deferred event: flush every queued wbuf. */
void wbuf_flush_all(struct worker *w);
