/* Direct writes. See wbuf.h. */
#include "net/wbuf.h"

#include "net/rbuf.h"
#include "net/tls.h"
#include "net/worker.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdlib.h>

static void queue(struct wbuf *wb)
{
	struct worker *w = wb->w;
	if (wb->qidx >= 0)
		return;
	if (w->nflush == w->capflush) {
		int cap = w->capflush ? w->capflush * 2 : 64;
		struct wbuf **q = realloc(w->flushq, (size_t)cap * sizeof(*q));
		if (!q) {
			/* cannot queue: let libevent write it */
			bufferevent_enable(wb->bev, EV_WRITE);
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

int wbuf_attach(struct wbuf *wb, struct worker *w, struct bufferevent *bev)
{
	wb->w = w;
	wb->bev = bev;
	wb->qidx = -1;
	wb->notify = false;
	wb->tls = tls_is_tls(bev);
	if (wb->tls)
		return bufferevent_enable(bev, EV_WRITE);
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
	if (wb->tls) {
		wb->bev = NULL;
		return;
	}
	unqueue(wb);
	evbuffer_remove_cb(bufferevent_get_output(wb->bev), output_cb, wb);
	wb->bev = NULL;
}

void wbuf_flush(struct wbuf *wb)
{
	if (!wb->bev || wb->tls)
		return;
	unqueue(wb);
	struct evbuffer *out = bufferevent_get_output(wb->bev);
	if (evbuffer_get_length(out) == 0)
		return;
	/* a socket bufferevent keeps its output's front frozen outside its own
	 * write handler; thaw it for this write, as that handler does */
	evbuffer_unfreeze(out, 1);
	int n = evbuffer_write(out, bufferevent_getfd(wb->bev));
	evbuffer_freeze(out, 1);
	if (evbuffer_get_length(out) > 0 || n < 0)
		/* would block, or an error libevent will report through the event callback */
		bufferevent_enable(wb->bev, EV_WRITE);
	if (wb->notify && evbuffer_get_length(out) <= wb->notify_below) {
		wb->notify = false;
		bufferevent_trigger(wb->bev, EV_WRITE,
				    BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
	}
}

bool wbuf_pause_reader(struct wbuf *dst, struct rbuf *src)
{
	if (evbuffer_get_length(bufferevent_get_output(dst->bev)) <= WBUF_HIGH_WATER)
		return false;
	rbuf_stop(src);
	bufferevent_setwatermark(dst->bev, EV_WRITE, WBUF_LOW_WATER, 0);
	dst->notify = !dst->tls; /* libevent calls a TLS bufferevent's write callback itself */
	dst->notify_below = WBUF_LOW_WATER;
	return true;
}

void wbuf_written(struct wbuf *wb)
{
	wb->notify = false;
	if (wb->bev && !wb->tls && evbuffer_get_length(bufferevent_get_output(wb->bev)) == 0)
		bufferevent_disable(wb->bev, EV_WRITE);
}

void wbuf_flush_all(struct worker *w)
{
	while (w->nflush > 0)
		wbuf_flush(w->flushq[w->nflush - 1]);
}
