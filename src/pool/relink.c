/* Moving a link off a server that died before it answered. See relink.h. */
#include "pool/relink.h"

#include "core/log.h"
#include "pool/client.h"
#include "pool/conn.h"
#include "pool/link.h"
#include "pool/pool.h"
#include "pool/requests.h"
#include "pool/server.h"
#include "pool/session.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <stdlib.h>
#include <string.h>

#define RELINK_KEEP_CAP 512 /* a buffer up to this size stays with the client between links */

void relink_begin(struct client *c)
{
	c->relink_active = true;
	c->relink_ok = true;
	c->relink_begin_only = true;
	c->relink_len = 0;
	c->relink_skip = 0;
	c->pins_at_link = c->pins;
}

void relink_stop(struct client *c)
{
	c->relink_active = false;
	c->relink_len = 0;
	c->relink_tries = 0;
	if (c->relink_cap > RELINK_KEEP_CAP) {
		free(c->relink_buf);
		c->relink_buf = NULL;
		c->relink_cap = 0;
	}
}

void relink_skip(struct client *c, size_t n)
{
	if (c->relink_active)
		c->relink_skip += n;
}

void relink_log(struct client *c, struct evbuffer *in, size_t n)
{
	if (!c->relink_active || !c->relink_ok || n == 0)
		return;
	if (c->relink_skip) {
		if (n <= c->relink_skip) {
			c->relink_skip -= n;
			return;
		}
		c->relink_ok = false; /* replayed and new bytes in one piece: give up */
		return;
	}
	if (c->relink_len + n > RELINK_LOG_MAX) {
		c->relink_ok = false;
		return;
	}
	if (c->relink_len + n > c->relink_cap) {
		size_t cap = c->relink_cap ? c->relink_cap : 128;
		while (cap < c->relink_len + n)
			cap *= 2;
		uint8_t *p = realloc(c->relink_buf, cap);
		if (!p) {
			c->relink_ok = false;
			return;
		}
		c->relink_buf = p;
		c->relink_cap = cap;
	}
	if (evbuffer_copyout(in, c->relink_buf + c->relink_len, n) != (ev_ssize_t)n) {
		c->relink_ok = false;
		return;
	}
	c->relink_len += n;
}

void relink_free(struct client *c)
{
	free(c->relink_buf);
	c->relink_buf = NULL;
	c->relink_len = c->relink_cap = 0;
}

void relink_ran(struct client *c, bool begin_only)
{
	if (!begin_only) {
		/* nothing of this link can move any more: stop keeping its bytes */
		c->relink_begin_only = false;
		c->relink_ok = false;
	}
}

/* A FATAL that ends the backend with its open transaction rolled back:
 * pg_terminate_backend or a fast shutdown (57P01), idle_session_timeout
 * (57P05). 57P02 (crash of another backend) can come at any moment, even
 * after a commit: not one of them. Whether anything the link sent ran to
 * completion is a separate question (relink_begin_only). */
static bool fatal_rolls_back(const char *sqlstate)
{
	return sqlstate && (strcmp(sqlstate, "57P01") == 0 || strcmp(sqlstate, "57P05") == 0);
}

bool relink_try(struct server *s, const char *fatal_sqlstate, const char *why)
{
	struct client *c = s->client;
	if (!c || c->server != s || c->state != CL_ACTIVE)
		return false;
	/* while the client's settings are applied, none of its bytes went out */
	bool syncing = s->state == SV_INTERNAL && (s->after == AFTER_LINK || s->after == AFTER_SYNC);
	/* killed with only BEGIN run (or nothing at all): the backend rolled
	 * the block back, nothing of it is durable. A statement that may have
	 * done anything else (committed inside a procedure, touched a sequence,
	 * run for minutes until an administrator stopped it) is not replayed. */
	bool unread = s->state == SV_ACTIVE && fatal_rolls_back(fatal_sqlstate) &&
		      c->relink_begin_only;
	if (!syncing && !unread)
		return false;
	if (!c->relink_active || !c->relink_ok || c->stream.left || s->stream.left ||
	    s->cancels_in_flight || s->retry_armed || c->relink_tries >= RELINK_MAX_TRIES)
		return false;
	struct evbuffer *in = bufferevent_get_input(c->bev);
	if (c->relink_len && evbuffer_prepend(in, c->relink_buf, c->relink_len) < 0)
		return false;
	unsigned tries = c->relink_tries + 1;
	/* what the link noted for the client (statement names, queued SETs,
	 * pins) is undone: the replay notes it again on the next server */
	req_undo_all(s);
	session_abandon_txn(c);
	c->pins = c->pins_at_link;
	log_info("server_relink", "db=%s user=%s client=%llu be_pid=%u replayed_bytes=%zu reason=%s",
		 pool_db_name(s->pool), pool_user(s->pool), (unsigned long long)c->id, s->be_pid,
		 c->relink_len, why);
	relink_stop(c);
	c->relink_tries = tries;
	(void)link_cut(s);
	server_close(s, why);
	client_relink(c);
	return true;
}
