/* struct client and struct server: the two connection roles of the pool
 * layer, and the per-worker state that owns them. Internal to src/pool/.
 *
 * Threading: a client lives on one worker for its whole life. A server
 * lives on the worker of the client it serves; while idle it sits in its
 * pool with its bufferevent disabled, and a client on another worker may
 * take it (server_attach re-creates the bufferevent on the taker's base).
 * Fields marked [pool lock] are only touched under the pool's mutex. */
#pragma once

#include "lib/hmap.h"
#include "lib/kvlist.h"
#include "net/rbuf.h"
#include "net/wbuf.h"
#include "pg/frame.h"
#include "pg/startup.h"
#include "pool/pstmt.h"
#include "pool/route.h"

#include <stdbool.h>
#include <stdint.h>
#include <pthread.h>
#include <sys/queue.h>

struct bufferevent;
struct event;
struct evbuffer;
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
	AFTER_SYNC,    /* client_encoding switched: run the param sync (pending_sync) next */
	AFTER_RELEASE, /* reset or rollback done: back to the pool */
	AFTER_DISCARD, /* rollback done in session mode: DISCARD ALL next, then the pool */
};

/* What happens to the reply of a queued request. */
enum req_action {
	REQ_FWD,  /* the server's reply goes to the client */
	REQ_SKIP, /* pgmux sent it: its reply is dropped (errors still go through) */
	REQ_FAKE, /* not sent: pgmux writes the reply when it reaches the head */
};

/* What a REQ_FAKE entry says. */
enum req_fake {
	FAKE_PARSE_COMPLETE,
	FAKE_CLOSE_COMPLETE,
	FAKE_DEALLOCATE,     /* CommandComplete "DEALLOCATE" + ReadyForQuery */
	FAKE_DEALLOCATE_ALL, /* CommandComplete "DEALLOCATE ALL" + ReadyForQuery */
};

/* One request sent to (or answered on behalf of) the server, in order: a
 * reply pops the head (ParseComplete a 'P', BindComplete a 'B', CloseComplete
 * a 'C', RowDescription/NoData a 'D', CommandComplete/EmptyQuery/
 * PortalSuspended an 'E', ReadyForQuery an 'S', 'Q' or 'F'). */
struct req {
	uint64_t seq;          /* client message number; 0 for pgmux's own */
	char type;             /* protocol message type */
	uint8_t action;        /* enum req_action */
	uint8_t fake;          /* enum req_fake (REQ_FAKE) */
	struct sstmt *ss;      /* held: P: the statement it prepares on the server */
	struct cstmt *cs;      /* held: client statement a P registered / a C removed */
	uint64_t mark;         /* server statement registrations when it was sent */
	uint64_t cmark;        /* the client's statement registrations when it was sent */
	bool restore;          /* P: cs was removed by it (DEALLOCATE): put back if skipped */
	uint64_t sent_ms;      /* when it was queued (only with query_timeout set) */
	unsigned deny_pins;    /* Q: a streamed Query refused (session_pinning = deny) after it
				* was sent: its ErrorResponse is replaced by pgmux's */
	char *err_msg;         /* owned: P of an injected 26000: an error answering it (the
				* 25P02 of an aborted transaction) is replaced by this one, as
				* PostgreSQL looks a statement up before it checks the
				* transaction */
};

/* Ring buffer of outstanding requests, oldest first. */
struct reqq {
	struct req *v; /* owned */
	uint32_t head, count, cap;
};

/* A session-state change from a client statement, kept until its
 * transaction's outcome is known. */
struct set_op {
	uint64_t seq;          /* client message that carried it */
	int kind;              /* enum sqllex_kind: SET, RESET, RESET_ALL, DISCARD_ALL,
				* UNLISTEN (all), ADVISORY_UNLOCK_ALL, DEALLOCATE(_ALL) */
	char *name;            /* owned; NULL if none */
	char *value;           /* owned: SQL text of the value; NULL if none */
};

#define UNNAMED_UNKNOWN UINT64_MAX

typedef struct ssl_st SSL;

struct client {
	enum client_state state;
	uint64_t id;                 /* unique for the life of the process, never reused */
	struct worker *worker;       /* borrowed: the thread this client lives on */
	struct bufferevent *bev;     /* owned */
	int fd;                      /* owned: the socket (the bufferevent does not close it) */
	struct wbuf wb;              /* direct writes on bev */
	struct rbuf rb;              /* reads into bev's input */
	SSL *ssl;                    /* owned: TLS with the client, or NULL (plaintext) */
	struct bufferevent *hs;      /* owned: the TLS handshake's, while it runs */
	char addr[64];               /* peer "ip:port" for logs */
	struct pool *pool;           /* borrowed: pools live until exit */
	struct server *server;       /* borrowed: linked server (CL_ACTIVE) */
	struct server *reserved;     /* [pool lock] server handed over while waiting */
	bool slot_granted;           /* [pool lock] may open a new server while waiting */
	bool in_inbox;               /* [inbox lock] queued on its worker's inbox */
	struct kvlist params;        /* owned: session parameters to apply on servers */
	struct kvlist view;          /* owned: reported parameter values this client last saw,
				      * where they differ from *welcome (client_view_get) */
	const struct kvlist *welcome;/* borrowed: its pool's welcome set, shared */
	struct login *login;         /* owned while CL_LOGIN */
	uint32_t cancel_pid;         /* BackendKeyData handed to this client */
	uint32_t cancel_key;
	uint64_t link_gen;           /* bumped at every link; stale cancels see a change */
	bool login_done;             /* AuthenticationOk sent */
	bool over_limit;             /* accepted past max_client_conn: refuse after startup */
	bool finishing_login;        /* waiting for a server only to learn its parameters */
	bool closing_after_txn;      /* shutdown: close at the end of this transaction */
	struct frame_stream stream;  /* the rest of a client message being passed on (or
				      * dropped) as it arrives */
	uint64_t last_active_ms;     /* for idle_client_timeout */
	uint64_t wait_start_ms;      /* when it joined the wait queue */
	/* transaction pooling: session state pgmux carries from server to server */
	struct hmap stmts;           /* owned: name -> struct cstmt (named prepared statements) */
	uint64_t stmt_regs;          /* names registered so far (struct cstmt.reg) */
	uint8_t *unnamed;            /* owned: body of its last Parse of the unnamed statement */
	size_t unnamed_len;          /* 0: it has no unnamed statement */
	size_t unnamed_cap;
	uint64_t unnamed_gen;        /* bumped at each Parse of the unnamed statement */
	unsigned unnamed_kinds;      /* sqllex kinds of its query (session effects at Bind) */
	bool unnamed_ddl;            /* ...and whether it changes the catalog */
	unsigned unnamed_deny;       /* pins its (streamed) text would cause, refused at its Bind
				      * under session_pinning = deny */
	struct fe_large *large;      /* owned: a Query or Parse too large to hold, being
				      * streamed to the server (frontend.c) */
	struct kvlist sets;          /* owned: name -> SQL value of its committed SETs */
	uint64_t sets_version;       /* bumped whenever sets changes */
	struct set_op *ops;          /* owned: changes waiting for their transaction's end */
	int nops, capops;
	bool txn_failed;             /* an ErrorResponse since the last transaction end */
	bool rollback_pending;       /* a "ROLLBACK" tag since the last ReadyForQuery */
	int rollback_tos;            /* ROLLBACK TO SAVEPOINTs sent whose tag has not come */
	unsigned pins;               /* bitmask of enum pin_reason: pinned while nonzero */
	struct kvlist sql_prepared;  /* owned: names of SQL-level PREPAREs (value unused) */
	/* relink.c: bytes consumed on the current link while it has answered nothing */
	uint8_t *relink_buf;         /* owned */
	size_t relink_len, relink_cap;
	size_t relink_skip;          /* next bytes consumed are a replay of kept ones */
	bool relink_active;          /* the link has sent nothing to the client yet */
	bool relink_ok;              /* everything consumed on the link is kept */
	bool relink_begin_only;      /* every statement the link ran starts a transaction block
				      * (BEGIN): a backend killed under it undid all of it */
	unsigned relink_tries;       /* dead servers skipped for the current message */
	unsigned pins_at_link;       /* pins when the link began */
	struct event *timer;         /* owned: login timeout / borrow timeout */
	TAILQ_ENTRY(client) wait_entry;   /* [pool lock] pool's wait queue */
	TAILQ_ENTRY(client) inbox_entry;  /* [inbox lock] worker inbox */
	TAILQ_ENTRY(client) worker_entry; /* worker's client list */
	TAILQ_ENTRY(client) reap_entry;   /* worker's reap list */
};

enum server_tls {
	SV_TLS_NONE,      /* plaintext (not asked for, or refused under prefer) */
	SV_TLS_REQUESTED, /* SSLRequest sent, waiting for the one-byte answer */
	SV_TLS_HANDSHAKE, /* 'S' received, TLS handshake in progress */
	SV_TLS_ON,        /* handshake done */
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
	SSL *ssl;                    /* owned: TLS towards the server, or NULL (plaintext) */
	struct bufferevent *hs;      /* owned: the TLS handshake's, while it runs */
	enum server_tls tls;         /* where TLS negotiation is during login */
	bool tls_fallback;           /* prefer: reconnected in plaintext after TLS failed */
	struct pool *pool;           /* borrowed */
	struct route route;          /* where it was opened (pool/route): its cancels go there */
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
	uint64_t synced_version;     /* that client's sets_version its state matches */
	bool dirty_params;           /* a client changed settings: RESET ALL before another one */
	struct kvlist applied_sets;  /* owned: client SETs pgmux replayed on it (name -> SQL) */
	struct sstmt_reg stmts;      /* named statements prepared on it */
	char *pending_sync;          /* owned: the sync query to run after AFTER_SYNC */
	char (*to_close)[32];        /* owned: its statements to Close once nothing is in flight */
	int nclose, capclose;
	uint64_t unnamed_owner;      /* client id whose unnamed statement it holds; 0: none;
				* UNNAMED_UNKNOWN: maybe someone's (a skipped Parse/Close) */
	uint64_t unnamed_gen;        /* that client's unnamed_gen */
	bool ext_failed;             /* an error in extended messages: the backend skips to Sync */
	bool ddl_pending;            /* DDL sent: bump the DDL epoch again at the next
				      * ReadyForQuery, when it has run (pstmt.h) */
	bool tentative_stmts;        /* statements prepared inside the open transaction block */
	bool block_failed;           /* an error or a ROLLBACK (TO) since the last ReadyForQuery */
	uint64_t orphan_seen;        /* pstmt_orphan_gen() when its orphans were last closed */
	/* transparent retry of a segment that failed with 0A000 (stale plan) */
	struct evbuffer *capture;    /* owned: client messages of the segment, as received */
	int capture_state;           /* frontend.c: whether capture holds the segment */
	uint64_t capture_seq;        /* client message number the capture starts with */
	bool capture_described;      /* the captured segment has a Describe */
	bool retry_armed;            /* error swallowed: replay capture after its ReadyForQuery */
	bool retried;                /* this segment is a replay: no second retry */
	bool copy_open;              /* between CopyInResponse and the client's CopyDone/Fail */
	bool copy_extended;          /* that copy was started by Execute: a Sync must follow it */
	bool server_in_copy;         /* the backend is in copy-in mode (CopyInResponse seen, no
				      * CommandComplete or ErrorResponse yet) */
	uint64_t copy_start_seq;     /* sync points after this seq and before CopyDone get no Z */
	unsigned copy_done_early;    /* CopyDone/CopyFail sent behind a request, before any copy
				      * began: the copy it starts is over when it begins */
	uint64_t copy_done_seq;      /* the client message number of the last of them */
	bool ext_open;               /* extended-protocol messages sent since the last Sync */
	uint64_t seq;                /* client messages forwarded on this link */
	struct reqq reqs;            /* outstanding requests */
	struct frame_stream stream;  /* the rest of a server message being passed on as it
				      * arrives, or dropped: the reply to pgmux's own request */
	char internal_err[8];        /* SQLSTATE of an error during the internal query */
	char internal_msg[256];      /* its message */
	int cancels_in_flight;       /* forwarded cancels whose connection is still open */
	bool draining;               /* its client left with requests outstanding: replies are
				      * dropped until none is left, then it is rolled back and
				      * released (pool/link.c) */
	bool drain_reset;            /* ...and reset with DISCARD ALL (session mode, pinned) */
	struct event *drain_timer;   /* owned: DRAIN_TIMEOUT_MS while draining, on worker's base */
	uint64_t reqs_answered;      /* requests popped so far (query_timeout progress check) */
	uint64_t qt_cancel_ms;       /* when query_timeout sent a cancel; 0: none pending */
	uint64_t qt_answered;        /* reqs_answered at that moment */
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
