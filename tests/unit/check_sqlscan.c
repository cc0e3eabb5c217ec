/* Unit tests for pg/sqlscan: the resumable scanner that classifies query
 * text too large to hold. The same text must give the same statements
 * whatever the pieces it arrives in (whole, byte by byte, random cuts); each
 * statement's head, classified by sqllex, must give the kind sqllex gives
 * for the whole text; calls anywhere in a statement are flagged; a long
 * statement's head ends at a token boundary; unterminated text is refused. */
#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg/sqllex.h"
#include "pg/sqlscan.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))
#define MAXST 80

struct got {
	int n;
	char head[MAXST][SQLSCAN_HEAD + 1];
	size_t len[MAXST];
	bool truncated[MAXST];
	unsigned flags[MAXST];
};

static void collect(void *arg, const struct sqlscan_stmt *st)
{
	struct got *g = arg;
	ck_assert_int_lt(g->n, MAXST);
	ck_assert_uint_le(st->len, SQLSCAN_HEAD);
	memcpy(g->head[g->n], st->head, st->len);
	g->head[g->n][st->len] = '\0';
	g->len[g->n] = st->len;
	g->truncated[g->n] = st->truncated;
	g->flags[g->n] = st->flags;
	g->n++;
}

/* Scan SQL cut into pieces: CUT 0 = whole, 1 = byte by byte, else random
 * pieces from seed CUT. */
static int scan(const char *sql, size_t len, unsigned cut, struct got *g)
{
	static struct sqlscan sc;
	memset(g, 0, sizeof(*g));
	sqlscan_init(&sc, collect, g);
	size_t pos = 0;
	uint32_t x = cut * 2654435761u + 1;
	while (pos < len) {
		size_t n = len - pos;
		if (cut == 1) {
			n = 1;
		} else if (cut > 1) {
			x = x * 1103515245u + 12345u;
			n = 1 + (x >> 16) % 7;
			if (n > len - pos)
				n = len - pos;
		}
		/* an exact-size copy of each piece, so that an over-read shows */
		char *piece = malloc(n);
		ck_assert_ptr_nonnull(piece);
		memcpy(piece, sql + pos, n);
		sqlscan_feed(&sc, piece, n);
		free(piece);
		pos += n;
	}
	return sqlscan_finish(&sc);
}

static const char *const samples[] = {
	"SELECT 1",
	"SELECT 1; SELECT 2;; ;SELECT 3",
	"SET search_path = a, b; LISTEN foo; SELECT 'x;y'",
	"SELECT $$ ; SET x = 1 ; $$; RESET ALL",
	"SELECT $tag$ $x$ ; $tag$; DISCARD ALL",
	"SELECT E'it\\'s; fine'; SET application_name = 'a''b;c'",
	"SELECT \"we;ird\" FROM t; UNLISTEN *",
	"/* c1 ; /* nested ; */ still */ SELECT 1; -- tail ; comment\nSET x TO 2",
	"BEGIN; SAVEPOINT a; SET LOCAL x = 1; ROLLBACK TO a; RELEASE a; COMMIT",
	"PREPARE p AS SELECT 1; EXECUTE p; DEALLOCATE p; DEALLOCATE ALL",
	"CREATE TEMP TABLE t (a int); DECLARE c CURSOR WITH HOLD FOR SELECT 1",
	"SELECT pg_advisory_lock(1); SELECT pg_catalog.pg_try_advisory_lock_shared (2)",
	"SELECT set_config('a', 'b', false); SELECT pg_advisory_unlock_all()",
	"SELECT * INTO TEMP foo FROM bar; SELECT * FROM pg_temp.x",
	"SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY; SET ROLE x",
	"select $1, $2::int; select a$b from c; select 1-2--3\n; select 4/ 2",
	"SELECT U&'d\\0061t\\+000061'; SELECT B'101', X'ff', N'n'",
	"LOAD 'plpgsql'; SET TIME ZONE 'UTC'; RESET timezone",
	/* a '$' that opens no dollar quote: what follows it is read again (found
	 * by fuzz_sqlscan: the E of an E'' string was lost) */
	"SELECT $E'\\''; SET search_path = evil; SELECT '1'",
	"SELECT 1 $into temp; SELECT $x+1",
};

/* sqllex's kinds for each statement of SQL, whole. */
static int whole_kinds(const char *sql, enum sqllex_kind *out)
{
	static struct sqllex_result r;
	ck_assert_int_eq(sqllex_classify(sql, strlen(sql), &r), 0);
	for (int i = 0; i < r.n; i++)
		out[i] = r.stmts[i].kind;
	return r.n;
}

START_TEST(test_pieces_agree)
{
	static struct got whole, other;
	const char *sql = samples[_i];
	ck_assert_int_eq(scan(sql, strlen(sql), 0, &whole), 0);
	for (unsigned cut = 1; cut < 40; cut++) {
		ck_assert_int_eq(scan(sql, strlen(sql), cut, &other), 0);
		ck_assert_int_eq(other.n, whole.n);
		for (int i = 0; i < whole.n; i++) {
			ck_assert_str_eq(other.head[i], whole.head[i]);
			ck_assert_uint_eq(other.flags[i], whole.flags[i]);
			ck_assert(other.truncated[i] == whole.truncated[i]);
		}
	}
}
END_TEST

START_TEST(test_heads_classify_like_sqllex)
{
	static struct got g;
	static struct sqllex_result r;
	enum sqllex_kind want[SQLLEX_MAX_STMTS];
	const char *sql = samples[_i];
	int n = whole_kinds(sql, want);
	ck_assert_int_eq(scan(sql, strlen(sql), 0, &g), 0);
	int k = 0;
	for (int i = 0; i < g.n; i++) {
		ck_assert_int_eq(sqllex_classify(g.head[i], g.len[i], &r), 0);
		if (r.n == 0)
			continue; /* a statement that is only a comment */
		ck_assert_int_eq(r.n, 1);
		ck_assert_int_lt(k, n);
		ck_assert_msg(r.stmts[0].kind == want[k], "statement %d of <%s>: %s, sqllex says %s", k,
			      sql, sqllex_kind_name(r.stmts[0].kind), sqllex_kind_name(want[k]));
		k++;
	}
	ck_assert_int_eq(k, n);
}
END_TEST

START_TEST(test_flags)
{
	static struct got g;
	static const struct {
		const char *sql;
		unsigned flags;
	} t[] = {
		{"SELECT pg_advisory_lock(1)", SQLSCAN_ADV_LOCK},
		{"SELECT PG_ADVISORY_LOCK_SHARED /* x */ (1)", SQLSCAN_ADV_LOCK},
		{"SELECT pg_try_advisory_lock(1)", SQLSCAN_ADV_LOCK},
		{"SELECT pg_advisory_xact_lock(1)", 0},
		{"SELECT 'pg_advisory_lock(1)'", 0},
		{"SELECT \"pg_advisory_lock\"(1)", 0},
		{"SELECT pg_advisory_lock", 0},
		{"SELECT x.set_config('a','b',false)", SQLSCAN_SET_CONFIG},
		{"SELECT set_config\n(\n'a','b',true)", SQLSCAN_SET_CONFIG},
		{"SELECT pg_advisory_unlock_all()", SQLSCAN_UNLOCK_ALL},
		{"SELECT 1 INTO TEMPORARY t", SQLSCAN_TEMP},
		{"SELECT 1 INTO temp_t", 0},
		{"CREATE TABLE pg_temp.t (a int)", SQLSCAN_TEMP},
		{"SELECT $$pg_advisory_lock(1)$$", 0},
		{"SELECT -- pg_advisory_lock(1)\n 1", 0},
	};
	for (size_t i = 0; i < N_ELEMS(t); i++) {
		ck_assert_int_eq(scan(t[i].sql, strlen(t[i].sql), 0, &g), 0);
		ck_assert_int_eq(g.n, 1);
		ck_assert_msg(g.flags[0] == t[i].flags, "<%s>: flags %u, want %u", t[i].sql, g.flags[0],
			      t[i].flags);
	}
}
END_TEST

START_TEST(test_long_statement)
{
	static struct got g;
	static struct sqllex_result r;
	/* SET with a 10 kB value, then an INSERT of 1 MB with a lock call at the end */
	size_t n = 2 * 1024 * 1024;
	char *sql = malloc(n);
	ck_assert_ptr_nonnull(sql);
	size_t len = (size_t)snprintf(sql, n, "SET application_name = '");
	memset(sql + len, 'a', 10000);
	len += 10000;
	len += (size_t)snprintf(sql + len, n - len, "'; INSERT INTO t VALUES ('");
	memset(sql + len, 'b', 1000000);
	len += 1000000;
	len += (size_t)snprintf(sql + len, n - len, "'), (pg_advisory_lock(7)); SELECT 1");
	ck_assert_int_eq(scan(sql, len, 0, &g), 0);
	ck_assert_int_eq(g.n, 3);
	ck_assert(g.truncated[0] && g.truncated[1] && !g.truncated[2]);
	/* a head cut inside the quote ends before it, at a token boundary */
	ck_assert_str_eq(g.head[0], "SET application_name = ");
	ck_assert_int_eq(sqllex_classify(g.head[0], g.len[0], &r), 0);
	ck_assert_int_eq(r.stmts[0].kind, SQL_SET);
	ck_assert_uint_eq(g.flags[1], SQLSCAN_ADV_LOCK);
	ck_assert_int_eq(sqllex_classify(g.head[1], g.len[1], &r), 0);
	ck_assert_int_eq(r.stmts[0].kind, SQL_OTHER);
	ck_assert_str_eq(g.head[2], "SELECT 1");
	free(sql);
}
END_TEST

/* Comments and blanks do not count against the head: a 1 MB comment before a
 * SET leaves the SET in the head (found in review). */
START_TEST(test_head_keeps_tokens)
{
	static struct got g;
	size_t pad = 1024 * 1024;
	char *sql = malloc(pad + 200);
	ck_assert_ptr_nonnull(sql);
	for (int kind = 0; kind < 3; kind++) {
		size_t len = 0;
		if (kind == 0) {
			len += (size_t)sprintf(sql, "/* ");
			memset(sql + len, 'c', pad);
			len += pad;
			len += (size_t)sprintf(sql + len, " */ SET search_path TO leaked");
		} else if (kind == 1) {
			len += (size_t)sprintf(sql, "-- ");
			memset(sql + len, 'c', pad);
			len += pad;
			len += (size_t)sprintf(sql + len, "\nCREATE TEMP TABLE t (a int)");
		} else {
			len += (size_t)sprintf(sql, "CREATE");
			memset(sql + len, ' ', pad);
			len += pad;
			len += (size_t)sprintf(sql + len, "TEMP TABLE t (a int)");
		}
		for (unsigned cut = 0; cut < 3; cut++) {
			ck_assert_int_eq(scan(sql, len, cut, &g), 0);
			ck_assert_int_eq(g.n, 1);
			ck_assert(!g.truncated[0]);
			ck_assert_str_eq(g.head[0], kind == 0 ? " SET search_path TO leaked" + 1
						      : kind == 1 ? "CREATE TEMP TABLE t (a int)"
								  : "CREATE TEMP TABLE t (a int)");
		}
	}
	free(sql);
	/* a head cut inside a huge quoted name: few tokens, the first word known */
	char *big = malloc(8000);
	size_t n = (size_t)sprintf(big, "DECLARE \"");
	memset(big + n, 'n', 6000);
	n += 6000;
	n += (size_t)sprintf(big + n, "\" CURSOR WITH HOLD FOR SELECT 1");
	ck_assert_int_eq(scan(big, n, 0, &g), 0);
	ck_assert(g.truncated[0]);
	free(big);
}
END_TEST

START_TEST(test_unterminated)
{
	static struct got g;
	static const char *const t[] = {"SELECT 'x", "SELECT E'x\\'", "SELECT \"x", "SELECT $$x",
					"SELECT $a$ x $a", "/* x", "/* /* x */"};
	for (size_t i = 0; i < N_ELEMS(t); i++)
		ck_assert_int_eq(scan(t[i], strlen(t[i]), 0, &g), -1);
	/* ...and these are fine */
	static const char *const ok[] = {"SELECT 'x'", "SELECT 1 -- x", "SELECT $1", "SELECT $",
					 "SELECT 'a'''"};
	for (size_t i = 0; i < N_ELEMS(ok); i++)
		ck_assert_int_eq(scan(ok[i], strlen(ok[i]), 0, &g), 0);
}
END_TEST

START_TEST(test_long_dollar_tag)
{
	static struct got g;
	static struct sqlscan sc;
	/* PostgreSQL sets no limit on a tag: 100 bytes, with near misses inside */
	char tag[101], sql[1024];
	memset(tag, 'q', 100);
	tag[100] = '\0';
	snprintf(sql, sizeof(sql), "SELECT $%s$ ; $%.99s$ $%sz$ ; $$ $%s$; SET x = 1", tag, tag, tag,
		 tag);
	for (unsigned cut = 0; cut < 5; cut++) {
		ck_assert_int_eq(scan(sql, strlen(sql), cut, &g), 0);
		ck_assert_int_eq(g.n, 2);
		ck_assert(strncmp(g.head[1], "SET x = 1", 9) == 0);
	}
	/* ...and the caller learns that only a hash matched it */
	sqlscan_init(&sc, collect, &g);
	memset(&g, 0, sizeof(g));
	sqlscan_feed(&sc, sql, strlen(sql));
	ck_assert(sc.lost);
	ck_assert_int_eq(sqlscan_finish(&sc), 0);
	/* an unterminated long one, as sqllex sees it (found by fuzz_sqlscan) */
	snprintf(sql, sizeof(sql), "$%s$-a", tag);
	ck_assert_int_eq(scan(sql, strlen(sql), 0, &g), -1);
	/* a short tag is matched byte for byte, never lost */
	sqlscan_init(&sc, collect, &g);
	memset(&g, 0, sizeof(g));
	sqlscan_feed(&sc, "SELECT $a$ x $a$", 16);
	ck_assert(!sc.lost);
	ck_assert_int_eq(sqlscan_finish(&sc), 0);
}
END_TEST

START_TEST(test_garbage_is_safe)
{
	static struct got g;
	uint32_t x = 12345;
	char buf[4096];
	static const char alphabet[] = "'\"$;-/*\\ eEab_(). \n0123";
	for (int round = 0; round < 300; round++) {
		size_t len = 1 + round * 13 % sizeof(buf);
		for (size_t i = 0; i < len; i++) {
			x = x * 1103515245u + 12345u;
			buf[i] = round % 2 ? (char)(x >> 16) : alphabet[(x >> 16) % (sizeof(alphabet) - 1)];
		}
		int whole = scan(buf, len, 0, &g);
		int n = g.n;
		ck_assert_int_eq(scan(buf, len, (unsigned)round + 2, &g), whole);
		ck_assert_int_eq(g.n, n);
	}
}
END_TEST

static Suite *sqlscan_suite(void)
{
	Suite *s = suite_create("sqlscan");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, test_pieces_agree, 0, (int)N_ELEMS(samples));
	tcase_add_loop_test(tc, test_heads_classify_like_sqllex, 0, (int)N_ELEMS(samples));
	tcase_add_test(tc, test_flags);
	tcase_add_test(tc, test_long_statement);
	tcase_add_test(tc, test_head_keeps_tokens);
	tcase_add_test(tc, test_unterminated);
	tcase_add_test(tc, test_long_dollar_tag);
	tcase_add_test(tc, test_garbage_is_safe);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(sqlscan_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
