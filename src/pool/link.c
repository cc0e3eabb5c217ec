/* The link between a client and a server (see link.h): linking with the
 * parameter sync that starts it, unlinking, and the release decision at
 * each transaction boundary, including a server whose client left with
 * replies still owed (drained, then rolled back and released). */
#include "pool/link.h"
#include "pool/server_internal.h"

#include "core/config.h"
#include "core/log.h"
#include "lib/kvlist.h"
#include "net/rbuf.h"
#include "net/worker.h"
#include "pg/proto.h"
#include "pool/client.h"
#include "pool/conn.h"
#include "pool/pool.h"
#include "pool/relink.h"
#include "pool/server.h"
#include "pool/session.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- linking ---- */

static void join(struct server *s, struct client *c)
{
	s->client = c;
	c->server = s;
}

void link_for_login(struct server *s, struct client *c)
{
	join(s, c);
}

struct client *link_cut(struct server *s)
{
	struct client *c = s->client;
	s->client = NULL;
	if (c && c->server == s)
		c->server = NULL;
	return c;
}

/* Tell C about reported parameters whose value differs from what it saw. */
static void push_param_changes(struct server *s, struct client *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	for (int i = 0; i < s->reported.n; i++) {
		const struct kv *kv = &s->reported.v[i];
		const char *seen = client_view_get(c, kv->name);
		if (seen && strcmp(seen, kv->value) == 0)
			continue;
		if (client_view_set(c, kv->name, kv->value) < 0 ||
		    proto_write_param_status(out, kv->name, kv->value) < 0)
			return;
	}
}

static void link_ready(struct server *s, struct client *c)
{
	server_set_state(s, SV_ACTIVE);
	s->last_client_id = c->id;
	push_param_changes(s, c);
	client_forward(c);
}

void link_open(struct server *s, struct client *c)
{
	join(s, c);
	c->link_gen++;
	s->seq = 0;
	s->ext_open = false;
	s->ext_failed = false;
	s->copy_open = false;
	s->server_in_copy = false;
	s->copy_done_early = 0;
	s->retry_armed = false;
	s->retried = false;
	s->capture_state = 0;
	relink_begin(c);
	rbuf_start(&s->rb);
	if (session_in_sync(s, c)) {
		link_ready(s, c);
		return;
	}
	struct evbuffer *sql = evbuffer_new();
	int changes = sql ? session_build_sync(s, c, sql) : -1;
	if (changes < 0) {
		evbuffer_free(sql);
		client_close(c, "08P01", "bad_parameter", "pgmux: invalid startup parameter name");
		return;
	}
	if (changes == 0) {
		evbuffer_free(sql);
		link_ready(s, c);
		return;
	}
	evbuffer_add(sql, "", 1);
	const char *q = (const char *)evbuffer_pullup(sql, -1);
	int rc = -1;
	const char *enc = client_view_get(c, "client_encoding");
	const char *senc = kvlist_get(&s->reported, "client_encoding");
	bool ascii = true;
	for (const char *p = q; p && *p && ascii; p++)
		ascii = (unsigned char)*p < 0x80;
	if (q && !ascii && enc && senc && strcasecmp(enc, senc) != 0) {
		/* the backend reads a whole Query in its current client_encoding,
		 * the previous client's: switch to this client's first */
		char set[96];
		free(s->pending_sync);
		s->pending_sync = strdup(q);
		snprintf(set, sizeof(set), "SET client_encoding TO '%s'", enc);
		if (s->pending_sync && strspn(enc, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
						   "0123456789_-") == strlen(enc))
			rc = server_start_internal(s, set, AFTER_SYNC);
	} else if (q) {
		rc = server_start_internal(s, q, AFTER_LINK);
	}
	evbuffer_free(sql);
	if (rc < 0)
		server_close(s, "out_of_memory");
}

/* ---- the transaction boundary ---- */

static bool at_boundary(const struct server *s)
{
	return s->reqs.count == 0 && !s->ext_open && !s->copy_open && s->txn == 'I' &&
	       s->cancels_in_flight == 0 && s->stream.left == 0;
}

void link_end(struct server *s)
{
	struct client *c = link_cut(s);
	if (c && c->state == CL_ACTIVE)
		client_set_state(c, CL_IDLE);
}

/* ---- a server whose client left with requests outstanding ---- */

#define DRAIN_TIMEOUT_MS 10000

static void drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;
	if (!s->draining)
		return;
	log_warn("server_drain_timeout", "db=%s user=%s be_pid=%u requests=%u",
		 pool_db_name(s->pool), pool_user(s->pool), s->be_pid, s->reqs.count);
	/* whatever still runs was sent by a client that is gone: stop it, then
	 * drop the connection (it is never reused, so the cancel cannot hit
	 * another client's query) */
	server_send_cancel(s);
	server_close(s, "client_gone_drain_timeout");
}

/* All replies owed to the departed client have come: roll back what it left
 * open and hand S back to the pool. */
static void drain_done(struct server *s)
{
	s->draining = false;
	if (s->drain_timer)
		event_del(s->drain_timer);
	log_info("server_drained", "db=%s user=%s be_pid=%u txn=%c", pool_db_name(s->pool),
		 pool_user(s->pool), s->be_pid, s->txn);
	int rc = 0;
	if (s->txn != 'I') {
		rc = server_start_internal(s, "ROLLBACK", s->drain_reset ? AFTER_DISCARD : AFTER_RELEASE);
	} else if (s->drain_reset) {
		session_server_reset(s);
		rc = server_start_internal(s, "DISCARD ALL", AFTER_RELEASE);
	} else {
		queue_release(s);
	}
	if (rc < 0)
		server_close(s, "out_of_memory");
}

int link_drain_protocol(struct server *s)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	if (s->copy_open) {
		static const char why[] = "client disconnected";
		if (s->server_in_copy && proto_write_msg(out, 'f', why, sizeof(why)) < 0)
			return -1;
		server_note_client_msg(s, 'f'); /* the copy is over either way */
	}
	if (s->ext_open) {
		if (proto_write_msg(out, 'S', NULL, 0) < 0)
			return -1;
		server_note_client_msg(s, 'S');
	}
	return s->state == SV_ACTIVE ? 0 : -1;
}

/* S's client has just been unlinked while S still owes it replies. Complete
 * what the client left half done on the protocol (a CopyFail for a copy in
 * progress, a Sync after extended messages: exactly what the backend needs
 * to reach a ReadyForQuery), then drop every reply until the queue is
 * empty. A malformed message, a client that vanishes mid-pipeline: the
 * server goes back to the pool clean instead of costing a new login.
 * Returns 0, or -1 if that cannot be done (the caller closes S). */
static int start_drain(struct server *s, bool reset)
{
	if (link_drain_protocol(s) < 0)
		return -1;
	if (!s->drain_timer && !(s->drain_timer = evtimer_new(s->worker->base, drain_timeout_cb, s)))
		return -1;
	struct timeval tv = {DRAIN_TIMEOUT_MS / 1000, (DRAIN_TIMEOUT_MS % 1000) * 1000};
	evtimer_add(s->drain_timer, &tv);
	s->draining = true;
	s->drain_reset = reset;
	/* back-pressure from the departed client may have stopped reading: the
	 * replies go nowhere now, so read them at full speed */
	rbuf_start(&s->rb);
	log_info("server_drain", "db=%s user=%s be_pid=%u requests=%u", pool_db_name(s->pool),
		 pool_user(s->pool), s->be_pid, s->reqs.count);
	if (s->reqs.count == 0 && s->stream.left == 0 && s->cancels_in_flight == 0)
		drain_done(s);
	return 0;
}

bool link_maybe_release(struct server *s, bool force)
{
	if (s->draining) {
		if (s->state != SV_ACTIVE || s->reqs.count || s->ext_open || s->copy_open ||
		    s->stream.left || s->cancels_in_flight)
			return false;
		drain_done(s);
		return true;
	}
	struct client *c = s->client;
	if (s->state != SV_ACTIVE || !at_boundary(s) || (c && c->stream.left > 0))
		return false;
	bool session = pool_config()->pool_mode == POOL_MODE_SESSION;
	if (c && (c->pins & (1u << PIN_LARGE_STATEMENT)) && !cstmt_any_private(&c->stmts))
		session_unpin(c, s, 1u << PIN_LARGE_STATEMENT); /* its last one is gone */
	unsigned pins = c ? c->pins : 0;
	if ((session || pins) && !force && !(c && c->closing_after_txn))
		return false;
	link_end(s);
	if (c && c->closing_after_txn)
		client_close(c, "57P01", "shutdown", "pgmux is shutting down");
	if (pins & (1u << PIN_LOAD)) {
		server_close(s, "pinned_session_loaded_a_library"); /* LOAD cannot be undone */
		return true;
	}
	if (session || pins) {
		/* hand no session state on: reset everything the client did */
		session_server_reset(s);
		if (server_start_internal(s, "DISCARD ALL", AFTER_RELEASE) < 0)
			server_close(s, "out_of_memory");
		return true;
	}
	queue_release(s);
	return true;
}

/* S's client is going away. */
static void client_gone(struct server *s)
{
	if (s->state == SV_CONNECTING) {
		/* keep logging in; the server goes to the pool afterwards */
		link_end(s);
		return;
	}
	if (s->state == SV_INTERNAL) {
		link_end(s); /* the internal query finishes, then the server is released */
		if (s->after == AFTER_LINK || s->after == AFTER_SYNC) {
			/* session_build_sync recorded the client's settings as applied;
			 * the rest of the sync will not run now: trust none of it */
			kvlist_clear(&s->applied);
			kvlist_clear(&s->applied_sets);
			s->dirty_params = true;
			s->last_client_id = 0;
			free(s->pending_sync);
			s->pending_sync = NULL;
		}
		s->after = AFTER_RELEASE;
		return;
	}
	if (s->state == SV_RESERVED) {
		/* handed to the client, never used: clean */
		link_end(s);
		queue_release(s);
		return;
	}
	if (s->state != SV_ACTIVE) {
		link_end(s);
		return;
	}
	if (link_maybe_release(s, true))
		return;
	bool idle_in_txn = s->reqs.count == 0 && !s->ext_open && !s->copy_open &&
			   s->stream.left == 0 && s->cancels_in_flight == 0;
	bool pinned = s->client && s->client->pins;
	bool loaded = s->client && (s->client->pins & (1u << PIN_LOAD));
	/* half a client message went out: nothing can complete it safely */
	bool half_sent = s->client && s->client->stream.left > 0 && !s->client->stream.drop;
	bool session = pool_config()->pool_mode == POOL_MODE_SESSION;
	link_end(s);
	if (loaded || half_sent) {
		server_close(s, loaded ? "pinned_session_loaded_a_library"
				       : "client_disconnected_in_the_middle_of_a_message");
		return;
	}
	if (idle_in_txn) {
		/* BEGIN ... and gone: roll back before anyone else gets it */
		if (server_start_internal(s, "ROLLBACK", session || pinned ? AFTER_DISCARD : AFTER_RELEASE) < 0)
			server_close(s, "out_of_memory");
		return;
	}
	if (start_drain(s, session || pinned) < 0)
		server_close(s, "client_disconnected_with_query_in_progress");
}

void link_synced(struct server *s)
{
	link_ready(s, s->client);
}

void link_client_leaves(struct client *c)
{
	struct server *s = c->server;
	if (!s)
		return;
	if (s->client == c)
		client_gone(s);
	c->server = NULL;
}
