/* TLS towards clients. See tls.h. */
#include "net/tls.h"

#include "core/config.h"

#include <errno.h>
#include <pthread.h>
#include <time.h>
#include <event2/bufferevent.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <arpa/inet.h>
#include <string.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

/* PgBouncer's cipher shortcuts; anything else is an OpenSSL cipher list
 * (TLS 1.2; TLS 1.3 suites are OpenSSL's defaults, all of them AEAD) */
static const char *cipher_list(const char *ciphers)
{
	if (strcasecmp(ciphers, "default") == 0 || strcasecmp(ciphers, "secure") == 0 ||
	    strcasecmp(ciphers, "fast") == 0 || strcasecmp(ciphers, "normal") == 0)
		return "HIGH:!aNULL:!eNULL:!MD5:!3DES:!RC4";
	if (strcasecmp(ciphers, "compat") == 0 || strcasecmp(ciphers, "legacy") == 0 ||
	    strcasecmp(ciphers, "insecure") == 0 || strcasecmp(ciphers, "all") == 0)
		return "ALL:!aNULL:!eNULL";
	return ciphers;
}

static void set_err(char *err, size_t errlen, const char *what, const char *path)
{
	unsigned long e = ERR_peek_last_error();
	const char *reason = e ? ERR_reason_error_string(e) : NULL;
	if (e && !reason)
		reason = "unknown OpenSSL error";
	ERR_clear_error();
	if (path)
		snprintf(err, errlen, "%s %s: %s", what, path, e ? reason : strerror(errno));
	else
		snprintf(err, errlen, "%s: %s", what, e ? reason : "invalid");
}

/* ALPN: "postgresql" or nothing. A client that offers ALPN without it is
 * refused with no_application_protocol, as PostgreSQL 17 does. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned int inlen, void *arg)
{
	static const unsigned char pg[] = "\x0apostgresql";
	(void)ssl;
	(void)arg;
	if (SSL_select_next_proto((unsigned char **)out, outlen, pg, sizeof(pg) - 1, in, inlen) ==
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_OK;
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* ---- session tickets ----
 * Tickets are sealed with process-wide keys (AES-256-CBC + HMAC-SHA256, as
 * OpenSSL's own) that rotate every TLS_TICKET_KEY_SECONDS: a ticket sealed
 * with the current key resumes, one sealed with the previous key resumes
 * and is replaced, an older one falls back to a full handshake. So a key
 * that leaks exposes at most two periods of sessions, and the keys are the
 * same for every context (a context swapped by a reload keeps resuming). */
struct ticket_key {
	unsigned char name[16];
	unsigned char aes[32];
	unsigned char hmac[32];
};

static struct {
	pthread_mutex_t lock;
	struct ticket_key cur, prev;
	bool have_cur, have_prev;
	time_t made; /* when cur was made (CLOCK_MONOTONIC seconds) */
} tickets = {.lock = PTHREAD_MUTEX_INITIALIZER};

static time_t mono_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

/* Under tickets.lock. */
static int rotate_locked(time_t now)
{
	struct ticket_key k;
	if (RAND_bytes(k.name, sizeof(k.name)) != 1 || RAND_bytes(k.aes, sizeof(k.aes)) != 1 ||
	    RAND_bytes(k.hmac, sizeof(k.hmac)) != 1)
		return -1;
	tickets.prev = tickets.cur;
	tickets.have_prev = tickets.have_cur;
	tickets.cur = k;
	tickets.have_cur = true;
	tickets.made = now;
	OPENSSL_cleanse(&k, sizeof(k));
	return 0;
}

int tls_rotate_ticket_keys(void)
{
	pthread_mutex_lock(&tickets.lock);
	int rc = rotate_locked(mono_seconds());
	pthread_mutex_unlock(&tickets.lock);
	return rc;
}

static int ticket_cb(SSL *ssl, unsigned char *name, unsigned char *iv, EVP_CIPHER_CTX *cctx,
		     EVP_MAC_CTX *hctx, int enc)
{
	(void)ssl;
	int rc = 0;
	pthread_mutex_lock(&tickets.lock);
	time_t now = mono_seconds();
	if ((!tickets.have_cur || now - tickets.made >= TLS_TICKET_KEY_SECONDS) &&
	    rotate_locked(now) < 0)
		goto out;
	const struct ticket_key *k = NULL;
	if (enc) {
		k = &tickets.cur;
		if (RAND_bytes(iv, 16) != 1)
			goto out;
		memcpy(name, k->name, sizeof(k->name));
		rc = 1;
	} else if (memcmp(name, tickets.cur.name, 16) == 0) {
		/* good; renewed all the same (2): a client that resumes always
		 * leaves with a fresh ticket, as with OpenSSL's own keys */
		k = &tickets.cur;
		rc = 2;
	} else if (tickets.have_prev && memcmp(name, tickets.prev.name, 16) == 0) {
		k = &tickets.prev;
		rc = 2; /* good, and the new ticket is sealed with the current key */
	} else {
		goto out; /* unknown or expired key: a full handshake */
	}
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)k->hmac, sizeof(k->hmac)),
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
		OSSL_PARAM_construct_end()};
	int ok = enc ? EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv)
		     : EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv);
	if (ok != 1 || EVP_MAC_CTX_set_params(hctx, params) != 1)
		rc = -1;
out:
	pthread_mutex_unlock(&tickets.lock);
	return rc;
}

/* What both sides' contexts share: protocols, options, ciphers and, when
 * CERT is set, a certificate and key. SIDE ("client" or "server") names the
 * settings in errors. Returns 0, or -1 with ERR set. */
static int ctx_common(SSL_CTX *ctx, const char *side, const char *protocols, const char *ciphers,
		      const char *cert, const char *key, char *err, size_t errlen)
{
	char what[64];
	int min = TLS1_2_VERSION, max = TLS1_3_VERSION;
	if (config_tls_protocols(protocols, &min, &max) < 0) {
		snprintf(err, errlen, "%s_tls_protocols: unsupported value", side);
		return -1;
	}
	SSL_CTX_set_min_proto_version(ctx, min);
	SSL_CTX_set_max_proto_version(ctx, max);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
					 SSL_OP_CIPHER_SERVER_PREFERENCE);
	/* net/transport may retry a write with another pointer after
	 * SSL_ERROR_WANT_WRITE; an idle connection keeps no record buffers */
	SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
	if (SSL_CTX_set_cipher_list(ctx, cipher_list(ciphers)) != 1) {
		snprintf(what, sizeof(what), "%s_tls_ciphers", side);
		set_err(err, errlen, what, NULL);
		return -1;
	}
	if (!cert)
		return 0;
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		snprintf(what, sizeof(what), "%s_tls_cert_file", side);
		set_err(err, errlen, what, cert);
		return -1;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		unsigned long e = ERR_peek_last_error();
		if (ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH) {
			snprintf(err, errlen, "%s_tls_key_file %s does not match %s_tls_cert_file", side,
				 key, side);
			ERR_clear_error();
		} else {
			snprintf(what, sizeof(what), "%s_tls_key_file", side);
			set_err(err, errlen, what, key);
		}
		return -1;
	}
	return 0;
}

static int ctx_load_ca(SSL_CTX *ctx, const char *side, const char *ca, char *err, size_t errlen)
{
	char what[64];
	if (SSL_CTX_load_verify_locations(ctx, ca, NULL) == 1)
		return 0;
	snprintf(what, sizeof(what), "%s_tls_ca_file", side);
	set_err(err, errlen, what, ca);
	return -1;
}

SSL_CTX *tls_accept_ctx_new(const struct config *cfg, char *err, size_t errlen)
{
	err[0] = '\0';
	if (cfg->client_tls_sslmode == TLS_DISABLE)
		return NULL;
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx) {
		set_err(err, errlen, "client TLS", NULL);
		return NULL;
	}
	if (ctx_common(ctx, "client", cfg->client_tls_protocols, cfg->client_tls_ciphers,
		       cfg->client_tls_cert_file, cfg->client_tls_key_file, err, errlen) < 0)
		goto fail;
	if (cfg->client_tls_ca_file) {
		if (ctx_load_ca(ctx, "client", cfg->client_tls_ca_file, err, errlen) < 0)
			goto fail;
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->client_tls_ca_file);
		if (names)
			SSL_CTX_set_client_CA_list(ctx, names);
	}
	if (cfg->client_tls_sslmode >= TLS_VERIFY_CA)
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	else if (cfg->client_tls_ca_file)
		/* a certificate is checked if the client sends one */
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	else
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	/* session resumption: stateless tickets (TLS 1.3 and 1.2) sealed with
	 * pgmux's process-wide rotating keys (ticket_cb), and a server-side
	 * cache for TLS 1.2
	 * session ids */
	SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"pgmux", 5);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	SSL_CTX_set_timeout(ctx, TLS_TICKET_KEY_SECONDS);
	if (SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb) != 1) {
		set_err(err, errlen, "client TLS session tickets", NULL);
		goto fail;
	}
	return ctx;
fail:
	ERR_clear_error();
	SSL_CTX_free(ctx);
	return NULL;
}

SSL_CTX *tls_connect_ctx_new(const struct config *cfg, char *err, size_t errlen)
{
	err[0] = '\0';
	if (cfg->server_tls_sslmode <= TLS_ALLOW)
		return NULL;
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		set_err(err, errlen, "server TLS", NULL);
		return NULL;
	}
	if (ctx_common(ctx, "server", cfg->server_tls_protocols, cfg->server_tls_ciphers,
		       cfg->server_tls_cert_file, cfg->server_tls_key_file, err, errlen) < 0)
		goto fail;
	if (cfg->server_tls_ca_file && ctx_load_ca(ctx, "server", cfg->server_tls_ca_file, err,
						   errlen) < 0)
		goto fail;
	/* libpq's meanings: verify-ca and verify-full check the chain (and
	 * require does too when a CA file is given, as libpq does with a root
	 * certificate present); verify-full checks the name per connection */
	bool verify = cfg->server_tls_sslmode >= TLS_VERIFY_CA ||
		      (cfg->server_tls_sslmode == TLS_REQUIRE && cfg->server_tls_ca_file);
	SSL_CTX_set_verify(ctx, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
	return ctx;
fail:
	ERR_clear_error();
	SSL_CTX_free(ctx);
	return NULL;
}

static SSL_CTX *accept_ctx;  /* atomic: the installed context, or NULL */
static SSL_CTX *connect_ctx; /* atomic: likewise for server connections */
static bool verify_server_name; /* written before the workers start */

void tls_accept_ctx_install(SSL_CTX *ctx)
{
	/* each SSL holds its own reference to its context, so the old one
	 * lives until its last connection is freed */
	SSL_CTX *old = __atomic_exchange_n(&accept_ctx, ctx, __ATOMIC_ACQ_REL);
	SSL_CTX_free(old);
}

void tls_connect_ctx_install(SSL_CTX *ctx, bool verify_name)
{
	__atomic_store_n(&verify_server_name, verify_name, __ATOMIC_RELAXED);
	SSL_CTX *old = __atomic_exchange_n(&connect_ctx, ctx, __ATOMIC_ACQ_REL);
	SSL_CTX_free(old);
}

bool tls_connecting(void)
{
	return __atomic_load_n(&connect_ctx, __ATOMIC_ACQUIRE) != NULL;
}

SSL *tls_connect_ssl(const char *host)
{
	SSL_CTX *ctx = __atomic_load_n(&connect_ctx, __ATOMIC_ACQUIRE);
	SSL *ssl = ctx ? SSL_new(ctx) : NULL;
	if (!ssl)
		return NULL;
	unsigned char addr[16];
	bool is_ip = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
	int ok = 1;
	/* SNI for a name, as libpq sends it (never for an address) */
	if (!is_ip)
		ok = SSL_set_tlsext_host_name(ssl, host);
	if (ok && __atomic_load_n(&verify_server_name, __ATOMIC_RELAXED)) {
		X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
		X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host) : SSL_set1_host(ssl, host);
	}
	if (!ok) {
		SSL_free(ssl);
		return NULL;
	}
	return ssl;
}

bool tls_accepting(void)
{
	return __atomic_load_n(&accept_ctx, __ATOMIC_ACQUIRE) != NULL;
}

void tls_shutdown(void)
{
	tls_accept_ctx_install(NULL);
	tls_connect_ctx_install(NULL, false);
}

int tls_send_reply(int fd, char reply)
{
	ssize_t n;
	do
		n = send(fd, &reply, 1, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	return n == 1 ? 0 : -1;
}

SSL *tls_accept_ssl(void)
{
	/* the installed context may be swapped meanwhile: SSL_new takes its
	 * own reference before this one could be the last */
	SSL_CTX *ctx = __atomic_load_n(&accept_ctx, __ATOMIC_ACQUIRE);
	return ctx ? SSL_new(ctx) : NULL;
}

struct bufferevent *tls_handshake_bev(struct event_base *base, int fd, SSL *ssl, bool accepting)
{
	struct bufferevent *bev = bufferevent_openssl_socket_new(
		base, fd, ssl, accepting ? BUFFEREVENT_SSL_ACCEPTING : BUFFEREVENT_SSL_CONNECTING, 0);
	if (bev)
		/* a peer that closes without close_notify has still said all it said */
		bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

int tls_handshake_done(struct bufferevent *hs, struct bufferevent *dst)
{
	/* libevent reads nothing after the handshake while EV_READ is off, but
	 * whatever it decrypted belongs to the stream. A socket bufferevent
	 * keeps its input's end frozen outside its own read handler: thaw it
	 * for the move, as net/rbuf does for its appends. */
	struct evbuffer *in = bufferevent_get_input(dst), *from = bufferevent_get_input(hs);
	int rc = 0;
	if (evbuffer_get_length(from) > 0) {
		evbuffer_unfreeze(in, 0);
		rc = evbuffer_add_buffer(in, from);
		evbuffer_freeze(in, 0);
		if (rc == 0)
			/* the socket will not say these are there: read them next turn */
			bufferevent_trigger(dst, EV_READ,
					    BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
	}
	bufferevent_free(hs);
	return rc;
}

const char *tls_error(struct bufferevent *bev, char *buf, size_t len)
{
	buf[0] = '\0';
	unsigned long e, first = 0;
	while ((e = bufferevent_get_openssl_error(bev)) != 0)
		if (!first)
			first = e;
	if (first) {
		const char *r = ERR_reason_error_string(first);
		snprintf(buf, len, "%s", r ? r : "TLS error");
	}
	return buf;
}

const char *tls_describe(SSL *ssl, char *buf, size_t len)
{
	if (!ssl)
		snprintf(buf, len, "none");
	else
		snprintf(buf, len, "%s/%s", SSL_get_version(ssl), SSL_get_cipher_name(ssl));
	return buf;
}

static size_t end_point(X509 *cert, unsigned char *out, size_t len)
{
	int md_nid = NID_undef;
	if (!cert || !X509_get_signature_info(cert, &md_nid, NULL, NULL, NULL) ||
	    md_nid == NID_undef)
		return 0;
	if (md_nid == NID_md5 || md_nid == NID_sha1)
		md_nid = NID_sha256;
	const EVP_MD *md = EVP_get_digestbynid(md_nid);
	unsigned char hash[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	if (!md || !X509_digest(cert, md, hash, &n) || n > len)
		return 0;
	memcpy(out, hash, n);
	return n;
}

size_t tls_server_end_point(SSL *ssl, unsigned char *out, size_t len)
{
	return ssl ? end_point(SSL_get_certificate(ssl), out, len) : 0;
}

size_t tls_peer_end_point(SSL *ssl, unsigned char *out, size_t len)
{
	return ssl ? end_point(SSL_get0_peer_certificate(ssl), out, len) : 0;
}

bool tls_alpn_postgresql(SSL *ssl)
{
	const unsigned char *p = NULL;
	unsigned int n = 0;
	if (ssl)
		SSL_get0_alpn_selected(ssl, &p, &n);
	return n == 10 && memcmp(p, "postgresql", 10) == 0;
}

int tls_peer_cn(SSL *ssl, char *buf, size_t len)
{
	X509 *cert = ssl ? SSL_get0_peer_certificate(ssl) : NULL;
	if (!cert || SSL_get_verify_result(ssl) != X509_V_OK)
		return -1;
	X509_NAME *name = X509_get_subject_name(cert);
	int i = name ? X509_NAME_get_index_by_NID(name, NID_commonName, -1) : -1;
	if (i < 0)
		return -1;
	const ASN1_STRING *d = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
	unsigned char *utf8 = NULL;
	int n = d ? ASN1_STRING_to_UTF8(&utf8, d) : -1;
	int rc = -1;
	if (n > 0 && (size_t)n < len && memchr(utf8, 0, (size_t)n) == NULL) {
		memcpy(buf, utf8, (size_t)n);
		buf[n] = '\0';
		rc = 0;
	}
	OPENSSL_free(utf8);
	return rc;
}
