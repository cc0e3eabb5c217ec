/* Cancel key table and cross-worker dispatch. See cancel.h. The table maps
 * pid -> client under one mutex; the client pointer is only dereferenced on
 * the client's own worker thread, after a second lookup there, so a client
 * freed in the meantime is never touched. */
#include "pool/cancel.h"

#include "core/log.h"
#include "net/worker.h"
#include "pool/conn.h"
#include "pool/client.h"
#include "pool/route.h"
#include "pool/server.h"
#include "pg/proto.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/dns.h>
#include <sys/socket.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct centry {
	uint32_t pid;          /* 0 = empty slot */
	uint32_t key;
	struct client *c;      /* borrowed; dereferenced only on c->worker */
	struct worker *w;      /* borrowed */
};

static struct {
	pthread_mutex_t lock;
	struct centry *v;      /* open addressing, linear probing, tombstone-free deletes */
	size_t cap;            /* power of two */
	size_t n;
} tab = {.lock = PTHREAD_MUTEX_INITIALIZER};

static size_t slot_of(uint32_t pid, size_t cap)
{
	return (pid * 2654435761u) & (cap - 1);
}

static int grow(void)
{
	size_t cap = tab.cap ? tab.cap * 2 : 1024;
	struct centry *v = calloc(cap, sizeof(*v));
	if (!v)
		return -1;
	for (size_t i = 0; i < tab.cap; i++) {
		if (!tab.v[i].pid)
			continue;
		size_t j = slot_of(tab.v[i].pid, cap);
		while (v[j].pid)
			j = (j + 1) & (cap - 1);
		v[j] = tab.v[i];
	}
	free(tab.v);
	tab.v = v;
	tab.cap = cap;
	return 0;
}

static struct centry *find(uint32_t pid)
{
	if (!tab.cap)
		return NULL;
	for (size_t j = slot_of(pid, tab.cap);; j = (j + 1) & (tab.cap - 1)) {
		if (!tab.v[j].pid)
			return NULL;
		if (tab.v[j].pid == pid)
			return &tab.v[j];
	}
}

int cancel_register(struct client *c)
{
	pthread_mutex_lock(&tab.lock);
	if ((tab.n + 1) * 2 > tab.cap && grow() < 0) {
		pthread_mutex_unlock(&tab.lock);
		return -1;
	}
	uint32_t r[2];
	do {
		if (RAND_bytes((unsigned char *)r, sizeof(r)) != 1) {
			pthread_mutex_unlock(&tab.lock);
			return -1;
		}
		r[0] &= 0x7fffffff;
	} while (r[0] == 0 || find(r[0]));
	size_t j = slot_of(r[0], tab.cap);
	while (tab.v[j].pid)
		j = (j + 1) & (tab.cap - 1);
	tab.v[j] = (struct centry){r[0], r[1], c, c->worker};
	tab.n++;
	c->cancel_pid = r[0];
	c->cancel_key = r[1];
	pthread_mutex_unlock(&tab.lock);
	return 0;
}

void cancel_unregister(struct client *c)
{
	if (!c->cancel_pid)
		return;
	pthread_mutex_lock(&tab.lock);
	struct centry *e = find(c->cancel_pid);
	if (e && e->c == c) {
		/* backward-shift deletion keeps probe chains intact */
		size_t i = (size_t)(e - tab.v);
		tab.v[i].pid = 0;
		for (size_t j = (i + 1) & (tab.cap - 1); tab.v[j].pid; j = (j + 1) & (tab.cap - 1)) {
			size_t home = slot_of(tab.v[j].pid, tab.cap);
			bool move = (j > i) ? (home <= i || home > j) : (home <= i && home > j);
			if (move) {
				tab.v[i] = tab.v[j];
				tab.v[j].pid = 0;
				i = j;
			}
		}
		tab.n--;
	}
	pthread_mutex_unlock(&tab.lock);
	c->cancel_pid = 0;
}

struct cancel_job {
	uint32_t pid;
	uint32_t key;
};


/* On the client's worker. */
static void run_cancel(evutil_socket_t fd, short what, void *arg)
{
	struct cancel_job *job = arg;
	struct client *c = NULL;
	pthread_mutex_lock(&tab.lock);
	struct centry *e = find(job->pid);
	if (e && CRYPTO_memcmp(&e->key, &job->key, sizeof(job->key)) == 0)
		c = e->c;
	pthread_mutex_unlock(&tab.lock);
	free(job);
	if (!c || c->worker != worker_current())
		return;
	if (c->state == CL_ACTIVE && c->server && c->server->state == SV_ACTIVE &&
	    (c->server->reqs.count > 0 || c->server->ext_open))
		server_send_cancel(c->server);
	else if (c->state == CL_WAITING)
		client_cancel_local(c);
}

void cancel_request(uint32_t pid, uint32_t key, const char *from_addr)
{
	struct worker *w = NULL;
	pthread_mutex_lock(&tab.lock);
	struct centry *e = find(pid);
	if (e && CRYPTO_memcmp(&e->key, &key, sizeof(key)) == 0)
		w = e->w;
	pthread_mutex_unlock(&tab.lock);
	if (!w) {
		log_info("cancel_ignored", "addr=%s reason=no_such_key", from_addr);
		return;
	}
	struct cancel_job *job = malloc(sizeof(*job));
	if (!job)
		return;
	job->pid = pid;
	job->key = key;
	struct timeval zero = {0, 0};
	if (event_base_once(w->base, -1, EV_TIMEOUT, run_cancel, job, &zero) < 0)
		free(job);
}

/* ---- towards the backend ---- */

struct cancel_conn {
	struct bufferevent *bev; /* owned */
	uint32_t pid, key;
	void (*done)(void *arg);
	void *arg;
};

static void cancel_conn_end(struct cancel_conn *cc)
{
	void (*done)(void *) = cc->done;
	void *arg = cc->arg;
	bufferevent_free(cc->bev);
	free(cc);
	done(arg);
}

static void cancel_conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct cancel_conn *cc = arg;
	if (what & BEV_EVENT_CONNECTED) {
		if (proto_write_cancel(bufferevent_get_output(bev), cc->pid, cc->key) < 0)
			cancel_conn_end(cc);
		else
			bufferevent_enable(bev, EV_READ);
		return;
	}
	cancel_conn_end(cc); /* EOF: the server has processed the cancel */
}

static void cancel_conn_read_cb(struct bufferevent *bev, void *arg)
{
	evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
}

int cancel_to_backend(struct worker *w, const struct route *route, uint32_t pid, uint32_t key,
		      int timeout_s, void (*done)(void *arg), void *arg)
{
	struct cancel_conn *cc = calloc(1, sizeof(*cc));
	if (!cc)
		return -1;
	cc->bev = bufferevent_socket_new(w->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!cc->bev) {
		free(cc);
		return -1;
	}
	cc->pid = pid;
	cc->key = key;
	cc->done = done;
	cc->arg = arg;
	bufferevent_setcb(cc->bev, cancel_conn_read_cb, NULL, cancel_conn_event_cb, cc);
	struct timeval tv = {timeout_s, 0};
	bufferevent_set_timeouts(cc->bev, &tv, &tv);
	if (bufferevent_socket_connect_hostname(cc->bev, w->dns, AF_UNSPEC, route->host,
						route->port) < 0) {
		bufferevent_free(cc->bev);
		free(cc);
		return -1;
	}
	return 0;
}
