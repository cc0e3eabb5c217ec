/* Server connections, login half: connect (async DNS, server_connect_timeout),
 * the startup packet, and authentication to PostgreSQL with cleartext, md5 or
 * SCRAM-SHA-256 (from the auth_file's password, or from the ClientKey a
 * client's own SCRAM proof gave away when the auth_file holds a verifier).
 * The forwarding half is server.c. */
#include "pool/route.h"
#include "pool/server.h"
#include "pool/server_internal.h"

#include "core/config.h"
#include "core/log.h"
#include "net/sockopt.h"
#include "net/tls.h"
#include "net/transport.h"
#include "net/worker.h"
#include "pg/md5.h"
#include "pg/proto.h"
#include "pg/scram.h"
#include "pool/client.h"
#include "pool/conn.h"
#include "pool/creds.h"
#include "pool/link.h"
#include "pool/pool.h"

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
#include <sys/socket.h>
#include <unistd.h>

void login_fail(struct server *s, const char *sqlstate, const char *msg)
{
	char q[300];
	log_warn("server_login_failed", "db=%s user=%s sqlstate=%s reason=%s", pool_db_name(s->pool),
		 pool_user(s->pool), sqlstate, log_quote(q, sizeof(q), msg));
	struct client *c = link_cut(s);
	if (c) {
		client_close(c, sqlstate, "server_login_failed", "%s", msg);
	}
	server_close(s, "login_failed");
}

static int send_sasl_initial(struct server *s, struct evbuffer *out, const uint8_t *body,
			     size_t len)
{
	/* the mechanism list must offer SCRAM-SHA-256; over TLS, -PLUS is
	 * taken when offered */
	struct proto_reader r;
	proto_reader_init(&r, body, len);
	bool found = false, plus = false;
	const char *m;
	while ((m = proto_get_str(&r)) != NULL && m[0]) {
		if (strcmp(m, "SCRAM-SHA-256") == 0)
			found = true;
		else if (strcmp(m, "SCRAM-SHA-256-PLUS") == 0)
			plus = true;
	}
	uint8_t cb[SCRAM_CB_MAX];
	size_t cb_len = plus && s->ssl ? tls_peer_end_point(s->ssl, cb, sizeof(cb)) : 0;
	if (!found && !cb_len)
		return -1;
	struct creds cr = creds_get(s->pool);
	const struct auth_secret *sec = cr.secret;
	struct scram_client_creds creds;
	memset(&creds, 0, sizeof(creds));
	if (!sec)
		return -1;
	if (sec->kind == SECRET_PLAIN) {
		creds.password = sec->value;
	} else if (sec->kind == SECRET_SCRAM && pool_client_key(s->pool, cr.version, creds.client_key)) {
		memcpy(creds.server_key, sec->scram.server_key, SCRAM_KEY_LEN);
		memcpy(creds.salt, sec->scram.salt, sec->scram.salt_len);
		creds.salt_len = sec->scram.salt_len;
		creds.iterations = sec->scram.iterations;
	} else {
		return -1;
	}
	scram_client_free(s->scram); /* a server that asks twice starts over */
	s->scram = scram_client_new(&creds);
	OPENSSL_cleanse(&creds, sizeof(creds));
	char *first = NULL;
	/* on TLS without -PLUS offered: "y" (a stripped list is then caught by
	 * the server); -PLUS offered but no hash to bind to (an Ed25519
	 * certificate): "n", which PostgreSQL accepts */
	if (!s->scram || (cb_len && scram_client_channel_binding(s->scram, cb, cb_len) < 0) ||
	    (s->ssl && !plus && scram_client_could_bind(s->scram) < 0) ||
	    scram_client_first(s->scram, &first) < 0)
		return -1;
	const char *mech = cb_len ? "SCRAM-SHA-256-PLUS" : "SCRAM-SHA-256";
	log_debug("server_sasl", "db=%s user=%s mechanism=%s", pool_db_name(s->pool),
		  pool_user(s->pool), mech);
	int rc = proto_write_sasl_initial(out, mech, first, strlen(first));
	free(first);
	return rc;
}

/* One authentication request from the server. Returns 0, or -1 with *WHY. */
static int handle_auth(struct server *s, const uint8_t *body, size_t len, const char **why)
{
	struct proto_reader r;
	proto_reader_init(&r, body, len);
	uint32_t code = proto_get_u32(&r);
	struct evbuffer *out = bufferevent_get_output(s->bev);
	const struct auth_secret *sec = creds_get(s->pool).secret;
	*why = "authentication failed";
	if (r.err)
		return -1;
	switch (code) {
	case 0: /* AuthenticationOk */
		scram_client_free(s->scram);
		s->scram = NULL;
		return 0;
	case 3: /* cleartext */
		if (!sec || sec->kind != SECRET_PLAIN) {
			*why = "server asks for a cleartext password but auth_file has none for this user";
			return -1;
		}
		return proto_write_password(out, sec->value);
	case 5: { /* md5 */
		const uint8_t *salt = proto_get_bytes(&r, 4);
		char hash[MD5_PASSWD_LEN + 1], resp[MD5_PASSWD_LEN + 1];
		if (!salt || !sec || sec->kind == SECRET_SCRAM) {
			*why = "server asks for md5 but auth_file has no plain or md5 password for this user";
			return -1;
		}
		if (sec->kind == SECRET_PLAIN)
			md5_password_hash(sec->value, pool_user(s->pool), hash);
		else
			snprintf(hash, sizeof(hash), "%s", sec->value);
		int rc = md5_salted_response(hash, salt, resp);
		OPENSSL_cleanse(hash, sizeof(hash));
		if (rc < 0)
			return -1;
		rc = proto_write_password(out, resp);
		OPENSSL_cleanse(resp, sizeof(resp));
		return rc;
	}
	case 10: /* SASL */
		if (send_sasl_initial(s, out, body + 4, len - 4) < 0) {
			*why = "server asks for SCRAM-SHA-256 but no usable secret is known for this user "
			       "(a SCRAM verifier works only after a client has logged in with SCRAM)";
			return -1;
		}
		return 0;
	case 11: { /* SASL continue */
		char *final = NULL;
		if (!s->scram || scram_client_handle_server_first(s->scram, (const char *)body + 4,
								  len - 4, &final) < 0) {
			*why = "SCRAM exchange with the server failed";
			return -1;
		}
		int rc = proto_write_sasl_response(out, final, strlen(final));
		free(final);
		return rc;
	}
	case 12: /* SASL final */
		if (!s->scram ||
		    scram_client_handle_server_final(s->scram, (const char *)body + 4, len - 4) < 0) {
			*why = "server's SCRAM signature did not verify";
			return -1;
		}
		return 0;
	default:
		*why = "server asks for an unsupported authentication method";
		return -1;
	}
}

static void login_done(struct server *s)
{
	event_del(s->timer);
	s->logged_in = true;
	pool_set_welcome(s->pool, &s->reported);
	log_info("server_connect", "db=%s user=%s be_pid=%u worker=%d", pool_db_name(s->pool),
		 pool_user(s->pool), s->be_pid, s->worker->id);
	struct client *c = link_cut(s);
	if (c) {
		server_set_state(s, SV_RESERVED);
		client_use_server(c, s);
	} else {
		queue_release(s);
	}
}

/* A whole message during login. Returns -1 if the server was closed. */
int handle_login_msg(struct server *s, char type, const uint8_t *body, size_t len)
{
	struct proto_reader r;
	proto_reader_init(&r, body, len);
	switch (type) {
	case 'R': {
		const char *why;
		if (handle_auth(s, body, len, &why) < 0) {
			login_fail(s, "28P01", why);
			return -1;
		}
		return 0;
	}
	case 'E': {
		const char *code = proto_error_field(body, len, 'C');
		const char *msg = proto_error_field(body, len, 'M');
		login_fail(s, code ? code : "08006", msg ? msg : "server refused the login");
		return -1;
	}
	case 'S': {
		const char *n = proto_get_str(&r), *v = proto_get_str(&r);
		if (n && v && kvlist_set(&s->reported, n, v) < 0)
			return -1;
		return 0;
	}
	case 'K':
		s->be_pid = proto_get_u32(&r);
		s->be_key = proto_get_u32(&r);
		return 0;
	case 'Z':
		login_done(s);
		return 0;
	case 'N':
	case 'v':
		return 0;
	default:
		login_fail(s, "08P01", "unexpected message from server during login");
		return -1;
	}
}

static void connect_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;
	if (s->state == SV_CONNECTING)
		login_fail(s, "08006", "timeout connecting to server (server_connect_timeout)");
}

void server_connect(struct pool *p, struct worker *w, struct client *c)
{
	const struct config *cfg = pool_config();
	struct server *s = server_new(p, w);
	if (s) {
		s->bev = bufferevent_socket_new(w->base, -1, 0);
		s->timer = evtimer_new(w->base, connect_timeout_cb, s);
	}
	if (!s || !s->bev || !s->timer) {
		if (s)
			server_free(s);
		pool_slot_free(p);
		if (c)
			client_close(c, "53200", "out_of_memory", "pgmux: out of memory");
		return;
	}
	if (c)
		link_for_login(s, c);
	server_set_state(s, SV_CONNECTING);
	bufferevent_setcb(s->bev, server_read_cb, server_write_cb, server_event_cb, s);
	struct timeval tv = {cfg->server_connect_timeout, 0};
	evtimer_add(s->timer, &tv);
	if (route_get(p, &s->route) < 0) {
		login_fail(s, "08006", "no server to connect to");
		return;
	}
	log_debug("server_route", "db=%s user=%s host=%s port=%d route=%016llx", pool_db_name(p),
		  pool_user(p), s->route.host, s->route.port, (unsigned long long)s->route.version);
	if (bufferevent_socket_connect_hostname(s->bev, w->dns, AF_UNSPEC, s->route.host,
						s->route.port) < 0)
		login_fail(s, "08006", "could not start connecting to server");
}

static void send_startup(struct server *s);

void on_connected(struct server *s)
{
	s->fd = bufferevent_getfd(s->bev);
	struct sockopt_tcp topt;
	pool_tcp_options(&topt);
	(void)sockopt_tune_tcp(s->fd, &topt);
	if (wbuf_attach(&s->wb, s->worker, s->bev) < 0 ||
	    rbuf_attach(&s->rb, s->worker, s->bev, server_read_cb, server_event_cb, s) < 0) {
		login_fail(s, "53200", "out of memory");
		return;
	}
	if (tls_connecting() && !s->tls_fallback) {
		/* server_tls_sslmode prefer and stricter: ask first */
		if (proto_write_ssl_request(bufferevent_get_output(s->bev)) < 0) {
			login_fail(s, "53200", "out of memory");
			return;
		}
		s->tls = SV_TLS_REQUESTED;
		rbuf_start(&s->rb);
		return;
	}
	send_startup(s);
}

static void send_startup(struct server *s)
{
	const struct config_db *db = pool_db(s->pool);
	const char *names[] = {"user", "database"};
	const char *values[] = {pool_user(s->pool), db->dbname};
	if (proto_write_startup(bufferevent_get_output(s->bev), names, values, 2) < 0) {
		login_fail(s, "08006", "could not build startup packet");
		return;
	}
	rbuf_start(&s->rb);
}

/* The server's one-byte answer to the SSLRequest. Anything after an 'S'
 * came in plaintext before the handshake and is refused (the outbound side
 * of CVE-2021-23222). */
void on_tls_answer(struct server *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	size_t avail = evbuffer_get_length(in);
	if (avail == 0)
		return;
	unsigned char answer;
	evbuffer_copyout(in, &answer, 1);
	if (answer == 'N') {
		evbuffer_drain(in, 1);
		if (pool_config()->server_tls_sslmode >= TLS_REQUIRE) {
			login_fail(s, "08006", "server does not support SSL, but server_tls_sslmode "
				   "requires it");
			return;
		}
		s->tls = SV_TLS_NONE;
		send_startup(s);
		return;
	}
	if (answer != 'S') {
		/* an ErrorResponse from a server that knows no SSLRequest, or noise */
		if (!server_tls_fallback(s, "answer_not_s_or_n"))
			login_fail(s, "08P01", "server answered the SSLRequest with neither S nor N");
		return;
	}
	if (avail > 1) {
		login_fail(s, "08P01", "server sent unencrypted data after its SSL response");
		return;
	}
	evbuffer_drain(in, 1);
	/* the handshake runs on a bufferevent of its own; the server's reads
	 * wait for it */
	rbuf_stop(&s->rb);
	s->ssl = tls_connect_ssl(s->route.host);
	s->hs = s->ssl ? tls_handshake_bev(s->worker->base, s->fd, s->ssl, false) : NULL;
	if (!s->hs) {
		login_fail(s, "53200", "could not set up TLS towards the server");
		return;
	}
	s->tls = SV_TLS_HANDSHAKE;
	bufferevent_setcb(s->hs, NULL, NULL, server_event_cb, s);
}

bool server_tls_fallback(struct server *s, const char *why)
{
	if (pool_config()->server_tls_sslmode != TLS_PREFER || s->tls_fallback)
		return false;
	log_info("server_tls_fallback", "db=%s user=%s reason=%s", pool_db_name(s->pool),
		 pool_user(s->pool), why);
	/* as libpq's prefer: connect again, in plaintext */
	rbuf_detach(&s->rb);
	wbuf_detach(&s->wb);
	if (s->hs)
		bufferevent_free(s->hs);
	s->hs = NULL;
	bufferevent_free(s->bev);
	transport_tls_close(s->ssl);
	s->ssl = NULL;
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	s->tls = SV_TLS_NONE;
	s->tls_fallback = true;
	s->bev = bufferevent_socket_new(s->worker->base, -1, 0);
	if (!s->bev) {
		login_fail(s, "53200", "out of memory");
		return true;
	}
	bufferevent_setcb(s->bev, server_read_cb, server_write_cb, server_event_cb, s);
	/* the same destination: a fallback is no new route */
	if (bufferevent_socket_connect_hostname(s->bev, s->worker->dns, AF_UNSPEC, s->route.host,
						s->route.port) < 0)
		login_fail(s, "08006", "could not start connecting to server");
	return true;
}

/* The TLS handshake with the server is done (the certificate verified as
 * server_tls_sslmode asks): log in over it. */
void on_tls_connected(struct server *s)
{
	s->tls = SV_TLS_ON;
	struct bufferevent *hs = s->hs;
	s->hs = NULL;
	if (tls_handshake_done(hs, s->bev) < 0) {
		login_fail(s, "53200", "out of memory");
		return;
	}
	transport_tls_start(s->ssl);
	rbuf_set_ssl(&s->rb, s->ssl);
	wbuf_set_ssl(&s->wb, s->ssl);
	char d[96];
	log_debug("server_tls", "db=%s user=%s tls=%s", pool_db_name(s->pool), pool_user(s->pool),
		  tls_describe(s->ssl, d, sizeof(d)));
	send_startup(s);
}

