/* Unit tests for pool/pstmt: interned statements (one per Parse body,
 * refcounted, shared across threads, ids never reused), a client's name ->
 * statement map (add, find, remove while requests hold it, restore,
 * forget_upto) and a server's registry (fresh unique names, touch, the LRU
 * victim: READY and not in flight only, forget_upto, clear). Every test ends
 * with pstmt_count() back where it started, and the ASan build checks that
 * nothing leaks. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool/pstmt.h"

/* A Parse body (after the name): SQL, NTYPES parameter type oids. */
static size_t body_of(uint8_t *buf, size_t cap, const char *sql, int ntypes, uint32_t oid)
{
	size_t n = strlen(sql) + 1;
	size_t len = n + 2 + (size_t)ntypes * 4;
	ck_assert_uint_le(len, cap);
	memcpy(buf, sql, n);
	buf[n] = (uint8_t)(ntypes >> 8);
	buf[n + 1] = (uint8_t)ntypes;
	for (int i = 0; i < ntypes; i++) {
		uint8_t *p = buf + n + 2 + i * 4;
		p[0] = (uint8_t)(oid >> 24);
		p[1] = (uint8_t)(oid >> 16);
		p[2] = (uint8_t)(oid >> 8);
		p[3] = (uint8_t)oid;
	}
	return len;
}

static struct pstmt *intern(const char *sql)
{
	uint8_t b[512];
	size_t len = body_of(b, sizeof(b), sql, 0, 0);
	struct pstmt *ps = pstmt_intern(b, len);
	ck_assert_ptr_nonnull(ps);
	return ps;
}

/* ---- interning ---- */

START_TEST(test_intern_same_body)
{
	size_t start = pstmt_count();
	uint8_t b1[64], b2[64];
	size_t l1 = body_of(b1, sizeof(b1), "SELECT $1", 1, 23);
	size_t l2 = body_of(b2, sizeof(b2), "SELECT $1", 1, 23);
	struct pstmt *a = pstmt_intern(b1, l1);
	struct pstmt *b = pstmt_intern(b2, l2); /* another buffer, same bytes */
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_eq(a, b);
	ck_assert_int_eq(a->refs, 2);
	ck_assert_uint_eq(a->len, l1);
	ck_assert_mem_eq(a->body, b1, l1);
	ck_assert_ptr_ne(a->body, b1); /* a copy */
	ck_assert_uint_eq(pstmt_count(), start + 1);
	struct pstmt *l = pstmt_lookup(b1, l1);
	ck_assert_ptr_eq(l, a);
	ck_assert_int_eq(a->refs, 3);
	pstmt_ref(a);
	ck_assert_int_eq(a->refs, 4);
	for (int i = 0; i < 3; i++)
		pstmt_unref(a);
	ck_assert_uint_eq(pstmt_count(), start + 1);
	ck_assert_int_eq(a->refs, 1);
	pstmt_unref(a);
	ck_assert_uint_eq(pstmt_count(), start);
	ck_assert_ptr_null(pstmt_lookup(b1, l1));
	pstmt_unref(NULL); /* accepted */
}
END_TEST

/* Bodies that differ anywhere (text, a parameter type, the number of types,
 * a byte after an embedded NUL) are different statements. */
START_TEST(test_intern_distinct_bodies)
{
	size_t start = pstmt_count();
	uint8_t b[6][64];
	size_t len[6];
	len[0] = body_of(b[0], 64, "SELECT $1", 1, 23);
	len[1] = body_of(b[1], 64, "SELECT $1", 1, 25);  /* int4 vs text */
	len[2] = body_of(b[2], 64, "SELECT $1", 0, 0);   /* no types given */
	len[3] = body_of(b[3], 64, "SELECT $1", 2, 23);  /* one more */
	len[4] = body_of(b[4], 64, "select $1", 1, 23);  /* case */
	len[5] = body_of(b[5], 64, "SELECT $1 ", 1, 23); /* a space */
	struct pstmt *ps[6];
	for (int i = 0; i < 6; i++) {
		ps[i] = pstmt_intern(b[i], len[i]);
		ck_assert_ptr_nonnull(ps[i]);
		for (int j = 0; j < i; j++) {
			ck_assert_ptr_ne(ps[i], ps[j]);
			ck_assert_uint_ne(ps[i]->id, ps[j]->id);
		}
	}
	ck_assert_uint_eq(pstmt_count(), start + 6);
	/* an empty body is a body too */
	struct pstmt *empty = pstmt_intern((const uint8_t *)"", 0);
	ck_assert_ptr_nonnull(empty);
	ck_assert_ptr_eq(pstmt_intern((const uint8_t *)"x", 0), empty);
	pstmt_unref(empty);
	pstmt_unref(empty);
	for (int i = 0; i < 6; i++)
		pstmt_unref(ps[i]);
	ck_assert_uint_eq(pstmt_count(), start);
}
END_TEST

/* Ids are never reused, also once the table emptied (and its buckets were
 * freed) and refilled. */
START_TEST(test_ids_never_reused)
{
	size_t start = pstmt_count();
	uint64_t last = 0;
	for (int round = 0; round < 3; round++) {
		struct pstmt *ps[300];
		for (int i = 0; i < 300; i++) {
			char sql[32];
			snprintf(sql, sizeof(sql), "SELECT %d", i);
			ps[i] = intern(sql);
			ck_assert_uint_gt(ps[i]->id, last);
			last = ps[i]->id;
		}
		ck_assert_uint_eq(pstmt_count(), start + 300);
		/* the same texts again: the same statements */
		for (int i = 0; i < 300; i++) {
			char sql[32];
			snprintf(sql, sizeof(sql), "SELECT %d", i);
			struct pstmt *again = intern(sql);
			ck_assert_ptr_eq(again, ps[i]);
			pstmt_unref(again);
		}
		for (int i = 299; i >= 0; i--)
			pstmt_unref(ps[i]);
		ck_assert_uint_eq(pstmt_count(), start);
	}
}
END_TEST

struct intern_arg {
	struct pstmt *got[200];
};

static void *intern_thread(void *p)
{
	struct intern_arg *a = p;
	for (int i = 0; i < 200; i++) {
		char sql[32];
		snprintf(sql, sizeof(sql), "SELECT %d", i % 20);
		uint8_t b[64];
		size_t len = body_of(b, sizeof(b), sql, 0, 0);
		a->got[i] = pstmt_intern(b, len);
	}
	return NULL;
}

/* Four threads interning the same 20 texts get the same 20 statements, and
 * the references add up (TSan checks the locking). */
START_TEST(test_intern_threads)
{
	size_t start = pstmt_count();
	struct intern_arg args[4];
	pthread_t th[4];
	for (int t = 0; t < 4; t++)
		ck_assert_int_eq(pthread_create(&th[t], NULL, intern_thread, &args[t]), 0);
	for (int t = 0; t < 4; t++)
		pthread_join(th[t], NULL);
	ck_assert_uint_eq(pstmt_count(), start + 20);
	for (int i = 0; i < 20; i++) {
		ck_assert_ptr_nonnull(args[0].got[i]);
		ck_assert_int_eq(args[0].got[i]->refs, 40);
		for (int t = 1; t < 4; t++)
			ck_assert_ptr_eq(args[t].got[i], args[0].got[i]);
	}
	for (int t = 0; t < 4; t++)
		for (int i = 0; i < 200; i++)
			pstmt_unref(args[t].got[i]);
	ck_assert_uint_eq(pstmt_count(), start);
}
END_TEST

/* ---- per client ---- */

START_TEST(test_cstmt_add_find_remove)
{
	size_t start = pstmt_count();
	struct hmap m;
	hmap_init(&m);
	struct pstmt *ps = intern("SELECT 1");
	struct cstmt *a = cstmt_add(&m, "a", ps);
	struct cstmt *b = cstmt_add(&m, "b", ps); /* two names, one statement */
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(ps->refs, 3);
	ck_assert_ptr_eq(cstmt_find(&m, "a"), a);
	ck_assert_ptr_eq(cstmt_find(&m, "b"), b);
	ck_assert_ptr_null(cstmt_find(&m, "c"));
	ck_assert_ptr_null(cstmt_find(&m, ""));
	ck_assert_str_eq(a->name, "a");
	ck_assert_ptr_eq(a->ps, ps);
	ck_assert(!a->dead);
	/* a name that is a prefix of another is another name */
	struct cstmt *ab = cstmt_add(&m, "ab", ps);
	ck_assert_ptr_eq(cstmt_find(&m, "a"), a);
	ck_assert_ptr_eq(cstmt_find(&m, "ab"), ab);
	cstmt_remove(&m, ab);
	cstmt_remove(&m, a); /* not held: freed now */
	ck_assert_ptr_null(cstmt_find(&m, "a"));
	ck_assert_ptr_eq(cstmt_find(&m, "b"), b);
	ck_assert_int_eq(ps->refs, 2);
	pstmt_unref(ps);
	cstmt_clear(&m);
	ck_assert_uint_eq(pstmt_count(), start);
}
END_TEST

/* Removed while a queued request holds it: out of the map at once, alive
 * until the last release; restore puts it back under its name if the name
 * is free, and is a no-op for a live statement or a taken name. */
START_TEST(test_cstmt_hold_restore)
{
	size_t start = pstmt_count();
	struct hmap m;
	hmap_init(&m);
	struct pstmt *ps = intern("SELECT 'x'");
	struct cstmt *x = cstmt_add(&m, "x", ps);
	cstmt_restore(&m, x); /* alive: nothing */
	ck_assert_ptr_eq(cstmt_find(&m, "x"), x);
	cstmt_hold(x);
	cstmt_hold(x);
	cstmt_remove(&m, x);
	ck_assert(x->dead);
	ck_assert_ptr_null(cstmt_find(&m, "x"));
	cstmt_remove(&m, x); /* twice: nothing */
	cstmt_restore(&m, x);
	ck_assert(!x->dead);
	ck_assert_ptr_eq(cstmt_find(&m, "x"), x);
	cstmt_release(x);
	ck_assert_ptr_eq(cstmt_find(&m, "x"), x); /* alive and in the map */

	cstmt_remove(&m, x);
	struct pstmt *ps2 = intern("SELECT 'x2'");
	struct cstmt *x2 = cstmt_add(&m, "x", ps2);
	pstmt_unref(ps2);
	cstmt_restore(&m, x); /* the name is taken: stays removed */
	ck_assert(x->dead);
	ck_assert_ptr_eq(cstmt_find(&m, "x"), x2);
	cstmt_release(x); /* last hold: freed */
	ck_assert_int_eq(ps->refs, 1);
	pstmt_unref(ps);
	cstmt_clear(&m);
	ck_assert_uint_eq(pstmt_count(), start);
}
END_TEST

/* DEALLOCATE ALL / DISCARD ALL at registration MARK: the names registered at
 * or before it go, a Parse pipelined after it stays; held ones are freed at
 * their release. */
START_TEST(test_cstmt_forget_upto)
{
	size_t start = pstmt_count();
	struct hmap m;
	hmap_init(&m);
	struct cstmt *cs[50];
	for (int i = 0; i < 50; i++) {
		char name[16], sql[32];
		snprintf(name, sizeof(name), "n%d", i);
		snprintf(sql, sizeof(sql), "SELECT %d", i % 7);
		struct pstmt *ps = intern(sql);
		cs[i] = cstmt_add(&m, name, ps);
		pstmt_unref(ps);
		ck_assert_ptr_nonnull(cs[i]);
		cs[i]->reg = (uint64_t)i + 1;
	}
	cstmt_hold(cs[3]);
	cstmt_forget_upto(&m, 30);
	for (int i = 0; i < 50; i++) {
		char name[16];
		snprintf(name, sizeof(name), "n%d", i);
		if (i < 30)
			ck_assert_ptr_null(cstmt_find(&m, name));
		else
			ck_assert_ptr_eq(cstmt_find(&m, name), cs[i]);
	}
	ck_assert(cs[3]->dead);
	cstmt_release(cs[3]);
	cstmt_forget_upto(&m, 0); /* nothing registered at 0 */
	ck_assert_uint_eq(m.n, 20);
	cstmt_clear(&m);
	ck_assert_uint_eq(pstmt_count(), start);
}
END_TEST

/* cstmt_clear with a held statement: out of the map, freed at release. */
START_TEST(test_cstmt_clear_held)
{
	size_t start = pstmt_count();
	struct hmap m;
	hmap_init(&m);
	struct pstmt *ps = intern("SELECT 9");
	struct cstmt *a = cstmt_add(&m, "a", ps);
	cstmt_add(&m, "b", ps);
	pstmt_unref(ps);
	cstmt_hold(a);
	cstmt_clear(&m);
	ck_assert(a->dead);
	ck_assert_uint_eq(pstmt_count(), start + 1);
	cstmt_release(a);
	ck_assert_uint_eq(pstmt_count(), start);
}
END_TEST

/* ---- per server ---- */

START_TEST(test_sstmt_add_find_names)
{
	size_t start = pstmt_count();
	struct sstmt_reg r1, r2;
	sstmt_init(&r1);
	sstmt_init(&r2);
	struct pstmt *p1 = intern("SELECT 1"), *p2 = intern("SELECT 2");
	struct sstmt *a = sstmt_add(&r1, p1);
	struct sstmt *b = sstmt_add(&r1, p2);
	struct sstmt *c = sstmt_add(&r2, p1); /* same statement, another server */
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(a->state, SS_PENDING);
	ck_assert_uint_eq(a->reg, 1);
	ck_assert_uint_eq(b->reg, 2);
	ck_assert_uint_eq(c->reg, 1);
	ck_assert_uint_eq(r1.counter, 2);
	ck_assert_ptr_eq(sstmt_find(&r1, p1), a);
	ck_assert_ptr_eq(sstmt_find(&r1, p2), b);
	ck_assert_ptr_eq(sstmt_find(&r2, p1), c);
	ck_assert_ptr_null(sstmt_find(&r2, p2));
	ck_assert_uint_eq(sstmt_count(&r1), 2);
	ck_assert_uint_eq(sstmt_count(&r2), 1);
	ck_assert_int_eq(p1->refs, 3);
	/* names of pgmux's own, unique across servers */
	ck_assert_int_eq(strncmp(a->name, "pgmux_", 6), 0);
	ck_assert_str_ne(a->name, b->name);
	ck_assert_str_ne(a->name, c->name);
	ck_assert_str_ne(b->name, c->name);
	/* a re-prepared statement gets a new name, never an old one */
	char old[sizeof(a->name)];
	memcpy(old, a->name, sizeof(old));
	sstmt_remove(&r1, a);
	ck_assert_ptr_null(sstmt_find(&r1, p1));
	a = sstmt_add(&r1, p1);
	ck_assert_str_ne(a->name, old);
	ck_assert_uint_eq(a->reg, 3);
	pstmt_unref(p1);
	pstmt_unref(p2);
	sstmt_clear(&r1);
	sstmt_clear(&r2);
	ck_assert_uint_eq(pstmt_count(), start);
}
END_TEST

/* Many statements: names all distinct, each found by its statement. */
START_TEST(test_sstmt_many_unique)
{
	size_t start = pstmt_count();
	struct sstmt_reg r;
	sstmt_init(&r);
	enum { N = 1000 };
	struct pstmt **ps = calloc(N, sizeof(*ps));
	struct sstmt **ss = calloc(N, sizeof(*ss));
	ck_assert_ptr_nonnull(ps);
	ck_assert_ptr_nonnull(ss);
	struct hmap names;
	hmap_init(&names);
	for (int i = 0; i < N; i++) {
		char sql[32];
		snprintf(sql, sizeof(sql), "SELECT %d", i);
		ps[i] = intern(sql);
		ss[i] = sstmt_add(&r, ps[i]);
		ck_assert_ptr_nonnull(ss[i]);
		/* the name is the key of a node of our own */
		struct hnode *n = calloc(1, sizeof(*n));
		ck_assert_ptr_nonnull(n);
		n->key = ss[i]->name;
		n->keylen = strlen(ss[i]->name);
		n->hash = hmap_hash(n->key, n->keylen);
		ck_assert_ptr_null(hmap_get(&names, n->hash, n->key, n->keylen));
		ck_assert_int_eq(hmap_add(&names, n), 0);
	}
	for (int i = 0; i < N; i++)
		ck_assert_ptr_eq(sstmt_find(&r, ps[i]), ss[i]);
	ck_assert_uint_eq(sstmt_count(&r), N);
	for (size_t i = 0; i < names.nb; i++) {
		struct hnode *n = names.b[i];
		while (n) {
			struct hnode *next = n->next;
			free(n);
			n = next;
		}
	}
	hmap_free(&names);
	for (int i = 0; i < N; i++)
		pstmt_unref(ps[i]);
	sstmt_clear(&r);
	free(ps);
	free(ss);
	ck_assert_uint_eq(pstmt_count(), start);
}
END_TEST

/* The LRU victim under a sequence of operations on five statements s0..s4
 * (added in that order): 'r' marks READY, 't' touches, 'h' holds (a queued
 * request points at it), 'u' releases, 'x' removes (evicts). After each
 * step, the victim expected ('-' = none). */
static const struct lru_step {
	char op;
	int which;
	char victim;
} lru_steps[] = {
        {'r', 1, '1'}, /* s0 is PENDING: never a victim */
        {'r', 3, '1'}, {'r', 0, '0'}, {'t', 0, '1'}, {'t', 1, '3'}, {'h', 3, '0'},
        {'h', 0, '1'}, {'h', 1, '-'}, {'u', 0, '0'}, {'r', 2, '2'}, {'t', 0, '2'},
        {'x', 2, '0'}, {'u', 3, '3'}, {'x', 3, '0'}, {'x', 0, '-'}, /* s1 held, s4 pending */
        {'u', 1, '1'}, {'r', 4, '4'}, {'t', 4, '1'}, {'x', 4, '1'}, {'x', 1, '-'},
};

START_TEST(test_sstmt_lru_victim)
{
	size_t start = pstmt_count();
	struct sstmt_reg r;
	sstmt_init(&r);
	struct sstmt *s[5];
	for (int i = 0; i < 5; i++) {
		char sql[32];
		snprintf(sql, sizeof(sql), "SELECT %d", i);
		struct pstmt *ps = intern(sql);
		s[i] = sstmt_add(&r, ps);
		pstmt_unref(ps);
	}
	ck_assert_ptr_null(sstmt_lru_victim(&r)); /* all PENDING */
	for (size_t k = 0; k < sizeof(lru_steps) / sizeof(lru_steps[0]); k++) {
		const struct lru_step *st = &lru_steps[k];
		struct sstmt *t = s[st->which];
		switch (st->op) {
		case 'r':
			t->state = SS_READY;
			break;
		case 't':
			sstmt_touch(&r, t);
			break;
		case 'h':
			sstmt_hold(t);
			break;
		case 'u':
			sstmt_release(t);
			break;
		case 'x':
			sstmt_remove(&r, t);
			break;
		}
		struct sstmt *v = sstmt_lru_victim(&r);
		char got = '-';
		for (int i = 0; i < 5; i++)
			if (v == s[i])
				got = (char)('0' + i);
		ck_assert_msg(got == st->victim, "step %zu (%c s%d): victim s%c, want s%c", k,
		              st->op, st->which, got, st->victim);
	}
	ck_assert_uint_eq(sstmt_count(&r), 0);
	sstmt_clear(&r);
	ck_assert_uint_eq(pstmt_count(), start);
}
END_TEST

/* Eviction order: evicting the victim repeatedly takes READY statements
 * least recently used first. */
START_TEST(test_sstmt_eviction_order)
{
	size_t start = pstmt_count();
	struct sstmt_reg r;
	sstmt_init(&r);
	enum { N = 10 };
	struct sstmt *s[N];
	for (int i = 0; i < N; i++) {
		char sql[32];
		snprintf(sql, sizeof(sql), "SELECT %d", i);
		struct pstmt *ps = intern(sql);
		s[i] = sstmt_add(&r, ps);
		pstmt_unref(ps);
		s[i]->state = SS_READY;
	}
	/* use order: 7 3 9 0 (touch), so LRU order is 1 2 4 5 6 8 7 3 9 0 */
	int touch[] = {7, 3, 9, 0};
	for (size_t i = 0; i < 4; i++)
		sstmt_touch(&r, s[touch[i]]);
	sstmt_touch(&r, s[0]); /* already the newest: stays */
	int want[] = {1, 2, 4, 5, 6, 8, 7, 3, 9, 0};
	for (int i = 0; i < N; i++) {
		struct sstmt *v = sstmt_lru_victim(&r);
		ck_assert_ptr_eq(v, s[want[i]]);
		sstmt_remove(&r, v);
	}
	ck_assert_ptr_null(sstmt_lru_victim(&r));
	sstmt_clear(&r);
	ck_assert_uint_eq(pstmt_count(), start);
}
END_TEST

/* DEALLOCATE ALL / DISCARD ALL on the server at registration MARK. */
START_TEST(test_sstmt_forget_upto_and_clear)
{
	size_t start = pstmt_count();
	struct sstmt_reg r;
	sstmt_init(&r);
	struct sstmt *s[8];
	struct pstmt *ps[8];
	for (int i = 0; i < 8; i++) {
		char sql[32];
		snprintf(sql, sizeof(sql), "SELECT %d", i);
		ps[i] = intern(sql);
		s[i] = sstmt_add(&r, ps[i]);
	}
	sstmt_touch(&r, s[1]); /* LRU order differs from registration order */
	sstmt_hold(s[2]);
	uint64_t mark = s[4]->reg;
	sstmt_forget_upto(&r, mark);
	for (int i = 0; i < 8; i++) {
		if (i <= 4)
			ck_assert_ptr_null(sstmt_find(&r, ps[i]));
		else
			ck_assert_ptr_eq(sstmt_find(&r, ps[i]), s[i]);
	}
	ck_assert(s[2]->dead);
	ck_assert_uint_eq(sstmt_count(&r), 3);
	sstmt_remove(&r, s[2]); /* dead already: nothing */
	sstmt_release(s[2]);    /* freed */
	sstmt_hold(s[6]);
	sstmt_clear(&r);
	ck_assert_uint_eq(sstmt_count(&r), 0);
	ck_assert(s[6]->dead);
	sstmt_release(s[6]);
	for (int i = 0; i < 8; i++)
		pstmt_unref(ps[i]);
	ck_assert_uint_eq(pstmt_count(), start);
	/* a cleared registry is usable again */
	sstmt_init(&r);
	struct pstmt *p = intern("SELECT 'again'");
	ck_assert_ptr_nonnull(sstmt_add(&r, p));
	pstmt_unref(p);
	sstmt_clear(&r);
	ck_assert_uint_eq(pstmt_count(), start);
}
END_TEST

/* A statement reported stale (gen bumped) is seen by its server copy. */
START_TEST(test_sstmt_gen)
{
	struct sstmt_reg r;
	sstmt_init(&r);
	struct pstmt *ps = intern("SELECT now()");
	struct sstmt *a = sstmt_add(&r, ps);
	ck_assert_uint_eq(a->gen, ps->gen);
	__atomic_add_fetch(&ps->gen, 1, __ATOMIC_RELAXED);
	ck_assert_uint_ne(a->gen, ps->gen);
	sstmt_remove(&r, a);
	a = sstmt_add(&r, ps);
	ck_assert_uint_eq(a->gen, ps->gen);
	pstmt_unref(ps);
	sstmt_clear(&r);
}
END_TEST

/* ---- when a copy may answer for a client (issue 7: stale copies) ---- */

/* A copy older than the client's Parse (DDL in between), a stale one, or one
 * of an older generation is not usable; a private copy always is. */
START_TEST(test_sstmt_usable)
{
	struct sstmt_reg r;
	struct hmap m = {0};
	sstmt_init(&r);
	struct pstmt *ps = intern("SELECT $1::some_type");
	struct sstmt *ss = sstmt_add(&r, ps);
	struct cstmt *before = cstmt_add(&m, "before", ps);
	ck_assert(sstmt_usable(ss, before));
	ck_assert(sstmt_usable(ss, NULL));
	pstmt_ddl_seen(); /* DDL went to a server */
	struct cstmt *after = cstmt_add(&m, "after", ps);
	ck_assert_uint_gt(after->epoch, before->epoch);
	ck_assert(sstmt_usable(ss, before));  /* as old as the client's own Parse */
	ck_assert(!sstmt_usable(ss, after)); /* older than the client's Parse */
	sstmt_remove(&r, ss);
	ss = sstmt_add(&r, ps); /* prepared again, after the DDL */
	ck_assert(sstmt_usable(ss, after));
	ss->stale = true;
	ck_assert(!sstmt_usable(ss, after));
	ss->stale = false;
	__atomic_add_fetch(&ps->gen, 1, __ATOMIC_RELAXED);
	ck_assert(!sstmt_usable(ss, after));
	/* a private copy is the client's only one */
	struct pstmt *priv = pstmt_new_private();
	ck_assert_ptr_nonnull(priv);
	ck_assert(priv->private_copy && priv->body == NULL);
	struct cstmt *big = cstmt_add(&m, "big", priv);
	struct sstmt *pss = sstmt_add(&r, priv);
	pstmt_unref(priv);
	pstmt_ddl_seen();
	pss->stale = true;
	ck_assert(sstmt_usable(pss, big));
	ck_assert(cstmt_any_private(&m));
	cstmt_remove(&m, big);
	ck_assert(!cstmt_any_private(&m));
	pstmt_unref(ps);
	cstmt_clear(&m);
	sstmt_clear(&r); /* frees the private pstmt: it is in no intern table */
}
END_TEST

/* The orphan generation moves when a statement loses its last client
 * statement, and only then. */
START_TEST(test_orphans)
{
	struct hmap a = {0}, b = {0};
	struct sstmt_reg r;
	sstmt_init(&r);
	struct pstmt *ps = intern("SELECT 'orphan'");
	struct sstmt *ss = sstmt_add(&r, ps); /* a server copy keeps ps alive */
	struct cstmt *ca = cstmt_add(&a, "x", ps);
	struct cstmt *cb = cstmt_add(&b, "y", ps);
	pstmt_unref(ps);
	ck_assert(!pstmt_orphaned(ps));
	uint64_t g0 = pstmt_orphan_gen();
	cstmt_remove(&a, ca);
	ck_assert_uint_eq(pstmt_orphan_gen(), g0); /* b still refers to it */
	ck_assert(!pstmt_orphaned(ps));
	cstmt_hold(cb);
	cstmt_remove(&b, cb); /* held by a request: not freed yet */
	ck_assert(!pstmt_orphaned(ps));
	cstmt_release(cb);
	ck_assert(pstmt_orphaned(ps));
	ck_assert_uint_eq(pstmt_orphan_gen(), g0 + 1);
	ck_assert_ptr_eq(sstmt_find(&r, ps), ss);
	sstmt_clear(&r);
	cstmt_clear(&a);
	cstmt_clear(&b);
}
END_TEST

/* Copies made inside a transaction block: stale if it fails, kept if it
 * commits; a ROLLBACK TO leaves them tentative (and stale). */
START_TEST(test_sstmt_block_end)
{
	struct sstmt_reg r;
	sstmt_init(&r);
	struct pstmt *p1 = intern("SELECT 1 AS t1"), *p2 = intern("SELECT 2 AS t2");
	struct sstmt *kept = sstmt_add(&r, p1), *t = sstmt_add(&r, p2);
	t->tentative = true;
	sstmt_block_end(&r, true, false); /* committed */
	ck_assert(!t->tentative && !t->stale && !kept->stale);
	t->tentative = true;
	sstmt_block_end(&r, false, true); /* ROLLBACK TO in the block */
	ck_assert(t->tentative && t->stale && !kept->stale);
	sstmt_block_end(&r, true, false);
	ck_assert(!t->tentative && t->stale);
	pstmt_unref(p1);
	pstmt_unref(p2);
	sstmt_clear(&r);
}
END_TEST

/* A private copy cannot be prepared again: never an LRU victim. */
START_TEST(test_private_never_evicted)
{
	struct sstmt_reg r;
	sstmt_init(&r);
	struct pstmt *priv = pstmt_new_private();
	struct sstmt *pss = sstmt_add(&r, priv);
	pss->state = SS_READY;
	ck_assert_ptr_null(sstmt_lru_victim(&r));
	struct pstmt *ps = intern("SELECT 'victim'");
	struct sstmt *v = sstmt_add(&r, ps);
	v->state = SS_READY;
	ck_assert_ptr_eq(sstmt_lru_victim(&r), v);
	pstmt_unref(priv);
	pstmt_unref(ps);
	sstmt_clear(&r);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("pstmt");
	TCase *tc = tcase_create("intern");
	tcase_add_test(tc, test_intern_same_body);
	tcase_add_test(tc, test_intern_distinct_bodies);
	tcase_add_test(tc, test_ids_never_reused);
	tcase_add_test(tc, test_intern_threads);
	suite_add_tcase(s, tc);
	tc = tcase_create("client");
	tcase_add_test(tc, test_cstmt_add_find_remove);
	tcase_add_test(tc, test_cstmt_hold_restore);
	tcase_add_test(tc, test_cstmt_forget_upto);
	tcase_add_test(tc, test_cstmt_clear_held);
	suite_add_tcase(s, tc);
	tc = tcase_create("server");
	tcase_add_test(tc, test_sstmt_add_find_names);
	tcase_add_test(tc, test_sstmt_many_unique);
	tcase_add_test(tc, test_sstmt_lru_victim);
	tcase_add_test(tc, test_sstmt_eviction_order);
	tcase_add_test(tc, test_sstmt_forget_upto_and_clear);
	tcase_add_test(tc, test_sstmt_gen);
	suite_add_tcase(s, tc);
	tc = tcase_create("sharing");
	tcase_add_test(tc, test_sstmt_usable);
	tcase_add_test(tc, test_orphans);
	tcase_add_test(tc, test_sstmt_block_end);
	tcase_add_test(tc, test_private_never_evicted);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
