/* Helpers shared by the libFuzzer harnesses in tests/fuzz. Header-only so
 * that every harness stays one .c file that links with libFuzzer (make fuzz)
 * or with the Check replay driver (tests/fuzz/replay.c, make check), under
 * clang or gcc alike.
 *
 * FUZZ_CHECK(cond): a broken invariant is a crash (__builtin_trap), so the
 * fuzzer keeps the input and the replay suite fails on it. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FUZZ_CHECK(cond)                                                                           \
	do {                                                                                       \
		if (!(cond))                                                                       \
			__builtin_trap();                                                          \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A heap copy of exactly N bytes (at least one byte allocated), so that
 * AddressSanitizer sees a read one past the end; libFuzzer's own buffer is
 * exactly sized too, but the slices the harnesses cut from it are not. */
static inline uint8_t *fuzz_dup(const uint8_t *p, size_t n)
{
	uint8_t *d = malloc(n ? n : 1);

	if (!d)
		abort();
	if (n)
		memcpy(d, p, n);
	return d;
}

/* A directory of this process's own for files the harness writes (config
 * and auth_file inputs): $TMPDIR, else /dev/shm, else /tmp, plus
 * pgmux-fuzz-<pid>. Created on first use; the caller removes what it wrote
 * at exit. Returns a static path, or NULL. */
static inline const char *fuzz_scratch_dir(void)
{
	static char dir[512];
	const char *base;

	if (dir[0])
		return dir;
	base = getenv("TMPDIR");
	if (!base || !*base || access(base, W_OK) != 0)
		base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(dir, sizeof(dir), "%s/pgmux-fuzz-%ld", base, (long)getpid());
	if (mkdir(dir, 0700) != 0 && access(dir, W_OK) != 0) {
		dir[0] = '\0';
		return NULL;
	}
	return dir;
}

/* Write N bytes of P to PATH (truncating it). Returns 0 / -1. */
static inline int fuzz_write_file(const char *path, const uint8_t *p, size_t n)
{
	FILE *f = fopen(path, "wb");
	int rc = 0;

	if (!f)
		return -1;
	if (n && fwrite(p, 1, n, f) != n)
		rc = -1;
	if (fclose(f) != 0)
		rc = -1;
	return rc;
}
