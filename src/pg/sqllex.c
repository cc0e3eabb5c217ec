/* SQL lexer that spots session state: a tokenizer modelled on PostgreSQL's
 * scan.l, a statement splitter, and a classifier that looks at the first
 * tokens of each statement plus a few function calls anywhere in it. See
 * sqllex.h for the decisions it makes. Never reads past LEN, never loops
 * without consuming input, uses only the caller's result struct. */
#include "pg/sqllex.h"

#include <stdint.h>
#include <string.h>

enum tok_type { TOK_IDENT, TOK_QIDENT, TOK_STRING, TOK_ESTRING, TOK_DOLLAR, TOK_NUMBER,
		TOK_PARAM, TOK_PUNCT };

struct tok {
	enum tok_type type; /* what was scanned */
	size_t start;       /* offset of the first byte (prefix and quotes included) */
	size_t end;         /* offset one past the last byte */
	size_t body;        /* offset of the contents inside the quotes */
	size_t body_end;    /* offset one past the contents */
};

struct lexer {
	const char *s; /* input, not NUL-terminated */
	size_t len;    /* bytes in s */
	size_t pos;    /* next byte to scan */
};

/* Bounded output string, always NUL-terminated. */
struct sbuf {
	char *p;    /* destination */
	size_t cap; /* bytes at p, terminator included */
	size_t n;   /* bytes written, terminator excluded */
	bool trunc; /* something did not fit */
};

/* Progress through the arguments of one set_config( call. */
struct setcfg {
	bool active;  /* inside the argument list */
	size_t base;  /* parenthesis depth outside the call */
	int argi;     /* index of the argument being read */
	size_t a3n;   /* tokens seen in the third argument */
	int a3first;  /* its first token: -1 false, 1 true, 0 anything else */
};

#define HEAD_MAX 32

struct stmt {
	struct tok head[HEAD_MAX]; /* the first tokens */
	int nhead;                 /* entries used in head */
	size_t ntok;               /* tokens in the statement */
	size_t end;                /* offset one past its last token */
	struct tok prev;           /* the previous token (valid when ntok > 0) */
	struct tok prev2;          /* the one before (valid when ntok > 1) */
	size_t depth;              /* parenthesis depth */
	size_t begin_depth;        /* BEGIN/CASE nesting inside a routine body */
	bool is_routine;           /* CREATE [OR REPLACE] FUNCTION|PROCEDURE */
	bool adv_lock;             /* a session-level advisory lock call */
	bool adv_unlock_all;       /* a pg_advisory_unlock_all( call */
	bool cfg_session;          /* a set_config(.., .., false) call */
	bool pg_temp;              /* a pg_temp.name qualified name */
	bool into_temp;            /* INTO [GLOBAL|LOCAL] TEMP */
	struct setcfg cfg;         /* the set_config( call being read */
};

/* ---- characters -------------------------------------------------------- */

static bool is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool is_ident_start(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}

static bool is_ident_cont(unsigned char c)
{
	return is_ident_start(c) || is_digit(c) || c == '$';
}

static unsigned char lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c + ('a' - 'A')) : c;
}

static int peek(const struct lexer *lx, size_t off)
{
	return lx->pos + off < lx->len ? (unsigned char)lx->s[lx->pos + off] : -1;
}

/* ---- tokenizer --------------------------------------------------------- */

static int skip_block_comment(struct lexer *lx)
{
	size_t depth = 0;

	while (lx->pos < lx->len) {
		if (lx->s[lx->pos] == '/' && peek(lx, 1) == '*') {
			depth++;
			lx->pos += 2;
		} else if (lx->s[lx->pos] == '*' && peek(lx, 1) == '/') {
			depth--;
			lx->pos += 2;
			if (depth == 0)
				return 0;
		} else {
			lx->pos++;
		}
	}
	return -1;
}

/* Skip white space and comments. -1 on an unterminated block comment. */
static int skip_blank(struct lexer *lx)
{
	while (lx->pos < lx->len) {
		unsigned char c = (unsigned char)lx->s[lx->pos];

		if (is_space(c)) {
			lx->pos++;
		} else if (c == '-' && peek(lx, 1) == '-') {
			while (lx->pos < lx->len && lx->s[lx->pos] != '\n' && lx->s[lx->pos] != '\r')
				lx->pos++;
		} else if (c == '/' && peek(lx, 1) == '*') {
			if (skip_block_comment(lx) < 0)
				return -1;
		} else {
			break;
		}
	}
	return 0;
}

/* Scan a quoted body from just past the opening quote Q; a doubled Q is an
 * escaped Q, and with BACKSLASH a backslash escapes the next byte. */
static int scan_quoted(struct lexer *lx, char q, bool backslash, struct tok *t)
{
	t->body = lx->pos;
	while (lx->pos < lx->len) {
		char c = lx->s[lx->pos];

		if (backslash && c == '\\') {
			if (lx->pos + 1 >= lx->len)
				return -1;
			lx->pos += 2;
		} else if (c == q && peek(lx, 1) == (unsigned char)q) {
			lx->pos += 2;
		} else if (c == q) {
			t->body_end = lx->pos;
			t->end = ++lx->pos;
			return 0;
		} else {
			lx->pos++;
		}
	}
	return -1;
}

/* At a '$': length of the dollar-quote delimiter ($$ or $tag$) there, or 0. */
static size_t dollar_delim(const struct lexer *lx)
{
	size_t i = lx->pos + 1;

	if (i < lx->len && lx->s[i] == '$')
		return 2;
	if (i >= lx->len || !is_ident_start((unsigned char)lx->s[i]))
		return 0;
	for (i++; i < lx->len && lx->s[i] != '$' && is_ident_cont((unsigned char)lx->s[i]); i++)
		;
	return i < lx->len && lx->s[i] == '$' ? i + 1 - lx->pos : 0;
}

static int scan_dollar(struct lexer *lx, size_t dlen, struct tok *t)
{
	const char *delim = lx->s + lx->pos;
	size_t i;

	t->type = TOK_DOLLAR;
	t->body = lx->pos + dlen;
	for (i = t->body; i < lx->len && lx->len - i >= dlen; i++) {
		if (lx->s[i] == '$' && memcmp(lx->s + i, delim, dlen) == 0) {
			t->body_end = i;
			t->end = lx->pos = i + dlen;
			return 0;
		}
	}
	return -1;
}

/* Quoted forms: '', "", E'', B'' X'' N'', U&'' U&"". 1 if one was scanned,
 * 0 if the input does not start one, -1 if it is unterminated. */
static int lex_quoted(struct lexer *lx, struct tok *t)
{
	int c = peek(lx, 0), c1 = peek(lx, 1), c2 = peek(lx, 2);
	size_t skip = 1;
	char q = '\'';

	t->type = TOK_STRING;
	if (c == '"') {
		t->type = TOK_QIDENT;
		q = '"';
	} else if ((c == 'e' || c == 'E') && c1 == '\'') {
		t->type = TOK_ESTRING;
		skip = 2;
	} else if ((c == 'b' || c == 'B' || c == 'x' || c == 'X' || c == 'n' || c == 'N') &&
		   c1 == '\'') {
		skip = 2;
	} else if ((c == 'u' || c == 'U') && c1 == '&' && (c2 == '\'' || c2 == '"')) {
		skip = 3;
		if (c2 == '"') {
			t->type = TOK_QIDENT;
			q = '"';
		}
	} else if (c != '\'') {
		return 0;
	}
	lx->pos += skip;
	return scan_quoted(lx, q, t->type == TOK_ESTRING, t) < 0 ? -1 : 1;
}

/* Next token into T. Returns 1, 0 at the end of input, -1 on an
 * unterminated comment, quote or dollar quote. */
static int lex_next(struct lexer *lx, struct tok *t)
{
	int r, c;

	if (skip_blank(lx) < 0)
		return -1;
	if (lx->pos >= lx->len)
		return 0;
	t->start = lx->pos;
	r = lex_quoted(lx, t);
	if (r != 0)
		return r;
	c = peek(lx, 0);
	if (is_ident_start((unsigned char)c)) {
		t->type = TOK_IDENT;
		while (lx->pos < lx->len && is_ident_cont((unsigned char)lx->s[lx->pos]))
			lx->pos++;
	} else if (is_digit((unsigned char)c) || (c == '.' && peek(lx, 1) >= 0 &&
						    is_digit((unsigned char)peek(lx, 1)))) {
		/* digits and dots only: letters after a number start an identifier,
		 * which goes on through '$' (PostgreSQL 14 reads 1a$$ as 1 and a$$;
		 * 15 rejects the junk), so no dollar quote opens there */
		t->type = TOK_NUMBER;
		while (lx->pos < lx->len && (is_digit((unsigned char)lx->s[lx->pos]) ||
					     lx->s[lx->pos] == '.'))
			lx->pos++;
	} else if (c == '$' && peek(lx, 1) >= 0 && is_digit((unsigned char)peek(lx, 1))) {
		t->type = TOK_PARAM;
		for (lx->pos++; lx->pos < lx->len && is_digit((unsigned char)lx->s[lx->pos]);)
			lx->pos++;
	} else if (c == '$' && dollar_delim(lx) > 0) {
		return scan_dollar(lx, dollar_delim(lx), t) < 0 ? -1 : 1;
	} else {
		t->type = TOK_PUNCT;
		lx->pos++;
	}
	t->body = t->start;
	t->body_end = t->end = lx->pos;
	return 1;
}

/* ---- token helpers ------------------------------------------------------ */

/* T is the unquoted keyword W (lower case). */
static bool kw(const char *sql, const struct tok *t, const char *w)
{
	size_t n = strlen(w), i;

	if (t->type != TOK_IDENT || t->end - t->start != n)
		return false;
	for (i = 0; i < n; i++)
		if (lower((unsigned char)sql[t->start + i]) != (unsigned char)w[i])
			return false;
	return true;
}

/* T names W: the keyword, or exactly W as a quoted identifier. */
static bool name_is(const char *sql, const struct tok *t, const char *w)
{
	size_t n = strlen(w);

	if (kw(sql, t, w))
		return true;
	return t->type == TOK_QIDENT && t->body_end - t->body == n &&
	       memcmp(sql + t->body, w, n) == 0;
}

static bool is_punct(const char *sql, const struct tok *t, char c)
{
	return t->type == TOK_PUNCT && sql[t->start] == c;
}

static bool is_string(const struct tok *t)
{
	return t->type == TOK_STRING || t->type == TOK_ESTRING || t->type == TOK_DOLLAR;
}

/* Head token I of ST is the keyword W. */
static bool hk(const char *sql, const struct stmt *st, int i, const char *w)
{
	return i < st->nhead && kw(sql, &st->head[i], w);
}

static void sb_init(struct sbuf *b, char *p, size_t cap)
{
	b->p = p;
	b->cap = cap;
	b->n = 0;
	b->trunc = false;
	p[0] = '\0';
}

static void sb_putc(struct sbuf *b, unsigned char c)
{
	if (b->n + 1 >= b->cap) {
		b->trunc = true;
		return;
	}
	b->p[b->n++] = (char)c;
	b->p[b->n] = '\0';
}

static void sb_put_utf8(struct sbuf *b, uint32_t cp)
{
	if (cp < 0x80) {
		sb_putc(b, (unsigned char)cp);
	} else if (cp < 0x800) {
		sb_putc(b, (unsigned char)(0xC0 | (cp >> 6)));
		sb_putc(b, (unsigned char)(0x80 | (cp & 0x3F)));
	} else if (cp < 0x10000) {
		sb_putc(b, (unsigned char)(0xE0 | (cp >> 12)));
		sb_putc(b, (unsigned char)(0x80 | ((cp >> 6) & 0x3F)));
		sb_putc(b, (unsigned char)(0x80 | (cp & 0x3F)));
	} else {
		sb_putc(b, (unsigned char)(0xF0 | ((cp >> 18) & 0x07)));
		sb_putc(b, (unsigned char)(0x80 | ((cp >> 12) & 0x3F)));
		sb_putc(b, (unsigned char)(0x80 | ((cp >> 6) & 0x3F)));
		sb_putc(b, (unsigned char)(0x80 | (cp & 0x3F)));
	}
}

static int hexval(unsigned char c)
{
	if (is_digit(c))
		return c - '0';
	c = lower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decode the backslash escape at S[*I] (just past the backslash), E < end. */
static void decode_escape(const char *s, size_t *i, size_t e, struct sbuf *b)
{
	unsigned char c = (unsigned char)s[(*i)++];
	uint32_t v = 0;
	int k, max, base = 16;

	switch (c) {
	case 'b': sb_putc(b, '\b'); return;
	case 'f': sb_putc(b, '\f'); return;
	case 'n': sb_putc(b, '\n'); return;
	case 'r': sb_putc(b, '\r'); return;
	case 't': sb_putc(b, '\t'); return;
	case 'x': max = 2; break;
	case 'u': max = 4; break;
	case 'U': max = 8; break;
	default:
		if (c < '0' || c > '7') {
			sb_putc(b, c);
			return;
		}
		v = c - '0';
		max = 2;
		base = 8;
	}
	for (k = 0; k < max && *i < e; k++, (*i)++) {
		int d = hexval((unsigned char)s[*i]);

		if (d < 0 || d >= base)
			break;
		v = v * (uint32_t)base + (uint32_t)d;
	}
	if (k == 0 && base == 16)
		sb_putc(b, c); /* \x, \u, \U without digits stand for the letter */
	else if (c == 'u' || c == 'U')
		sb_put_utf8(b, v > 0x10FFFF ? 0xFFFD : v);
	else
		sb_putc(b, (unsigned char)v);
}

/* Append the text of T: identifiers lower-cased, quotes removed and escapes
 * decoded for quoted forms, other tokens as written. */
static void tok_text(const char *sql, const struct tok *t, struct sbuf *b)
{
	size_t i = t->body;

	while (i < t->body_end) {
		unsigned char c = (unsigned char)sql[i++];

		if (t->type == TOK_IDENT) {
			sb_putc(b, lower(c));
		} else if (t->type == TOK_ESTRING && c == '\\' && i < t->body_end) {
			decode_escape(sql, &i, t->body_end, b);
		} else {
			sb_putc(b, c);
			if ((t->type == TOK_QIDENT && c == '"') ||
			    ((t->type == TOK_STRING || t->type == TOK_ESTRING) && c == '\''))
				i++; /* the second of a doubled quote */
		}
	}
}

/* ---- statement scanning -------------------------------------------------- */

static const char *const lock_fns[] = {"pg_advisory_lock", "pg_advisory_lock_shared",
				       "pg_try_advisory_lock", "pg_try_advisory_lock_shared"};

/* -1 if T is a false boolean literal, 1 if true, 0 otherwise. */
static int bool_literal(const char *sql, const struct tok *t)
{
	static const char *const no[] = {"f", "false", "n", "no", "off", "0"};
	static const char *const yes[] = {"t", "true", "y", "yes", "on", "1"};
	char buf[16];
	struct sbuf b;
	size_t i, s = 0;

	if (kw(sql, t, "false"))
		return -1;
	if (kw(sql, t, "true"))
		return 1;
	if (t->type != TOK_STRING && t->type != TOK_ESTRING)
		return 0;
	sb_init(&b, buf, sizeof(buf));
	tok_text(sql, t, &b);
	while (b.n > 0 && is_space((unsigned char)buf[b.n - 1]))
		buf[--b.n] = '\0';
	while (is_space((unsigned char)buf[s]))
		s++;
	for (i = s; buf[i]; i++)
		buf[i] = (char)lower((unsigned char)buf[i]);
	for (i = 0; i < sizeof(no) / sizeof(no[0]) && !b.trunc; i++) {
		if (strcmp(buf + s, no[i]) == 0)
			return -1;
		if (strcmp(buf + s, yes[i]) == 0)
			return 1;
	}
	return 0;
}

static void cfg_token(const char *sql, struct stmt *st, const struct tok *t)
{
	struct setcfg *c = &st->cfg;

	if (!c->active || c->argi != 2 || st->depth != c->base + 1)
		return;
	if (c->a3n++ == 0)
		c->a3first = bool_literal(sql, t);
}

/* An opening parenthesis: maybe a call of a function we watch. */
static void observe_open(const char *sql, struct stmt *st, const struct tok *t)
{
	size_t i;

	if (st->ntok > 0 && !st->cfg.active && name_is(sql, &st->prev, "set_config")) {
		memset(&st->cfg, 0, sizeof(st->cfg));
		st->cfg.active = true;
		st->cfg.base = st->depth;
	} else {
		cfg_token(sql, st, t);
	}
	for (i = 0; st->ntok > 0 && i < sizeof(lock_fns) / sizeof(lock_fns[0]); i++)
		if (name_is(sql, &st->prev, lock_fns[i]))
			st->adv_lock = true;
	if (st->ntok > 0 && name_is(sql, &st->prev, "pg_advisory_unlock_all"))
		st->adv_unlock_all = true;
	st->depth++;
}

static void observe_close(struct stmt *st)
{
	struct setcfg *c = &st->cfg;

	if (st->depth > 0)
		st->depth--;
	if (c->active && st->depth == c->base) {
		if (c->argi == 2 && c->a3n > 0 && c->a3first != 1)
			st->cfg_session = true;
		c->active = false;
	}
}

static bool is_into_temp(const char *sql, const struct stmt *st, const struct tok *t)
{
	if (!kw(sql, t, "temp") && !kw(sql, t, "temporary"))
		return false;
	if (st->nhead == 0 || !(hk(sql, st, 0, "select") || hk(sql, st, 0, "with") ||
				is_punct(sql, &st->head[0], '(')))
		return false;
	if (st->ntok > 0 && kw(sql, &st->prev, "into"))
		return true;
	return st->ntok > 1 && (kw(sql, &st->prev, "global") || kw(sql, &st->prev, "local")) &&
	       kw(sql, &st->prev2, "into");
}

/* Watch T for calls, pg_temp names, INTO TEMP and routine-body nesting. */
static void observe(const char *sql, struct stmt *st, const struct tok *t)
{
	if (is_punct(sql, t, '(')) {
		observe_open(sql, st, t);
	} else if (is_punct(sql, t, ')')) {
		observe_close(st);
	} else if (is_punct(sql, t, ',') && st->cfg.active && st->depth == st->cfg.base + 1) {
		st->cfg.argi++;
	} else {
		cfg_token(sql, st, t);
		if (is_punct(sql, t, '.') && st->ntok > 0 && name_is(sql, &st->prev, "pg_temp"))
			st->pg_temp = true;
		if (is_into_temp(sql, st, t))
			st->into_temp = true;
	}
	if (!st->is_routine)
		return;
	if (kw(sql, t, "begin") || kw(sql, t, "case"))
		st->begin_depth++;
	else if (kw(sql, t, "end") && st->begin_depth > 0)
		st->begin_depth--;
}

static bool is_routine_kw(const char *sql, const struct tok *t)
{
	return kw(sql, t, "function") || kw(sql, t, "procedure");
}

static void stmt_add(const char *sql, struct stmt *st, const struct tok *t)
{
	observe(sql, st, t);
	if (st->nhead < HEAD_MAX)
		st->head[st->nhead++] = *t;
	st->ntok++;
	st->end = t->end;
	st->prev2 = st->prev;
	st->prev = *t;
	if (st->ntok == 2 && hk(sql, st, 0, "create") && is_routine_kw(sql, &st->head[1]))
		st->is_routine = true;
	if (st->ntok == 4 && hk(sql, st, 0, "create") && hk(sql, st, 1, "or") &&
	    hk(sql, st, 2, "replace") && is_routine_kw(sql, &st->head[3]))
		st->is_routine = true;
}

/* Read one statement into ST, up to a splitting ';' or the end of input.
 * Returns 1 after a ';', 0 at the end, -1 on a tokenising error. */
static int scan_stmt(const char *sql, struct lexer *lx, struct stmt *st)
{
	struct tok t;
	int r;

	memset(st, 0, sizeof(*st));
	while ((r = lex_next(lx, &t)) == 1) {
		if (is_punct(sql, &t, ';') && st->begin_depth == 0)
			return 1;
		stmt_add(sql, st, &t);
	}
	return r;
}

/* ---- classification ------------------------------------------------------ */

/* Set O->name from the (possibly dotted) name at head[I]; returns the index
 * after it, or I if there is no name there. */
static int read_name(const char *sql, const struct stmt *st, int i, struct sqllex_stmt *o)
{
	struct sbuf b;
	int j = i;

	sb_init(&b, o->name, sizeof(o->name));
	while (j < st->nhead &&
	       (st->head[j].type == TOK_IDENT || st->head[j].type == TOK_QIDENT)) {
		tok_text(sql, &st->head[j++], &b);
		if (j + 1 >= st->nhead || !is_punct(sql, &st->head[j], '.'))
			break;
		sb_putc(&b, '.');
		j++;
	}
	return j;
}

static void set_name(struct sqllex_stmt *o, const char *name)
{
	struct sbuf b;

	sb_init(&b, o->name, sizeof(o->name));
	while (*name)
		sb_putc(&b, (unsigned char)*name++);
}

/* Set O->value from head[I] to the end of the statement. */
static void set_value(const char *sql, const struct stmt *st, int i, struct sqllex_stmt *o)
{
	struct sbuf b;
	size_t k;

	sb_init(&b, o->value, sizeof(o->value));
	if (i >= st->nhead)
		return;
	if ((size_t)i + 1 == st->ntok && is_string(&st->head[i])) {
		tok_text(sql, &st->head[i], &b);
		o->value_literal = true;
	} else {
		for (k = st->head[i].start; k < st->end; k++)
			sb_putc(&b, (unsigned char)sql[k]);
	}
	o->value_truncated = b.trunc;
}

/* SET forms that are not "name {TO|=} value". Returns true if handled. */
static bool classify_set_special(const char *sql, const struct stmt *st, int i, bool session,
				 struct sqllex_stmt *o)
{
	static const struct {
		const char *w1, *w2, *name; /* keywords (w2 may be NULL), GUC name */
	} forms[] = {
		{"time", "zone", "timezone"},   {"schema", NULL, "search_path"},
		{"names", NULL, "client_encoding"}, {"xml", "option", "xmloption"},
		{"role", NULL, "role"}, {"session", "authorization", "session_authorization"},
	};
	size_t f;
	int v;

	if (session && i == 2 && hk(sql, st, 2, "characteristics") && hk(sql, st, 3, "as")) {
		set_name(o, "session_characteristics");
		set_value(sql, st, hk(sql, st, 4, "transaction") ? 5 : 4, o);
		return true;
	}
	if (i == 1 && (hk(sql, st, 1, "transaction") || hk(sql, st, 1, "constraints"))) {
		o->kind = SQL_SET_LOCAL;
		read_name(sql, st, 1, o);
		set_value(sql, st, 2, o);
		return true;
	}
	for (f = 0; f < sizeof(forms) / sizeof(forms[0]); f++) {
		if (!hk(sql, st, i, forms[f].w1) || (forms[f].w2 && !hk(sql, st, i + 1, forms[f].w2)))
			continue;
		set_name(o, forms[f].name);
		v = i + (forms[f].w2 ? 2 : 1);
		if (hk(sql, st, v, "to") || (v < st->nhead && is_punct(sql, &st->head[v], '=')))
			v++;
		set_value(sql, st, v, o);
		if (f >= 4 && o->kind == SQL_SET)
			o->kind = SQL_SET_ROLE;
		return true;
	}
	return false;
}

static void classify_set(const char *sql, const struct stmt *st, struct sqllex_stmt *o)
{
	bool local = hk(sql, st, 1, "local");
	bool session = hk(sql, st, 1, "session") && !hk(sql, st, 2, "authorization");
	int i = local || session ? 2 : 1, j;

	o->kind = local ? SQL_SET_LOCAL : SQL_SET;
	if (classify_set_special(sql, st, i, session, o))
		return;
	j = read_name(sql, st, i, o);
	if (j == i) {
		o->kind = SQL_OTHER;
		return;
	}
	if (j < st->nhead && (hk(sql, st, j, "to") || is_punct(sql, &st->head[j], '=')))
		j++;
	set_value(sql, st, j, o);
}

static void classify_reset(const char *sql, const struct stmt *st, struct sqllex_stmt *o)
{
	o->kind = SQL_RESET;
	if (hk(sql, st, 1, "all") && st->ntok == 2)
		o->kind = SQL_RESET_ALL;
	else if (hk(sql, st, 1, "time") && hk(sql, st, 2, "zone"))
		set_name(o, "timezone");
	else if (hk(sql, st, 1, "session") && hk(sql, st, 2, "authorization"))
		set_name(o, "session_authorization");
	else if (read_name(sql, st, 1, o) == 1)
		o->kind = SQL_OTHER;
}

/* A single (quoted or not) name at head[I] into O->name; false if none. */
static bool single_name(const char *sql, const struct stmt *st, int i, struct sqllex_stmt *o)
{
	struct sbuf b;

	if (i >= st->nhead || (st->head[i].type != TOK_IDENT && st->head[i].type != TOK_QIDENT))
		return false;
	sb_init(&b, o->name, sizeof(o->name));
	tok_text(sql, &st->head[i], &b);
	return true;
}

static void classify_deallocate(const char *sql, const struct stmt *st, struct sqllex_stmt *o)
{
	int i = hk(sql, st, 1, "prepare") && st->ntok > 2 ? 2 : 1;

	if (hk(sql, st, i, "all"))
		o->kind = SQL_DEALLOCATE_ALL;
	else if (single_name(sql, st, i, o))
		o->kind = SQL_DEALLOCATE;
}

static void classify_prepare(const char *sql, const struct stmt *st, struct sqllex_stmt *o)
{
	if (hk(sql, st, 1, "transaction") && st->nhead > 2 && is_string(&st->head[2]))
		o->kind = SQL_END; /* two-phase commit: ends the transaction block */
	else if (single_name(sql, st, 1, o))
		o->kind = SQL_PREPARE;
}

static void classify_listen(const char *sql, const struct stmt *st, bool un,
			    struct sqllex_stmt *o)
{
	if (un && st->nhead > 1 && is_punct(sql, &st->head[1], '*')) {
		set_name(o, "*");
		o->kind = SQL_UNLISTEN;
	} else if (single_name(sql, st, 1, o)) {
		o->kind = un ? SQL_UNLISTEN : SQL_LISTEN;
	}
}

static void classify_create(const char *sql, const struct stmt *st, struct sqllex_stmt *o)
{
	int i = hk(sql, st, 1, "or") && hk(sql, st, 2, "replace") ? 3 : 1;

	if (hk(sql, st, i, "global") || hk(sql, st, i, "local"))
		i++;
	if ((hk(sql, st, i, "temp") || hk(sql, st, i, "temporary")) && i + 1 < st->nhead)
		o->kind = SQL_TEMP_OBJECT;
	else if (st->pg_temp)
		o->kind = SQL_TEMP_OBJECT;
}

static void classify_declare(const char *sql, const struct stmt *st, struct sqllex_stmt *o)
{
	int i;

	for (i = 2; i + 1 < st->nhead && !hk(sql, st, i, "for"); i++) {
		if (hk(sql, st, i, "with") && hk(sql, st, i + 1, "hold")) {
			o->kind = SQL_HOLD_CURSOR;
			if (!single_name(sql, st, 1, o))
				o->name[0] = '\0';
			return;
		}
	}
}

static void classify_end(const char *sql, const struct stmt *st, struct sqllex_stmt *o)
{
	int i = 1;

	if (hk(sql, st, 1, "prepared"))
		return; /* COMMIT/ROLLBACK PREPARED: not this session's transaction */
	if (hk(sql, st, 0, "rollback") || hk(sql, st, 0, "abort")) {
		if (hk(sql, st, i, "work") || hk(sql, st, i, "transaction"))
			i++;
		if (hk(sql, st, i, "to")) {
			/* ROLLBACK [WORK|TRANSACTION] TO [SAVEPOINT] name */
			i++;
			if (hk(sql, st, i, "savepoint") && i + 1 < st->nhead)
				i++;
			o->kind = SQL_ROLLBACK_TO;
			single_name(sql, st, i, o);
			return;
		}
	}
	o->kind = SQL_END;
}

/* Statements recognised by their leading keyword. */
static void classify_head(const char *sql, const struct stmt *st, struct sqllex_stmt *o)
{
	if (hk(sql, st, 0, "set"))
		classify_set(sql, st, o);
	else if (hk(sql, st, 0, "reset"))
		classify_reset(sql, st, o);
	else if (hk(sql, st, 0, "discard") && hk(sql, st, 1, "all") && st->ntok == 2)
		o->kind = SQL_DISCARD_ALL;
	else if (hk(sql, st, 0, "deallocate"))
		classify_deallocate(sql, st, o);
	else if (hk(sql, st, 0, "prepare"))
		classify_prepare(sql, st, o);
	else if (hk(sql, st, 0, "listen") || hk(sql, st, 0, "unlisten"))
		classify_listen(sql, st, hk(sql, st, 0, "unlisten"), o);
	else if (hk(sql, st, 0, "create"))
		classify_create(sql, st, o);
	else if (hk(sql, st, 0, "declare"))
		classify_declare(sql, st, o);
	else if (hk(sql, st, 0, "load") && st->ntok > 1) {
		o->kind = SQL_LOAD;
		set_value(sql, st, 1, o);
	} else if (hk(sql, st, 0, "begin") ||
		 (hk(sql, st, 0, "start") && hk(sql, st, 1, "transaction")))
		o->kind = SQL_BEGIN;
	else if (hk(sql, st, 0, "commit") || hk(sql, st, 0, "end") || hk(sql, st, 0, "rollback") ||
		 hk(sql, st, 0, "abort"))
		classify_end(sql, st, o);
	else if (hk(sql, st, 0, "savepoint") && single_name(sql, st, 1, o))
		o->kind = SQL_SAVEPOINT;
	else if (hk(sql, st, 0, "release") &&
		 single_name(sql, st, hk(sql, st, 1, "savepoint") && st->nhead > 2 ? 2 : 1, o))
		o->kind = SQL_RELEASE;
}

static void classify(const char *sql, const struct stmt *st, struct sqllex_stmt *o)
{
	memset(o, 0, sizeof(*o));
	o->kind = SQL_OTHER;
	classify_head(sql, st, o);
	if (o->kind != SQL_OTHER)
		return;
	if (st->adv_lock)
		o->kind = SQL_ADVISORY_LOCK;
	else if (st->cfg_session)
		o->kind = SQL_SET_CONFIG_SESSION;
	else if (st->adv_unlock_all)
		o->kind = SQL_ADVISORY_UNLOCK_ALL;
	else if (st->into_temp)
		o->kind = SQL_TEMP_OBJECT;
}

int sqllex_classify(const char *sql, size_t len, struct sqllex_result *out)
{
	struct lexer lx = {sql, len, 0};
	struct stmt st;
	int r;

	out->n = 0;
	out->too_many = false;
	out->kinds = 0;
	out->ddl = false;
	do {
		r = scan_stmt(sql, &lx, &st);
		if (r < 0)
			return -1;
		if (st.ntok == 0)
			continue;
		if (hk(sql, &st, 0, "create") || hk(sql, &st, 0, "alter") || hk(sql, &st, 0, "drop") ||
		    (hk(sql, &st, 0, "import") && hk(sql, &st, 1, "foreign")))
			out->ddl = true;
		if (out->n == SQLLEX_MAX_STMTS) {
			/* keep scanning: a later error still counts, and so do kinds */
			struct sqllex_stmt extra;
			out->too_many = true;
			classify(sql, &st, &extra);
			out->kinds |= 1u << extra.kind;
			continue;
		}
		classify(sql, &st, &out->stmts[out->n]);
		out->kinds |= 1u << out->stmts[out->n++].kind;
	} while (r == 1);
	return 0;
}

const char *sqllex_kind_name(enum sqllex_kind k)
{
	static const char *const names[] = {
		[SQL_OTHER] = "other",
		[SQL_SET] = "set",
		[SQL_SET_LOCAL] = "set_local",
		[SQL_RESET] = "reset",
		[SQL_RESET_ALL] = "reset_all",
		[SQL_DISCARD_ALL] = "discard_all",
		[SQL_DEALLOCATE] = "deallocate",
		[SQL_DEALLOCATE_ALL] = "deallocate_all",
		[SQL_PREPARE] = "prepare",
		[SQL_LISTEN] = "listen",
		[SQL_UNLISTEN] = "unlisten",
		[SQL_TEMP_OBJECT] = "temp_table",
		[SQL_HOLD_CURSOR] = "hold_cursor",
		[SQL_LOAD] = "load",
		[SQL_SET_ROLE] = "set_role",
		[SQL_ADVISORY_LOCK] = "advisory_lock",
		[SQL_ADVISORY_UNLOCK_ALL] = "advisory_unlock_all",
		[SQL_SET_CONFIG_SESSION] = "set_config_session",
		[SQL_BEGIN] = "begin",
		[SQL_END] = "end",
		[SQL_SAVEPOINT] = "savepoint",
		[SQL_ROLLBACK_TO] = "rollback_to",
		[SQL_RELEASE] = "release",
	};

	if ((unsigned)k >= sizeof(names) / sizeof(names[0]))
		return "unknown";
	return names[k];
}
