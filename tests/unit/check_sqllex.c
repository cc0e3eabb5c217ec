/* Unit tests for pg/sqllex: statement splitting and classification of
 * simple-Query SQL. A table of statements with their expected kinds, names
 * and values; the tokenizer's quoting rules (comments, strings, dollar
 * quotes, identifiers) and the never-substring-match rule; limits (64
 * statements, value truncation); and hostile input: 1 MB of statements,
 * 10,000 nested comments, unterminated constructs, embedded NULs, every
 * prefix of a tricky query and pseudo-random garbage. Input is copied into
 * exactly-sized heap blocks without a terminator so valgrind sees any
 * over-read. */
#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg/sqllex.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* Run the classifier on LEN bytes of SQL copied to an exact-size block. */
static int run(const char *sql, size_t len, struct sqllex_result *res)
{
	char *copy = malloc(len ? len : 1);
	int rc;

	ck_assert_ptr_nonnull(copy);
	memcpy(copy, sql, len);
	memset(res, 0xA5, sizeof(*res)); /* no stale field may survive */
	rc = sqllex_classify(copy, len, res);
	free(copy);
	return rc;
}

/* ---- the table ---------------------------------------------------------- */

struct exp {
	enum sqllex_kind kind; /* expected kind */
	const char *name;      /* expected name, NULL = do not check */
	const char *value;     /* expected value, NULL = do not check */
};

struct tcase {
	const char *sql; /* input (NUL-terminated here; passed with strlen) */
	int rc;          /* expected return */
	int n;           /* expected statement count (when rc == 0) */
	struct exp e[4]; /* expected statements */
};

#define O {SQL_OTHER, "", NULL}
#define K(k) {k, NULL, NULL}

static const struct tcase cases[] = {
	/* the brief's examples */
	{"SELECT 'LISTEN x'", 0, 1, {O}},
	{"/* SET a=1 */ SELECT 1", 0, 1, {O}},
	{"SELECT $$ SET x = 1 $$", 0, 1, {O}},
	{"SELECT \"listen\" FROM t", 0, 1, {O}},
	{"SELECT pg_advisory_xact_lock(1)", 0, 1, {O}},
	{"SELECT 1; LISTEN foo; SET search_path = a, b", 0, 3,
	 {O, {SQL_LISTEN, "foo", NULL}, {SQL_SET, "search_path", "a, b"}}},
	{"set local statement_timeout = 5", 0, 1, {{SQL_SET_LOCAL, "statement_timeout", "5"}}},
	{"SET TIME ZONE 'UTC'", 0, 1, {{SQL_SET, "timezone", "UTC"}}},
	{"SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE", 0, 1,
	 {{SQL_SET, "session_characteristics", "ISOLATION LEVEL SERIALIZABLE"}}},
	{"CREATE TEMP TABLE t (a int)", 0, 1, {K(SQL_TEMP_OBJECT)}},
	{"create temporary view v as select 1", 0, 1, {K(SQL_TEMP_OBJECT)}},
	{"CREATE LOCAL TEMPORARY SEQUENCE s", 0, 1, {K(SQL_TEMP_OBJECT)}},
	{"CREATE GLOBAL TEMP TABLE g AS SELECT 1", 0, 1, {K(SQL_TEMP_OBJECT)}},
	{"CREATE TEMP TABLE x AS SELECT 1", 0, 1, {K(SQL_TEMP_OBJECT)}},
	{"CREATE TABLE temp (a int)", 0, 1, {O}},
	{"DECLARE c CURSOR WITH HOLD FOR SELECT 1", 0, 1, {{SQL_HOLD_CURSOR, "c", NULL}}},
	{"DECLARE c NO SCROLL CURSOR WITH HOLD FOR SELECT 1", 0, 1, {K(SQL_HOLD_CURSOR)}},
	{"DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1", 0, 1, {O}},
	{"DECLARE c CURSOR FOR SELECT 1", 0, 1, {O}},
	{"DECLARE c CURSOR FOR SELECT 'with hold'", 0, 1, {O}},
	{"SELECT set_config('a','b', false)", 0, 1, {K(SQL_SET_CONFIG_SESSION)}},
	{"SELECT set_config('a','b', true)", 0, 1, {O}},
	{"SELECT set_config('a', 'b', 'off')", 0, 1, {K(SQL_SET_CONFIG_SESSION)}},
	{"SELECT set_config('a', 'b', 'f')", 0, 1, {K(SQL_SET_CONFIG_SESSION)}},
	{"SELECT set_config('a', 'b', '0')", 0, 1, {K(SQL_SET_CONFIG_SESSION)}},
	{"SELECT set_config('a', 'b', ' FALSE ')", 0, 1, {K(SQL_SET_CONFIG_SESSION)}},
	{"SELECT set_config('a', 'b', 't')", 0, 1, {O}},
	{"SELECT pg_catalog.set_config('a', f(1, 2), FALSE)", 0, 1,
	 {K(SQL_SET_CONFIG_SESSION)}},
	{"SELECT set_config('a', 'b', $1)", 0, 1, {K(SQL_SET_CONFIG_SESSION)}},
	{"SELECT set_config('a', 'b')", 0, 1, {O}},
	{"SELECT set_config FROM t WHERE false", 0, 1, {O}},
	{"ROLLBACK TO SAVEPOINT x", 0, 1, {{SQL_ROLLBACK_TO, "x", NULL}}},
	{"rollback work to x", 0, 1, {{SQL_ROLLBACK_TO, "x", NULL}}},
	{"DISCARD TEMP", 0, 1, {O}},
	{"DISCARD ALL", 0, 1, {K(SQL_DISCARD_ALL)}},
	/* SET and friends */
	{"SET search_path TO \"MySchema\", public", 0, 1,
	 {{SQL_SET, "search_path", "\"MySchema\", public"}}},
	{"SET application_name = 'it''s'", 0, 1, {{SQL_SET, "application_name", "it's"}}},
	{"SET application_name = E'a\\nb\\'c\\x41\\101\\u00e9'", 0, 1,
	 {{SQL_SET, "application_name", "a\nb'cAA\xc3\xa9"}}},
	{"SET application_name = $q$x;y$q$", 0, 1, {{SQL_SET, "application_name", "x;y"}}},
	{"SET SESSION DateStyle TO ISO, MDY -- trailing", 0, 1,
	 {{SQL_SET, "datestyle", "ISO, MDY"}}},
	{"SET myapp.User_Id = 42", 0, 1, {{SQL_SET, "myapp.user_id", "42"}}},
	{"SET \"MyApp\".x = 1", 0, 1, {{SQL_SET, "MyApp.x", "1"}}},
	{"SET work_mem TO DEFAULT", 0, 1, {{SQL_SET, "work_mem", "DEFAULT"}}},
	{"SET ROLE admin", 0, 1, {{SQL_SET_ROLE, "role", "admin"}}},
	{"SET SESSION ROLE 'admin'", 0, 1, {{SQL_SET_ROLE, "role", "admin"}}},
	{"SET LOCAL ROLE admin", 0, 1, {{SQL_SET_LOCAL, "role", "admin"}}},
	{"SET SESSION AUTHORIZATION bob", 0, 1,
	 {{SQL_SET_ROLE, "session_authorization", "bob"}}},
	{"SET SESSION SESSION AUTHORIZATION DEFAULT", 0, 1,
	 {{SQL_SET_ROLE, "session_authorization", "DEFAULT"}}},
	{"SET TRANSACTION ISOLATION LEVEL READ COMMITTED", 0, 1, {K(SQL_SET_LOCAL)}},
	{"SET CONSTRAINTS ALL DEFERRED", 0, 1, {K(SQL_SET_LOCAL)}},
	{"SET NAMES 'UTF8'", 0, 1, {{SQL_SET, "client_encoding", "UTF8"}}},
	{"SET SCHEMA 'app'", 0, 1, {{SQL_SET, "search_path", "app"}}},
	{"SET", 0, 1, {O}},
	{"RESET work_mem", 0, 1, {{SQL_RESET, "work_mem", ""}}},
	{"RESET ALL", 0, 1, {{SQL_RESET_ALL, "", ""}}},
	{"RESET TIME ZONE", 0, 1, {{SQL_RESET, "timezone", NULL}}},
	{"RESET ROLE", 0, 1, {{SQL_RESET, "role", NULL}}},
	/* prepared statements, notifications */
	{"DEALLOCATE foo", 0, 1, {{SQL_DEALLOCATE, "foo", NULL}}},
	{"DEALLOCATE PREPARE \"Foo\"", 0, 1, {{SQL_DEALLOCATE, "Foo", NULL}}},
	{"DEALLOCATE prepare", 0, 1, {{SQL_DEALLOCATE, "prepare", NULL}}},
	{"deallocate all", 0, 1, {K(SQL_DEALLOCATE_ALL)}},
	{"DEALLOCATE PREPARE ALL", 0, 1, {K(SQL_DEALLOCATE_ALL)}},
	{"DEALLOCATE \"all\"", 0, 1, {{SQL_DEALLOCATE, "all", NULL}}},
	{"PREPARE S1 (int) AS SELECT $1", 0, 1, {{SQL_PREPARE, "s1", NULL}}},
	{"PREPARE TRANSACTION 'gid1'", 0, 1, {K(SQL_END)}},
	{"PREPARE transaction AS SELECT 1", 0, 1, {{SQL_PREPARE, "transaction", NULL}}},
	{"LISTEN \"Chan\"", 0, 1, {{SQL_LISTEN, "Chan", NULL}}},
	{"UNLISTEN *", 0, 1, {{SQL_UNLISTEN, "*", NULL}}},
	{"SAVEPOINT s1", 0, 1, {{SQL_SAVEPOINT, "s1", NULL}}},
	{"savepoint \"S 2\"", 0, 1, {{SQL_SAVEPOINT, "S 2", NULL}}},
	{"ROLLBACK TO SAVEPOINT s1", 0, 1, {{SQL_ROLLBACK_TO, "s1", NULL}}},
	{"rollback work to S1", 0, 1, {{SQL_ROLLBACK_TO, "s1", NULL}}},
	{"ROLLBACK TRANSACTION TO SAVEPOINT savepoint", 0, 1, {{SQL_ROLLBACK_TO, "savepoint", NULL}}},
	{"RELEASE SAVEPOINT s2", 0, 1, {{SQL_RELEASE, "s2", NULL}}},
	{"RELEASE s2", 0, 1, {{SQL_RELEASE, "s2", NULL}}},
	{"RELEASE savepoint", 0, 1, {{SQL_RELEASE, "savepoint", NULL}}},
	{"SELECT 'SAVEPOINT x'", 0, 1, {{SQL_OTHER, NULL, NULL}}},
	{"unlisten Chan", 0, 1, {{SQL_UNLISTEN, "chan", NULL}}},
	{"LOAD 'auto_explain'", 0, 1, {{SQL_LOAD, "", "auto_explain"}}},
	/* transactions */
	{"BEGIN", 0, 1, {K(SQL_BEGIN)}},
	{"start transaction read only", 0, 1, {K(SQL_BEGIN)}},
	{"COMMIT", 0, 1, {K(SQL_END)}},
	{"end", 0, 1, {K(SQL_END)}},
	{"ABORT", 0, 1, {K(SQL_END)}},
	{"ROLLBACK", 0, 1, {K(SQL_END)}},
	{"COMMIT AND CHAIN", 0, 1, {K(SQL_END)}},
	{"COMMIT PREPARED 'gid1'", 0, 1, {O}},
	{"BEGIN; SET LOCAL a.b = 1; COMMIT", 0, 3,
	 {K(SQL_BEGIN), K(SQL_SET_LOCAL), K(SQL_END)}},
	/* advisory locks */
	{"SELECT pg_advisory_lock(1)", 0, 1, {K(SQL_ADVISORY_LOCK)}},
	{"select PG_TRY_ADVISORY_LOCK_SHARED(1, 2)", 0, 1, {K(SQL_ADVISORY_LOCK)}},
	{"SELECT x FROM t WHERE pg_catalog.pg_advisory_lock_shared (k) IS NULL", 0, 1,
	 {K(SQL_ADVISORY_LOCK)}},
	{"SELECT \"pg_advisory_lock\"(1)", 0, 1, {K(SQL_ADVISORY_LOCK)}},
	{"SELECT \"PG_ADVISORY_LOCK\"(1)", 0, 1, {O}},
	{"SELECT pg_advisory_lock", 0, 1, {O}},
	{"SELECT pg_try_advisory_xact_lock(1)", 0, 1, {O}},
	{"SELECT pg_advisory_unlock_all()", 0, 1, {K(SQL_ADVISORY_UNLOCK_ALL)}},
	{"SELECT pg_advisory_unlock(1)", 0, 1, {O}},
	{"SELECT 'pg_advisory_lock(1)'", 0, 1, {O}},
	/* more temp objects */
	{"SELECT * INTO TEMP t2 FROM t", 0, 1, {K(SQL_TEMP_OBJECT)}},
	{"SELECT 1 AS a INTO LOCAL TEMPORARY TABLE t3", 0, 1, {K(SQL_TEMP_OBJECT)}},
	{"INSERT INTO temp VALUES (1)", 0, 1, {O}},
	{"CREATE TABLE pg_temp.t (a int)", 0, 1, {K(SQL_TEMP_OBJECT)}},
	{"CREATE OR REPLACE TEMP VIEW v AS SELECT 1", 0, 1, {K(SQL_TEMP_OBJECT)}},
	/* tokenizer: quoting, comments, splitting */
	{"SELECT 'a;b'; LISTEN x", 0, 2, {O, {SQL_LISTEN, "x", NULL}}},
	{"SELECT E'\\';LISTEN y'", 0, 1, {O}},
	{"SELECT 'a\\'; LISTEN z", 0, 2, {O, {SQL_LISTEN, "z", NULL}}},
	{"SELECT U&'\\0041;'; LISTEN u", 0, 2, {O, {SQL_LISTEN, "u", NULL}}},
	{"SELECT U&\"a;b\" FROM t; LISTEN v", 0, 2, {O, K(SQL_LISTEN)}},
	{"SELECT \"a\"\"; LISTEN q\" FROM t", 0, 1, {O}},
	{"SELECT $tag$ $$; LISTEN q $tag$", 0, 1, {O}},
	{"SELECT $a$ x $b$; LISTEN q $a$; LISTEN r", 0, 2, {O, {SQL_LISTEN, "r", NULL}}},
	{"PREPARE p AS SELECT $1; LISTEN w", 0, 2, {K(SQL_PREPARE), K(SQL_LISTEN)}},
	{"SELECT a$b FROM t; LISTEN w", 0, 2, {O, K(SQL_LISTEN)}},
	{"SELECT 1 -- ; LISTEN x\n; LISTEN y", 0, 2, {O, {SQL_LISTEN, "y", NULL}}},
	{"SELECT 1 /* a /* b; */ LISTEN x; */ ; LISTEN y", 0, 2,
	 {O, {SQL_LISTEN, "y", NULL}}},
	{"-- only a comment", 0, 0, {O}},
	{";;; ;", 0, 0, {O}},
	{"", 0, 0, {O}},
	{";LISTEN a;;;LISTEN b;", 0, 2, {K(SQL_LISTEN), {SQL_LISTEN, "b", NULL}}},
	{"  \t\n LiStEn\tFoo\n", 0, 1, {{SQL_LISTEN, "foo", NULL}}},
	{"SELECT B'0101', X'ff', N'n;'; DISCARD ALL", 0, 2, {O, K(SQL_DISCARD_ALL)}},
	{"SELECT e'\\\\'; LISTEN e", 0, 2, {O, K(SQL_LISTEN)}},
	{"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END; LISTEN x",
	 0, 2, {O, K(SQL_LISTEN)}},
	{"CREATE OR REPLACE PROCEDURE p() BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; "
	 "COMMIT; END; COMMIT",
	 0, 2, {O, K(SQL_END)}},
	{"SELECT 1 FROM t WHERE a = $1; END", 0, 2, {O, K(SQL_END)}},
	{"SELECT .5e3, 1.2.3, 0x1F; LISTEN n", 0, 2, {O, K(SQL_LISTEN)}},
	/* letters after a number are an identifier, '$' included: no dollar
	 * quote hides the SET (found by fuzz_sqlscan: sqlscan reads it so) */
	{"SELECT 1a$$; SET search_path = evil; SELECT 1 AS b$$", 0, 3,
	 {O, {SQL_SET, "search_path", "evil"}, O}},
	{"SELECT 2_$$", 0, 1, {O}},
	{"SELECT 1e'\\\\'; LISTEN e", 0, 2, {O, K(SQL_LISTEN)}},
	{"DO $$ BEGIN PERFORM 1; END $$; LISTEN d", 0, 2, {O, K(SQL_LISTEN)}},
	{"SELECT $", 0, 1, {O}},
	{"SELECT $a", 0, 1, {O}},
	{"SELECT 1 /*/ still comment */; LISTEN c", 0, 2, {O, K(SQL_LISTEN)}},
	/* errors */
	{"SELECT 'abc", -1, 0, {O}},
	{"SELECT E'abc\\'", -1, 0, {O}},
	{"SELECT E'abc\\", -1, 0, {O}},
	{"SELECT \"abc", -1, 0, {O}},
	{"SELECT 1 /* open", -1, 0, {O}},
	{"SELECT 1 /* /* */", -1, 0, {O}},
	{"SELECT $$ open", -1, 0, {O}},
	{"SELECT $x$ open $y$", -1, 0, {O}},
	{"SELECT $x$ open $x", -1, 0, {O}},
	{"LISTEN a; SELECT U&'x", -1, 0, {O}},
};

static void check_stmt(int ci, int si, const struct sqllex_stmt *got, const struct exp *e)
{
	ck_assert_msg(got->kind == e->kind, "case %d (%s) stmt %d: kind %s, want %s", ci,
		      cases[ci].sql, si, sqllex_kind_name(got->kind), sqllex_kind_name(e->kind));
	ck_assert_msg(memchr(got->name, '\0', sizeof(got->name)) != NULL, "name unterminated");
	ck_assert_msg(memchr(got->value, '\0', sizeof(got->value)) != NULL,
		      "value unterminated");
	if (e->name)
		ck_assert_msg(strcmp(got->name, e->name) == 0, "case %d (%s) stmt %d: name '%s'",
			      ci, cases[ci].sql, si, got->name);
	if (e->value)
		ck_assert_msg(strcmp(got->value, e->value) == 0,
			      "case %d (%s) stmt %d: value '%s'", ci, cases[ci].sql, si,
			      got->value);
	ck_assert(!got->value_truncated);
}

START_TEST(test_table)
{
	const struct tcase *c = &cases[_i];
	struct sqllex_result res;
	int rc = run(c->sql, strlen(c->sql), &res), k;

	ck_assert_msg(rc == c->rc, "case %d (%s): rc %d", _i, c->sql, rc);
	if (rc < 0)
		return;
	ck_assert_msg(res.n == c->n, "case %d (%s): n %d want %d", _i, c->sql, res.n, c->n);
	ck_assert(!res.too_many);
	for (k = 0; k < res.n && k < (int)N_ELEMS(c->e); k++)
		check_stmt(_i, k, &res.stmts[k], &c->e[k]);
}
END_TEST

/* ---- limits -------------------------------------------------------------- */

/* N copies of UNIT, then TAIL, in a heap string. */
static char *repeat(const char *unit, size_t n, const char *tail, size_t *len)
{
	size_t ul = strlen(unit), tl = strlen(tail), i;
	char *s = malloc(ul * n + tl + 1);

	ck_assert_ptr_nonnull(s);
	for (i = 0; i < n; i++)
		memcpy(s + i * ul, unit, ul);
	memcpy(s + n * ul, tail, tl + 1);
	*len = ul * n + tl;
	return s;
}

START_TEST(test_statement_limit)
{
	struct sqllex_result res;
	size_t len;
	char *s;

	s = repeat("LISTEN a;", SQLLEX_MAX_STMTS, "", &len);
	ck_assert_int_eq(run(s, len, &res), 0);
	ck_assert_int_eq(res.n, SQLLEX_MAX_STMTS);
	ck_assert(!res.too_many);
	ck_assert_int_eq(res.stmts[63].kind, SQL_LISTEN);
	free(s);

	s = repeat("LISTEN a;", SQLLEX_MAX_STMTS, "SELECT 1", &len);
	ck_assert_int_eq(run(s, len, &res), 0);
	ck_assert_int_eq(res.n, SQLLEX_MAX_STMTS);
	ck_assert(res.too_many);
	free(s);

	/* an error after the 64th statement is still an error */
	s = repeat("SELECT 1;", 100, "SELECT 'open", &len);
	ck_assert_int_eq(run(s, len, &res), -1);
	free(s);
}
END_TEST

START_TEST(test_one_megabyte)
{
	struct sqllex_result res;
	size_t len;
	char *s = repeat("SELECT 1;", (1u << 20) / 9 + 1, "", &len);

	ck_assert_uint_ge(len, 1u << 20);
	ck_assert_int_eq(run(s, len, &res), 0);
	ck_assert_int_eq(res.n, SQLLEX_MAX_STMTS);
	ck_assert(res.too_many);
	ck_assert_int_eq(res.stmts[0].kind, SQL_OTHER);
	free(s);

	/* one 1 MB statement: a huge string literal, then a SET after it */
	s = repeat("x", 1u << 20, "'; SET a = 1", &len);
	memcpy(s, "SELECT '", 8);
	ck_assert_int_eq(run(s, len, &res), 0);
	ck_assert_int_eq(res.n, 2);
	ck_assert_int_eq(res.stmts[1].kind, SQL_SET);
	free(s);
}
END_TEST

START_TEST(test_nested_comments)
{
	struct sqllex_result res;
	size_t n = 10000, len, i;
	char *s = malloc(4 * n + 32);

	ck_assert_ptr_nonnull(s);
	for (i = 0; i < n; i++)
		memcpy(s + 2 * i, "/*", 2);
	for (i = 0; i < n; i++)
		memcpy(s + 2 * n + 2 * i, "*/", 2);
	memcpy(s + 4 * n, " LISTEN deep", 12);
	len = 4 * n + 12;
	ck_assert_int_eq(run(s, len, &res), 0);
	ck_assert_int_eq(res.n, 1);
	ck_assert_int_eq(res.stmts[0].kind, SQL_LISTEN);
	ck_assert_str_eq(res.stmts[0].name, "deep");

	/* one close short: everything is still comment, unterminated */
	memcpy(s + 4 * n - 2, "  ", 2);
	ck_assert_int_eq(run(s, len, &res), -1);
	free(s);
}
END_TEST

START_TEST(test_value_truncation)
{
	struct sqllex_result res;
	size_t len;
	char *s = repeat("v", 1000, "'", &len);
	char *q = malloc(len + 32);

	ck_assert_ptr_nonnull(q);
	len = (size_t)sprintf(q, "SET application_name = '%s", s);
	ck_assert_int_eq(run(q, len, &res), 0);
	ck_assert_int_eq(res.stmts[0].kind, SQL_SET);
	ck_assert(res.stmts[0].value_truncated);
	ck_assert_uint_eq(strlen(res.stmts[0].value), sizeof(res.stmts[0].value) - 1);

	/* a 1000-byte name is cut to 63 bytes */
	len = (size_t)sprintf(q, "LISTEN %.*s", 1000, s);
	ck_assert_int_eq(run(q, len, &res), 0);
	ck_assert_int_eq(res.stmts[0].kind, SQL_LISTEN);
	ck_assert_uint_eq(strlen(res.stmts[0].name), 63);
	free(q);
	free(s);
}
END_TEST

/* ---- hostile input --------------------------------------------------------- */

START_TEST(test_embedded_nul)
{
	static const char a[] = "SELECT '\0'; LISTEN \"a\0b\"; SET x = 1\0";
	static const char b[] = "SELECT 1;\0;LISTEN x";
	static const char c[] = "SELECT 1 -- \0; LISTEN x\n; LISTEN y";
	struct sqllex_result res;

	ck_assert_int_eq(run(a, sizeof(a) - 1, &res), 0);
	ck_assert_int_eq(res.n, 3);
	ck_assert_int_eq(res.stmts[1].kind, SQL_LISTEN);
	ck_assert_str_eq(res.stmts[1].name, "a"); /* C string stops at the NUL */
	ck_assert_int_eq(res.stmts[2].kind, SQL_SET);
	ck_assert_int_eq(run(b, sizeof(b) - 1, &res), 0);
	ck_assert_int_eq(res.n, 3);
	ck_assert_int_eq(res.stmts[1].kind, SQL_OTHER);
	ck_assert_int_eq(res.stmts[2].kind, SQL_LISTEN);
	ck_assert_int_eq(run(c, sizeof(c) - 1, &res), 0);
	ck_assert_int_eq(res.n, 2);
	ck_assert_str_eq(res.stmts[1].name, "y");
}
END_TEST

/* Every prefix of a query full of quoting classifies without error or
 * returns -1; none reads past its length (valgrind) or hangs. */
START_TEST(test_all_prefixes)
{
	static const char q[] =
		"SET a.b = E'x\\'y'; /* c /* d */ */ SELECT $t$ $ $t$, U&'z''', \"q\"\"r\", "
		"set_config('a', 'b', false), pg_advisory_lock($1) -- e\n; CREATE TEMP TABLE t"
		" AS SELECT 1.5; DECLARE c CURSOR WITH HOLD FOR SELECT 1; LISTEN \"x\"";
	struct sqllex_result res;
	size_t i;

	for (i = 0; i <= sizeof(q) - 1; i++) {
		int rc = run(q, i, &res);

		ck_assert(rc == 0 || rc == -1);
		if (rc == 0)
			ck_assert(res.n >= 0 && res.n <= SQLLEX_MAX_STMTS);
	}
	ck_assert_int_eq(run(q, sizeof(q) - 1, &res), 0);
	ck_assert_int_eq(res.n, 5);
	ck_assert_int_eq(res.stmts[0].kind, SQL_SET);
	ck_assert_str_eq(res.stmts[0].value, "x'y");
	ck_assert_int_eq(res.stmts[1].kind, SQL_ADVISORY_LOCK);
	ck_assert_int_eq(res.stmts[2].kind, SQL_TEMP_OBJECT);
	ck_assert_int_eq(res.stmts[3].kind, SQL_HOLD_CURSOR);
	ck_assert_int_eq(res.stmts[4].kind, SQL_LISTEN);
}
END_TEST

START_TEST(test_garbage)
{
	static const char alphabet[] = "'\"$;/*-\\eEuU&(),.= \n\0abtx0123LISTENSETfalse";
	uint32_t seed = 12345;
	char buf[200];
	int iter;

	for (iter = 0; iter < 20000; iter++) {
		struct sqllex_result res;
		size_t len, i;
		int rc;

		seed = seed * 1103515245u + 12345u;
		len = (seed >> 16) % sizeof(buf);
		for (i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			buf[i] = (iter & 1) ? (char)(seed >> 16)
					    : alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
		}
		rc = run(buf, len, &res);
		ck_assert(rc == 0 || rc == -1);
		if (rc == 0) {
			ck_assert(res.n >= 0 && res.n <= SQLLEX_MAX_STMTS);
			for (i = 0; i < (size_t)res.n; i++)
				ck_assert_ptr_nonnull(sqllex_kind_name(res.stmts[i].kind));
		}
	}
}
END_TEST

START_TEST(test_kind_names)
{
	static const char *const want[] = {
		"other", "set", "set_local", "reset", "reset_all", "discard_all", "deallocate",
		"deallocate_all", "prepare", "listen", "unlisten", "temp_table", "hold_cursor",
		"load", "set_role", "advisory_lock", "advisory_unlock_all", "set_config_session",
		"begin", "end", "savepoint", "rollback_to", "release",
	};
	size_t i;

	for (i = 0; i < N_ELEMS(want); i++)
		ck_assert_str_eq(sqllex_kind_name((enum sqllex_kind)i), want[i]);
	ck_assert_str_eq(sqllex_kind_name((enum sqllex_kind)N_ELEMS(want)), "unknown");
	ck_assert_str_eq(sqllex_kind_name((enum sqllex_kind)-1), "unknown");
}
END_TEST


/* value_literal tells a quoted value from one written as SQL, and kinds
 * covers statements past the 64 kept in stmts. */
START_TEST(test_literal_and_kinds)
{
	struct sqllex_result r;
	static const char q[] = "SET search_path = 'a, b'; SET search_path = a, \"B\"; SET x.y TO 5";
	ck_assert_int_eq(run(q, strlen(q), &r), 0);
	ck_assert_int_eq(r.n, 3);
	ck_assert(r.stmts[0].value_literal);
	ck_assert_str_eq(r.stmts[0].value, "a, b");
	ck_assert(!r.stmts[1].value_literal);
	ck_assert_str_eq(r.stmts[1].value, "a, \"B\"");
	ck_assert(!r.stmts[2].value_literal);
	ck_assert_uint_eq(r.kinds, 1u << SQL_SET);

	char *big = malloc(70 * 16 + 64);
	size_t len = 0;
	ck_assert_ptr_nonnull(big);
	for (int i = 0; i < 70; i++)
		len += (size_t)sprintf(big + len, "SELECT %d;", i);
	len += (size_t)sprintf(big + len, "LISTEN late");
	ck_assert_int_eq(run(big, len, &r), 0);
	free(big);
	ck_assert(r.too_many);
	ck_assert_int_eq(r.n, SQLLEX_MAX_STMTS);
	ck_assert_uint_eq(r.kinds, (1u << SQL_OTHER) | (1u << SQL_LISTEN));
}
END_TEST

static Suite *sqllex_suite(void)
{
	Suite *s = suite_create("sqllex");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, test_table, 0, (int)N_ELEMS(cases));
	tcase_add_test(tc, test_statement_limit);
	tcase_add_test(tc, test_one_megabyte);
	tcase_add_test(tc, test_nested_comments);
	tcase_add_test(tc, test_value_truncation);
	tcase_add_test(tc, test_embedded_nul);
	tcase_add_test(tc, test_all_prefixes);
	tcase_add_test(tc, test_garbage);
	tcase_add_test(tc, test_kind_names);
	tcase_add_test(tc, test_literal_and_kinds);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(sqllex_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
