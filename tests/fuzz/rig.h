/* An in-process pgmux for the data-path fuzz harnesses (and unit tests):
 * the real client, server and pool code on one worker whose event_base the
 * rig runs itself, without threads. The rig writes a config (config_load on
 * a temporary file), creates worker 0 with worker_new + pool_worker_attach
 * and calls pool_global_init, exactly as main.c does, then plays both ends:
 *
 * - clients: socketpair(AF_UNIX) pairs, one end handed to client_accept(),
 *   the other written by the rig in chunks and read back. What pgmux sends a
 *   client is checked as it arrives: it must be well framed (a length under
 *   4 anywhere is a crash), and pgmux must never send more ReadyForQuery
 *   than the Query, Sync and FunctionCall messages the client sent, plus one
 *   for the login;
 * - the backend: a fake PostgreSQL on 127.0.0.1 (an evconnlistener on the
 *   same base) that logs pgmux in (trust, cleartext, md5 or SCRAM-SHA-256)
 *   and answers like a backend would: simple and extended query protocol
 *   with PostgreSQL's transaction states, the skip to Sync after an error,
 *   named and unnamed statements and portals, row limits, COPY FROM STDIN
 *   (Sync and Flush ignored in copy-in, later copy messages dropped), COPY
 *   TO STDOUT, ParameterStatus for SET, set_config and RESET, and a few
 *   words in the SQL that make it misbehave on purpose (see rig.c). Its
 *   replies can be held back and released, dropped or mixed with crafted
 *   messages by a harness (scripted mode);
 * - the loop: rig_run() runs event_base_loop(EVLOOP_NONBLOCK) turns, moving
 *   client bytes in between, until nothing moves for a few turns, with a
 *   hard cap so that no input can hang (hitting the cap is a livelock and
 *   a crash).
 *
 * A broken invariant prints "rig: INVARIANT BROKEN: ..." and traps.
 *
 * Between inputs rig_end() closes every client, makes the backend close
 * every server connection, runs the loop until pgmux's pools are back to
 * zero servers and zero clients, and checks that no file descriptor leaked
 * (a crash otherwise). With the honest backend it also checks that, once
 * every client is gone, every server pgmux still counts is idle in its pool
 * (not stuck waiting for a reply that will not come, or not reading), that
 * each was left clean (outside a transaction, not in COPY, no
 * extended-protocol message since the last Sync, no half message), and that
 * pgmux never prepared one of its own statement names twice on a server or
 * used one it never sent that server. The loop does not call itself settled
 * while TCP still holds unsent bytes between pgmux and the backend (both
 * ends are in this process; the backend sets TCP_NODELAY as PostgreSQL
 * does).
 *
 * Environment: RIG_LOG=info (or debug) shows pgmux's log; RIG_TRACE=1 every
 * message the fake backend and the clients send and get; RIG_STATS=1, at
 * exit, the inputs run and the loop turns spent waiting for TCP between
 * pgmux and the backend (and each such wait as it starts); RIG_AVOID, see
 * rig_avoiding(). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rig;
struct rig_client;

/* How clients authenticate to pgmux (auth_type). */
enum rig_auth { RIG_AUTH_TRUST, RIG_AUTH_MD5, RIG_AUTH_SCRAM };

/* How the fake backend authenticates pgmux. */
enum rig_be_auth { RIG_BE_TRUST, RIG_BE_CLEARTEXT, RIG_BE_MD5, RIG_BE_SCRAM };

/* The users of the auth_file (every password is RIG_PASSWORD). */
#define RIG_USER_PLAIN "plain"     /* plain-text password */
#define RIG_USER_MD5   "md5user"   /* md5 hash */
#define RIG_USER_SCRAM "scramuser" /* SCRAM verifier */
#define RIG_PASSWORD   "secret"
#define RIG_DB         "db" /* the one [database.db] */

/* One pgmux configuration. Each distinct one is written and loaded once
 * and kept (pgmux's pools point into it). */
struct rig_config {
	enum rig_auth auth;
	bool session;     /* pool_mode = session (else transaction) */
	bool deny;        /* session_pinning = deny */
	int max_prepared; /* max_prepared_statements; 0 = default (200) */
	int pool_size;    /* 0 = 2 */
	bool tls;         /* client_tls_sslmode = prefer, with a certificate the rig
			   * makes: an SSLRequest is answered S and direct TLS is
			   * taken; the client's TLS bytes are whatever the input says,
			   * and what pgmux sends back over TLS is not parsed */
};

/* The rig of this process, created on first use (aborts if it cannot be). */
struct rig *rig_get(void);

/* Start an input: use CFG (all clients and servers are gone by now), the
 * honest unscripted backend with BE_AUTH, and note the open descriptors. */
void rig_begin(struct rig *r, const struct rig_config *cfg, enum rig_be_auth be_auth);
/* End an input: close everything, wait for pgmux to settle, check for
 * leaks (see above). */
void rig_end(struct rig *r);

/* Run the loop until nothing moves (always true: at the cap it traps). */
bool rig_run(struct rig *r);
/* Run one loop turn. Returns true if something moved. */
bool rig_turn(struct rig *r);
/* Turns run since rig_begin. */
uint64_t rig_turns(const struct rig *r);

/* ---- clients ---- */

/* A new client connection (client_accept on a socketpair). */
struct rig_client *rig_client_new(struct rig *r);
/* Queue N bytes to send; they go out in chunks of the client's chunk size,
 * one chunk per loop turn. */
void rig_client_send(struct rig_client *c, const void *p, size_t n);
/* A slow client: stop (or resume) reading what pgmux sends it, so that
 * pgmux's back-pressure pauses its server. */
void rig_client_set_stalled(struct rig_client *c, bool stalled);
/* Chunk size for sends (0 = everything queued at once). */
void rig_client_set_chunk(struct rig_client *c, size_t chunk);
/* Bytes queued and not yet written. */
size_t rig_client_pending(const struct rig_client *c);
/* Close the rig's end (pgmux sees EOF). Queued bytes are dropped. */
void rig_client_close(struct rig_client *c);
/* True once pgmux closed the connection (EOF read) or the rig closed it. */
bool rig_client_gone(const struct rig_client *c);
/* True if what the client has sent so far ends with a whole message (its
 * framing as pgmux reads it: startup packets first, then typed messages),
 * and that framing still holds (no length under 4 so far). */
bool rig_client_at_boundary(const struct rig_client *c);
/* True once the client sent its StartupMessage (typed messages follow). */
bool rig_client_typed(const struct rig_client *c);

/* Queue a StartupMessage for USER on RIG_DB with NPARAMS extra NAMES[i] =
 * VALUES[i] pairs. */
void rig_client_startup(struct rig_client *c, const char *user, const char *const *names,
                        const char *const *values, int nparams);
/* Answer the authentication request pgmux sent last (runs the loop first):
 * cleartext, md5 or the next SCRAM step, with PASSWORD. Returns 1 if it
 * answered, 0 if there was nothing to answer, -1 if it could not (bad
 * server-first message, for instance). */
int rig_client_auth_step(struct rig_client *c, const char *password);
/* Startup for USER plus every authentication step with PASSWORD, until
 * the first ReadyForQuery. Returns 0, or -1 if the login failed. */
int rig_client_login(struct rig_client *c, const char *user, const char *password,
                     const char *const *names, const char *const *values, int nparams);

/* What the client has received so far. */
struct rig_client_seen {
	int ready;        /* ReadyForQuery messages */
	char status;      /* status byte of the last one */
	int errors;       /* ErrorResponse messages */
	bool fatal;       /* one of them was FATAL */
	char sqlstate[6]; /* SQLSTATE of the last ErrorResponse */
	int copy_in;      /* CopyInResponse messages */
	bool have_key;    /* BackendKeyData seen */
	uint32_t pid, key;
	uint64_t bytes; /* total bytes received */
};
const struct rig_client_seen *rig_client_seen(const struct rig_client *c);
/* Queue a CancelRequest for C's BackendKeyData (or a made-up one) on a new
 * connection, which pgmux closes after reading it. */
void rig_client_cancel(struct rig *r, const struct rig_client *c);

/* ---- message builders (append one whole message to a client's queue) ---- */

void rig_send_msg(struct rig_client *c, char type, const void *body, size_t len);
void rig_send_query(struct rig_client *c, const char *sql);
/* Parse NAME SQL with NTYPES parameter types (all 0 = unspecified). */
void rig_send_parse(struct rig_client *c, const char *name, const char *sql, int ntypes);
/* Bind PORTAL to STMT with NPARAMS text parameters "1", "2", ... */
void rig_send_bind(struct rig_client *c, const char *portal, const char *stmt, int nparams);
void rig_send_describe(struct rig_client *c, char kind, const char *name);
void rig_send_execute(struct rig_client *c, const char *portal, uint32_t max_rows);
void rig_send_close(struct rig_client *c, char kind, const char *name);
void rig_send_sync(struct rig_client *c);
void rig_send_flush(struct rig_client *c);
void rig_send_copy_data(struct rig_client *c, const char *line);
void rig_send_copy_done(struct rig_client *c);
void rig_send_copy_fail(struct rig_client *c, const char *why);
void rig_send_terminate(struct rig_client *c);

/* ---- the fake backend ---- */

/* Scripted mode: the backend's replies are queued instead of sent, and go
 * out only through rig_be_release. RIG_SCRIPT_ALL holds everything, login
 * included; RIG_SCRIPT_AFTER_LOGIN lets each connection's login through and
 * holds what follows; RIG_SCRIPT_OFF sends what is queued and answers at
 * once from then on. */
enum rig_script { RIG_SCRIPT_OFF, RIG_SCRIPT_ALL, RIG_SCRIPT_AFTER_LOGIN };
void rig_be_set_scripted(struct rig *r, enum rig_script mode);
/* Whole messages queued on the current server connection (the newest one
 * still open). */
int rig_be_queued(struct rig *r);
/* Send N queued messages (-1: all). Returns how many went. */
int rig_be_release(struct rig *r, int n);
/* Send the first N bytes of the first queued message (at most all but its
 * last byte); the rest stays queued. */
void rig_be_release_part(struct rig *r, size_t n);
/* Drop N queued messages. */
void rig_be_drop(struct rig *r, int n);
/* Send bytes as they are on the current server connection (before what is
 * queued). */
void rig_be_inject(struct rig *r, const void *p, size_t n);
/* Send one message of TYPE with BODY. */
void rig_be_inject_msg(struct rig *r, char type, const void *body, size_t len);
/* Close the current server connection (pgmux sees EOF). */
void rig_be_close(struct rig *r);
/* Server connections that have sent pgmux something pgmux had to answer
 * (StartupMessage, PasswordMessage, Query, Sync, FunctionCall, Flush)
 * since the last call: how many times the script may take its turn. */
int rig_be_take_demands(struct rig *r);
/* Server connections accepted since rig_begin. */
int rig_be_accepted(const struct rig *r);
/* Whether the current server connection is open. */
bool rig_be_connected(const struct rig *r);

/* Turn the end-of-input checks that need an honest backend off for this
 * input (a harness that scripted the backend's replies). */
void rig_set_scripted_input(struct rig *r);

/* True if RIG_AVOID in the environment names SHAPE: an input shape that
 * hits a known pgmux bug, skipped while fuzzing for the next one (rig.c
 * lists them; never on by default, so regression inputs replay the bug). */
bool rig_avoiding(const char *shape);

/* ---- the stream player ----
 *
 * Plays a fuzz input as the byte stream of up to RIG_PLAY_SLOTS clients.
 * Bytes go to the current client a message at a time (as its framing says),
 * queued together as a client writes a pipeline, and written when a
 * directive runs the loop (or 64 kB are queued); in the paced mode the loop
 * also settles after each startup packet, Query, Sync, Flush, FunctionCall,
 * CopyDone, CopyFail and PasswordMessage (a client waiting for its answer:
 * how a capture without its timing replays as it happened). At a message
 * boundary a byte 0xF0..0xFE is a directive for the player (never a valid
 * message type, nor the first byte of a sane startup packet length):
 *   F0        run until everything settles
 *   F1 n      switch to client slot n % RIG_PLAY_SLOTS (connected, and
 *             logged in if the player logs in, on first use)
 *   F2        the current client disconnects
 *   F3 n      its chunk size: 0 (all at once), 1, 2, 3, 5, 16, 100, 4096
 *   F4 / F5   answer pgmux's authentication request with the right / a
 *             wrong password (md5, cleartext, each SCRAM step)
 *   F6        a CancelRequest with its BackendKeyData, on a new connection
 *   F7 u      a new connection for the slot that logs in properly as user
 *             u % 3 (plain, md5user, scramuser)
 *   F8 s      a Query of size s % 8 (0, 100, 5000, 10001, 65537, 70000,
 *             300000 or 1100000 bytes of text: the last is past pgmux's
 *             1 MiB limit for holding a Query or Parse whole, and its
 *             high-water mark)
 *   F9 s n    a Bind of that size (one parameter) to statement n % 4
 *             ("", s1, s2, s3)
 *   FA s n    a Parse of that size named n % 4
 *   FB s      a CopyData of that size
 *   FC k      the last whole message again, k % 64 + 1 times
 *   FD        one loop turn (what is queued goes out, and one round of
 *             events runs: a finer pause than F0)
 *   FE        the client stops reading what pgmux sends it, or starts again
 *             (a slow client: pgmux's back-pressure pauses its server)
 * A missing argument byte reads as 0. The loop settles at the end. */
#define RIG_PLAY_SLOTS 3
struct rig_play {
	struct rig *r;
	struct rig_client *slot[RIG_PLAY_SLOTS];
	int cur;
	bool login; /* new slots log in (as USER, with the parameters) */
	bool login_failed;
	const char *user;
	const char *const *names; /* startup parameters */
	const char *const *values;
	int nparams;
	size_t chunk;
	bool paced;          /* settle after each message a client waits on */
	uint8_t last[65536]; /* the last whole message played */
	size_t last_len;
};

void rig_play_init(struct rig_play *p, struct rig *r, bool login);
/* The current slot's client (connected and logged in if need be). */
struct rig_client *rig_play_client(struct rig_play *p);
void rig_play_stream(struct rig_play *p, const uint8_t *data, size_t n);
