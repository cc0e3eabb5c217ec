/* Unit tests for pool/cancel: the table of cancel keys and the dispatch of a
 * CancelRequest to the worker that owns the client.
 *
 * The table is only reachable through cancel_request: a (pid, key) that
 * matches a registered client schedules run_cancel on that client's worker
 * (an event_base_once event on its base), anything else schedules nothing.
 * So a lookup is checked by counting the events added to each worker's base
 * and then running the base once (run_cancel, on the test thread, finds the
 * client again and stops at the worker check). Covered: 600+ clients (the
 * table grows past 512 = 1024/2), pids unique, non-zero and positive,
 * unregister with backward-shift deletion keeping every other key findable
 * under random churn, wrong keys, a client gone before its cancel runs.
 *
 * Then run_cancel on a real worker thread: an active client's cancel reaches
 * its server's backend as a CancelRequest with the backend's own key (a
 * listener in the test plays the server), and a waiting client is answered
 * 57014 and leaves the wait queue -- also when a server slot or a parked
 * server had just been granted to it (pool_leave_queue's granted-slot and
 * reserved-server branches, also with the server detached by another
 * worker). */
#include <check.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"
#include "net/worker.h"
#include "pool/cancel.h"
#include "pool/client.h"
#include "pool/conn.h"
#include "pool/pool.h"
#include "pool/route.h"
#include "pool/server.h"

enum { NW = 4 };

static struct worker *workers[NW];
static struct config cfg;
static struct config_db db;

static void setup(void)
{
	log_set_level(LOG_WARN); /* cancel_ignored / cancel_forwarded are info */
	ck_assert_int_eq(worker_global_init(), 0);
	for (int i = 0; i < NW; i++) {
		workers[i] = worker_new(i);
		ck_assert_ptr_nonnull(workers[i]);
		ck_assert_int_eq(pool_worker_attach(workers[i]), 0);
	}
	memset(&cfg, 0, sizeof(cfg));
	cfg.pool_mode = POOL_MODE_TRANSACTION;
	cfg.server_connect_timeout = 5;
	cfg.max_prepared_statements = 200;
	memset(&db, 0, sizeof(db));
	db.name = "appdb";
	db.dbname = "appdb";
	db.host = "127.0.0.1";
	db.port = 1;
	db.pool_size = 1;
	pool_global_init(&cfg, NULL, workers, NW);
}

static struct client *client_new(struct worker *w)
{
	struct client *c = calloc(1, sizeof(*c));
	ck_assert_ptr_nonnull(c);
	c->worker = w;
	c->state = CL_IDLE;
	snprintf(c->addr, sizeof(c->addr), "test");
	return c;
}

/* ---- the table, seen through cancel_request ---- */

static int added(struct worker *w)
{
	return event_base_get_num_events(w->base, EVENT_BASE_COUNT_ADDED);
}

static int base_count[NW];

/* Let the scheduled run_cancel jobs run (and free themselves). */
static void flush_all(void)
{
	for (int i = 0; i < NW; i++) {
		for (int k = 0; k < 20 && added(workers[i]) > base_count[i]; k++)
			event_base_loop(workers[i]->base, EVLOOP_NONBLOCK);
		if (added(workers[i]) != base_count[i])
			ck_abort_msg("worker %d: %d events left", i,
			             added(workers[i]) - base_count[i]);
	}
}

static void snapshot_counts(void)
{
	for (int i = 0; i < NW; i++)
		base_count[i] = added(workers[i]);
}

/* Which worker a cancel for (PID, KEY) was dispatched to: its id, -1 for
 * none. Fails if more than one got something. */
static int dispatched(uint32_t pid, uint32_t key)
{
	cancel_request(pid, key, "test");
	int got = -1;
	for (int i = 0; i < NW; i++) {
		int d = added(workers[i]) - base_count[i];
		if (d < 0 || d > 1 || (d && got != -1))
			ck_abort_msg("cancel for pid %u: %d events on worker %d", pid, d, i);
		if (d)
			got = i;
	}
	flush_all();
	return got;
}

/* (Check records every ck_assert in a file: the hot paths here only call
 * it on failure.) */
static void check_found(struct client *c)
{
	if (c->cancel_pid == 0 || dispatched(c->cancel_pid, c->cancel_key) != c->worker->id)
		ck_abort_msg("cancel for pid %u not dispatched to worker %d", c->cancel_pid,
		             c->worker->id);
}

static void check_not_found(uint32_t pid, uint32_t key)
{
	if (dispatched(pid, key) != -1)
		ck_abort_msg("cancel for pid %u dispatched", pid);
}

/* Every client of LIST found, dispatched to its own worker: one
 * cancel_request each, then the per-worker counts compared (an entry not
 * found, or found with the wrong worker, shows as a count off); a mismatch
 * is narrowed down to the client. */
static void sweep(struct client **list, int n)
{
	int want[NW] = {0};
	for (int k = 0; k < n; k++) {
		cancel_request(list[k]->cancel_pid, list[k]->cancel_key, "test");
		want[list[k]->worker->id]++;
	}
	bool ok = true;
	for (int i = 0; i < NW; i++)
		ok = ok && added(workers[i]) - base_count[i] == want[i];
	flush_all();
	if (!ok)
		for (int k = 0; k < n; k++)
			check_found(list[k]);
	ck_assert_msg(ok, "a sweep of %d clients found the wrong number", n);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

START_TEST(test_register_many)
{
	setup();
	snapshot_counts();
	enum { N = 1100 }; /* past 512 (1024 slots) and 1024 (2048 slots) */
	struct client *c[N];
	uint32_t pids[N];
	for (int i = 0; i < N; i++) {
		c[i] = client_new(workers[i % NW]);
		if (cancel_register(c[i]) != 0 || c[i]->cancel_pid == 0 ||
		    c[i]->cancel_pid > 0x7fffffffu) /* positive as an int32 */
			ck_abort_msg("client %d: pid %u", i, c[i]->cancel_pid);
		pids[i] = c[i]->cancel_pid;
		if (i == 0 || i == 511 || i == 512 || i == 600 || i == 1023 || i == 1024)
			sweep(c, i + 1); /* right before and after each growth */
	}
	qsort(pids, N, sizeof(pids[0]), cmp_u32);
	for (int i = 1; i < N; i++)
		if (pids[i] == pids[i - 1])
			ck_abort_msg("pid %u given twice", pids[i]);
	for (int i = 0; i < N; i++) {
		check_found(c[i]);
		check_not_found(c[i]->cancel_pid, c[i]->cancel_key ^ 1u); /* wrong key */
		check_not_found(c[i]->cancel_pid, c[i]->cancel_key ^ 0x80000000u);
	}
	check_not_found(0, 0);
	/* unknown pids: neighbours of registered ones not registered themselves */
	for (int i = 0; i < N; i++) {
		uint32_t p = pids[i] + 1;
		if (p <= 0x7fffffffu && !bsearch(&p, pids, N, sizeof(pids[0]), cmp_u32))
			check_not_found(p, c[0]->cancel_key);
	}
	for (int i = 0; i < N; i++) {
		uint32_t pid = c[i]->cancel_pid, key = c[i]->cancel_key;
		cancel_unregister(c[i]);
		if (c[i]->cancel_pid != 0)
			ck_abort_msg("pid left after unregister");
		cancel_unregister(c[i]); /* twice: nothing */
		check_not_found(pid, key);
		if (i % 100 == 0)
			sweep(c + i + 1, N - i - 1);
	}
	for (int i = 0; i < N; i++)
		free(c[i]);
}
END_TEST

/* A client never registered (pid 0) is ignored by cancel_unregister, and a
 * stale client pointer with a pid that is now someone else's does not
 * remove the other's entry. */
START_TEST(test_unregister_guards)
{
	setup();
	snapshot_counts();
	struct client *a = client_new(workers[0]), *b = client_new(workers[1]);
	cancel_unregister(a);
	ck_assert_int_eq(cancel_register(a), 0);
	b->cancel_pid = a->cancel_pid; /* not b's entry */
	cancel_unregister(b);
	ck_assert_uint_eq(b->cancel_pid, 0);
	check_found(a);
	cancel_unregister(a);
	free(a);
	free(b);
}
END_TEST

/* xorshift64*, seeded: the churn is the same on every run. */
static uint64_t rng_state;
static uint32_t rnd(uint32_t n)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint32_t)((rng_state * 2685821657736338717ull) >> 32) % n;
}

/* Register and unregister in random order; after every step the client
 * touched is (or is not) found, and so is every other registered one
 * (all of them for the first 1500 steps, near the 50% load where deletes
 * shift the most entries; then a sample, with a full sweep every 500). */
START_TEST(test_churn)
{
	setup();
	snapshot_counts();
	enum { N = 1300, STEPS = 12000, FULL_STEPS = 1500 };
	rng_state = 0x9e3779b97f4a7c15ull;
	struct client **c = calloc(N, sizeof(*c));
	ck_assert_ptr_nonnull(c);
	int *live = calloc(N, sizeof(*live)); /* indices of registered clients */
	int *pos = calloc(N, sizeof(*pos));   /* index in live, or -1 */
	ck_assert_ptr_nonnull(live);
	ck_assert_ptr_nonnull(pos);
	struct client **sweep_buf = calloc(N, sizeof(*sweep_buf));
	ck_assert_ptr_nonnull(sweep_buf);
	int nlive = 0;
	for (int i = 0; i < N; i++) {
		c[i] = client_new(workers[rnd(NW)]);
		pos[i] = -1;
	}
	/* start at 500 of 1024 slots */
	for (int i = 0; i < 500; i++) {
		if (cancel_register(c[i]) != 0)
			ck_abort();
		pos[i] = nlive;
		live[nlive++] = i;
	}
	for (int step = 0; step < STEPS; step++) {
		int i;
		/* keep the load high: mostly swap one out and one in */
		if (step < FULL_STEPS)
			i = (step % 2 == 0 && nlive > 0) ? live[rnd((uint32_t)nlive)] : (int)rnd(N);
		else
			i = (int)rnd(N);
		if (pos[i] >= 0) {
			uint32_t pid = c[i]->cancel_pid, key = c[i]->cancel_key;
			cancel_unregister(c[i]);
			int p = pos[i];
			live[p] = live[--nlive];
			pos[live[p]] = p;
			pos[i] = -1;
			check_not_found(pid, key);
		} else {
			if (cancel_register(c[i]) != 0)
				ck_abort();
			pos[i] = nlive;
			live[nlive++] = i;
			check_found(c[i]);
		}
		if (step < FULL_STEPS || step % 500 == 0) {
			for (int k = 0; k < nlive; k++)
				sweep_buf[k] = c[live[k]];
			sweep(sweep_buf, nlive);
		} else {
			for (int k = 0; k < 8 && nlive > 0; k++)
				check_found(c[live[rnd((uint32_t)nlive)]]);
		}
	}
	for (int k = 0; k < nlive; k++)
		check_found(c[live[k]]);
	for (int i = 0; i < N; i++) {
		cancel_unregister(c[i]);
		free(c[i]);
	}
	free(c);
	free(live);
	free(pos);
	free(sweep_buf);
}
END_TEST

/* Home slot of PID in a table of 1024 slots, as cancel.c hashes it. Only
 * used to pick which clients to keep below: were the hash to change, this
 * test would still pass, just with less pressure on the seam. */
static uint32_t home1024(uint32_t pid)
{
	return (pid * 2654435761u) & 1023u;
}

static bool at_seam(uint32_t pid)
{
	uint32_t h = home1024(pid);
	return h >= 1000 || h < 10;
}

/* Linear probing wraps from the last slot to the first: a delete there must
 * shift back entries whose home is near the end but which sit at the start
 * (the subtle case of backward-shift deletion). Keep 60 clients whose home
 * is within 34 slots around the end of the 1024-slot table, so that their
 * cluster crosses it, among 300 others; then delete and re-create seam
 * clients at random, checking every seam client after each step. */
START_TEST(test_churn_seam)
{
	setup();
	snapshot_counts();
	enum { SEAM = 60, FILL = 300, STEPS = 1000, MAXC = 200000 };
	rng_state = 0x2545f4914f6cdd1dull;
	struct client *seam[SEAM], *fill[FILL];
	int tries = 0;
	/* a fresh client at the seam: register, keep if its home is there */
#define NEW_SEAM(dst)                                                                              \
	do {                                                                                       \
		struct client *nc_ = client_new(workers[rnd(NW)]);                                 \
		for (;;) {                                                                         \
			if (cancel_register(nc_) != 0 || ++tries > MAXC)                           \
				ck_abort_msg("cannot register a seam client");                     \
			if (at_seam(nc_->cancel_pid))                                              \
				break;                                                             \
			cancel_unregister(nc_); /* a delete elsewhere: more churn */               \
		}                                                                                  \
		(dst) = nc_;                                                                       \
	} while (0)
	for (int i = 0; i < FILL; i++) {
		fill[i] = client_new(workers[rnd(NW)]);
		if (cancel_register(fill[i]) != 0)
			ck_abort();
	}
	for (int i = 0; i < SEAM; i++)
		NEW_SEAM(seam[i]);
	sweep(seam, SEAM);
	sweep(fill, FILL);
	for (int step = 0; step < STEPS; step++) {
		int i = (int)rnd(SEAM);
		uint32_t pid = seam[i]->cancel_pid, key = seam[i]->cancel_key;
		cancel_unregister(seam[i]);
		free(seam[i]);
		check_not_found(pid, key);
		/* every other seam client, right after the delete */
		struct client *others[SEAM];
		int n = 0;
		for (int k = 0; k < SEAM; k++)
			if (k != i)
				others[n++] = seam[k];
		sweep(others, n);
		NEW_SEAM(seam[i]);
		sweep(seam, SEAM);
		if (step % 100 == 0)
			sweep(fill, FILL);
	}
#undef NEW_SEAM
	sweep(fill, FILL);
	for (int i = 0; i < SEAM; i++) {
		cancel_unregister(seam[i]);
		free(seam[i]);
	}
	for (int i = 0; i < FILL; i++) {
		cancel_unregister(fill[i]);
		free(fill[i]);
	}
}
END_TEST

/* The client goes away between cancel_request and run_cancel: run_cancel
 * looks it up again and finds nothing (ASan: no use of the freed client). */
START_TEST(test_client_gone_before_run)
{
	setup();
	snapshot_counts();
	struct client *c = client_new(workers[2]);
	ck_assert_int_eq(cancel_register(c), 0);
	cancel_request(c->cancel_pid, c->cancel_key, "test");
	ck_assert_int_eq(added(workers[2]), base_count[2] + 1);
	cancel_unregister(c);
	free(c);
	flush_all();
}
END_TEST

/* ---- run_cancel on a real worker thread ---- */

/* Run FN(ARG) on W's thread and wait for it. */
struct on_worker {
	pthread_mutex_t m;
	pthread_cond_t cv;
	bool done;
	void (*fn)(void *);
	void *arg;
};

static void on_worker_cb(evutil_socket_t fd, short what, void *arg)
{
	struct on_worker *ow = arg;
	ow->fn(ow->arg);
	pthread_mutex_lock(&ow->m);
	ow->done = true;
	pthread_cond_signal(&ow->cv);
	pthread_mutex_unlock(&ow->m);
}

static void run_on(struct worker *w, void (*fn)(void *), void *arg)
{
	struct on_worker ow = {.fn = fn, .arg = arg};
	pthread_mutex_init(&ow.m, NULL);
	pthread_cond_init(&ow.cv, NULL);
	struct timeval zero = {0, 0};
	ck_assert_int_eq(event_base_once(w->base, -1, EV_TIMEOUT, on_worker_cb, &ow, &zero), 0);
	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 10;
	pthread_mutex_lock(&ow.m);
	while (!ow.done)
		ck_assert_int_eq(pthread_cond_timedwait(&ow.cv, &ow.m, &deadline), 0);
	pthread_mutex_unlock(&ow.m);
	pthread_mutex_destroy(&ow.m);
	pthread_cond_destroy(&ow.cv);
}

static int listen_local(int *port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(fd, 8), 0);
	socklen_t len = sizeof(a);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

/* A connection on LFD within MS milliseconds, or -1. */
static int accept_within(int lfd, int ms)
{
	struct pollfd p = {.fd = lfd, .events = POLLIN};
	if (poll(&p, 1, ms) != 1)
		return -1;
	return accept(lfd, NULL, NULL);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

struct cancels_left {
	struct server *s;
	int n;
};

static void read_cancels(void *arg)
{
	struct cancels_left *cl = arg;
	cl->n = cl->s->cancels_in_flight;
}

/* An active client with a query in flight: its cancel is sent to the
 * backend of its server, with the backend's pid and key (not the client's),
 * from the client's worker. A wrong key sends nothing. */
START_TEST(test_cancel_reaches_backend)
{
	setup();
	int lport;
	int lfd = listen_local(&lport);
	db.port = lport;
	struct worker *w = workers[1];
	struct pool *p = pool_get(&db, "app");
	ck_assert_ptr_nonnull(p);
	struct client *c = client_new(w);
	struct server *s = calloc(1, sizeof(*s));
	ck_assert_ptr_nonnull(s);
	s->fd = -1;
	s->worker = w;
	s->pool = p;
	s->state = SV_ACTIVE;
	s->ext_open = true; /* Parse/Bind/Execute sent, no Sync yet */
	s->be_pid = 4242;
	s->be_key = 0x01020304;
	ck_assert_int_eq(route_get(p, &s->route), 0); /* where it was opened: its cancels go there */
	sstmt_init(&s->stmts);
	s->client = c;
	c->server = s;
	c->state = CL_ACTIVE;
	ck_assert_int_eq(cancel_register(c), 0);
	ck_assert_int_eq(worker_start(w), 0);

	cancel_request(c->cancel_pid, c->cancel_key ^ 0x55u, "test");
	ck_assert_int_eq(accept_within(lfd, 300), -1);

	cancel_request(c->cancel_pid, c->cancel_key, "test");
	int fd = accept_within(lfd, 5000);
	ck_assert_int_ge(fd, 0);
	uint8_t buf[16];
	size_t got = 0;
	while (got < sizeof(buf)) {
		ssize_t r = read(fd, buf + got, sizeof(buf) - got);
		ck_assert_int_gt(r, 0);
		got += (size_t)r;
	}
	ck_assert_uint_eq(be32(buf), 16);
	ck_assert_uint_eq(be32(buf + 4), 80877102); /* CancelRequest code */
	ck_assert_uint_eq(be32(buf + 8), 4242);
	ck_assert_uint_eq(be32(buf + 12), 0x01020304);
	close(fd); /* the server has processed it: the cancel connection ends */
	struct cancels_left cl = {.s = s};
	for (int i = 0; i < 500; i++) {
		run_on(w, read_cancels, &cl);
		if (cl.n == 0)
			break;
		usleep(10000);
	}
	ck_assert_int_eq(cl.n, 0);
	worker_stop(w);
	worker_join(w);
	cancel_unregister(c);
	sstmt_clear(&s->stmts);
	free(s);
	free(c);
	close(lfd);
}
END_TEST

/* A Query in C's input, as if read from its socket. */
static void add_query(struct client *c)
{
	static const char q[] = "SELECT pg_sleep(10)";
	uint8_t hdr[5] = {'Q', 0, 0, 0, (uint8_t)(4 + sizeof(q))};
	struct evbuffer *in = bufferevent_get_input(c->bev);
	evbuffer_unfreeze(in, 0); /* a socket bufferevent freezes its input's end */
	ck_assert_int_eq(evbuffer_add(in, hdr, 5), 0);
	ck_assert_int_eq(evbuffer_add(in, q, sizeof(q)), 0);
	evbuffer_freeze(in, 0);
}

static void never_cb(evutil_socket_t fd, short what, void *arg)
{
	ck_abort_msg("the borrow timer was never started");
}

/* A waiting client with a Query in its input. */
static struct client *waiting_client(struct worker *w, struct pool *p)
{
	struct client *c = client_new(w);
	c->pool = p;
	c->bev = bufferevent_socket_new(w->base, -1, 0);
	ck_assert_ptr_nonnull(c->bev);
	c->timer = evtimer_new(w->base, never_cb, NULL); /* never added */
	ck_assert_ptr_nonnull(c->timer);
	add_query(c);
	ck_assert_int_eq(cancel_register(c), 0);
	return c;
}

static void client_free_test(struct client *c)
{
	cancel_unregister(c);
	if (c->bev)
		bufferevent_free(c->bev);
	if (c->timer)
		event_free(c->timer);
	free(c);
}

/* What pgmux wrote to C: "E:<sqlstate>" / "Z:<status>" words (drained). */
static void written(struct client *c, char *buf, size_t cap)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	size_t pos = 0;
	buf[0] = '\0';
	evbuffer_unfreeze(out, 1); /* a socket bufferevent freezes its output's front */
	while (evbuffer_get_length(out) >= 5) {
		uint8_t hdr[5];
		evbuffer_remove(out, hdr, 5);
		uint32_t len = be32(hdr + 1);
		ck_assert_uint_ge(len, 4);
		char *body = calloc(1, len - 4 + 1);
		ck_assert_ptr_nonnull(body);
		ck_assert_int_eq(evbuffer_remove(out, body, len - 4), (int)(len - 4));
		char word[32];
		if (hdr[0] == 'E') {
			const char *code = "?";
			for (size_t i = 0; i < len - 4 && body[i];) {
				if (body[i] == 'C')
					code = body + i + 1;
				i += 1 + strlen(body + i + 1) + 1;
			}
			snprintf(word, sizeof(word), "E:%s", code);
		} else if (hdr[0] == 'Z') {
			snprintf(word, sizeof(word), "Z:%c", body[0]);
		} else {
			snprintf(word, sizeof(word), "%c", hdr[0]);
		}
		free(body);
		pos += (size_t)snprintf(buf + pos, cap - pos, "%s%s", pos ? " " : "", word);
	}
	evbuffer_freeze(out, 1);
}

struct wait_snapshot {
	struct client *c;
	enum client_state state;
	char out[128];
	size_t input_left;
	bool in_inbox;
};

static void snap(void *arg)
{
	struct wait_snapshot *ws = arg;
	ws->state = ws->c->state;
	ws->input_left = evbuffer_get_length(bufferevent_get_input(ws->c->bev));
	ws->in_inbox = ws->c->in_inbox;
	char more[128];
	written(ws->c, more, sizeof(more));
	if (more[0])
		snprintf(ws->out + strlen(ws->out), sizeof(ws->out) - strlen(ws->out), "%s%s",
		         ws->out[0] ? " " : "", more);
}

/* The cancel of a client that waits for a server, carried out on its
 * worker: it leaves the queue and gets 57014 + ReadyForQuery as PostgreSQL
 * would answer a cancelled query; its Query is consumed. */
START_TEST(test_cancel_waiting_client)
{
	setup();
	struct worker *w = workers[0];
	struct pool *p = pool_get(&db, "app");
	struct client *c1 = client_new(w), *c2 = waiting_client(w, p);
	struct server *out = NULL;
	c1->pool = p;
	ck_assert_int_eq(pool_acquire(p, c1, &out), POOL_CONNECT); /* the only slot */
	ck_assert_int_eq(pool_acquire(p, c2, &out), POOL_WAIT);
	c2->state = CL_WAITING;
	ck_assert_int_eq(pool_get_stats(p).waiting, 1);
	ck_assert_int_eq(worker_start(w), 0);

	cancel_request(c2->cancel_pid, c2->cancel_key, "test");
	struct wait_snapshot ws = {.c = c2};
	for (int i = 0; i < 500 && ws.state != CL_IDLE; i++) {
		run_on(w, snap, &ws);
		if (ws.state != CL_IDLE)
			usleep(10000);
	}
	ck_assert_int_eq(ws.state, CL_IDLE);
	ck_assert_str_eq(ws.out, "E:57014 Z:I");
	ck_assert_uint_eq(ws.input_left, 0);
	struct pool_stats st = pool_get_stats(p);
	ck_assert_int_eq(st.waiting, 0);
	ck_assert_int_eq(st.total, 1);
	worker_stop(w);
	worker_join(w);
	pool_slot_free(p);
	client_free_test(c2);
	free(c1);
}
END_TEST

/* The same cancel (client_cancel_local, what run_cancel calls for a waiting
 * client), arriving after the pool had granted the waiter a slot to open a
 * server with, before its worker took the grant: the slot goes back to the
 * pool (and to the next waiter if there is one). Run on the test thread,
 * with the workers not started, so that the grant's wake-up cannot run
 * first. */
START_TEST(test_cancel_waiting_granted_slot)
{
	setup();
	struct worker *w = workers[0];
	struct pool *p = pool_get(&db, "app");
	struct client *c1 = client_new(w), *c2 = waiting_client(w, p);
	struct client *c3 = waiting_client(workers[1], p);
	struct server *out = NULL;
	c1->pool = p;
	ck_assert_int_eq(pool_acquire(p, c1, &out), POOL_CONNECT);
	ck_assert_int_eq(pool_acquire(p, c2, &out), POOL_WAIT);
	c2->state = CL_WAITING;
	/* c1's server could not connect: its slot goes to c2 */
	pool_slot_free(p);
	ck_assert(c2->slot_granted);
	ck_assert(c2->in_inbox);
	struct pool_stats st = pool_get_stats(p);
	ck_assert_int_eq(st.total, 1);
	ck_assert_int_eq(st.waiting, 0);
	client_cancel_local(c2);
	ck_assert_int_eq(c2->state, CL_IDLE);
	ck_assert(!c2->slot_granted);
	ck_assert(!c2->in_inbox);
	char buf[128];
	written(c2, buf, sizeof(buf));
	ck_assert_str_eq(buf, "E:57014 Z:I");
	st = pool_get_stats(p);
	ck_assert_int_eq(st.total, 0);
	/* the slot is free again */
	ck_assert_int_eq(pool_acquire(p, c1, &out), POOL_CONNECT);

	/* now with another waiter behind: the slot passes on to it */
	c2->state = CL_IDLE;
	add_query(c2);
	ck_assert_int_eq(pool_acquire(p, c2, &out), POOL_WAIT);
	c2->state = CL_WAITING;
	ck_assert_int_eq(pool_acquire(p, c3, &out), POOL_WAIT);
	c3->state = CL_WAITING;
	pool_slot_free(p);
	ck_assert(c2->slot_granted);
	client_cancel_local(c2);
	ck_assert(!c2->slot_granted);
	ck_assert(c3->slot_granted);
	ck_assert(c3->in_inbox);
	st = pool_get_stats(p);
	ck_assert_int_eq(st.total, 1);
	ck_assert_int_eq(st.waiting, 0);
	client_cancel_local(c3);
	ck_assert_int_eq(pool_get_stats(p).total, 0);
	/* the wake-ups the grants asked for find empty inboxes */
	event_base_loop(workers[0]->base, EVLOOP_NONBLOCK);
	event_base_loop(workers[1]->base, EVLOOP_NONBLOCK);
	client_free_test(c2);
	client_free_test(c3);
	free(c1);
}
END_TEST

/* A parked server (SV_IDLE on worker W) as the pool would hold it. */
static struct server *parked_server(struct worker *w, struct pool *p, int *peer)
{
	int sv[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct server *s = calloc(1, sizeof(*s));
	ck_assert_ptr_nonnull(s);
	s->fd = sv[0];
	*peer = sv[1];
	s->worker = w;
	s->pool = p;
	s->txn = 'I';
	s->logged_in = true;
	sstmt_init(&s->stmts);
	s->bev = bufferevent_socket_new(w->base, s->fd, 0);
	ck_assert_ptr_nonnull(s->bev);
	return s;
}

/* A server handed to a waiting client (reserved for it), the client
 * cancelled before its worker took it: the server is parked again, or goes
 * to the next waiter. Also for a server that came from another worker
 * detached (no bufferevent): the client's worker adopts it first. */
START_TEST(test_cancel_waiting_reserved_server)
{
	setup();
	struct worker *w = workers[0];
	struct pool *p = pool_get(&db, "app");
	struct client *c1 = client_new(w), *c2 = waiting_client(w, p);
	struct client *c3 = waiting_client(w, p);
	struct server *out = NULL;
	int peer;
	c1->pool = p;
	ck_assert_int_eq(pool_acquire(p, c1, &out), POOL_CONNECT); /* c1's server: s */
	struct server *s = parked_server(w, p, &peer);
	ck_assert_int_eq(pool_acquire(p, c2, &out), POOL_WAIT);
	c2->state = CL_WAITING;
	ck_assert_int_eq(pool_acquire(p, c3, &out), POOL_WAIT);
	c3->state = CL_WAITING;

	/* c1 is done: s goes to the first waiter, c2 */
	pool_release(p, s);
	ck_assert_ptr_eq(c2->reserved, s);
	ck_assert_int_eq(s->state, SV_RESERVED);
	client_cancel_local(c2);
	ck_assert_ptr_null(c2->reserved);
	ck_assert_int_eq(c2->state, CL_IDLE);
	char buf[128];
	written(c2, buf, sizeof(buf));
	ck_assert_str_eq(buf, "E:57014 Z:I");
	/* ... and on to c3 */
	ck_assert_ptr_eq(c3->reserved, s);
	ck_assert(c3->in_inbox);
	client_cancel_local(c3);
	ck_assert_ptr_null(c3->reserved);
	ck_assert_int_eq(s->state, SV_IDLE); /* parked */
	struct pool_stats st = pool_get_stats(p);
	ck_assert_int_eq(st.total, 1);
	ck_assert_int_eq(st.idle, 1);
	ck_assert_int_eq(st.waiting, 0);

	/* detached: handed over by another worker, it has no bufferevent */
	ck_assert(pool_claim_idle(p, s));
	bufferevent_free(s->bev);
	s->bev = NULL;
	s->worker = NULL;
	c2->state = CL_IDLE;
	add_query(c2);
	ck_assert_int_eq(pool_acquire(p, c2, &out), POOL_WAIT);
	c2->state = CL_WAITING;
	pool_release(p, s); /* as release_locked on another worker after server_detach */
	ck_assert_ptr_eq(c2->reserved, s);
	client_cancel_local(c2);
	ck_assert_ptr_nonnull(s->bev); /* adopted by c2's worker */
	ck_assert_ptr_eq(s->worker, w);
	ck_assert_int_eq(s->state, SV_IDLE);
	ck_assert_int_eq(pool_get_stats(p).idle, 1);

	/* the server is still usable: take it and close it */
	ck_assert(pool_claim_idle(p, s));
	server_destroy(s, "test");
	close(peer);
	ck_assert_int_eq(pool_get_stats(p).total, 0);
	event_base_loop(w->base, EVLOOP_NONBLOCK);
	client_free_test(c2);
	client_free_test(c3);
	free(c1);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("cancel");
	TCase *tc = tcase_create("table");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_register_many);
	tcase_add_test(tc, test_unregister_guards);
	tcase_add_test(tc, test_churn);
	tcase_add_test(tc, test_churn_seam);
	tcase_add_test(tc, test_client_gone_before_run);
	suite_add_tcase(s, tc);
	tc = tcase_create("dispatch");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_cancel_reaches_backend);
	tcase_add_test(tc, test_cancel_waiting_client);
	tcase_add_test(tc, test_cancel_waiting_granted_slot);
	tcase_add_test(tc, test_cancel_waiting_reserved_server);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
