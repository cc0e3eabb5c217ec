/* Session state in transaction pooling. See session.h. */
#include "pool/session.h"

#include "core/log.h"
#include "pg/sqllex.h"
#include "pg/sqlscan.h"
#include "pool/conn.h"
#include "pool/pool.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static uint64_t pin_counts[PIN_NREASONS]; /* atomic */

const char *pin_reason_name(int reason)
{
	static const char *const names[PIN_NREASONS] = {
		[PIN_SQL_PREPARE] = "sql_prepare",     [PIN_TEMP_TABLE] = "temp_table",
		[PIN_ADVISORY_LOCK] = "advisory_lock", [PIN_LISTEN] = "listen",
		[PIN_HOLD_CURSOR] = "hold_cursor",     [PIN_LOAD] = "load",
		[PIN_SET_ROLE] = "set_role",           [PIN_SET_CONFIG] = "set_config",
		[PIN_UNTRACKED] = "untracked",         [PIN_LARGE_STATEMENT] = "large_statement",
	};
	return reason >= 0 && reason < PIN_NREASONS ? names[reason] : "unknown";
}

uint64_t pin_count(int reason)
{
	if (reason < 0 || reason >= PIN_NREASONS)
		return 0;
	return __atomic_load_n(&pin_counts[reason], __ATOMIC_RELAXED);
}

#define BIT(k) (1u << (k))

/* statement kinds and the pin they cause */
static const struct {
	enum sqllex_kind kind;
	enum pin_reason reason;
} pin_kinds[] = {
	{SQL_PREPARE, PIN_SQL_PREPARE},     {SQL_TEMP_OBJECT, PIN_TEMP_TABLE},
	{SQL_ADVISORY_LOCK, PIN_ADVISORY_LOCK}, {SQL_LISTEN, PIN_LISTEN},
	{SQL_HOLD_CURSOR, PIN_HOLD_CURSOR}, {SQL_LOAD, PIN_LOAD},
	{SQL_SET_ROLE, PIN_SET_ROLE},       {SQL_SET_CONFIG_SESSION, PIN_SET_CONFIG},
};

/* kinds whose effect pgmux records (and so must see in full) */
#define TRACKED_KINDS                                                                       \
	(BIT(SQL_SET) | BIT(SQL_RESET) | BIT(SQL_RESET_ALL) | BIT(SQL_DISCARD_ALL) |           \
	 BIT(SQL_DEALLOCATE) | BIT(SQL_DEALLOCATE_ALL) | BIT(SQL_UNLISTEN) |                   \
	 BIT(SQL_ADVISORY_UNLOCK_ALL))
#define SETTING_KINDS (BIT(SQL_SET) | BIT(SQL_RESET) | BIT(SQL_RESET_ALL) | BIT(SQL_DISCARD_ALL))

static bool name_ok(const char *n)
{
	if (!*n)
		return false;
	for (; *n; n++)
		if (!((*n >= 'a' && *n <= 'z') || (*n >= 'A' && *n <= 'Z') ||
		      (*n >= '0' && *n <= '9') || *n == '_' || *n == '.'))
			return false;
	return true;
}

/* The SQL text to replay a SET's value: a literal is quoted again (E'' is
 * independent of standard_conforming_strings), anything else is as written. */
static char *value_sql(const struct sqllex_stmt *st)
{
	if (!st->value_literal)
		return strdup(st->value);
	size_t n = strlen(st->value);
	char *out = malloc(4 * n + 4);
	if (!out)
		return NULL;
	char *p = out;
	*p++ = 'E';
	*p++ = '\'';
	for (const char *v = st->value; *v; v++) {
		if (*v == '\'' || *v == '\\')
			*p++ = *v;
		*p++ = *v;
	}
	*p++ = '\'';
	*p = '\0';
	return out;
}

static int add_op(struct client *c, uint64_t seq, int kind, const char *name, char *value)
{
	if (c->nops == c->capops) {
		int cap = c->capops ? c->capops * 2 : 8;
		struct set_op *v = realloc(c->ops, (size_t)cap * sizeof(*v));
		if (!v) {
			free(value);
			return -1;
		}
		c->ops = v;
		c->capops = cap;
	}
	char *n = name ? strdup(name) : NULL;
	if (name && !n) {
		free(value);
		return -1;
	}
	c->ops[c->nops++] = (struct set_op){.seq = seq, .kind = kind, .name = n, .value = value};
	return 0;
}

/* A SET statement: the op to record, or an untracked pin. */
static int record_set(struct client *c, uint64_t seq, const struct sqllex_stmt *st, bool record,
		      struct session_effects *fx)
{
	bool is_default = !st->value_literal && (strcasecmp(st->value, "default") == 0 ||
						 (strcmp(st->name, "timezone") == 0 &&
						  strcasecmp(st->value, "local") == 0));
	if (!name_ok(st->name) || st->value_truncated || !st->value[0] ||
	    (!st->value_literal && strncasecmp(st->value, "from current", 12) == 0)) {
		fx->pins |= BIT(PIN_UNTRACKED);
		return 0;
	}
	if (!record)
		return 0;
	if (is_default)
		return add_op(c, seq, SQL_RESET, st->name, NULL);
	char *v = value_sql(st);
	if (!v)
		return -1;
	return add_op(c, seq, SQL_SET, st->name, v);
}

/* SET SESSION CHARACTERISTICS AS TRANSACTION <modes>: the settings it
 * stands for, so that two of them add up as they do on the server. */
static int record_characteristics(struct client *c, uint64_t seq, const struct sqllex_stmt *st,
				  bool record, struct session_effects *fx)
{
	static const struct {
		const char *words, *name, *value;
	} modes[] = {
		{"isolation level serializable", "default_transaction_isolation", "E'serializable'"},
		{"isolation level repeatable read", "default_transaction_isolation", "E'repeatable read'"},
		{"isolation level read committed", "default_transaction_isolation", "E'read committed'"},
		{"isolation level read uncommitted", "default_transaction_isolation",
		 "E'read uncommitted'"},
		{"read only", "default_transaction_read_only", "on"},
		{"read write", "default_transaction_read_only", "off"},
		{"not deferrable", "default_transaction_deferrable", "off"},
		{"deferrable", "default_transaction_deferrable", "on"},
	};
	char words[sizeof(st->value)];
	size_t n = 0;
	bool space = true;
	/* lower case, commas and runs of blanks as one space */
	for (const char *p = st->value; *p && n + 1 < sizeof(words); p++) {
		char ch = (*p >= 'A' && *p <= 'Z') ? (char)(*p + 32) : *p;
		if (ch == ',' || ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r') {
			if (!space)
				words[n++] = ' ';
			space = true;
			continue;
		}
		words[n++] = ch;
		space = false;
	}
	words[n] = '\0';
	const char *p = words;
	int rc = 0;
	while (*p && rc == 0) {
		size_t i;
		for (i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
			size_t wl = strlen(modes[i].words);
			if (strncmp(p, modes[i].words, wl) == 0 && (p[wl] == ' ' || !p[wl]))
				break;
		}
		if (i == sizeof(modes) / sizeof(modes[0]) || st->value_truncated) {
			fx->pins |= BIT(PIN_UNTRACKED);
			return 0;
		}
		if (record) {
			char *v = strdup(modes[i].value);
			rc = v ? add_op(c, seq, SQL_SET, modes[i].name, v) : -1;
		}
		p += strlen(modes[i].words);
		while (*p == ' ')
			p++;
	}
	return rc;
}

/* What one classified statement does: queue its changes (RECORD) or note
 * that it cannot be tracked. */
static int apply_stmt(struct client *c, uint64_t seq, const struct sqllex_stmt *st, bool record,
		      struct session_effects *fx)
{
	switch (st->kind) {
	case SQL_SET:
		if (strcmp(st->name, "session_characteristics") == 0)
			return record_characteristics(c, seq, st, record, fx);
		return record_set(c, seq, st, record, fx);
	case SQL_RESET:
		if (!name_ok(st->name))
			fx->pins |= BIT(PIN_UNTRACKED);
		else if (record)
			return add_op(c, seq, SQL_RESET, st->name, NULL);
		return 0;
	case SQL_UNLISTEN:
		if (record && strcmp(st->name, "*") == 0)
			return add_op(c, seq, SQL_UNLISTEN, NULL, NULL);
		return 0;
	case SQL_PREPARE:
		if (record && st->name[0])
			return kvlist_set(&c->sql_prepared, st->name, "");
		return 0;
	case SQL_DEALLOCATE:
		if (record && kvlist_get(&c->sql_prepared, st->name))
			return add_op(c, seq, SQL_DEALLOCATE, st->name, NULL);
		return 0;
	case SQL_SAVEPOINT:
	case SQL_ROLLBACK_TO:
	case SQL_RELEASE:
		if (record && st->kind == SQL_ROLLBACK_TO)
			c->rollback_tos++; /* its tag is "ROLLBACK" too */
		if (record && st->name[0])
			return add_op(c, seq, (int)st->kind, st->name, NULL);
		return 0;
	case SQL_RESET_ALL:
	case SQL_DISCARD_ALL:
	case SQL_ADVISORY_UNLOCK_ALL:
	case SQL_DEALLOCATE_ALL:
		if (record)
			return add_op(c, seq, (int)st->kind, NULL, NULL);
		return 0;
	default:
		return 0;
	}
}

/* The pins statements of KINDS cause. */
static unsigned pins_of(unsigned kinds)
{
	unsigned pins = 0;
	for (size_t i = 0; i < sizeof(pin_kinds) / sizeof(pin_kinds[0]); i++)
		if (kinds & BIT(pin_kinds[i].kind))
			pins |= BIT(pin_kinds[i].reason);
	return pins;
}

int session_inspect(struct client *c, const char *sql, size_t len, uint64_t seq, bool record,
		    struct session_effects *fx)
{
	static __thread struct sqllex_result r;
	memset(fx, 0, sizeof(*fx));
	if (sqllex_classify(sql, len, &r) < 0)
		return 0; /* the server rejects it with a syntax error */
	fx->nstmts = r.n;
	fx->kinds = r.kinds;
	fx->ddl = r.ddl;
	if (r.n == 1) {
		fx->single_kind = r.stmts[0].kind;
		snprintf(fx->single_name, sizeof(fx->single_name), "%s", r.stmts[0].name);
	}
	fx->pins = pins_of(r.kinds);
	if (r.too_many && (r.kinds & TRACKED_KINDS))
		fx->pins |= BIT(PIN_UNTRACKED);
	fx->sets = (r.kinds & SETTING_KINDS) != 0;
	fx->discard_all = (r.kinds & BIT(SQL_DISCARD_ALL)) != 0;
	fx->deallocate_all = (r.kinds & BIT(SQL_DEALLOCATE_ALL)) != 0;
	int rc = 0;
	for (int i = 0; i < r.n && rc == 0; i++)
		rc = apply_stmt(c, seq, &r.stmts[i], record, fx);
	return rc;
}

/* ---- text too large to hold ---- */

struct session_stream {
	struct client *c;                            /* borrowed */
	uint64_t seq;
	struct sqlscan scan;
	struct sqllex_stmt kept[SQLLEX_MAX_STMTS];   /* statements with effects, in order */
	int nkept;
	struct session_effects fx;                   /* what the statements seen so far do */
};

/* Statements whose kind sqllex settles only from tokens after the first
 * (CREATE ... TEMP, DECLARE ... WITH HOLD, SET name...): a head cut short
 * inside a huge quoted name or string may not hold them. */
static bool head_may_hide_kind(const struct sqlscan_stmt *st)
{
	static const char *const words[] = {"set",      "reset",     "discard", "deallocate",
					    "prepare",  "listen",    "unlisten", "create",
					    "declare",  "load",      "savepoint", "rollback",
					    "release",  "abort",     "end",     "commit"};
	if (!st->truncated || st->tokens >= 16)
		return false; /* 16 tokens in the head: the kind is settled */
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (strcmp(st->first, words[i]) == 0)
			return true;
	return false;
}

static void stream_stmt(void *arg, const struct sqlscan_stmt *st)
{
	struct session_stream *ss = arg;
	static __thread struct sqllex_result r;
	struct session_effects *fx = &ss->fx;
	unsigned kinds = 0;
	if (sqllex_classify(st->head, st->len, &r) == 0) {
		kinds = r.kinds;
		fx->ddl |= r.ddl;
		for (int i = 0; i < r.n; i++) {
			fx->nstmts++;
			const struct sqllex_stmt *s = &r.stmts[i];
			if (!session_has_effects(BIT(s->kind)))
				continue;
			/* a statement with effects that does not fit its head (a SET
			 * with a value of kilobytes) cannot be replayed */
			if (st->truncated && (BIT(s->kind) & TRACKED_KINDS))
				fx->pins |= BIT(PIN_UNTRACKED);
			else if (ss->nkept < SQLLEX_MAX_STMTS)
				ss->kept[ss->nkept++] = *s;
			else
				fx->pins |= BIT(PIN_UNTRACKED);
		}
	} else if (st->truncated) {
		fx->pins |= BIT(PIN_UNTRACKED); /* cannot happen: heads end at a token boundary */
	}
	if (head_may_hide_kind(st))
		fx->pins |= BIT(PIN_UNTRACKED);
	if (st->flags & SQLSCAN_ADV_LOCK)
		kinds |= BIT(SQL_ADVISORY_LOCK);
	if (st->flags & SQLSCAN_SET_CONFIG)
		kinds |= BIT(SQL_SET_CONFIG_SESSION);
	if (st->flags & SQLSCAN_TEMP)
		kinds |= BIT(SQL_TEMP_OBJECT);
	if ((st->flags & SQLSCAN_UNLOCK_ALL) && !(kinds & BIT(SQL_ADVISORY_UNLOCK_ALL))) {
		kinds |= BIT(SQL_ADVISORY_UNLOCK_ALL);
		if (ss->nkept < SQLLEX_MAX_STMTS)
			ss->kept[ss->nkept++] = (struct sqllex_stmt){.kind = SQL_ADVISORY_UNLOCK_ALL};
	}
	fx->kinds |= kinds;
	fx->pins |= pins_of(kinds);
	fx->sets |= (kinds & SETTING_KINDS) != 0;
}

struct session_stream *session_stream_new(struct client *c, uint64_t seq)
{
	struct session_stream *ss = calloc(1, sizeof(*ss));
	if (!ss)
		return NULL;
	ss->c = c;
	ss->seq = seq;
	sqlscan_init(&ss->scan, stream_stmt, ss);
	return ss;
}

void session_stream_feed(struct session_stream *ss, const char *p, size_t n)
{
	sqlscan_feed(&ss->scan, p, n);
}

void session_stream_finish(struct session_stream *ss, struct session_effects *fx)
{
	bool lost = ss->scan.lost;
	if (sqlscan_finish(&ss->scan) < 0) {
		/* the server rejects it as a syntax error: it runs nothing */
		memset(&ss->fx, 0, sizeof(ss->fx));
		ss->nkept = 0;
	} else if (lost) {
		ss->fx.pins |= BIT(PIN_UNTRACKED); /* a dollar tag too long to follow for sure */
	}
	*fx = ss->fx;
	fx->discard_all = (fx->kinds & BIT(SQL_DISCARD_ALL)) != 0;
	fx->deallocate_all = (fx->kinds & BIT(SQL_DEALLOCATE_ALL)) != 0;
}

int session_stream_record(struct session_stream *ss)
{
	int rc = 0;
	for (int i = 0; i < ss->nkept && rc == 0; i++)
		rc = apply_stmt(ss->c, ss->seq, &ss->kept[i], true, &ss->fx);
	return rc;
}

void session_stream_free(struct session_stream *ss)
{
	free(ss);
}

bool session_has_effects(unsigned kinds)
{
	return (kinds & (TRACKED_KINDS | BIT(SQL_PREPARE) | BIT(SQL_SAVEPOINT) |
			 BIT(SQL_ROLLBACK_TO) | BIT(SQL_RELEASE))) != 0;
}

void session_deny_message(unsigned pins, char *buf, size_t size)
{
	int r = 0;
	while (r < PIN_NREASONS && !(pins & BIT(r)))
		r++;
	snprintf(buf, size,
		 "pgmux: this statement would pin the session to one server connection "
		 "(reason: %s), and session_pinning = deny",
		 pin_reason_name(r));
}

static void log_pin(const char *event, const struct client *c, const struct server *s, int reason,
		    uint64_t count)
{
	log_info(event, "reason=%s db=%s user=%s addr=%s client=%llu server_pid=%u pins=%llu",
		 pin_reason_name(reason), pool_db_name(c->pool), pool_user(c->pool), c->addr,
		 (unsigned long long)c->id, s ? s->be_pid : 0, (unsigned long long)count);
}

void session_pin(struct client *c, const struct server *s, unsigned reasons)
{
	unsigned added = reasons & ~c->pins;
	c->pins |= reasons;
	for (int r = 0; r < PIN_NREASONS; r++) {
		if (!(added & BIT(r)))
			continue;
		uint64_t n = __atomic_add_fetch(&pin_counts[r], 1, __ATOMIC_RELAXED);
		log_pin("session_pinned", c, s, r, n);
	}
}

void session_unpin(struct client *c, const struct server *s, unsigned reasons)
{
	unsigned before = c->pins;
	c->pins &= ~reasons;
	if (before && !c->pins)
		log_info("session_unpinned", "db=%s user=%s addr=%s client=%llu server_pid=%u",
			 pool_db_name(c->pool), pool_user(c->pool), c->addr,
			 (unsigned long long)c->id, s ? s->be_pid : 0);
}

void session_error(struct client *c)
{
	c->txn_failed = true;
}

/* Apply one committed change to C's record. *RESYNC is set when the server
 * lost C's startup parameters (RESET takes a parameter to the server's
 * default, not to the client's startup value as on a direct connection). */
static int apply_op(struct client *c, const struct server *s, const struct set_op *op,
		    bool *resync)
{
	switch (op->kind) {
	case SQL_SET:
		c->sets_version++;
		return kvlist_set(&c->sets, op->name, op->value);
	case SQL_RESET:
		c->sets_version++;
		kvlist_del(&c->sets, op->name);
		if (kvlist_get(&c->params, op->name))
			*resync = true;
		return 0;
	case SQL_RESET_ALL:
		c->sets_version++;
		kvlist_clear(&c->sets);
		*resync = true;
		return 0;
	case SQL_DISCARD_ALL:
		c->sets_version++;
		*resync = true;
		kvlist_clear(&c->sets);
		kvlist_clear(&c->sql_prepared);
		session_unpin(c, s, ~BIT(PIN_LOAD));
		return 0;
	case SQL_UNLISTEN:
		session_unpin(c, s, BIT(PIN_LISTEN));
		return 0;
	case SQL_ADVISORY_UNLOCK_ALL:
		session_unpin(c, s, BIT(PIN_ADVISORY_LOCK));
		return 0;
	case SQL_DEALLOCATE:
		kvlist_del(&c->sql_prepared, op->name);
		if (c->sql_prepared.n == 0)
			session_unpin(c, s, BIT(PIN_SQL_PREPARE));
		return 0;
	case SQL_DEALLOCATE_ALL:
		kvlist_clear(&c->sql_prepared);
		session_unpin(c, s, BIT(PIN_SQL_PREPARE));
		return 0;
	default:
		return 0;
	}
}

/* Savepoints open in the transaction being committed: name and how many
 * kept changes preceded it. */
struct savepoint {
	const char *name;
	int kept;
};

void session_txn_end(struct client *c, struct server *s, uint64_t upto, bool committed)
{
	int n = 0, keep = 0, nkept = 0, nsp = 0, rc = 0;
	bool resync = false;
	committed = committed && !c->txn_failed && !c->rollback_pending;
	c->txn_failed = false;
	c->rollback_pending = false;
	c->rollback_tos = 0;
	while (n < c->nops && c->ops[n].seq <= upto)
		n++;
	struct set_op **kept = committed && n ? malloc((size_t)n * sizeof(*kept)) : NULL;
	struct savepoint *sp = committed && n ? malloc((size_t)n * sizeof(*sp)) : NULL;
	if (committed && n && (!kept || !sp))
		rc = -1;
	for (int i = 0; i < n && rc == 0 && committed; i++) {
		struct set_op *op = &c->ops[i];
		int j = nsp - 1;
		switch (op->kind) {
		case SQL_SAVEPOINT:
			sp[nsp++] = (struct savepoint){op->name, nkept};
			break;
		case SQL_ROLLBACK_TO: /* undo what followed it; the savepoint stays */
			while (j >= 0 && strcmp(sp[j].name, op->name) != 0)
				j--;
			if (j >= 0) {
				nkept = sp[j].kept;
				nsp = j + 1;
			}
			break;
		case SQL_RELEASE: /* its changes now belong to the enclosing level */
			while (j >= 0 && strcmp(sp[j].name, op->name) != 0)
				j--;
			if (j >= 0)
				nsp = j;
			break;
		default:
			kept[nkept++] = op;
			break;
		}
	}
	for (int i = 0; i < nkept && rc == 0; i++)
		if (apply_op(c, s, kept[i], &resync) < 0)
			rc = -1;
	free(kept);
	free(sp);
	for (int i = 0; i < c->nops; i++) {
		if (i >= n) {
			c->ops[keep++] = c->ops[i];
			continue;
		}
		free(c->ops[i].name);
		free(c->ops[i].value);
	}
	c->nops = keep;
	if (rc < 0) {
		/* the record is incomplete: only this server is known to be right */
		c->pins |= BIT(PIN_UNTRACKED);
	}
	if (!s || s->client != c || nkept == 0)
		return;
	if (resync) {
		/* replay everything at the next link, startup parameters included */
		kvlist_clear(&s->applied);
		s->dirty_params = true;
		s->last_client_id = 0;
	} else {
		s->synced_version = c->sets_version; /* it ran them itself */
	}
}

void session_abandon_txn(struct client *c)
{
	session_txn_end(c, NULL, UINT64_MAX, false);
}

void session_ready(struct client *c, struct server *s, uint64_t upto, char status)
{
	if (status == 'I') {
		session_txn_end(c, s, upto, true);
		return;
	}
	/* still in a transaction: a ROLLBACK tag was a ROLLBACK TO SAVEPOINT,
	 * and at status T any error before has been rolled back to a savepoint */
	c->rollback_pending = false;
	if (status == 'T')
		c->txn_failed = false;
}

void session_rollback_seen(struct client *c)
{
	if (c->rollback_tos > 0) {
		c->rollback_tos--; /* a ROLLBACK TO SAVEPOINT sent earlier */
		return;
	}
	c->rollback_pending = true;
}

/* ---- replaying settings on a server ---- */

bool session_in_sync(const struct server *s, const struct client *c)
{
	if (s->last_client_id == c->id && s->synced_version == c->sets_version)
		return true; /* it carries this client's own session, nothing changed since */
	if (s->dirty_params || !kvlist_equal(&s->applied_sets, &c->sets))
		return false;
	return kvlist_equal(&s->applied, &c->params);
}

/* S as an E'' literal: right whatever standard_conforming_strings the
 * previous client left (the whole sync query is parsed before its RESET ALL
 * runs). */
static void add_literal(struct evbuffer *b, const char *s)
{
	evbuffer_add(b, "E'", 2);
	for (const char *p = s; *p; p++) {
		if (*p == '\'' || *p == '\\')
			evbuffer_add(b, p, 1);
		evbuffer_add(b, p, 1);
	}
	evbuffer_add(b, "'", 1);
}

int session_build_sync(struct server *s, struct client *c, struct evbuffer *sql)
{
	int changes = 0;
	bool full = s->dirty_params || !kvlist_equal(&s->applied_sets, &c->sets);
	if (full) {
		evbuffer_add_printf(sql, "RESET ALL;");
		kvlist_clear(&s->applied);
		kvlist_clear(&s->applied_sets);
		changes++;
	} else {
		/* per-name RESETs of what pgmux applied for someone else: RESET ALL
		 * would also skip parameters marked GUC_NO_RESET_ALL */
		for (int i = 0; i < s->applied.n; i++) {
			const char *n = s->applied.v[i].name;
			if (kvlist_get(&c->params, n))
				continue;
			if (!name_ok(n))
				return -1;
			evbuffer_add_printf(sql, "RESET \"%s\";", n);
			changes++;
		}
	}
	bool first = true;
	for (int i = 0; i < c->params.n; i++) {
		const struct kv *kv = &c->params.v[i];
		const char *cur = kvlist_get(&s->applied, kv->name);
		if (cur && strcmp(cur, kv->value) == 0)
			continue;
		if (!name_ok(kv->name))
			return -1;
		evbuffer_add_printf(sql, first ? "SELECT pg_catalog.set_config(" : ", pg_catalog.set_config(");
		add_literal(sql, kv->name);
		evbuffer_add(sql, ", ", 2);
		add_literal(sql, kv->value);
		evbuffer_add_printf(sql, ", false)");
		first = false;
		changes++;
	}
	if (!first)
		evbuffer_add(sql, ";", 1);
	if (full) {
		for (int i = 0; i < c->sets.n; i++) {
			const struct kv *kv = &c->sets.v[i];
			if (strcmp(kv->name, "timezone") == 0) /* INTERVAL '...' HOUR TO MINUTE... */
				evbuffer_add_printf(sql, "SET TIME ZONE %s\n;", kv->value);
			else
				evbuffer_add_printf(sql, "SET %s TO %s\n;", kv->name, kv->value);
			changes++;
		}
	}
	if (kvlist_copy(&s->applied, &c->params) < 0 || kvlist_copy(&s->applied_sets, &c->sets) < 0)
		return -1;
	s->dirty_params = false;
	s->synced_version = c->sets_version;
	return changes;
}

void session_server_reset(struct server *s)
{
	kvlist_clear(&s->applied);
	kvlist_clear(&s->applied_sets);
	s->dirty_params = false;
	s->last_client_id = 0;
	s->unnamed_owner = 0;
	sstmt_forget_upto(&s->stmts, s->stmts.counter);
}

void session_client_free(struct client *c)
{
	for (int i = 0; i < c->nops; i++) {
		free(c->ops[i].name);
		free(c->ops[i].value);
	}
	free(c->ops);
	c->ops = NULL;
	c->nops = c->capops = 0;
	kvlist_clear(&c->sets);
	kvlist_clear(&c->sql_prepared);
	cstmt_clear(&c->stmts);
	free(c->unnamed);
	c->unnamed = NULL;
	c->unnamed_len = c->unnamed_cap = 0;
}
