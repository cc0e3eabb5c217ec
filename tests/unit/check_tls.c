/* net/tls: the accepting context (protocols, errors naming the setting),
 * session resumption across ticket key rotations, and the
 * tls-server-end-point hash. Handshakes run in memory: a client SSL and a
 * server SSL from tls_accept_ctx_new, joined by a BIO pair. */
#include <check.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "net/tls.h"

static char dir[256], crt[300], key[300], key2[300];

static void write_pair(const char *cpath, const char *kpath, EVP_PKEY *pk)
{
	X509 *x = X509_new();
	ck_assert_ptr_nonnull(x);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
	X509_gmtime_adj(X509_getm_notBefore(x), -60);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_NAME *n = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1,
				   0);
	X509_set_issuer_name(x, n);
	X509_set_pubkey(x, pk);
	ck_assert_int_gt(X509_sign(x, pk, EVP_sha384()), 0);
	FILE *f = fopen(cpath, "w");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(PEM_write_X509(f, x), 1);
	fclose(f);
	if (kpath) {
		f = fopen(kpath, "w");
		ck_assert_ptr_nonnull(f);
		ck_assert_int_eq(PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL), 1);
		fclose(f);
	}
	X509_free(x);
}

static void setup(void)
{
	snprintf(dir, sizeof(dir), "%s/check_tls.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(crt, sizeof(crt), "%s/pgmux.crt", dir);
	snprintf(key, sizeof(key), "%s/pgmux.key", dir);
	snprintf(key2, sizeof(key2), "%s/other.key", dir);
	EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	EVP_PKEY *pk2 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	ck_assert_ptr_nonnull(pk);
	ck_assert_ptr_nonnull(pk2);
	write_pair(crt, key, pk);
	FILE *f = fopen(key2, "w");
	ck_assert_int_eq(PEM_write_PrivateKey(f, pk2, NULL, NULL, 0, NULL, NULL), 1);
	fclose(f);
	EVP_PKEY_free(pk);
	EVP_PKEY_free(pk2);
}

static void teardown(void)
{
	unlink(crt);
	unlink(key);
	unlink(key2);
	rmdir(dir);
}

static struct config cfg_with(enum tls_sslmode mode, const char *protocols, const char *ciphers)
{
	struct config c;
	memset(&c, 0, sizeof(c));
	c.client_tls_sslmode = mode;
	c.client_tls_cert_file = crt;
	c.client_tls_key_file = key;
	c.client_tls_protocols = (char *)protocols;
	c.client_tls_ciphers = (char *)ciphers;
	return c;
}

/* The newest session a client received (TLS 1.3 tickets arrive after the
 * handshake; the new-session callback is how a client learns of them). */
static SSL_SESSION *newest;

static int new_session(SSL *ssl, SSL_SESSION *sess)
{
	(void)ssl;
	SSL_SESSION_free(newest);
	newest = sess; /* ours: returning 1 keeps the reference */
	return 1;
}

/* Run a handshake between a fresh client (offering SESS) and a server SSL
 * from CTX; returns whether the session was resumed, and in *OUT the
 * session the client ends up with (for the next connection). */
static bool handshake(SSL_CTX *sctx, SSL_CTX *cctx, SSL_SESSION *sess, SSL_SESSION **out)
{
	SSL *srv = SSL_new(sctx), *cli = SSL_new(cctx);
	BIO *a, *b;
	ck_assert_int_eq(BIO_new_bio_pair(&a, 0, &b, 0), 1);
	SSL_set_bio(srv, a, a);
	SSL_set_bio(cli, b, b);
	SSL_set_accept_state(srv);
	SSL_set_connect_state(cli);
	if (sess)
		ck_assert_int_eq(SSL_set_session(cli, sess), 1);
	bool sdone = false, cdone = false;
	for (int i = 0; i < 50 && !(sdone && cdone); i++) {
		if (!cdone) {
			int r = SSL_do_handshake(cli);
			cdone = r == 1;
			if (r != 1)
				ck_assert_int_eq(SSL_get_error(cli, r), SSL_ERROR_WANT_READ);
		}
		if (!sdone) {
			int r = SSL_do_handshake(srv);
			sdone = r == 1;
			if (r != 1)
				ck_assert_int_eq(SSL_get_error(srv, r), SSL_ERROR_WANT_READ);
		}
	}
	ck_assert(sdone && cdone);
	/* TLS 1.3 tickets come after the handshake: let the client read them */
	char buf[16];
	for (int i = 0; i < 4; i++) {
		(void)SSL_write(srv, "x", 1);
		(void)SSL_read(cli, buf, sizeof(buf));
	}
	bool reused = SSL_session_reused(cli) == 1;
	ck_assert_ptr_nonnull(newest);
	*out = newest;
	newest = NULL;
	/* a clean close: a session of a connection freed without one is
	 * dropped as possibly bad */
	(void)SSL_shutdown(cli);
	(void)SSL_shutdown(srv);
	SSL_free(cli);
	SSL_free(srv);
	return reused;
}

START_TEST(test_resumption_across_rotations)
{
	struct config c = cfg_with(TLS_REQUIRE, "secure", "default");
	char err[256];
	SSL_CTX *sctx = tls_accept_ctx_new(&c, err, sizeof(err));
	ck_assert_msg(sctx != NULL, "%s", err);
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_session_cache_mode(cctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(cctx, new_session);
	SSL_SESSION *s1 = NULL, *s2 = NULL, *s3 = NULL, *s4 = NULL, *s5 = NULL;

	ck_assert(!handshake(sctx, cctx, NULL, &s1));
	ck_assert(handshake(sctx, cctx, s1, &s2)); /* same key: resumed */
	ck_assert_int_eq(tls_rotate_ticket_keys(), 0);
	ck_assert(handshake(sctx, cctx, s2, &s3)); /* previous key: resumed, renewed */
	ck_assert_int_eq(tls_rotate_ticket_keys(), 0);
	ck_assert(handshake(sctx, cctx, s3, &s4)); /* s3 was sealed with the then current key */
	ck_assert_int_eq(tls_rotate_ticket_keys(), 0);
	ck_assert_int_eq(tls_rotate_ticket_keys(), 0);
	ck_assert(!handshake(sctx, cctx, s4, &s5)); /* two rotations on: full handshake */
	SSL_SESSION_free(s1);
	SSL_SESSION_free(s2);
	SSL_SESSION_free(s3);
	SSL_SESSION_free(s4);
	SSL_SESSION_free(s5);

	/* a second context (as after a reload) resumes the first one's tickets */
	SSL_CTX *sctx2 = tls_accept_ctx_new(&c, err, sizeof(err));
	ck_assert_ptr_nonnull(sctx2);
	ck_assert(!handshake(sctx, cctx, NULL, &s1));
	ck_assert(handshake(sctx2, cctx, s1, &s2));
	SSL_SESSION_free(s1);
	SSL_SESSION_free(s2);
	SSL_CTX_free(sctx2);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
}
END_TEST

START_TEST(test_protocols_and_errors)
{
	char err[256];
	struct config c = cfg_with(TLS_DISABLE, "secure", "default");
	ck_assert_ptr_null(tls_accept_ctx_new(&c, err, sizeof(err)));
	ck_assert_str_eq(err, "");

	c = cfg_with(TLS_PREFER, "tlsv1.3", "default");
	SSL_CTX *ctx = tls_accept_ctx_new(&c, err, sizeof(err));
	ck_assert_ptr_nonnull(ctx);
	ck_assert_int_eq(SSL_CTX_get_min_proto_version(ctx), TLS1_3_VERSION);
	ck_assert_int_eq(SSL_CTX_get_max_proto_version(ctx), TLS1_3_VERSION);
	ck_assert(SSL_CTX_get_options(ctx) & SSL_OP_NO_RENEGOTIATION);
	ck_assert(SSL_CTX_get_options(ctx) & SSL_OP_NO_COMPRESSION);
	SSL_CTX_free(ctx);

	c = cfg_with(TLS_PREFER, "secure", "default");
	ctx = tls_accept_ctx_new(&c, err, sizeof(err));
	ck_assert_int_eq(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
	SSL_CTX_free(ctx);

	c = cfg_with(TLS_PREFER, "secure", "NO-SUCH-CIPHER");
	ck_assert_ptr_null(tls_accept_ctx_new(&c, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "client_tls_ciphers"));

	c = cfg_with(TLS_PREFER, "secure", "default");
	c.client_tls_key_file = key2;
	ck_assert_ptr_null(tls_accept_ctx_new(&c, err, sizeof(err)));
	ck_assert_msg(strstr(err, "does not match client_tls_cert_file") != NULL, "%s", err);

	c = cfg_with(TLS_PREFER, "secure", "default");
	c.client_tls_cert_file = key; /* a key is no certificate */
	ck_assert_ptr_null(tls_accept_ctx_new(&c, err, sizeof(err)));
	ck_assert_msg(strstr(err, "client_tls_cert_file") != NULL, "%s", err);
	ERR_clear_error();
}
END_TEST

static Suite *tls_suite(void)
{
	Suite *s = suite_create("tls");
	TCase *tc = tcase_create("accept");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_resumption_across_rotations);
	tcase_add_test(tc, test_protocols_and_errors);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(tls_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
