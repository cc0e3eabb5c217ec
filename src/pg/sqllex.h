/* SQL lexer that spots session state: splits a simple-Query string into
 * statements and classifies each one (SET, LISTEN, PREPARE, temp tables,
 * session advisory locks...), so that the pooler can see what a client
 * leaves behind on a server connection. Pure: bytes in, results out; no I/O,
 * no allocation, no globals.
 *
 * The tokenizer follows PostgreSQL's scan.l with standard_conforming_strings
 * on: -- and nested block comments, '...' (with ''), E'...' (backslash
 * escapes), B'' X'' N'' U&'...', "identifiers" and U&"...", $$ and $tag$
 * dollar quotes ($1 is a parameter). Keywords are matched only as whole
 * unquoted tokens, never as substrings. Semicolons split statements except
 * inside a CREATE FUNCTION/PROCEDURE ... BEGIN ATOMIC ... END body (as psql).
 *
 * Choices worth knowing (conservative = may pin more than needed):
 * - SET SESSION CHARACTERISTICS AS TRANSACTION ... is SQL_SET with name
 *   "session_characteristics" (it changes session defaults).
 * - SET TRANSACTION ... and SET CONSTRAINTS ... are SQL_SET_LOCAL (names
 *   "transaction", "constraints"); SET LOCAL ROLE is SQL_SET_LOCAL "role".
 * - SET ROLE / SET SESSION AUTHORIZATION fill name ("role",
 *   "session_authorization") and value; RESET ROLE is SQL_RESET "role".
 * - PREPARE TRANSACTION 'gid' is SQL_END (it ends the transaction block);
 *   COMMIT PREPARED / ROLLBACK PREPARED are SQL_OTHER.
 * - set_config's third argument: keyword true or a true string ('t', 'true',
 *   'on', 'yes', 'y', '1') is transaction-local; false or a false string is
 *   session; anything else (a parameter, an expression) counts as session.
 * - SELECT ... INTO TEMP and CREATE ... pg_temp.name are SQL_TEMP_OBJECT.
 * - For SQL_HOLD_CURSOR, name is the cursor; for SQL_LOAD, value is the library.
 * - A statement whose own kind is SQL_OTHER takes the kind of the calls in it,
 *   in this order: advisory lock, set_config session, unlock all, INTO TEMP.
 * - Names longer than 63 bytes are truncated (as PostgreSQL truncates them).
 * - Not seen: state created inside DO blocks, function bodies or EXECUTE.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

enum sqllex_kind {
	SQL_OTHER,               /* anything not listed below */
	SQL_SET,                 /* SET [SESSION] name {TO|=} value ; name is set */
	SQL_SET_LOCAL,           /* SET LOCAL ... (transaction-scoped) */
	SQL_RESET,               /* RESET name */
	SQL_RESET_ALL,           /* RESET ALL */
	SQL_DISCARD_ALL,         /* DISCARD ALL */
	SQL_DEALLOCATE,          /* DEALLOCATE [PREPARE] name */
	SQL_DEALLOCATE_ALL,      /* DEALLOCATE [PREPARE] ALL */
	SQL_PREPARE,             /* PREPARE name ... (SQL-level) */
	SQL_LISTEN,              /* LISTEN channel */
	SQL_UNLISTEN,            /* UNLISTEN channel | * */
	SQL_TEMP_OBJECT,         /* CREATE [GLOBAL|LOCAL] {TEMP|TEMPORARY} {TABLE|SEQUENCE|VIEW}
				  * ..., also CREATE TEMP ... AS */
	SQL_HOLD_CURSOR,         /* DECLARE ... WITH HOLD ... */
	SQL_LOAD,                /* LOAD 'lib' */
	SQL_SET_ROLE,            /* SET [SESSION] ROLE ..., SET [SESSION] SESSION
				  * AUTHORIZATION ... (not LOCAL) */
	SQL_ADVISORY_LOCK,       /* a call of pg_advisory_lock / pg_advisory_lock_shared /
				  * pg_try_advisory_lock / pg_try_advisory_lock_shared
				  * (session-level, NOT the _xact_ variants) anywhere */
	SQL_ADVISORY_UNLOCK_ALL, /* a call of pg_advisory_unlock_all() */
	SQL_SET_CONFIG_SESSION,  /* set_config(..., ..., false) anywhere */
	SQL_BEGIN,               /* BEGIN / START TRANSACTION */
	SQL_END,                 /* COMMIT / END / ROLLBACK / ABORT (not ROLLBACK TO SAVEPOINT) */
	SQL_SAVEPOINT,           /* SAVEPOINT name */
	SQL_ROLLBACK_TO,         /* ROLLBACK [WORK|TRANSACTION] TO [SAVEPOINT] name */
	SQL_RELEASE,             /* RELEASE [SAVEPOINT] name */
};

struct sqllex_stmt {
	enum sqllex_kind kind; /* what the statement does to the session */
	char name[64];         /* SET/RESET/DEALLOCATE/PREPARE/LISTEN/UNLISTEN/savepoint target,
				* lower-cased unless it was a quoted identifier; "" if none */
	char value[256];       /* SET value as text (quotes removed for a single string
				* literal; a list like 'a', b kept as written) */
	bool value_truncated;  /* value did not fit and was cut */
	bool value_literal;    /* value was one string literal (its quotes removed); otherwise
				* it is the SQL text as written */
};

#define SQLLEX_MAX_STMTS 64

struct sqllex_result {
	struct sqllex_stmt stmts[SQLLEX_MAX_STMTS]; /* the first statements, in order */
	int n;                                      /* statements found (empty ones between
						     * ;; are skipped) */
	bool too_many; /* more than SQLLEX_MAX_STMTS statements: only the first are in
			* stmts, but kinds covers them all */
	unsigned kinds; /* bit (1u << kind) set for every kind seen, in all statements */
	bool ddl;       /* a statement changes the catalog (CREATE, ALTER, DROP, IMPORT FOREIGN
			 * SCHEMA): prepared statements made before it may be stale */
};

/* Classify every statement of SQL (LEN bytes, need not be NUL-terminated).
 * Returns 0, or -1 if the text cannot be tokenised (unterminated quote,
 * comment or dollar quote): the caller treats it as untrackable. */
int sqllex_classify(const char *sql, size_t len, struct sqllex_result *out)
	__attribute__((warn_unused_result));

/* Stable lower-case name of K for logs ("set", "temp_table"...); "unknown"
 * if K is out of range. */
const char *sqllex_kind_name(enum sqllex_kind k);
