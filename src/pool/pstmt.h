/* Named prepared statements in transaction pooling.
 *
 * Three registries:
 * - pstmt: one per distinct Parse body (query text + parameter types),
 *   process-wide and refcounted ("interned"), so that clients preparing the
 *   same SQL share one server-side statement.
 * - cstmt: a client's name -> pstmt map (struct client.stmts). Client names
 *   never reach a server.
 * - sstmt: what one server connection has prepared (struct server.stmts),
 *   keyed by pstmt id, each under a name of pgmux's own ("pgmux_<n>", unique
 *   for the life of the process, so a statement that was closed, lost in a
 *   failed pipeline or invalidated is never confused with a new one), with an
 *   LRU list bounded by max_prepared_statements.
 * Only pstmt_intern/pstmt_unref lock (a process-wide mutex); the client and
 * server maps belong to the thread that owns the connection.
 *
 * When a server copy may be reused for a client's name (so that the client
 * never gets an error from a copy it did not prepare itself that a fresh
 * Parse would not give):
 * - DDL epoch: every CREATE/ALTER/DROP that passes through pgmux bumps a
 *   process-wide epoch (when it is sent and when it has run). A client
 *   statement records the epoch of its Parse, a server copy the epoch it was
 *   prepared at; a copy older than the client's Parse is replaced, not
 *   reused (a type or table it names may have been dropped and recreated).
 * - A copy prepared inside a transaction block that then failed or rolled
 *   back (to a savepoint or at all) is stale: its parameter types may name
 *   objects that no longer exist.
 * - Orphans: a pstmt that no client statement refers to any more (the last
 *   client DEALLOCATEd it or left) bumps a process-wide orphan generation;
 *   each server closes such copies at its next message boundary, so a server
 *   holds what connected clients still use. */
#pragma once

#include "lib/hmap.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

struct pstmt {
	struct hnode node;     /* [intern lock] in the process-wide table, keyed by body */
	uint64_t id;           /* unique, never reused */
	uint8_t *body;         /* owned: Parse body after the name (query\0, int16 n, oids) */
	size_t len;
	int refs;              /* [intern lock] */
	unsigned gen;          /* atomic: bumped when a server reports the plan stale (0A000) */
	/* state_kinds and ddl are stored by every worker that parses the query
	 * and read by any: a race by design, and benign, because both are a pure
	 * function of body (sqllex of the same text), so every store writes the
	 * value already there or the first one; relaxed atomics make the accesses
	 * defined without ordering anything (TSan is then silent, not
	 * suppressed). */
	unsigned state_kinds;  /* atomic: sqllex kinds of the query (its session effects run at
				* each Bind) */
	bool ddl;              /* atomic: the query changes the catalog (epoch bump at Bind) */
	int crefs;             /* atomic: client statements (struct cstmt) referring to it */
	bool private_copy;     /* not interned, no body: a statement too large to keep, which
				* exists on the one server it was streamed to (its client is
				* pinned there) */
};

struct cstmt {
	struct hnode node;     /* in client->stmts, keyed by name */
	char *name;            /* owned */
	struct pstmt *ps;      /* one reference */
	int inflight;          /* requests in a server's queue that point here */
	bool dead;             /* removed from the map; freed when inflight drops to 0 */
	uint64_t reg;          /* the client's registration number (struct client.stmt_regs) */
	uint64_t epoch;        /* DDL epoch when the client sent its Parse */
};

enum sstmt_state { SS_PENDING, SS_READY };

struct sstmt {
	struct hnode node;     /* in server->stmts, keyed by ps->id */
	struct pstmt *ps;      /* one reference */
	char name[32];         /* the server-side name */
	enum sstmt_state state;
	unsigned gen;          /* ps->gen when prepared */
	uint64_t reg;          /* server registration counter when prepared */
	int inflight;          /* requests in the queue that point here */
	bool dead;             /* removed from the map; freed when inflight drops to 0 */
	uint64_t epoch;        /* DDL epoch when it was prepared */
	bool tentative;        /* prepared inside a transaction block still open */
	bool stale;            /* that block failed or rolled back: replace before reuse */
	TAILQ_ENTRY(sstmt) lru;
};

TAILQ_HEAD(sstmt_list, sstmt);

/* The interned statement for a Parse BODY (after the name), with a new
 * reference; NULL on allocation failure. */
struct pstmt *pstmt_intern(const uint8_t *body, size_t len);
/* The interned statement for BODY with a new reference, if one exists. */
struct pstmt *pstmt_lookup(const uint8_t *body, size_t len);
/* A private statement (see private_copy), with one reference. NULL on
 * allocation failure. */
struct pstmt *pstmt_new_private(void);
void pstmt_ref(struct pstmt *ps);
void pstmt_unref(struct pstmt *ps);
/* Interned statements alive (tests, stats). */
size_t pstmt_count(void);

/* The DDL epoch, and a bump of it (DDL sent, or done). */
uint64_t pstmt_ddl_epoch(void);
void pstmt_ddl_seen(void);
/* Bumped whenever some pstmt lost its last client statement. */
uint64_t pstmt_orphan_gen(void);
/* True if no client statement refers to PS. */
bool pstmt_orphaned(const struct pstmt *ps);
/* True if server copy SS may answer for client statement CS. */
bool sstmt_usable(const struct sstmt *ss, const struct cstmt *cs);

/* ---- per client ---- */
struct cstmt *cstmt_find(struct hmap *m, const char *name);
/* Add NAME -> PS (takes a new reference). NULL on allocation failure. */
struct cstmt *cstmt_add(struct hmap *m, const char *name, struct pstmt *ps);
/* Remove from the map (freed now, or when its last request is done). */
void cstmt_remove(struct hmap *m, struct cstmt *cs);
/* Put back a removed statement if its name is free again (undo of a Close
 * the server skipped). */
void cstmt_restore(struct hmap *m, struct cstmt *cs);
void cstmt_hold(struct cstmt *cs);
void cstmt_release(struct cstmt *cs);
void cstmt_clear(struct hmap *m);
/* True if M holds a statement with a private pstmt. */
bool cstmt_any_private(struct hmap *m);
/* Remove every statement registered at or before MARK (DEALLOCATE ALL or
 * DISCARD ALL ran; a Parse pipelined after it stays). */
void cstmt_forget_upto(struct hmap *m, uint64_t mark);

/* ---- per server ---- */
struct sstmt_reg {
	struct hmap map;
	struct sstmt_list lru;     /* least recently used first */
	uint64_t counter;          /* registrations so far */
};

void sstmt_init(struct sstmt_reg *r);
struct sstmt *sstmt_find(struct sstmt_reg *r, const struct pstmt *ps);
/* A new PENDING entry for PS under a fresh name. NULL on allocation failure. */
struct sstmt *sstmt_add(struct sstmt_reg *r, struct pstmt *ps);
/* Mark used now (moves it to the LRU tail). */
void sstmt_touch(struct sstmt_reg *r, struct sstmt *ss);
/* Drop from the map (the server copy is gone or no longer wanted). */
void sstmt_remove(struct sstmt_reg *r, struct sstmt *ss);
void sstmt_hold(struct sstmt *ss);
void sstmt_release(struct sstmt *ss);
/* Remove every entry registered at or before MARK (DEALLOCATE ALL / DISCARD
 * ALL ran on the server). */
void sstmt_forget_upto(struct sstmt_reg *r, uint64_t mark);
/* The transaction block the tentative entries were prepared in ended
 * (COMMITTED: kept, else stale), or rolled back to a savepoint (FAILED:
 * stale, still tentative). */
void sstmt_block_end(struct sstmt_reg *r, bool ended, bool failed);
/* The least recently used READY entry not in use by a queued request, or
 * NULL. */
struct sstmt *sstmt_lru_victim(struct sstmt_reg *r);
size_t sstmt_count(const struct sstmt_reg *r);
void sstmt_clear(struct sstmt_reg *r);
