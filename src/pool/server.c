/* Server connections. See server.h. The forwarding loop peeks at the 5-byte
 * header and moves bodies to the client with evbuffer moves, streaming
 * large messages; only ReadyForQuery, ParameterStatus, ErrorResponse and
 * CopyInResponse are looked at whole. */
#include "pool/server.h"
#include "pool/server_internal.h"

#include "core/config.h"
#include "core/log.h"
#include "net/tls.h"
#include "net/transport.h"
#include "net/worker.h"
#include "pg/md5.h"
#include "pg/proto.h"
#include "pg/scram.h"
#include "pool/cancel.h"
#include "pool/client.h"
#include "pool/conn.h"
#include "pool/frontend.h"
#include "pool/pool.h"
#include "pool/relink.h"
#include "pool/requests.h"
#include "pool/session.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>



static const char *state_name(enum server_state st)
{
	static const char *const names[] = {"connecting", "internal", "active", "releasing",
					    "idle", "reserved", "closing"};
	return names[st];
}

void server_set_state(struct server *s, enum server_state st)
{
	log_debug("server_state", "db=%s user=%s be_pid=%u from=%s to=%s", pool_db_name(s->pool),
		  pool_user(s->pool), s->be_pid, state_name(s->state), state_name(st));
	pool_count_server(s->pool, (int)s->state, (int)st);
	s->state = st;
}

void schedule_deferred(struct worker *w)
{
	worker_defer(w);
}

/* ---- lifecycle ---- */

struct server *server_new(struct pool *p, struct worker *w)
{
	struct server *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->pool = p;
	s->worker = w;
	s->fd = -1;
	s->txn = 'I';
	s->created_ms = conn_now_ms();
	sstmt_init(&s->stmts);
	pool_count_server(p, -1, (int)s->state);
	return s;
}

void server_free(struct server *s)
{
	pool_count_server(s->pool, (int)s->state, -1);
	rbuf_detach(&s->rb);
	wbuf_detach(&s->wb);
	if (s->fd < 0 && s->bev) {
		/* connect failed before on_connected: the socket libevent made is ours */
		evutil_socket_t fd = bufferevent_getfd(s->bev);
		if (fd >= 0)
			close(fd);
	}
	if (s->hs)
		bufferevent_free(s->hs);
	if (s->bev)
		bufferevent_free(s->bev);
	transport_tls_close(s->ssl); /* before the socket closes */
	if (s->fd >= 0)
		close(s->fd);
	if (s->timer)
		event_free(s->timer);
	if (s->drain_timer)
		event_free(s->drain_timer);
	scram_client_free(s->scram);
	kvlist_clear(&s->reported);
	kvlist_clear(&s->applied);
	kvlist_clear(&s->applied_sets);
	req_clear(s);
	sstmt_clear(&s->stmts);
	free(s->to_close);
	free(s->pending_sync);
	if (s->capture)
		evbuffer_free(s->capture);
	free(s);
}

void server_destroy(struct server *s, const char *reason)
{
	log_info("server_close", "db=%s user=%s be_pid=%u reason=%s", pool_db_name(s->pool),
		 pool_user(s->pool), s->be_pid, reason);
	struct pool *p = s->pool;
	server_free(s);
	pool_slot_free(p);
}

void server_close(struct server *s, const char *reason)
{
	server_close_client_error(s, reason, NULL, NULL);
}

void server_close_client_error(struct server *s, const char *reason, const char *sqlstate,
			       const char *client_msg)
{
	if (s->state == SV_CLOSING)
		return;
	log_info("server_close", "db=%s user=%s be_pid=%u reason=%s", pool_db_name(s->pool),
		 pool_user(s->pool), s->be_pid, reason);
	struct client *c = s->client;
	enum server_state was = s->state;
	s->client = NULL;
	server_set_state(s, SV_CLOSING);
	s->draining = false;
	if (s->drain_timer)
		event_del(s->drain_timer);
	if (s->bev)
		bufferevent_disable(s->bev, EV_READ | EV_WRITE);
	if (s->hs) {
		bufferevent_free(s->hs); /* a handshake in progress ends here */
		s->hs = NULL;
	}
	rbuf_stop(&s->rb);
	struct pool_worker *pw = s->worker->ctx;
	TAILQ_INSERT_TAIL(&pw->reap_servers, s, reap_entry);
	schedule_deferred(s->worker);
	pool_slot_free(s->pool);
	if (c && s->stream_left > 0) {
		/* half a message went to the client: an ErrorResponse now would be
		 * read as the rest of it; just close */
		c->server = NULL;
		client_close(c, NULL, "server_lost", "server connection lost: %s", reason);
	} else if (c && sqlstate) {
		c->server = NULL;
		client_close(c, sqlstate, reason, "%s", client_msg);
	} else if (c) {
		c->server = NULL;
		if (was == SV_CONNECTING)
			client_close(c, "08006", "server_connect_failed",
				     "pgmux: could not connect to server for database \"%s\": %s",
				     pool_db_name(s->pool), reason);
		else
			client_close(c, "08006", "server_lost",
				     "pgmux: server connection lost: %s", reason);
	}
}

/* ---- idle-time bytes ---- */

/* Handle whole messages that arrived while S was idle. Returns -1 if S must
 * be dropped (FATAL, EOF, or anything but async messages). */
static int handle_idle_input(struct server *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	for (;;) {
		size_t avail = evbuffer_get_length(in);
		uint8_t hdr[PROTO_HEADER_LEN];
		struct proto_header h;
		if (avail < PROTO_HEADER_LEN)
			return 0;
		evbuffer_copyout(in, hdr, PROTO_HEADER_LEN);
		if (proto_parse_header(hdr, avail, proto_server_max_len((char)hdr[0]), &h) != PROTO_OK)
			return -1;
		if (avail < 1 + (size_t)h.len)
			return 0;
		if (h.type != 'S' && h.type != 'N' && h.type != 'A')
			return -1;
		struct proto_msg m;
		int rc = proto_msg_take(in, &h, &m);
		if (rc == 0 && h.type == 'S') {
			struct proto_reader r;
			proto_reader_init(&r, m.body, m.body_len);
			const char *n = proto_get_str(&r), *v = proto_get_str(&r);
			if (!n || !v || kvlist_set(&s->reported, n, v) < 0)
				rc = -1;
		}
		proto_msg_cleanup(&m);
		if (rc < 0)
			return -1;
	}
}

void server_detach(struct server *s)
{
	/* bytes that came with the last reply are dealt with now: the new owner
	 * gets a clean stream */
	if (evbuffer_get_length(bufferevent_get_input(s->bev)) > 0 && handle_idle_input(s) < 0)
		s->dead = true;
	rbuf_detach(&s->rb);
	wbuf_detach(&s->wb);
	bufferevent_free(s->bev);
	s->bev = NULL;
	s->worker = NULL;
	if (s->drain_timer) {
		/* made on this worker's base: the next owner makes its own */
		event_free(s->drain_timer);
		s->drain_timer = NULL;
	}
}

int server_attach(struct server *s, struct worker *w)
{
	/* the TLS session, if any, goes on over the new bufferevent */
	s->bev = bufferevent_socket_new(w->base, s->fd, 0);
	if (!s->bev)
		return -1;
	s->worker = w;
	bufferevent_setcb(s->bev, server_read_cb, server_write_cb, server_event_cb, s);
	if (wbuf_attach(&s->wb, w, s->bev) < 0 ||
	    rbuf_attach(&s->rb, w, s->bev, server_read_cb, server_event_cb, s) < 0)
		return -1;
	rbuf_set_ssl(&s->rb, s->ssl);
	wbuf_set_ssl(&s->wb, s->ssl);
	rbuf_start(&s->rb);
	log_debug("server_moved", "db=%s user=%s be_pid=%u worker=%d tls=%s", pool_db_name(s->pool),
		  pool_user(s->pool), s->be_pid, w->id, s->ssl ? "on" : "off");
	return 0;
}

int server_take(struct server *s, struct worker *w)
{
	if (!s->bev && !s->dead && server_attach(s, w) < 0) {
		server_destroy(s, "out_of_memory");
		return -1;
	}
	if (s->dead) {
		server_destroy(s, "closed_while_idle");
		return -1;
	}
	/* bytes read together with the last ReadyForQuery, or while parked */
	if (evbuffer_get_length(bufferevent_get_input(s->bev)) > 0 && handle_idle_input(s) < 0) {
		server_destroy(s, "message_while_idle");
		return -1;
	}
	return 0;
}

/* A parked server's socket spoke: a ParameterStatus or notice (keep it), a
 * FATAL or EOF (drop it). Runs on its own worker. */
static void idle_readable(struct server *s)
{
	if (!pool_claim_idle(s->pool, s))
		return;
	if (handle_idle_input(s) < 0) {
		server_close(s, "message_while_idle");
		return;
	}
	queue_release(s);
}

/* ---- linking and parameters ---- */

static int start_internal(struct server *s, const char *sql, enum server_after after)
{
	s->internal_err[0] = '\0';
	s->internal_msg[0] = '\0';
	s->after = after;
	s->unnamed_owner = 0; /* a simple Query drops the unnamed statement */
	server_set_state(s, SV_INTERNAL);
	rbuf_start(&s->rb);
	return proto_write_query(bufferevent_get_output(s->bev), sql);
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

void server_link(struct server *s, struct client *c)
{
	s->client = c;
	c->server = s;
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
			rc = start_internal(s, set, AFTER_SYNC);
	} else if (q) {
		rc = start_internal(s, q, AFTER_LINK);
	}
	evbuffer_free(sql);
	if (rc < 0)
		server_close(s, "out_of_memory");
}

/* ---- release ---- */

static bool at_boundary(const struct server *s)
{
	return s->reqs.count == 0 && !s->ext_open && !s->copy_open && s->txn == 'I' &&
	       s->cancels_in_flight == 0 && s->stream_left == 0;
}

void queue_release(struct server *s)
{
	/* reading stays on: a parked server is watched for EOF and FATAL */
	server_set_state(s, SV_RELEASING);
	struct pool_worker *pw = s->worker->ctx;
	TAILQ_INSERT_TAIL(&pw->releasing, s, reap_entry);
	schedule_deferred(s->worker);
}

static void unlink_client(struct server *s)
{
	struct client *c = s->client;
	s->client = NULL;
	if (c) {
		c->server = NULL;
		if (c->state == CL_ACTIVE)
			client_set_state(c, CL_IDLE);
	}
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
		rc = start_internal(s, "ROLLBACK", s->drain_reset ? AFTER_DISCARD : AFTER_RELEASE);
	} else if (s->drain_reset) {
		session_server_reset(s);
		rc = start_internal(s, "DISCARD ALL", AFTER_RELEASE);
	} else {
		queue_release(s);
	}
	if (rc < 0)
		server_close(s, "out_of_memory");
}

/* S's client has just been unlinked while S still owes it replies. Complete
 * what the client left half done on the protocol (a CopyFail for a copy in
 * progress, a Sync after extended messages: exactly what the backend needs
 * to reach a ReadyForQuery), then drop every reply until the queue is
 * empty. A malformed message, a client that vanishes mid-pipeline: the
 * server goes back to the pool clean instead of costing a new login.
 * Returns 0, or -1 if that cannot be done (the caller closes S). */
/* What the departed client left half done on the protocol, completed: a
 * CopyFail for a copy in progress, a Sync after extended messages. Returns
 * 0 / -1. */
static int drain_complete_protocol(struct server *s)
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

static int start_drain(struct server *s, bool reset)
{
	if (drain_complete_protocol(s) < 0)
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
	if (s->reqs.count == 0 && s->stream_left == 0 && s->cancels_in_flight == 0)
		drain_done(s);
	return 0;
}

bool server_maybe_release(struct server *s, bool force)
{
	if (s->draining) {
		if (s->state != SV_ACTIVE || s->reqs.count || s->ext_open || s->copy_open ||
		    s->stream_left || s->cancels_in_flight)
			return false;
		drain_done(s);
		return true;
	}
	struct client *c = s->client;
	if (s->state != SV_ACTIVE || !at_boundary(s) || (c && c->stream_left > 0))
		return false;
	bool session = pool_config()->pool_mode == POOL_MODE_SESSION;
	if (c && (c->pins & (1u << PIN_LARGE_STATEMENT)) && !cstmt_any_private(&c->stmts))
		session_unpin(c, s, 1u << PIN_LARGE_STATEMENT); /* its last one is gone */
	unsigned pins = c ? c->pins : 0;
	if ((session || pins) && !force && !(c && c->closing_after_txn))
		return false;
	unlink_client(s);
	if (c && c->closing_after_txn)
		client_close(c, "57P01", "shutdown", "pgmux is shutting down");
	if (pins & (1u << PIN_LOAD)) {
		server_close(s, "pinned_session_loaded_a_library"); /* LOAD cannot be undone */
		return true;
	}
	if (session || pins) {
		/* hand no session state on: reset everything the client did */
		session_server_reset(s);
		if (start_internal(s, "DISCARD ALL", AFTER_RELEASE) < 0)
			server_close(s, "out_of_memory");
		return true;
	}
	queue_release(s);
	return true;
}

void server_client_gone(struct server *s)
{
	if (s->state == SV_CONNECTING) {
		/* keep logging in; the server goes to the pool afterwards */
		unlink_client(s);
		return;
	}
	if (s->state == SV_INTERNAL) {
		unlink_client(s); /* the internal query finishes, then the server is released */
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
		unlink_client(s);
		queue_release(s);
		return;
	}
	if (s->state != SV_ACTIVE) {
		unlink_client(s);
		return;
	}
	if (server_maybe_release(s, true))
		return;
	bool idle_in_txn = s->reqs.count == 0 && !s->ext_open && !s->copy_open &&
			   s->stream_left == 0 && s->cancels_in_flight == 0;
	bool pinned = s->client && s->client->pins;
	bool loaded = s->client && (s->client->pins & (1u << PIN_LOAD));
	/* half a client message went out: nothing can complete it safely */
	bool half_sent = s->client && s->client->stream_left > 0 && !s->client->discard_stream;
	bool session = pool_config()->pool_mode == POOL_MODE_SESSION;
	unlink_client(s);
	if (loaded || half_sent) {
		server_close(s, loaded ? "pinned_session_loaded_a_library"
				       : "client_disconnected_in_the_middle_of_a_message");
		return;
	}
	if (idle_in_txn) {
		/* BEGIN ... and gone: roll back before anyone else gets it */
		if (start_internal(s, "ROLLBACK", session || pinned ? AFTER_DISCARD : AFTER_RELEASE) < 0)
			server_close(s, "out_of_memory");
		return;
	}
	if (start_drain(s, session || pinned) < 0)
		server_close(s, "client_disconnected_with_query_in_progress");
}

void server_note_client_msg(struct server *s, char type)
{
	s->seq++;
	struct req r = {.seq = s->seq, .type = type, .action = REQ_FWD, .mark = s->stmts.counter,
			.cmark = s->client ? s->client->stmt_regs : 0};
	switch (type) {
	case 'S':
		s->ext_open = false;
		/* fall through */
	case 'Q':
	case 'F':
		if (req_push(s, &r) < 0)
			server_close(s, "out_of_memory");
		break;
	case 'P': case 'B': case 'D': case 'E': case 'C':
		s->ext_open = true;
		if (req_push(s, &r) < 0)
			server_close(s, "out_of_memory");
		break;
	case 'H':
		s->ext_open = true;
		break;
	case 'c':
	case 'f':
		if (s->copy_open) {
			req_drop_copy_syncs(s, s->copy_start_seq);
			s->copy_open = false;
			/* after an Execute-started copy the backend waits for a Sync */
			if (s->copy_extended)
				s->ext_open = true;
		} else if (!s->server_in_copy && s->reqs.count) {
			/* pipelined behind a COPY whose CopyInResponse has not come */
			s->copy_done_early++;
			s->copy_done_seq = s->seq;
		}
		break;
	default:
		break;
	}
}

/* ---- forwarding server -> client ---- */

static void forward_bytes(struct server *s, struct evbuffer *in, size_t n)
{
	struct client *c = s->client;
	if (c && c->state != CL_CLOSING) {
		if (c->relink_active)
			relink_stop(c);
		evbuffer_remove_buffer(in, bufferevent_get_output(c->bev), n);
	} else {
		evbuffer_drain(in, n);
	}
}

/* A whole message taken out of the input goes to the linked client. */
static int forward_msg(struct server *s, const struct proto_msg *m)
{
	struct client *c = s->client;
	if (c && c->state != CL_CLOSING && c->relink_active)
		relink_stop(c);
	if (c && c->state != CL_CLOSING && proto_msg_forward(bufferevent_get_output(c->bev), m) < 0) {
		server_close(s, "out_of_memory");
		return -1;
	}
	return 0;
}

/* CommandComplete TAG answered the head request: what it means for the
 * session records. */
static void note_command_tag(struct server *s, const char *tag)
{
	struct client *c = s->client;
	struct req *r = req_head(s);
	uint64_t mark = r ? r->mark : s->stmts.counter;
	if (strcmp(tag, "ROLLBACK") == 0)
		s->block_failed = true; /* (to a savepoint): copies prepared since may be stale */
	if (c && r && strcmp(tag, "COMMIT") == 0)
		session_txn_end(c, s, r->seq, true);
	else if (c && strcmp(tag, "ROLLBACK") == 0)
		session_rollback_seen(c);
	else if (strcmp(tag, "DEALLOCATE ALL") == 0) {
		sstmt_forget_upto(&s->stmts, mark); /* not what was prepared after it */
		if (c && r)
			cstmt_forget_upto(&c->stmts, r->cmark);
	} else if (strcmp(tag, "DISCARD ALL") == 0) {
		sstmt_forget_upto(&s->stmts, mark);
		if (c && r)
			cstmt_forget_upto(&c->stmts, r->cmark);
		kvlist_clear(&s->applied);
		kvlist_clear(&s->applied_sets);
		s->last_client_id = 0; /* the client's own parameters are gone too */
	}
}

/* Does this ErrorResponse to a Bind or Describe of a server copy say that
 * the copy is stale? 2: the plan's result type changed (0A000); 1: it names
 * an object that is gone (XX000 cache lookup failed, 42704, 42P01, 42703:
 * after DDL, a fresh Parse resolves the names again, or gives the same
 * error); 0: no. */
static int stale_copy_error(const uint8_t *body, size_t blen)
{
	const char *code = proto_error_field(body, blen, 'C');
	if (!code)
		return 0;
	if (strcmp(code, "0A000") == 0) {
		const char *routine = proto_error_field(body, blen, 'R');
		return routine && strcmp(routine, "RevalidateCachedQuery") == 0 ? 2 : 0;
	}
	if (strcmp(code, "XX000") == 0) {
		const char *text = proto_error_field(body, blen, 'M');
		return text && strncmp(text, "cache lookup failed", 19) == 0;
	}
	return strcmp(code, "42704") == 0 || strcmp(code, "42P01") == 0 ||
	       strcmp(code, "42703") == 0;
}

/* The backend just entered copy-in. Messages the client had already sent
 * behind the COPY (not copy data: that it takes) reach it during copy-in:
 * it ignores Syncs and Flushes, and any other message ends the connection
 * (PostgreSQL 15: FATAL, "protocol synchronization was lost"), with no
 * reply of its own. Take that request off the queue, so that the queue
 * stays true to what the backend answers, and close the client with 08P01
 * as PostgreSQL does; the server goes when its FATAL comes. (Such a message
 * read while the backend is known to be in copy-in is refused before it
 * goes out, in client_forward, and the server is kept.) Returns -1 if S
 * stopped being usable. */
static int copy_pipeline_check(struct server *s)
{
	struct req *r;
	uint32_t i = 1;
	while ((r = req_at(s, i)) != NULL && (r->type == 'S' || r->action == REQ_FAKE))
		i++;
	if (!r)
		return 0;
	char type = r->type;
	struct client *c = s->client;
	req_remove(s, i);
	log_info("protocol_error", "addr=%s reason=message_during_copy_in type=%c",
		 c ? c->addr : "-", type);
	if (c)
		client_close(c, "08P01", "protocol_violation",
			     "unexpected message type 0x%02X during COPY from stdin",
			     (unsigned)(unsigned char)type);
	return s->state == SV_ACTIVE ? 0 : -1;
}

/* A whole message of interest while linked, already out of S's input.
 * Returns -1 if S was closed or released (stop reading). */
static int handle_active_msg(struct server *s, const struct proto_msg *m)
{
	const uint8_t *body = m->body;
	size_t blen = m->body_len;
	struct client *c = s->client;
	switch (m->type) {
	case 'Z': {
		struct req *r = req_head(s);
		if (blen != 1 || !r || (r->type != 'S' && r->type != 'Q' && r->type != 'F')) {
			server_close(s, "unexpected_ready_for_query");
			return -1;
		}
		s->txn = (char)body[0];
		uint64_t seq = r->seq;
		req_pop(s);
		if (s->ddl_pending) {
			s->ddl_pending = false;
			pstmt_ddl_seen(); /* it has run: copies prepared meanwhile are old too */
		}
		if (s->tentative_stmts && (s->block_failed || s->txn == 'I')) {
			sstmt_block_end(&s->stmts, s->txn == 'I', s->block_failed);
			s->tentative_stmts = s->txn != 'I';
		}
		s->block_failed = false;
		if (c)
			session_ready(c, s, seq, s->txn);
		if (s->retry_armed) {
			/* the failed try ends here: the client sees only the retry */
			frontend_replay(s);
			if (s->state != SV_ACTIVE)
				return -1;
		} else if (forward_msg(s, m) < 0) {
			return -1;
		}
		req_emit_fakes(s);
		if (server_maybe_release(s, false))
			return -1;
		return 0;
	}
	case 'S': {
		struct proto_reader r;
		proto_reader_init(&r, body, blen);
		const char *n = proto_get_str(&r), *v = proto_get_str(&r);
		if (n && v) {
			if (kvlist_set(&s->reported, n, v) < 0 ||
			    (c && client_view_set(c, n, v) < 0)) {
				server_close(s, "out_of_memory");
				return -1;
			}
			s->dirty_params = true;
		}
		return forward_msg(s, m);
	}
	case 'E': {
		s->server_in_copy = false;
		const char *sev = proto_error_field(body, blen, 'V');
		if (!sev)
			sev = proto_error_field(body, blen, 'S');
		if (sev && (strcmp(sev, "FATAL") == 0 || strcmp(sev, "PANIC") == 0)) {
			const char *text = proto_error_field(body, blen, 'M');
			char why[300];
			snprintf(why, sizeof(why), "%s", text ? text : "FATAL error from server");
			if (!relink_try(s, proto_error_field(body, blen, 'C'), why))
				server_close(s, why);
			return -1;
		}
		struct req *r = req_head(s);
		bool swallow = false, injected = r && r->type == 'E' && r->action == REQ_SKIP;
		char *replace = r && r->err_msg ? r->err_msg : NULL;
		if (replace)
			r->err_msg = NULL; /* ours now: req_error would free it with r */
		/* what the head says is read now: req_error below removes it */
		unsigned deny_pins = r && r->type == 'Q' ? r->deny_pins : 0;
		s->block_failed = true;
		if (r && r->type != 'Q' && r->type != 'F' && r->type != 'S') {
			/* an extended-protocol request failed: the backend skips to Sync */
			/* (a private copy is the only one there is: its error is the
			 * client's own, as on a direct connection) */
			int stale = (r->type == 'B' || r->type == 'D') && r->ss &&
					    !r->ss->ps->private_copy
				    ? stale_copy_error(body, blen)
				    : 0;
			if (stale)
				swallow = frontend_stale_plan(s, r, stale == 2);
			req_error(s);
		}
		if (c && !swallow)
			session_error(c);
		if (swallow) {
			/* dropped: the retry's answer replaces it */
		} else if (replace) {
			if (c && c->state != CL_CLOSING) {
				if (c->relink_active)
					relink_stop(c);
				if (proto_write_error(bufferevent_get_output(c->bev), "ERROR", "26000", "%s",
						      replace) < 0) {
					free(replace);
					server_close(s, "out_of_memory");
					return -1;
				}
			}
			free(replace);
		} else if (deny_pins) {
			/* the backend refused the streamed Query pgmux cut short: say why */
			char msg[200];
			session_deny_message(deny_pins, msg, sizeof(msg));
			if (c && c->state != CL_CLOSING) {
				if (c->relink_active)
					relink_stop(c);
				if (proto_write_error(bufferevent_get_output(c->bev), "ERROR", "0A000", "%s",
						      msg) < 0) {
					server_close(s, "out_of_memory");
					return -1;
				}
			}
		} else if (injected) {
			/* pgmux's DO block raised it: no PL/pgSQL context, file or line */
			if (c && c->state != CL_CLOSING && c->relink_active)
				relink_stop(c);
			if (c && c->state != CL_CLOSING &&
			    proto_write_error_filtered(bufferevent_get_output(c->bev), 'E', body, blen,
						       "WFLR") < 0) {
				server_close(s, "out_of_memory");
				return -1;
			}
		} else if (forward_msg(s, m) < 0) {
			return -1;
		}
		req_emit_fakes(s);
		return 0;
	}
	case 'G': {
		struct req *head = req_head(s);
		s->copy_open = true;
		s->server_in_copy = true;
		s->copy_extended = !(head && head->type == 'Q');
		s->copy_start_seq = head ? head->seq : 0;
		if (forward_msg(s, m) < 0)
			return -1;
		if (s->copy_done_early) {
			/* the client sent its data and CopyDone without waiting for
			 * this: the copy is over on its side already */
			s->copy_done_early--;
			req_drop_copy_syncs_upto(s, s->copy_start_seq, s->copy_done_seq);
			s->copy_open = false;
			if (s->copy_extended)
				s->ext_open = true;
			return 0;
		}
		if (s->draining) {
			/* a COPY the departed client had sent starts only now */
			if (drain_complete_protocol(s) < 0) {
				server_close(s, "out_of_memory");
				return -1;
			}
			return 0;
		}
		return copy_pipeline_check(s);
	}
	case 'C': {
		s->server_in_copy = false;
		if (blen > 0 && body[blen - 1] == '\0')
			note_command_tag(s, (const char *)body);
		struct req *r = req_head(s);
		bool fwd = true;
		if (r && r->type == 'E') {
			fwd = r->action != REQ_SKIP;
			req_pop(s);
		} else if (!r || r->type != 'Q') {
			server_close(s, "unexpected_command_complete");
			return -1;
		}
		if (fwd && forward_msg(s, m) < 0)
			return -1;
		req_emit_fakes(s);
		return 0;
	}
	default:
		return forward_msg(s, m);
	}
}

static void internal_done(struct server *s)
{
	struct client *c = s->client;
	if (s->internal_err[0]) {
		if (c && (s->after == AFTER_LINK || s->after == AFTER_SYNC)) {
			unlink_client(s);
			client_close(c, s->internal_err, "server_parameter_rejected",
				     "pgmux: server rejected a startup parameter: %s", s->internal_msg);
		}
		server_close(s, "internal_query_failed");
		return;
	}
	if (s->after == AFTER_SYNC && c && s->pending_sync) {
		char *q = s->pending_sync;
		s->pending_sync = NULL;
		int rc = start_internal(s, q, AFTER_LINK);
		free(q);
		if (rc < 0)
			server_close(s, "out_of_memory");
		return;
	}
	if (s->after == AFTER_LINK && c) {
		link_ready(s, c);
		return;
	}
	if (s->after == AFTER_DISCARD) {
		session_server_reset(s);
		if (start_internal(s, "DISCARD ALL", AFTER_RELEASE) < 0)
			server_close(s, "out_of_memory");
		return;
	}
	unlink_client(s);
	queue_release(s);
}

/* A whole message while running an internal query, already out of S's
 * input. Returns -1 when the query is over or S was closed (stop reading). */
static int handle_internal_msg(struct server *s, const struct proto_msg *m)
{
	struct proto_reader r;
	proto_reader_init(&r, m->body, m->body_len);
	if (m->type == 'E') {
		const char *code = proto_error_field(m->body, m->body_len, 'C');
		const char *msg = proto_error_field(m->body, m->body_len, 'M');
		snprintf(s->internal_err, sizeof(s->internal_err), "%s", code ? code : "XX000");
		snprintf(s->internal_msg, sizeof(s->internal_msg), "%s", msg ? msg : "error");
	} else if (m->type == 'S') {
		const char *n = proto_get_str(&r), *v = proto_get_str(&r);
		if (n && v && kvlist_set(&s->reported, n, v) < 0) {
			server_close(s, "out_of_memory");
			return -1;
		}
	} else if (m->type == 'Z') {
		s->txn = m->body_len ? (char)m->body[0] : 'I';
		if (s->tentative_stmts && s->txn == 'I') {
			/* pgmux's ROLLBACK (or reset) ended the block they were made in */
			sstmt_block_end(&s->stmts, true, true);
			s->tentative_stmts = false;
		}
		s->block_failed = false;
		internal_done(s);
		return -1;
	}
	return 0;
}

static bool wants_whole(enum server_state st, char type)
{
	if (st != SV_ACTIVE)
		return true;
	return type == 'Z' || type == 'S' || type == 'E' || type == 'G' || type == 'C';
}

static void apply_backpressure(struct server *s)
{
	struct client *c = s->client;
	if (c && s->state == SV_ACTIVE)
		(void)wbuf_pause_reader(&c->wb, &s->rb);
}

void server_read_cb(struct bufferevent *bev, void *arg)
{
	struct server *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	if (s->state == SV_IDLE) {
		idle_readable(s);
		return;
	}
	if (s->tls == SV_TLS_REQUESTED) {
		on_tls_answer(s);
		return;
	}
	for (;;) {
		if (s->state == SV_CLOSING || s->state == SV_RELEASING || s->state == SV_RESERVED)
			return; /* bytes wait in the input for server_take */
		size_t avail = evbuffer_get_length(in);
		if (s->stream_left) {
			if (avail == 0)
				break;
			size_t n = avail < s->stream_left ? avail : s->stream_left;
			if (s->stream_drop)
				evbuffer_drain(in, n);
			else
				forward_bytes(s, in, n);
			s->stream_left -= (uint32_t)n;
			if (s->stream_left == 0)
				req_emit_fakes(s);
			continue;
		}
		if (avail < PROTO_HEADER_LEN)
			break;
		uint8_t hdr[PROTO_HEADER_LEN];
		struct proto_header h;
		evbuffer_copyout(in, hdr, PROTO_HEADER_LEN);
		if (proto_parse_header(hdr, avail, proto_server_max_len((char)hdr[0]), &h) != PROTO_OK) {
			server_close(s, "invalid_message_from_server");
			return;
		}
		size_t total = 1 + (size_t)h.len;
		if (!wants_whole(s->state, h.type)) {
			int fwd = req_reply(s, h.type);
			if (fwd < 0) {
				server_close(s, "unexpected_reply");
				return;
			}
			size_t n = avail < total ? avail : total;
			s->stream_drop = fwd == 0;
			if (s->stream_drop)
				evbuffer_drain(in, n);
			else
				forward_bytes(s, in, n);
			s->stream_left = (uint32_t)(total - n);
			if (s->stream_left == 0)
				req_emit_fakes(s);
			continue;
		}
		if (avail < total)
			break;
		struct proto_msg m;
		if (proto_msg_take(in, &h, &m) < 0) {
			proto_msg_cleanup(&m);
			server_close(s, "out_of_memory");
			return;
		}
		int rc;
		if (s->state == SV_CONNECTING)
			rc = handle_login_msg(s, m.type, m.body, m.body_len);
		else if (s->state == SV_INTERNAL)
			rc = handle_internal_msg(s, &m);
		else
			rc = handle_active_msg(s, &m);
		proto_msg_cleanup(&m);
		if (rc < 0)
			return;
	}
	/* a reply pgmux wrote itself may have been the last one outstanding */
	if (s->state == SV_ACTIVE && s->reqs.count == 0 && server_maybe_release(s, false))
		return;
	apply_backpressure(s);
}

void server_write_cb(struct bufferevent *bev, void *arg)
{
	struct server *s = arg;
	wbuf_written(&s->wb);
	if (s->drain_then_release && s->state == SV_RELEASING &&
	    evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
		s->drain_then_release = false;
		struct pool_worker *pw = s->worker->ctx;
		TAILQ_INSERT_TAIL(&pw->releasing, s, reap_entry);
		schedule_deferred(s->worker);
		return;
	}
	/* the server drained: let its client send more */
	if (s->state == SV_ACTIVE && s->client)
		client_resume(s->client);
}

void server_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct server *s = arg;
	if (what & BEV_EVENT_CONNECTED) {
		if (s->state == SV_CLOSING)
			return; /* closed (a login timeout) in the turn its handshake ended */
		if (s->tls == SV_TLS_HANDSHAKE)
			on_tls_connected(s);
		else
			on_connected(s);
		return;
	}
	if ((what & BEV_EVENT_WRITING) && (s->state == SV_ACTIVE || s->state == SV_INTERNAL) &&
	    rbuf_read_pending(&s->rb) > 0) {
		/* a backend that exited may have sent its FATAL first: read it, it
		 * says whether the link can move to another server */
		server_read_cb(bev, s);
		if (s->state == SV_CLOSING || s->bev != bev)
			return;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		char why[160];
		int dnserr = bufferevent_socket_get_dns_error(bev);
		char tlserr[80];
		if (dnserr)
			snprintf(why, sizeof(why), "dns: %s", evutil_gai_strerror(dnserr));
		else if (s->tls == SV_TLS_HANDSHAKE && *tls_error(bev, tlserr, sizeof(tlserr)))
			snprintf(why, sizeof(why), "TLS handshake with the server failed: %s", tlserr);
		else if (s->ssl && (what & BEV_EVENT_ERROR) && EVUTIL_SOCKET_ERROR() == EPROTO)
			snprintf(why, sizeof(why), "TLS: %s", transport_last_error());
		else if (what & BEV_EVENT_EOF)
			snprintf(why, sizeof(why), "server closed the connection");
		else
			snprintf(why, sizeof(why), "%s", strerror(EVUTIL_SOCKET_ERROR()));
		if (s->state == SV_CONNECTING) {
			if (s->tls == SV_TLS_HANDSHAKE && server_tls_fallback(s, "handshake_failed"))
				return;
			login_fail(s, "08006", why);
		} else if (s->state == SV_IDLE) {
			if (pool_claim_idle(s->pool, s))
				server_close(s, why);
		} else if (s->state == SV_RELEASING && s->drain_then_release) {
			server_close(s, why); /* in no list while its output drains */
		} else if (s->state == SV_RELEASING || s->state == SV_RESERVED) {
			s->dead = true; /* whoever takes it next drops it */
		} else if (!relink_try(s, NULL, why)) {
			server_close(s, why);
		}
	}
}

/* ---- cancel ---- */

/* Its cancel connection ended (answered, refused or timed out). */
static void cancel_sent(void *arg)
{
	struct server *s = arg;
	s->cancels_in_flight--;
	if (s->state == SV_CLOSING)
		schedule_deferred(s->worker);
	else if (s->cancels_in_flight == 0 && s->state == SV_ACTIVE)
		(void)server_maybe_release(s, false);
}

void server_send_cancel(struct server *s)
{
	s->cancels_in_flight++; /* keeps S until cancel_sent */
	log_info("cancel_forwarded", "db=%s user=%s be_pid=%u", pool_db_name(s->pool),
		 pool_user(s->pool), s->be_pid);
	/* where S itself went, whatever the route for new servers is now */
	if (cancel_to_backend(s->worker, &s->route, s->be_pid, s->be_key,
			      pool_config()->server_connect_timeout, cancel_sent, s) < 0)
		cancel_sent(s);
}

/* ---- query_timeout ---- */

#define QUERY_CANCEL_GRACE_MS 1000 /* after the cancel, before the connection is dropped */

void server_check_query_timeout(struct server *s, uint64_t now)
{
	int limit = pool_config()->query_timeout;
	struct req *r = req_head(s);
	if (limit <= 0 || s->state != SV_ACTIVE || !r) {
		s->qt_cancel_ms = 0;
		return;
	}
	if (s->qt_cancel_ms) {
		if (s->reqs_answered != s->qt_answered) {
			s->qt_cancel_ms = 0; /* the server answered (its own 57014, most likely) */
		} else if (now - s->qt_cancel_ms >= QUERY_CANCEL_GRACE_MS) {
			char msg[200];
			snprintf(msg, sizeof(msg),
				 "pgmux: query_timeout (%d s) expired and the server did not answer "
				 "the cancel: connection to the server closed",
				 limit);
			log_warn("query_timeout_server_closed", "db=%s user=%s be_pid=%u",
				 pool_db_name(s->pool), pool_user(s->pool), s->be_pid);
			server_close_client_error(s, "query_timeout", "57014", msg);
		}
		return;
	}
	if (r->sent_ms && now - r->sent_ms >= (uint64_t)limit * 1000) {
		log_warn("query_timeout", "db=%s user=%s be_pid=%u query_timeout=%d",
			 pool_db_name(s->pool), pool_user(s->pool), s->be_pid, limit);
		s->qt_cancel_ms = now;
		s->qt_answered = s->reqs_answered;
		server_send_cancel(s);
	}
}

/* ---- deferred work ---- */

void server_run_deferred(struct worker *w)
{
	struct pool_worker *pw = w->ctx;
	const struct config *cfg = pool_config();
	struct server *s;
	while ((s = TAILQ_FIRST(&pw->releasing)) != NULL) {
		TAILQ_REMOVE(&pw->releasing, s, reap_entry);
		if (s->bev && evbuffer_get_length(bufferevent_get_output(s->bev)) > 0) {
			/* copy data the backend will ignore is still queued (a COPY that
			 * failed): the next client's bytes must not follow half of it, nor
			 * may a hand-over to another worker drop it */
			s->drain_then_release = true;
			wbuf_drain(&s->wb, 0);
			continue;
		}
		uint64_t age = conn_now_ms() - s->created_ms;
		if (cfg->server_lifetime > 0 && age >= (uint64_t)cfg->server_lifetime * 1000) {
			server_destroy(s, "server_lifetime");
			continue;
		}
		pool_release(s->pool, s); /* S may belong to another thread from here on */
	}
	struct server *tmp;
	TAILQ_FOREACH_SAFE(s, &pw->reap_servers, reap_entry, tmp) {
		if (s->cancels_in_flight > 0)
			continue; /* freed when its cancel connections end */
		TAILQ_REMOVE(&pw->reap_servers, s, reap_entry);
		server_free(s);
	}
}
