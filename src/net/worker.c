/* Worker event loops. See worker.h. */
#include "net/worker.h"

#include "core/log.h"
#include "net/wbuf.h"

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>

static __thread struct worker *current_worker;

int worker_global_init(void)
{
	return evthread_use_pthreads();
}

struct worker *worker_current(void)
{
	return current_worker;
}

static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	if (w->on_wake)
		w->on_wake(w);
}

static void deferred_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	wbuf_flush_all(w);
	if (w->on_deferred)
		w->on_deferred(w);
}

void worker_defer(struct worker *w)
{
	event_active(w->deferred_ev, 0, 0);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	if (w->on_tick)
		w->on_tick(w);
}

struct worker *worker_new(int id)
{
	struct worker *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->id = id;
	w->base = event_base_new();
	if (!w->base)
		goto fail;
	w->dns = evdns_base_new(w->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
						 EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	if (!w->dns) /* no resolv.conf: numeric hosts and /etc/hosts still work */
		w->dns = evdns_base_new(w->base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	w->wake_ev = event_new(w->base, -1, 0, wake_cb, w);
	w->tick_ev = event_new(w->base, -1, EV_PERSIST, tick_cb, w);
	w->deferred_ev = event_new(w->base, -1, 0, deferred_cb, w);
	if (!w->dns || !w->wake_ev || !w->tick_ev || !w->deferred_ev)
		goto fail;
	return w;
fail:
	worker_free(w);
	return NULL;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	current_worker = w;
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals belong to the main thread */
	struct timeval tv = {0, 100 * 1000};
	event_add(w->tick_ev, &tv);
	event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

static void quiet_log(int severity, const char *msg)
{
	(void)severity;
	(void)msg;
}

static void noop_cb(evutil_socket_t fd, short what, void *arg)
{
}

void worker_reserve_fds(struct worker *w, int nfds)
{
	/* libevent gives every fd number a small per-base record the first time
	 * an event is added for it and keeps it until the base is freed. Made
	 * during a burst of connections, those records end up scattered between
	 * the connections' memory and keep its pages from going back to the
	 * system once the connections are gone. Adding an event for each number
	 * up front (on an fd that is not open: the add fails in epoll_ctl, after
	 * the record exists) makes them here, side by side. */
	struct event *ev = event_new(w->base, -1, EV_READ, noop_cb, NULL);
	if (!ev)
		return;
	event_set_log_callback(quiet_log);
	for (int fd = nfds - 1; fd >= 0; fd--) {
		if (fcntl(fd, F_GETFD) != -1)
			continue; /* open: it gets its record when it is used */
		if (event_assign(ev, w->base, fd, EV_READ, noop_cb, NULL) == 0 && event_add(ev, NULL) == 0)
			event_del(ev);
	}
	event_set_log_callback(NULL);
	event_free(ev);
}

int worker_start(struct worker *w)
{
	if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
		return -1;
	w->started = true;
	return 0;
}

void worker_wake(struct worker *w)
{
	event_active(w->wake_ev, 0, 0);
}

void worker_stop(struct worker *w)
{
	event_base_loopbreak(w->base);
}

void worker_join(struct worker *w)
{
	if (w->started)
		pthread_join(w->thread, NULL);
	w->started = false;
}

void worker_free(struct worker *w)
{
	if (!w)
		return;
	if (w->wake_ev)
		event_free(w->wake_ev);
	if (w->tick_ev)
		event_free(w->tick_ev);
	if (w->deferred_ev)
		event_free(w->deferred_ev);
	free(w->flushq);
	if (w->dns)
		evdns_base_free(w->dns, 0);
	if (w->base)
		event_base_free(w->base);
	free(w);
}
