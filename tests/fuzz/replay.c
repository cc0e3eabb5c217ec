/* Check driver that replays a fuzz harness's committed inputs: linked with
 * one tests/fuzz/fuzz_<name>.c (FUZZ_HARNESS is its name), it calls
 * LLVMFuzzerTestOneInput on every file of tests/fuzz/corpus/<name>/ (the
 * seeds; there must be some) and of tests/fuzz/regressions/<name>/ (inputs
 * that once crashed; may be empty), in name order. Built in every build
 * with Check (gcc, ASan, TSan), so a crash the fuzzer found becomes a unit
 * test by dropping its input into regressions/<name>/.
 *
 * The tests directory is FUZZ_DIR from the environment, else the FUZZ_DIR
 * the build defined ($(abs_top_srcdir)/tests/fuzz). A crash names the input
 * it happened on (sanitizer death callback, or a signal handler in builds
 * without a sanitizer) before the sanitizer's report or the signal ends the
 * test. */
#include "fuzz_common.h"

#include <check.h>
#include <dirent.h>
#include <signal.h>

#ifndef FUZZ_HARNESS
#error "FUZZ_HARNESS must name the harness (-DFUZZ_HARNESS=\"fuzz_x\")"
#endif
#ifndef FUZZ_DIR
#define FUZZ_DIR "tests/fuzz"
#endif

/* Provided by every sanitizer runtime; NULL in a build without one. */
void __sanitizer_set_death_callback(void (*cb)(void)) __attribute__((weak));

static const char *const kinds[] = {"corpus", "regressions"};
static char current[2048]; /* the input being run, for a crash message */

static void say_current(void)
{
	static const char pre[] = "replay: crashed on input ";

	if (!current[0])
		return;
	/* async-signal-safe */
	if (write(2, pre, sizeof(pre) - 1) < 0 || write(2, current, strlen(current)) < 0 ||
	    write(2, "\n", 1) < 0)
		return;
}

static void on_signal(int sig)
{
	say_current();
	signal(sig, SIG_DFL);
	raise(sig);
}

static const char *fuzz_dir(void)
{
	const char *d = getenv("FUZZ_DIR");

	return d && *d ? d : FUZZ_DIR;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of the files in DIR (no dot files); *N gets the count, -1
 * if DIR does not exist. Caller frees. */
static char **list_dir(const char *dir, int *n)
{
	DIR *d = opendir(dir);
	char **names = NULL;
	int cap = 0;
	struct dirent *e;

	*n = -1;
	if (!d)
		return NULL;
	*n = 0;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (*n == cap) {
			cap = cap ? 2 * cap : 64;
			names = realloc(names, (size_t)cap * sizeof(*names));
			ck_assert_ptr_nonnull(names);
		}
		names[*n] = strdup(e->d_name);
		ck_assert_ptr_nonnull(names[*n]);
		(*n)++;
	}
	closedir(d);
	if (*n > 1)
		qsort(names, (size_t)*n, sizeof(*names), name_cmp);
	return names;
}

static uint8_t *read_input(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	size_t cap = 0, n = 0;

	ck_assert_msg(f != NULL, "cannot open %s", path);
	for (;;) {
		if (n == cap) {
			cap = cap ? 2 * cap : 4096;
			buf = realloc(buf, cap);
			ck_assert_ptr_nonnull(buf);
		}
		size_t got = fread(buf + n, 1, cap - n, f);
		n += got;
		if (got == 0)
			break;
	}
	ck_assert_msg(!ferror(f), "cannot read %s", path);
	fclose(f);
	*len = n;
	return buf;
}

START_TEST(test_replay)
{
	const char *kind = kinds[_i];
	char dir[1024];
	int n;

	snprintf(dir, sizeof(dir), "%s/%s/%s", fuzz_dir(), kind, FUZZ_HARNESS);
	char **names = list_dir(dir, &n);
	if (_i == 0)
		ck_assert_msg(n > 0, "%s: no seeds (FUZZ_DIR=%s)", dir, fuzz_dir());
	for (int i = 0; i < n; i++) {
		size_t len;

		snprintf(current, sizeof(current), "%s/%s", dir, names[i]);
		uint8_t *data = read_input(current, &len);
		/* exactly sized, as libFuzzer passes it */
		uint8_t *copy = fuzz_dup(data, len);
		free(data);
		mark_point();
		ck_assert_int_eq(LLVMFuzzerTestOneInput(copy, len), 0);
		free(copy);
		free(names[i]);
	}
	current[0] = '\0';
	free(names);
}
END_TEST

int main(void)
{
	Suite *s = suite_create(FUZZ_HARNESS);
	TCase *tc = tcase_create("replay");
	int failed;

	/* a sanitizer reports (and names the input) itself; it leaves SIGILL
	 * alone, which is FUZZ_CHECK's __builtin_trap */
	if (__sanitizer_set_death_callback) {
		__sanitizer_set_death_callback(say_current);
	} else {
		signal(SIGSEGV, on_signal);
		signal(SIGBUS, on_signal);
		signal(SIGABRT, on_signal);
		signal(SIGFPE, on_signal);
	}
	signal(SIGILL, on_signal);
	/* sanitizer builds run these slowly */
	tcase_set_timeout(tc, 600);
	tcase_add_loop_test(tc, test_replay, 0, 2);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
