/* auth_file loading: PgBouncer's userlist format into a hash table keyed by
 * user name. The file is read with read(2) into one buffer (no stdio copies
 * of the passwords) that is wiped afterwards; every entry's password is wiped
 * again when the table is freed. Error reasons name the file, the line and
 * at most the user, never the password. */
#include "core/authfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "pg/md5.h"

/* Refuse files past this size: an auth file of thousands of users is a few
 * hundred KiB; anything this big is a mistake (or /dev/zero). */
#define AUTHFILE_MAX_BYTES (64u * 1024 * 1024)
/* Longest user name printed in an error reason. */
#define AUTHFILE_REASON_USER_MAX 64

/* One entry and where it came from. */
struct authfile_entry {
	struct auth_secret secret; /* handed out by authfile_lookup */
	int line;                  /* line it was defined on, for duplicate messages */
};

struct authfile {
	struct authfile_entry **slots; /* owned: open-addressing table; NULL = empty slot */
	size_t nslots;                 /* a power of two, at least twice count */
	size_t count;                  /* entries in the table */
};

/* What a load needs to report problems. */
struct load_ctx {
	const char *path;     /* borrowed: the file, for messages */
	int line;             /* current line, 1-based */
	int errors;           /* problems reported so far */
	config_error_fn err;  /* borrowed: may be NULL */
	void *arg;            /* borrowed: passed to err */
};

static void report(struct load_ctx *ctx, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void report(struct load_ctx *ctx, int line, const char *fmt, ...)
{
	char reason[256];
	va_list ap;

	ctx->errors++;
	if (ctx->err == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(reason, sizeof reason, fmt, ap);
	va_end(ap);
	ctx->err(ctx->arg, ctx->path, line, reason);
}

/* A user name made safe to print: printable ASCII, cut at a length. */
static const char *printable_user(const char *user, char buf[AUTHFILE_REASON_USER_MAX + 4])
{
	size_t i;

	for (i = 0; user[i] != '\0' && i < AUTHFILE_REASON_USER_MAX; i++) {
		unsigned char c = (unsigned char)user[i];

		buf[i] = (c < 0x20 || c > 0x7e || c == '"' || c == '\\') ? '?' : (char)c;
	}
	if (user[i] != '\0') {
		memcpy(buf + i, "...", 3);
		i += 3;
	}
	buf[i] = '\0';
	return buf;
}

/* FNV-1a, 64-bit. */
static uint64_t hash_user(const char *user)
{
	uint64_t h = 14695981039346656037ULL;

	for (; *user != '\0'; user++) {
		h ^= (unsigned char)*user;
		h *= 1099511628211ULL;
	}
	return h;
}

/* The slot holding USER, or the empty slot where it would go. */
static struct authfile_entry **find_slot(struct authfile_entry **slots, size_t nslots,
					 const char *user)
{
	size_t i = (size_t)hash_user(user) & (nslots - 1);

	while (slots[i] != NULL && strcmp(slots[i]->secret.user, user) != 0)
		i = (i + 1) & (nslots - 1);
	return &slots[i];
}

static int grow(struct authfile *af)
{
	struct authfile_entry **slots;
	size_t nslots, i;

	if (af->nslots > SIZE_MAX / 2 / sizeof *slots)
		return -1;
	nslots = af->nslots != 0 ? af->nslots * 2 : 64;
	slots = calloc(nslots, sizeof *slots);
	if (slots == NULL)
		return -1;
	for (i = 0; i < af->nslots; i++)
		if (af->slots[i] != NULL)
			*find_slot(slots, nslots, af->slots[i]->secret.user) = af->slots[i];
	free(af->slots);
	af->slots = slots;
	af->nslots = nslots;
	return 0;
}

static void entry_free(struct authfile_entry *e)
{
	if (e == NULL)
		return;
	if (e->secret.user != NULL) {
		OPENSSL_cleanse(e->secret.user, strlen(e->secret.user));
		free(e->secret.user);
	}
	if (e->secret.value != NULL) {
		OPENSSL_cleanse(e->secret.value, strlen(e->secret.value));
		free(e->secret.value);
	}
	OPENSSL_cleanse(e, sizeof *e);
	free(e);
}

/* Reads a quoted field starting at *PP (on the opening quote): "" inside is
 * a literal quote. On success *OUT is malloc'ed and *PP is past the closing
 * quote. Returns 0, -1 if unterminated, -2 out of memory. */
static int read_quoted(const char **pp, const char *end, char **out)
{
	const char *p = *pp + 1;
	size_t n = 0;
	char *buf;

	buf = malloc((size_t)(end - p) + 1);
	if (buf == NULL)
		return -2;
	while (p < end) {
		if (*p == '"') {
			if (p + 1 < end && p[1] == '"') {
				buf[n++] = '"';
				p += 2;
				continue;
			}
			buf[n] = '\0';
			*pp = p + 1;
			*out = buf;
			return 0;
		}
		buf[n++] = *p++;
	}
	OPENSSL_cleanse(buf, n);
	free(buf);
	return -1;
}

/* Sets E's kind from its value; a value that looks like a hash must be one. */
static int classify(struct authfile_entry *e, struct load_ctx *ctx)
{
	char ubuf[AUTHFILE_REASON_USER_MAX + 4];
	const char *v = e->secret.value;

	if (strncmp(v, "md5", 3) == 0) {
		if (!md5_is_hash(v)) {
			report(ctx, ctx->line,
			       "user \"%s\": password starting with md5 is not md5 followed by 32 "
			       "lower-case hex digits",
			       printable_user(e->secret.user, ubuf));
			return -1;
		}
		e->secret.kind = SECRET_MD5;
	} else if (strncmp(v, "SCRAM-SHA-256$", 14) == 0) {
		if (scram_secret_parse(v, &e->secret.scram) < 0) {
			report(ctx, ctx->line, "user \"%s\": invalid SCRAM-SHA-256 verifier",
			       printable_user(e->secret.user, ubuf));
			return -1;
		}
		e->secret.kind = SECRET_SCRAM;
	} else {
		e->secret.kind = SECRET_PLAIN;
	}
	return 0;
}

/* Adds E (taking ownership) unless it is invalid or a duplicate. */
static void add_entry(struct authfile *af, struct authfile_entry *e, struct load_ctx *ctx)
{
	char ubuf[AUTHFILE_REASON_USER_MAX + 4];
	struct authfile_entry **slot;

	if (classify(e, ctx) < 0) {
		entry_free(e);
		return;
	}
	if ((af->count + 1) * 2 > af->nslots && grow(af) < 0) {
		report(ctx, ctx->line, "out of memory");
		entry_free(e);
		return;
	}
	slot = find_slot(af->slots, af->nslots, e->secret.user);
	if (*slot != NULL) {
		report(ctx, ctx->line, "duplicate user \"%s\" (first on line %d)",
		       printable_user(e->secret.user, ubuf), (*slot)->line);
		entry_free(e);
		return;
	}
	*slot = e;
	af->count++;
}

static void skip_blanks(const char **pp, const char *end)
{
	while (*pp < end && (**pp == ' ' || **pp == '\t'))
		(*pp)++;
}

/* One line, P..END without the newline. Lines not starting with a quote
 * (after blanks) are comments; after the password the rest is ignored, as
 * PgBouncer does. */
static void parse_line(struct authfile *af, const char *p, const char *end, struct load_ctx *ctx)
{
	struct authfile_entry *e;
	int rc;

	skip_blanks(&p, end);
	if (p == end || *p != '"')
		return;
	if (memchr(p, '\0', (size_t)(end - p)) != NULL) {
		report(ctx, ctx->line, "NUL byte in line");
		return;
	}
	e = calloc(1, sizeof *e);
	if (e == NULL) {
		report(ctx, ctx->line, "out of memory");
		return;
	}
	e->line = ctx->line;
	rc = read_quoted(&p, end, &e->secret.user);
	if (rc == 0 && e->secret.user[0] == '\0') {
		report(ctx, ctx->line, "empty user name");
		goto fail;
	}
	if (rc == 0) {
		skip_blanks(&p, end);
		if (p == end || *p != '"') {
			report(ctx, ctx->line, "missing password field");
			goto fail;
		}
		rc = read_quoted(&p, end, &e->secret.value);
	}
	if (rc != 0) {
		report(ctx, ctx->line, rc == -2 ? "out of memory" : "unterminated quote");
		goto fail;
	}
	add_entry(af, e, ctx);
	return;
fail:
	entry_free(e);
}

/* Reads all of FD into a malloc'ed buffer; growing copies are wiped. */
static int read_all(int fd, char **out, size_t *out_len)
{
	size_t len = 0, cap = 0;
	char *buf = NULL;

	for (;;) {
		ssize_t n;

		if (len == cap) {
			size_t ncap = cap != 0 ? cap * 2 : 65536;
			char *nbuf;

			if (cap >= AUTHFILE_MAX_BYTES || (nbuf = malloc(ncap)) == NULL) {
				errno = cap >= AUTHFILE_MAX_BYTES ? EFBIG : ENOMEM;
				goto fail;
			}
			if (buf != NULL)
				memcpy(nbuf, buf, len);
			if (buf != NULL)
				OPENSSL_cleanse(buf, cap);
			free(buf);
			buf = nbuf;
			cap = ncap;
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto fail;
		if (n == 0)
			break;
		len += (size_t)n;
	}
	*out = buf;
	*out_len = len;
	return 0;
fail:
	if (buf != NULL)
		OPENSSL_cleanse(buf, cap);
	free(buf);
	return -1;
}

static int read_file(const char *path, char **buf, size_t *len, struct load_ctx *ctx)
{
	int fd, rc, saved;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		report(ctx, 0, "cannot open auth file: %s", strerror(errno));
		return -1;
	}
	rc = read_all(fd, buf, len);
	saved = errno;
	close(fd);
	if (rc < 0)
		report(ctx, 0, "cannot read auth file: %s", strerror(saved));
	return rc;
}

struct authfile *authfile_load(const char *path, config_error_fn err, void *arg)
{
	struct load_ctx ctx = { .path = path, .line = 0, .errors = 0, .err = err, .arg = arg };
	const char *p, *end, *nl;
	struct authfile *af;
	size_t len = 0;
	char *buf = NULL;

	if (path == NULL)
		return NULL;
	af = calloc(1, sizeof *af);
	if (af == NULL) {
		report(&ctx, 0, "out of memory");
		return NULL;
	}
	if (read_file(path, &buf, &len, &ctx) < 0) {
		authfile_free(af);
		return NULL;
	}
	p = buf;
	end = buf + len;
	/* A UTF-8 byte order mark (Windows editors) would otherwise turn the
	 * first entry into a comment without a word. */
	if (len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0)
		p += 3;
	for (; p < end; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			nl = end;
		ctx.line++;
		parse_line(af, p, nl, &ctx);
	}
	if (buf != NULL)
		OPENSSL_cleanse(buf, len);
	free(buf);
	if (ctx.errors > 0) {
		authfile_free(af);
		return NULL;
	}
	return af;
}

const struct auth_secret *authfile_lookup(const struct authfile *af, const char *user)
{
	struct authfile_entry *e;

	if (af == NULL || user == NULL || af->nslots == 0)
		return NULL;
	e = *find_slot(af->slots, af->nslots, user);
	return e != NULL ? &e->secret : NULL;
}

void authfile_free(struct authfile *af)
{
	size_t i;

	if (af == NULL)
		return;
	for (i = 0; i < af->nslots; i++)
		entry_free(af->slots[i]);
	free(af->slots);
	free(af);
}
