/* struct client and struct server: the two connection roles of the pool
 * layer, and the per-worker state that owns them. Internal to src/pool/.
 *
 * Threading: a client lives on one worker for its whole life. A server
 * lives on the worker of the client it serves; while idle it sits in its
 * pool with its bufferevent disabled, and a client on another worker may
 * take it (server_attach re-creates the bufferevent on the taker's base).
 * Fields marked [pool lock] are only touched under the pool's mutex. */
#pragma once

#include "lib/kvlist.h"
#include "net/rbuf.h"
#include "net/wbuf.h"
#include "pg/startup.h"

#include <stdbool.h>
#include <stdint.h>
#include <pthread.h>
#include <sys/queue.h>

struct bufferevent;
struct event;
struct pool;
struct worker;
struct scram_server;
struct scram_client;

enum client_state {
	CL_LOGIN,   /* startup and authentication */
	CL_IDLE,    /* logged in, no server, nothing in flight */
	CL_WAITING, /* wants a server: queued in its pool */
	CL_ACTIVE,  /* linked to a server */
	CL_CLOSING, /* finalized; freed on the next loop turn */
};

enum server_state {
	SV_CONNECTING, /* TCP connect and login in progress */
	SV_INTERNAL,   /* running pgmux's own query (SET sync, DISCARD ALL, ROLLBACK) */
	SV_ACTIVE,     /* linked to a client, forwarding */
	SV_RELEASING,  /* done with its client; handed back to the pool next loop turn */
	SV_IDLE,       /* parked in its pool [pool lock] */
	SV_RESERVED,   /* handed to a waiting client on some worker [pool lock] */
	SV_CLOSING,    /* finalized; freed on the next loop turn */
};

/* What pgmux does once an internal query finishes. */
enum server_after {
	AFTER_LINK,    /* param sync done: start forwarding the client's messages */
	AFTER_RELEASE, /* reset or rollback done: back to the pool */
	AFTER_DISCARD, /* rollback done in session mode: DISCARD ALL next, then the pool */
};

/* One request that will be answered by ReadyForQuery (Query, Sync,
 * FunctionCall), tagged with the client message number that sent it. */
struct sync_entry {
	uint64_t seq;
	char kind;
};

/* Ring buffer of outstanding sync points, oldest first. */
struct syncq {
	struct sync_entry *v; /* owned */
	uint32_t head, count, cap;
};

struct client {
	enum client_state state;
	uint64_t id;                 /* unique for the life of the process, never reused */
	struct worker *worker;       /* borrowed: the thread this client lives on */
	struct bufferevent *bev;     /* owned */
	struct wbuf wb;              /* direct writes on bev */
	struct rbuf rb;              /* reads into bev's input */
	char addr[64];               /* peer "ip:port" for logs */
	struct pool *pool;           /* borrowed: pools live until exit */
	struct server *server;       /* borrowed: linked server (CL_ACTIVE) */
	struct server *reserved;     /* [pool lock] server handed over while waiting */
	bool slot_granted;           /* [pool lock] may open a new server while waiting */
	bool in_inbox;               /* [inbox lock] queued on its worker's inbox */
	struct startup_packet sp;    /* owned: user, database and startup parameters */
	struct kvlist params;        /* owned: session parameters to apply on servers */
	struct kvlist view;          /* owned: reported parameter values this client last saw */
	struct login *login;         /* owned while CL_LOGIN */
	uint32_t cancel_pid;         /* BackendKeyData handed to this client */
	uint32_t cancel_key;
	uint64_t link_gen;           /* bumped at every link; stale cancels see a change */
	bool login_done;             /* AuthenticationOk sent */
	bool over_limit;             /* accepted past max_client_conn: refuse after startup */
	bool finishing_login;        /* waiting for a server only to learn its parameters */
	bool closing_after_txn;      /* shutdown: close at the end of this transaction */
	uint32_t stream_left;        /* body bytes of a client message still to forward */
	bool discard_stream;         /* drop (not forward) the rest of that message */
	uint64_t last_active_ms;     /* for idle_client_timeout */
	uint64_t wait_start_ms;      /* when it joined the wait queue */
	struct event *timer;         /* owned: login timeout / borrow timeout */
	TAILQ_ENTRY(client) wait_entry;   /* [pool lock] pool's wait queue */
	TAILQ_ENTRY(client) inbox_entry;  /* [inbox lock] worker inbox */
	TAILQ_ENTRY(client) worker_entry; /* worker's client list */
	TAILQ_ENTRY(client) reap_entry;   /* worker's reap list */
};

struct server {
	enum server_state state;
	enum server_after after;     /* what follows the internal query */
	struct worker *worker;       /* borrowed: base the bufferevent lives on */
	struct bufferevent *bev;     /* owned */
	struct wbuf wb;              /* direct writes on bev (after connect) */
	struct rbuf rb;              /* reads into bev's input (after connect) */
	/* bev is NULL while the server is handed from one worker to another */
	int fd;                      /* owned (bufferevent does not close it) */
	struct pool *pool;           /* borrowed */
	struct client *client;       /* borrowed: linked client, or the login waiting on us */
	uint32_t be_pid;             /* BackendKeyData from the server */
	uint32_t be_key;
	struct kvlist reported;      /* owned: ParameterStatus values as the server reported them */
	struct kvlist applied;       /* owned: parameters pgmux SET on it (raw client values) */
	struct scram_client *scram;  /* owned during login */
	struct event *timer;         /* owned: connect/login timeout */
	char txn;                    /* status byte of the last ReadyForQuery */
	bool logged_in;              /* ReadyForQuery after login seen */
	bool dead;                   /* EOF or error seen while not linked: drop at next take */
	bool drain_then_release;     /* released with output still queued: release once written */
	uint64_t last_client_id;     /* id of the last client linked (identity only) */
	bool dirty_params;           /* a reported parameter changed under a client: resync */
	bool copy_open;              /* between CopyInResponse and the client's CopyDone/Fail */
	bool copy_extended;          /* that copy was started by Execute: a Sync must follow it */
	bool server_in_copy;         /* the backend is in copy-in mode (CopyInResponse seen, no
				      * CommandComplete or ErrorResponse yet) */
	uint64_t copy_start_seq;     /* sync points after this seq and before CopyDone get no Z */
	bool ext_open;               /* extended-protocol messages sent since the last Sync */
	uint64_t seq;                /* client messages forwarded on this link */
	struct syncq syncs;          /* outstanding sync points */
	uint32_t stream_left;        /* body bytes of a server message still to forward */
	char internal_err[8];        /* SQLSTATE of an error during the internal query */
	char internal_msg[256];      /* its message */
	int cancels_in_flight;       /* forwarded cancels whose connection is still open */
	uint64_t created_ms;
	uint64_t idle_since_ms;
	TAILQ_ENTRY(server) idle_entry;  /* [pool lock] pool idle list */
	TAILQ_ENTRY(server) reap_entry;  /* worker's release/reap lists */
};

TAILQ_HEAD(client_list, client);
TAILQ_HEAD(server_list, server);

/* The pool layer's per-worker state (struct worker.ctx). */
struct pool_worker {
	struct worker *worker;        /* borrowed */
	struct client_list clients;   /* every client on this worker */
	int nclients;
	struct client_list reap_clients; /* finalized, to free */
	struct server_list reap_servers; /* finalized, to free */
	struct server_list releasing;    /* SV_RELEASING: hand back to the pool */
	pthread_mutex_t inbox_lock;
	struct client_list inbox;        /* [inbox_lock] waiters that got a server or slot */
	bool listening;                  /* listener enabled */
	unsigned ticks;                  /* 100 ms ticks seen */
};

uint64_t conn_now_ms(void);

#ifndef TAILQ_FOREACH_SAFE
#define TAILQ_FOREACH_SAFE(var, head, field, tvar)                                                  \
	for ((var) = TAILQ_FIRST((head)); (var) && ((tvar) = TAILQ_NEXT((var), field), 1);         \
	     (var) = (tvar))
#endif
