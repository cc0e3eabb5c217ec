/* Resumable SQL scanning. See sqlscan.h. One byte at a time through a small
 * state machine, so that a piece may end anywhere: inside a quote, a
 * comment, a dollar-quote delimiter or a two-byte token. */
#include "pg/sqlscan.h"

#include <string.h>

enum mode {
	M_NORMAL,
	M_LINE,   /* -- comment */
	M_BLOCK,  /* block comment, nested */
	M_QUOTE,  /* '...' (also B'' X'' N'' U&'') */
	M_EQUOTE, /* E'...' with backslash escapes */
	M_DQUOTE, /* "identifier" */
	M_DTAG,   /* after a '$' outside an identifier: maybe a dollar-quote tag */
	M_DOLLAR, /* inside $tag$ ... $tag$ */
};

static bool is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static bool is_ident_start(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}

static bool is_ident_cont(unsigned char c)
{
	return is_ident_start(c) || (c >= '0' && c <= '9') || c == '$';
}

static bool is_tag_cont(unsigned char c)
{
	return is_ident_start(c) || (c >= '0' && c <= '9');
}

#define FNV_INIT 14695981039346656037ULL

static uint64_t fnv_add(uint64_t h, unsigned char c)
{
	return (h ^ c) * 1099511628211ULL;
}

/* In a dollar quote: does the segment just read, between two '$', close it? */
static bool seg_closes(const struct sqlscan *sc)
{
	if (sc->seglen != sc->taglen || sc->seghash != sc->taghash)
		return false;
	return sc->taglen > sizeof(sc->tag) || memcmp(sc->seg, sc->tag, sc->taglen) == 0;
}

void sqlscan_init(struct sqlscan *sc, sqlscan_fn fn, void *arg)
{
	memset(sc, 0, sizeof(*sc));
	sc->fn = fn;
	sc->arg = arg;
	sc->mode = M_NORMAL;
}

static void reset_stmt(struct sqlscan *sc)
{
	sc->in_stmt = false;
	sc->flags = 0;
	sc->headlen = 0;
	sc->safelen = 0;
	sc->truncated = false;
	sc->tokens = 0;
	sc->first[0] = '\0';
	sc->first_done = false;
	sc->pending = 0;
	sc->after_into = false;
	sc->after_pg_temp = false;
}

static void emit(struct sqlscan *sc)
{
	if (!sc->in_stmt || sc->headlen == 0)
		return; /* only comments: no statement (sqllex skips it too) */
	struct sqlscan_stmt st = {
		.head = sc->head,
		.len = sc->truncated ? sc->safelen : sc->headlen,
		.truncated = sc->truncated,
		.tokens = sc->tokens,
		.first = sc->first,
		.flags = sc->flags,
	};
	sc->fn(sc->arg, &st);
}

static bool word_is(const struct sqlscan *sc, const char *w)
{
	return !sc->word_long && sc->wordlen == strlen(w) && memcmp(sc->word, w, sc->wordlen) == 0;
}

/* An identifier (or keyword) ended: is it one of the names that matter? */
static void end_word(struct sqlscan *sc)
{
	if (!sc->first_done) {
		sc->first_done = true;
		if (!sc->word_long && sc->wordlen < sizeof(sc->first)) {
			memcpy(sc->first, sc->word, sc->wordlen);
			sc->first[sc->wordlen] = '\0';
		}
	}
	sc->pending = 0;
	if (sc->after_into && (word_is(sc, "temp") || word_is(sc, "temporary")))
		sc->flags |= SQLSCAN_TEMP;
	sc->after_into = word_is(sc, "into");
	sc->after_pg_temp = word_is(sc, "pg_temp");
	if (word_is(sc, "pg_advisory_lock") || word_is(sc, "pg_advisory_lock_shared") ||
	    word_is(sc, "pg_try_advisory_lock") || word_is(sc, "pg_try_advisory_lock_shared"))
		sc->pending = SQLSCAN_ADV_LOCK;
	else if (word_is(sc, "set_config"))
		sc->pending = SQLSCAN_SET_CONFIG;
	else if (word_is(sc, "pg_advisory_unlock_all"))
		sc->pending = SQLSCAN_UNLOCK_ALL;
	sc->wordlen = 0;
	sc->word_long = false;
}

static void add_word_byte(struct sqlscan *sc, unsigned char c)
{
	if (sc->wordlen < sizeof(sc->word))
		sc->word[sc->wordlen++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
	else
		sc->word_long = true;
}

/* A byte in M_NORMAL, outside any identifier. Returns true if it completed
 * a two-byte token, so that it cannot also start the next one ("/" "*" "/"
 * opens a comment, it does not close it). */
static bool normal_byte(struct sqlscan *sc, unsigned char c)
{
	bool e_prefix = sc->word_e;
	sc->word_e = false;
	if (is_space(c))
		return false;
	if (c == '-' && sc->prev == '-') {
		sc->mode = M_LINE;
		return true;
	}
	if (c == '*' && sc->prev == '/') {
		sc->mode = M_BLOCK;
		sc->depth = 1;
		return true;
	}
	if (c == '-' || c == '/')
		return false; /* an operator, or a comment starting: the next byte says */
	if (c == '(' && sc->pending)
		sc->flags |= sc->pending;
	if (c == '.' && sc->after_pg_temp)
		sc->flags |= SQLSCAN_TEMP;
	sc->pending = 0;
	sc->after_into = false;
	sc->after_pg_temp = false;
	if (c == '\'') {
		sc->mode = e_prefix ? M_EQUOTE : M_QUOTE;
		sc->maybe_end = false;
		sc->escape = false;
	} else if (c == '"') {
		sc->mode = M_DQUOTE;
		sc->maybe_end = false;
	} else if (c == '$') {
		sc->mode = M_DTAG;
		sc->taglen = 0;
		sc->taghash = FNV_INIT;
	}
	return false;
}

/* One byte of text. */
static void scan_byte(struct sqlscan *sc, unsigned char c)
{
	bool reprocess;
	do {
		reprocess = false;
		switch (sc->mode) {
		case M_NORMAL:
			if (sc->wordlen || sc->word_long) {
				if (is_ident_cont(c)) {
					add_word_byte(sc, c);
					break;
				}
				bool e = word_is(sc, "e");
				end_word(sc);
				sc->word_e = e && c == '\'';
			}
			if (c == ';') {
				emit(sc);
				reset_stmt(sc);
				sc->word_e = false;
				break;
			}
			if (!sc->in_stmt && !is_space(c)) {
				sc->in_stmt = true;
			}
			if (is_ident_start(c) && !(c >= '0' && c <= '9')) {
				sc->word_e = false;
				add_word_byte(sc, c);
				break;
			}
			if (normal_byte(sc, c))
				c = 0;
			break;
		case M_LINE:
			if (c == '\n' || c == '\r')
				sc->mode = M_NORMAL;
			break;
		case M_BLOCK:
			if (c == '*' && sc->prev == '/') {
				sc->depth++;
				c = 0; /* that star opened a level: it cannot also close one */
			} else if (c == '/' && sc->prev == '*') {
				if (--sc->depth == 0)
					sc->mode = M_NORMAL;
				c = 0; /* the '/' of "*" "/" cannot open */
			}
			break;
		case M_QUOTE:
		case M_EQUOTE:
		case M_DQUOTE: {
			char q = sc->mode == M_DQUOTE ? '"' : '\'';
			if (sc->maybe_end) {
				sc->maybe_end = false;
				if ((char)c == q)
					break; /* a doubled quote: still inside */
				sc->mode = M_NORMAL;
				reprocess = true;
				break;
			}
			if (sc->mode == M_EQUOTE && sc->escape) {
				sc->escape = false;
				break;
			}
			if (sc->mode == M_EQUOTE && c == '\\')
				sc->escape = true;
			else if ((char)c == q)
				sc->maybe_end = true;
			break;
		}
		case M_DTAG:
			if (c == '$') {
				sc->mode = M_DOLLAR;
				sc->in_seg = false;
				if (sc->taglen > sizeof(sc->tag))
					sc->lost = true; /* closed by a hash match only */
			} else if (sc->taglen == 0 ? is_ident_start(c) : is_tag_cont(c)) {
				if (sc->taglen < sizeof(sc->tag))
					sc->tag[sc->taglen] = (char)c;
				sc->taglen++;
				sc->taghash = fnv_add(sc->taghash, c);
			} else {
				/* $1, or a '$' and identifier bytes with no '$' after them:
				 * not a dollar quote. PostgreSQL takes the '$' alone and
				 * reads what followed it again as ordinary text ($E'...'
				 * is '$' and an E'' string): so do we */
				sc->mode = M_NORMAL;
				bool param = sc->taglen == 0 && c >= '0' && c <= '9';
				for (size_t i = 0; i < sc->taglen && i < sizeof(sc->tag); i++)
					add_word_byte(sc, (unsigned char)sc->tag[i]);
				if (sc->taglen > sizeof(sc->tag))
					sc->word_long = true;
				if (!param)
					reprocess = true;
			}
			break;
		case M_DOLLAR:
			/* the closing delimiter is '$' tag '$', and a tag holds no '$':
			 * every run of tag bytes between two '$' is a candidate */
			if (c == '$') {
				if (sc->in_seg && seg_closes(sc)) {
					sc->mode = M_NORMAL;
					break;
				}
				sc->in_seg = true;
				sc->seglen = 0;
				sc->seghash = FNV_INIT;
			} else if (sc->in_seg &&
				   (sc->seglen == 0 ? is_ident_start(c) : is_tag_cont(c))) {
				if (sc->seglen < sizeof(sc->seg))
					sc->seg[sc->seglen] = (char)c;
				sc->seglen++;
				sc->seghash = fnv_add(sc->seghash, c);
			} else {
				sc->in_seg = false;
			}
			break;
		}
	} while (reprocess);
	sc->prev = c;
}

static void keep(struct sqlscan *sc, char c)
{
	if (sc->headlen < sizeof(sc->head))
		sc->head[sc->headlen++] = c;
	else
		sc->truncated = true;
}

void sqlscan_feed(struct sqlscan *sc, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		bool was_in = sc->in_stmt;
		int before = sc->mode;
		bool word_before = sc->wordlen || sc->word_long;
		scan_byte(sc, c);
		if (!sc->in_stmt || (!was_in && is_space(c)))
			continue; /* between statements: nothing to keep */
		/* the head keeps tokens: a comment, or a run of blanks, outside
		 * quotes becomes one space, so no amount of either can push a
		 * statement's keywords out of it */
		if (before == M_NORMAL && (sc->mode == M_LINE || sc->mode == M_BLOCK)) {
			if (sc->headlen && sc->head[sc->headlen - 1] == (char)sc->prev_kept)
				sc->headlen--; /* the '-' or '/' that opened it */
			if (sc->headlen && sc->head[sc->headlen - 1] != ' ')
				keep(sc, ' ');
			sc->first_done |= sc->headlen > 0;
			continue;
		}
		if (before == M_LINE || before == M_BLOCK)
			continue;
		if (before == M_NORMAL && is_space(c)) {
			if (sc->headlen && sc->head[sc->headlen - 1] != ' ')
				keep(sc, ' ');
		} else {
			if (before == M_NORMAL && sc->mode != M_NORMAL) {
				sc->tokens++; /* a quote starts */
				sc->first_done = true;
			} else if (before == M_NORMAL && !word_before && (sc->wordlen || sc->word_long)) {
				sc->tokens++; /* a word starts */
			} else if (before == M_NORMAL && !sc->wordlen && !sc->word_long && c != '-' &&
				   c != '/') {
				sc->first_done = true; /* punctuation first: no first word */
			}
			keep(sc, (char)c);
		}
		sc->prev_kept = c;
		if (!sc->truncated && sc->mode == M_NORMAL && !sc->wordlen && !sc->word_long &&
		    !sc->word_e && c != '-' && c != '/')
			sc->safelen = sc->headlen;
	}
}

int sqlscan_finish(struct sqlscan *sc)
{
	int rc = 0;
	switch (sc->mode) {
	case M_NORMAL:
	case M_LINE:
	case M_DTAG:
		break;
	case M_QUOTE:
	case M_EQUOTE:
	case M_DQUOTE:
		if (!sc->maybe_end)
			rc = -1;
		break;
	case M_BLOCK:
	case M_DOLLAR:
		rc = -1;
		break;
	}
	if (sc->wordlen || sc->word_long)
		end_word(sc);
	if (rc == 0)
		emit(sc);
	reset_stmt(sc);
	return rc;
}
