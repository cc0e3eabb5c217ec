/* libFuzzer harness: the auth_file (PgBouncer userlist format), as main.c
 * loads it and pool.c looks users up. The input is the file: written to
 * userlist.txt in a directory of this process's own (fuzz_scratch_dir),
 * rewritten for every input, then authfile_load, authfile_lookup of a few
 * fixed names and of the first quoted word of the first lines (so that
 * lookups also hit), authfile_free.
 *
 * Checked: NULL exactly when a problem was reported; every reason is
 * printable ASCII (user names are printed through printable_user, so no raw
 * byte of the file, and in particular no password byte outside that range,
 * reaches a log line); an entry found is the one asked for, and its kind
 * matches its value (md5 + 32 lower-case hex, or a parsed verifier). */
#include "fuzz_common.h"

#include "core/authfile.h"
#include "pg/md5.h"

#define MAX_NAMES 8

static char path[600];

static void cleanup(void)
{
	const char *dir = fuzz_scratch_dir();

	if (path[0])
		unlink(path);
	if (dir)
		rmdir(dir);
}

static void count_problem(void *arg, const char *file, int line, const char *reason)
{
	int *n = arg;

	FUZZ_CHECK(file && reason && reason[0] && line >= 0);
	for (const char *p = reason; *p; p++)
		FUZZ_CHECK((unsigned char)*p >= 0x20 && (unsigned char)*p <= 0x7e);
	(*n)++;
}

static void lookup(const struct authfile *af, const char *user)
{
	const struct auth_secret *s = authfile_lookup(af, user);

	if (!s)
		return;
	FUZZ_CHECK(s->user && strcmp(s->user, user) == 0 && s->value);
	switch (s->kind) {
	case SECRET_MD5:
		FUZZ_CHECK(md5_is_hash(s->value));
		break;
	case SECRET_SCRAM:
		FUZZ_CHECK(s->scram.salt_len >= 1 && s->scram.salt_len <= SCRAM_MAX_SALT_LEN);
		FUZZ_CHECK(s->scram.iterations >= 1);
		break;
	case SECRET_PLAIN:
		FUZZ_CHECK(strncmp(s->value, "md5", 3) != 0 &&
		           strncmp(s->value, "SCRAM-SHA-256$", 14) != 0);
		break;
	default:
		FUZZ_CHECK(0);
	}
}

/* The first quoted word ("" not undone) of up to MAX_NAMES lines. */
static int input_names(const uint8_t *data, size_t size, char **names)
{
	int n = 0;
	size_t i = 0;

	while (i < size && n < MAX_NAMES) {
		size_t eol = i;

		while (eol < size && data[eol] != '\n')
			eol++;
		size_t q = i;
		while (q < eol && (data[q] == ' ' || data[q] == '\t'))
			q++;
		if (q < eol && data[q] == '"') {
			size_t e = q + 1;
			while (e < eol && data[e] != '"' && data[e] != '\0')
				e++;
			names[n] = malloc(e - q);
			FUZZ_CHECK(names[n] != NULL);
			memcpy(names[n], data + q + 1, e - q - 1);
			names[n][e - q - 1] = '\0';
			n++;
		}
		i = eol + 1;
	}
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const fixed[] = {"postgres", "app", "", "user\"", "a"};
	char *names[MAX_NAMES];
	char longname[300];

	if (!path[0]) {
		const char *dir = fuzz_scratch_dir();

		FUZZ_CHECK(dir != NULL);
		snprintf(path, sizeof(path), "%s/userlist.txt", dir);
		atexit(cleanup);
	}
	FUZZ_CHECK(fuzz_write_file(path, data, size) == 0);

	int problems = 0;
	struct authfile *af = authfile_load(path, count_problem, &problems);
	FUZZ_CHECK((af == NULL) == (problems > 0));
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		lookup(af, fixed[i]);
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	lookup(af, longname);
	int n = input_names(data, size, names);
	for (int i = 0; i < n; i++) {
		lookup(af, names[i]);
		free(names[i]);
	}
	authfile_free(af);
	return 0;
}
