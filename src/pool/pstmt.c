#include "pool/pstmt.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t intern_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hmap interned;
static uint64_t next_pstmt_id;
static uint64_t next_server_name; /* atomic */
static uint64_t ddl_epoch;        /* atomic */
static uint64_t orphan_gen;       /* atomic */

uint64_t pstmt_ddl_epoch(void)
{
	return __atomic_load_n(&ddl_epoch, __ATOMIC_RELAXED);
}

void pstmt_ddl_seen(void)
{
	__atomic_add_fetch(&ddl_epoch, 1, __ATOMIC_RELAXED);
}

uint64_t pstmt_orphan_gen(void)
{
	return __atomic_load_n(&orphan_gen, __ATOMIC_RELAXED);
}

bool pstmt_orphaned(const struct pstmt *ps)
{
	return __atomic_load_n(&ps->crefs, __ATOMIC_RELAXED) == 0;
}

bool sstmt_usable(const struct sstmt *ss, const struct cstmt *cs)
{
	if (ss->ps->private_copy)
		return true; /* the client's own, and the only one there is */
	return ss->gen == __atomic_load_n(&ss->ps->gen, __ATOMIC_RELAXED) && !ss->stale &&
	       (!cs || ss->epoch >= cs->epoch);
}

struct pstmt *pstmt_intern(const uint8_t *body, size_t len)
{
	uint64_t h = hmap_hash(body, len);
	pthread_mutex_lock(&intern_lock);
	struct hnode *n = hmap_get(&interned, h, body, len);
	if (n) {
		struct pstmt *ps = hmap_entry(n, struct pstmt, node);
		ps->refs++;
		pthread_mutex_unlock(&intern_lock);
		return ps;
	}
	struct pstmt *ps = calloc(1, sizeof(*ps));
	uint8_t *copy = malloc(len ? len : 1);
	if (!ps || !copy) {
		pthread_mutex_unlock(&intern_lock);
		free(ps);
		free(copy);
		return NULL;
	}
	memcpy(copy, body, len);
	ps->body = copy;
	ps->len = len;
	ps->id = ++next_pstmt_id;
	ps->refs = 1;
	ps->node.hash = h;
	ps->node.key = ps->body;
	ps->node.keylen = len;
	if (hmap_add(&interned, &ps->node) < 0) {
		pthread_mutex_unlock(&intern_lock);
		free(copy);
		free(ps);
		return NULL;
	}
	pthread_mutex_unlock(&intern_lock);
	return ps;
}

struct pstmt *pstmt_new_private(void)
{
	struct pstmt *ps = calloc(1, sizeof(*ps));
	if (!ps)
		return NULL;
	pthread_mutex_lock(&intern_lock);
	ps->id = ++next_pstmt_id;
	pthread_mutex_unlock(&intern_lock);
	ps->refs = 1;
	ps->private_copy = true;
	return ps;
}

struct pstmt *pstmt_lookup(const uint8_t *body, size_t len)
{
	uint64_t h = hmap_hash(body, len);
	pthread_mutex_lock(&intern_lock);
	struct hnode *n = hmap_get(&interned, h, body, len);
	struct pstmt *ps = n ? hmap_entry(n, struct pstmt, node) : NULL;
	if (ps)
		ps->refs++;
	pthread_mutex_unlock(&intern_lock);
	return ps;
}

void pstmt_ref(struct pstmt *ps)
{
	pthread_mutex_lock(&intern_lock);
	ps->refs++;
	pthread_mutex_unlock(&intern_lock);
}

void pstmt_unref(struct pstmt *ps)
{
	if (!ps)
		return;
	pthread_mutex_lock(&intern_lock);
	if (--ps->refs > 0) {
		pthread_mutex_unlock(&intern_lock);
		return;
	}
	if (!ps->private_copy) {
		hmap_del(&interned, &ps->node);
		if (interned.n == 0)
			hmap_free(&interned);
	}
	pthread_mutex_unlock(&intern_lock);
	free(ps->body);
	free(ps);
}

size_t pstmt_count(void)
{
	pthread_mutex_lock(&intern_lock);
	size_t n = interned.n;
	pthread_mutex_unlock(&intern_lock);
	return n;
}

/* ---- per client ---- */

struct cstmt *cstmt_find(struct hmap *m, const char *name)
{
	size_t len = strlen(name);
	struct hnode *n = hmap_get(m, hmap_hash(name, len), name, len);
	return n ? hmap_entry(n, struct cstmt, node) : NULL;
}

struct cstmt *cstmt_add(struct hmap *m, const char *name, struct pstmt *ps)
{
	struct cstmt *cs = calloc(1, sizeof(*cs));
	char *copy = strdup(name);
	if (!cs || !copy) {
		free(cs);
		free(copy);
		return NULL;
	}
	cs->name = copy;
	cs->node.keylen = strlen(copy);
	cs->node.key = copy;
	cs->node.hash = hmap_hash(copy, cs->node.keylen);
	if (hmap_add(m, &cs->node) < 0) {
		free(copy);
		free(cs);
		return NULL;
	}
	pstmt_ref(ps);
	cs->ps = ps;
	cs->epoch = pstmt_ddl_epoch();
	__atomic_add_fetch(&ps->crefs, 1, __ATOMIC_RELAXED);
	return cs;
}

static void cstmt_free(struct cstmt *cs)
{
	if (__atomic_sub_fetch(&cs->ps->crefs, 1, __ATOMIC_RELAXED) == 0)
		__atomic_add_fetch(&orphan_gen, 1, __ATOMIC_RELAXED);
	pstmt_unref(cs->ps);
	free(cs->name);
	free(cs);
}

void cstmt_remove(struct hmap *m, struct cstmt *cs)
{
	if (cs->dead)
		return;
	hmap_del(m, &cs->node);
	cs->dead = true;
	if (cs->inflight == 0)
		cstmt_free(cs);
}

void cstmt_restore(struct hmap *m, struct cstmt *cs)
{
	if (!cs->dead || cstmt_find(m, cs->name))
		return;
	if (hmap_add(m, &cs->node) == 0)
		cs->dead = false;
}

void cstmt_hold(struct cstmt *cs)
{
	cs->inflight++;
}

void cstmt_release(struct cstmt *cs)
{
	if (--cs->inflight == 0 && cs->dead)
		cstmt_free(cs);
}

static void cstmt_clear_one(struct hnode *n, void *arg)
{
	cstmt_remove(arg, hmap_entry(n, struct cstmt, node));
}

struct forget_arg {
	struct hmap *m;
	uint64_t mark;
};

static void cstmt_forget_one(struct hnode *n, void *arg)
{
	struct forget_arg *a = arg;
	struct cstmt *cs = hmap_entry(n, struct cstmt, node);
	if (cs->reg <= a->mark)
		cstmt_remove(a->m, cs);
}

void cstmt_forget_upto(struct hmap *m, uint64_t mark)
{
	struct forget_arg a = {m, mark};
	hmap_each(m, cstmt_forget_one, &a);
}

static void any_private_one(struct hnode *n, void *arg)
{
	if (hmap_entry(n, struct cstmt, node)->ps->private_copy)
		*(bool *)arg = true;
}

bool cstmt_any_private(struct hmap *m)
{
	bool any = false;
	hmap_each(m, any_private_one, &any);
	return any;
}

void cstmt_clear(struct hmap *m)
{
	hmap_each(m, cstmt_clear_one, m);
	hmap_free(m);
}

/* ---- per server ---- */

void sstmt_init(struct sstmt_reg *r)
{
	hmap_init(&r->map);
	TAILQ_INIT(&r->lru);
	r->counter = 0;
}

struct sstmt *sstmt_find(struct sstmt_reg *r, const struct pstmt *ps)
{
	struct hnode *n = hmap_get(&r->map, hmap_hash(&ps->id, sizeof(ps->id)), &ps->id,
				   sizeof(ps->id));
	return n ? hmap_entry(n, struct sstmt, node) : NULL;
}

struct sstmt *sstmt_add(struct sstmt_reg *r, struct pstmt *ps)
{
	struct sstmt *ss = calloc(1, sizeof(*ss));
	if (!ss)
		return NULL;
	ss->ps = ps;
	ss->node.key = &ps->id;
	ss->node.keylen = sizeof(ps->id);
	ss->node.hash = hmap_hash(&ps->id, sizeof(ps->id));
	if (hmap_add(&r->map, &ss->node) < 0) {
		free(ss);
		return NULL;
	}
	pstmt_ref(ps);
	snprintf(ss->name, sizeof(ss->name), "pgmux_%llu",
		 (unsigned long long)__atomic_add_fetch(&next_server_name, 1, __ATOMIC_RELAXED));
	ss->state = SS_PENDING;
	ss->gen = __atomic_load_n(&ps->gen, __ATOMIC_RELAXED);
	ss->epoch = pstmt_ddl_epoch();
	ss->reg = ++r->counter;
	TAILQ_INSERT_TAIL(&r->lru, ss, lru);
	return ss;
}

void sstmt_touch(struct sstmt_reg *r, struct sstmt *ss)
{
	if (TAILQ_NEXT(ss, lru)) {
		TAILQ_REMOVE(&r->lru, ss, lru);
		TAILQ_INSERT_TAIL(&r->lru, ss, lru);
	}
}

static void sstmt_free(struct sstmt *ss)
{
	pstmt_unref(ss->ps);
	free(ss);
}

void sstmt_remove(struct sstmt_reg *r, struct sstmt *ss)
{
	if (ss->dead)
		return;
	hmap_del(&r->map, &ss->node);
	TAILQ_REMOVE(&r->lru, ss, lru);
	ss->dead = true;
	if (ss->inflight == 0)
		sstmt_free(ss);
}

void sstmt_hold(struct sstmt *ss)
{
	ss->inflight++;
}

void sstmt_release(struct sstmt *ss)
{
	if (--ss->inflight == 0 && ss->dead)
		sstmt_free(ss);
}

void sstmt_forget_upto(struct sstmt_reg *r, uint64_t mark)
{
	struct sstmt *ss, *next;
	for (ss = TAILQ_FIRST(&r->lru); ss; ss = next) {
		next = TAILQ_NEXT(ss, lru);
		if (ss->reg <= mark)
			sstmt_remove(r, ss);
	}
}

void sstmt_block_end(struct sstmt_reg *r, bool ended, bool failed)
{
	struct sstmt *ss;
	TAILQ_FOREACH(ss, &r->lru, lru) {
		if (!ss->tentative)
			continue;
		if (failed)
			ss->stale = true;
		if (ended)
			ss->tentative = false;
	}
}

struct sstmt *sstmt_lru_victim(struct sstmt_reg *r)
{
	struct sstmt *ss;
	TAILQ_FOREACH(ss, &r->lru, lru)
		if (ss->state == SS_READY && ss->inflight == 0 && !ss->ps->private_copy)
			return ss; /* a private copy cannot be prepared again */
	return NULL;
}

size_t sstmt_count(const struct sstmt_reg *r)
{
	return r->map.n;
}

void sstmt_clear(struct sstmt_reg *r)
{
	struct sstmt *ss;
	while ((ss = TAILQ_FIRST(&r->lru)) != NULL)
		sstmt_remove(r, ss);
	hmap_free(&r->map);
}
