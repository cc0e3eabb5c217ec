/* Client connections. See client.h. */
#include "pool/client.h"

#include "core/config.h"
#include "core/log.h"
#include "net/sockopt.h"
#include "net/tls.h"
#include "net/transport.h"
#include "net/worker.h"
#include "pg/md5.h"
#include "pg/frame.h"
#include "pg/proto.h"
#include "pg/scram.h"
#include "pg/startup.h"
#include "pool/cancel.h"
#include "pool/frontend.h"
#include "pool/link.h"
#include "pool/session.h"
#include "pool/conn.h"
#include "pool/creds.h"
#include "pool/pool.h"
#include "pool/relink.h"
#include "pool/server.h"

#include <arpa/inet.h>
#include <malloc.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define WAIT_INPUT_MAX (64u << 10) /* input buffered from a client waiting for a server */

enum login_phase {
	LG_STARTUP,    /* waiting for the startup packet */
	LG_MD5,        /* sent AuthenticationMD5Password */
	LG_SASL_FIRST, /* sent AuthenticationSASL */
	LG_SASL_FINAL, /* sent AuthenticationSASLContinue */
};

struct login {
	struct startup_packet sp;     /* user, database and startup parameters (owned) */
	enum login_phase phase;
	bool negotiated;              /* NegotiateProtocolVersion already sent */
	uint8_t salt[4];              /* md5 salt */
	char md5hash[MD5_PASSWD_LEN + 1]; /* expected "md5..." hash, wiped after use */
	bool known;                   /* user is in the auth_file */
	struct scram_server *scram;   /* owned */
	uint8_t cb[SCRAM_CB_MAX];     /* tls-server-end-point: SCRAM-SHA-256-PLUS offered */
	size_t cb_len;                /* 0: not offered (plaintext, or no usable hash) */
	bool direct_tls;              /* TLS began with the first byte (no SSLRequest) */
	uint64_t creds_version;       /* of the credentials the login is checked against */
};

static int nclients_total; /* atomic: clients on all workers */
static int nclients_peak;  /* atomic: the most clients at once since the last trim */

int client_count(void)
{
	return __atomic_load_n(&nclients_total, __ATOMIC_RELAXED);
}

static void client_read_cb(struct bufferevent *bev, void *arg);
static void client_write_cb(struct bufferevent *bev, void *arg);
static void client_event_cb(struct bufferevent *bev, short what, void *arg);
static bool client_first_byte(struct bufferevent *bev, unsigned char first, void *arg);

static const char *cstate_name(enum client_state st)
{
	static const char *const names[] = {"login", "idle", "waiting", "active", "closing"};
	return names[st];
}

void client_set_state(struct client *c, enum client_state st)
{
	log_debug("client_state", "addr=%s from=%s to=%s", c->addr, cstate_name(c->state),
		  cstate_name(st));
	pool_count_client(c->pool, (int)c->state, (int)st);
	c->state = st;
}

/* The names a client logged in with: from its startup packet while it
 * logs in, then from its pool (the packet is freed at login). */
static const char *cdb(const struct client *c)
{
	if (c->login)
		return c->login->sp.database ? c->login->sp.database : "-";
	return c->pool ? pool_db_name(c->pool) : "-";
}

static const char *cuser(const struct client *c)
{
	if (c->login)
		return c->login->sp.user ? c->login->sp.user : "-";
	return c->pool ? pool_user(c->pool) : "-";
}

static void login_free(struct login *l)
{
	if (!l)
		return;
	scram_server_free(l->scram);
	OPENSSL_cleanse(l->md5hash, sizeof(l->md5hash));
	startup_cleanup(&l->sp);
	free(l);
}

/* Run the read path again on a later loop turn (after a link change). */
static void kick(struct client *c)
{
	if (c->state != CL_CLOSING && evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
		bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

/* ---- close and free ---- */

static void schedule_reap(struct client *c)
{
	struct pool_worker *pw = c->worker->ctx;
	TAILQ_INSERT_TAIL(&pw->reap_clients, c, reap_entry);
	worker_defer(c->worker);
}

static void client_free(struct client *c)
{
	struct pool_worker *pw = c->worker->ctx;
	pool_count_client(c->pool, (int)c->state, -1);
	TAILQ_REMOVE(&pw->clients, c, worker_entry);
	pw->nclients--;
	__atomic_fetch_sub(&nclients_total, 1, __ATOMIC_RELAXED);
	rbuf_detach(&c->rb);
	wbuf_detach(&c->wb);
	if (c->hs)
		bufferevent_free(c->hs);
	transport_tls_close(c->ssl); /* before the socket closes */
	if (c->bev)
		bufferevent_free(c->bev);
	close(c->fd);
	if (c->timer)
		event_free(c->timer);
	login_free(c->login);
	kvlist_clear(&c->params);
	kvlist_clear(&c->view);
	frontend_large_free(c);
	session_client_free(c);
	relink_free(c);
	free(c);
}

void client_reap_all(struct worker *w)
{
	struct pool_worker *pw = w->ctx;
	struct client *c;
	while ((c = TAILQ_FIRST(&pw->reap_clients)) != NULL) {
		TAILQ_REMOVE(&pw->reap_clients, c, reap_entry);
		client_free(c);
	}
}

static void flushed_close_cb(struct bufferevent *bev, void *arg)
{
	struct client *c = arg;
	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
		schedule_reap(c);
		bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
	}
}

static void closing_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct client *c = arg;
	bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
	rbuf_stop(&c->rb);
	schedule_reap(c);
}

void client_close(struct client *c, const char *sqlstate, const char *reason, const char *fmt, ...)
{
	if (c->state == CL_CLOSING)
		return;
	char msg[512] = "";
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
	}
	char q[600];
	log_info("client_close", "db=%s user=%s addr=%s reason=%s sqlstate=%s msg=%s", cdb(c),
		 cuser(c), c->addr, reason, sqlstate ? sqlstate : "-", log_quote(q, sizeof(q), msg));
	if (c->state == CL_WAITING && c->pool)
		pool_leave_queue(c->pool, c);
	client_set_state(c, CL_CLOSING);
	if (c->timer)
		event_del(c->timer);
	link_client_leaves(c);
	cancel_unregister(c);
	rbuf_stop(&c->rb);
	if (c->hs) {
		/* mid-handshake: nothing can be said in plaintext now */
		bufferevent_free(c->hs);
		c->hs = NULL;
		evbuffer_drain(bufferevent_get_output(c->bev), (size_t)-1);
		sqlstate = NULL;
	}
	struct evbuffer *out = bufferevent_get_output(c->bev);
	if (sqlstate)
		(void)proto_write_error(out, "FATAL", sqlstate, "%s", msg);
	wbuf_flush(&c->wb);
	if (evbuffer_get_length(out) == 0) {
		bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
		schedule_reap(c);
		return;
	}
	/* what is queued goes first, for at most 5 s */
	bufferevent_setcb(c->bev, NULL, flushed_close_cb, closing_event_cb, c);
	wbuf_drain(&c->wb, 5000);
}

/* ---- accept ---- */

static void login_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;
	if (c->state == CL_LOGIN) {
		log_info("login_timeout", "addr=%s", c->addr);
		client_close(c, "08P01", "login_timeout", "pgmux: client_login_timeout expired");
	}
}

void client_accept(struct worker *w, int fd, const char *addr)
{
	const struct config *cfg = pool_config();
	struct pool_worker *pw = w->ctx;
	if (!pw->listening) {
		close(fd);
		return;
	}
	struct sockopt_tcp topt;
	pool_tcp_options(&topt);
	(void)sockopt_tune_tcp(fd, &topt);
	int n = __atomic_add_fetch(&nclients_total, 1, __ATOMIC_RELAXED);
	int peak = __atomic_load_n(&nclients_peak, __ATOMIC_RELAXED);
	while (n > peak && !__atomic_compare_exchange_n(&nclients_peak, &peak, n, true,
							 __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
	struct client *c = calloc(1, sizeof(*c));
	struct bufferevent *bev = c ? bufferevent_socket_new(w->base, fd, 0) : NULL;
	if (!bev) {
		free(c);
		close(fd);
		__atomic_fetch_sub(&nclients_total, 1, __ATOMIC_RELAXED);
		return;
	}
	static uint64_t next_id;
	c->id = __atomic_add_fetch(&next_id, 1, __ATOMIC_RELAXED);
	c->worker = w;
	c->bev = bev;
	c->fd = fd;
	snprintf(c->addr, sizeof(c->addr), "%s", addr);
	c->state = CL_LOGIN;
	c->last_active_ms = conn_now_ms();
	TAILQ_INSERT_TAIL(&pw->clients, c, worker_entry);
	pw->nclients++;
	bufferevent_setcb(bev, client_read_cb, client_write_cb, client_event_cb, c);
	if (wbuf_attach(&c->wb, w, bev) < 0 ||
	    rbuf_attach(&c->rb, w, bev, client_read_cb, client_event_cb, c) < 0) {
		client_close(c, "53200", "out_of_memory", "pgmux: out of memory");
		return;
	}
	/* over max_client_conn: refused once its startup packet is read, as
	 * PostgreSQL does, so that the client can show the error (and a cancel
	 * request still gets through) */
	c->over_limit = n > cfg->max_client_conn;
	c->login = calloc(1, sizeof(*c->login));
	c->timer = evtimer_new(w->base, login_timeout_cb, c);
	if (!c->login || !c->timer) {
		client_close(c, "53200", "out_of_memory", "pgmux: out of memory");
		return;
	}
	struct timeval tv = {cfg->client_login_timeout, 0};
	evtimer_add(c->timer, &tv);
	if (tls_accepting())
		rbuf_peek_first(&c->rb, client_first_byte);
	rbuf_start(&c->rb);
}

/* ---- what the client saw ---- */

const char *client_view_get(const struct client *c, const char *name)
{
	const char *v = kvlist_get(&c->view, name);
	if (!v && c->welcome)
		v = kvlist_get(c->welcome, name);
	return v;
}

int client_view_set(struct client *c, const char *name, const char *value)
{
	const char *w = c->welcome ? kvlist_get(c->welcome, name) : NULL;
	if (w && strcmp(w, value) == 0) {
		kvlist_del(&c->view, name); /* the pool's copy says it */
		return 0;
	}
	return kvlist_set(&c->view, name, value);
}

/* ---- login ---- */

static void send_welcome(struct client *c, const struct kvlist *server_params)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	c->welcome = pool_welcome_shared(c->pool);
	/* the server's values, except where the client asked for its own */
	for (int i = 0; i < server_params->n; i++) {
		const char *name = server_params->v[i].name;
		const char *mine = kvlist_get(&c->params, name);
		const char *v = mine ? mine : server_params->v[i].value;
		if (client_view_set(c, name, v) < 0 || proto_write_param_status(out, name, v) < 0)
			break;
	}
	(void)proto_write_backend_key(out, c->cancel_pid, c->cancel_key);
	(void)proto_write_ready(out, 'I');
}

void client_finish_login(struct client *c)
{
	struct kvlist welcome = {0};
	if (!pool_welcome(c->pool, &welcome)) {
		kvlist_clear(&welcome);
		client_close(c, "08006", "no_server_parameters", "pgmux: server parameters unknown");
		return;
	}
	send_welcome(c, &welcome);
	kvlist_clear(&welcome);
	c->finishing_login = false;
	log_debug("client_ready", "db=%s user=%s addr=%s", cdb(c), cuser(c), c->addr);
}

static void start_transaction(struct client *c);

static void login_ok(struct client *c)
{
	event_del(c->timer);
	for (int i = 0; i < c->login->sp.nparams; i++)
		if (kvlist_set(&c->params, c->login->sp.params[i].name,
			       c->login->sp.params[i].value) < 0) {
			client_close(c, "53200", "out_of_memory", "pgmux: out of memory");
			return;
		}
	/* the startup packet goes with the login state: an idle client keeps
	 * only what it needs (its pool names its database and user) */
	login_free(c->login);
	c->login = NULL;
	if (cancel_register(c) < 0) {
		client_close(c, "53200", "out_of_memory", "pgmux: out of memory");
		return;
	}
	(void)proto_write_auth(bufferevent_get_output(c->bev), 0, NULL, 0);
	c->login_done = true;
	char tls[96];
	log_info("client_login", "db=%s user=%s addr=%s tls=%s", cdb(c), cuser(c), c->addr,
		 tls_describe(c->ssl, tls, sizeof(tls)));
	struct kvlist welcome = {0};
	if (pool_welcome(c->pool, &welcome)) {
		client_set_state(c, CL_IDLE);
		send_welcome(c, &welcome);
		kvlist_clear(&welcome);
		kick(c);
		return;
	}
	kvlist_clear(&welcome);
	/* first client of this pool: a server tells us its parameters */
	c->finishing_login = true;
	client_set_state(c, CL_IDLE);
	start_transaction(c);
}

static void auth_failed(struct client *c)
{
	log_warn("client_login_failed", "db=%s user=%s addr=%s sqlstate=28P01", cdb(c), cuser(c),
		 c->addr);
	client_close(c, "28P01", "auth_failed", "password authentication failed for user \"%s\"",
		     cuser(c));
}

/* Key for made-up SCRAM salts, random to this process. */
static unsigned char mock_key[32];
static bool mock_key_ok;
static pthread_once_t mock_key_once = PTHREAD_ONCE_INIT;

static void mock_key_init(void)
{
	mock_key_ok = RAND_bytes(mock_key, sizeof(mock_key)) == 1;
}

/* A made-up SCRAM secret for a user the auth_file does not know, as
 * PostgreSQL does: the salt is derived from the user name and a key random to
 * this process, so asking twice shows the same salt (a fresh random salt per
 * attempt would tell that the user does not exist); the keys are random, so
 * no proof matches. Returns 0 / -1. */
static int mock_scram_secret(const char *user, struct scram_secret *out)
{
	memset(out, 0, sizeof(*out));
	pthread_once(&mock_key_once, mock_key_init);
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	if (!mock_key_ok ||
	    !HMAC(EVP_sha256(), mock_key, sizeof(mock_key), (const unsigned char *)user,
		  strlen(user), mac, &maclen) ||
	    RAND_bytes(out->stored_key, SCRAM_KEY_LEN) != 1 ||
	    RAND_bytes(out->server_key, SCRAM_KEY_LEN) != 1)
		return -1;
	out->salt_len = 16;
	memcpy(out->salt, mac, out->salt_len);
	out->iterations = SCRAM_DEFAULT_ITERATIONS;
	return 0;
}

static void start_auth(struct client *c)
{
	const struct config *cfg = pool_config();
	struct login *l = c->login;
	/* no pool: a user the auth_file does not know */
	struct creds cr = c->pool ? creds_get(c->pool) : (struct creds){0};
	const struct auth_secret *sec = cr.secret;
	l->creds_version = cr.version;
	struct evbuffer *out = bufferevent_get_output(c->bev);
	l->known = sec != NULL;
	if (cfg->auth_type == AUTH_TRUST) {
		if (!sec && pool_authfile()) {
			log_warn("client_login_failed", "db=%s user=%s addr=%s sqlstate=28000", cdb(c),
				 cuser(c), c->addr);
			client_close(c, "28000", "no_such_user", "role \"%s\" does not exist", cuser(c));
			return;
		}
		login_ok(c);
		return;
	}
	if (cfg->auth_type == AUTH_CERT) {
		/* the handshake verified the certificate (verify-ca/-full); its CN
		 * must be the user, as PostgreSQL's cert method wants, and the
		 * user must be in the auth_file (pgmux logs in to the server with
		 * its password) */
		char cn[256];
		bool has_cert = tls_peer_cn(c->ssl, cn, sizeof(cn)) == 0;
		if (!has_cert || !sec || strcmp(cn, cuser(c)) != 0) {
			log_warn("client_login_failed",
				 "db=%s user=%s addr=%s sqlstate=28000 reason=%s", cdb(c), cuser(c),
				 c->addr, !has_cert ? "no_certificate" : !sec ? "no_such_user" : "cn_mismatch");
			if (!has_cert)
				client_close(c, "28000", "cert_auth_failed",
					     "connection requires a valid client certificate");
			else
				client_close(c, "28000", "cert_auth_failed",
					     "certificate authentication failed for user \"%s\"", cuser(c));
			return;
		}
		login_ok(c);
		return;
	}
	/* md5 needs a plain or md5 secret; SCRAM needs a plain or SCRAM one. Fall
	 * back to whichever the stored secret allows, as PgBouncer does. */
	bool use_md5 = cfg->auth_type == AUTH_MD5;
	if (sec && sec->kind == SECRET_SCRAM)
		use_md5 = false;
	if (sec && sec->kind == SECRET_MD5)
		use_md5 = true;
	if (use_md5) {
		if (RAND_bytes(l->salt, 4) != 1) {
			client_close(c, "53200", "rand_failed", "pgmux: out of randomness");
			return;
		}
		if (sec && sec->kind == SECRET_PLAIN)
			md5_password_hash(sec->value, c->login->sp.user, l->md5hash);
		else if (sec)
			snprintf(l->md5hash, sizeof(l->md5hash), "%s", sec->value);
		l->phase = LG_MD5;
		(void)proto_write_auth(out, 5, l->salt, 4);
		return;
	}
	const struct scram_secret *ss = NULL;
	struct scram_secret mock, derived;
	if (sec && sec->kind == SECRET_SCRAM)
		ss = &sec->scram;
	else if (sec && pool_client_scram_secret(c->pool, &cr, &derived) == 0)
		ss = &derived;
	else if (!sec && mock_scram_secret(c->login->sp.user, &mock) == 0)
		ss = &mock; /* unknown user: same salt every time, a proof that never matches */
	l->scram = scram_server_new(ss);
	OPENSSL_cleanse(&mock, sizeof(mock));
	OPENSSL_cleanse(&derived, sizeof(derived));
	if (!l->scram) {
		client_close(c, "53200", "out_of_memory", "pgmux: out of memory");
		return;
	}
	l->phase = LG_SASL_FIRST;
	/* -PLUS only on TLS pgmux terminates itself, never relayed */
	l->cb_len = tls_server_end_point(c->ssl, l->cb, sizeof(l->cb));
	static const char mechs[] = "SCRAM-SHA-256\0";
	static const char mechs_plus[] = "SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0";
	if (l->cb_len)
		(void)proto_write_auth(out, 10, mechs_plus, sizeof(mechs_plus));
	else
		(void)proto_write_auth(out, 10, mechs, sizeof(mechs));
}

/* Startup parameters become SETs on whichever server serves the client.
 * Names must be plain identifiers; role and session_authorization are
 * refused: they change who the session is, and RESET ALL does not undo
 * them. */
static int check_params(struct client *c)
{
	for (int i = 0; i < c->login->sp.nparams; i++) {
		const char *n = c->login->sp.params[i].name;
		bool ok = n[0] != '\0';
		for (const char *p = n; *p && ok; p++)
			ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			     (*p >= '0' && *p <= '9') || *p == '_' || *p == '.';
		char q[128];
		if (!ok) {
			log_info("protocol_error", "addr=%s reason=bad_parameter_name name=%s", c->addr,
				 log_quote(q, sizeof(q), n));
			client_close(c, "42704", "bad_parameter",
				     "unrecognized configuration parameter \"%s\"", n);
			return -1;
		}
		if (strcasecmp(n, "role") == 0 || strcasecmp(n, "session_authorization") == 0) {
			client_close(c, "0A000", "unsupported_parameter",
				     "pgmux: parameter \"%s\" cannot be set at connect time through a "
				     "pooler; connect as that user instead",
				     n);
			return -1;
		}
	}
	return 0;
}

static void client_hs_event_cb(struct bufferevent *bev, short what, void *arg);

/* Go on over TLS on the same socket: the handshake runs on a bufferevent
 * of its own (net/tls), the client's reads stop until it is done. */
static int upgrade_tls(struct client *c)
{
	rbuf_stop(&c->rb);
	c->ssl = tls_accept_ssl();
	c->hs = c->ssl ? tls_handshake_bev(c->worker->base, c->fd, c->ssl, true)
		       : NULL;
	if (!c->hs)
		return -1;
	bufferevent_setcb(c->hs, NULL, NULL, client_hs_event_cb, c);
	return 0;
}

/* The handshake is over: on success the client's own reads and writes go
 * on through the SSL (net/transport). */
static void client_hs_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct client *c = arg;
	if (what & BEV_EVENT_CONNECTED) {
		c->hs = NULL;
		if (tls_handshake_done(bev, c->bev) < 0) {
			client_close(c, NULL, "out_of_memory", NULL);
			return;
		}
		transport_tls_start(c->ssl);
		rbuf_set_ssl(&c->rb, c->ssl);
		wbuf_set_ssl(&c->wb, c->ssl);
		rbuf_start(&c->rb);
		return;
	}
	char e[160];
	if (*tls_error(bev, e, sizeof(e)))
		log_info("tls_error", "addr=%s reason=\"%s\"", c->addr, e);
	client_close(c, NULL, (what & BEV_EVENT_EOF) ? "client_eof" : "client_error", NULL);
}

/* After an SSLRequest: answer 'S' and go on over TLS. Bytes already read
 * after the SSLRequest were sent in plaintext before the handshake, where a
 * man in the middle could have put them: refused, as PostgreSQL refuses
 * them (CVE-2021-23214). */
static void start_tls(struct client *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	if (evbuffer_get_length(in) > 0) {
		log_info("protocol_error", "addr=%s reason=data_after_ssl_request", c->addr);
		client_close(c, "08P01", "bad_startup", "received unencrypted data after SSL request");
		return;
	}
	wbuf_flush(&c->wb);
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) > 0 ||
	    tls_send_reply(c->fd, 'S') < 0 || upgrade_tls(c) < 0)
		client_close(c, NULL, "tls_setup_failed", NULL);
}

/* The connection's first byte, before anything is read: a TLS handshake
 * record is PostgreSQL 17's direct TLS (no SSLRequest), which must
 * negotiate ALPN "postgresql" (checked once the handshake is done). */
static bool client_first_byte(struct bufferevent *bev, unsigned char first, void *arg)
{
	struct client *c = arg;
	if (first != TLS_HANDSHAKE_BYTE || !tls_accepting())
		return false;
	c->login->direct_tls = true;
	if (upgrade_tls(c) < 0)
		client_close(c, NULL, "tls_setup_failed", NULL);
	return true;
}

static void handle_startup(struct client *c, const uint8_t *data, size_t len)
{
	const struct config *cfg = pool_config();
	const char *err = NULL, *code = NULL;
	struct evbuffer *out = bufferevent_get_output(c->bev);
	startup_cleanup(&c->login->sp);
	if (startup_parse(data, len, &c->login->sp, &err, &code) < 0) {
		log_info("protocol_error", "addr=%s reason=\"%s\"", c->addr, err);
		client_close(c, code, "bad_startup", "%s", err);
		return;
	}
	switch (c->login->sp.kind) {
	case STARTUP_SSL:
		if (tls_accepting() && !c->ssl) {
			start_tls(c);
			return;
		}
		/* the client may go on in plaintext (or, inside TLS, in the
		 * TLS it has) */
		(void)evbuffer_add(out, "N", 1);
		return;
	case STARTUP_GSSENC:
		(void)evbuffer_add(out, "N", 1);
		return;
	case STARTUP_CANCEL:
		cancel_request(c->login->sp.cancel_pid, c->login->sp.cancel_key, c->addr);
		client_close(c, NULL, "cancel_request", NULL);
		return;
	case STARTUP_MESSAGE:
		break;
	}
	if (c->over_limit) {
		log_warn("too_many_clients", "addr=%s max_client_conn=%d", c->addr,
			 cfg->max_client_conn);
		client_close(c, "53300", "too_many_clients", "sorry, too many clients already");
		return;
	}
	if (cfg->client_tls_sslmode >= TLS_REQUIRE && !c->ssl) {
		log_warn("client_login_failed", "db=%s user=%s addr=%s sqlstate=28000 reason=tls_required",
			 cdb(c), cuser(c), c->addr);
		client_close(c, "28000", "tls_required",
			     "pgmux: TLS required (client_tls_sslmode is %s): connect with sslmode=require",
			     config_tls_sslmode_name(cfg->client_tls_sslmode));
		return;
	}
	if ((c->login->sp.version & 0xffff) != 0 || c->login->sp.npq_opts > 0) {
		if (!c->login->negotiated)
			(void)proto_write_negotiate(out, 0, (const char *const *)c->login->sp.pq_opts,
						    c->login->sp.npq_opts);
		c->login->negotiated = true;
	}
	if (check_params(c) < 0)
		return;
	const struct config_db *db = config_find_db(cfg, c->login->sp.database);
	if (!db) {
		log_warn("client_login_failed", "db=%s user=%s addr=%s sqlstate=3D000", cdb(c),
			 cuser(c), c->addr);
		client_close(c, "3D000", "no_such_database", "database \"%s\" does not exist",
			     c->login->sp.database);
		return;
	}
	/* a pool is made for a user the auth_file knows, or for anyone under
	 * trust without one: a stream of made-up user names must not make
	 * pools (they are never freed), so an unknown user authenticates
	 * against nothing and fails */
	const struct authfile *af = pool_authfile();
	if (!af || authfile_lookup(af, c->login->sp.user)) {
		c->pool = pool_get(db, c->login->sp.user);
		if (!c->pool) {
			client_close(c, "53200", "out_of_memory", "pgmux: out of memory");
			return;
		}
		pool_count_client(c->pool, -1, (int)c->state);
	}
	start_auth(c);
}

static void handle_password(struct client *c, const uint8_t *body, size_t len)
{
	struct login *l = c->login;
	struct evbuffer *out = bufferevent_get_output(c->bev);
	if (l->phase == LG_MD5) {
		const uint8_t *nul = memchr(body, 0, len);
		bool ok = nul && l->known &&
			  md5_verify(l->md5hash, l->salt, (const char *)body, (size_t)(nul - body));
		if (ok)
			login_ok(c);
		else
			auth_failed(c);
		return;
	}
	if (l->phase == LG_SASL_FIRST) {
		struct proto_reader r;
		proto_reader_init(&r, body, len);
		const char *mech = proto_get_str(&r);
		uint32_t dlen = proto_get_u32(&r);
		bool plus = mech && l->cb_len && strcmp(mech, "SCRAM-SHA-256-PLUS") == 0;
		if (r.err || !mech || (!plus && strcmp(mech, "SCRAM-SHA-256") != 0) ||
		    dlen == 0xffffffffu || dlen != len - r.pos) {
			client_close(c, "08P01", "bad_sasl", "malformed SASLInitialResponse message");
			return;
		}
		if (l->cb_len && scram_server_channel_binding(l->scram, plus, l->cb, l->cb_len) < 0) {
			client_close(c, "53200", "out_of_memory", "pgmux: SCRAM setup failed");
			return;
		}
		char *reply = NULL;
		if (scram_server_handle_first(l->scram, (const char *)body + r.pos, dlen, &reply) < 0) {
			client_close(c, "08P01", "bad_sasl", "malformed SCRAM client-first-message");
			return;
		}
		(void)proto_write_auth(out, 11, reply, strlen(reply));
		free(reply);
		l->phase = LG_SASL_FINAL;
		return;
	}
	char *reply = NULL;
	uint8_t ckey[SCRAM_KEY_LEN];
	int rc = scram_server_handle_final(l->scram, (const char *)body, len, &reply, ckey);
	if (rc == -1) {
		client_close(c, "08P01", "bad_sasl", "malformed SCRAM client-final-message");
		return;
	}
	if (rc < 0 || !l->known || !c->pool) {
		free(reply);
		auth_failed(c);
		return;
	}
	/* the key proves the verifier this login started with; kept for
	 * server logins only while the credentials are still that version */
	struct creds cr = creds_get(c->pool);
	if (cr.secret && cr.secret->kind == SECRET_SCRAM && cr.version == c->login->creds_version)
		pool_set_client_key(c->pool, ckey, cr.version);
	OPENSSL_cleanse(ckey, sizeof(ckey));
	(void)proto_write_auth(out, 12, reply, strlen(reply));
	free(reply);
	login_ok(c);
}

static void login_read(struct client *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	if (c->login->direct_tls && !tls_alpn_postgresql(c->ssl)) {
		log_info("protocol_error", "addr=%s reason=direct_tls_without_alpn", c->addr);
		client_close(c, "08P01", "bad_startup",
			     "received direct SSL connection request without ALPN protocol "
			     "negotiation extension");
		return;
	}
	while (c->state == CL_LOGIN) {
		size_t avail = evbuffer_get_length(in);
		if (c->login->phase == LG_STARTUP) {
			uint32_t plen;
			enum proto_result pr = frame_peek_startup(in, &plen);
			if (pr == PROTO_AGAIN)
				return;
			if (pr == PROTO_ERROR) {
				log_info("protocol_error", "addr=%s reason=bad_startup_length len=%u",
					 c->addr, plen);
				client_close(c, "08P01", "bad_startup", "invalid startup packet length");
				return;
			}
			if (avail < plen)
				return;
			uint8_t *data = evbuffer_pullup(in, plen);
			uint8_t copy[PROTO_STARTUP_MAX_LEN];
			memcpy(copy, data, plen);
			evbuffer_drain(in, plen);
			handle_startup(c, copy, plen);
			in = bufferevent_get_input(c->bev); /* TLS may have started */
			continue;
		}
		struct frame h;
		enum proto_result pr = frame_peek(in, 0, FRAME_CLIENT_LOGIN, &h);
		if (pr == PROTO_AGAIN)
			return;
		if (pr != PROTO_OK || (h.type != 'p' && h.type != 'X')) {
			log_info("protocol_error", "addr=%s reason=bad_message_during_login type=%d",
				 c->addr, (unsigned char)h.type);
			client_close(c, "08P01", "protocol_violation",
				     "expected password response, got message type %d",
				     (unsigned char)h.type);
			return;
		}
		if (!frame_whole(&h))
			return;
		if (h.type == 'X') {
			client_close(c, NULL, "client_terminate", NULL);
			return;
		}
		uint8_t *msg = evbuffer_pullup(in, 1 + (ssize_t)h.len);
		uint8_t *body = malloc(h.len - 4 + 1);
		if (!body) {
			client_close(c, "53200", "out_of_memory", "pgmux: out of memory");
			return;
		}
		memcpy(body, msg + PROTO_HEADER_LEN, h.len - 4);
		evbuffer_drain(in, 1 + (size_t)h.len);
		handle_password(c, body, h.len - 4);
		OPENSSL_cleanse(body, h.len - 4);
		free(body);
	}
}

/* ---- getting a server ---- */

static void borrow_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;
	if (c->state != CL_WAITING)
		return;
	/* a server it got a slot for may still be logging in: that counts as
	 * waiting (as in PgBouncer); the server goes on to the pool */
	link_client_leaves(c);
	pool_leave_queue(c->pool, c);
	client_set_state(c, CL_IDLE);
	log_warn("pool_borrow_timeout", "db=%s user=%s addr=%s", cdb(c), cuser(c), c->addr);
	client_close(c, "53300", "borrow_timeout",
		     "pgmux: no server connection available for pool %s/%s within "
		     "connection_borrow_timeout",
		     pool_db_name(c->pool), pool_user(c->pool));
}

static void start_waiting(struct client *c)
{
	const struct config *cfg = pool_config();
	client_set_state(c, CL_WAITING);
	c->wait_start_ms = conn_now_ms();
	/* reading goes on, so a client that leaves while queued is noticed; a
	 * client that keeps sending is paused in client_read_cb */
	if (!c->timer) {
		c->timer = evtimer_new(c->worker->base, borrow_timeout_cb, c);
	} else {
		event_del(c->timer); /* never re-assign a pending event */
		event_assign(c->timer, c->worker->base, -1, 0, borrow_timeout_cb, c);
	}
	if (cfg->connection_borrow_timeout > 0) {
		struct timeval tv = {cfg->connection_borrow_timeout, 0};
		evtimer_add(c->timer, &tv);
	}
}

static void start_transaction(struct client *c)
{
	for (;;) {
		struct server *s = NULL;
		switch (pool_acquire(c->pool, c, &s)) {
		case POOL_GOT_SERVER:
			if (server_take(s, c->worker) < 0)
				continue; /* it was dead; try again */
			client_use_server(c, s);
			return;
		case POOL_CONNECT:
			start_waiting(c);
			server_connect(c->pool, c->worker, c);
			return;
		case POOL_WAIT:
			start_waiting(c);
			return;
		}
	}
}

void client_relink(struct client *c)
{
	client_set_state(c, CL_IDLE);
	start_transaction(c);
}

void client_use_server(struct client *c, struct server *s)
{
	if (c->timer)
		event_del(c->timer);
	client_set_state(c, CL_ACTIVE);
	rbuf_start(&c->rb);
	link_open(s, c);
}

void client_on_wake(struct worker *w)
{
	struct pool_worker *pw = w->ctx;
	struct client_list got = TAILQ_HEAD_INITIALIZER(got);
	pthread_mutex_lock(&pw->inbox_lock);
	struct client *c;
	while ((c = TAILQ_FIRST(&pw->inbox)) != NULL) {
		TAILQ_REMOVE(&pw->inbox, c, inbox_entry);
		c->in_inbox = false;
		TAILQ_INSERT_TAIL(&got, c, inbox_entry);
	}
	pthread_mutex_unlock(&pw->inbox_lock);
	while ((c = TAILQ_FIRST(&got)) != NULL) {
		TAILQ_REMOVE(&got, c, inbox_entry);
		bool slot = false;
		struct server *s = pool_take_grant(c->pool, c, &slot);
		if (s) {
			if (server_take(s, w) < 0) {
				start_transaction(c); /* dead server: queue again */
				continue;
			}
			client_use_server(c, s);
		} else if (slot) {
			server_connect(c->pool, w, c);
		}
	}
}

/* ---- data path: client -> server ---- */

/* A message type no client may send: PostgreSQL's answer (08P01, FATAL). */
static void bad_message_type(struct client *c, uint8_t type)
{
	log_info("protocol_error", "addr=%s reason=invalid_message_type type=%d", c->addr, type);
	client_close(c, "08P01", "protocol_violation", "invalid frontend message type %d", type);
}

void client_resume(struct client *c)
{
	if (c->state == CL_ACTIVE || c->state == CL_IDLE) {
		rbuf_start(&c->rb);
		kick(c);
	}
}

void client_forward(struct client *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	if (c->finishing_login) {
		client_finish_login(c);
		if (c->state == CL_CLOSING)
			return;
		if (c->server && link_maybe_release(c->server, false)) {
			kick(c);
			return;
		}
	}
	bool txn_mode = pool_config()->pool_mode == POOL_MODE_TRANSACTION;
	while (c->state == CL_ACTIVE && c->server && c->server->state == SV_ACTIVE &&
	       !c->server->retry_armed) {
		struct server *s = c->server;
		struct evbuffer *sout = bufferevent_get_output(s->bev);
		size_t avail = evbuffer_get_length(in);
		if (avail == 0)
			break;
		if (c->stream.left && c->large) {
			if (frontend_large_chunk(c, s, in, avail) == 0)
				break;
			continue;
		}
		if (c->stream.left) {
			size_t n = frame_stream_chunk(&c->stream, avail);
			relink_log(c, in, n);
			if (c->stream.drop)
				evbuffer_drain(in, n);
			else
				evbuffer_remove_buffer(in, sout, n);
			(void)frame_stream_took(&c->stream, n);
			continue;
		}
		struct frame h;
		enum proto_result pr = frame_peek(in, 0, FRAME_CLIENT, &h);
		if (pr == PROTO_AGAIN)
			break;
		if (pr != PROTO_OK) {
			log_info("protocol_error", "addr=%s reason=bad_message_length type=%d", c->addr,
				 (unsigned char)h.type);
			client_close(c, "08P01", "protocol_violation", "invalid message length");
			return;
		}
		if (h.type == 'X') {
			client_close(c, NULL, "client_terminate", NULL);
			return;
		}
		size_t total = h.total;
		if (!proto_client_type_known(h.type)) {
			bad_message_type(c, (unsigned char)h.type);
			return;
		}
		bool small = h.type == 'E' || h.type == 'S' || h.type == 'H' || h.type == 'c' ||
			     h.type == 'f' || h.type == 'C' || h.type == 'D';
		if (small && !(txn_mode && frontend_wants(h.type))) {
			/* small control messages are checked whole before they go out
			 * (frontend_message checks its own; in session mode a Query,
			 * Parse or Bind streams as it is, and the backend checks it, as
			 * on a direct connection): a malformed one costs the client,
			 * never the server */
			if (!frame_whole(&h))
				break;
			const uint8_t *m = evbuffer_pullup(in, (ssize_t)total);
			const char *bad = m ? proto_check_client_msg(h.type, m + 5, total - 5, false)
					    : "out of memory";
			if (bad) {
				log_info("protocol_error", "addr=%s reason=malformed_message type=%c",
					 c->addr, h.type);
				client_close(c, "08P01", "protocol_violation", "%s", bad);
				return;
			}
		}
		c->last_active_ms = conn_now_ms();
		bool copy_msg = h.type == 'd' || h.type == 'c' || h.type == 'f';
		if (s->server_in_copy && !copy_msg && h.type != 'S' && h.type != 'H') {
			/* the backend would take it as a protocol violation and not
			 * answer it: refuse it here, as PostgreSQL does */
			log_info("protocol_error", "addr=%s reason=message_during_copy_in type=%c",
				 c->addr, h.type);
			client_close(c, "08P01", "protocol_violation",
				     "unexpected message type 0x%02X during COPY from stdin",
				     (unsigned)(unsigned char)h.type);
			return;
		}
		if (copy_msg && !s->server_in_copy && (s->copy_open || s->reqs.count == 0)) {
			/* copy data after the backend left copy mode (it failed), or
			 * with nothing outstanding: the backend would ignore it, so it
			 * never goes out, and nothing is left in flight when the copy
			 * ends. (Copy data pipelined behind a request that may start a
			 * COPY goes on: the backend takes it, or ignores it.) */
			if (h.type != 'd' && !frame_whole(&h))
				break; /* CopyDone/CopyFail are acted on whole */
			size_t n = frame_have(&h);
			relink_log(c, in, n);
			evbuffer_drain(in, n);
			frame_stream_start(&c->stream, &h, n, true);
			if (h.type != 'd')
				server_note_client_msg(s, h.type);
			if (h.type != 'd' && link_maybe_release(s, false)) {
				kick(c);
				return;
			}
			continue;
		}
		if (txn_mode && (s->nclose || s->orphan_seen != pstmt_orphan_gen()))
			frontend_flush_closes(s);
		if (txn_mode && frontend_wants(h.type)) {
			enum fe_result fr = frontend_message(c, s, &h);
			if (fr == FE_WAIT)
				break;
			if (fr == FE_CLOSED)
				return;
			/* an answer of pgmux's own (DEALLOCATE) may end the transaction */
			if (s->reqs.count == 0 && link_maybe_release(s, false)) {
				kick(c);
				return;
			}
			continue;
		}
		if (h.type == 'F' || (!txn_mode && (h.type == 'Q' || h.type == 'B')))
			relink_ran(c, false); /* runs something pgmux did not look at */
		if (txn_mode)
			frontend_capture(s, h.type, in, total);
		size_t n = frame_have(&h);
		relink_log(c, in, n);
		evbuffer_remove_buffer(in, sout, n);
		frame_stream_start(&c->stream, &h, n, false);
		server_note_client_msg(s, h.type);
		if (s->state == SV_CLOSING)
			return;
		/* CopyDone/CopyFail may end the transaction's last open item */
		if ((h.type == 'c' || h.type == 'f') && link_maybe_release(s, false)) {
			kick(c);
			return;
		}
	}
	if (c->server && c->state == CL_ACTIVE)
		(void)wbuf_pause_reader(&c->server->wb, &c->rb);
}

/* Peek at the next message to decide whether it needs a server. */
static void idle_read(struct client *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct frame h;
	enum proto_result pr = frame_peek(in, 0, FRAME_CLIENT, &h);
	if (pr == PROTO_AGAIN)
		return;
	if (pr != PROTO_OK) {
		log_info("protocol_error", "addr=%s reason=bad_message_length type=%d", c->addr,
			 (unsigned char)h.type);
		client_close(c, "08P01", "protocol_violation", "invalid message length");
		return;
	}
	if (h.type == 'X') {
		client_close(c, NULL, "client_terminate", NULL);
		return;
	}
	if (!proto_client_type_known(h.type)) {
		bad_message_type(c, (unsigned char)h.type);
		return;
	}
	if (h.type == 'c' || h.type == 'd' || h.type == 'f') {
		/* late copy data after the copy ended: the server would ignore it */
		if (!frame_whole(&h))
			return;
		evbuffer_drain(in, h.total);
		kick(c);
		return;
	}
	c->last_active_ms = conn_now_ms();
	if (h.type == 'P' && pool_config()->pool_mode == POOL_MODE_TRANSACTION &&
	    frontend_idle_parse(c)) {
		kick(c); /* whatever follows */
		return;
	}
	start_transaction(c);
}

static void client_read_cb(struct bufferevent *bev, void *arg)
{
	struct client *c = arg;
	switch (c->state) {
	case CL_LOGIN:
		login_read(c);
		break;
	case CL_IDLE:
		idle_read(c);
		break;
	case CL_ACTIVE:
		client_forward(c);
		break;
	case CL_WAITING:
		if (evbuffer_get_length(bufferevent_get_input(bev)) > WAIT_INPUT_MAX)
			rbuf_stop(&c->rb); /* resumed when a server is linked */
		break;
	case CL_CLOSING:
		break;
	}
}

static void client_write_cb(struct bufferevent *bev, void *arg)
{
	struct client *c = arg;
	struct server *s = c->server;
	wbuf_written(&c->wb);
	/* the client drained: let its server send more, if back-pressure had
	 * paused it */
	if (s && s->state == SV_ACTIVE && s->client == c && !s->rb.on) {
		bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
		rbuf_start(&s->rb);
		bufferevent_trigger(s->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
	}
}

static void client_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct client *c = arg;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		if (c->ssl && (what & BEV_EVENT_ERROR) && errno == EPROTO)
			log_info("tls_error", "addr=%s reason=\"%s\"", c->addr,
				 transport_last_error());
		if (c->state == CL_LOGIN && c->login && !c->login->sp.user)
			log_info("protocol_error", "addr=%s reason=closed_before_startup", c->addr);
		client_close(c, NULL, (what & BEV_EVENT_EOF) ? "client_eof" : "client_error", NULL);
	}
}

/* ---- local cancel ---- */

void client_cancel_local(struct client *c)
{
	if (c->server)
		return; /* its own server is connecting: it will run the query, cancel then */
	/* find the end of the first Query or Sync the client is waiting on */
	struct evbuffer *in = bufferevent_get_input(c->bev);
	size_t off = 0;
	struct frame h;
	while (frame_peek(in, off, FRAME_CLIENT, &h) == PROTO_OK && frame_whole(&h)) {
		off += h.total;
		if (h.type == 'Q' || h.type == 'S') {
			pool_leave_queue(c->pool, c);
			if (c->state != CL_WAITING)
				return;
			event_del(c->timer);
			evbuffer_drain(in, off);
			log_info("cancel_local", "db=%s user=%s addr=%s", cdb(c), cuser(c), c->addr);
			struct evbuffer *out = bufferevent_get_output(c->bev);
			(void)proto_write_error(out, "ERROR", "57014", "canceling statement due to user request");
			(void)proto_write_ready(out, 'I');
			client_set_state(c, CL_IDLE);
			rbuf_start(&c->rb);
			kick(c);
			return;
		}
	}
}

/* ---- timers and shutdown ---- */

void client_on_fast_tick(struct worker *w)
{
	if (pool_config()->query_timeout <= 0)
		return;
	struct pool_worker *pw = w->ctx;
	uint64_t now = conn_now_ms();
	struct client *c, *tmp;
	TAILQ_FOREACH_SAFE(c, &pw->clients, worker_entry, tmp) {
		if (c->state == CL_ACTIVE && c->server && c->server->client == c)
			server_check_query_timeout(c->server, now);
	}
}

/* Give memory back after a burst: once the number of clients has fallen to
 * half its peak (and by at least TRIM_MIN_DROP) and stopped falling, freed
 * connection memory is returned to the system (glibc keeps freed chunks in
 * its arenas, so 10,000 clients that came and went would leave their peak
 * RSS behind). Worker 0 looks once a second. The peak is kept at every
 * accept (nclients_peak), not sampled by the tick: a burst that comes and
 * goes within one second (10,000 logins take 0.4 s on a fast machine) must
 * count too. The last count is only touched on worker 0. */
#define TRIM_MIN_DROP 256

static void trim_after_burst(void)
{
	static int last;
	int n = client_count();
	int peak = __atomic_load_n(&nclients_peak, __ATOMIC_RELAXED);
	bool falling = n < last;
	last = n;
	if (falling || peak - n < TRIM_MIN_DROP || n > peak / 2)
		return;
	malloc_trim(0);
	log_info("memory_trimmed", "clients=%d peak=%d", n, peak);
	/* a new burst starts from here; an accept racing with this store may
	 * lose its peak update, which only delays the next trim */
	__atomic_store_n(&nclients_peak, n, __ATOMIC_RELAXED);
}

void client_on_tick(struct worker *w)
{
	const struct config *cfg = pool_config();
	if (w->id == 0)
		trim_after_burst();
	struct pool_worker *pw = w->ctx;
	uint64_t now = conn_now_ms(), limit = (uint64_t)cfg->idle_client_timeout * 1000;
	if (cfg->idle_client_timeout <= 0)
		return;
	struct client *c, *tmp;
	TAILQ_FOREACH_SAFE(c, &pw->clients, worker_entry, tmp) {
		if (c->state == CL_IDLE && now - c->last_active_ms >= limit)
			client_close(c, "57P05", "idle_client_timeout",
				     "terminating connection due to idle timeout (idle_client_timeout)");
	}
}

void client_shutdown_worker(struct worker *w)
{
	struct pool_worker *pw = w->ctx;
	pw->listening = false;
	struct client *c, *tmp;
	TAILQ_FOREACH_SAFE(c, &pw->clients, worker_entry, tmp) {
		if (c->state == CL_ACTIVE && c->server) {
			c->closing_after_txn = true;
			if (link_maybe_release(c->server, true))
				client_close(c, "57P01", "shutdown", "pgmux is shutting down");
		} else if (c->state != CL_CLOSING) {
			client_close(c, "57P01", "shutdown", "pgmux is shutting down");
		}
	}
}
