/* libFuzzer harness: sqlscan, the resumable scanner session.c runs over a
 * Query or Parse text that streams to the server in pieces
 * (session_stream_feed/finish), and the sqllex_classify it runs on each
 * statement's head (stream_stmt).
 *
 * Input: one byte K, then the SQL text. The text is scanned twice: in one
 * piece, and in pieces of K + 1 bytes (as it may arrive from the network).
 * Checked:
 *   - the two scans report the same statements (head bytes, length,
 *     truncated, flags) and the same sqlscan_finish result: the pieces a
 *     text arrives in do not matter;
 *   - every head is at most SQLSCAN_HEAD bytes and not empty;
 *   - when the text scans cleanly, sqllex_classify tokenises every head
 *     (session.c relies on it for truncated heads: "cannot happen"), and
 *     sqllex agrees that the whole text tokenises (same lexical rules).
 * Seeds: corpus/fuzz_sqlscan (query texts with a K byte in front). */
#include "fuzz_common.h"

#include "pg/sqllex.h"
#include "pg/sqlscan.h"

#define MAX_SEEN 4096

struct seen {
	uint64_t hash; /* FNV-1a of the head */
	size_t len;
	bool truncated;
	unsigned flags;
	bool lexes; /* sqllex_classify(head) == 0 */
};

struct run {
	struct seen st[MAX_SEEN];
	int n;
	bool overflow;
};

static uint64_t fnv(const char *p, size_t n)
{
	uint64_t h = 14695981039346656037ULL;

	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)p[i];
		h *= 1099511628211ULL;
	}
	return h;
}

static void on_stmt(void *arg, const struct sqlscan_stmt *st)
{
	static struct sqllex_result r;
	struct run *run = arg;

	FUZZ_CHECK(st->len > 0 && st->len <= SQLSCAN_HEAD && st->head);
	if (run->n == MAX_SEEN) {
		run->overflow = true;
		return;
	}
	struct seen *s = &run->st[run->n++];
	s->hash = fnv(st->head, st->len);
	s->len = st->len;
	s->truncated = st->truncated;
	s->flags = st->flags;
	s->lexes = sqllex_classify(st->head, st->len, &r) == 0;
}

static struct run whole, pieces;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct sqlscan sc; /* 8 KiB: not on the stack */
	static struct sqllex_result r;

	if (size < 1)
		return 0;
	size_t k = (size_t)data[0] + 1;
	char *sql = (char *)fuzz_dup(data + 1, size - 1);
	size_t len = size - 1;

	memset(&whole, 0, sizeof(whole));
	memset(&pieces, 0, sizeof(pieces));
	sqlscan_init(&sc, on_stmt, &whole);
	sqlscan_feed(&sc, sql, len);
	int rc1 = sqlscan_finish(&sc);
	bool lost = sc.lost;
	sqlscan_init(&sc, on_stmt, &pieces);
	for (size_t off = 0; off < len; off += k)
		sqlscan_feed(&sc, sql + off, len - off < k ? len - off : k);
	int rc2 = sqlscan_finish(&sc);

	FUZZ_CHECK(rc1 == 0 || rc1 == -1);
	FUZZ_CHECK(rc1 == rc2 && lost == sc.lost);
	FUZZ_CHECK(whole.n == pieces.n && whole.overflow == pieces.overflow);
	for (int i = 0; i < whole.n; i++) {
		const struct seen *a = &whole.st[i], *b = &pieces.st[i];
		FUZZ_CHECK(a->hash == b->hash && a->len == b->len && a->truncated == b->truncated &&
		           a->flags == b->flags);
	}
	/* lost: a long dollar-quote tag matched by its hash only, which
	 * session.c treats as untrackable (an FNV-1a collision is beyond what
	 * the fuzzer makes, but the statements are not promised then) */
	int lex = sqllex_classify(sql, len, &r);
	FUZZ_CHECK(lost || (lex == 0) == (rc1 == 0));
	if (rc1 == 0 && !lost)
		for (int i = 0; i < whole.n; i++)
			FUZZ_CHECK(whole.st[i].lexes);
	free(sql);
	return 0;
}
