/* Request queue of a server connection. See requests.h. */
#include "pool/requests.h"

#include "core/config.h"
#include "pg/proto.h"
#include "pool/pool.h"
#include "pool/pstmt.h"
#include "pool/relink.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int grow(struct reqq *q)
{
	uint32_t cap = q->cap ? q->cap * 2 : 16;
	struct req *v = malloc(cap * sizeof(*v));
	if (!v)
		return -1;
	for (uint32_t i = 0; i < q->count; i++)
		v[i] = q->v[(q->head + i) % q->cap];
	free(q->v);
	q->v = v;
	q->head = 0;
	q->cap = cap;
	return 0;
}

struct req *req_at(struct server *s, uint32_t n)
{
	struct reqq *q = &s->reqs;
	return n < q->count ? &q->v[(q->head + n) % q->cap] : NULL;
}

static void release_holds(struct req *r)
{
	if (r->ss)
		sstmt_release(r->ss);
	if (r->cs)
		cstmt_release(r->cs);
	free(r->err_msg);
	r->ss = NULL;
	r->cs = NULL;
	r->err_msg = NULL;
}

/* Undo what R did, as the backend skipped it. */
static void undo(struct server *s, struct req *r)
{
	struct client *c = s->client;
	if (r->type == 'P') {
		if (r->ss)
			sstmt_remove(&s->stmts, r->ss);
		if (r->cs && c && r->restore)
			cstmt_restore(&c->stmts, r->cs); /* its DEALLOCATE never ran */
		else if (r->cs && c)
			cstmt_remove(&c->stmts, r->cs);
		if (!r->ss && !r->cs && r->action == REQ_FWD && c && c->unnamed_gen == r->mark) {
			/* the client's unnamed statement failed: it has none now */
			c->unnamed_len = 0;
			if (s->unnamed_owner == c->id)
				s->unnamed_owner = UNNAMED_UNKNOWN;
		}
		if (r->action == REQ_SKIP && !r->ss)
			s->unnamed_owner = UNNAMED_UNKNOWN; /* an injected unnamed Parse skipped */
	} else if ((r->type == 'C' || r->type == 'Q') && r->cs && c) {
		/* the Close (or the DEALLOCATE pgmux answers) never happened */
		cstmt_restore(&c->stmts, r->cs);
	}
	release_holds(r);
}

int req_push(struct server *s, const struct req *r)
{
	struct reqq *q = &s->reqs;
	struct req copy = *r;
	if (copy.ss)
		sstmt_hold(copy.ss);
	if (copy.cs)
		cstmt_hold(copy.cs);
	if (s->ext_failed && copy.type != 'S') {
		undo(s, &copy); /* the backend skips everything up to Sync, Query included */
		return 0;
	}
	if (copy.type == 'S')
		s->ext_failed = false;
	if (pool_config()->query_timeout > 0)
		copy.sent_ms = conn_now_ms();
	if (q->count == q->cap && grow(q) < 0) {
		release_holds(&copy);
		return -1;
	}
	q->v[(q->head + q->count) % q->cap] = copy;
	q->count++;
	if (q->count == 1 && copy.action == REQ_FAKE && s->stream.left == 0)
		req_emit_fakes(s);
	return 0;
}

void req_pop(struct server *s)
{
	struct reqq *q = &s->reqs;
	if (!q->count)
		return;
	struct req *r = &q->v[q->head];
	if (r->type == 'P' && r->ss)
		r->ss->state = SS_READY;
	release_holds(r);
	q->head = (q->head + 1) % q->cap;
	q->count--;
	s->reqs_answered++;
}

void req_error(struct server *s)
{
	struct reqq *q = &s->reqs;
	uint32_t n = 0;
	while (n < q->count && q->v[(q->head + n) % q->cap].type != 'S')
		n++;
	/* newest first, so that a Close after a Parse of the same name undoes
	 * in the right order */
	for (uint32_t i = n; i-- > 0;)
		undo(s, &q->v[(q->head + i) % q->cap]);
	q->head = q->cap ? (q->head + n) % q->cap : 0;
	q->count -= n;
	s->reqs_answered += n;
	if (q->count == 0)
		s->ext_failed = true; /* the Sync is still to come */
}

void req_remove(struct server *s, uint32_t n)
{
	struct reqq *q = &s->reqs;
	if (n >= q->count)
		return;
	undo(s, &q->v[(q->head + n) % q->cap]);
	for (uint32_t i = n; i + 1 < q->count; i++)
		q->v[(q->head + i) % q->cap] = q->v[(q->head + i + 1) % q->cap];
	q->count--;
}

void req_undo_all(struct server *s)
{
	struct reqq *q = &s->reqs;
	for (uint32_t i = q->count; i-- > 0;)
		undo(s, &q->v[(q->head + i) % q->cap]);
	q->head = 0;
	q->count = 0;
	s->ext_failed = false;
}

static void write_fake(struct server *s, struct req *r)
{
	struct client *c = s->client;
	struct evbuffer *out = c && c->state != CL_CLOSING ? bufferevent_get_output(c->bev) : NULL;
	if (out && c->relink_active)
		relink_stop(c);
	switch (r->fake) {
	case FAKE_PARSE_COMPLETE:
		if (out)
			proto_write_msg(out, '1', NULL, 0);
		break;
	case FAKE_CLOSE_COMPLETE:
		if (out)
			proto_write_msg(out, '3', NULL, 0);
		break;
	case FAKE_DEALLOCATE:
	case FAKE_DEALLOCATE_ALL:
		if (s->txn == 'E') {
			/* as the server: nothing runs in an aborted transaction */
			if (r->cs && c)
				cstmt_restore(&c->stmts, r->cs);
			if (out)
				proto_write_error(out, "ERROR", "25P02",
						  "current transaction is aborted, commands ignored "
						  "until end of transaction block");
		} else if (out) {
			const char *tag = r->fake == FAKE_DEALLOCATE ? "DEALLOCATE" : "DEALLOCATE ALL";
			if (r->fake == FAKE_DEALLOCATE_ALL && c)
				cstmt_forget_upto(&c->stmts, r->cmark);
			proto_write_msg(out, 'C', tag, strlen(tag) + 1);
		}
		if (out)
			proto_write_ready(out, s->txn ? s->txn : 'I');
		break;
	}
}

void req_emit_fakes(struct server *s)
{
	struct reqq *q = &s->reqs;
	while (q->count && q->v[q->head].action == REQ_FAKE) {
		write_fake(s, &q->v[q->head]);
		req_pop(s);
	}
}

void req_drop_copy_syncs(struct server *s, uint64_t after_seq)
{
	req_drop_copy_syncs_upto(s, after_seq, UINT64_MAX);
}

void req_drop_copy_syncs_upto(struct server *s, uint64_t after_seq, uint64_t upto_seq)
{
	struct reqq *q = &s->reqs;
	uint32_t keep = 0;
	for (uint32_t i = 0; i < q->count; i++) {
		struct req *r = &q->v[(q->head + i) % q->cap];
		if (r->type == 'S' && r->seq > after_seq && r->seq <= upto_seq) {
			release_holds(r);
			continue;
		}
		q->v[(q->head + keep) % q->cap] = *r;
		keep++;
	}
	q->count = keep;
}

void req_clear(struct server *s)
{
	struct reqq *q = &s->reqs;
	while (q->count)
		req_pop(s);
	free(q->v);
	memset(q, 0, sizeof(*q));
}

bool req_only_own_closes(struct server *s)
{
	struct reqq *q = &s->reqs;
	for (uint32_t i = 0; i < q->count; i++) {
		const struct req *r = &q->v[(q->head + i) % q->cap];
		if (r->type != 'C' || r->action != REQ_SKIP)
			return false;
	}
	return true;
}

int req_reply(struct server *s, char type)
{
	struct req *h = req_head(s);
	char want;
	switch (type) {
	case '1': want = 'P'; break;
	case '2': want = 'B'; break;
	case '3': want = 'C'; break;
	case 'n': want = 'D'; break;
	case 'T':
		/* RowDescription answers a Describe; after a Query or Execute it is
		 * part of the result */
		if (!h || h->type != 'D')
			return 1;
		want = 'D';
		break;
	case 't':
		return h && h->type == 'D' ? h->action != REQ_SKIP : 1;
	case 'I':
	case 's':
		if (h && h->type == 'Q')
			return 1; /* EmptyQueryResponse inside a simple Query */
		want = 'E';
		break;
	default:
		/* rows, notices, notifications, copy data, parameter status... */
		return 1;
	}
	if (!h || h->type != want)
		return -1;
	int fwd = h->action != REQ_SKIP;
	req_pop(s);
	return fwd;
}
