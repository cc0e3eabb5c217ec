/* Unit tests for core/authfile: PgBouncer's userlist format from fixture
 * files in $FIXTURES/authfile (comments, quoting, plain, md5 and SCRAM
 * entries), one fixture per error with its line number and a reason that
 * must not reveal the password, and generated files (thousands of users,
 * NUL bytes). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/authfile.h"

#define MAX_ERRORS 16

/* Problems reported by a load. */
struct errors {
	int n;                     /* how many were reported */
	int line[MAX_ERRORS];      /* line of each */
	char file[MAX_ERRORS][512]; /* file of each */
	char reason[MAX_ERRORS][256]; /* reason of each */
};

static void collect(void *arg, const char *file, int line, const char *reason)
{
	struct errors *e = arg;

	ck_assert_ptr_nonnull(file);
	ck_assert_ptr_nonnull(reason);
	if (e->n >= MAX_ERRORS)
		return;
	e->line[e->n] = line;
	snprintf(e->file[e->n], sizeof e->file[e->n], "%s", file);
	snprintf(e->reason[e->n], sizeof e->reason[e->n], "%s", reason);
	e->n++;
}

static const char *fixture(const char *name, char *buf, size_t size)
{
	const char *dir = getenv("FIXTURES");

	snprintf(buf, size, "%s/authfile/%s", dir != NULL ? dir : "tests/unit/fixtures", name);
	return buf;
}

static struct authfile *load_fixture(const char *name, struct errors *e)
{
	char path[512];

	memset(e, 0, sizeof *e);
	return authfile_load(fixture(name, path, sizeof path), collect, e);
}

/* ---- the valid fixture ---- */

static const struct {
	const char *user;      /* as unquoted */
	enum secret_kind kind; /* as classified */
	const char *value;     /* as unquoted */
} valid_entries[] = {
	{ "alice", SECRET_PLAIN, "pencil" },
	{ "bob", SECRET_MD5, "md53175bce1d3201d16594cebf9d7eb3f9d" },
	{ "carol", SECRET_SCRAM,
	  "SCRAM-SHA-256$4096:Ccm9p+02CD96W3YsddLIFA==$P0IBP8y23JFXNHJeNpS17lPRN/Gs3OJQvp9GJoiGPSA="
	  ":gJ9ChzwVN1dtUoPy575rr6uJlwp79glesJ1cw15Etsw=" },
	{ "dave", SECRET_PLAIN, "has \"quotes\" inside" },
	{ "quote\"d user", SECRET_PLAIN, "x" },
	{ "erin", SECRET_PLAIN, "spaces  in password " },
	{ "frank", SECRET_PLAIN, "pw" },
	{ "grace", SECRET_PLAIN, "" },
	{ "heidi", SECRET_PLAIN, "ends with CR" },
	{ "ivan\"", SECRET_PLAIN, "user ends with a quote" },
	{ "judy", SECRET_PLAIN, "pencil;#not a comment" },
	{ "mallory", SECRET_PLAIN, "no newline at end" },
};

START_TEST(test_valid)
{
	struct errors e;
	struct authfile *af = load_fixture("valid.txt", &e);
	const struct auth_secret *s;

	ck_assert_msg(af != NULL, "%d errors, first: line %d: %s", e.n, e.line[0], e.reason[0]);
	ck_assert_int_eq(e.n, 0);
	s = authfile_lookup(af, valid_entries[_i].user);
	ck_assert_ptr_nonnull(s);
	ck_assert_str_eq(s->user, valid_entries[_i].user);
	ck_assert_int_eq(s->kind, valid_entries[_i].kind);
	ck_assert_str_eq(s->value, valid_entries[_i].value);
	if (s->kind == SECRET_SCRAM) {
		ck_assert_int_eq(s->scram.iterations, 4096);
		ck_assert_uint_eq(s->scram.salt_len, 16);
	}
	authfile_free(af);
}
END_TEST

static const char *const not_users[] = {
	"", "Alice", "alice ", "quote\"\"d user", "quoted user", "this", ";", "#", "nobody",
};

START_TEST(test_valid_absent)
{
	struct errors e;
	struct authfile *af = load_fixture("valid.txt", &e);

	ck_assert_ptr_nonnull(af);
	ck_assert_ptr_null(authfile_lookup(af, not_users[_i]));
	ck_assert_ptr_null(authfile_lookup(af, NULL));
	ck_assert_ptr_null(authfile_lookup(NULL, "alice"));
	authfile_free(af);
}
END_TEST

/* ---- one error per fixture ---- */

static const struct {
	const char *file;     /* fixture name */
	int line;             /* where the error is */
	const char *reason;   /* a word the reason must contain */
	const char *password; /* what the reason must not contain */
} bad_files[] = {
	{ "unterminated_user.txt", 3, "unterminated", "Secret" },
	{ "unterminated_password.txt", 2, "unterminated", "Secret" },
	{ "missing_password.txt", 3, "missing password", "ok" },
	{ "unquoted_password.txt", 1, "missing password", "Secret" },
	{ "empty_user.txt", 2, "empty user", "Secret" },
	{ "duplicate.txt", 5, "first on line 2", "Secret" },
	{ "bad_md5_short.txt", 1, "md5", "3175bce" },
	{ "bad_md5_upper.txt", 2, "md5", "3175BCE" },
	{ "bad_md5_word.txt", 1, "md5", "Secret" },
	{ "bad_scram_key.txt", 1, "SCRAM", "Ccm9p" },
	{ "bad_scram_iterations.txt", 4, "SCRAM", "Ccm9p" },
	{ "bad_scram_garbage.txt", 1, "SCRAM", "Secret" },
};

START_TEST(test_bad_file)
{
	struct errors e;
	struct authfile *af = load_fixture(bad_files[_i].file, &e);

	ck_assert_ptr_null(af);
	ck_assert_int_eq(e.n, 1);
	ck_assert_int_eq(e.line[0], bad_files[_i].line);
	ck_assert_ptr_nonnull(strstr(e.file[0], bad_files[_i].file));
	ck_assert_msg(strstr(e.reason[0], bad_files[_i].reason) != NULL, "reason: %s",
		      e.reason[0]);
	ck_assert_msg(strstr(e.reason[0], bad_files[_i].password) == NULL, "reason: %s",
		      e.reason[0]);
}
END_TEST

/* All problems are reported, in file order, and none leaks a password. */
START_TEST(test_many_errors)
{
	static const int lines[] = { 3, 4, 6, 7, 8 };
	struct errors e;
	int i;

	ck_assert_ptr_null(load_fixture("many_errors.txt", &e));
	ck_assert_int_eq(e.n, 5);
	for (i = 0; i < 5; i++) {
		ck_assert_int_eq(e.line[i], lines[i]);
		ck_assert_msg(strstr(e.reason[i], "Secret") == NULL, "reason: %s", e.reason[i]);
	}
	ck_assert_ptr_nonnull(strstr(e.reason[2], "first on line 2"));
}
END_TEST

START_TEST(test_missing_file)
{
	struct errors e;
	struct authfile *af = load_fixture("does-not-exist.txt", &e);

	ck_assert_ptr_null(af);
	ck_assert_int_eq(e.n, 1);
	ck_assert_int_eq(e.line[0], 0);
	ck_assert_ptr_nonnull(strstr(e.file[0], "does-not-exist.txt"));
	/* A directory cannot be read either; a NULL callback is allowed. */
	ck_assert_ptr_null(authfile_load("/", collect, &e));
	ck_assert_int_eq(e.n, 2);
	ck_assert_ptr_null(authfile_load("/", NULL, NULL));
	ck_assert_ptr_null(authfile_load(NULL, NULL, NULL));
	authfile_free(NULL);
}
END_TEST

/* ---- generated files ---- */

/* Writes LEN bytes of DATA to a new temporary file; returns its path. */
static char *temp_file(const char *data, size_t len)
{
	const char *dir = getenv("TMPDIR");
	char *path = malloc(512);
	FILE *f;
	int fd;

	snprintf(path, 512, "%s/check_authfile.XXXXXX", dir != NULL ? dir : "/tmp");
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	f = fdopen(fd, "w");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(data, 1, len, f), len);
	ck_assert_int_eq(fclose(f), 0);
	return path;
}

START_TEST(test_empty_file)
{
	char *path = temp_file("", 0);
	struct errors e = { 0 };
	struct authfile *af = authfile_load(path, collect, &e);

	ck_assert_ptr_nonnull(af);
	ck_assert_int_eq(e.n, 0);
	ck_assert_ptr_null(authfile_lookup(af, "alice"));
	authfile_free(af);
	unlink(path);
	free(path);
}
END_TEST

START_TEST(test_nul_byte)
{
	static const char data[] = "\"bob\" \"ok\"\n\"alice\" \"Secret\0Pw\"\n; \0 in a comment\n";
	char *path = temp_file(data, sizeof data - 1);
	struct errors e = { 0 };

	ck_assert_ptr_null(authfile_load(path, collect, &e));
	ck_assert_int_eq(e.n, 1);
	ck_assert_int_eq(e.line[0], 2);
	ck_assert(strstr(e.reason[0], "Secret") == NULL);
	unlink(path);
	free(path);
}
END_TEST

/* A UTF-8 byte order mark does not hide the first entry. */
START_TEST(test_bom)
{
	static const char data[] = "\xef\xbb\xbf\"alice\" \"pw\"\r\n\"bob\" \"pw2\"\r\n";
	char *path = temp_file(data, sizeof data - 1);
	struct errors e = { 0 };
	struct authfile *af = authfile_load(path, collect, &e);

	ck_assert_ptr_nonnull(af);
	ck_assert_str_eq(authfile_lookup(af, "alice")->value, "pw");
	ck_assert_str_eq(authfile_lookup(af, "bob")->value, "pw2");
	authfile_free(af);
	unlink(path);
	free(path);
}
END_TEST

#define MANY_USERS 20000

/* Thousands of users load and are all found; a duplicate at the very end
 * is still caught with both line numbers. */
START_TEST(test_many_users)
{
	size_t cap = (size_t)MANY_USERS * 64 + 64, len = 0;
	char *data = malloc(cap), *path, user[32], value[32];
	struct errors e = { 0 };
	const struct auth_secret *s;
	struct authfile *af;
	int i;

	for (i = 0; i < MANY_USERS; i++)
		len += (size_t)snprintf(data + len, cap - len, "\"user%d\" \"pw%d\"\n", i, i * 7);
	path = temp_file(data, len);
	af = authfile_load(path, collect, &e);
	ck_assert_ptr_nonnull(af);
	for (i = 0; i < MANY_USERS; i++) {
		snprintf(user, sizeof user, "user%d", i);
		snprintf(value, sizeof value, "pw%d", i * 7);
		s = authfile_lookup(af, user);
		ck_assert_ptr_nonnull(s);
		ck_assert_str_eq(s->value, value);
	}
	ck_assert_ptr_null(authfile_lookup(af, "user20000"));
	authfile_free(af);
	unlink(path);
	free(path);

	len += (size_t)snprintf(data + len, cap - len, "\"user1234\" \"again\"\n");
	path = temp_file(data, len);
	ck_assert_ptr_null(authfile_load(path, collect, &e));
	ck_assert_int_eq(e.n, 1);
	ck_assert_int_eq(e.line[0], MANY_USERS + 1);
	ck_assert_ptr_nonnull(strstr(e.reason[0], "first on line 1235"));
	unlink(path);
	free(path);
	free(data);
}
END_TEST

static Suite *authfile_suite(void)
{
	Suite *s = suite_create("authfile");
	TCase *tc = tcase_create("authfile");
	tcase_set_timeout(tc, 60); /* 20,000 users under valgrind or a loaded CI machine */

	tcase_add_loop_test(tc, test_valid, 0, sizeof valid_entries / sizeof valid_entries[0]);
	tcase_add_loop_test(tc, test_valid_absent, 0, sizeof not_users / sizeof not_users[0]);
	tcase_add_loop_test(tc, test_bad_file, 0, sizeof bad_files / sizeof bad_files[0]);
	tcase_add_test(tc, test_many_errors);
	tcase_add_test(tc, test_missing_file);
	tcase_add_test(tc, test_empty_file);
	tcase_add_test(tc, test_nul_byte);
	tcase_add_test(tc, test_bom);
	tcase_add_test(tc, test_many_users);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(authfile_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
