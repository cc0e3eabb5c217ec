/* Pools, the wait queue and the hand-off of servers between workers.
 * See pool.h. */
#include "pool/pool.h"

#include "core/log.h"
#include "net/sockopt.h"
#include "net/worker.h"
#include "pool/conn.h"
#include "pool/creds.h"
#include "pool/client.h"
#include "pool/server.h"

#include <event2/event.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* What SHOW POOLS tells apart (see struct pool_counts). */
enum { CAT_ACTIVE, CAT_WAITING, CAT_IDLE, CAT_USED, CAT_LOGIN, CAT_CLOSING, CAT_N };

struct pool {
	char *db_name;                   /* owned: client-facing database name */
	char *user;                      /* owned */
	const struct config_db *db;      /* borrowed from the config */
	pthread_mutex_t lock;
	int pool_size;
	int min_pool_size;
	int total;                       /* [lock] servers open or connecting */
	int nidle;                       /* [lock] */
	struct server_list *idle;        /* [lock] one list per worker */
	struct client_list waiters;      /* [lock] FIFO */
	int nwaiters;                    /* [lock] */
	bool welcome_ready;              /* [lock] set once; read with acquire without it */
	struct kvlist welcome;           /* first server's ParameterStatus set: written once,
					  * under lock, before welcome_ready; immutable after */
	uint64_t client_key_version;     /* [lock] creds version of client_key; 0: none */
	uint8_t client_key[SCRAM_KEY_LEN]; /* [lock] recovered from a client's SCRAM proof */
	uint64_t derived_version;        /* [lock] creds version of derived; 0: none */
	struct scram_secret derived;     /* [lock] SCRAM secret derived from a plain password */
	int ncl[CAT_N];                  /* atomic: clients per category (cat_of_client) */
	int nsv[CAT_N];                  /* atomic: servers per category (cat_of_server) */
	struct pool *next;               /* [pools_lock] */
};

static struct {
	struct config *cfg;        /* borrowed */
	struct authfile *af;       /* borrowed */
	struct worker **workers;   /* borrowed */
	int nworkers;
	pthread_mutex_t lock;      /* guards the pool list */
	struct pool *pools;
} g = {.lock = PTHREAD_MUTEX_INITIALIZER};

uint64_t conn_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void pool_global_init(struct config *cfg, struct authfile *af, struct worker **workers,
		      int nworkers)
{
	g.cfg = cfg;
	g.af = af;
	g.workers = workers;
	g.nworkers = nworkers;
}

const struct config *pool_config(void) { return g.cfg; }
const struct authfile *pool_authfile(void) { return g.af; }

void pool_tcp_options(struct sockopt_tcp *out)
{
	*out = (struct sockopt_tcp){.keepalive = g.cfg->tcp_keepalive,
				    .keepidle = g.cfg->tcp_keepidle,
				    .keepintvl = g.cfg->tcp_keepintvl,
				    .keepcnt = g.cfg->tcp_keepcnt,
				    .user_timeout_ms = g.cfg->tcp_user_timeout};
}
struct worker *pool_worker(int i) { return g.workers[i]; }
int pool_nworkers(void) { return g.nworkers; }

struct pool *pool_get(const struct config_db *db, const char *user)
{
	pthread_mutex_lock(&g.lock);
	struct pool *p;
	for (p = g.pools; p; p = p->next)
		if (strcmp(p->db_name, db->name) == 0 && strcmp(p->user, user) == 0)
			break;
	if (!p) {
		p = calloc(1, sizeof(*p));
		if (p) {
			p->db_name = strdup(db->name);
			p->user = strdup(user);
			p->idle = calloc((size_t)g.nworkers, sizeof(*p->idle));
			if (!p->db_name || !p->user || !p->idle) {
				free(p->db_name);
				free(p->user);
				free(p->idle);
				free(p);
				p = NULL;
			}
		}
		if (p) {
			p->db = db;
			p->pool_size = db->pool_size;
			p->min_pool_size = db->min_pool_size;
			pthread_mutex_init(&p->lock, NULL);
			for (int i = 0; i < g.nworkers; i++)
				TAILQ_INIT(&p->idle[i]);
			TAILQ_INIT(&p->waiters);
			p->next = g.pools;
			g.pools = p;
		}
	}
	pthread_mutex_unlock(&g.lock);
	return p;
}

const char *pool_db_name(const struct pool *p) { return p->db_name; }
const char *pool_user(const struct pool *p) { return p->user; }
const struct config_db *pool_db(const struct pool *p) { return p->db; }

/* [lock] Take an idle server parked on worker WID. Only worker WID's own
 * thread takes from (or parks on) its list: its servers' bufferevents live on
 * its base and stay watched while idle. */
static struct server *take_idle(struct pool *p, int wid)
{
	struct server *s = TAILQ_FIRST(&p->idle[wid]);
	if (s) {
		TAILQ_REMOVE(&p->idle[wid], s, idle_entry);
		p->nidle--;
		server_set_state(s, SV_RESERVED);
	}
	return s;
}

/* [lock] A worker other than WID_SKIP... any worker with a parked server,
 * or -1. */
static int worker_with_idle(struct pool *p)
{
	if (p->nidle == 0)
		return -1;
	for (int i = 0; i < g.nworkers; i++)
		if (!TAILQ_EMPTY(&p->idle[i]))
			return i;
	return -1;
}

static void release_locked(struct pool *p, struct server *s);

/* On the worker that owns parked servers of P: hand one to the first waiter
 * (a client on another worker asked for it). */
static void evict_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pool *p = arg;
	struct worker *w = worker_current();
	pthread_mutex_lock(&p->lock);
	if (!TAILQ_EMPTY(&p->waiters)) {
		struct server *s = take_idle(p, w->id);
		if (s)
			release_locked(p, s);
	}
	pthread_mutex_unlock(&p->lock);
}

static void request_evict(struct pool *p, int wid)
{
	struct timeval zero = {0, 0};
	if (event_base_once(g.workers[wid]->base, -1, EV_TIMEOUT, evict_cb, p, &zero) < 0)
		log_warn("evict_failed", "db=%s user=%s worker=%d", p->db_name, p->user, wid);
}

/* [lock] Queue C on its worker's inbox and wake that worker. */
static void inbox_push(struct client *c)
{
	struct pool_worker *pw = c->worker->ctx;
	pthread_mutex_lock(&pw->inbox_lock);
	if (!c->in_inbox) {
		TAILQ_INSERT_TAIL(&pw->inbox, c, inbox_entry);
		c->in_inbox = true;
	}
	pthread_mutex_unlock(&pw->inbox_lock);
	worker_wake(c->worker);
}

static void inbox_remove(struct client *c)
{
	struct pool_worker *pw = c->worker->ctx;
	pthread_mutex_lock(&pw->inbox_lock);
	if (c->in_inbox) {
		TAILQ_REMOVE(&pw->inbox, c, inbox_entry);
		c->in_inbox = false;
	}
	pthread_mutex_unlock(&pw->inbox_lock);
}

enum pool_acquire_result pool_acquire(struct pool *p, struct client *c, struct server **out)
{
	*out = NULL;
	pthread_mutex_lock(&p->lock);
	if (TAILQ_EMPTY(&p->waiters)) {
		struct server *s = take_idle(p, c->worker->id);
		if (s) {
			pthread_mutex_unlock(&p->lock);
			*out = s;
			return POOL_GOT_SERVER;
		}
		if (p->total < p->pool_size) {
			p->total++;
			pthread_mutex_unlock(&p->lock);
			return POOL_CONNECT;
		}
	}
	TAILQ_INSERT_TAIL(&p->waiters, c, wait_entry);
	p->nwaiters++;
	/* a server parked on another worker: its owner hands it over */
	int wid = worker_with_idle(p);
	pthread_mutex_unlock(&p->lock);
	if (wid >= 0)
		request_evict(p, wid);
	return POOL_WAIT;
}

/* [lock] Give S to the first waiter, or park it. Runs on S's worker (or,
 * for a detached S, on the thread that will own it). */
static void release_locked(struct pool *p, struct server *s)
{
	struct client *c = TAILQ_FIRST(&p->waiters);
	if (c) {
		TAILQ_REMOVE(&p->waiters, c, wait_entry);
		p->nwaiters--;
		if (s->bev && s->worker != c->worker)
			server_detach(s); /* the waiter's worker attaches it to its own base */
		c->reserved = s;
		server_set_state(s, SV_RESERVED);
		inbox_push(c);
		return;
	}
	server_set_state(s, SV_IDLE);
	s->idle_since_ms = conn_now_ms();
	TAILQ_INSERT_HEAD(&p->idle[s->worker->id], s, idle_entry);
	p->nidle++;
}

void pool_release(struct pool *p, struct server *s)
{
	pthread_mutex_lock(&p->lock);
	release_locked(p, s);
	pthread_mutex_unlock(&p->lock);
}

/* [lock] A slot became free: grant it to the first waiter if any. */
static void slot_free_locked(struct pool *p)
{
	p->total--;
	struct client *c = TAILQ_FIRST(&p->waiters);
	if (c && p->total < p->pool_size) {
		TAILQ_REMOVE(&p->waiters, c, wait_entry);
		p->nwaiters--;
		c->slot_granted = true;
		p->total++;
		inbox_push(c);
	}
}

void pool_slot_free(struct pool *p)
{
	pthread_mutex_lock(&p->lock);
	slot_free_locked(p);
	pthread_mutex_unlock(&p->lock);
}

void pool_leave_queue(struct pool *p, struct client *c)
{
	pthread_mutex_lock(&p->lock);
	struct server *dead = NULL;
	if (c->reserved) {
		struct server *s = c->reserved;
		c->reserved = NULL;
		/* a detached server is adopted by this worker before it is parked */
		if (!s->bev && server_attach(s, c->worker) < 0)
			dead = s;
		else
			release_locked(p, s);
	} else if (c->slot_granted) {
		c->slot_granted = false;
		slot_free_locked(p);
	} else {
		struct client *it;
		TAILQ_FOREACH(it, &p->waiters, wait_entry) {
			if (it == c) {
				TAILQ_REMOVE(&p->waiters, c, wait_entry);
				p->nwaiters--;
				break;
			}
		}
	}
	inbox_remove(c);
	pthread_mutex_unlock(&p->lock);
	if (dead)
		server_destroy(dead, "out_of_memory");
}

struct server *pool_take_grant(struct pool *p, struct client *c, bool *slot)
{
	pthread_mutex_lock(&p->lock);
	struct server *s = c->reserved;
	c->reserved = NULL;
	*slot = c->slot_granted;
	c->slot_granted = false;
	pthread_mutex_unlock(&p->lock);
	return s;
}

bool pool_claim_idle(struct pool *p, struct server *s)
{
	pthread_mutex_lock(&p->lock);
	bool ok = s->state == SV_IDLE;
	if (ok) {
		TAILQ_REMOVE(&p->idle[s->worker->id], s, idle_entry);
		p->nidle--;
		server_set_state(s, SV_RESERVED);
	}
	pthread_mutex_unlock(&p->lock);
	return ok;
}

bool pool_welcome(struct pool *p, struct kvlist *out)
{
	pthread_mutex_lock(&p->lock);
	bool ok = p->welcome_ready && kvlist_copy(out, &p->welcome) == 0;
	pthread_mutex_unlock(&p->lock);
	return ok;
}

void pool_set_welcome(struct pool *p, const struct kvlist *params)
{
	pthread_mutex_lock(&p->lock);
	if (!p->welcome_ready && kvlist_copy(&p->welcome, params) == 0)
		__atomic_store_n(&p->welcome_ready, true, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&p->lock);
}

const struct kvlist *pool_welcome_shared(struct pool *p)
{
	/* written once, before welcome_ready, and never again */
	return __atomic_load_n(&p->welcome_ready, __ATOMIC_ACQUIRE) ? &p->welcome : NULL;
}

void pool_set_client_key(struct pool *p, const uint8_t key[SCRAM_KEY_LEN], uint64_t version)
{
	pthread_mutex_lock(&p->lock);
	memcpy(p->client_key, key, SCRAM_KEY_LEN);
	p->client_key_version = version;
	pthread_mutex_unlock(&p->lock);
}

bool pool_client_key(struct pool *p, uint64_t version, uint8_t key[SCRAM_KEY_LEN])
{
	pthread_mutex_lock(&p->lock);
	bool have = version != 0 && p->client_key_version == version;
	if (have)
		memcpy(key, p->client_key, SCRAM_KEY_LEN);
	pthread_mutex_unlock(&p->lock);
	return have;
}

int pool_client_scram_secret(struct pool *p, const struct creds *cr, struct scram_secret *out)
{
	if (!cr->secret || cr->secret->kind != SECRET_PLAIN)
		return -1;
	pthread_mutex_lock(&p->lock);
	if (p->derived_version != cr->version) {
		/* first use, or the password changed: derive (once per version) */
		uint8_t salt[16];
		OPENSSL_cleanse(&p->derived, sizeof(p->derived));
		p->derived_version = 0;
		if (RAND_bytes(salt, sizeof(salt)) == 1 &&
		    scram_secret_from_password(cr->secret->value, salt, sizeof(salt),
					       SCRAM_DEFAULT_ITERATIONS, &p->derived, NULL) == 0)
			p->derived_version = cr->version;
	}
	int rc = p->derived_version == cr->version ? 0 : -1;
	if (rc == 0)
		*out = p->derived;
	pthread_mutex_unlock(&p->lock);
	return rc;
}

struct pool_stats pool_get_stats(struct pool *p)
{
	pthread_mutex_lock(&p->lock);
	struct pool_stats st = {.total = p->total, .idle = p->nidle, .waiting = p->nwaiters};
	pthread_mutex_unlock(&p->lock);
	return st;
}

static int cat_of_client(int st)
{
	switch (st) {
	case CL_IDLE:
	case CL_ACTIVE:
		return CAT_ACTIVE;
	case CL_WAITING:
		return CAT_WAITING;
	case CL_LOGIN:
		return CAT_LOGIN;
	case CL_CLOSING:
		return CAT_CLOSING;
	default:
		return -1;
	}
}

static int cat_of_server(int st)
{
	switch (st) {
	case SV_ACTIVE:
	case SV_INTERNAL:
		return CAT_ACTIVE;
	case SV_IDLE:
		return CAT_IDLE;
	case SV_RELEASING:
	case SV_RESERVED:
		return CAT_USED;
	case SV_CONNECTING:
		return CAT_LOGIN;
	case SV_CLOSING:
		return CAT_CLOSING;
	default:
		return -1;
	}
}

/* Only a change of category costs atomics: a client going from idle to
 * linked and back, every transaction, costs nothing. */
static void count(int *n, int from, int to)
{
	if (from == to)
		return;
	if (from >= 0)
		__atomic_fetch_sub(&n[from], 1, __ATOMIC_RELAXED);
	if (to >= 0)
		__atomic_fetch_add(&n[to], 1, __ATOMIC_RELAXED);
}

void pool_count_client(struct pool *p, int from, int to)
{
	if (p)
		count(p->ncl, cat_of_client(from), cat_of_client(to));
}

void pool_count_server(struct pool *p, int from, int to)
{
	if (p)
		count(p->nsv, cat_of_server(from), cat_of_server(to));
}

static int get(const int *n, int cat)
{
	return __atomic_load_n(&n[cat], __ATOMIC_RELAXED);
}

struct pool_counts pool_counts(struct pool *p)
{
	struct pool_counts pc = {
		.cl_active = get(p->ncl, CAT_ACTIVE),
		.cl_waiting = get(p->ncl, CAT_WAITING),
		.sv_active = get(p->nsv, CAT_ACTIVE),
		.sv_idle = get(p->nsv, CAT_IDLE),
		.sv_used = get(p->nsv, CAT_USED),
		.sv_login = get(p->nsv, CAT_LOGIN),
	};
	pthread_mutex_lock(&p->lock);
	struct client *oldest = TAILQ_FIRST(&p->waiters);
	uint64_t now = conn_now_ms();
	if (oldest && now > oldest->wait_start_ms)
		pc.maxwait_us = (now - oldest->wait_start_ms) * 1000;
	pthread_mutex_unlock(&p->lock);
	return pc;
}

int pool_total_servers(void)
{
	int n = 0;
	pthread_mutex_lock(&g.lock);
	for (struct pool *p = g.pools; p; p = p->next) {
		pthread_mutex_lock(&p->lock);
		n += p->total;
		pthread_mutex_unlock(&p->lock);
	}
	pthread_mutex_unlock(&g.lock);
	return n;
}

static bool server_can_login(struct pool *p)
{
	struct creds cr = creds_get(p);
	if (!cr.secret)
		return true; /* trust on the server side, or it fails and says why */
	return cr.secret->kind != SECRET_SCRAM || p->client_key_version == cr.version;
}

static void janitor_pool(struct pool *p, struct worker *w, uint64_t now)
{
	const struct config *cfg = g.cfg;
	struct server_list doomed = TAILQ_HEAD_INITIALIZER(doomed);
	int open_new = 0;
	pthread_mutex_lock(&p->lock);
	struct server *s, *tmp;
	TAILQ_FOREACH_SAFE(s, &p->idle[w->id], idle_entry, tmp) {
		bool idle_expired = cfg->server_idle_timeout > 0 &&
				    now - s->idle_since_ms >= (uint64_t)cfg->server_idle_timeout * 1000 &&
				    p->total > p->min_pool_size;
		bool too_old = cfg->server_lifetime > 0 &&
			       now - s->created_ms >= (uint64_t)cfg->server_lifetime * 1000;
		if (idle_expired || too_old) {
			TAILQ_REMOVE(&p->idle[w->id], s, idle_entry);
			p->nidle--;
			server_set_state(s, SV_RESERVED);
			TAILQ_INSERT_TAIL(&doomed, s, reap_entry);
		}
	}
	while (w->id == 0 && p->total < p->min_pool_size && p->nwaiters == 0 &&
	       server_can_login(p)) {
		p->total++;
		open_new++;
	}
	pthread_mutex_unlock(&p->lock);
	while ((s = TAILQ_FIRST(&doomed)) != NULL) {
		TAILQ_REMOVE(&doomed, s, reap_entry);
		server_destroy(s, s->created_ms + (uint64_t)cfg->server_lifetime * 1000 <= now &&
					  cfg->server_lifetime > 0
				      ? "server_lifetime"
				      : "server_idle_timeout");
	}
	while (open_new-- > 0)
		server_connect(p, w, NULL);
}

void pool_janitor(struct worker *w)
{
	uint64_t now = conn_now_ms();
	pthread_mutex_lock(&g.lock);
	struct pool *first = g.pools;
	pthread_mutex_unlock(&g.lock);
	/* pools are never freed and are pushed at the head: walking from a
	 * snapshot of the head is safe without the list lock */
	for (struct pool *p = first; p; p = p->next)
		janitor_pool(p, w, now);
}

static void deferred_cb(struct worker *w)
{
	server_run_deferred(w);
	client_reap_all(w);
}

static void worker_tick(struct worker *w)
{
	struct pool_worker *pw = w->ctx;
	client_on_fast_tick(w);
	if (++pw->ticks % 10 != 0)
		return; /* once a second */
	client_on_tick(w);
	pool_janitor(w);
}

int pool_worker_attach(struct worker *w)
{
	struct pool_worker *pw = calloc(1, sizeof(*pw));
	if (!pw)
		return -1;
	pw->worker = w;
	TAILQ_INIT(&pw->clients);
	TAILQ_INIT(&pw->reap_clients);
	TAILQ_INIT(&pw->reap_servers);
	TAILQ_INIT(&pw->releasing);
	TAILQ_INIT(&pw->inbox);
	pthread_mutex_init(&pw->inbox_lock, NULL);
	pw->listening = true;
	w->on_deferred = deferred_cb;
	w->ctx = pw;
	w->on_wake = client_on_wake;
	w->on_tick = worker_tick;
	return 0;
}

void pool_worker_shutdown(struct worker *w)
{
	client_shutdown_worker(w);
}
