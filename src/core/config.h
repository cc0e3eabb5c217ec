/* pgmux configuration: the INI file parsed with inih into an immutable,
 * refcounted snapshot. One option table in config.c drives parsing, defaults,
 * validation and --check; a config key, its struct field and its documented
 * name are the same word. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

enum pool_mode { POOL_MODE_TRANSACTION, POOL_MODE_SESSION };
/* cert: the client's TLS certificate (verified against client_tls_ca_file)
 * must name the user in its CommonName; the auth_file still supplies the
 * password pgmux logs in to the server with. */
enum auth_type { AUTH_SCRAM_SHA_256, AUTH_MD5, AUTH_TRUST, AUTH_CERT };
/* What transaction pooling does with a statement that leaves session state
 * pgmux cannot move to another server connection (SQL PREPARE, temp
 * objects, session advisory locks, LISTEN, WITH HOLD cursors, LOAD,
 * SET ROLE, set_config(..., false), a query it cannot analyse). No effect
 * in session pool_mode. */
enum session_pinning {
	PINNING_ALLOW, /* run it and pin the client to its server connection */
	PINNING_DENY,  /* refuse it with SQLSTATE 0A000; the client keeps multiplexing */
};

/* client_tls_sslmode, with PgBouncer's names and meanings for the client
 * side. */
enum tls_sslmode {
	TLS_DISABLE,     /* an SSLRequest is answered 'N' */
	TLS_ALLOW,       /* TLS if the client asks for it, plaintext otherwise */
	TLS_PREFER,      /* the same, for clients */
	TLS_REQUIRE,     /* a plaintext login is refused (28000) */
	TLS_VERIFY_CA,   /* ...and the client must present a certificate client_tls_ca_file
			  * signed */
	TLS_VERIFY_FULL, /* the same, for clients */
};

/* One [database.NAME] section. */
struct config_db {
	char *name;          /* owned: the name clients connect to (section suffix) */
	char *host;          /* owned: server host or IP; default 127.0.0.1 */
	int port;            /* server port; default 5432 */
	char *dbname;        /* owned: database name on the server; default: name */
	int pool_size;       /* server connections cap per user; default: default_pool_size */
	int min_pool_size;   /* connections kept open per user; default: min_pool_size */
	enum session_pinning session_pinning; /* default: session_pinning of [pgmux] */
	int line;            /* line of the section header, for messages */
};

struct config {
	int refcount;                  /* atomic; see config_ref/config_unref */
	char *path;                    /* owned: absolute path of the file loaded */

	char *listen_addr;             /* owned: default "127.0.0.1" */
	int listen_port;               /* default 6432 */
	int workers;                   /* event-loop threads; 0 in the file = one per CPU (resolved) */
	enum pool_mode pool_mode;      /* default transaction */
	enum session_pinning session_pinning; /* default allow; per database unless overridden */
	enum auth_type auth_type;      /* default scram-sha-256; cert needs client_tls_sslmode
					* verify-ca or verify-full */
	char *auth_file;               /* owned: resolved against the config's directory; NULL if unset */
	int max_client_conn;           /* default 10000 */
	int default_pool_size;         /* default 20 */
	int min_pool_size;             /* default 0 */
	int connection_borrow_timeout; /* seconds a client waits for a server; default 120; also
					* accepted as query_wait_timeout (PgBouncer's name) */
	int query_timeout;             /* seconds; a request the server has not answered after
					* this long is cancelled, and its server closed if the
					* cancel gets no answer within QUERY_CANCEL_GRACE; 0 = off
					* (default) */
	int max_prepared_statements;   /* per server connection, how many distinct named prepared
					* statements pgmux keeps prepared; least recently used
					* ones are closed beyond it. 1..100000; default 200 */
	int idle_client_timeout;       /* seconds; default 1800; 0 = never */
	int server_idle_timeout;       /* seconds; default 600; 0 = never */
	int server_lifetime;           /* seconds; default 3600; 0 = never */
	int server_connect_timeout;    /* seconds; default 5 */
	int client_login_timeout;      /* seconds; default 15 */
	int tcp_keepalive;             /* 1 (default): SO_KEEPALIVE on client and server sockets */
	int tcp_keepidle;              /* seconds before the first probe; 0 = OS default */
	int tcp_keepintvl;             /* seconds between probes; 0 = OS default */
	int tcp_keepcnt;               /* probes before the connection is dropped; 0 = OS default */
	int tcp_user_timeout;          /* ms sent data may stay unacknowledged; 0 = OS default */
	int shutdown_timeout;          /* seconds; default 30; 0 = don't wait for transactions */
	int log_level;                 /* enum log_level from core/log.h; default info */
	enum tls_sslmode client_tls_sslmode; /* default disable */
	char *client_tls_cert_file;    /* owned, absolute: PEM certificate chain; NULL if unset */
	char *client_tls_key_file;     /* owned, absolute: PEM private key; NULL if unset */
	char *client_tls_ca_file;      /* owned, absolute: CAs for client certificates; NULL */
	char *client_tls_protocols;    /* owned: default "secure" (TLS 1.2 and 1.3) */
	char *client_tls_ciphers;      /* owned: default "default" */
	enum tls_sslmode server_tls_sslmode; /* libpq's sslmode meanings; default prefer */
	char *server_tls_ca_file;      /* owned, absolute: CAs that sign server certificates */
	char *server_tls_cert_file;    /* owned, absolute: client certificate towards servers */
	char *server_tls_key_file;     /* owned, absolute: its key */
	char *server_tls_protocols;    /* owned: default "secure" */
	char *server_tls_ciphers;      /* owned: default "default" */

	struct config_db *dbs;         /* owned array of ndbs */
	int ndbs;                      /* entries in dbs; at least 1 in a loaded config */
};

/* Called once per problem found: file, line (0 when not tied to a line) and
 * a human-readable reason. */
typedef void (*config_error_fn)(void *arg, const char *file, int line, const char *reason);

/* Parse and validate PATH. On success returns a snapshot with refcount 1.
 * On any problem calls ERR for every problem found (all of them, not just
 * the first) and returns NULL. ERR may be NULL. */
struct config *config_load(const char *path, config_error_fn err, void *arg)
	__attribute__((warn_unused_result));

/* Take / drop a reference. config_unref accepts NULL; the last unref frees. */
struct config *config_ref(struct config *cfg);
void config_unref(struct config *cfg);

/* Parse a client_tls_protocols value (PgBouncer's: "secure", "all",
 * "legacy", or a list of tlsv1.2 / tlsv1.3 separated by commas or blanks)
 * into OpenSSL's protocol version numbers. "all" and "legacy" mean 1.2
 * and 1.3: pgmux speaks nothing older. Returns 0, or -1 if the value names
 * nothing usable (tlsv1.0 and tlsv1.1 included). */
int config_tls_protocols(const char *value, int *min, int *max);
const char *config_tls_sslmode_name(enum tls_sslmode m);

/* The [database.NAME] section for NAME, or NULL. Borrowed from CFG. */
const struct config_db *config_find_db(const struct config *cfg, const char *name);

const char *config_pool_mode_name(enum pool_mode m);
const char *config_auth_type_name(enum auth_type t);
/* "allow" or "deny" ("unknown" if out of range), as written in the file. */
const char *config_session_pinning_name(enum session_pinning s);
