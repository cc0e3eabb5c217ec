/* Worker threads: one libevent event_base per thread. Other threads talk to
 * a worker only through worker_wake() (runs its on_wake callback on its own
 * thread) and worker_stop(). Libevent's pthreads locking is enabled by
 * worker_global_init() before any base exists, so events may be added or
 * deleted on a base from any thread. */
#pragma once

#include <pthread.h>
#include <stdbool.h>

struct event_base;
struct evdns_base;
struct event;
struct wbuf;

struct worker {
	int id;                       /* 0 .. workers-1 */
	struct event_base *base;      /* owned */
	struct evdns_base *dns;       /* owned: async resolver for server host names */
	pthread_t thread;             /* valid after worker_start */
	bool started;                 /* thread running */
	struct event *wake_ev;        /* owned: activated by worker_wake */
	struct event *tick_ev;        /* owned: fires every 100 ms */
	void (*on_wake)(struct worker *w); /* set by the owner before start */
	void (*on_tick)(struct worker *w); /* set by the owner before start */
	void *ctx;                    /* borrowed: per-worker state of the pool layer */
	struct event *deferred_ev;    /* owned: runs queued flushes, then on_deferred */
	void (*on_deferred)(struct worker *w); /* set by the owner before start */
	struct wbuf **flushq;         /* owned array: wbufs with output to write this turn */
	int nflush;
	int capflush;
};

/* Enable libevent threading (call once, before anything else). Returns 0/-1. */
int worker_global_init(void) __attribute__((warn_unused_result));

struct worker *worker_new(int id);
int worker_start(struct worker *w) __attribute__((warn_unused_result));
/* Before the worker starts: make libevent's per-fd records for fd numbers
 * below NFDS now, so that a burst of connections does not scatter them
 * through memory that should go back to the system afterwards. */
void worker_reserve_fds(struct worker *w, int nfds);
/* Any thread: run W's on_wake on W's thread soon. Multiple wakes coalesce. */
void worker_wake(struct worker *w);
/* W's thread: run the deferred work (flushes, then on_deferred) once the
 * current callback has returned. */
void worker_defer(struct worker *w);
/* Any thread: make W's loop return. */
void worker_stop(struct worker *w);
void worker_join(struct worker *w);
void worker_free(struct worker *w);

/* The worker running on the calling thread, or NULL (main thread). */
struct worker *worker_current(void);
