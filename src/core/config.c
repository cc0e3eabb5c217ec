/* pgmux configuration loader: reads the INI file through inih into an
 * immutable, refcounted struct config. One option table per section kind
 * (global_opts for [pgmux], db_opts for [database.NAME]) drives parsing,
 * defaults, range checks and the names used in messages; every problem is
 * reported with file:line, not just the first one.
 *
 * inih is fed through our own line reader (read_line). The reader counts
 * lines (Debian's inih is built without INI_HANDLER_LINENO), strips leading
 * whitespace (so an indented key is never taken for a multi-line
 * continuation), strips inline comments (' ;' and ' #', whatever inih was
 * built with), and handles section headers and malformed lines itself:
 * inih does not call the handler for empty sections, truncates section
 * names at 49 bytes and reports only the first syntax error. inih then
 * splits the remaining "key = value" lines and calls on_key(). */
#include "core/config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "core/log.h"

#define DB_PREFIX "database."
#define DB_NAME_MAX 63        /* bytes in a [database.NAME] name */
#define WORKERS_MAX 256       /* event-loop threads */
#define POOL_SIZE_MAX 10000   /* server connections per pool */
#define PREPARED_MAX 100000   /* named prepared statements kept per server connection */
#define TIMEOUT_MAX 2147483   /* seconds: the value in ms still fits an int */
#define ECHO_MAX 64           /* bytes of a name or value quoted in a message */
#define ECHO_PATH_MAX 512     /* bytes of a path quoted in a message */

/* The stored enum value is the index of its name in these lists. */
static const char *const pool_mode_names[] = { "transaction", "session", NULL };
static const char *const auth_type_names[] = { "scram-sha-256", "md5", "trust", "cert", NULL };
static const char *const log_level_names[] = { "error", "warn", "info", "debug", NULL };
static const char *const session_pinning_names[] = { "allow", "deny", NULL };
static const char *const tls_sslmode_names[] = { "disable", "allow", "prefer", "require",
						 "verify-ca", "verify-full", NULL };

_Static_assert(POOL_MODE_TRANSACTION == 0 && POOL_MODE_SESSION == 1, "pool_mode_names");
_Static_assert(AUTH_SCRAM_SHA_256 == 0 && AUTH_MD5 == 1 && AUTH_TRUST == 2 && AUTH_CERT == 3,
	       "auth_type_names");
_Static_assert(LOG_ERROR == 0 && LOG_WARN == 1 && LOG_INFO == 2 && LOG_DEBUG == 3,
	       "log_level_names");
_Static_assert(PINNING_ALLOW == 0 && PINNING_DENY == 1, "session_pinning_names");
_Static_assert(TLS_DISABLE == 0 && TLS_ALLOW == 1 && TLS_PREFER == 2 && TLS_REQUIRE == 3 &&
		       TLS_VERIFY_CA == 4 && TLS_VERIFY_FULL == 5,
	       "tls_sslmode_names");
_Static_assert(sizeof(enum pool_mode) == sizeof(int) && sizeof(enum auth_type) == sizeof(int) &&
		       sizeof(enum session_pinning) == sizeof(int) &&
		       sizeof(enum tls_sslmode) == sizeof(int),
	       "enum options are stored through an int pointer");

enum opt_type {
	OPT_INT,    /* decimal integer within [min, max] */
	OPT_STRING, /* non-empty string */
	OPT_ENUM,   /* one of choices, case-insensitive; stored as its index */
	OPT_PATH,   /* file path; a relative one is resolved against the config's directory */
};

/* Where an option's value comes from when its key is absent. */
enum opt_default {
	DEFAULT_VALUE,   /* def_int or def_str */
	DEFAULT_NONE,    /* stays NULL (auth_file) */
	DEFAULT_GLOBAL,  /* [database.*] only: the int or enum field of struct config at
			  * def_global, of the same type as the option */
	DEFAULT_DB_NAME, /* [database.*] only: the section's NAME */
	DEFAULT_ALIAS,   /* another name for the option of the same offset, which has the
			  * default; setting both is an error */
};

struct opt {
	const char *name;           /* key in the file, struct field and documented name */
	enum opt_type type;         /* how the value is parsed */
	size_t offset;              /* offsetof into struct config or struct config_db */
	int min;                    /* OPT_INT: smallest accepted value */
	int max;                    /* OPT_INT: largest accepted value */
	enum opt_default def;       /* where the default comes from */
	int def_int;                /* OPT_INT/OPT_ENUM default for DEFAULT_VALUE */
	const char *def_str;        /* OPT_STRING default for DEFAULT_VALUE */
	size_t def_global;          /* DEFAULT_GLOBAL: offsetof into struct config */
	const char *const *choices; /* OPT_ENUM: NULL-terminated accepted values */
};

/* #F makes the key and the struct field the same word by construction. */
#define G_INT(f, lo, hi, d)                                                          \
	{ .name = #f, .type = OPT_INT, .offset = offsetof(struct config, f), .min = lo, \
	  .max = hi, .def = DEFAULT_VALUE, .def_int = d }
#define G_ENUM(f, names, d)                                                        \
	{ .name = #f, .type = OPT_ENUM, .offset = offsetof(struct config, f),         \
	  .def = DEFAULT_VALUE, .def_int = d, .choices = names }
#define G_STR(f, d)                                                                \
	{ .name = #f, .type = OPT_STRING, .offset = offsetof(struct config, f),       \
	  .def = DEFAULT_VALUE, .def_str = d }
#define G_PATH(f) \
	{ .name = #f, .type = OPT_PATH, .offset = offsetof(struct config, f), .def = DEFAULT_NONE }
#define D_INT(f, lo, hi, d)                                                             \
	{ .name = #f, .type = OPT_INT, .offset = offsetof(struct config_db, f), .min = lo, \
	  .max = hi, .def = DEFAULT_VALUE, .def_int = d }
#define D_STR(f, d)                                                                \
	{ .name = #f, .type = OPT_STRING, .offset = offsetof(struct config_db, f),    \
	  .def = DEFAULT_VALUE, .def_str = d }
#define D_NAME(f)                                                                  \
	{ .name = #f, .type = OPT_STRING, .offset = offsetof(struct config_db, f),    \
	  .def = DEFAULT_DB_NAME }
#define D_INHERIT(f, lo, hi, g)                                                         \
	{ .name = #f, .type = OPT_INT, .offset = offsetof(struct config_db, f), .min = lo, \
	  .max = hi, .def = DEFAULT_GLOBAL, .def_global = offsetof(struct config, g) }
/* The [pgmux] key of the same name, which must be a G_ENUM of the same names,
 * is the default. */
#define D_ENUM_INHERIT(f, names)                                                   \
	{ .name = #f, .type = OPT_ENUM, .offset = offsetof(struct config_db, f),      \
	  .def = DEFAULT_GLOBAL, .def_global = offsetof(struct config, f), .choices = names }

/* [pgmux] */
static const struct opt global_opts[] = {
	G_STR(listen_addr, "127.0.0.1"),
	G_INT(listen_port, 1, 65535, 6432),
	G_INT(workers, 0, WORKERS_MAX, 0),
	G_ENUM(pool_mode, pool_mode_names, POOL_MODE_TRANSACTION),
	G_ENUM(session_pinning, session_pinning_names, PINNING_ALLOW),
	G_ENUM(auth_type, auth_type_names, AUTH_SCRAM_SHA_256),
	G_PATH(auth_file),
	G_INT(max_client_conn, 1, 1000000, 10000),
	G_INT(default_pool_size, 1, POOL_SIZE_MAX, 20),
	G_INT(min_pool_size, 0, POOL_SIZE_MAX, 0),
	G_INT(connection_borrow_timeout, 0, TIMEOUT_MAX, 120),
	/* PgBouncer's name for the same setting: either key, not both */
	{ .name = "query_wait_timeout", .type = OPT_INT,
	  .offset = offsetof(struct config, connection_borrow_timeout), .min = 0, .max = TIMEOUT_MAX,
	  .def = DEFAULT_ALIAS },
	G_INT(query_timeout, 0, TIMEOUT_MAX, 0),
	G_INT(max_prepared_statements, 1, PREPARED_MAX, 200),
	G_INT(idle_client_timeout, 0, TIMEOUT_MAX, 1800),
	G_INT(server_idle_timeout, 0, TIMEOUT_MAX, 600),
	G_INT(server_lifetime, 0, TIMEOUT_MAX, 3600),
	G_INT(server_connect_timeout, 1, TIMEOUT_MAX, 5),
	G_INT(client_login_timeout, 1, TIMEOUT_MAX, 15),
	G_INT(tcp_keepalive, 0, 1, 1),
	G_INT(tcp_keepidle, 0, 32767, 0),
	G_INT(tcp_keepintvl, 0, 32767, 0),
	G_INT(tcp_keepcnt, 0, 127, 0),
	G_INT(tcp_user_timeout, 0, TIMEOUT_MAX, 0),
	G_INT(shutdown_timeout, 0, TIMEOUT_MAX, 30),
	G_ENUM(log_level, log_level_names, LOG_INFO),
	G_ENUM(client_tls_sslmode, tls_sslmode_names, TLS_DISABLE),
	G_PATH(client_tls_cert_file),
	G_PATH(client_tls_key_file),
	G_PATH(client_tls_ca_file),
	G_STR(client_tls_protocols, "secure"),
	G_STR(client_tls_ciphers, "default"),
	G_ENUM(server_tls_sslmode, tls_sslmode_names, TLS_PREFER),
	G_PATH(server_tls_ca_file),
	G_PATH(server_tls_cert_file),
	G_PATH(server_tls_key_file),
	G_STR(server_tls_protocols, "secure"),
	G_STR(server_tls_ciphers, "default"),
};

/* [database.NAME] */
static const struct opt db_opts[] = {
	D_STR(host, "127.0.0.1"),
	D_INT(port, 1, 65535, 5432),
	D_NAME(dbname),
	D_INHERIT(pool_size, 1, POOL_SIZE_MAX, default_pool_size),
	D_INHERIT(min_pool_size, 0, POOL_SIZE_MAX, min_pool_size),
	D_ENUM_INHERIT(session_pinning, session_pinning_names),
};

#define N_GLOBAL_OPTS (sizeof(global_opts) / sizeof(global_opts[0]))
#define N_DB_OPTS (sizeof(db_opts) / sizeof(db_opts[0]))

/* What the file said about one key of one section. */
struct seen {
	int line; /* line the key was first set on; 0 if absent */
	bool bad; /* its value was rejected, so the field holds its default */
};

/* Per-[database.NAME] bookkeeping, parallel to cfg->dbs. */
struct db_seen {
	struct seen keys[N_DB_OPTS]; /* indexed like db_opts */
};

enum sect {
	SECT_NONE,   /* before any section header */
	SECT_GLOBAL, /* [pgmux] */
	SECT_DB,     /* [database.NAME] */
	SECT_SKIP,   /* a rejected header: its keys are ignored */
};

/* A problem held back until the whole file has been checked. */
struct problem {
	int line;     /* line it is about; 0 for the whole file */
	int seq;      /* order of discovery, to keep the sort stable */
	char *reason; /* owned: the message */
};

/* State of one config_load() call. */
struct parser {
	const char *file;            /* borrowed: path as the caller gave it, for messages */
	FILE *fp;                    /* owned: the open config file */
	char *buf;                   /* owned: getline() buffer */
	size_t bufcap;               /* allocated size of buf */
	int lineno;                  /* number of the line last read */
	int read_errno;              /* errno of a failed read; 0 if none */
	config_error_fn err;         /* borrowed: problem sink; may be NULL */
	void *arg;                   /* borrowed: err's argument */
	int nerrors;                 /* problems reported so far */
	struct config *cfg;          /* owned until returned: the snapshot being built */
	enum sect sect;              /* kind of the current section */
	int db;                      /* SECT_DB: index of the current entry in cfg->dbs */
	int dbcap;                   /* allocated entries of cfg->dbs and db_seen */
	int global_line;             /* line of the first [pgmux] header; 0 if none */
	struct seen global_seen[N_GLOBAL_OPTS]; /* indexed like global_opts */
	struct db_seen *db_seen;     /* owned: parallel to cfg->dbs */
	struct problem *problems;    /* owned: problems not yet passed to err */
	int nproblems;               /* entries used in problems */
	int problemcap;              /* entries allocated in problems */
};

static void report(struct parser *p, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void report(struct parser *p, int line, const char *fmt, ...)
{
	char reason[1024];
	struct problem *pr;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	p->nerrors++;
	if (!p->err)
		return;
	/* Held back so that they come out in line order; on a shortage of
	 * memory, said at once instead. */
	if (p->nproblems == p->problemcap) {
		int cap = p->problemcap ? 2 * p->problemcap : 16;
		struct problem *list = realloc(p->problems, (size_t)cap * sizeof(*list));

		if (list) {
			p->problems = list;
			p->problemcap = cap;
		}
	}
	if (p->nproblems == p->problemcap) {
		p->err(p->arg, p->file, line, reason);
		return;
	}
	pr = &p->problems[p->nproblems];
	pr->reason = strdup(reason);
	if (!pr->reason) {
		p->err(p->arg, p->file, line, reason);
		return;
	}
	pr->line = line;
	pr->seq = p->nproblems++;
}

static int problem_cmp(const void *a, const void *b)
{
	const struct problem *x = a, *y = b;

	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Hand the held-back problems to the callback, by line, and free them. */
static void flush_problems(struct parser *p)
{
	if (p->nproblems)
		qsort(p->problems, (size_t)p->nproblems, sizeof(*p->problems), problem_cmp);
	for (int i = 0; i < p->nproblems; i++) {
		p->err(p->arg, p->file, p->problems[i].line, p->problems[i].reason);
		free(p->problems[i].reason);
	}
	free(p->problems);
}

/* Copy S into BUF for a message: at most MAX bytes, control bytes as '?',
 * "..." when cut. Returns BUF. */
static const char *echo(char *buf, size_t size, size_t max, const char *s)
{
	size_t i;

	for (i = 0; i < max && i + 4 < size && s[i]; i++)
		buf[i] = iscntrl((unsigned char)s[i]) ? '?' : s[i];
	if (s[i]) {
		memcpy(buf + i, "...", 3);
		i += 3;
	}
	buf[i] = '\0';
	return buf;
}

static char *xstrdup(struct parser *p, const char *s)
{
	char *d = strdup(s);

	if (!d)
		report(p, p->lineno, "out of memory");
	return d;
}

static const struct opt *find_opt(const struct opt *opts, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(opts[i].name, name) == 0)
			return &opts[i];
	return NULL;
}

static struct seen *global_seen(struct parser *p, const char *name)
{
	const struct opt *o = find_opt(global_opts, N_GLOBAL_OPTS, name);

	return &p->global_seen[o - global_opts];
}

static int *int_field(void *base, const struct opt *o)
{
	return (int *)((char *)base + o->offset);
}

static char **str_field(void *base, const struct opt *o)
{
	return (char **)((char *)base + o->offset);
}

/* ---- values ---- */

static int parse_int_opt(struct parser *p, const struct opt *o, void *base, const char *value)
{
	char e[ECHO_MAX + 4];
	const char *s = value;
	long long v;

	if (*s == '+' || *s == '-')
		s++;
	if (!*s || strspn(s, "0123456789") != strlen(s)) {
		report(p, p->lineno, "%s: '%s' is not an integer", o->name,
		       echo(e, sizeof(e), ECHO_MAX, value));
		return -1;
	}
	errno = 0;
	v = strtoll(value, NULL, 10);
	if (errno == ERANGE || v < o->min || v > o->max) {
		report(p, p->lineno, "%s: %s is out of range (%d..%d)", o->name,
		       echo(e, sizeof(e), ECHO_MAX, value), o->min, o->max);
		return -1;
	}
	*int_field(base, o) = (int)v;
	return 0;
}

static int parse_enum_opt(struct parser *p, const struct opt *o, void *base, const char *value)
{
	char e[ECHO_MAX + 4], accepted[256] = "";
	size_t len = 0;
	int i;

	for (i = 0; o->choices[i]; i++) {
		if (strcasecmp(o->choices[i], value) == 0) {
			*int_field(base, o) = i;
			return 0;
		}
	}
	for (i = 0; o->choices[i] && len < sizeof(accepted); i++)
		len += (size_t)snprintf(accepted + len, sizeof(accepted) - len, "%s%s",
					i ? ", " : "", o->choices[i]);
	report(p, p->lineno, "%s: invalid value '%s' (accepted: %s)", o->name,
	       echo(e, sizeof(e), ECHO_MAX, value), accepted);
	return -1;
}

static int parse_str_opt(struct parser *p, const struct opt *o, void *base, const char *value)
{
	char **field = str_field(base, o);
	char *copy = xstrdup(p, value);

	if (!copy)
		return -1;
	free(*field);
	*field = copy;
	return 0;
}

static int parse_value(struct parser *p, const struct opt *o, void *base, const char *value)
{
	switch (o->type) {
	case OPT_INT:
		return parse_int_opt(p, o, base, value);
	case OPT_ENUM:
		return parse_enum_opt(p, o, base, value);
	case OPT_STRING:
	case OPT_PATH:
		return parse_str_opt(p, o, base, value);
	}
	return -1;
}

/* One "name = value" line of a known section: LABEL is "pgmux" or
 * "database.NAME", for messages. */
static void set_key(struct parser *p, const struct opt *opts, size_t nopts, struct seen *seen,
		    void *base, const char *label, const char *name, const char *value)
{
	char e[ECHO_MAX + 4];
	const struct opt *o = find_opt(opts, nopts, name);
	struct seen *s;

	if (!o) {
		report(p, p->lineno, "unknown key '%s' in [%s]", echo(e, sizeof(e), ECHO_MAX, name),
		       label);
		return;
	}
	s = &seen[o - opts];
	if (s->line) {
		report(p, p->lineno, "duplicate key '%s' in [%s] (first set at line %d)", name, label,
		       s->line);
		return;
	}
	for (size_t i = 0; i < nopts; i++) {
		/* two names of one setting (query_wait_timeout, connection_borrow_timeout) */
		if (&opts[i] != o && opts[i].offset == o->offset && seen[i].line) {
			report(p, p->lineno,
			       "'%s' and '%s' are the same setting: set only one (first set at "
			       "line %d)",
			       name, opts[i].name, seen[i].line);
			return;
		}
	}
	s->line = p->lineno;
	if (!*value) {
		report(p, p->lineno, "%s: missing value", name);
		s->bad = true;
		return;
	}
	if (parse_value(p, o, base, value) < 0)
		s->bad = true;
}

/* inih handler. SECTION is ignored: read_line tracks sections itself. */
static int on_key(void *user, const char *section, const char *name, const char *value)
{
	struct parser *p = user;
	char e[ECHO_MAX + 4], label[sizeof(DB_PREFIX) + DB_NAME_MAX];
	struct config_db *db;

	(void)section;
	if (!*name) {
		report(p, p->lineno, "syntax error: missing key name before '='");
		return 1;
	}
	switch (p->sect) {
	case SECT_NONE:
		report(p, p->lineno, "key '%s' outside of any section",
		       echo(e, sizeof(e), ECHO_MAX, name));
		break;
	case SECT_GLOBAL:
		set_key(p, global_opts, N_GLOBAL_OPTS, p->global_seen, p->cfg, "pgmux", name,
			value);
		break;
	case SECT_DB:
		db = &p->cfg->dbs[p->db];
		snprintf(label, sizeof(label), DB_PREFIX "%s", db->name);
		set_key(p, db_opts, N_DB_OPTS, p->db_seen[p->db].keys, db, label, name, value);
		break;
	case SECT_SKIP:
		break;
	}
	return 1; /* problems are reported here, not through inih's return value */
}

/* ---- sections ---- */

/* Append an empty entry for [database.NAME] at the current line. */
static int add_db(struct parser *p, const char *name)
{
	struct config *cfg = p->cfg;
	struct config_db *db;

	if (cfg->ndbs == p->dbcap) {
		int cap = p->dbcap ? 2 * p->dbcap : 4;
		struct config_db *dbs = realloc(cfg->dbs, (size_t)cap * sizeof(*dbs));
		struct db_seen *seen;

		if (!dbs)
			goto oom;
		cfg->dbs = dbs;
		seen = realloc(p->db_seen, (size_t)cap * sizeof(*seen));
		if (!seen)
			goto oom;
		p->db_seen = seen;
		p->dbcap = cap;
	}
	db = &cfg->dbs[cfg->ndbs];
	memset(db, 0, sizeof(*db));
	memset(&p->db_seen[cfg->ndbs], 0, sizeof(p->db_seen[0]));
	db->line = p->lineno;
	db->name = xstrdup(p, name);
	if (!db->name)
		return -1;
	p->db = cfg->ndbs++;
	return 0;
oom:
	report(p, p->lineno, "out of memory");
	return -1;
}

static void open_db_section(struct parser *p, const char *name)
{
	char e[ECHO_MAX + 4];
	size_t len = strlen(name);

	p->sect = SECT_SKIP;
	if (len == 0 || len > DB_NAME_MAX) {
		report(p, p->lineno, "database name '%s' is %zu bytes; it must be 1..%d",
		       echo(e, sizeof(e), ECHO_MAX, name), len, DB_NAME_MAX);
		return;
	}
	for (size_t i = 0; i < len; i++) {
		if (iscntrl((unsigned char)name[i])) {
			report(p, p->lineno, "database name '%s' contains a control character",
			       echo(e, sizeof(e), ECHO_MAX, name));
			return;
		}
	}
	/* A duplicate is still parsed, into an entry of its own, so that the
	 * problems inside it are reported too; the load fails anyway. */
	for (int i = 0; i < p->cfg->ndbs; i++) {
		if (strcmp(p->cfg->dbs[i].name, name) == 0) {
			report(p, p->lineno, "duplicate section [" DB_PREFIX "%s] (first at line %d)",
			       name, p->cfg->dbs[i].line);
			break;
		}
	}
	if (add_db(p, name) == 0)
		p->sect = SECT_DB;
}

/* S is a trimmed line starting with '['. */
static void section_header(struct parser *p, char *s)
{
	char e[ECHO_MAX + 4];
	size_t len = strlen(s);
	char *name, *end;

	if (len < 2 || s[len - 1] != ']' || strchr(s + 1, ']') != s + len - 1) {
		report(p, p->lineno, "syntax error: malformed section header '%s'",
		       echo(e, sizeof(e), ECHO_MAX, s));
		p->sect = SECT_SKIP;
		return;
	}
	s[len - 1] = '\0';
	for (name = s + 1; isspace((unsigned char)*name); name++)
		;
	for (end = name + strlen(name); end > name && isspace((unsigned char)end[-1]); end--)
		end[-1] = '\0';

	if (strcmp(name, "pgmux") == 0) {
		if (p->global_line)
			report(p, p->lineno, "duplicate section [pgmux] (first at line %d)",
			       p->global_line);
		else
			p->global_line = p->lineno;
		p->sect = SECT_GLOBAL;
	} else if (strncmp(name, DB_PREFIX, strlen(DB_PREFIX)) == 0) {
		open_db_section(p, name + strlen(DB_PREFIX));
	} else {
		report(p, p->lineno, "unknown section [%s] (expected [pgmux] or [" DB_PREFIX "NAME])",
		       echo(e, sizeof(e), ECHO_MAX, name));
		p->sect = SECT_SKIP;
	}
}

/* ---- lines ---- */

/* Clean line P->buf of N bytes in place: drop the line ending, a UTF-8 BOM
 * on line 1, leading and trailing whitespace and an inline comment (';' or
 * '#' after whitespace). Returns the text, or NULL for a line to ignore. */
static char *clean_line(struct parser *p, size_t n)
{
	char *s = p->buf, *c;

	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
		s[--n] = '\0';
	if (strlen(s) != n) {
		report(p, p->lineno, "syntax error: line contains a NUL byte");
		return NULL;
	}
	if (p->lineno == 1 && strncmp(s, "\xEF\xBB\xBF", 3) == 0)
		s += 3;
	while (isspace((unsigned char)*s))
		s++;
	if (*s == '\0' || *s == ';' || *s == '#')
		return NULL;
	for (c = s + 1; *c; c++) {
		if ((*c == ';' || *c == '#') && isspace((unsigned char)c[-1])) {
			*c = '\0';
			break;
		}
	}
	for (c = s + strlen(s); c > s && isspace((unsigned char)c[-1]); c--)
		c[-1] = '\0';
	return s;
}

/* inih reader: hands inih one cleaned line at a time, "\n"-terminated so
 * that no inih version takes it for a truncated one. Section headers and
 * malformed lines are handled here and passed on as blank lines. */
static char *read_line(char *str, int num, void *stream)
{
	struct parser *p = stream;
	ssize_t n;
	char *s;

	errno = 0;
	n = getline(&p->buf, &p->bufcap, p->fp);
	if (n < 0) {
		if (ferror(p->fp))
			p->read_errno = errno ? errno : EIO;
		return NULL;
	}
	p->lineno++;
	s = clean_line(p, (size_t)n);
	if (!s) {
		s = "";
	} else if (*s == '[') {
		section_header(p, s);
		s = "";
	} else if (!strpbrk(s, "=:")) {
		report(p, p->lineno, "syntax error: expected 'key = value' or '[section]'");
		s = "";
	} else if (strlen(s) + 2 > (size_t)num) {
		report(p, p->lineno, "line too long (at most %d bytes without comments)", num - 2);
		s = "";
	}
	snprintf(str, (size_t)num, "%s\n", s);
	return str;
}

/* ---- after the file is read ---- */

/* Fill in absent or rejected [database.*] keys from their defaults. */
static int apply_db_defaults(struct parser *p)
{
	for (int i = 0; i < p->cfg->ndbs; i++) {
		struct config_db *db = &p->cfg->dbs[i];

		for (size_t j = 0; j < N_DB_OPTS; j++) {
			const struct opt *o = &db_opts[j];
			const struct seen *s = &p->db_seen[i].keys[j];
			const char *str = o->def == DEFAULT_DB_NAME ? db->name : o->def_str;

			if (s->line && !s->bad)
				continue;
			if (o->def == DEFAULT_GLOBAL)
				*int_field(db, o) = *(int *)((char *)p->cfg + o->def_global);
			else if (o->type == OPT_INT || o->type == OPT_ENUM)
				*int_field(db, o) = o->def_int;
			else if (!*str_field(db, o) && !(*str_field(db, o) = xstrdup(p, str)))
				return -1;
		}
	}
	return 0;
}

static void check_pool_sizes(struct parser *p)
{
	const struct config *cfg = p->cfg;
	const struct seen *gmin = global_seen(p, "min_pool_size");
	const struct seen *gpool = global_seen(p, "default_pool_size");
	size_t imin = (size_t)(find_opt(db_opts, N_DB_OPTS, "min_pool_size") - db_opts);
	size_t ipool = (size_t)(find_opt(db_opts, N_DB_OPTS, "pool_size") - db_opts);

	if (cfg->min_pool_size > cfg->default_pool_size && !gmin->bad && !gpool->bad)
		report(p, gmin->line, "min_pool_size %d exceeds default_pool_size %d",
		       cfg->min_pool_size, cfg->default_pool_size);
	for (int i = 0; i < cfg->ndbs; i++) {
		const struct config_db *db = &cfg->dbs[i];
		const struct seen *smin = &p->db_seen[i].keys[imin];
		const struct seen *spool = &p->db_seen[i].keys[ipool];

		if (db->min_pool_size <= db->pool_size || smin->bad || spool->bad)
			continue;
		if (!smin->line && !spool->line)
			continue; /* both inherited: reported above */
		report(p, smin->line ? smin->line : spool->line,
		       "min_pool_size %d exceeds pool_size %d in [" DB_PREFIX "%s]",
		       db->min_pool_size, db->pool_size, db->name);
	}
}

/* Make the path in *FIELD absolute (relative to the config file's
 * directory, without resolving symlinks, so that a swapped symlink is
 * followed on re-read). */
static int resolve_path(struct parser *p, char **field, int line)
{
	struct config *cfg = p->cfg;
	const char *slash = strrchr(cfg->path, '/');
	size_t dirlen = (size_t)(slash - cfg->path), size;
	char *abs;

	if ((*field)[0] == '/')
		return 0;
	size = dirlen + 1 + strlen(*field) + 1;
	abs = malloc(size);
	if (!abs) {
		report(p, line, "out of memory");
		return -1;
	}
	snprintf(abs, size, "%.*s/%s", (int)dirlen, cfg->path, *field);
	free(*field);
	*field = abs;
	return 0;
}

/* Resolve the OPT_PATH key NAME and check that it names a readable regular
 * file, reporting at its line. */
static void check_file_key(struct parser *p, const char *name)
{
	const struct opt *o = find_opt(global_opts, N_GLOBAL_OPTS, name);
	const struct seen *seen = global_seen(p, name);
	char **field = str_field(p->cfg, o);
	char e[ECHO_PATH_MAX + 4];
	struct stat st;
	int fd;

	if (!*field || resolve_path(p, field, seen->line) < 0)
		return;
	echo(e, sizeof(e), ECHO_PATH_MAX, *field);
	fd = open(*field, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		report(p, seen->line, "%s %s: %s", name, e, strerror(errno));
		return;
	}
	if (fstat(fd, &st) < 0)
		report(p, seen->line, "%s %s: %s", name, e, strerror(errno));
	else if (!S_ISREG(st.st_mode))
		report(p, seen->line, "%s %s: not a regular file", name, e);
	close(fd);
}

static void check_auth_file(struct parser *p)
{
	struct config *cfg = p->cfg;
	const struct seen *type = global_seen(p, "auth_type");
	const struct seen *file = global_seen(p, "auth_file");

	if (!cfg->auth_file) {
		if (cfg->auth_type != AUTH_TRUST && !type->bad && !file->bad)
			report(p, type->line, "auth_file is required when auth_type is %s",
			       config_auth_type_name(cfg->auth_type));
		return;
	}
	check_file_key(p, "auth_file");
}

/* A *_tls_protocols value, reported at the line of the key NAME. */
static void check_tls_protocols(struct parser *p, const char *name, const char *value)
{
	int min, max;

	if (config_tls_protocols(value, &min, &max) < 0)
		report(p, global_seen(p, name)->line,
		       "%s: expected secure, all, legacy or a list of tlsv1.2 and tlsv1.3 (pgmux "
		       "speaks no TLS below 1.2)",
		       name);
}

static void check_client_tls(struct parser *p)
{
	struct config *cfg = p->cfg;
	const struct seen *mode = global_seen(p, "client_tls_sslmode");

	check_tls_protocols(p, "client_tls_protocols", cfg->client_tls_protocols);
	if (cfg->client_tls_sslmode != TLS_DISABLE && !mode->bad) {
		if (!cfg->client_tls_cert_file && !global_seen(p, "client_tls_cert_file")->bad)
			report(p, mode->line, "client_tls_cert_file is required when "
			       "client_tls_sslmode is %s", config_tls_sslmode_name(cfg->client_tls_sslmode));
		if (!cfg->client_tls_key_file && !global_seen(p, "client_tls_key_file")->bad)
			report(p, mode->line, "client_tls_key_file is required when "
			       "client_tls_sslmode is %s", config_tls_sslmode_name(cfg->client_tls_sslmode));
		if (cfg->client_tls_sslmode >= TLS_VERIFY_CA && !cfg->client_tls_ca_file &&
		    !global_seen(p, "client_tls_ca_file")->bad)
			report(p, mode->line, "client_tls_ca_file is required when "
			       "client_tls_sslmode is %s", config_tls_sslmode_name(cfg->client_tls_sslmode));
	}
	if (cfg->auth_type == AUTH_CERT && cfg->client_tls_sslmode < TLS_VERIFY_CA && !mode->bad &&
	    !global_seen(p, "auth_type")->bad)
		report(p, global_seen(p, "auth_type")->line,
		       "auth_type cert needs client_tls_sslmode verify-ca or verify-full (it is %s)",
		       config_tls_sslmode_name(cfg->client_tls_sslmode));
	check_file_key(p, "client_tls_cert_file");
	check_file_key(p, "client_tls_key_file");
	check_file_key(p, "client_tls_ca_file");
}

static void check_server_tls(struct parser *p)
{
	struct config *cfg = p->cfg;
	const struct seen *mode = global_seen(p, "server_tls_sslmode");
	const struct seen *cert = global_seen(p, "server_tls_cert_file");
	const struct seen *key = global_seen(p, "server_tls_key_file");

	check_tls_protocols(p, "server_tls_protocols", cfg->server_tls_protocols);
	if (cfg->server_tls_sslmode >= TLS_VERIFY_CA && !mode->bad && !cfg->server_tls_ca_file &&
	    !global_seen(p, "server_tls_ca_file")->bad)
		report(p, mode->line, "server_tls_ca_file is required when server_tls_sslmode is %s",
		       config_tls_sslmode_name(cfg->server_tls_sslmode));
	if (!cfg->server_tls_cert_file != !cfg->server_tls_key_file && !cert->bad && !key->bad)
		report(p, cfg->server_tls_cert_file ? cert->line : key->line,
		       "server_tls_cert_file and server_tls_key_file go together");
	check_file_key(p, "server_tls_ca_file");
	check_file_key(p, "server_tls_cert_file");
	check_file_key(p, "server_tls_key_file");
}

static void resolve_workers(struct config *cfg)
{
	long n;

	if (cfg->workers != 0)
		return;
	n = sysconf(_SC_NPROCESSORS_ONLN);
	cfg->workers = n < 1 ? 1 : n > WORKERS_MAX ? WORKERS_MAX : (int)n;
}

static void validate(struct parser *p)
{
	if (apply_db_defaults(p) < 0)
		return;
	check_pool_sizes(p);
	check_auth_file(p);
	check_client_tls(p);
	check_server_tls(p);
	if (p->cfg->ndbs == 0)
		report(p, 0, "no [" DB_PREFIX "NAME] section: clients have nothing to connect to");
	resolve_workers(p->cfg);
}

/* ---- snapshot ---- */

static void config_free(struct config *cfg)
{
	if (!cfg)
		return;
	for (int i = 0; i < cfg->ndbs; i++) {
		free(cfg->dbs[i].name);
		free(cfg->dbs[i].host);
		free(cfg->dbs[i].dbname);
	}
	free(cfg->dbs);
	for (size_t i = 0; i < N_GLOBAL_OPTS; i++)
		if (global_opts[i].type == OPT_STRING || global_opts[i].type == OPT_PATH)
			free(*str_field(cfg, &global_opts[i]));
	free(cfg->path);
	free(cfg);
}

/* A snapshot holding every global default, refcount 1. */
static struct config *config_new(void)
{
	struct config *cfg = calloc(1, sizeof(*cfg));

	if (!cfg)
		return NULL;
	cfg->refcount = 1;
	for (size_t i = 0; i < N_GLOBAL_OPTS; i++) {
		const struct opt *o = &global_opts[i];

		if (o->def != DEFAULT_VALUE)
			continue;
		if (o->type == OPT_INT || o->type == OPT_ENUM) {
			*int_field(cfg, o) = o->def_int;
		} else if (!(*str_field(cfg, o) = strdup(o->def_str))) {
			config_free(cfg);
			return NULL;
		}
	}
	return cfg;
}

/* Open P->file and check that it is a regular file. */
static int open_file(struct parser *p)
{
	struct stat st;

	p->fp = fopen(p->file, "re");
	if (!p->fp) {
		report(p, 0, "cannot open: %s", strerror(errno));
		return -1;
	}
	if (fstat(fileno(p->fp), &st) < 0 || !S_ISREG(st.st_mode)) {
		report(p, 0, "cannot read: not a regular file");
		return -1;
	}
	p->cfg->path = realpath(p->file, NULL);
	if (!p->cfg->path) {
		report(p, 0, "cannot resolve path: %s", strerror(errno));
		return -1;
	}
	return 0;
}

struct config *config_load(const char *path, config_error_fn err, void *arg)
{
	struct parser p = { .file = path, .err = err, .arg = arg };
	int rc;

	p.cfg = config_new();
	if (!p.cfg) {
		report(&p, 0, "out of memory");
		flush_problems(&p);
		return NULL;
	}
	if (open_file(&p) < 0)
		goto out;
	rc = ini_parse_stream(read_line, &p, on_key, &p);
	if (rc < 0 && rc != -1)
		report(&p, p.lineno, "out of memory");
	if (p.read_errno)
		report(&p, p.lineno + 1, "read error: %s", strerror(p.read_errno));
	validate(&p);
out:
	if (p.fp)
		fclose(p.fp);
	free(p.buf);
	free(p.db_seen);
	flush_problems(&p);
	if (p.nerrors) {
		config_free(p.cfg);
		return NULL;
	}
	return p.cfg;
}

struct config *config_ref(struct config *cfg)
{
	if (cfg)
		__atomic_add_fetch(&cfg->refcount, 1, __ATOMIC_RELAXED);
	return cfg;
}

void config_unref(struct config *cfg)
{
	if (cfg && __atomic_sub_fetch(&cfg->refcount, 1, __ATOMIC_ACQ_REL) == 0)
		config_free(cfg);
}

const struct config_db *config_find_db(const struct config *cfg, const char *name)
{
	for (int i = 0; i < cfg->ndbs; i++)
		if (strcmp(cfg->dbs[i].name, name) == 0)
			return &cfg->dbs[i];
	return NULL;
}

const char *config_pool_mode_name(enum pool_mode m)
{
	return (unsigned)m < sizeof(pool_mode_names) / sizeof(pool_mode_names[0]) - 1
		       ? pool_mode_names[m]
		       : "unknown";
}

const char *config_auth_type_name(enum auth_type t)
{
	return (unsigned)t < sizeof(auth_type_names) / sizeof(auth_type_names[0]) - 1
		       ? auth_type_names[t]
		       : "unknown";
}

const char *config_session_pinning_name(enum session_pinning s)
{
	return (unsigned)s < sizeof(session_pinning_names) / sizeof(session_pinning_names[0]) - 1
		       ? session_pinning_names[s]
		       : "unknown";
}

const char *config_tls_sslmode_name(enum tls_sslmode m)
{
	return (unsigned)m < sizeof(tls_sslmode_names) / sizeof(tls_sslmode_names[0]) - 1
		       ? tls_sslmode_names[m]
		       : "unknown";
}

/* OpenSSL's TLS1_2_VERSION and TLS1_3_VERSION, without its headers here */
#define PROTO_TLS12 0x0303
#define PROTO_TLS13 0x0304

int config_tls_protocols(const char *value, int *min, int *max)
{
	if (!value)
		return -1;
	if (strcasecmp(value, "secure") == 0 || strcasecmp(value, "all") == 0 ||
	    strcasecmp(value, "legacy") == 0 || strcasecmp(value, "default") == 0) {
		*min = PROTO_TLS12;
		*max = PROTO_TLS13;
		return 0;
	}
	int lo = 0, hi = 0;
	const char *s = value;
	while (*s) {
		while (*s == ',' || *s == ' ' || *s == '\t' || *s == ':')
			s++;
		if (!*s)
			break;
		size_t n = strcspn(s, ", \t:");
		int v;
		if (n == 7 && strncasecmp(s, "tlsv1.2", n) == 0)
			v = PROTO_TLS12;
		else if (n == 7 && strncasecmp(s, "tlsv1.3", n) == 0)
			v = PROTO_TLS13;
		else
			return -1;
		if (!lo || v < lo)
			lo = v;
		if (v > hi)
			hi = v;
		s += n;
	}
	if (!lo)
		return -1;
	*min = lo;
	*max = hi;
	return 0;
}
