/* Resumable SQL scanning, for query text that arrives in pieces (a Query or
 * Parse too large to hold whole: pgmux streams it to the server as it
 * arrives). It follows the same lexical rules as sqllex (scan.l with
 * standard_conforming_strings on: -- and nested block comments, '' with
 * doubled quotes, E'' with backslash escapes, "identifiers", $tag$ dollar
 * quotes, $1 parameters), finds the statement boundaries (top-level
 * semicolons), keeps the first SQLSCAN_HEAD bytes of each statement for
 * sqllex_classify, and notes the calls that sqllex looks for anywhere in a
 * statement, conservatively (a call whose arguments it does not read counts
 * as the session-level kind).
 *
 * Differences from sqllex, all on the side of tracking more: semicolons
 * inside a CREATE FUNCTION ... BEGIN ATOMIC body split it (the pieces are
 * plain SQL statements), and set_config( counts as session-level whatever
 * its third argument. Pure: no allocation, no I/O, no globals. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SQLSCAN_HEAD 4096 /* bytes of each statement kept for classification */

/* Calls and names seen anywhere in a statement. */
enum sqlscan_flag {
	SQLSCAN_ADV_LOCK = 1u << 0,   /* pg_[try_]advisory_lock[_shared]( */
	SQLSCAN_SET_CONFIG = 1u << 1, /* set_config( */
	SQLSCAN_UNLOCK_ALL = 1u << 2, /* pg_advisory_unlock_all( */
	SQLSCAN_TEMP = 1u << 3,       /* INTO TEMP[ORARY], or a pg_temp. qualified name */
};

struct sqlscan_stmt {
	const char *head; /* borrowed until the callback returns: its first bytes, with
			   * comments and runs of blanks outside quotes made one space */
	size_t len;       /* bytes of head, ending at a token boundary */
	bool truncated;   /* the statement goes on past head */
	unsigned tokens;  /* words and quoted strings in head */
	const char *first;/* its first word, lower-cased ("" if it starts otherwise) */
	unsigned flags;   /* enum sqlscan_flag seen anywhere in it */
};

/* Called once per non-empty statement (one with a token, not only
 * comments), when its end is seen. */
typedef void (*sqlscan_fn)(void *arg, const struct sqlscan_stmt *st);

struct sqlscan {
	sqlscan_fn fn;            /* borrowed */
	void *arg;
	int mode;                 /* lexical state (sqlscan.c) */
	int depth;                /* block comment nesting */
	unsigned char prev;       /* previous byte, for two-byte tokens across pieces */
	bool maybe_end;           /* in a quote: the closing quote may be a doubled one */
	bool escape;              /* in E'': the previous byte was a backslash */
	char tag[64];             /* dollar quote tag being read (its first bytes) */
	size_t taglen;            /* its whole length (PostgreSQL sets no limit) */
	uint64_t taghash;         /* FNV-1a of the whole tag */
	bool in_seg;              /* in the quote: reading what may be a closing tag */
	char seg[64];             /* ...its first bytes */
	size_t seglen;
	uint64_t seghash;
	bool lost;                /* a tag longer than tag[] was matched by its hash only:
				   * the statements seen may be wrong (the caller treats the
				   * text as untrackable) */
	char word[64];            /* identifier being read, lower-cased */
	size_t wordlen;
	bool word_long;           /* longer than word: not one of the notable names */
	bool word_e;              /* the identifier is just "E": a quote after it is E'' */
	unsigned pending;         /* a notable name was read: flag set if '(' follows */
	bool after_into;          /* the last word was INTO */
	bool after_pg_temp;       /* the last word was pg_temp */
	bool in_stmt;             /* a statement has started */
	unsigned flags;           /* of the current statement */
	char head[SQLSCAN_HEAD];  /* the current statement's first bytes */
	size_t headlen;
	size_t safelen;           /* headlen at the last token boundary */
	bool truncated;
	unsigned tokens;          /* words and quoted strings kept in head */
	unsigned char prev_kept;  /* the last byte offered to head */
	char first[16];           /* the statement's first word, if it starts with one */
	bool first_done;          /* the first token has been read */
};

void sqlscan_init(struct sqlscan *sc, sqlscan_fn fn, void *arg);
/* N more bytes of text (no NUL terminator inside). */
void sqlscan_feed(struct sqlscan *sc, const char *p, size_t n);
/* End of the text: the last statement goes to the callback. Returns 0, or
 * -1 if the text ended inside a quote, a comment or a dollar quote (the
 * server rejects it as a syntax error). */
int sqlscan_finish(struct sqlscan *sc);
