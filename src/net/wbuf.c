/* Direct writes. See wbuf.h. */
#include "net/wbuf.h"

#include "net/rbuf.h"
#include "net/transport.h"
#include "net/worker.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdlib.h>

static void write_ready(evutil_socket_t fd, short what, void *arg);

/* Wait for the socket to take more (with wbuf_drain's limit, if any). */
static void wait_writable(struct wbuf *wb)
{
	if (wb->waiting)
		return;
	if (!wb->ev) {
		wb->ev = event_new(wb->w->base, wb->fd, EV_WRITE | EV_PERSIST, write_ready, wb);
		if (!wb->ev) {
			bufferevent_trigger_event(wb->bev, BEV_EVENT_WRITING | BEV_EVENT_ERROR,
						  BEV_TRIG_DEFER_CALLBACKS);
			return;
		}
	}
	struct timeval tv = {wb->timeout_ms / 1000, (wb->timeout_ms % 1000) * 1000};
	if (event_add(wb->ev, wb->timeout_ms > 0 ? &tv : NULL) == 0)
		wb->waiting = true;
}

static void stop_waiting(struct wbuf *wb)
{
	if (wb->waiting)
		event_del(wb->ev);
	wb->waiting = false;
}

static void queue(struct wbuf *wb)
{
	struct worker *w = wb->w;
	if (wb->qidx >= 0)
		return;
	if (w->nflush == w->capflush) {
		int cap = w->capflush ? w->capflush * 2 : 64;
		struct wbuf **q = realloc(w->flushq, (size_t)cap * sizeof(*q));
		if (!q) {
			wait_writable(wb); /* cannot queue: write when the socket is ready */
			return;
		}
		w->flushq = q;
		w->capflush = cap;
	}
	wb->qidx = w->nflush;
	w->flushq[w->nflush++] = wb;
	worker_defer(w);
}

static void unqueue(struct wbuf *wb)
{
	struct worker *w = wb->w;
	if (wb->qidx < 0)
		return;
	struct wbuf *last = w->flushq[--w->nflush];
	w->flushq[wb->qidx] = last;
	last->qidx = wb->qidx;
	wb->qidx = -1;
}

static void output_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct wbuf *wb = arg;
	if (info->n_added > 0)
		queue(wb);
}

/* One write of what is queued; waits for the socket if some is left. */
static void write_now(struct wbuf *wb, struct evbuffer *out)
{
	if (evbuffer_get_length(out) == 0)
		return;
	/* a socket bufferevent keeps its output's front frozen outside its own
	 * write handler; thaw it for this write, as that handler does */
	evbuffer_unfreeze(out, 1);
	int n = transport_write(out, wb->fd, wb->ssl, &wb->tls_retry);
	int err = errno;
	evbuffer_freeze(out, 1);
	if (n < 0 && err != EAGAIN && err != EWOULDBLOCK && err != EINTR) {
		stop_waiting(wb);
		errno = err;
		bufferevent_trigger_event(wb->bev, BEV_EVENT_WRITING | BEV_EVENT_ERROR,
					  BEV_TRIG_DEFER_CALLBACKS);
		return;
	}
	if (evbuffer_get_length(out) > 0)
		wait_writable(wb);
}

/* Run the write callback (deferred) if a notify is due. Returns whether
 * it was. */
static bool check_notify(struct wbuf *wb, struct evbuffer *out)
{
	if (!wb->notify || evbuffer_get_length(out) > wb->notify_below)
		return false;
	wb->notify = false;
	bufferevent_trigger(wb->bev, EV_WRITE, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
	return true;
}

static void write_ready(evutil_socket_t fd, short what, void *arg)
{
	struct wbuf *wb = arg;
	struct evbuffer *out = bufferevent_get_output(wb->bev);
	if (what & EV_TIMEOUT) {
		stop_waiting(wb);
		bufferevent_trigger_event(wb->bev, BEV_EVENT_WRITING | BEV_EVENT_TIMEOUT, 0);
		return;
	}
	unqueue(wb);
	write_now(wb, out);
	if (evbuffer_get_length(out) == 0)
		stop_waiting(wb);
	if (!check_notify(wb, out))
		/* as a bufferevent's write handler: the callback runs when the
		 * output is at its low watermark */
		bufferevent_trigger(wb->bev, EV_WRITE, 0);
}

int wbuf_attach(struct wbuf *wb, struct worker *w, struct bufferevent *bev)
{
	wb->w = w;
	wb->bev = bev;
	wb->ssl = NULL;
	wb->ev = NULL;
	wb->tls_retry = 0;
	wb->fd = bufferevent_getfd(bev);
	wb->qidx = -1;
	wb->timeout_ms = 0;
	wb->notify = false;
	wb->waiting = false;
	bufferevent_disable(bev, EV_WRITE);
	struct evbuffer *out = bufferevent_get_output(bev);
	if (!evbuffer_add_cb(out, output_cb, wb))
		return -1;
	if (evbuffer_get_length(out) > 0)
		queue(wb);
	return 0;
}

void wbuf_detach(struct wbuf *wb)
{
	if (!wb->bev)
		return;
	unqueue(wb);
	stop_waiting(wb);
	if (wb->ev)
		event_free(wb->ev);
	wb->ev = NULL;
	evbuffer_remove_cb(bufferevent_get_output(wb->bev), output_cb, wb);
	wb->bev = NULL;
	wb->ssl = NULL;
}

void wbuf_set_ssl(struct wbuf *wb, struct ssl_st *ssl)
{
	wb->ssl = ssl;
	wb->tls_retry = 0;
}

void wbuf_flush(struct wbuf *wb)
{
	if (!wb->bev)
		return;
	unqueue(wb);
	struct evbuffer *out = bufferevent_get_output(wb->bev);
	if (!wb->waiting) /* else the socket is full: write_ready writes */
		write_now(wb, out);
	check_notify(wb, out);
}

void wbuf_drain(struct wbuf *wb, int timeout_ms)
{
	if (!wb->bev)
		return;
	wb->timeout_ms = timeout_ms;
	wb->notify = true;
	wb->notify_below = 0;
	bufferevent_setwatermark(wb->bev, EV_WRITE, 0, 0);
	if (wb->waiting) { /* again, with the new limit */
		stop_waiting(wb);
		wait_writable(wb);
	}
	wbuf_flush(wb);
}

bool wbuf_pause_reader(struct wbuf *dst, struct rbuf *src)
{
	if (evbuffer_get_length(bufferevent_get_output(dst->bev)) <= WBUF_HIGH_WATER)
		return false;
	rbuf_stop(src);
	bufferevent_setwatermark(dst->bev, EV_WRITE, WBUF_LOW_WATER, 0);
	dst->notify = true;
	dst->notify_below = WBUF_LOW_WATER;
	return true;
}

void wbuf_written(struct wbuf *wb)
{
	wb->notify = false;
	if (wb->bev && evbuffer_get_length(bufferevent_get_output(wb->bev)) == 0)
		stop_waiting(wb);
}

void wbuf_flush_all(struct worker *w)
{
	while (w->nflush > 0)
		wbuf_flush(w->flushq[w->nflush - 1]);
}
