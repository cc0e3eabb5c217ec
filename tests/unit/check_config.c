/* Unit tests for core/config: valid files (every field, every default,
 * inline comments, relative auth_file), one fixture per invalid case with
 * its exact line and reason, a file with many problems, and generated files
 * for what fixtures cannot hold (CRLF, BOM, NUL bytes, long lines).
 * Fixtures live in $FIXTURES/config. */
#include <check.h>
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"

#define MAX_PROBLEMS 32

/* One problem reported through config_error_fn. */
struct problem {
	char file[PATH_MAX]; /* file argument as received */
	int line;            /* line argument */
	char reason[1024];   /* reason argument */
};

/* What a load reported. */
struct problems {
	struct problem list[MAX_PROBLEMS]; /* the first MAX_PROBLEMS problems */
	int n;                             /* problems reported, may exceed MAX_PROBLEMS */
};

static void collect(void *arg, const char *file, int line, const char *reason)
{
	struct problems *ps = arg;

	if (ps->n < MAX_PROBLEMS) {
		struct problem *p = &ps->list[ps->n];

		snprintf(p->file, sizeof(p->file), "%s", file);
		p->line = line;
		snprintf(p->reason, sizeof(p->reason), "%s", reason);
	}
	ps->n++;
}

/* $FIXTURES/config/NAME into BUF. */
static const char *fixture(char *buf, size_t size, const char *name)
{
	const char *dir = getenv("FIXTURES");

	ck_assert_msg(dir != NULL, "FIXTURES is not set");
	snprintf(buf, size, "%s/config/%s", dir, name);
	return buf;
}

static void print_problems(const struct problems *ps)
{
	for (int i = 0; i < ps->n && i < MAX_PROBLEMS; i++)
		fprintf(stderr, "  %s:%d: %s\n", ps->list[i].file, ps->list[i].line,
			ps->list[i].reason);
}

/* Load fixture NAME, which must be valid. */
static struct config *load_ok(const char *name)
{
	char path[PATH_MAX];
	struct problems ps = { .n = 0 };
	struct config *cfg = config_load(fixture(path, sizeof(path), name), collect, &ps);

	if (!cfg || ps.n)
		print_problems(&ps);
	ck_assert_msg(cfg != NULL, "%s did not load", name);
	ck_assert_int_eq(ps.n, 0);
	ck_assert_int_eq(cfg->refcount, 1);
	return cfg;
}

static int expected_workers(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : n > 256 ? 256 : (int)n;
}

/* realpath of fixture NAME. */
static void fixture_realpath(char *out, const char *name)
{
	char path[PATH_MAX];

	ck_assert_ptr_nonnull(realpath(fixture(path, sizeof(path), name), out));
}

static void assert_global_defaults(const struct config *cfg)
{
	ck_assert_str_eq(cfg->listen_addr, "127.0.0.1");
	ck_assert_int_eq(cfg->listen_port, 6432);
	ck_assert_int_eq(cfg->workers, expected_workers());
	ck_assert_int_eq(cfg->pool_mode, POOL_MODE_TRANSACTION);
	ck_assert_int_eq(cfg->session_pinning, PINNING_ALLOW);
	ck_assert_int_eq(cfg->max_client_conn, 10000);
	ck_assert_int_eq(cfg->default_pool_size, 20);
	ck_assert_int_eq(cfg->min_pool_size, 0);
	ck_assert_int_eq(cfg->connection_borrow_timeout, 120);
	ck_assert_int_eq(cfg->query_timeout, 0);
	ck_assert_int_eq(cfg->tcp_keepalive, 1);
	ck_assert_int_eq(cfg->tcp_keepidle, 0);
	ck_assert_int_eq(cfg->tcp_keepintvl, 0);
	ck_assert_int_eq(cfg->tcp_keepcnt, 0);
	ck_assert_int_eq(cfg->tcp_user_timeout, 0);
	ck_assert_int_eq(cfg->max_prepared_statements, 200);
	ck_assert_int_eq(cfg->idle_client_timeout, 1800);
	ck_assert_int_eq(cfg->server_idle_timeout, 600);
	ck_assert_int_eq(cfg->server_lifetime, 3600);
	ck_assert_int_eq(cfg->server_connect_timeout, 5);
	ck_assert_int_eq(cfg->client_login_timeout, 15);
	ck_assert_int_eq(cfg->shutdown_timeout, 30);
	ck_assert_int_eq(cfg->log_level, LOG_INFO);
	ck_assert_int_eq(cfg->client_tls_sslmode, TLS_DISABLE);
	ck_assert_ptr_null(cfg->client_tls_cert_file);
	ck_assert_ptr_null(cfg->client_tls_key_file);
	ck_assert_ptr_null(cfg->client_tls_ca_file);
	ck_assert_str_eq(cfg->client_tls_protocols, "secure");
	ck_assert_str_eq(cfg->client_tls_ciphers, "default");
	ck_assert_int_eq(cfg->server_tls_sslmode, TLS_PREFER);
	ck_assert_ptr_null(cfg->server_tls_ca_file);
	ck_assert_ptr_null(cfg->server_tls_cert_file);
	ck_assert_ptr_null(cfg->server_tls_key_file);
	ck_assert_str_eq(cfg->server_tls_protocols, "secure");
	ck_assert_str_eq(cfg->server_tls_ciphers, "default");
}

START_TEST(test_valid_full)
{
	struct config *cfg = load_ok("valid_full.ini");
	char path[PATH_MAX], users[PATH_MAX];
	const struct config_db *db;

	fixture_realpath(path, "valid_full.ini");
	fixture_realpath(users, "userlist.txt");
	ck_assert_str_eq(cfg->path, path);
	ck_assert_str_eq(cfg->listen_addr, "0.0.0.0");
	ck_assert_int_eq(cfg->listen_port, 7432);
	ck_assert_int_eq(cfg->workers, 3);
	ck_assert_int_eq(cfg->pool_mode, POOL_MODE_SESSION);
	ck_assert_int_eq(cfg->session_pinning, PINNING_DENY);
	ck_assert_int_eq(cfg->auth_type, AUTH_MD5);
	ck_assert_str_eq(cfg->auth_file, users);
	ck_assert_int_eq(cfg->max_client_conn, 500);
	ck_assert_int_eq(cfg->default_pool_size, 30);
	ck_assert_int_eq(cfg->min_pool_size, 2);
	ck_assert_int_eq(cfg->connection_borrow_timeout, 60);
	ck_assert_int_eq(cfg->max_prepared_statements, 500);
	ck_assert_int_eq(cfg->idle_client_timeout, 0);
	ck_assert_int_eq(cfg->server_idle_timeout, 300);
	ck_assert_int_eq(cfg->server_lifetime, 7200);
	ck_assert_int_eq(cfg->server_connect_timeout, 3);
	ck_assert_int_eq(cfg->client_login_timeout, 10);
	ck_assert_int_eq(cfg->shutdown_timeout, 45);
	ck_assert_int_eq(cfg->log_level, LOG_DEBUG);

	ck_assert_int_eq(cfg->ndbs, 2);
	db = config_find_db(cfg, "appdb");
	ck_assert_ptr_eq(db, &cfg->dbs[0]);
	ck_assert_str_eq(db->name, "appdb");
	ck_assert_str_eq(db->host, "db.example.com");
	ck_assert_int_eq(db->port, 5433);
	ck_assert_str_eq(db->dbname, "app_production");
	ck_assert_int_eq(db->pool_size, 40);
	ck_assert_int_eq(db->min_pool_size, 4);
	ck_assert_int_eq(db->session_pinning, PINNING_ALLOW);
	ck_assert_int_eq(db->line, 23);

	/* An empty section takes the defaults, pool sizes and session_pinning
	 * from [pgmux]. */
	db = config_find_db(cfg, "reports");
	ck_assert_ptr_eq(db, &cfg->dbs[1]);
	ck_assert_str_eq(db->host, "127.0.0.1");
	ck_assert_int_eq(db->port, 5432);
	ck_assert_str_eq(db->dbname, "reports");
	ck_assert_int_eq(db->pool_size, 30);
	ck_assert_int_eq(db->min_pool_size, 2);
	ck_assert_int_eq(db->session_pinning, PINNING_DENY);
	ck_assert_int_eq(db->line, 31);

	ck_assert_ptr_null(config_find_db(cfg, "nope"));
	ck_assert_ptr_null(config_find_db(cfg, "APPDB"));
	config_unref(cfg);
}
END_TEST

START_TEST(test_minimal_defaults)
{
	struct config *cfg = load_ok("minimal.ini");
	char users[PATH_MAX];
	const struct config_db *db;

	fixture_realpath(users, "userlist.txt");
	assert_global_defaults(cfg);
	ck_assert_int_eq(cfg->auth_type, AUTH_SCRAM_SHA_256);
	ck_assert_str_eq(cfg->auth_file, users);
	ck_assert_int_eq(cfg->ndbs, 1);
	db = config_find_db(cfg, "app");
	ck_assert_ptr_nonnull(db);
	ck_assert_str_eq(db->host, "127.0.0.1");
	ck_assert_int_eq(db->port, 5432);
	ck_assert_str_eq(db->dbname, "app");
	ck_assert_int_eq(db->pool_size, 20);
	ck_assert_int_eq(db->min_pool_size, 0);
	ck_assert_int_eq(db->session_pinning, PINNING_ALLOW);
	ck_assert_int_eq(db->line, 4);
	config_unref(cfg);
}
END_TEST

START_TEST(test_trust_without_auth_file)
{
	struct config *cfg = load_ok("trust.ini");

	ck_assert_int_eq(cfg->auth_type, AUTH_TRUST);
	ck_assert_ptr_null(cfg->auth_file);
	config_unref(cfg);
}
END_TEST

START_TEST(test_inline_comments)
{
	struct config *cfg = load_ok("inline_comments.ini");
	const struct config_db *db;

	ck_assert_str_eq(cfg->listen_addr, "10.0.0.1");
	ck_assert_int_eq(cfg->listen_port, 6500);
	ck_assert_int_eq(cfg->pool_mode, POOL_MODE_SESSION);
	ck_assert_int_eq(cfg->auth_type, AUTH_TRUST);
	ck_assert_int_eq(cfg->log_level, LOG_WARN);
	db = config_find_db(cfg, "app");
	ck_assert_ptr_nonnull(db);
	ck_assert_str_eq(db->host, "db1");
	ck_assert_str_eq(db->dbname, "app#1;v2");
	ck_assert_int_eq(db->port, 6000);
	config_unref(cfg);
}
END_TEST

/* session_pinning in [pgmux] is the default of every [database.NAME]
 * section that does not set its own, in both directions. */
START_TEST(test_session_pinning_global_deny)
{
	struct config *cfg = load_ok("pinning_global_deny.ini");
	const struct config_db *db;

	ck_assert_int_eq(cfg->session_pinning, PINNING_DENY);
	db = config_find_db(cfg, "inherits");
	ck_assert_ptr_nonnull(db);
	ck_assert_int_eq(db->session_pinning, PINNING_DENY);
	db = config_find_db(cfg, "allows");
	ck_assert_ptr_nonnull(db);
	ck_assert_int_eq(db->session_pinning, PINNING_ALLOW);
	config_unref(cfg);
}
END_TEST

START_TEST(test_session_pinning_db_deny)
{
	struct config *cfg = load_ok("pinning_db_deny.ini");
	const struct config_db *db;

	ck_assert_int_eq(cfg->session_pinning, PINNING_ALLOW);
	db = config_find_db(cfg, "denies");
	ck_assert_ptr_nonnull(db);
	ck_assert_int_eq(db->session_pinning, PINNING_DENY); /* "Deny": case-insensitive */
	db = config_find_db(cfg, "inherits");
	ck_assert_ptr_nonnull(db);
	ck_assert_int_eq(db->session_pinning, PINNING_ALLOW);
	ck_assert_int_eq(db->port, 5433);
	config_unref(cfg);
}
END_TEST

/* The ends of max_prepared_statements' range are accepted. */
static const struct {
	const char *ini; /* fixture */
	int value;       /* max_prepared_statements it sets */
} prepared_cases[] = {
	{ "prepared_min.ini", 1 },
	{ "prepared_max.ini", 100000 },
};

START_TEST(test_max_prepared_statements_bounds)
{
	struct config *cfg = load_ok(prepared_cases[_i].ini);

	ck_assert_int_eq(cfg->max_prepared_statements, prepared_cases[_i].value);
	config_unref(cfg);
}
END_TEST

/* A relative auth_file is taken from the config file's directory. */
static const struct {
	const char *ini;   /* fixture, in a subdirectory */
	const char *users; /* the auth file it must point to */
} relative_cases[] = {
	{ "sub/relative_up.ini", "userlist.txt" },
	{ "sub/relative_down.ini", "sub/auth/users.txt" },
};

START_TEST(test_relative_auth_file)
{
	struct config *cfg = load_ok(relative_cases[_i].ini);
	char want[PATH_MAX], got[PATH_MAX];

	ck_assert_msg(cfg->auth_file[0] == '/', "auth_file %s is not absolute", cfg->auth_file);
	fixture_realpath(want, relative_cases[_i].users);
	ck_assert_ptr_nonnull(realpath(cfg->auth_file, got));
	ck_assert_str_eq(got, want);
	config_unref(cfg);
}
END_TEST

/* One problem per fixture: where it is and what the message says. */
static const struct {
	const char *ini;    /* fixture */
	int line;           /* expected line */
	const char *reason; /* expected substring of the reason */
} bad_cases[] = {
	{ "bad_unknown_section.ini", 4, "unknown section [pgbouncer]" },
	{ "bad_unknown_key.ini", 3, "unknown key 'listen_prot' in [pgmux]" },
	{ "bad_unknown_db_key.ini", 5, "unknown key 'user' in [database.app]" },
	{ "bad_int.ini", 3, "listen_port: '64x2' is not an integer" },
	{ "bad_missing_value.ini", 3, "listen_port: missing value" },
	{ "bad_string_empty.ini", 5, "host: missing value" },
	{ "bad_port_high.ini", 3, "listen_port: 65536 is out of range (1..65535)" },
	{ "bad_port_zero.ini", 3, "listen_port: 0 is out of range (1..65535)" },
	{ "bad_int_overflow.ini", 3, "max_client_conn: 99999999999999999999999 is out of range" },
	{ "bad_workers_high.ini", 3, "workers: 257 is out of range (0..256)" },
	{ "bad_workers_negative.ini", 3, "workers: -1 is out of range (0..256)" },
	{ "bad_db_port_high.ini", 5, "port: 70000 is out of range (1..65535)" },
	{ "bad_pool_size_zero.ini", 5, "pool_size: 0 is out of range (1..10000)" },
	{ "bad_default_pool_size_high.ini", 3, "default_pool_size: 10001 is out of range (1..10000)" },
	{ "bad_min_pool_size_db.ini", 6, "min_pool_size 6 exceeds pool_size 5 in [database.app]" },
	{ "bad_min_pool_size_inherited.ini", 6, "min_pool_size 10 exceeds pool_size 5" },
	{ "bad_min_pool_size_global.ini", 3, "min_pool_size 30 exceeds default_pool_size 20" },
	{ "bad_timeout_negative.ini", 3, "idle_client_timeout: -1 is out of range (0..2147483)" },
	{ "bad_timeout_high.ini", 3, "server_lifetime: 2147484 is out of range (0..2147483)" },
	{ "bad_connect_timeout_zero.ini", 3, "server_connect_timeout: 0 is out of range (1..2147483)" },
	{ "bad_login_timeout_zero.ini", 3, "client_login_timeout: 0 is out of range (1..2147483)" },
	{ "bad_pool_mode.ini", 3, "pool_mode: invalid value 'statement' (accepted: transaction, session)" },
	{ "bad_auth_type.ini", 2, "auth_type: invalid value 'password' (accepted: scram-sha-256, md5, trust, cert)" },
	{ "bad_log_level.ini", 3, "log_level: invalid value 'verbose' (accepted: error, warn, info, debug)" },
	{ "bad_session_pinning.ini", 3, "session_pinning: invalid value 'pin' (accepted: allow, deny)" },
	{ "bad_session_pinning_db.ini", 6, "session_pinning: invalid value 'never' (accepted: allow, deny)" },
	{ "bad_session_pinning_empty.ini", 5, "session_pinning: missing value" },
	{ "bad_prepared_zero.ini", 3, "max_prepared_statements: 0 is out of range (1..100000)" },
	{ "bad_prepared_high.ini", 3, "max_prepared_statements: 100001 is out of range (1..100000)" },
	{ "bad_prepared_int.ini", 3, "max_prepared_statements: '200k' is not an integer" },
	{ "bad_prepared_db.ini", 5, "unknown key 'max_prepared_statements' in [database.app]" },
	{ "bad_dup_key.ini", 4, "duplicate key 'listen_port' in [pgmux] (first set at line 3)" },
	{ "bad_dup_db_key.ini", 6, "duplicate key 'port' in [database.app] (first set at line 5)" },
	{ "bad_dup_db.ini", 7, "duplicate section [database.app] (first at line 4)" },
	{ "bad_dup_pgmux.ini", 4, "duplicate section [pgmux] (first at line 1)" },
	{ "bad_no_auth_file.ini", 2, "auth_file is required when auth_type is md5" },
	{ "bad_no_auth_file_default.ini", 0, "auth_file is required when auth_type is scram-sha-256" },
	{ "bad_auth_file_missing.ini", 2, "missing.txt: No such file or directory" },
	{ "bad_auth_file_dir.ini", 2, "not a regular file" },
	{ "bad_no_db.ini", 0, "no [database.NAME] section" },
	{ "bad_db_name_long.ini", 4, "bytes; it must be 1..63" },
	{ "bad_db_name_empty.ini", 4, "bytes; it must be 1..63" },
	{ "bad_syntax_no_equals.ini", 3, "syntax error: expected 'key = value' or '[section]'" },
	{ "bad_syntax_section.ini", 1, "malformed section header '[pgmux'" },
	{ "bad_key_outside.ini", 1, "key 'listen_port' outside of any section" },
	{ "bad_missing_key_name.ini", 3, "missing key name" },
	{ "bad_wait_timeout_twice.ini", 4,
	  "'query_wait_timeout' and 'connection_borrow_timeout' are the same setting: set only one "
	  "(first set at line 3)" },
	{ "bad_tcp_keepcnt.ini", 3, "tcp_keepcnt: 128 is out of range (0..127)" },
	{ "bad_tcp_keepalive.ini", 3, "tcp_keepalive: 2 is out of range (0..1)" },
	{ "bad_query_timeout.ini", 3, "query_timeout: -1 is out of range (0..2147483)" },
	{ "bad_tls_no_cert.ini", 3, "client_tls_cert_file is required when client_tls_sslmode is "
	  "require" },
	{ "bad_tls_protocols.ini", 3, "client_tls_protocols: expected secure, all, legacy or a list "
	  "of tlsv1.2 and tlsv1.3" },
	{ "bad_tls_sslmode.ini", 3, "client_tls_sslmode" },
	{ "bad_server_tls_no_ca.ini", 3, "server_tls_ca_file is required when server_tls_sslmode "
	  "is verify-full" },
	{ "bad_cert_auth_mode.ini", 2, "auth_type cert needs client_tls_sslmode verify-ca or "
	  "verify-full (it is require)" },
};

START_TEST(test_bad)
{
	char path[PATH_MAX];
	struct problems ps = { .n = 0 };
	struct config *cfg;

	fixture(path, sizeof(path), bad_cases[_i].ini);
	cfg = config_load(path, collect, &ps);
	if (ps.n != 1)
		print_problems(&ps);
	ck_assert_ptr_null(cfg);
	ck_assert_int_eq(ps.n, 1);
	ck_assert_str_eq(ps.list[0].file, path);
	ck_assert_msg(ps.list[0].line == bad_cases[_i].line, "%s: line %d, want %d",
		      bad_cases[_i].ini, ps.list[0].line, bad_cases[_i].line);
	ck_assert_msg(strstr(ps.list[0].reason, bad_cases[_i].reason) != NULL,
		      "%s: reason '%s' lacks '%s'", bad_cases[_i].ini, ps.list[0].reason,
		      bad_cases[_i].reason);

	/* Without a callback the load still fails. */
	ck_assert_ptr_null(config_load(path, NULL, NULL));
}
END_TEST

/* Every problem of many_errors.ini, in any order. */
static const struct {
	int line;
	const char *reason;
} many_expected[] = {
	{ 1, "key 'listen_port' outside of any section" },
	{ 3, "listen_port: 99999 is out of range" },
	{ 4, "workers: 'many' is not an integer" },
	{ 5, "pool_mode: invalid value 'statement'" },
	{ 6, "auth_file is required when auth_type is md5" },
	{ 7, "log_level: invalid value 'loud'" },
	{ 8, "unknown key 'bogus' in [pgmux]" },
	{ 9, "duplicate key 'listen_port' in [pgmux] (first set at line 3)" },
	{ 10, "syntax error" },
	{ 13, "port: 0 is out of range" },
	{ 15, "min_pool_size 9 exceeds pool_size 5" },
	{ 17, "duplicate section [database.app] (first at line 12)" },
	{ 18, "bytes; it must be 1..63" },
	{ 19, "unknown section [nope]" },
};
#define N_MANY (sizeof(many_expected) / sizeof(many_expected[0]))

START_TEST(test_many_errors)
{
	char path[PATH_MAX];
	struct problems ps = { .n = 0 };
	bool found[N_MANY] = { false };

	ck_assert_ptr_null(config_load(fixture(path, sizeof(path), "many_errors.ini"), collect, &ps));
	if (ps.n != (int)N_MANY)
		print_problems(&ps);
	ck_assert_int_eq(ps.n, (int)N_MANY);
	for (int i = 0; i < ps.n; i++) {
		size_t j;

		/* Reported in line order, whichever check found them. */
		if (i > 0)
			ck_assert_int_le(ps.list[i - 1].line, ps.list[i].line);

		for (j = 0; j < N_MANY; j++)
			if (!found[j] && ps.list[i].line == many_expected[j].line &&
			    strstr(ps.list[i].reason, many_expected[j].reason))
				break;
		ck_assert_msg(j < N_MANY, "unexpected problem at line %d: %s", ps.list[i].line,
			      ps.list[i].reason);
		found[j] = true;
	}
}
END_TEST

/* The shipped sample config loads and documents the defaults. */
START_TEST(test_pgbouncer_timeouts)
{
	struct config *cfg = load_ok("pgbouncer_timeouts.ini");

	ck_assert_int_eq(cfg->connection_borrow_timeout, 7); /* query_wait_timeout is its name */
	ck_assert_int_eq(cfg->query_timeout, 30);
	ck_assert_int_eq(cfg->tcp_keepalive, 0);
	ck_assert_int_eq(cfg->tcp_keepidle, 60);
	ck_assert_int_eq(cfg->tcp_keepintvl, 10);
	ck_assert_int_eq(cfg->tcp_keepcnt, 4);
	ck_assert_int_eq(cfg->tcp_user_timeout, 15000);
	config_unref(cfg);
}
END_TEST

START_TEST(test_sample_config)
{
	char path[PATH_MAX];
	struct problems ps = { .n = 0 };
	struct config *cfg;
	const struct config_db *db;

	snprintf(path, sizeof(path), "%s/../../../etc/pgmux.ini", getenv("FIXTURES"));
	cfg = config_load(path, collect, &ps);
	if (!cfg)
		print_problems(&ps);
	ck_assert_ptr_nonnull(cfg);
	assert_global_defaults(cfg);
	ck_assert_int_eq(cfg->auth_type, AUTH_SCRAM_SHA_256);
	ck_assert_ptr_nonnull(strstr(cfg->auth_file, "/userlist.txt"));
	db = config_find_db(cfg, "appdb");
	ck_assert_ptr_nonnull(db);
	ck_assert_str_eq(db->host, "127.0.0.1");
	ck_assert_int_eq(db->port, 5432);
	ck_assert_str_eq(db->dbname, "appdb");
	ck_assert_int_eq(db->pool_size, 20);
	ck_assert_int_eq(db->min_pool_size, 0);
	ck_assert_int_eq(db->session_pinning, PINNING_ALLOW);
	config_unref(cfg);
}
END_TEST

/* ---- generated files ---- */

static char tmpdir[1024]; /* per-test scratch directory */

static void tmp_setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "%s/check_config.XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

/* The scratch directory holds plain files only. */
static void tmp_teardown(void)
{
	DIR *d = opendir(tmpdir);
	struct dirent *ent;
	char path[PATH_MAX];

	if (!d)
		return;
	while ((ent = readdir(d)) != NULL) {
		if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", tmpdir, ent->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(tmpdir);
}

/* Write LEN bytes of DATA to $tmpdir/NAME; returns the path in BUF. */
static const char *tmp_write(char *buf, size_t size, const char *name, const char *data,
			     size_t len)
{
	FILE *f;

	snprintf(buf, size, "%s/%s", tmpdir, name);
	f = fopen(buf, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(data, 1, len, f), len);
	ck_assert_int_eq(fclose(f), 0);
	return buf;
}

START_TEST(test_crlf_bom)
{
	static const char text[] = "\xEF\xBB\xBF[pgmux]\r\nauth_type = trust\r\n"
				   "listen_port = 7000 ; comment\r\n\r\n[database.app]\r\n"
				   "host = h\r\n";
	char path[PATH_MAX];
	struct problems ps = { .n = 0 };
	struct config *cfg;

	cfg = config_load(tmp_write(path, sizeof(path), "crlf.ini", text, sizeof(text) - 1),
			  collect, &ps);
	if (!cfg)
		print_problems(&ps);
	ck_assert_ptr_nonnull(cfg);
	ck_assert_int_eq(cfg->listen_port, 7000);
	ck_assert_str_eq(cfg->dbs[0].host, "h");
	ck_assert_int_eq(cfg->dbs[0].line, 5);
	config_unref(cfg);
}
END_TEST

START_TEST(test_nul_byte)
{
	static const char text[] = "[pgmux]\nauth_type = trust\nlisten_port = 7\0000\n"
				   "[database.app]\n";
	char path[PATH_MAX];
	struct problems ps = { .n = 0 };

	ck_assert_ptr_null(config_load(
		tmp_write(path, sizeof(path), "nul.ini", text, sizeof(text) - 1), collect, &ps));
	ck_assert_int_eq(ps.n, 1);
	ck_assert_int_eq(ps.list[0].line, 3);
	ck_assert_ptr_nonnull(strstr(ps.list[0].reason, "NUL byte"));
}
END_TEST

/* A line inih cannot hold is reported, and the line count stays right. */
START_TEST(test_long_line)
{
	char text[2048], path[PATH_MAX], host[600];
	struct problems ps = { .n = 0 };

	memset(host, 'h', sizeof(host) - 1);
	host[sizeof(host) - 1] = '\0';
	snprintf(text, sizeof(text),
		 "[pgmux]\nauth_type = trust\n[database.app]\nhost = %s\nport = x\n", host);
	ck_assert_ptr_null(config_load(tmp_write(path, sizeof(path), "long.ini", text, strlen(text)),
				       collect, &ps));
	if (ps.n != 2)
		print_problems(&ps);
	ck_assert_int_eq(ps.n, 2);
	ck_assert_int_eq(ps.list[0].line, 4);
	ck_assert_ptr_nonnull(strstr(ps.list[0].reason, "line too long"));
	ck_assert_int_eq(ps.list[1].line, 5);
	ck_assert_ptr_nonnull(strstr(ps.list[1].reason, "port: 'x' is not an integer"));
}
END_TEST

/* A long comment does not count against the line length. */
START_TEST(test_long_comment)
{
	char text[2048], path[PATH_MAX], comment[600];
	struct config *cfg;

	memset(comment, 'c', sizeof(comment) - 1);
	comment[sizeof(comment) - 1] = '\0';
	snprintf(text, sizeof(text),
		 "[pgmux]\nauth_type = trust ; %s\n# %s\n[database.app]\n", comment, comment);
	cfg = config_load(tmp_write(path, sizeof(path), "comment.ini", text, strlen(text)), NULL,
			  NULL);
	ck_assert_ptr_nonnull(cfg);
	config_unref(cfg);
}
END_TEST

START_TEST(test_unreadable_auth_file)
{
	static const char ini[] = "[pgmux]\nauth_file = users.txt\n[database.app]\n";
	char path[PATH_MAX], users[PATH_MAX];
	struct problems ps = { .n = 0 };

	if (geteuid() == 0)
		return; /* root reads anything */
	tmp_write(users, sizeof(users), "users.txt", "\"u\" \"p\"\n", 8);
	ck_assert_int_eq(chmod(users, 0), 0);
	ck_assert_ptr_null(
		config_load(tmp_write(path, sizeof(path), "c.ini", ini, sizeof(ini) - 1), collect, &ps));
	ck_assert_int_eq(ps.n, 1);
	ck_assert_int_eq(ps.list[0].line, 2);
	ck_assert_ptr_nonnull(strstr(ps.list[0].reason, "Permission denied"));
}
END_TEST

START_TEST(test_missing_config)
{
	char path[PATH_MAX];
	struct problems ps = { .n = 0 };

	snprintf(path, sizeof(path), "%s/nope.ini", tmpdir);
	ck_assert_ptr_null(config_load(path, collect, &ps));
	ck_assert_int_eq(ps.n, 1);
	ck_assert_int_eq(ps.list[0].line, 0);
	ck_assert_str_eq(ps.list[0].file, path);
	ck_assert_ptr_nonnull(strstr(ps.list[0].reason, "No such file or directory"));

	ps.n = 0;
	ck_assert_ptr_null(config_load(tmpdir, collect, &ps));
	ck_assert_int_eq(ps.n, 1);
	ck_assert_ptr_nonnull(strstr(ps.list[0].reason, "not a regular file"));
}
END_TEST

/* ---- snapshot API ---- */

START_TEST(test_refcount)
{
	struct config *cfg = load_ok("trust.ini");

	ck_assert_ptr_eq(config_ref(cfg), cfg);
	ck_assert_int_eq(cfg->refcount, 2);
	config_unref(cfg);
	ck_assert_int_eq(cfg->refcount, 1);
	config_unref(cfg); /* frees; valgrind/ASan check the rest */
	config_unref(NULL);
	ck_assert_ptr_null(config_ref(NULL));
}
END_TEST

START_TEST(test_tls_protocols)
{
	int min = 0, max = 0;
	ck_assert_int_eq(config_tls_protocols("secure", &min, &max), 0);
	ck_assert_int_eq(min, 0x0303);
	ck_assert_int_eq(max, 0x0304);
	ck_assert_int_eq(config_tls_protocols("ALL", &min, &max), 0);
	ck_assert_int_eq(min, 0x0303);
	ck_assert_int_eq(config_tls_protocols("tlsv1.3", &min, &max), 0);
	ck_assert_int_eq(min, 0x0304);
	ck_assert_int_eq(max, 0x0304);
	ck_assert_int_eq(config_tls_protocols(" tlsv1.3, TLSv1.2 ", &min, &max), 0);
	ck_assert_int_eq(min, 0x0303);
	ck_assert_int_eq(max, 0x0304);
	ck_assert_int_eq(config_tls_protocols("tlsv1.2:tlsv1.2", &min, &max), 0);
	ck_assert_int_eq(max, 0x0303);
	ck_assert_int_eq(config_tls_protocols("tlsv1.0", &min, &max), -1);
	ck_assert_int_eq(config_tls_protocols("tlsv1.2,tlsv1.1", &min, &max), -1);
	ck_assert_int_eq(config_tls_protocols("tlsv1.2x", &min, &max), -1);
	ck_assert_int_eq(config_tls_protocols("", &min, &max), -1);
	ck_assert_int_eq(config_tls_protocols(" , ", &min, &max), -1);
	ck_assert_int_eq(config_tls_protocols(NULL, &min, &max), -1);
}
END_TEST

START_TEST(test_tls_files_relative)
{
	char ini[PATH_MAX], key[PATH_MAX], crt[PATH_MAX];
	struct problems ps = { .n = 0 };
	const char *text = "[pgmux]\nauth_type = trust\nclient_tls_sslmode = prefer\n"
			   "client_tls_cert_file = pgmux.crt\nclient_tls_key_file = pgmux.key\n"
			   "client_tls_ca_file = ca.crt\n\n[database.app]\n";
	tmp_write(key, sizeof(key), "pgmux.key", "k", 1);
	tmp_write(crt, sizeof(crt), "pgmux.crt", "c", 1);
	tmp_write(ini, sizeof(ini), "pgmux.ini", text, strlen(text));
	struct config *cfg = config_load(ini, collect, &ps);
	/* ca.crt is missing: reported at its line, with its resolved path */
	ck_assert_ptr_null(cfg);
	ck_assert_int_eq(ps.n, 1);
	ck_assert_int_eq(ps.list[0].line, 6);
	ck_assert_ptr_nonnull(strstr(ps.list[0].reason, "client_tls_ca_file"));
	ck_assert_ptr_nonnull(strstr(ps.list[0].reason, tmpdir));
	ck_assert_ptr_nonnull(strstr(ps.list[0].reason, "No such file"));
	char ca[PATH_MAX];
	tmp_write(ca, sizeof(ca), "ca.crt", "a", 1);
	ps.n = 0;
	cfg = config_load(ini, collect, &ps);
	ck_assert_ptr_nonnull(cfg);
	ck_assert_int_eq(cfg->client_tls_sslmode, TLS_PREFER);
	ck_assert_str_eq(cfg->client_tls_cert_file, crt);
	ck_assert_str_eq(cfg->client_tls_key_file, key);
	ck_assert_str_eq(cfg->client_tls_ca_file, ca);
	ck_assert_str_eq(cfg->client_tls_protocols, "secure");
	ck_assert_str_eq(cfg->client_tls_ciphers, "default");
	config_unref(cfg);
}
END_TEST

START_TEST(test_names)
{
	ck_assert_str_eq(config_pool_mode_name(POOL_MODE_TRANSACTION), "transaction");
	ck_assert_str_eq(config_pool_mode_name(POOL_MODE_SESSION), "session");
	ck_assert_str_eq(config_auth_type_name(AUTH_SCRAM_SHA_256), "scram-sha-256");
	ck_assert_str_eq(config_auth_type_name(AUTH_MD5), "md5");
	ck_assert_str_eq(config_auth_type_name(AUTH_TRUST), "trust");
	ck_assert_str_eq(config_auth_type_name(AUTH_CERT), "cert");
	ck_assert_str_eq(config_session_pinning_name(PINNING_ALLOW), "allow");
	ck_assert_str_eq(config_session_pinning_name(PINNING_DENY), "deny");
	ck_assert_str_eq(config_session_pinning_name((enum session_pinning)2), "unknown");
	ck_assert_str_eq(config_session_pinning_name((enum session_pinning)-1), "unknown");
	ck_assert_str_eq(config_tls_sslmode_name(TLS_DISABLE), "disable");
	ck_assert_str_eq(config_tls_sslmode_name(TLS_VERIFY_FULL), "verify-full");
	ck_assert_str_eq(config_tls_sslmode_name((enum tls_sslmode)6), "unknown");
}
END_TEST

static Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("valid");
	TCase *bad = tcase_create("invalid");
	TCase *gen = tcase_create("generated");
	TCase *api = tcase_create("api");

	tcase_add_test(tc, test_valid_full);
	tcase_add_test(tc, test_minimal_defaults);
	tcase_add_test(tc, test_trust_without_auth_file);
	tcase_add_test(tc, test_inline_comments);
	tcase_add_test(tc, test_session_pinning_global_deny);
	tcase_add_test(tc, test_session_pinning_db_deny);
	tcase_add_loop_test(tc, test_max_prepared_statements_bounds, 0,
			    (int)(sizeof(prepared_cases) / sizeof(prepared_cases[0])));
	tcase_add_loop_test(tc, test_relative_auth_file, 0,
			    (int)(sizeof(relative_cases) / sizeof(relative_cases[0])));
	tcase_add_test(tc, test_pgbouncer_timeouts);
	tcase_add_test(tc, test_sample_config);
	tcase_add_test(tc, test_tls_protocols);
	suite_add_tcase(s, tc);

	tcase_add_loop_test(bad, test_bad, 0, (int)(sizeof(bad_cases) / sizeof(bad_cases[0])));
	tcase_add_test(bad, test_many_errors);
	suite_add_tcase(s, bad);

	tcase_add_checked_fixture(gen, tmp_setup, tmp_teardown);
	tcase_add_test(gen, test_crlf_bom);
	tcase_add_test(gen, test_tls_files_relative);
	tcase_add_test(gen, test_nul_byte);
	tcase_add_test(gen, test_long_line);
	tcase_add_test(gen, test_long_comment);
	tcase_add_test(gen, test_unreadable_auth_file);
	tcase_add_test(gen, test_missing_config);
	suite_add_tcase(s, gen);

	tcase_add_test(api, test_refcount);
	tcase_add_test(api, test_names);
	suite_add_tcase(s, api);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(config_suite());
	int failed;

	srunner_run_all(sr, CK_ENV); /* CK_VERBOSITY=verbose lists every test */
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
