/* Unit tests for pool/requests: the queue of requests outstanding on a
 * server connection. A struct server and a struct client are built by hand;
 * the client's bufferevent has no socket, so the replies pgmux writes itself
 * stay in its output and are read back here. Covers push/pop order and ring
 * growth, which request each reply answers (and -1 for a reply nobody asked
 * for), pipelines that fail in the middle (undo newest first, the server and
 * client statement maps put back as the backend left them), requests pushed
 * while the backend skips to Sync, the fake replies at the head of the queue,
 * the Syncs dropped during COPY, and req_clear releasing what requests hold
 * (ASan builds check that nothing leaks). */
#include <check.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "pool/pool.h"
#include "pool/pstmt.h"
#include "pool/requests.h"

/* requests.c reads the configuration (query_timeout): all defaults off */
static struct config cfg;

struct env {
	struct event_base *base;
	struct server *s;
	struct client *c;
	size_t pstmts_at_start;
};

static struct env *env_new(void)
{
	struct env *e = calloc(1, sizeof(*e));
	ck_assert_ptr_nonnull(e);
	pool_global_init(&cfg, NULL, NULL, 0);
	e->pstmts_at_start = pstmt_count();
	e->base = event_base_new();
	ck_assert_ptr_nonnull(e->base);
	e->s = calloc(1, sizeof(*e->s));
	e->c = calloc(1, sizeof(*e->c));
	ck_assert_ptr_nonnull(e->s);
	ck_assert_ptr_nonnull(e->c);
	struct server *s = e->s;
	struct client *c = e->c;
	s->state = SV_ACTIVE;
	s->txn = 'I';
	sstmt_init(&s->stmts);
	c->state = CL_ACTIVE;
	c->id = 7;
	hmap_init(&c->stmts);
	c->bev = bufferevent_socket_new(e->base, -1, 0);
	ck_assert_ptr_nonnull(c->bev);
	s->client = c;
	c->server = s;
	return e;
}

static void env_free(struct env *e)
{
	req_clear(e->s);
	ck_assert_uint_eq(e->s->reqs.count, 0);
	ck_assert_ptr_null(e->s->reqs.v);
	sstmt_clear(&e->s->stmts);
	cstmt_clear(&e->c->stmts);
	bufferevent_free(e->c->bev);
	free(e->c->unnamed);
	free(e->c);
	free(e->s);
	event_base_free(e->base);
	/* every statement a request or a map held is gone */
	ck_assert_uint_eq(pstmt_count(), e->pstmts_at_start);
	free(e);
}

/* A Parse body (after the name): query, no parameter types. */
static struct pstmt *intern(const char *sql)
{
	uint8_t body[256];
	size_t n = strlen(sql) + 1;
	ck_assert_uint_lt(n + 2, sizeof(body));
	memcpy(body, sql, n);
	body[n] = body[n + 1] = 0;
	struct pstmt *ps = pstmt_intern(body, n + 2);
	ck_assert_ptr_nonnull(ps);
	return ps;
}

/* Client statement NAME for SQL, registered like frontend.c does. */
static struct cstmt *client_stmt(struct client *c, const char *name, const char *sql)
{
	struct pstmt *ps = intern(sql);
	struct cstmt *cs = cstmt_add(&c->stmts, name, ps);
	pstmt_unref(ps);
	ck_assert_ptr_nonnull(cs);
	cs->reg = ++c->stmt_regs;
	return cs;
}

static struct sstmt *server_stmt(struct server *s, const char *sql)
{
	struct pstmt *ps = intern(sql);
	struct sstmt *ss = sstmt_add(&s->stmts, ps);
	pstmt_unref(ps);
	ck_assert_ptr_nonnull(ss);
	return ss;
}

static void push(struct server *s, uint64_t seq, char type, enum req_action action,
                 struct sstmt *ss, struct cstmt *cs)
{
	struct req r = {.seq = seq,
	                .type = type,
	                .action = (uint8_t)action,
	                .ss = ss,
	                .cs = cs,
	                .mark = s->stmts.counter,
	                .cmark = s->client ? s->client->stmt_regs : 0};
	ck_assert_int_eq(req_push(s, &r), 0);
}

static void push_fake(struct server *s, uint64_t seq, char type, enum req_fake fake,
                      struct cstmt *cs)
{
	struct req r = {.seq = seq,
	                .type = type,
	                .action = REQ_FAKE,
	                .fake = (uint8_t)fake,
	                .cs = cs,
	                .mark = s->stmts.counter,
	                .cmark = s->client ? s->client->stmt_regs : 0};
	ck_assert_int_eq(req_push(s, &r), 0);
}

/* The queue's types, head first ("PBES"). */
static const char *types(struct server *s)
{
	static char buf[256];
	uint32_t i;
	for (i = 0; i < s->reqs.count && i < sizeof(buf) - 1; i++)
		buf[i] = req_at(s, i)->type;
	buf[i] = '\0';
	return buf;
}

/* What pgmux wrote to the client since the last call, one word per message:
 * "1", "3", "C:<tag>", "Z:<status>", "E:<sqlstate>", else the type byte.
 * The output is drained. */
static const char *written(struct client *c)
{
	static char buf[512];
	struct evbuffer *out = bufferevent_get_output(c->bev);
	size_t pos = 0;
	buf[0] = '\0';
	/* a socket bufferevent keeps its output's front frozen outside its own
	 * write handler (see wbuf.c) */
	evbuffer_unfreeze(out, 1);
	while (evbuffer_get_length(out) >= 5) {
		uint8_t hdr[5];
		evbuffer_copyout(out, hdr, 5);
		uint32_t len = (uint32_t)hdr[1] << 24 | (uint32_t)hdr[2] << 16 |
		               (uint32_t)hdr[3] << 8 | hdr[4];
		ck_assert_uint_ge(len, 4);
		ck_assert_uint_ge(evbuffer_get_length(out), 1 + (size_t)len);
		char *body = calloc(1, len - 4 + 1);
		ck_assert_ptr_nonnull(body);
		evbuffer_drain(out, 5);
		evbuffer_remove(out, body, len - 4);
		char word[96];
		switch (hdr[0]) {
		case 'C':
			snprintf(word, sizeof(word), "C:%s", body);
			break;
		case 'Z':
			snprintf(word, sizeof(word), "Z:%c", body[0]);
			break;
		case 'E': {
			/* fields: type byte, NUL-terminated value; 'C' is the SQLSTATE */
			const char *code = "?";
			for (size_t i = 0; i < len - 4 && body[i];) {
				if (body[i] == 'C')
					code = body + i + 1;
				i += 1 + strlen(body + i + 1) + 1;
			}
			snprintf(word, sizeof(word), "E:%s", code);
			break;
		}
		default:
			snprintf(word, sizeof(word), "%c", hdr[0]);
		}
		free(body);
		pos += (size_t)snprintf(buf + pos, sizeof(buf) - pos, "%s%s", pos ? " " : "", word);
		ck_assert_uint_lt(pos, sizeof(buf) - 1);
	}
	ck_assert_uint_eq(evbuffer_get_length(out), 0);
	evbuffer_freeze(out, 1);
	return buf;
}

/* ---- order and growth ---- */

START_TEST(test_push_pop_order)
{
	struct env *e = env_new();
	struct server *s = e->s;
	ck_assert_ptr_null(req_head(s));
	ck_assert_ptr_null(req_at(s, 0));
	req_pop(s); /* empty: nothing happens */
	ck_assert_uint_eq(s->reqs.count, 0);

	uint64_t next_push = 1, next_pop = 1;
	for (int i = 0; i < 10; i++)
		push(s, next_push++, 'B', REQ_FWD, NULL, NULL);
	ck_assert_uint_eq(s->reqs.cap, 16);
	for (int i = 0; i < 8; i++) {
		ck_assert_uint_eq(req_head(s)->seq, next_pop++);
		req_pop(s);
	}
	/* head is now in the middle of the ring: fill it, wrap, and grow past 16,
	 * 32 and 64 with the live entries wrapped around the end */
	for (int round = 0; round < 3; round++) {
		uint32_t target = s->reqs.cap + 5;
		while (s->reqs.count < target)
			push(s, next_push++, 'E', REQ_FWD, NULL, NULL);
		for (uint32_t i = 0; i < s->reqs.count; i++)
			ck_assert_uint_eq(req_at(s, i)->seq, next_pop + i);
		ck_assert_ptr_null(req_at(s, s->reqs.count));
		for (int i = 0; i < 7; i++) {
			ck_assert_uint_eq(req_head(s)->seq, next_pop++);
			req_pop(s);
		}
	}
	ck_assert_uint_eq(s->reqs.cap, 128);
	while (s->reqs.count) {
		ck_assert_uint_eq(req_head(s)->seq, next_pop++);
		req_pop(s);
	}
	ck_assert_uint_eq(next_pop, next_push);
	ck_assert_ptr_null(req_head(s));
	env_free(e);
}
END_TEST

/* ---- replies ---- */

/* REPLY arrives with HEAD (0: empty queue) of ACTION at the head, a Sync
 * behind it: req_reply returns RET and leaves LEFT requests. */
static const struct reply_case {
	char reply, head;
	enum req_action action;
	int ret;
	uint32_t left;
} reply_cases[] = {
        {'1', 'P', REQ_FWD, 1, 1},
        {'1', 'P', REQ_SKIP, 0, 1},
        {'1', 'B', REQ_FWD, -1, 2},
        {'1', 0, REQ_FWD, -1, 0},
        {'2', 'B', REQ_FWD, 1, 1},
        {'2', 'B', REQ_SKIP, 0, 1},
        {'2', 'P', REQ_FWD, -1, 2},
        {'2', 'S', REQ_FWD, -1, 1},
        {'3', 'C', REQ_FWD, 1, 1},
        {'3', 'C', REQ_SKIP, 0, 1},
        {'3', 'E', REQ_FWD, -1, 2},
        {'n', 'D', REQ_FWD, 1, 1},
        {'n', 'D', REQ_SKIP, 0, 1},
        {'n', 'E', REQ_FWD, -1, 2},
        {'n', 0, REQ_FWD, -1, 0},
        /* RowDescription answers a Describe; after Execute or Query it is a result */
        {'T', 'D', REQ_FWD, 1, 1},
        {'T', 'D', REQ_SKIP, 0, 1},
        {'T', 'E', REQ_FWD, 1, 2},
        {'T', 'Q', REQ_FWD, 1, 2},
        {'T', 0, REQ_FWD, 1, 0},
        /* ParameterDescription comes before the Describe's RowDescription/NoData */
        {'t', 'D', REQ_FWD, 1, 2},
        {'t', 'D', REQ_SKIP, 0, 2},
        {'t', 'P', REQ_FWD, 1, 2},
        {'t', 0, REQ_FWD, 1, 0},
        /* EmptyQueryResponse / PortalSuspended end an Execute; in a Query, a result */
        {'I', 'E', REQ_FWD, 1, 1},
        {'I', 'E', REQ_SKIP, 0, 1},
        {'I', 'Q', REQ_FWD, 1, 2},
        {'I', 'B', REQ_FWD, -1, 2},
        {'I', 0, REQ_FWD, -1, 0},
        {'s', 'E', REQ_FWD, 1, 1},
        {'s', 'E', REQ_SKIP, 0, 1},
        {'s', 'Q', REQ_FWD, 1, 2},
        {'s', 'D', REQ_FWD, -1, 2},
        /* rows, notices, notifications, copy data, parameter status: not answers */
        {'D', 'E', REQ_FWD, 1, 2},
        {'D', 'E', REQ_SKIP, 1, 2},
        {'N', 'P', REQ_SKIP, 1, 2},
        {'A', 0, REQ_FWD, 1, 0},
        {'S', 'B', REQ_FWD, 1, 2},
        {'d', 'E', REQ_FWD, 1, 2},
        {'c', 'E', REQ_FWD, 1, 2},
        {'G', 'Q', REQ_FWD, 1, 2},
        {'H', 'Q', REQ_FWD, 1, 2},
};

START_TEST(test_reply_table)
{
	const struct reply_case *t = &reply_cases[_i];
	struct env *e = env_new();
	struct server *s = e->s;
	if (t->head) {
		push(s, 1, t->head, t->action, NULL, NULL);
		if (t->head != 'S')
			push(s, 2, 'S', REQ_FWD, NULL, NULL);
	}
	int ret = req_reply(s, t->reply);
	ck_assert_msg(ret == t->ret, "reply '%c' to head '%c' (action %d): got %d, want %d",
	              t->reply, t->head ? t->head : '-', t->action, ret, t->ret);
	ck_assert_msg(s->reqs.count == t->left, "reply '%c' to head '%c': %u left, want %u",
	              t->reply, t->head ? t->head : '-', s->reqs.count, t->left);
	env_free(e);
}
END_TEST

/* ParseComplete confirms the statement the Parse prepared, and releases the
 * request's holds. */
START_TEST(test_parse_complete_marks_ready)
{
	struct env *e = env_new();
	struct server *s = e->s;
	struct client *c = e->c;
	struct sstmt *ss = server_stmt(s, "SELECT 1");
	struct cstmt *cs = client_stmt(c, "a", "SELECT 1");
	push(s, 1, 'P', REQ_FWD, ss, cs);
	push(s, 2, 'S', REQ_FWD, NULL, NULL);
	ck_assert_int_eq(ss->state, SS_PENDING);
	ck_assert_int_eq(ss->inflight, 1);
	ck_assert_int_eq(cs->inflight, 1);
	ck_assert_int_eq(req_reply(s, '1'), 1);
	ck_assert_int_eq(ss->state, SS_READY);
	ck_assert_int_eq(ss->inflight, 0);
	ck_assert_int_eq(cs->inflight, 0);
	ck_assert_str_eq(types(s), "S");
	ck_assert_ptr_eq(sstmt_find(&s->stmts, ss->ps), ss);
	ck_assert_ptr_eq(cstmt_find(&c->stmts, "a"), cs);
	env_free(e);
}
END_TEST

/* ---- errors in a pipeline ---- */

/* P(a) B E P(b) B E S, P(a) answered; the Execute-less Bind of b fails: the
 * backend skips to the Sync. Everything after P(a), newest first, is undone:
 * b's server copy and client name go, a stays. */
START_TEST(test_error_mid_pipeline)
{
	struct env *e = env_new();
	struct server *s = e->s;
	struct client *c = e->c;
	struct sstmt *ssa = server_stmt(s, "SELECT 'a'");
	struct cstmt *csa = client_stmt(c, "a", "SELECT 'a'");
	push(s, 1, 'P', REQ_FWD, ssa, csa);
	push(s, 2, 'B', REQ_FWD, NULL, NULL);
	push(s, 3, 'E', REQ_FWD, NULL, NULL);
	struct sstmt *ssb = server_stmt(s, "SELECT 'b'");
	struct cstmt *csb = client_stmt(c, "b", "SELECT 'b'");
	struct pstmt *psb = ssb->ps;
	pstmt_ref(psb);
	push(s, 4, 'P', REQ_FWD, ssb, csb);
	push(s, 5, 'B', REQ_FWD, NULL, NULL);
	push(s, 6, 'E', REQ_FWD, NULL, NULL);
	push(s, 7, 'S', REQ_FWD, NULL, NULL);
	push(s, 8, 'Q', REQ_FWD, NULL, NULL); /* the next cycle, untouched */
	ck_assert_str_eq(types(s), "PBEPBESQ");

	ck_assert_int_eq(req_reply(s, '1'), 1);
	ck_assert_int_eq(req_reply(s, '2'), 1);
	ck_assert_int_eq(req_reply(s, 'D'), 1); /* a row of the first Execute */
	ck_assert_int_eq(req_reply(s, 's'), 1); /* PortalSuspended */
	ck_assert_str_eq(types(s), "PBESQ");
	/* ErrorResponse answering the Parse of b */
	req_error(s);
	ck_assert_str_eq(types(s), "SQ");
	ck_assert_uint_eq(req_head(s)->seq, 7);
	ck_assert(!s->ext_failed); /* the Sync is queued: nothing more to skip */
	ck_assert_ptr_null(sstmt_find(&s->stmts, psb));
	ck_assert_ptr_null(cstmt_find(&c->stmts, "b"));
	ck_assert_ptr_eq(sstmt_find(&s->stmts, ssa->ps), ssa);
	ck_assert_int_eq(ssa->state, SS_READY);
	ck_assert_ptr_eq(cstmt_find(&c->stmts, "a"), csa);
	pstmt_unref(psb);
	env_free(e);
}
END_TEST

/* A client Parse of "DEALLOCATE a" (psycopg's eviction) removed a, with
 * restore set; a Close of x removed x: the backend skips both, so both come
 * back. Newest first: a Parse re-registering x after the Close undoes before
 * the Close restores the old x. */
START_TEST(test_undo_restores_client_statements)
{
	struct env *e = env_new();
	struct server *s = e->s;
	struct client *c = e->c;
	struct cstmt *csa = client_stmt(c, "a", "SELECT 'a'");
	struct cstmt *csx = client_stmt(c, "x", "SELECT 'x1'");
	push(s, 1, 'B', REQ_FWD, NULL, NULL); /* fails */
	/* the DEALLOCATE's dummy Parse, then the client's, as parse_deallocate */
	push(s, 2, 'P', REQ_SKIP, NULL, NULL);
	cstmt_hold(csa);
	cstmt_remove(&c->stmts, csa);
	struct req r = {.seq = 2, .type = 'P', .action = REQ_FWD, .cs = csa, .restore = true};
	ck_assert_int_eq(req_push(s, &r), 0);
	cstmt_release(csa);
	/* Close x: the name goes first, the fake CloseComplete holds it */
	cstmt_hold(csx);
	cstmt_remove(&c->stmts, csx);
	push_fake(s, 3, 'C', FAKE_CLOSE_COMPLETE, csx);
	cstmt_release(csx);
	/* Parse x again (new text), server copy to prepare */
	struct sstmt *ssx2 = server_stmt(s, "SELECT 'x2'");
	struct cstmt *csx2 = client_stmt(c, "x", "SELECT 'x2'");
	push(s, 4, 'P', REQ_FWD, ssx2, csx2);
	push(s, 5, 'S', REQ_FWD, NULL, NULL);
	ck_assert_ptr_null(cstmt_find(&c->stmts, "a"));
	ck_assert_ptr_eq(cstmt_find(&c->stmts, "x"), csx2);
	ck_assert_str_eq(written(c), ""); /* the CloseComplete waits for its turn */

	s->unnamed_owner = c->id;
	req_error(s); /* ErrorResponse for the Bind */
	ck_assert_str_eq(types(s), "S");
	ck_assert_str_eq(written(c), ""); /* skipped: no CloseComplete */
	ck_assert_ptr_eq(cstmt_find(&c->stmts, "a"), csa);
	ck_assert(!csa->dead);
	ck_assert_ptr_eq(cstmt_find(&c->stmts, "x"), csx);
	ck_assert(!csx->dead);
	ck_assert_uint_eq(sstmt_count(&s->stmts), 0);
	/* the skipped dummy Parse was unnamed-looking: the unnamed statement is
	 * not known any more */
	ck_assert_uint_eq(s->unnamed_owner, UNNAMED_UNKNOWN);
	env_free(e);
}
END_TEST

/* "DEALLOCATE a" as a simple Query, answered by pgmux, queued behind a Bind
 * that fails: the backend skips the Query too, so a comes back and no reply
 * is written for it. */
START_TEST(test_undo_fake_deallocate)
{
	struct env *e = env_new();
	struct server *s = e->s;
	struct client *c = e->c;
	struct cstmt *a = client_stmt(c, "a", "SELECT 'a'");
	push(s, 1, 'B', REQ_FWD, NULL, NULL);
	push_fake(s, 2, 'Q', FAKE_DEALLOCATE, a);
	cstmt_remove(&c->stmts, a); /* as on_query, after the push */
	ck_assert_ptr_null(cstmt_find(&c->stmts, "a"));
	push(s, 3, 'S', REQ_FWD, NULL, NULL);
	req_error(s);
	ck_assert_str_eq(types(s), "S");
	ck_assert_ptr_eq(cstmt_find(&c->stmts, "a"), a);
	ck_assert(!a->dead);
	req_pop(s);
	req_emit_fakes(s);
	ck_assert_str_eq(written(c), "");
	env_free(e);
}
END_TEST

/* A statement removed and held by a request whose name is taken again when
 * the request is undone stays removed (and is freed with its last hold). */
START_TEST(test_restore_name_taken)
{
	struct env *e = env_new();
	struct server *s = e->s;
	struct client *c = e->c;
	struct cstmt *old = client_stmt(c, "x", "SELECT 'old'");
	push(s, 1, 'B', REQ_FWD, NULL, NULL);
	cstmt_hold(old);
	cstmt_remove(&c->stmts, old);
	push_fake(s, 2, 'C', FAKE_CLOSE_COMPLETE, old);
	cstmt_release(old);
	/* x registered again, not by a queued request (frontend would queue
	 * one; this checks cstmt_restore's guard) */
	struct cstmt *nw = client_stmt(c, "x", "SELECT 'new'");
	push(s, 3, 'S', REQ_FWD, NULL, NULL);
	req_error(s);
	ck_assert_ptr_eq(cstmt_find(&c->stmts, "x"), nw);
	env_free(e); /* old was freed by the undo's release: ASan checks */
}
END_TEST

/* The client's unnamed Parse fails: it has no unnamed statement now, and the
 * server does not hold one of its. A later Parse of the unnamed statement
 * (another generation) is not affected by the undo of an older one. */
START_TEST(test_undo_unnamed_parse)
{
	struct env *e = env_new();
	struct server *s = e->s;
	struct client *c = e->c;
	c->unnamed = malloc(8);
	c->unnamed_len = c->unnamed_cap = 8;
	c->unnamed_gen = 3;
	s->unnamed_owner = c->id;
	struct req r = {.seq = 1, .type = 'P', .action = REQ_FWD, .mark = 3};
	ck_assert_int_eq(req_push(s, &r), 0);
	push(s, 2, 'S', REQ_FWD, NULL, NULL);
	req_error(s);
	ck_assert_uint_eq(c->unnamed_len, 0);
	ck_assert_uint_eq(s->unnamed_owner, UNNAMED_UNKNOWN);

	/* an older generation's Parse undone: the current one stays */
	req_pop(s); /* the Sync's ReadyForQuery */
	c->unnamed_len = 8;
	c->unnamed_gen = 5;
	s->unnamed_owner = c->id;
	r.mark = 4;
	ck_assert_int_eq(req_push(s, &r), 0);
	push(s, 3, 'S', REQ_FWD, NULL, NULL);
	req_error(s);
	ck_assert_uint_eq(c->unnamed_len, 8);
	ck_assert_uint_eq(s->unnamed_owner, c->id);
	env_free(e);
}
END_TEST

/* An error with no Sync queued yet: the backend skips whatever comes until
 * the Sync, so requests pushed meanwhile are undone at once (their server
 * copies and client names go, a Close is undone, a fake reply is never
 * written); the Sync ends it. */
START_TEST(test_ext_failed_until_sync)
{
	struct env *e = env_new();
	struct server *s = e->s;
	struct client *c = e->c;
	push(s, 1, 'B', REQ_FWD, NULL, NULL);
	push(s, 2, 'E', REQ_FWD, NULL, NULL);
	req_error(s);
	ck_assert(s->ext_failed);
	ck_assert_uint_eq(s->reqs.count, 0);

	struct sstmt *ss = server_stmt(s, "SELECT 2");
	struct pstmt *ps = ss->ps;
	pstmt_ref(ps);
	struct cstmt *cs = client_stmt(c, "p", "SELECT 2");
	push(s, 3, 'P', REQ_FWD, ss, cs);
	ck_assert_uint_eq(s->reqs.count, 0);
	ck_assert_ptr_null(sstmt_find(&s->stmts, ps));
	ck_assert_ptr_null(cstmt_find(&c->stmts, "p"));

	struct cstmt *kept = client_stmt(c, "k", "SELECT 3");
	cstmt_hold(kept);
	cstmt_remove(&c->stmts, kept);
	push_fake(s, 4, 'C', FAKE_CLOSE_COMPLETE, kept);
	cstmt_release(kept);
	ck_assert_ptr_eq(cstmt_find(&c->stmts, "k"), kept);

	struct cstmt *fp = client_stmt(c, "f", "SELECT 4");
	push_fake(s, 5, 'P', FAKE_PARSE_COMPLETE, fp);
	ck_assert_ptr_null(cstmt_find(&c->stmts, "f"));
	push(s, 6, 'Q', REQ_FWD, NULL, NULL); /* skipped too */
	ck_assert_uint_eq(s->reqs.count, 0);
	ck_assert_str_eq(written(c), "");
	ck_assert(s->ext_failed);

	push(s, 7, 'S', REQ_FWD, NULL, NULL);
	ck_assert(!s->ext_failed);
	ck_assert_str_eq(types(s), "S");
	push_fake(s, 8, 'P', FAKE_PARSE_COMPLETE, client_stmt(c, "g", "SELECT 5"));
	ck_assert_str_eq(types(s), "SP");
	ck_assert_ptr_nonnull(cstmt_find(&c->stmts, "g"));
	pstmt_unref(ps);
	env_free(e);
}
END_TEST

/* req_error on an empty queue (an error nothing queued answers, e.g. after
 * the head was popped) still means: skip to the Sync. */
START_TEST(test_error_empty_queue)
{
	struct env *e = env_new();
	req_error(e->s);
	ck_assert(e->s->ext_failed);
	push(e->s, 1, 'S', REQ_FWD, NULL, NULL);
	ck_assert(!e->s->ext_failed);
	env_free(e);
}
END_TEST

/* ---- fake replies ---- */

START_TEST(test_fakes_at_head)
{
	struct env *e = env_new();
	struct server *s = e->s;
	struct client *c = e->c;
	/* nothing ahead: written at once */
	push_fake(s, 1, 'P', FAKE_PARSE_COMPLETE, client_stmt(c, "a", "SELECT 1"));
	ck_assert_uint_eq(s->reqs.count, 0);
	ck_assert_str_eq(written(c), "1");
	push_fake(s, 2, 'C', FAKE_CLOSE_COMPLETE, NULL);
	ck_assert_str_eq(written(c), "3");

	/* behind a Bind: written when the BindComplete has gone out */
	push(s, 3, 'B', REQ_FWD, NULL, NULL);
	push_fake(s, 4, 'P', FAKE_PARSE_COMPLETE, client_stmt(c, "b", "SELECT 2"));
	push_fake(s, 5, 'C', FAKE_CLOSE_COMPLETE, NULL);
	push(s, 6, 'E', REQ_FWD, NULL, NULL);
	push_fake(s, 7, 'P', FAKE_PARSE_COMPLETE, client_stmt(c, "c", "SELECT 3"));
	push(s, 8, 'S', REQ_FWD, NULL, NULL);
	ck_assert_str_eq(written(c), "");
	ck_assert_str_eq(types(s), "BPCEPS");
	ck_assert_int_eq(req_reply(s, '2'), 1);
	req_emit_fakes(s);
	ck_assert_str_eq(written(c), "1 3");
	ck_assert_str_eq(types(s), "EPS");
	req_emit_fakes(s); /* a real request at the head: nothing */
	ck_assert_str_eq(written(c), "");
	req_pop(s); /* CommandComplete: the caller pops the Execute */
	req_emit_fakes(s);
	ck_assert_str_eq(written(c), "1");
	ck_assert_str_eq(types(s), "S");

	/* while a server message is still streaming to the client, a fake that
	 * would go first waits */
	req_pop(s);
	s->stream.left = 10;
	push_fake(s, 9, 'C', FAKE_CLOSE_COMPLETE, NULL);
	ck_assert_str_eq(written(c), "");
	s->stream.left = 0;
	req_emit_fakes(s);
	ck_assert_str_eq(written(c), "3");
	env_free(e);
}
END_TEST

/* DEALLOCATE / DEALLOCATE ALL of protocol-level statements, answered by
 * pgmux: CommandComplete + ReadyForQuery with the transaction status; in an
 * aborted transaction 25P02 and the name comes back. */
static const struct dealloc_case {
	enum req_fake fake;
	char txn;
	const char *want;
	bool a_stays; /* a (registered before) is still there afterwards */
} dealloc_cases[] = {
        {FAKE_DEALLOCATE, 'I', "C:DEALLOCATE Z:I", false},
        {FAKE_DEALLOCATE, 'T', "C:DEALLOCATE Z:T", false},
        {FAKE_DEALLOCATE, 'E', "E:25P02 Z:E", true},
        {FAKE_DEALLOCATE_ALL, 'I', "C:DEALLOCATE ALL Z:I", false},
        {FAKE_DEALLOCATE_ALL, 'T', "C:DEALLOCATE ALL Z:T", false},
        {FAKE_DEALLOCATE_ALL, 'E', "E:25P02 Z:E", true},
        {FAKE_DEALLOCATE, 0, "C:DEALLOCATE Z:I", false}, /* no status seen yet */
};

START_TEST(test_fake_deallocate)
{
	const struct dealloc_case *t = &dealloc_cases[_i];
	struct env *e = env_new();
	struct server *s = e->s;
	struct client *c = e->c;
	struct cstmt *a = client_stmt(c, "a", "SELECT 'a'");
	push(s, 1, 'Q', REQ_FWD, NULL, NULL); /* a Query ahead of it */
	if (t->fake == FAKE_DEALLOCATE) {
		/* as on_query: the fake holds a, then a is removed */
		push_fake(s, 2, 'Q', FAKE_DEALLOCATE, a);
		cstmt_remove(&c->stmts, a);
	} else {
		push_fake(s, 2, 'Q', FAKE_DEALLOCATE_ALL, NULL);
	}
	/* a Parse pipelined after it: DEALLOCATE ALL leaves it alone */
	push_fake(s, 3, 'P', FAKE_PARSE_COMPLETE, client_stmt(c, "later", "SELECT 'later'"));
	ck_assert_str_eq(written(c), "");
	s->txn = t->txn;
	req_pop(s); /* the Query's ReadyForQuery */
	req_emit_fakes(s);
	ck_assert_uint_eq(s->reqs.count, 0);
	const char *got = written(c);
	char want[64];
	snprintf(want, sizeof(want), "%s 1", t->want);
	ck_assert_msg(strcmp(got, want) == 0, "fake %d txn '%c': wrote \"%s\", want \"%s\"",
	              t->fake, t->txn ? t->txn : '0', got, want);
	ck_assert_msg((cstmt_find(&c->stmts, "a") != NULL) == t->a_stays, "fake %d txn '%c': a %s",
	              t->fake, t->txn ? t->txn : '0',
	              t->a_stays ? "was not restored" : "is still there");
	ck_assert_ptr_nonnull(cstmt_find(&c->stmts, "later"));
	env_free(e);
}
END_TEST

/* A closing client, or none: fakes are consumed, nothing is written. */
START_TEST(test_fakes_without_client_output)
{
	struct env *e = env_new();
	struct server *s = e->s;
	struct client *c = e->c;
	c->state = CL_CLOSING;
	push(s, 1, 'B', REQ_FWD, NULL, NULL);
	push_fake(s, 2, 'P', FAKE_PARSE_COMPLETE, NULL);
	push_fake(s, 3, 'Q', FAKE_DEALLOCATE, NULL);
	push_fake(s, 4, 'Q', FAKE_DEALLOCATE_ALL, NULL);
	ck_assert_int_eq(req_reply(s, '2'), 1);
	req_emit_fakes(s);
	ck_assert_uint_eq(s->reqs.count, 0);
	ck_assert_str_eq(written(c), "");

	c->state = CL_ACTIVE;
	s->client = NULL; /* the client is gone */
	s->txn = 'E';
	push(s, 5, 'B', REQ_FWD, NULL, NULL);
	push_fake(s, 6, 'C', FAKE_CLOSE_COMPLETE, NULL);
	push_fake(s, 7, 'Q', FAKE_DEALLOCATE, NULL);
	ck_assert_int_eq(req_reply(s, '2'), 1);
	req_emit_fakes(s);
	ck_assert_uint_eq(s->reqs.count, 0);
	ck_assert_str_eq(written(c), "");
	s->client = c;
	env_free(e);
}
END_TEST

/* ---- COPY and clearing ---- */

START_TEST(test_drop_copy_syncs)
{
	struct env *e = env_new();
	struct server *s = e->s;
	/* S(2) was before the copy started (seq 3): kept; the Syncs after it
	 * are ignored by a backend in copy-in mode: dropped */
	push(s, 1, 'E', REQ_FWD, NULL, NULL);
	push(s, 2, 'S', REQ_FWD, NULL, NULL);
	push(s, 3, 'E', REQ_FWD, NULL, NULL);
	push(s, 4, 'S', REQ_FWD, NULL, NULL);
	push(s, 5, 'H', REQ_FWD, NULL, NULL);
	push(s, 6, 'S', REQ_FWD, NULL, NULL);
	req_drop_copy_syncs(s, 3);
	ck_assert_str_eq(types(s), "ESEH");
	ck_assert_uint_eq(req_at(s, 0)->seq, 1);
	ck_assert_uint_eq(req_at(s, 1)->seq, 2);
	ck_assert_uint_eq(req_at(s, 2)->seq, 3);
	ck_assert_uint_eq(req_at(s, 3)->seq, 5);
	/* with the head in the middle of the ring */
	for (int i = 0; i < 4; i++)
		req_pop(s);
	for (uint64_t q = 10; q < 30; q++)
		push(s, q, q % 2 ? 'S' : 'd', REQ_FWD, NULL, NULL);
	req_drop_copy_syncs(s, 19);
	ck_assert_uint_eq(s->reqs.count, 15);
	for (uint32_t i = 0; i < s->reqs.count; i++) {
		struct req *r = req_at(s, i);
		ck_assert(r->type != 'S' || r->seq <= 19);
	}
	env_free(e);
}
END_TEST

/* A message the backend consumes without an answer (during copy-in): the
 * Nth request is undone and taken out, the others keep their order, also
 * across the end of the ring. */
START_TEST(test_remove_nth)
{
	struct env *e = env_new();
	struct server *s = e->s;
	struct client *c = e->c;
	for (uint64_t q = 1; q <= 12; q++)
		push(s, q, 'd', REQ_FWD, NULL, NULL);
	for (int i = 0; i < 12; i++)
		req_pop(s); /* head at 12 of 16 */
	push(s, 20, 'E', REQ_FWD, NULL, NULL);
	struct sstmt *ss = server_stmt(s, "SELECT 'copy'");
	struct pstmt *ps = ss->ps;
	pstmt_ref(ps);
	push(s, 21, 'P', REQ_FWD, ss, client_stmt(c, "p", "SELECT 'copy'"));
	for (uint64_t q = 22; q < 28; q++)
		push(s, q, q % 2 ? 'S' : 'B', REQ_FWD, NULL, NULL);
	ck_assert_str_eq(types(s), "EPBSBSBS");
	req_remove(s, 1);
	ck_assert_str_eq(types(s), "EBSBSBS");
	ck_assert_ptr_null(sstmt_find(&s->stmts, ps));
	ck_assert_ptr_null(cstmt_find(&c->stmts, "p"));
	uint64_t want[] = {20, 22, 23, 24, 25, 26, 27};
	for (uint32_t i = 0; i < s->reqs.count; i++)
		ck_assert_uint_eq(req_at(s, i)->seq, want[i]);
	req_remove(s, s->reqs.count - 1); /* the last */
	ck_assert_str_eq(types(s), "EBSBSB");
	req_remove(s, s->reqs.count); /* past the end: nothing */
	ck_assert_uint_eq(s->reqs.count, 6);
	req_remove(s, 0);
	ck_assert_uint_eq(req_head(s)->seq, 22);
	pstmt_unref(ps);
	env_free(e);
}
END_TEST

/* A server closing with statements in flight: req_clear releases every hold;
 * statements already removed from their maps are freed then (no leak, no
 * double free: the ASan build checks). */
START_TEST(test_clear_releases_holds)
{
	struct env *e = env_new();
	struct server *s = e->s;
	struct client *c = e->c;
	for (int i = 0; i < 40; i++) {
		char sql[32], name[16];
		snprintf(sql, sizeof(sql), "SELECT %d", i);
		snprintf(name, sizeof(name), "s%d", i);
		struct sstmt *ss = server_stmt(s, sql);
		struct cstmt *cs = client_stmt(c, name, sql);
		push(s, (uint64_t)i, 'P', REQ_FWD, ss, cs);
		if (i % 2) {
			sstmt_remove(&s->stmts, ss); /* dead, held by the request */
			cstmt_remove(&c->stmts, cs);
			ck_assert(ss->dead && cs->dead);
		}
	}
	ck_assert_uint_eq(sstmt_count(&s->stmts), 20);
	ck_assert_uint_eq(pstmt_count(), e->pstmts_at_start + 40);
	req_clear(s);
	ck_assert_uint_eq(s->reqs.count, 0);
	/* the live half is still in the maps, not held */
	ck_assert_uint_eq(pstmt_count(), e->pstmts_at_start + 20);
	struct cstmt *cs0 = cstmt_find(&c->stmts, "s0");
	ck_assert_ptr_nonnull(cs0);
	ck_assert_int_eq(cs0->inflight, 0);
	/* the queue is usable again after a clear */
	push(s, 100, 'S', REQ_FWD, NULL, NULL);
	ck_assert_str_eq(types(s), "S");
	env_free(e);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("requests");
	TCase *tc = tcase_create("queue");
	tcase_add_test(tc, test_push_pop_order);
	tcase_add_loop_test(tc, test_reply_table, 0,
	                    (int)(sizeof(reply_cases) / sizeof(reply_cases[0])));
	tcase_add_test(tc, test_parse_complete_marks_ready);
	suite_add_tcase(s, tc);
	tc = tcase_create("errors");
	tcase_add_test(tc, test_error_mid_pipeline);
	tcase_add_test(tc, test_undo_restores_client_statements);
	tcase_add_test(tc, test_undo_fake_deallocate);
	tcase_add_test(tc, test_restore_name_taken);
	tcase_add_test(tc, test_undo_unnamed_parse);
	tcase_add_test(tc, test_ext_failed_until_sync);
	tcase_add_test(tc, test_error_empty_queue);
	suite_add_tcase(s, tc);
	tc = tcase_create("fakes");
	tcase_add_test(tc, test_fakes_at_head);
	tcase_add_loop_test(tc, test_fake_deallocate, 0,
	                    (int)(sizeof(dealloc_cases) / sizeof(dealloc_cases[0])));
	tcase_add_test(tc, test_fakes_without_client_output);
	suite_add_tcase(s, tc);
	tc = tcase_create("copy_and_clear");
	tcase_add_test(tc, test_drop_copy_syncs);
	tcase_add_test(tc, test_remove_nth);
	tcase_add_test(tc, test_clear_releases_holds);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
