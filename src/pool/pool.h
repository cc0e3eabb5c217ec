/* Pools: one per (database, user), shared by every worker. A pool owns the
 * accounting (never more than pool_size servers, connecting ones included),
 * the idle servers (one list per worker, so a client prefers a server already
 * on its own event loop) and the FIFO queue of waiting clients. The lock is
 * held only around list and counter updates, never across I/O. */
#pragma once

#include "core/authfile.h"
#include "core/config.h"
#include "pg/scram.h"
#include "lib/kvlist.h"

#include <stdbool.h>
#include <stdint.h>

struct client;
struct pool;
struct server;
struct worker;

struct pool_stats {
	int total;    /* servers open or connecting */
	int idle;     /* parked servers */
	int waiting;  /* queued clients */
};

/* What SHOW POOLS prints, with PgBouncer's names and meanings, from the
 * per-state counts the state setters keep (client_set_state,
 * server_set_state: the only writers of a state):
 * cl_active   logged-in clients not waiting (idle or linked): CL_IDLE, CL_ACTIVE
 * cl_waiting  clients queued for a server: CL_WAITING
 * sv_active   servers serving a client: SV_ACTIVE, SV_INTERNAL
 * sv_idle     servers parked, ready: SV_IDLE
 * sv_used     servers between clients (release, hand-over): SV_RELEASING, SV_RESERVED
 * sv_login    servers connecting and logging in: SV_CONNECTING
 * maxwait_us  how long the oldest queued client has waited */
struct pool_counts {
	int cl_active, cl_waiting;
	int sv_active, sv_idle, sv_used, sv_login;
	uint64_t maxwait_us;
};
struct pool_counts pool_counts(struct pool *p);
/* The setters' bookkeeping: one client or server of P left state FROM and
 * entered state TO (-1: came into being, or is gone). Any thread. */
void pool_count_client(struct pool *p, int from, int to);
void pool_count_server(struct pool *p, int from, int to);

/* Global state, set once at start. CFG and AF are borrowed for the life of
 * the process; WORKERS is the array of NWORKERS workers. */
void pool_global_init(struct config *cfg, struct authfile *af, struct worker **workers,
		      int nworkers);
const struct config *pool_config(void);
struct sockopt_tcp;
/* The TCP options of client and server sockets, from the config. */
void pool_tcp_options(struct sockopt_tcp *out);
const struct authfile *pool_authfile(void);
struct worker *pool_worker(int i);
int pool_nworkers(void);

/* The pool for (DB's name, USER), created on first use. NULL on allocation failure.
 * Thread-safe. */
struct pool *pool_get(const struct config_db *db, const char *user);

const char *pool_db_name(const struct pool *p);    /* client-facing name */
const char *pool_user(const struct pool *p);
const struct config_db *pool_db(const struct pool *p);

enum pool_acquire_result {
	POOL_GOT_SERVER, /* *OUT is a server taken from the idle list: check it, then use it */
	POOL_CONNECT,    /* a slot is counted for the caller: open a new server */
	POOL_WAIT,       /* queued: a server or slot arrives through the worker's inbox */
};

/* Client's thread. Takes only servers parked on the client's own worker;
 * when the others have some, their owner is asked to hand one over. */
enum pool_acquire_result pool_acquire(struct pool *p, struct client *c, struct server **out);

/* Server's thread, outside its bufferevent callbacks: put S back, handing it
 * to the first waiting client if there is one. */
void pool_release(struct pool *p, struct server *s);

/* Any thread: S (or a slot that never became a server) is gone. Frees the
 * slot and may grant it to a waiting client. */
void pool_slot_free(struct pool *p);

/* Client's thread: C stops waiting (timeout, disconnect). A server or slot it
 * had been granted but not yet taken goes back to the pool. */
void pool_leave_queue(struct pool *p, struct client *c);

/* Client's worker thread: take what the inbox brought C. Returns the server
 * (or NULL) and sets *SLOT if a new connection may be opened instead. */
struct server *pool_take_grant(struct pool *p, struct client *c, bool *slot);

/* S's own worker: take S, parked idle, out of its pool (its socket spoke
 * while idle). False if it was not idle any more. */
bool pool_claim_idle(struct pool *p, struct server *s);

/* Welcome parameters (the first server's ParameterStatus set). */
bool pool_welcome(struct pool *p, struct kvlist *out);
void pool_set_welcome(struct pool *p, const struct kvlist *params);
/* The welcome set itself, shared by every client of P (immutable once
 * set, for the life of the pool), or NULL while unknown. Any thread. */
const struct kvlist *pool_welcome_shared(struct pool *p);

struct creds;
/* A ClientKey recovered from a client's SCRAM login against the verifier of
 * creds VERSION, for server logins when the credentials are only a
 * verifier; it serves only logins under that same version. */
void pool_set_client_key(struct pool *p, const uint8_t key[SCRAM_KEY_LEN], uint64_t version);
bool pool_client_key(struct pool *p, uint64_t version, uint8_t key[SCRAM_KEY_LEN]);

/* The SCRAM secret client logins are checked against when CR (creds_get)
 * is a plain password: derived once per creds version, not per login.
 * Copies it to OUT and returns 0, or -1 (CR is no plain password, or out of
 * memory). */
int pool_client_scram_secret(struct pool *p, const struct creds *cr, struct scram_secret *out);

struct pool_stats pool_get_stats(struct pool *p);

/* Every worker, every second: close its parked servers past
 * server_idle_timeout or server_lifetime; worker 0 also opens servers up to
 * min_pool_size. */
void pool_janitor(struct worker *w);

/* Total servers across pools (for tests of shutdown). */
int pool_total_servers(void);

/* Set up the pool layer's per-worker state on W (hooks, deferred event).
 * Returns 0 / -1. Before the worker starts. */
int pool_worker_attach(struct worker *w) __attribute__((warn_unused_result));
/* W's thread: stop accepting and start draining clients (SIGTERM). */
void pool_worker_shutdown(struct worker *w);
