/* libFuzzer harness: sqllex_classify on arbitrary bytes, as session.c's
 * session_inspect calls it on a Query or Parse text (LEN bytes, no NUL
 * needed). The input is the SQL text itself; seeds are query texts captured
 * from real clients (corpus/fuzz_sqllex).
 *
 * Besides memory errors, a broken documented invariant is a crash: 0 <= n
 * <= SQLLEX_MAX_STMTS, too_many only with a full stmts array, every kind in
 * range and in kinds, no bit in kinds beyond the last kind, and name/value
 * NUL-terminated within their arrays (session.c copies them with "%s"). */
#include "fuzz_common.h"

#include "pg/sqllex.h"

#define LAST_KIND SQL_RELEASE

static void check_stmt(const struct sqllex_stmt *st, unsigned kinds)
{
	FUZZ_CHECK((unsigned)st->kind <= (unsigned)LAST_KIND);
	FUZZ_CHECK(kinds & (1u << st->kind));
	FUZZ_CHECK(memchr(st->name, '\0', sizeof(st->name)) != NULL);
	FUZZ_CHECK(memchr(st->value, '\0', sizeof(st->value)) != NULL);
	FUZZ_CHECK(strcmp(sqllex_kind_name(st->kind), "unknown") != 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* as session.c: a static result, reused from call to call */
	static struct sqllex_result r, again;
	char *sql = (char *)fuzz_dup(data, size);
	unsigned seen = 0;

	/* what the result held before must not matter: two runs over
	 * differently filled results agree */
	memset(&r, 0xa5, sizeof(r));
	memset(&again, 0x5a, sizeof(again));
	int rc = sqllex_classify(sql, size, &r);
	FUZZ_CHECK(sqllex_classify(sql, size, &again) == rc);
	free(sql);
	FUZZ_CHECK(rc == 0 || rc == -1);
	if (rc < 0)
		return 0;
	FUZZ_CHECK(r.n >= 0 && r.n <= SQLLEX_MAX_STMTS);
	FUZZ_CHECK(!r.too_many || r.n == SQLLEX_MAX_STMTS);
	FUZZ_CHECK((r.kinds >> (LAST_KIND + 1)) == 0);
	for (int i = 0; i < r.n; i++) {
		check_stmt(&r.stmts[i], r.kinds);
		seen |= 1u << r.stmts[i].kind;
	}
	/* kinds covers exactly the statements, unless some did not fit */
	FUZZ_CHECK(r.too_many ? (seen & ~r.kinds) == 0 : seen == r.kinds);
	FUZZ_CHECK(again.n == r.n && again.too_many == r.too_many && again.kinds == r.kinds);
	FUZZ_CHECK(memcmp(again.stmts, r.stmts, (size_t)r.n * sizeof(r.stmts[0])) == 0);
	return 0;
}
