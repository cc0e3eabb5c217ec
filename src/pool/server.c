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
#include "pg/frame.h"
#include "pg/proto.h"
#include "pg/scram.h"
#include "pool/cancel.h"
#include "pool/client.h"
#include "pool/conn.h"
#include "pool/frontend.h"
#include "pool/link.h"
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
	enum server_state was = s->state;
	struct client *c = link_cut(s);
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
	if (c && s->stream.left > 0) {
		/* half a message went to the client: an ErrorResponse now would be
		 * read as the rest of it; just close */
		client_close(c, NULL, "server_lost", "server connection lost: %s", reason);
	} else if (c && sqlstate) {
		client_close(c, sqlstate, reason, "%s", client_msg);
	} else if (c) {
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
		struct frame h;
		enum proto_result pr = frame_peek(in, 0, FRAME_SERVER, &h);
		if (pr == PROTO_AGAIN)
			return 0;
		if (pr != PROTO_OK)
			return -1;
		if (!frame_whole(&h))
			return 0;
		if (h.type != 'S' && h.type != 'N' && h.type != 'A')
			return -1;
		struct proto_msg m;
		int rc = frame_take(in, &h, &m);
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

/* ---- release ---- */

void queue_release(struct server *s)
{
	/* reading stays on: a parked server is watched for EOF and FATAL */
	server_set_state(s, SV_RELEASING);
	struct pool_worker *pw = s->worker->ctx;
	TAILQ_INSERT_TAIL(&pw->releasing, s, reap_entry);
	schedule_deferred(s->worker);
}

/* ---- pgmux's own queries ---- */

int server_start_internal(struct server *s, const char *sql, enum server_after after)
{
	s->internal_err[0] = '\0';
	s->internal_msg[0] = '\0';
	s->after = after;
	s->unnamed_owner = 0; /* a simple Query drops the unnamed statement */
	server_set_state(s, SV_INTERNAL);
	rbuf_start(&s->rb);
	return proto_write_query(bufferevent_get_output(s->bev), sql);
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
		if (link_maybe_release(s, false))
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
			if (link_drain_protocol(s) < 0) {
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
			link_end(s);
			client_close(c, s->internal_err, "server_parameter_rejected",
				     "pgmux: server rejected a startup parameter: %s", s->internal_msg);
		}
		server_close(s, "internal_query_failed");
		return;
	}
	if (s->after == AFTER_SYNC && c && s->pending_sync) {
		char *q = s->pending_sync;
		s->pending_sync = NULL;
		int rc = server_start_internal(s, q, AFTER_LINK);
		free(q);
		if (rc < 0)
			server_close(s, "out_of_memory");
		return;
	}
	if (s->after == AFTER_LINK && c) {
		link_synced(s);
		return;
	}
	if (s->after == AFTER_DISCARD) {
		session_server_reset(s);
		if (server_start_internal(s, "DISCARD ALL", AFTER_RELEASE) < 0)
			server_close(s, "out_of_memory");
		return;
	}
	link_end(s);
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
		if (s->stream.left) {
			size_t n = frame_stream_chunk(&s->stream, evbuffer_get_length(in));
			if (n == 0)
				break;
			if (s->stream.drop)
				evbuffer_drain(in, n);
			else
				forward_bytes(s, in, n);
			if (frame_stream_took(&s->stream, n))
				req_emit_fakes(s);
			continue;
		}
		struct frame h;
		enum proto_result pr = frame_peek(in, 0, FRAME_SERVER, &h);
		if (pr == PROTO_AGAIN)
			break;
		if (pr != PROTO_OK) {
			server_close(s, "invalid_message_from_server");
			return;
		}
		if (!wants_whole(s->state, h.type)) {
			int fwd = req_reply(s, h.type);
			if (fwd < 0) {
				server_close(s, "unexpected_reply");
				return;
			}
			size_t n = frame_have(&h);
			if (fwd == 0)
				evbuffer_drain(in, n);
			else
				forward_bytes(s, in, n);
			frame_stream_start(&s->stream, &h, n, fwd == 0);
			if (s->stream.left == 0)
				req_emit_fakes(s);
			continue;
		}
		if (!frame_whole(&h))
			break;
		struct proto_msg m;
		if (frame_take(in, &h, &m) < 0) {
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
	if (s->state == SV_ACTIVE && s->reqs.count == 0 && link_maybe_release(s, false))
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
		(void)link_maybe_release(s, false);
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
