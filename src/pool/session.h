/* Session state in transaction pooling: what a client's SQL leaves on a
 * server connection, and what pgmux does about it.
 *
 * - SET / RESET / RESET ALL / DISCARD ALL are recorded for the client when
 *   their transaction commits (SET LOCAL and rolled-back SETs are not) and
 *   replayed on any server the client gets later (session_build_sync).
 * - State pgmux cannot move (SQL PREPARE, temp tables, session advisory
 *   locks, LISTEN, WITH HOLD cursors, LOAD, SET ROLE, set_config(..., false),
 *   anything it cannot analyse) pins the client to its server: one log line
 *   and one count per reason. UNLISTEN *, pg_advisory_unlock_all(),
 *   DEALLOCATE and DISCARD ALL take reasons away again; no reason left means
 *   the client multiplexes again.
 * Everything here runs on the client's worker thread. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct client;
struct server;
struct evbuffer;

enum pin_reason {
	PIN_SQL_PREPARE,
	PIN_TEMP_TABLE,
	PIN_ADVISORY_LOCK,
	PIN_LISTEN,
	PIN_HOLD_CURSOR,
	PIN_LOAD,
	PIN_SET_ROLE,
	PIN_SET_CONFIG,
	PIN_UNTRACKED,
	PIN_LARGE_STATEMENT, /* a named prepared statement too large to keep a copy of */
	PIN_NREASONS
};

/* "sql_prepare", "temp_table", ... */
const char *pin_reason_name(int reason);
/* Pins for REASON since start (process-wide). */
uint64_t pin_count(int reason);

/* What one piece of client SQL does to the session. */
struct session_effects {
	unsigned pins;      /* bitmask of (1u << enum pin_reason) it would add */
	bool sets;          /* changes settings (SET, RESET, DISCARD ALL...) */
	bool discard_all;   /* contains DISCARD ALL */
	bool deallocate_all;/* contains DEALLOCATE ALL */
	bool ddl;           /* changes the catalog (CREATE, ALTER, DROP...) */
	int nstmts;         /* statements found (0 if it could not be analysed) */
	unsigned kinds;     /* sqllex kinds bitmask of all its statements */
	int single_kind;    /* enum sqllex_kind when nstmts == 1 */
	char single_name[64];
};

/* Analyse SQL (a Query's text or a Parse's query) sent by C. With RECORD,
 * queue its setting changes under client message SEQ. Returns 0, or -1 on
 * allocation failure. */
int session_inspect(struct client *c, const char *sql, size_t len, uint64_t seq, bool record,
		    struct session_effects *fx);

/* SQL text too large to hold (a streamed Query or Parse), inspected as it
 * passes: feed it in pieces, then finish to learn what it does (the same
 * effects session_inspect reports, from each statement's first bytes and
 * the calls seen anywhere), then record its changes under SEQ if it runs.
 * NULL on allocation failure. */
struct session_stream;
struct session_stream *session_stream_new(struct client *c, uint64_t seq);
void session_stream_feed(struct session_stream *ss, const char *p, size_t n);
void session_stream_finish(struct session_stream *ss, struct session_effects *fx);
/* Queue the changes of the statements seen (session_inspect's RECORD).
 * Returns 0 / -1. */
int session_stream_record(struct session_stream *ss);
void session_stream_free(struct session_stream *ss);

/* True if statements of KINDS change what pgmux records (settings,
 * savepoints, unpinning, SQL-prepared names) when they run. */
bool session_has_effects(unsigned kinds);

/* The message a client gets when session_pinning = deny refuses PINS. */
void session_deny_message(unsigned pins, char *buf, size_t size);

/* Pin C (linked to S) for REASONS; logs each new reason once. */
void session_pin(struct client *c, const struct server *s, unsigned reasons);

/* Take REASONS off C's pins; logs session_unpinned when none is left. */
void session_unpin(struct client *c, const struct server *s, unsigned reasons);

/* An ErrorResponse reached C: its transaction will not commit. */
void session_error(struct client *c);
/* A transaction of C's ended on S: apply (COMMITTED) or drop the changes
 * queued up to client message UPTO, honouring savepoints rolled back to. */
void session_txn_end(struct client *c, struct server *s, uint64_t upto, bool committed);
/* Drop every change queued for C's transaction without applying any (its
 * link is replayed on another server, which queues them again). */
void session_abandon_txn(struct client *c);
/* ReadyForQuery with STATUS answered client message UPTO. */
void session_ready(struct client *c, struct server *s, uint64_t upto, char status);
/* A CommandComplete "ROLLBACK": the tag of a ROLLBACK TO SAVEPOINT sent
 * earlier, or else a rollback of the transaction. */
void session_rollback_seen(struct client *c);

/* True if S already carries exactly C's session settings. */
bool session_in_sync(const struct server *s, const struct client *c);
/* Append to SQL the statements that give S C's settings. Returns the number
 * of statements (0: nothing to do), or -1 if a name cannot be used. On
 * success S's records describe C's settings. */
int session_build_sync(struct server *s, struct client *c, struct evbuffer *sql);

/* S's session was reset (DISCARD ALL ran): it carries nothing of anyone. */
void session_server_reset(struct server *s);

/* Free C's session records. */
void session_client_free(struct client *c);
