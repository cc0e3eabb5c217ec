/* libFuzzer harness: config_load, as main.c calls it at start and on
 * SIGHUP. The input is the INI file: it is written to pgmux.ini in a
 * directory of this process's own (fuzz_scratch_dir: $TMPDIR, /dev/shm or
 * /tmp), rewritten for every input, and loaded; a valid auth file
 * userlist.txt sits next to it so that "auth_file = userlist.txt" loads.
 * An auth_file in the input may name any path: config_load only opens and
 * fstats it (O_NONBLOCK), which is fine.
 *
 * Checked: config_load returns NULL exactly when it reported a problem,
 * problems never carry a control byte from the file (log lines), and
 * a loaded snapshot has what the daemon relies on (at least one database,
 * every string set, ranges, an absolute auth_file). Seeds: corpus/fuzz_config
 * (etc/pgmux.ini and the unit test fixtures among them). */
#include "fuzz_common.h"

#include "core/config.h"

static char ini_path[600], auth_path[600];

static void cleanup(void)
{
	const char *dir = fuzz_scratch_dir();

	if (ini_path[0])
		unlink(ini_path);
	if (auth_path[0])
		unlink(auth_path);
	if (dir)
		rmdir(dir);
}

static void count_problem(void *arg, const char *file, int line, const char *reason)
{
	int *n = arg;

	FUZZ_CHECK(file && reason && reason[0] && line >= 0);
	FUZZ_CHECK(strlen(reason) < 4096);
	/* names and values from the file are echoed with control bytes as '?' */
	for (const char *p = reason; *p; p++)
		FUZZ_CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
	(*n)++;
}

static void check_config(const struct config *cfg)
{
	FUZZ_CHECK(cfg->refcount == 1 && cfg->path && cfg->path[0] == '/');
	FUZZ_CHECK(cfg->listen_addr && cfg->listen_addr[0]);
	FUZZ_CHECK(cfg->listen_port >= 1 && cfg->listen_port <= 65535);
	FUZZ_CHECK(cfg->workers >= 1);
	FUZZ_CHECK(!cfg->auth_file || cfg->auth_file[0] == '/');
	FUZZ_CHECK(cfg->auth_file || cfg->auth_type == AUTH_TRUST);
	FUZZ_CHECK(cfg->min_pool_size <= cfg->default_pool_size);
	FUZZ_CHECK(strcmp(config_pool_mode_name(cfg->pool_mode), "unknown") != 0);
	FUZZ_CHECK(strcmp(config_auth_type_name(cfg->auth_type), "unknown") != 0);
	FUZZ_CHECK(strcmp(config_session_pinning_name(cfg->session_pinning), "unknown") != 0);
	FUZZ_CHECK(cfg->ndbs >= 1 && cfg->dbs);
	for (int i = 0; i < cfg->ndbs; i++) {
		const struct config_db *db = &cfg->dbs[i];

		FUZZ_CHECK(db->name && db->name[0] && strlen(db->name) <= 63);
		FUZZ_CHECK(db->host && db->host[0] && db->dbname && db->dbname[0]);
		FUZZ_CHECK(db->port >= 1 && db->port <= 65535);
		FUZZ_CHECK(db->pool_size >= 1 && db->min_pool_size <= db->pool_size);
		FUZZ_CHECK(strcmp(config_session_pinning_name(db->session_pinning), "unknown") !=
		           0);
		/* names are unique: the lookup finds this very entry */
		FUZZ_CHECK(config_find_db(cfg, db->name) == db);
	}
	FUZZ_CHECK(config_find_db(cfg, "") == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ini_path[0]) {
		const char *dir = fuzz_scratch_dir();
		static const char userlist[] = "\"app\" \"secret\"\n\"postgres\" \"md5"
		                               "0123456789abcdef0123456789abcdef\"\n";

		FUZZ_CHECK(dir != NULL);
		snprintf(ini_path, sizeof(ini_path), "%s/pgmux.ini", dir);
		snprintf(auth_path, sizeof(auth_path), "%s/userlist.txt", dir);
		FUZZ_CHECK(fuzz_write_file(auth_path, (const uint8_t *)userlist,
		                           sizeof(userlist) - 1) == 0);
		atexit(cleanup);
	}
	FUZZ_CHECK(fuzz_write_file(ini_path, data, size) == 0);

	int problems = 0;
	struct config *cfg = config_load(ini_path, count_problem, &problems);
	FUZZ_CHECK((cfg == NULL) == (problems > 0));
	if (cfg) {
		check_config(cfg);
		/* what a reload does: another reference, dropped later */
		FUZZ_CHECK(config_ref(cfg) == cfg);
		config_unref(cfg);
	}
	config_unref(cfg);
	/* without a callback the result is the same */
	cfg = config_load(ini_path, NULL, NULL);
	FUZZ_CHECK((cfg == NULL) == (problems > 0));
	config_unref(cfg);
	return 0;
}
