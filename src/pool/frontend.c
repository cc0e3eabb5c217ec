/* Client messages in transaction pooling. See frontend.h. */
#include "pool/frontend.h"

#include "core/config.h"
#include "core/log.h"
#include "pg/frame.h"
#include "pg/proto.h"
#include "pg/sqllex.h"
#include "pool/client.h"
#include "pool/conn.h"
#include "pool/pool.h"
#include "pool/pstmt.h"
#include "pool/relink.h"
#include "pool/requests.h"
#include "pool/server.h"
#include "pool/session.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BIND_WHOLE_MAX (64 * 1024)  /* larger Binds are streamed after their names */
#define TEXT_WHOLE_MAX (1024 * 1024) /* larger Queries and Parses are streamed... */
#define TEXT_HEAD_MAX (64 * 1024)   /* ...after this much of them arrived */
#define QUERY_HOLD 2                /* last bytes of a streamed Query held until it is judged */
#define BIND_PREFIX_MAX 8192        /* the names must fit in this much */
#define CAPTURE_MAX (64 * 1024)     /* segments kept for a retry */

enum { CAP_OFF, CAP_OPEN, CAP_DONE };

/* ---- writing to the server ---- */

/* Append the start of a message of TYPE with a body of BODY_LEN bytes: the
 * concatenation of N parts, and whatever the caller streams after them. */
static int write_msg_start(struct evbuffer *out, char type, size_t body_len, int n,
			   const void *const *parts, const size_t *lens)
{
	size_t len = 4 + body_len;
	uint8_t hdr[5];
	uint32_t nl = htonl((uint32_t)len);
	hdr[0] = (uint8_t)type;
	memcpy(hdr + 1, &nl, 4);
	if (evbuffer_add(out, hdr, 5) < 0)
		return -1;
	for (int i = 0; i < n; i++)
		if (lens[i] && evbuffer_add(out, parts[i], lens[i]) < 0)
			return -1;
	return 0;
}

/* Append a message of TYPE whose body is the concatenation of N parts. */
static int write_msg(struct evbuffer *out, char type, int n, const void *const *parts,
		     const size_t *lens)
{
	size_t len = 0;
	for (int i = 0; i < n; i++)
		len += lens[i];
	if (evbuffer_expand(out, len + 5) < 0)
		return -1;
	return write_msg_start(out, type, len, n, parts, lens);
}

static struct evbuffer *sout(struct server *s)
{
	return bufferevent_get_output(s->bev);
}

static int push(struct server *s, uint64_t seq, char type, enum req_action action,
		struct sstmt *ss, struct cstmt *cs)
{
	struct req r = {.seq = seq, .type = type, .action = (uint8_t)action, .ss = ss, .cs = cs,
			.mark = s->stmts.counter, .cmark = s->client ? s->client->stmt_regs : 0};
	return req_push(s, &r);
}

static int push_fake(struct server *s, uint64_t seq, char type, enum req_fake fake,
		     struct cstmt *cs)
{
	struct req r = {.seq = seq, .type = type, .action = REQ_FAKE, .fake = (uint8_t)fake,
			.cs = cs, .mark = s->stmts.counter,
			.cmark = s->client ? s->client->stmt_regs : 0};
	return req_push(s, &r);
}

/* Raise SQLSTATE / MSG on the server itself, where the client's message
 * would have been processed: an unnamed DO block that raises it. The
 * backend then skips to Sync and reports the transaction state, exactly as
 * for its own error (and skips the DO too if it is already skipping). */
static int inject_error(struct server *s, uint64_t seq, const char *sqlstate, const char *msg)
{
	struct evbuffer *sql = evbuffer_new();
	if (!sql)
		return -1;
	evbuffer_add_printf(sql, "DO $pgmux$BEGIN RAISE EXCEPTION USING ERRCODE = '%s', MESSAGE = E'",
			    sqlstate);
	/* plain ASCII only: the bytes of a client's name are in its encoding,
	 * which a multibyte encoding could turn into a quote */
	for (const char *p = msg; *p; p++) {
		unsigned char ch = (unsigned char)*p;
		if (ch == '\'' || ch == '\\')
			evbuffer_add_printf(sql, "\\%c", ch);
		else if (ch == '$')
			evbuffer_add(sql, "\\x24", 4);
		else if (ch < 0x20 || ch >= 0x7f)
			evbuffer_add(sql, "?", 1);
		else
			evbuffer_add(sql, p, 1);
	}
	evbuffer_add_printf(sql, "'; END$pgmux$");
	evbuffer_add(sql, "\0\0\0", 3); /* query terminator + no parameter types */
	size_t qlen = evbuffer_get_length(sql);
	const uint8_t *q = evbuffer_pullup(sql, -1);
	static const uint8_t bind[] = {0, 0, 0, 0, 0, 0, 0, 0}; /* '' '' 0 fmts 0 params 0 results */
	static const uint8_t exec[] = {0, 0, 0, 0, 0};           /* '' max_rows 0 */
	const void *pp[] = {"", q};
	size_t pl[] = {1, qlen};
	const void *bp[] = {bind};
	size_t bl[] = {sizeof(bind)};
	const void *ep[] = {exec};
	size_t el[] = {sizeof(exec)};
	int rc = q ? 0 : -1;
	if (rc == 0)
		rc = write_msg(sout(s), 'P', 2, pp, pl) | write_msg(sout(s), 'B', 1, bp, bl) |
		     write_msg(sout(s), 'E', 1, ep, el);
	evbuffer_free(sql);
	s->unnamed_owner = UNNAMED_UNKNOWN; /* the DO block, or the old one if skipped */
	s->ext_open = true;
	if (rc == 0 && strcmp(sqlstate, "26000") == 0) {
		/* in an aborted transaction the DO block gets 25P02 at its Parse,
		 * where PostgreSQL would have said 26000: say it anyway */
		struct req r = {.seq = seq, .type = 'P', .action = REQ_SKIP, .mark = s->stmts.counter,
				.cmark = s->client ? s->client->stmt_regs : 0, .err_msg = strdup(msg)};
		rc = r.err_msg ? req_push(s, &r) : -1;
		rc = rc | push(s, seq, 'B', REQ_SKIP, NULL, NULL) |
		     push(s, seq, 'E', REQ_SKIP, NULL, NULL);
	} else if (rc == 0)
		rc = push(s, seq, 'P', REQ_SKIP, NULL, NULL) | push(s, seq, 'B', REQ_SKIP, NULL, NULL) |
		     push(s, seq, 'E', REQ_SKIP, NULL, NULL);
	return rc;
}

/* ---- prepared statements on the server ---- */

static int write_close(struct server *s, uint64_t seq, const char *name)
{
	const void *parts[] = {"S", name};
	size_t lens[] = {1, strlen(name) + 1};
	if (write_msg(sout(s), 'C', 2, parts, lens) < 0)
		return -1;
	return push(s, seq, 'C', REQ_SKIP, NULL, NULL);
}

/* Close server statement NAME, which pgmux no longer tracks. Only where
 * nothing queued before it can fail (a Close the backend skips would leave
 * it there for good): otherwise it waits in S's to_close list. */
static int close_server_stmt(struct server *s, uint64_t seq, const char *name)
{
	if (s->reqs.count == 0 && !s->ext_failed && (!s->client || s->client->stream.left == 0))
		return write_close(s, seq, name);
	if (s->nclose == s->capclose) {
		int cap = s->capclose ? s->capclose * 2 : 8;
		char(*v)[32] = realloc(s->to_close, (size_t)cap * sizeof(*v));
		if (!v)
			return 0; /* it stays prepared on that server: harmless */
		s->to_close = v;
		s->capclose = cap;
	}
	snprintf(s->to_close[s->nclose++], sizeof(s->to_close[0]), "%s", name);
	return 0;
}

/* Queue a Close for every copy on S that no client statement refers to any
 * more (pstmt.h, orphans). */
static void collect_orphans(struct server *s)
{
	uint64_t gen = pstmt_orphan_gen();
	if (gen == s->orphan_seen)
		return;
	s->orphan_seen = gen;
	struct sstmt *ss, *next;
	for (ss = TAILQ_FIRST(&s->stmts.lru); ss; ss = next) {
		next = TAILQ_NEXT(ss, lru);
		if (ss->inflight || ss->state != SS_READY || !pstmt_orphaned(ss->ps))
			continue;
		char name[sizeof(ss->name)];
		memcpy(name, ss->name, sizeof(name));
		sstmt_remove(&s->stmts, ss);
		if (close_server_stmt(s, s->seq, name) < 0) {
			server_close(s, "out_of_memory");
			return;
		}
	}
}

void frontend_flush_closes(struct server *s)
{
	if (s->reqs.count || s->ext_failed)
		return;
	collect_orphans(s);
	if (!s->nclose || s->state != SV_ACTIVE)
		return;
	for (int i = 0; i < s->nclose; i++)
		if (write_close(s, s->seq, s->to_close[i]) < 0) {
			server_close(s, "out_of_memory");
			return;
		}
	s->nclose = 0;
}

/* Make room for one more statement on S: close the least recently used. */
static int evict(struct server *s, uint64_t seq)
{
	int max = pool_config()->max_prepared_statements;
	while ((int)sstmt_count(&s->stmts) >= max) {
		struct sstmt *v = sstmt_lru_victim(&s->stmts);
		if (!v)
			return 0; /* all in use by this pipeline: over the limit for a while */
		char name[sizeof(v->name)];
		memcpy(name, v->name, sizeof(name));
		sstmt_remove(&s->stmts, v);
		if (close_server_stmt(s, seq, name) < 0)
			return -1;
	}
	return 0;
}

/* A new server statement for PS on S (its Parse is the caller's to write). */
static struct sstmt *add_server_stmt(struct server *s, struct pstmt *ps)
{
	struct sstmt *ss = sstmt_add(&s->stmts, ps);
	if (ss && s->txn != 'I') {
		ss->tentative = true; /* stale if this block fails (pstmt.h) */
		s->tentative_stmts = true;
	}
	return ss;
}

/* Client statement CS as prepared on S, preparing it first if needed (its
 * ParseComplete is pgmux's). NULL on failure. */
static struct sstmt *ensure_prepared(struct server *s, uint64_t seq, struct cstmt *cs)
{
	struct pstmt *ps = cs->ps;
	struct sstmt *ss = sstmt_find(&s->stmts, ps);
	if (ss && sstmt_usable(ss, cs)) {
		sstmt_touch(&s->stmts, ss);
		return ss;
	}
	if (ss) {
		/* its plan went stale elsewhere: replace it */
		char name[sizeof(ss->name)];
		memcpy(name, ss->name, sizeof(name));
		sstmt_remove(&s->stmts, ss);
		if (close_server_stmt(s, seq, name) < 0)
			return NULL;
	}
	if (evict(s, seq) < 0 || !(ss = add_server_stmt(s, ps)))
		return NULL;
	const void *parts[] = {ss->name, ps->body};
	size_t lens[] = {strlen(ss->name) + 1, ps->len};
	if (write_msg(sout(s), 'P', 2, parts, lens) < 0 || push(s, seq, 'P', REQ_SKIP, ss, NULL) < 0)
		return NULL;
	return ss;
}

/* The client's unnamed statement onto S if S holds someone else's. Returns
 * 1 if done or not needed, 0 if the client has none (and S has another
 * one), -1 on failure. */
static int ensure_unnamed(struct client *c, struct server *s, uint64_t seq)
{
	if (s->unnamed_owner == c->id && s->unnamed_gen == c->unnamed_gen)
		return 1; /* the server holds the client's current one */
	if (c->unnamed_len == 0)
		return s->unnamed_owner == 0 ? 1 : 0; /* none there either: its own 26000 */
	const void *parts[] = {c->unnamed};
	size_t lens[] = {c->unnamed_len};
	/* owner first: a push the backend will skip undoes it at once */
	s->unnamed_owner = c->id;
	s->unnamed_gen = c->unnamed_gen;
	if (write_msg(sout(s), 'P', 1, parts, lens) < 0 || push(s, seq, 'P', REQ_SKIP, NULL, NULL) < 0)
		return -1;
	return 1;
}

/* ---- session effects of SQL ---- */

/* DDL goes to S: server copies prepared before it may be stale (pstmt.h). */
static void note_ddl(struct server *s)
{
	pstmt_ddl_seen();
	s->ddl_pending = true;
}

/* Note what SQL does; returns 1 if it was refused (error injected), 0 to go
 * on, -1 on failure. */
/* Note what SQL does. RUN: it executes now (a Query, or the Bind of a
 * prepared statement), so its setting changes are queued under SEQ and the
 * server becomes dirty; a Parse only pins (and may be refused). Returns 1
 * if it was refused (error injected), 0 to go on, -1 on failure. */
static int inspect(struct client *c, struct server *s, const char *sql, size_t len, uint64_t seq,
		   bool run, struct session_effects *fx)
{
	bool deny = pool_db(c->pool)->session_pinning == PINNING_DENY;
	/* with deny, nothing may be recorded before the pins are known */
	if (session_inspect(c, sql, len, seq, run && !deny, fx) < 0)
		return -1;
	if (deny && fx->pins) {
		char msg[200];
		session_deny_message(fx->pins, msg, sizeof(msg));
		log_info("session_pinning_denied", "db=%s user=%s addr=%s client=%llu",
			 pool_db_name(c->pool), pool_user(c->pool), c->addr, (unsigned long long)c->id);
		return inject_error(s, seq, "0A000", msg) < 0 ? -1 : 1;
	}
	if (run && deny && session_has_effects(fx->kinds) &&
	    session_inspect(c, sql, len, seq, true, fx) < 0)
		return -1;
	if (fx->pins)
		session_pin(c, s, fx->pins);
	if (run && fx->sets)
		s->dirty_params = true;
	if (run && fx->ddl)
		note_ddl(s);
	return 0;
}

/* The Bind of a prepared statement whose text (KINDS from the lexer) changes
 * the session: its effects happen now. */
static int run_effects(struct client *c, struct server *s, uint64_t seq, const char *sql,
		       unsigned kinds)
{
	struct session_effects fx;
	if (!session_has_effects(kinds))
		return 0;
	return inspect(c, s, sql, strlen(sql), seq, true, &fx) < 0 ? -1 : 0;
}

/* ---- one handler per message type ---- */

/* Send the client's message unchanged; the server's reply goes back. */
static int forward_as_is(struct server *s, uint64_t seq, char type, const uint8_t *msg,
			 size_t total)
{
	if (evbuffer_add(sout(s), msg, total) < 0)
		return -1;
	return push(s, seq, type, REQ_FWD, NULL, NULL);
}

/* Describe and Close: a kind byte ('S' statement, 'P' portal) and a name.
 * Returns 0, or -2 if malformed. */
static int kind_and_name(const uint8_t *msg, size_t total, uint8_t *kind, const char **name)
{
	struct proto_reader r;
	proto_reader_init(&r, msg + 5, total - 5);
	*kind = proto_get_u8(&r);
	*name = proto_get_str(&r);
	return r.err ? -2 : 0;
}

static int on_query(struct client *c, struct server *s, uint64_t seq, const uint8_t *msg,
		    size_t total)
{
	const char *sql = (const char *)msg + 5;
	size_t len = strnlen(sql, total - 5);
	struct session_effects fx;
	/* a simple Query drops the unnamed statement, on the server too (unless
	 * the backend skips it: then who knows) */
	c->unnamed_len = 0;
	c->unnamed_deny = 0;
	s->unnamed_owner = s->ext_failed ? UNNAMED_UNKNOWN : 0;
	int rc = inspect(c, s, sql, len, seq, true, &fx);
	if (rc < 0)
		return -1;
	relink_ran(c, fx.nstmts > 0 && fx.kinds == 1u << SQL_BEGIN);
	if (rc == 1) {
		/* refused: a Sync stands in for the Query's ReadyForQuery */
		static const uint8_t sync[] = {'S', 0, 0, 0, 4};
		s->ext_open = false;
		if (evbuffer_add(sout(s), sync, sizeof(sync)) < 0)
			return -1;
		return push(s, seq, 'S', REQ_FWD, NULL, NULL);
	}
	if (fx.nstmts == 1 && fx.single_kind == SQL_DEALLOCATE) {
		struct cstmt *cs = cstmt_find(&c->stmts, fx.single_name);
		if (cs) {
			/* a protocol-level statement: the server has it under another
			 * name, maybe shared; answer for it. Removed first: the fake
			 * reply may go out (25P02 putting it back) or be undone (the
			 * backend skipping) within the push */
			cstmt_hold(cs);
			cstmt_remove(&c->stmts, cs);
			int r = push_fake(s, seq, 'Q', FAKE_DEALLOCATE, cs);
			cstmt_release(cs);
			return r;
		}
	}
	/* the client's names go when DEALLOCATE ALL / DISCARD ALL has run (its
	 * tag, or pgmux's own answer), not if it fails */
	if (fx.nstmts == 1 && fx.single_kind == SQL_DEALLOCATE_ALL &&
	    !(c->pins & (1u << PIN_SQL_PREPARE)))
		return push_fake(s, seq, 'Q', FAKE_DEALLOCATE_ALL, NULL);
	return forward_as_is(s, seq, 'Q', msg, total);
}

/* Parse of "DEALLOCATE name" for a client's protocol-level statement (as
 * psycopg sends it): the server copy may be shared and is named otherwise,
 * so the backend gets "DEALLOCATE <a statement made for it>" instead, and
 * every reply (errors in an aborted transaction included) is its own. */
static int parse_deallocate(struct client *c, struct server *s, uint64_t seq, const char *name,
			    struct cstmt *cs)
{
	char dummy[32], sql[64];
	static const uint8_t no_types[] = {0, 0};
	snprintf(dummy, sizeof(dummy), "pgmux_d%llu", (unsigned long long)++s->stmts.counter);
	snprintf(sql, sizeof(sql), "DEALLOCATE %s", dummy);
	const void *dp[] = {dummy, "SELECT", no_types};
	size_t dl[] = {strlen(dummy) + 1, 7, sizeof(no_types)};
	const void *pp[] = {name, sql, no_types};
	size_t pl[] = {strlen(name) + 1, strlen(sql) + 1, sizeof(no_types)};
	if (write_msg(sout(s), 'P', 3, dp, dl) < 0 || push(s, seq, 'P', REQ_SKIP, NULL, NULL) < 0)
		return -1;
	if (!name[0]) {
		c->unnamed_len = 0; /* not re-creatable: it names a statement of this server */
		c->unnamed_deny = 0;
		s->unnamed_owner = c->id;
		s->unnamed_gen = ++c->unnamed_gen;
	}
	cstmt_hold(cs);
	cstmt_remove(&c->stmts, cs);
	struct req r = {.seq = seq, .type = 'P', .action = REQ_FWD, .cs = cs, .restore = true,
			.mark = s->stmts.counter};
	int rc = write_msg(sout(s), 'P', 3, pp, pl) < 0 ? -1 : req_push(s, &r);
	cstmt_release(cs);
	return rc;
}

static int on_parse(struct client *c, struct server *s, uint64_t seq, const uint8_t *msg,
		    size_t total)
{
	struct proto_reader r;
	proto_reader_init(&r, msg + 5, total - 5);
	const char *name = proto_get_str(&r);
	const char *sql = proto_get_str(&r);
	if (!name || !sql)
		return -2;
	size_t name_len = strlen(name) + 1;
	const uint8_t *rest = msg + 5 + name_len; /* query, parameter types */
	size_t rest_len = total - 5 - name_len;
	if (name[0] && cstmt_find(&c->stmts, name)) {
		char m[160];
		snprintf(m, sizeof(m), "prepared statement \"%.63s\" already exists", name);
		return inject_error(s, seq, "42P05", m);
	}
	struct session_effects fx;
	int rc = inspect(c, s, sql, strlen(sql), seq, false, &fx);
	if (rc != 0)
		return rc < 0 ? -1 : 0;
	if (fx.nstmts == 1 && fx.single_kind == SQL_DEALLOCATE && cstmt_find(&c->stmts, fx.single_name))
		return parse_deallocate(c, s, seq, name, cstmt_find(&c->stmts, fx.single_name));
	if (!name[0]) {
		/* the unnamed statement: forwarded as is, remembered to re-create it
		 * on another server for a Bind in a later transaction */
		size_t blen = total - 5;
		if (blen > c->unnamed_cap) {
			uint8_t *p = realloc(c->unnamed, blen);
			if (!p)
				return -1;
			c->unnamed = p;
			c->unnamed_cap = blen;
		}
		memcpy(c->unnamed, msg + 5, blen);
		c->unnamed_len = blen;
		c->unnamed_deny = 0;
		c->unnamed_kinds = fx.kinds;
		c->unnamed_ddl = fx.ddl;
		c->unnamed_gen++;
		s->unnamed_owner = c->id;
		s->unnamed_gen = c->unnamed_gen;
		if (evbuffer_add(sout(s), msg, total) < 0)
			return -1;
		struct req q = {.seq = seq, .type = 'P', .action = REQ_FWD, .mark = c->unnamed_gen};
		return req_push(s, &q);
	}
	struct pstmt *ps = pstmt_intern(rest, rest_len);
	if (!ps)
		return -1;
	__atomic_store_n(&ps->state_kinds, fx.kinds, __ATOMIC_RELAXED);
	__atomic_store_n(&ps->ddl, fx.ddl, __ATOMIC_RELAXED);
	struct cstmt *cs = cstmt_add(&c->stmts, name, ps);
	pstmt_unref(ps);
	if (!cs)
		return -1;
	cs->reg = ++c->stmt_regs;
	struct sstmt *ss = sstmt_find(&s->stmts, ps);
	if (ss && sstmt_usable(ss, cs)) {
		/* already there: answer for it */
		sstmt_touch(&s->stmts, ss);
		return push_fake(s, seq, 'P', FAKE_PARSE_COMPLETE, cs);
	}
	if (ss) {
		char old[sizeof(ss->name)];
		memcpy(old, ss->name, sizeof(old));
		sstmt_remove(&s->stmts, ss);
		if (close_server_stmt(s, seq, old) < 0)
			return -1;
	}
	if (evict(s, seq) < 0 || !(ss = add_server_stmt(s, ps)))
		return -1;
	const void *parts[] = {ss->name, rest};
	size_t lens[] = {strlen(ss->name) + 1, rest_len};
	if (write_msg(sout(s), 'P', 2, parts, lens) < 0)
		return -1;
	/* the server's ParseComplete answers the client's Parse */
	return push(s, seq, 'P', REQ_FWD, ss, cs);
}

/* The server-side name for client statement NAME (Bind or Describe), with
 * whatever has to go first. Returns the name, "" for the unnamed statement
 * as is, or NULL with *RC set: 1 if an error was raised instead, -1 on
 * failure. */
static const char *map_statement(struct client *c, struct server *s, uint64_t seq,
				 const char *name, struct sstmt **ssp, int *rc)
{
	*ssp = NULL;
	if (s->ext_failed) {
		/* the backend skips this message to the next Sync: nothing need be
		 * prepared for it (a Parse pushed now would be undone, and its
		 * statement freed, at once), and the name it carries is not read */
		return name;
	}
	if (!name[0]) {
		if (c->unnamed_deny && s->unnamed_owner == c->id) {
			/* a streamed unnamed statement whose text pins: refused as it runs */
			char m[200];
			session_deny_message(c->unnamed_deny, m, sizeof(m));
			*rc = inject_error(s, seq, "0A000", m) < 0 ? -1 : 1;
			return NULL;
		}
		int u = ensure_unnamed(c, s, seq);
		if (u < 0) {
			*rc = -1;
			return NULL;
		}
		if (u == 0) {
			*rc = inject_error(s, seq, "26000", "unnamed prepared statement does not exist")
				      < 0 ? -1 : 1;
			return NULL;
		}
		return "";
	}
	struct cstmt *cs = cstmt_find(&c->stmts, name);
	if (!cs || (cs->ps->private_copy && !sstmt_find(&s->stmts, cs->ps))) {
		/* (a statement too large to keep exists only where it was streamed) */
		char m[160];
		snprintf(m, sizeof(m), "prepared statement \"%.63s\" does not exist", name);
		*rc = inject_error(s, seq, "26000", m) < 0 ? -1 : 1;
		return NULL;
	}
	struct sstmt *ss = ensure_prepared(s, seq, cs);
	if (!ss) {
		*rc = -1;
		return NULL;
	}
	*ssp = ss;
	return ss->name;
}

/* Bind: PREFIX_LEN bytes of MSG hold the header and both names; the rest of
 * the message (total - prefix_len) follows as is. */
static int on_bind(struct client *c, struct server *s, uint64_t seq, const uint8_t *msg,
		   size_t prefix_len, size_t total)
{
	struct proto_reader r;
	proto_reader_init(&r, msg + 5, prefix_len - 5);
	const char *portal = proto_get_str(&r);
	const char *stmt = proto_get_str(&r);
	if (!portal || !stmt)
		return -2;
	struct sstmt *ss;
	int rc = 0;
	const char *sname = map_statement(c, s, seq, stmt, &ss, &rc);
	if (!sname)
		return rc < 0 ? -1 : 3; /* 3: skip the whole client message */
	/* what runs at its Execute: only a BEGIN keeps the link movable */
	unsigned runs = ss ? __atomic_load_n(&ss->ps->state_kinds, __ATOMIC_RELAXED)
			   : !stmt[0] ? c->unnamed_kinds : 0;
	relink_ran(c, runs == 1u << SQL_BEGIN);
	/* a statement that changes the session does so when it runs */
	if (ss && ss->ps->body && run_effects(c, s, seq, (const char *)ss->ps->body,
			      __atomic_load_n(&ss->ps->state_kinds, __ATOMIC_RELAXED)) < 0)
		return -1;
	if (!stmt[0] && c->unnamed_len > 1 &&
	    run_effects(c, s, seq, (const char *)c->unnamed + 1, c->unnamed_kinds) < 0)
		return -1;
	if ((ss && __atomic_load_n(&ss->ps->ddl, __ATOMIC_RELAXED)) ||
	    (!stmt[0] && c->unnamed_len > 1 && c->unnamed_ddl))
		note_ddl(s);
	size_t plen = strlen(portal) + 1, olen = strlen(stmt) + 1, nlen = strlen(sname) + 1;
	size_t head = 5 + plen + olen; /* what is replaced */
	const void *parts[] = {portal, sname, msg + head};
	size_t lens[] = {plen, nlen, prefix_len - head};
	if (write_msg_start(sout(s), 'B', total - 5 - olen + nlen, 3, parts, lens) < 0)
		return -1;
	return push(s, seq, 'B', REQ_FWD, ss, NULL);
}

static int on_describe(struct client *c, struct server *s, uint64_t seq, const uint8_t *msg,
		       size_t total, uint8_t kind, const char *name)
{
	if (kind != 'S')
		return forward_as_is(s, seq, 'D', msg, total);
	struct sstmt *ss;
	int rc = 0;
	const char *sname = map_statement(c, s, seq, name, &ss, &rc);
	if (!sname)
		return rc < 0 ? -1 : 0;
	const void *parts[] = {"S", sname};
	size_t lens[] = {1, strlen(sname) + 1};
	if (write_msg(sout(s), 'D', 2, parts, lens) < 0)
		return -1;
	return push(s, seq, 'D', REQ_FWD, ss, NULL);
}

static int on_close(struct client *c, struct server *s, uint64_t seq, const uint8_t *msg,
		    size_t total, uint8_t kind, const char *name)
{
	if (kind != 'S' || !name[0]) {
		if (kind == 'S') {
			c->unnamed_len = 0; /* closing the unnamed statement */
			if (s->unnamed_owner != c->id)
				return push_fake(s, seq, 'C', FAKE_CLOSE_COMPLETE, NULL);
			s->unnamed_owner = UNNAMED_UNKNOWN; /* unless the backend skips it */
		}
		return forward_as_is(s, seq, 'C', msg, total);
	}
	/* the server copy may be shared: only the client's name goes */
	struct cstmt *cs = cstmt_find(&c->stmts, name);
	if (!cs)
		return push_fake(s, seq, 'C', FAKE_CLOSE_COMPLETE, NULL);
	/* removed first: if the backend is skipping, the push puts it back */
	cstmt_hold(cs);
	cstmt_remove(&c->stmts, cs);
	int rc = push_fake(s, seq, 'C', FAKE_CLOSE_COMPLETE, cs);
	cstmt_release(cs);
	return rc;
}

/* ---- Query and Parse too large to hold: streamed ---- */

/* A message being streamed: its text is inspected as it passes (the session
 * effects of its statements, from their first bytes and the calls anywhere
 * in them), and the decisions that need all of it wait for its end. */
struct fe_large {
	char type;                  /* 'Q' or 'P' */
	uint64_t seq;               /* its client message number on the link */
	struct session_stream *ss;  /* owned */
	bool text_done;             /* the query text's terminator went past */
	struct cstmt *cs;           /* held: P named: the client statement it makes */
};

void frontend_large_free(struct client *c)
{
	struct fe_large *L = c->large;
	if (!L)
		return;
	session_stream_free(L->ss);
	if (L->cs)
		cstmt_release(L->cs);
	free(L);
	c->large = NULL;
}

static struct fe_large *large_new(struct client *c, char type, uint64_t seq)
{
	struct fe_large *L = calloc(1, sizeof(*L));
	if (!L || !(L->ss = session_stream_new(c, seq))) {
		free(L);
		return NULL;
	}
	L->type = type;
	L->seq = seq;
	c->large = L;
	return L;
}

/* Feed the text bytes among the first N bytes of IN (up to the query
 * text's terminator) to the inspection. */
static void large_feed(struct fe_large *L, struct evbuffer *in, size_t n)
{
	struct evbuffer_iovec v[16];
	struct evbuffer_ptr pos;
	evbuffer_ptr_set(in, &pos, 0, EVBUFFER_PTR_SET);
	while (n > 0 && !L->text_done) {
		int k = evbuffer_peek(in, (ev_ssize_t)n, &pos, v, 16);
		if (k <= 0)
			return;
		size_t done = 0;
		for (int i = 0; i < k && i < 16 && n > 0 && !L->text_done; i++) {
			size_t len = v[i].iov_len < n ? v[i].iov_len : n;
			const char *nul = memchr(v[i].iov_base, 0, len);
			size_t text = nul ? (size_t)(nul - (const char *)v[i].iov_base) : len;
			session_stream_feed(L->ss, v[i].iov_base, text);
			if (nul)
				L->text_done = true;
			n -= len;
			done += len;
		}
		if (evbuffer_ptr_set(in, &pos, done, EVBUFFER_PTR_ADD) < 0)
			return;
	}
}

/* The whole text of the streamed Query went past: what it does is known
 * now, before its last bytes go (the backend runs nothing until then).
 * Writes those bytes: TAIL as sent, or, when session_pinning = deny
 * refuses it, a terminator one byte early, which makes the backend reject
 * the message unrun (its ErrorResponse is replaced with pgmux's 0A000).
 * Returns 0 / -1. */
static int large_query_end(struct client *c, struct server *s, const uint8_t *tail, size_t n)
{
	struct fe_large *L = c->large;
	struct session_effects fx;
	session_stream_finish(L->ss, &fx);
	bool deny = pool_db(c->pool)->session_pinning == PINNING_DENY && fx.pins;
	struct req *r = s->reqs.count ? req_at(s, s->reqs.count - 1) : NULL;
	if (deny && r && r->type == 'Q' && r->seq == L->seq) {
		static const uint8_t early[QUERY_HOLD] = {0, 0};
		log_info("session_pinning_denied", "db=%s user=%s addr=%s client=%llu",
			 pool_db_name(c->pool), pool_user(c->pool), c->addr, (unsigned long long)c->id);
		r->deny_pins = fx.pins;
		return evbuffer_add(sout(s), early, n);
	}
	if (!deny) {
		if (session_stream_record(L->ss) < 0)
			return -1;
		if (fx.pins)
			session_pin(c, s, fx.pins);
		if (fx.sets)
			s->dirty_params = true;
		if (fx.ddl)
			note_ddl(s);
	}
	return evbuffer_add(sout(s), tail, n);
}

/* The streamed Parse's text went past: its pins, and what its Bind does. */
static void large_parse_end(struct client *c, struct server *s)
{
	struct fe_large *L = c->large;
	struct session_effects fx;
	session_stream_finish(L->ss, &fx);
	bool deny = pool_db(c->pool)->session_pinning == PINNING_DENY;
	/* its text is not kept: effects that happen at Bind cannot be replayed */
	unsigned pins = fx.pins | (session_has_effects(fx.kinds) ? 1u << PIN_UNTRACKED : 0);
	if (L->cs) {
		__atomic_store_n(&L->cs->ps->state_kinds, fx.kinds, __ATOMIC_RELAXED);
		__atomic_store_n(&L->cs->ps->ddl, fx.ddl, __ATOMIC_RELAXED);
	} else {
		c->unnamed_kinds = fx.kinds;
		c->unnamed_ddl = fx.ddl;
		c->unnamed_deny = deny ? pins : 0;
	}
	if (pins && !deny)
		session_pin(c, s, pins);
}

size_t frontend_large_chunk(struct client *c, struct server *s, struct evbuffer *in, size_t avail)
{
	struct fe_large *L = c->large;
	size_t left = c->stream.left;
	size_t n = avail < left ? avail : left;
	if (L->type == 'Q' && left <= QUERY_HOLD) {
		uint8_t tail[QUERY_HOLD];
		if (avail < left)
			return 0; /* the held bytes are judged together */
		evbuffer_copyout(in, tail, left);
		large_feed(L, in, left);
		int rc;
		if (!L->text_done || tail[left - 1] != 0) {
			/* no terminator where the length says: make the message one
			 * the backend rejects, then drop the client */
			static const uint8_t early[QUERY_HOLD] = {0, 0};
			rc = evbuffer_add(sout(s), early, left);
			relink_log(c, in, left);
			evbuffer_drain(in, left);
			c->stream.left = 0;
			frontend_large_free(c);
			log_info("protocol_error", "addr=%s reason=malformed_message type=Q", c->addr);
			client_close(c, "08P01", "protocol_violation", "invalid message format");
			return rc < 0 ? 0 : left;
		}
		rc = large_query_end(c, s, tail, left);
		relink_log(c, in, left);
		evbuffer_drain(in, left);
		c->stream.left = 0;
		frontend_large_free(c);
		if (rc < 0)
			client_close(c, "53200", "out_of_memory", "pgmux: out of memory");
		return left;
	}
	if (L->type == 'Q' && n > left - QUERY_HOLD)
		n = left - QUERY_HOLD;
	large_feed(L, in, n);
	relink_log(c, in, n);
	evbuffer_remove_buffer(in, sout(s), n);
	bool over = frame_stream_took(&c->stream, n);
	if (L->type == 'P' && (L->text_done || over)) {
		if (L->ss) {
			large_parse_end(c, s);
			session_stream_free(L->ss);
			L->ss = NULL;
		}
		if (over)
			frontend_large_free(c);
	}
	return n;
}

/* The head of a Query too large to hold: the rest streams. */
static int on_large_query(struct client *c, struct server *s, uint64_t seq, const uint8_t *msg,
			  size_t have)
{
	relink_ran(c, false);
	c->unnamed_len = 0;
	c->unnamed_deny = 0;
	s->unnamed_owner = s->ext_failed ? UNNAMED_UNKNOWN : 0;
	struct fe_large *L = large_new(c, 'Q', seq);
	if (!L)
		return -1;
	session_stream_feed(L->ss, (const char *)msg + 5, have - 5);
	if (evbuffer_add(sout(s), msg, have) < 0)
		return -1;
	return push(s, seq, 'Q', REQ_FWD, NULL, NULL);
}

/* The head of a Parse too large to hold. The unnamed statement goes as it
 * is (and cannot be re-created on another server later); a named one gets a
 * name of pgmux's own and a private pstmt, and pins its client to this
 * server for as long as it exists (large_statement). */
static int on_large_parse(struct client *c, struct server *s, uint64_t seq, const uint8_t *msg,
			  size_t have, size_t total)
{
	const char *name = (const char *)msg + 5; /* terminated: proto_check_client_msg */
	size_t name_len = strlen(name) + 1;
	if (name[0] && cstmt_find(&c->stmts, name)) {
		char m[160];
		snprintf(m, sizeof(m), "prepared statement \"%.63s\" already exists", name);
		return inject_error(s, seq, "42P05", m) < 0 ? -1 : 3;
	}
	if (name[0] && pool_db(c->pool)->session_pinning == PINNING_DENY) {
		char m[200];
		session_deny_message(1u << PIN_LARGE_STATEMENT, m, sizeof(m));
		return inject_error(s, seq, "0A000", m) < 0 ? -1 : 3;
	}
	struct fe_large *L = large_new(c, 'P', seq);
	if (!L)
		return -1;
	const uint8_t *text = msg + 5 + name_len;
	size_t text_len = have - 5 - name_len;
	const uint8_t *nul = memchr(text, 0, text_len);
	session_stream_feed(L->ss, (const char *)text, nul ? (size_t)(nul - text) : text_len);
	L->text_done = nul != NULL;
	if (!name[0]) {
		c->unnamed_len = 0; /* not kept: it exists on this server only */
		c->unnamed_gen++;
		s->unnamed_owner = c->id;
		s->unnamed_gen = c->unnamed_gen;
		if (evbuffer_add(sout(s), msg, have) < 0)
			return -1;
		struct req q = {.seq = seq, .type = 'P', .action = REQ_FWD, .mark = c->unnamed_gen};
		return req_push(s, &q);
	}
	struct pstmt *ps = pstmt_new_private();
	struct cstmt *cs = ps ? cstmt_add(&c->stmts, name, ps) : NULL;
	pstmt_unref(ps);
	struct sstmt *ss = cs ? add_server_stmt(s, cs->ps) : NULL;
	if (!ss)
		return -1;
	cs->reg = ++c->stmt_regs;
	cstmt_hold(cs);
	L->cs = cs;
	session_pin(c, s, 1u << PIN_LARGE_STATEMENT);
	const void *parts[] = {ss->name, text};
	size_t lens[] = {strlen(ss->name) + 1, text_len};
	if (write_msg_start(sout(s), 'P', total - 5 - name_len + lens[0], 2, parts, lens) < 0)
		return -1;
	return push(s, seq, 'P', REQ_FWD, ss, cs);
}

/* ---- retry capture ---- */

static void capture_msg(struct server *s, char type, const void *msg, size_t total)
{
	bool seg_start = !s->ext_open && req_only_own_closes(s);
	if (seg_start) {
		s->capture_state = CAP_OFF;
		if (s->capture)
			evbuffer_drain(s->capture, evbuffer_get_length(s->capture));
		if ((type == 'B' || type == 'D') && s->txn == 'I' && !s->retried) {
			s->capture_state = CAP_OPEN;
			s->capture_described = false;
			s->capture_seq = s->seq + 1; /* the number this message gets */
		}
		s->retried = false;
	} else if (s->capture_state == CAP_DONE) {
		s->capture_state = CAP_OFF; /* more than one segment in flight */
	}
	if (s->capture_state != CAP_OPEN)
		return;
	bool ok_type = type == 'B' || type == 'D' || type == 'E' || type == 'S' || type == 'H';
	if (!s->capture && !(s->capture = evbuffer_new()))
		ok_type = false;
	if (!msg || !ok_type || evbuffer_get_length(s->capture) + total > CAPTURE_MAX ||
	    evbuffer_add(s->capture, msg, total) < 0) {
		s->capture_state = CAP_OFF;
		return;
	}
	if (type == 'D')
		s->capture_described = true;
	if (type == 'S')
		s->capture_state = CAP_DONE;
}

void frontend_capture(struct server *s, char type, struct evbuffer *in, size_t total)
{
	bool seg_start = !s->ext_open && req_only_own_closes(s);
	if (!seg_start && s->capture_state == CAP_OFF)
		return; /* the common case: nothing to copy */
	const void *msg = NULL;
	if (s->capture_state == CAP_OPEN && !seg_start && evbuffer_get_length(in) >= total)
		msg = evbuffer_pullup(in, (ssize_t)total);
	capture_msg(s, type, msg, total);
}

/* ---- entry point ---- */

enum fe_result frontend_message(struct client *c, struct server *s, const struct frame *h)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	size_t total = h->total, avail = h->avail;
	size_t have = total; /* bytes of the message looked at */
	if (h->type == 'B' && total > BIND_WHOLE_MAX) {
		have = BIND_PREFIX_MAX + 5;
		if (avail < have)
			return FE_WAIT;
	} else if ((h->type == 'Q' || h->type == 'P') && total > TEXT_WHOLE_MAX) {
		have = TEXT_HEAD_MAX + 5;
		if (avail < have)
			return FE_WAIT;
	} else if (avail < total) {
		return FE_WAIT;
	}
	const uint8_t *msg = evbuffer_pullup(in, (ssize_t)have);
	if (!msg) {
		server_close(s, "out_of_memory");
		return FE_CLOSED;
	}
	/* checked before anything is noted or sent: a malformed message closes
	 * only the client, and the server is left exactly as it was */
	const char *bad = proto_check_client_msg(h->type, msg + 5, have - 5, have < total);
	if (bad) {
		log_info("protocol_error", "addr=%s reason=malformed_message type=%c", c->addr,
			 h->type);
		client_close(c, "08P01", "protocol_violation", "%s", bad);
		return FE_CLOSED;
	}
	capture_msg(s, h->type, have == total ? msg : NULL, total);
	uint64_t seq = ++s->seq;
	uint8_t kind = 0;
	const char *name = NULL;
	int rc = 0;
	if (h->type != 'Q')
		s->ext_open = true; /* open until the next Sync */
	if (h->type == 'D' || h->type == 'C')
		rc = kind_and_name(msg, total, &kind, &name);
	if (rc == 0) {
		switch (h->type) {
		case 'Q':
			rc = have < total ? on_large_query(c, s, seq, msg, have)
					  : on_query(c, s, seq, msg, total);
			break;
		case 'P':
			rc = have < total ? on_large_parse(c, s, seq, msg, have, total)
					  : on_parse(c, s, seq, msg, total);
			break;
		case 'B':
			rc = on_bind(c, s, seq, msg, have, total);
			break;
		case 'D':
			rc = on_describe(c, s, seq, msg, total, kind, name);
			break;
		default:
			rc = on_close(c, s, seq, msg, total, kind, name);
			break;
		}
	}
	if (rc == -2) {
		/* proto_check_client_msg let through what a handler cannot read */
		log_error("protocol_error", "addr=%s reason=unchecked_malformed_message type=%c",
			  c->addr, h->type);
		client_close(c, "08P01", "protocol_violation", "invalid message format");
		return FE_CLOSED;
	}
	if (rc < 0) {
		client_close(c, "53200", "out_of_memory", "pgmux: out of memory");
		return FE_CLOSED;
	}
	relink_log(c, in, have);
	evbuffer_drain(in, have);
	frame_stream_start(&c->stream, h, have, rc == 3);
	return FE_DONE;
}

/* ---- a client without a server ---- */

bool frontend_idle_parse(struct client *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct frame h;
	if (frame_peek(in, 0, FRAME_CLIENT, &h) != PROTO_OK || h.type != 'P' || h.len > 65536)
		return false; /* anything unusual goes the normal way */
	size_t total = h.total;
	if (h.avail < total + 5)
		return false;
	const uint8_t *msg = evbuffer_pullup(in, (ssize_t)(total + 5));
	static const uint8_t sync[] = {'S', 0, 0, 0, 4};
	if (!msg || memcmp(msg + total, sync, sizeof(sync)) != 0)
		return false; /* only a Parse answered by its own Sync */
	struct proto_reader r;
	proto_reader_init(&r, msg + 5, total - 5);
	const char *name = proto_get_str(&r), *sql = proto_get_str(&r);
	if (!name || !sql || !name[0] || cstmt_find(&c->stmts, name))
		return false;
	size_t name_len = strlen(name) + 1;
	struct pstmt *ps = pstmt_lookup(msg + 5 + name_len, total - 5 - name_len);
	if (!ps)
		return false; /* never prepared anywhere: the server checks it */
	struct session_effects fx;
	bool plain = session_inspect(c, sql, strlen(sql), 0, false, &fx) == 0 && fx.nstmts == 1 &&
		     !fx.pins && !fx.sets &&
		     (fx.single_kind == SQL_OTHER || fx.single_kind == SQL_BEGIN ||
		      fx.single_kind == SQL_END);
	struct cstmt *cs = plain ? cstmt_add(&c->stmts, name, ps) : NULL;
	pstmt_unref(ps);
	if (!cs)
		return false;
	cs->reg = ++c->stmt_regs;
	struct evbuffer *out = bufferevent_get_output(c->bev);
	if (proto_write_msg(out, '1', NULL, 0) < 0 || proto_write_ready(out, 'I') < 0) {
		cstmt_remove(&c->stmts, cs);
		return false;
	}
	evbuffer_drain(in, total + 5);
	return true;
}

/* ---- stale plans (0A000) ---- */

bool frontend_stale_plan(struct server *s, const struct req *head, bool shape_may_change)
{
	struct sstmt *ss = head->ss;
	__atomic_add_fetch(&ss->ps->gen, 1, __ATOMIC_RELAXED);
	/* the rest of the queue: the segment up to its Sync, and nothing after */
	uint32_t n = 1, sync_at = 0;
	struct req *r;
	while ((r = req_at(s, n)) != NULL) {
		if (r->type == 'S' && !sync_at)
			sync_at = n;
		n++;
	}
	/* a client that did not ask for the row description again would read
	 * rows of a shape it did not expect (asyncpg and pgjdbc cache it, and
	 * re-prepare on this error themselves) */
	bool retry = s->capture_state == CAP_DONE && (s->capture_described || !shape_may_change) &&
		     head->seq == s->capture_seq && !s->retried && sync_at && sync_at == n - 1 &&
		     s->client;
	char name[sizeof(ss->name)];
	memcpy(name, ss->name, sizeof(name));
	sstmt_remove(&s->stmts, ss);
	/* the stale copy is closed once nothing is in flight (never in the
	 * middle of a message the client is still sending) */
	if (s->nclose < 1024)
		(void)close_server_stmt(s, 0, name);
	if (retry) {
		s->retry_armed = true;
		log_info("stale_plan_retry", "db=%s user=%s client=%llu server_pid=%u statement=%s",
			 pool_db_name(s->pool), pool_user(s->pool),
			 (unsigned long long)s->client->id, s->be_pid, name);
	} else {
		log_info("stale_plan", "db=%s user=%s server_pid=%u statement=%s retried=no",
			 pool_db_name(s->pool), pool_user(s->pool), s->be_pid, name);
	}
	return retry;
}

void frontend_replay(struct server *s)
{
	struct client *c = s->client;
	s->retry_armed = false;
	s->retried = true;
	s->capture_state = CAP_OFF;
	if (!c || c->state != CL_ACTIVE || !s->capture)
		return;
	size_t n = evbuffer_get_length(s->capture);
	if (evbuffer_prepend_buffer(bufferevent_get_input(c->bev), s->capture) < 0) {
		server_close(s, "out_of_memory");
		return;
	}
	relink_skip(c, n); /* the relink log holds these bytes already */
	client_forward(c);
}
