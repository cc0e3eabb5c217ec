/* Unit tests for the pool layer's seams: pool/route (where new server
 * connections go), pool/creds (a user's credentials, versioned, and what
 * the pool derives from them once per version) and the per-state counts
 * the state setters keep (pool_counts, SHOW POOLS' figures). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/authfile.h"
#include "core/config.h"
#include "core/log.h"
#include "net/worker.h"
#include "pg/scram.h"
#include "pool/conn.h"
#include "pool/creds.h"
#include "pool/pool.h"
#include "pool/route.h"

static struct worker *w0;
static struct config cfg;
static struct config_db db;
static struct authfile *af;
static char path[256];

static void no_error(void *arg, const char *file, int line, const char *msg)
{
	(void)arg;
	ck_abort_msg("%s:%d: %s", file, line, msg);
}

/* An auth_file with these lines, installed for the pool layer. */
static void use_authfile(const char *text)
{
	snprintf(path, sizeof(path), "%s/check_route_creds.XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	af = authfile_load(path, no_error, NULL);
	unlink(path);
	ck_assert_ptr_nonnull(af);
	pool_global_init(&cfg, af, &w0, 1);
}

static void setup(void)
{
	log_set_level(LOG_WARN);
	ck_assert_int_eq(worker_global_init(), 0);
	w0 = worker_new(0);
	ck_assert_ptr_nonnull(w0);
	ck_assert_int_eq(pool_worker_attach(w0), 0);
	memset(&cfg, 0, sizeof(cfg));
	cfg.pool_mode = POOL_MODE_TRANSACTION;
	memset(&db, 0, sizeof(db));
	db.name = "appdb";
	db.dbname = "appdb";
	db.host = "db1.example";
	db.port = 5432;
	db.pool_size = 2;
	use_authfile("\"app\" \"first-password\"\n\"vuser\" "
		     "\"SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0$"
		     "iLPw0vFDWHzPEJgvTRhp9L0QpkRFb+8aiw/U9dYQGHk=:"
		     "Es0LfzRzo/9dP1JaS7I+rOczNKXjGYeS6lPEQ8ZbUVE=\"\n");
}

START_TEST(test_route_is_the_database_and_versioned_by_destination)
{
	setup();
	struct pool *p = pool_get(&db, "app");
	ck_assert_ptr_nonnull(p);
	struct route a, b;
	ck_assert_int_eq(route_get(p, &a), 0);
	ck_assert_str_eq(a.host, "db1.example");
	ck_assert_int_eq(a.port, 5432);
	ck_assert_int_eq(route_get(p, &b), 0);
	ck_assert_uint_eq(a.version, b.version); /* the same destination, the same version */
	db.port = 5433;
	ck_assert_int_eq(route_get(p, &b), 0);
	ck_assert_int_eq(b.port, 5433);
	ck_assert_uint_ne(a.version, b.version);
	db.port = 5432;
	db.host = "db2.example";
	ck_assert_int_eq(route_get(p, &b), 0);
	ck_assert_uint_ne(a.version, b.version);
	char longhost[400];
	memset(longhost, 'h', sizeof(longhost) - 1);
	longhost[sizeof(longhost) - 1] = '\0';
	db.host = longhost;
	ck_assert_int_eq(route_get(p, &b), -1); /* no destination it can name */
	db.host = "db1.example";
}
END_TEST

START_TEST(test_pools_are_keyed_by_names)
{
	setup();
	struct pool *p = pool_get(&db, "app");
	struct config_db copy = db; /* another config's section, same name */
	ck_assert_ptr_eq(pool_get(&copy, "app"), p);
	copy.name = "otherdb";
	ck_assert_ptr_ne(pool_get(&copy, "app"), p);
	ck_assert_ptr_ne(pool_get(&db, "vuser"), p);
}
END_TEST

START_TEST(test_creds_versions)
{
	setup();
	struct pool *p = pool_get(&db, "app");
	struct creds a = creds_get(p), b = creds_get(p);
	ck_assert_ptr_nonnull(a.secret);
	ck_assert_int_eq(a.secret->kind, SECRET_PLAIN);
	ck_assert_uint_ne(a.version, 0);
	ck_assert_uint_eq(a.version, b.version);
	/* a new auth_file with another password: another version */
	struct authfile *old = af;
	use_authfile("\"app\" \"second-password\"\n");
	b = creds_get(p);
	ck_assert_ptr_nonnull(b.secret);
	ck_assert_uint_ne(a.version, b.version);
	/* a user the source does not know */
	struct pool *q = pool_get(&db, "nobody");
	struct creds n = creds_get(q);
	ck_assert_ptr_null(n.secret);
	ck_assert_uint_eq(n.version, 0);
	authfile_free(old);
}
END_TEST

/* The SCRAM secret of a plain password is derived once per version, and
 * again when the password changes; a ClientKey serves only its version. */
START_TEST(test_derived_once_per_version)
{
	setup();
	struct pool *p = pool_get(&db, "app");
	struct creds v1 = creds_get(p);
	struct scram_secret s1, s1b, s2;
	ck_assert_int_eq(pool_client_scram_secret(p, &v1, &s1), 0);
	ck_assert_int_eq(pool_client_scram_secret(p, &v1, &s1b), 0);
	ck_assert_mem_eq(s1.salt, s1b.salt, s1.salt_len); /* not derived again */
	ck_assert_mem_eq(s1.stored_key, s1b.stored_key, SCRAM_KEY_LEN);
	struct authfile *old = af;
	use_authfile("\"app\" \"second-password\"\n");
	struct creds v2 = creds_get(p);
	ck_assert_int_eq(pool_client_scram_secret(p, &v2, &s2), 0);
	ck_assert(memcmp(s1.stored_key, s2.stored_key, SCRAM_KEY_LEN) != 0);
	/* the new secret is the new password's: derive it the same way and compare */
	struct scram_secret check;
	ck_assert_int_eq(scram_secret_from_password("second-password", s2.salt, s2.salt_len,
						    s2.iterations, &check, NULL),
			 0);
	ck_assert_mem_eq(check.stored_key, s2.stored_key, SCRAM_KEY_LEN);
	ck_assert_mem_eq(check.server_key, s2.server_key, SCRAM_KEY_LEN);

	uint8_t key[SCRAM_KEY_LEN] = {1, 2, 3}, got[SCRAM_KEY_LEN];
	pool_set_client_key(p, key, v2.version);
	ck_assert(pool_client_key(p, v2.version, got));
	ck_assert_mem_eq(got, key, SCRAM_KEY_LEN);
	ck_assert(!pool_client_key(p, v1.version, got)); /* proved an older verifier */
	ck_assert(!pool_client_key(p, 0, got));
	struct creds none = {0};
	ck_assert_int_eq(pool_client_scram_secret(p, &none, &s2), -1);
	authfile_free(old);
}
END_TEST

START_TEST(test_state_counts)
{
	setup();
	struct pool *p = pool_get(&db, "vuser");
	struct pool_counts pc = pool_counts(p);
	ck_assert_int_eq(pc.cl_active + pc.cl_waiting + pc.sv_active + pc.sv_idle + pc.sv_used +
				 pc.sv_login,
			 0);
	/* a server's life: connecting, linked, released, parked, closed */
	pool_count_server(p, -1, SV_CONNECTING);
	ck_assert_int_eq(pool_counts(p).sv_login, 1);
	pool_count_server(p, SV_CONNECTING, SV_INTERNAL);
	ck_assert_int_eq(pool_counts(p).sv_active, 1); /* the parameter sync before a link */
	pool_count_server(p, SV_INTERNAL, SV_ACTIVE);
	pool_count_server(p, SV_ACTIVE, SV_RELEASING);
	pc = pool_counts(p);
	ck_assert_int_eq(pc.sv_active, 0);
	ck_assert_int_eq(pc.sv_used, 1);
	pool_count_server(p, SV_RELEASING, SV_IDLE);
	pc = pool_counts(p);
	ck_assert_int_eq(pc.sv_used, 0);
	ck_assert_int_eq(pc.sv_idle, 1);
	pool_count_server(p, SV_IDLE, SV_RESERVED);
	ck_assert_int_eq(pool_counts(p).sv_used, 1); /* handed to a waiter */
	pool_count_server(p, SV_RESERVED, -1);
	/* clients: idle and linked ones are cl_active, queued ones cl_waiting */
	pool_count_client(p, -1, CL_LOGIN);
	ck_assert_int_eq(pool_counts(p).cl_active, 0);
	pool_count_client(p, CL_LOGIN, CL_IDLE);
	ck_assert_int_eq(pool_counts(p).cl_active, 1);
	pool_count_client(p, CL_IDLE, CL_WAITING);
	pc = pool_counts(p);
	ck_assert_int_eq(pc.cl_active, 0);
	ck_assert_int_eq(pc.cl_waiting, 1);
	pool_count_client(p, CL_WAITING, CL_ACTIVE);
	ck_assert_int_eq(pool_counts(p).cl_active, 1);
	pool_count_client(p, CL_ACTIVE, CL_CLOSING);
	pool_count_client(p, CL_CLOSING, -1);
	pc = pool_counts(p);
	ck_assert_int_eq(pc.cl_active + pc.cl_waiting + pc.sv_active + pc.sv_idle + pc.sv_used +
				 pc.sv_login,
			 0);
	ck_assert_uint_eq(pc.maxwait_us, 0);
}
END_TEST

/* maxwait: how long the oldest queued client has waited. */
START_TEST(test_maxwait)
{
	setup();
	db.pool_size = 0; /* every client waits */
	struct pool *p = pool_get(&db, "maxwait");
	struct client *c = calloc(1, sizeof(*c));
	ck_assert_ptr_nonnull(c);
	c->worker = w0;
	c->pool = p;
	c->wait_start_ms = conn_now_ms();
	struct server *out = NULL;
	ck_assert_int_eq(pool_acquire(p, c, &out), POOL_WAIT);
	usleep(30000);
	uint64_t mw = pool_counts(p).maxwait_us;
	ck_assert_uint_ge(mw, 20000);
	ck_assert_uint_lt(mw, 5000000);
	pool_leave_queue(p, c);
	ck_assert_uint_eq(pool_counts(p).maxwait_us, 0);
	free(c);
	db.pool_size = 2;
}
END_TEST

int main(void)
{
	Suite *s = suite_create("route_creds");
	TCase *tc = tcase_create("seams");
	tcase_add_test(tc, test_route_is_the_database_and_versioned_by_destination);
	tcase_add_test(tc, test_pools_are_keyed_by_names);
	tcase_add_test(tc, test_creds_versions);
	tcase_add_test(tc, test_derived_once_per_version);
	tcase_add_test(tc, test_state_counts);
	tcase_add_test(tc, test_maxwait);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s); /* each test in a child of its own: fresh globals */
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
