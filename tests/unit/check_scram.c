/* Unit tests for pg/scram: the RFC 7677 test vector through both halves,
 * verifiers made by a real PostgreSQL 15, end-to-end and key-mode (pass-
 * through) exchanges, wrong passwords and unknown users, and tables of
 * malformed messages that must be refused without crashing. */
#include <check.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "pg/scram.h"

/* RFC 7677 section 3. */
#define RFC_PASSWORD "pencil"
#define RFC_CNONCE "rOprNGfwEbeRWgbNEkqO"
#define RFC_SNONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_SALT_B64 "W22ZaJ0SNY7soEsUEjb6gQ=="
#define RFC_CLIENT_FIRST "n,,n=user,r=" RFC_CNONCE
#define RFC_SERVER_FIRST "r=" RFC_CNONCE RFC_SNONCE ",s=" RFC_SALT_B64 ",i=4096"
#define RFC_CLIENT_FINAL                                                                   \
	"c=biws,r=" RFC_CNONCE RFC_SNONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_SERVER_FINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
/* The verifier PostgreSQL would store for "pencil" with the RFC's salt
 * (computed independently with Python's hashlib). */
#define RFC_VERIFIER                                                                       \
	"SCRAM-SHA-256$4096:" RFC_SALT_B64 "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="   \
	":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
/* The same exchange with the empty "n=" pgmux and libpq send (hashlib). */
#define EMPTY_USER_PROOF "qvT2SWdEH5Q06albL+hjSYuUhCG7VndFyzIb7CK4n9k="
#define EMPTY_USER_SERVER_FINAL "v=3HO6Qt1M4MKJrmlKaoOqLAI0/0TV0HZe7J9H3MBtSOg="

static const uint8_t rfc_salt[16] = { 0x5b, 0x6d, 0x99, 0x68, 0x9d, 0x12, 0x35, 0x8e,
				      0xec, 0xa0, 0x4b, 0x14, 0x12, 0x36, 0xfa, 0x81 };
static const uint8_t rfc_client_key[SCRAM_KEY_LEN] = {
	0xa6, 0x0f, 0xc9, 0x23, 0xd6, 0x7e, 0x86, 0x44, 0xa9, 0x2d, 0x16, 0xb9, 0x6e, 0xda, 0x5e, 0xf4,
	0x65, 0x6b, 0x0c, 0x72, 0x5c, 0x48, 0x43, 0x74, 0xbe, 0x25, 0x53, 0x55, 0x76, 0x99, 0x6e, 0x8b
};

/* Fixed nonces for the malformed-input tables. */
#define CN "CNONCE"
#define SN "SNONCE"
#define NONCE CN SN
/* base64 of 32, 31 and 33 zero bytes. */
#define P32 "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
#define P31 "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="
#define P33 "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

/* One message and the result it must give. */
struct msg_case {
	const char *msg; /* the bytes (may hold NULs) */
	size_t len;      /* their number */
	int want;        /* expected return value */
};

#define ROW(s, w) { s, sizeof(s) - 1, w }

static struct scram_secret rfc_secret(void)
{
	struct scram_secret s;

	ck_assert_int_eq(scram_secret_from_password(RFC_PASSWORD, rfc_salt, sizeof rfc_salt, 4096,
						    &s, NULL),
			 0);
	return s;
}

static struct scram_client_creds password_creds(const char *password)
{
	struct scram_client_creds creds;

	memset(&creds, 0, sizeof creds);
	creds.password = password;
	return creds;
}

/* ---- verifiers ---- */

START_TEST(test_secret_from_password_rfc)
{
	struct scram_secret s, parsed;
	uint8_t ck[SCRAM_KEY_LEN];

	ck_assert_int_eq(scram_secret_from_password("pencil", rfc_salt, 16, 4096, &s, ck), 0);
	ck_assert_int_eq(scram_secret_parse(RFC_VERIFIER, &parsed), 0);
	ck_assert_int_eq(s.iterations, 4096);
	ck_assert_uint_eq(s.salt_len, 16);
	ck_assert_mem_eq(s.salt, rfc_salt, 16);
	ck_assert_mem_eq(s.stored_key, parsed.stored_key, SCRAM_KEY_LEN);
	ck_assert_mem_eq(s.server_key, parsed.server_key, SCRAM_KEY_LEN);
	ck_assert_mem_eq(ck, rfc_client_key, SCRAM_KEY_LEN);
	/* Bad parameters. */
	ck_assert_int_eq(scram_secret_from_password(NULL, rfc_salt, 16, 4096, &s, NULL), -1);
	ck_assert_int_eq(scram_secret_from_password("x", rfc_salt, 0, 4096, &s, NULL), -1);
	ck_assert_int_eq(scram_secret_from_password("x", rfc_salt, SCRAM_MAX_SALT_LEN + 1, 4096, &s,
						    NULL),
			 -1);
	ck_assert_int_eq(scram_secret_from_password("x", rfc_salt, 16, 0, &s, NULL), -1);
	ck_assert_int_eq(scram_secret_from_password("x", rfc_salt, 16, -4096, &s, NULL), -1);
}
END_TEST

/* Verifiers taken from pg_authid of a PostgreSQL 15.20 server. */
static const struct {
	const char *verifier; /* rolpassword */
	const char *password; /* what was given to CREATE ROLE ... PASSWORD */
} real_verifiers[] = {
	{ "SCRAM-SHA-256$4096:Ccm9p+02CD96W3YsddLIFA==$P0IBP8y23JFXNHJeNpS17lPRN/Gs3OJQvp9GJoiGPSA="
	  ":gJ9ChzwVN1dtUoPy575rr6uJlwp79glesJ1cw15Etsw=",
	  "pencil" },
	{ "SCRAM-SHA-256$4096:xLv94/TfmGsdMyCSVppc8g==$sj9U8Bd1JJdth2zIzsdOhknVD2G9IvhikkseXBjbIQk="
	  ":yYef6H3c3BPBGsVQqoA8gVzrYVGjq+8XWkcxipuNvUs=",
	  "correct horse battery staple" },
	{ RFC_VERIFIER, "pencil" },
};

START_TEST(test_secret_parse_real)
{
	struct scram_secret parsed, derived;

	ck_assert_int_eq(scram_secret_parse(real_verifiers[_i].verifier, &parsed), 0);
	ck_assert_int_eq(parsed.iterations, 4096);
	ck_assert_uint_eq(parsed.salt_len, 16);
	ck_assert_int_eq(scram_secret_from_password(real_verifiers[_i].password, parsed.salt,
						    parsed.salt_len, parsed.iterations, &derived,
						    NULL),
			 0);
	ck_assert_mem_eq(parsed.stored_key, derived.stored_key, SCRAM_KEY_LEN);
	ck_assert_mem_eq(parsed.server_key, derived.server_key, SCRAM_KEY_LEN);
}
END_TEST

#define K32 "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
static const char *const bad_verifiers[] = {
	"",
	"SCRAM-SHA-256",
	"SCRAM-SHA-256$",
	"SCRAM-SHA-256$4096",
	"SCRAM-SHA-256$4096:",
	"SCRAM-SHA-256$4096:" RFC_SALT_B64,
	"SCRAM-SHA-256$4096:" RFC_SALT_B64 "$",
	"SCRAM-SHA-256$4096:" RFC_SALT_B64 "$" K32,
	"SCRAM-SHA-256$4096:" RFC_SALT_B64 "$" K32 ":",
	"SCRAM-SHA-256$4096:" RFC_SALT_B64 "$" K32 ":" K32 "$",
	"SCRAM-SHA-256$4096:" RFC_SALT_B64 "$" K32 ":" K32 ":" K32,
	"SCRAM-SHA-256$4096:" RFC_SALT_B64 "$" K32 ":" K32 " ",
	"SCRAM-SHA-256$4096:" RFC_SALT_B64 "$" K32 ":" K32 "\n",
	"SCRAM-SHA-1$4096:" RFC_SALT_B64 "$" K32 ":" K32,
	"scram-sha-256$4096:" RFC_SALT_B64 "$" K32 ":" K32,
	" SCRAM-SHA-256$4096:" RFC_SALT_B64 "$" K32 ":" K32,
	"SCRAM-SHA-256$0:" RFC_SALT_B64 "$" K32 ":" K32,
	"SCRAM-SHA-256$-4096:" RFC_SALT_B64 "$" K32 ":" K32,
	"SCRAM-SHA-256$+4096:" RFC_SALT_B64 "$" K32 ":" K32,
	"SCRAM-SHA-256$4096x:" RFC_SALT_B64 "$" K32 ":" K32,
	"SCRAM-SHA-256$:" RFC_SALT_B64 "$" K32 ":" K32,
	"SCRAM-SHA-256$99999999999999999999:" RFC_SALT_B64 "$" K32 ":" K32,
	"SCRAM-SHA-256$4096:$" K32 ":" K32,
	"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ=$" K32 ":" K32,
	"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6g!==$" K32 ":" K32,
	"SCRAM-SHA-256$4096:W22Z aJ0SNY7soEsUEjb6gQ==$" K32 ":" K32,
	"SCRAM-SHA-256$4096:" RFC_SALT_B64 "$" P31 ":" K32,
	"SCRAM-SHA-256$4096:" RFC_SALT_B64 "$" P33 ":" K32,
	"SCRAM-SHA-256$4096:" RFC_SALT_B64 "$" K32 ":" P31,
	"SCRAM-SHA-256$4096:" RFC_SALT_B64 "$" K32 ":" P33,
	"SCRAM-SHA-256$4096:" RFC_SALT_B64 ":" K32 "$" K32,
	"md53175bce1d3201d16594cebf9d7eb3f9d",
	"pencil",
};

START_TEST(test_secret_parse_malformed)
{
	struct scram_secret s;

	ck_assert_msg(scram_secret_parse(bad_verifiers[_i], &s) == -1, "accepted \"%s\"",
		      bad_verifiers[_i]);
}
END_TEST

START_TEST(test_secret_parse_null)
{
	struct scram_secret s;

	ck_assert_int_eq(scram_secret_parse(NULL, &s), -1);
	ck_assert_int_eq(scram_secret_parse(RFC_VERIFIER, NULL), -1);
}
END_TEST

/* ---- RFC 7677 vector ---- */

START_TEST(test_server_rfc)
{
	struct scram_secret secret = rfc_secret();
	struct scram_server *s = scram_server_new_with_nonce(&secret, RFC_SNONCE);
	uint8_t ck[SCRAM_KEY_LEN];
	char *out = NULL;

	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(scram_server_handle_first(s, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST),
						   &out),
			 0);
	ck_assert_str_eq(out, RFC_SERVER_FIRST);
	free(out);
	ck_assert_int_eq(scram_server_handle_final(s, RFC_CLIENT_FINAL, strlen(RFC_CLIENT_FINAL),
						   &out, ck),
			 0);
	ck_assert_str_eq(out, RFC_SERVER_FINAL);
	ck_assert_mem_eq(ck, rfc_client_key, SCRAM_KEY_LEN);
	free(out);
	/* The exchange is over. */
	ck_assert_int_eq(scram_server_handle_final(s, RFC_CLIENT_FINAL, strlen(RFC_CLIENT_FINAL),
						   &out, NULL),
			 -1);
	ck_assert_ptr_null(out);
	scram_server_free(s);
}
END_TEST

START_TEST(test_client_rfc)
{
	struct scram_client_creds creds = password_creds(RFC_PASSWORD);
	struct scram_client *c = scram_client_new_with_nonce_user(&creds, RFC_CNONCE, "user");
	char *out = NULL;

	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(scram_client_first(c, &out), 0);
	ck_assert_str_eq(out, RFC_CLIENT_FIRST);
	free(out);
	ck_assert_int_eq(scram_client_handle_server_first(c, RFC_SERVER_FIRST,
							  strlen(RFC_SERVER_FIRST), &out),
			 0);
	ck_assert_str_eq(out, RFC_CLIENT_FINAL);
	free(out);
	ck_assert_int_eq(scram_client_handle_server_final(c, RFC_SERVER_FINAL,
							  strlen(RFC_SERVER_FINAL)),
			 0);
	scram_client_free(c);
}
END_TEST

/* What pgmux really sends: "n=" empty, as libpq does. */
START_TEST(test_client_rfc_empty_user)
{
	struct scram_client_creds creds = password_creds(RFC_PASSWORD);
	struct scram_client *c = scram_client_new_with_nonce(&creds, RFC_CNONCE);
	char *out = NULL;

	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(scram_client_first(c, &out), 0);
	ck_assert_str_eq(out, "n,,n=,r=" RFC_CNONCE);
	free(out);
	ck_assert_int_eq(scram_client_handle_server_first(c, RFC_SERVER_FIRST,
							  strlen(RFC_SERVER_FIRST), &out),
			 0);
	ck_assert_str_eq(out, "c=biws,r=" RFC_CNONCE RFC_SNONCE ",p=" EMPTY_USER_PROOF);
	free(out);
	/* The RFC's v= is for "n=user": it must not verify here. */
	ck_assert_int_eq(scram_client_handle_server_final(c, RFC_SERVER_FINAL,
							  strlen(RFC_SERVER_FINAL)),
			 -1);
	scram_client_free(c);

	c = scram_client_new_with_nonce(&creds, RFC_CNONCE);
	ck_assert_int_eq(scram_client_first(c, &out), 0);
	free(out);
	ck_assert_int_eq(scram_client_handle_server_first(c, RFC_SERVER_FIRST,
							  strlen(RFC_SERVER_FIRST), &out),
			 0);
	free(out);
	ck_assert_int_eq(scram_client_handle_server_final(c, EMPTY_USER_SERVER_FINAL,
							  strlen(EMPTY_USER_SERVER_FINAL)),
			 0);
	scram_client_free(c);
}
END_TEST

/* ---- whole exchanges ---- */

/* Runs C against S. Returns the server's verdict on the proof; on 0 also
 * the client's verdict on v= must be 0. CK_OUT gets the recovered key. */
static int run_exchange(struct scram_client *c, struct scram_server *s,
			uint8_t ck_out[SCRAM_KEY_LEN])
{
	char *m1 = NULL, *m2 = NULL, *m3 = NULL, *m4 = NULL;
	int rc;

	ck_assert_ptr_nonnull(c);
	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(scram_client_first(c, &m1), 0);
	ck_assert_int_eq(scram_server_handle_first(s, m1, strlen(m1), &m2), 0);
	ck_assert_int_eq(scram_client_handle_server_first(c, m2, strlen(m2), &m3), 0);
	rc = scram_server_handle_final(s, m3, strlen(m3), &m4, ck_out);
	if (rc == 0)
		ck_assert_int_eq(scram_client_handle_server_final(c, m4, strlen(m4)), 0);
	else
		ck_assert_ptr_null(m4);
	free(m1);
	free(m2);
	free(m3);
	free(m4);
	return rc;
}

START_TEST(test_end_to_end)
{
	struct scram_client_creds creds = password_creds(real_verifiers[_i].password);
	struct scram_secret secret;
	struct scram_client *c;
	struct scram_server *s;

	ck_assert_int_eq(scram_secret_parse(real_verifiers[_i].verifier, &secret), 0);
	c = scram_client_new(&creds);
	s = scram_server_new(&secret);
	ck_assert_int_eq(run_exchange(c, s, NULL), 0);
	scram_client_free(c);
	scram_server_free(s);
}
END_TEST

/* Both halves with SCRAM-SHA-256-PLUS: the same binding data logs in,
 * different data (another certificate) fails, and a client that binds
 * cannot log in to a server half that did not offer it. */
START_TEST(test_end_to_end_plus)
{
	struct scram_client_creds creds = password_creds("pencil");
	struct scram_secret secret = rfc_secret();
	uint8_t cb[48], other[48];
	struct scram_client *c;
	struct scram_server *s;
	char *m1 = NULL, *m2 = NULL;

	memset(cb, 0x5a, sizeof(cb));
	memset(other, 0xa5, sizeof(other));
	c = scram_client_new(&creds);
	s = scram_server_new(&secret);
	ck_assert_int_eq(scram_client_channel_binding(c, cb, sizeof(cb)), 0);
	ck_assert_int_eq(scram_server_channel_binding(s, true, cb, sizeof(cb)), 0);
	ck_assert_int_eq(run_exchange(c, s, NULL), 0);
	scram_client_free(c);
	scram_server_free(s);

	c = scram_client_new(&creds);
	s = scram_server_new(&secret);
	ck_assert_int_eq(scram_client_channel_binding(c, other, sizeof(other)), 0);
	ck_assert_int_eq(scram_server_channel_binding(s, true, cb, sizeof(cb)), 0);
	ck_assert_int_eq(run_exchange(c, s, NULL), -1);
	scram_client_free(c);
	scram_server_free(s);

	c = scram_client_new(&creds);
	s = scram_server_new(&secret);
	ck_assert_int_eq(scram_client_channel_binding(c, cb, sizeof(cb)), 0);
	ck_assert_int_eq(scram_client_first(c, &m1), 0);
	ck_assert_int_eq(strncmp(m1, "p=tls-server-end-point,,n=,r=", 29), 0);
	ck_assert_int_eq(scram_server_handle_first(s, m1, strlen(m1), &m2), -1);
	ck_assert_int_eq(scram_client_channel_binding(c, cb, sizeof(cb)), -1); /* too late */
	free(m1);
	scram_client_free(c);
	scram_server_free(s);

	/* "y": accepted by a half that offered no -PLUS, refused (a stripped
	 * mechanism list) by one that did */
	c = scram_client_new(&creds);
	s = scram_server_new(&secret);
	ck_assert_int_eq(scram_client_could_bind(c), 0);
	ck_assert_int_eq(run_exchange(c, s, NULL), 0);
	scram_client_free(c);
	scram_server_free(s);
	c = scram_client_new(&creds);
	s = scram_server_new(&secret);
	ck_assert_int_eq(scram_client_could_bind(c), 0);
	ck_assert_int_eq(scram_server_channel_binding(s, false, cb, sizeof(cb)), 0);
	ck_assert_int_eq(scram_client_first(c, &m1), 0);
	ck_assert_int_eq(strncmp(m1, "y,,n=,r=", 8), 0);
	ck_assert_int_eq(scram_server_handle_first(s, m1, strlen(m1), &m2), -1);
	ck_assert_int_eq(scram_client_could_bind(c), -1); /* too late */
	free(m1);
	scram_client_free(c);
	scram_server_free(s);

	c = scram_client_new(&creds);
	ck_assert_int_eq(scram_client_channel_binding(c, cb, 0), -1);
	ck_assert_int_eq(scram_client_channel_binding(c, cb, SCRAM_CB_MAX + 1), -1);
	ck_assert_int_eq(scram_client_channel_binding(NULL, cb, sizeof(cb)), -1);
	scram_client_free(c);
}
END_TEST

START_TEST(test_random_nonces)
{
	struct scram_client_creds creds = password_creds("x");
	struct scram_secret secret = rfc_secret();
	struct scram_client *c1 = scram_client_new(&creds), *c2 = scram_client_new(&creds);
	struct scram_server *s = scram_server_new(&secret);
	char *a = NULL, *b = NULL, *sf = NULL;
	size_t i;

	ck_assert_int_eq(scram_client_first(c1, &a), 0);
	ck_assert_int_eq(scram_client_first(c2, &b), 0);
	ck_assert_uint_eq(strlen(a), strlen("n,,n=,r=") + 24);
	ck_assert_int_eq(strncmp(a, "n,,n=,r=", 8), 0);
	ck_assert_str_ne(a, b);
	for (i = 8; a[i] != '\0'; i++)
		ck_assert(a[i] > 0x20 && a[i] < 0x7f && a[i] != ',');
	ck_assert_int_eq(scram_server_handle_first(s, a, strlen(a), &sf), 0);
	/* r=<24-char client nonce><24-char server nonce>,s=... */
	ck_assert_int_eq(strncmp(sf, "r=", 2), 0);
	ck_assert_int_eq(strncmp(sf + 2, a + 8, 24), 0);
	ck_assert_int_eq(strncmp(sf + 2 + 48, ",s=" RFC_SALT_B64 ",i=4096", 34), 0);
	ck_assert_uint_eq(strlen(sf), 2 + 48 + 34);
	free(a);
	free(b);
	free(sf);
	scram_client_free(c1);
	scram_client_free(c2);
	scram_server_free(s);
}
END_TEST

START_TEST(test_wrong_password)
{
	struct scram_client_creds creds = password_creds("pencil2");
	struct scram_secret secret = rfc_secret();
	struct scram_client *c = scram_client_new(&creds);
	struct scram_server *s = scram_server_new(&secret);

	ck_assert_int_eq(run_exchange(c, s, NULL), -2);
	scram_client_free(c);
	scram_server_free(s);
}
END_TEST

/* Unknown user: a normal-looking server-first, then -2 whatever is sent. */
START_TEST(test_mock)
{
	struct scram_client_creds creds = password_creds(RFC_PASSWORD);
	struct scram_client *c = scram_client_new_with_nonce(&creds, CN);
	struct scram_server *s = scram_server_new_with_nonce(NULL, SN);
	char *sf = NULL;

	ck_assert_int_eq(scram_server_handle_first(s, "n,,n=,r=" CN, 14, &sf), 0);
	/* r=CNONCESNONCE,s=<16 bytes: 24 chars>,i=4096 */
	ck_assert_uint_eq(strlen(sf), strlen("r=" NONCE ",s=,i=4096") + 24);
	ck_assert_int_eq(strncmp(sf, "r=" NONCE ",s=", 17), 0);
	ck_assert_str_eq(sf + 17 + 24, ",i=4096");
	free(sf);
	scram_server_free(s);

	s = scram_server_new(NULL);
	ck_assert_int_eq(run_exchange(c, s, NULL), -2);
	scram_client_free(c);
	scram_server_free(s);
}
END_TEST

/* Pass-through: the ClientKey the server recovers logs in a key-mode client
 * to any server holding the same secret. */
START_TEST(test_key_mode)
{
	struct scram_client_creds creds = password_creds(RFC_PASSWORD), kc;
	struct scram_secret secret = rfc_secret();
	uint8_t ck[SCRAM_KEY_LEN];
	struct scram_client *c;
	struct scram_server *s;

	c = scram_client_new(&creds);
	s = scram_server_new(&secret);
	ck_assert_int_eq(run_exchange(c, s, ck), 0);
	ck_assert_mem_eq(ck, rfc_client_key, SCRAM_KEY_LEN);
	scram_client_free(c);
	scram_server_free(s);

	memset(&kc, 0, sizeof kc);
	kc.password = NULL;
	memcpy(kc.client_key, ck, SCRAM_KEY_LEN);
	memcpy(kc.server_key, secret.server_key, SCRAM_KEY_LEN);
	memcpy(kc.salt, secret.salt, secret.salt_len);
	kc.salt_len = secret.salt_len;
	kc.iterations = secret.iterations;
	c = scram_client_new(&kc);
	s = scram_server_new(&secret);
	ck_assert_int_eq(run_exchange(c, s, NULL), 0);
	scram_client_free(c);
	scram_server_free(s);
	/* Same keys against the RFC's server-first (its salt and count). */
	c = scram_client_new_with_nonce_user(&kc, RFC_CNONCE, "user");
	{
		char *out = NULL;

		ck_assert_int_eq(scram_client_first(c, &out), 0);
		free(out);
		ck_assert_int_eq(scram_client_handle_server_first(c, RFC_SERVER_FIRST,
								  strlen(RFC_SERVER_FIRST), &out),
				 0);
		ck_assert_str_eq(out, RFC_CLIENT_FINAL);
		free(out);
		ck_assert_int_eq(scram_client_handle_server_final(c, RFC_SERVER_FINAL,
								  strlen(RFC_SERVER_FINAL)),
				 0);
	}
	scram_client_free(c);
}
END_TEST

/* Key mode cannot answer a server whose secret has another salt or count. */
static const char *const key_mode_mismatch[] = {
	"r=" NONCE ",s=W22ZaJ0SNY7soEsUEjb6gA==,i=4096", /* last salt byte differs */
	"r=" NONCE ",s=W22ZaJ0SNY7soEsUEjb6gQE=,i=4096", /* one byte longer */
	"r=" NONCE ",s=W22ZaJ0SNY7soEsUEjb6,i=4096",     /* shorter */
	"r=" NONCE ",s=" RFC_SALT_B64 ",i=4095",
	"r=" NONCE ",s=" RFC_SALT_B64 ",i=4097",
};

START_TEST(test_key_mode_mismatch)
{
	struct scram_client_creds kc;
	struct scram_client *c;
	char *out = NULL;

	memset(&kc, 0, sizeof kc);
	memcpy(kc.client_key, rfc_client_key, SCRAM_KEY_LEN);
	memcpy(kc.salt, rfc_salt, sizeof rfc_salt);
	kc.salt_len = sizeof rfc_salt;
	kc.iterations = 4096;
	c = scram_client_new_with_nonce(&kc, CN);
	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(scram_client_first(c, &out), 0);
	free(out);
	out = NULL;
	ck_assert_int_eq(scram_client_handle_server_first(c, key_mode_mismatch[_i],
							  strlen(key_mode_mismatch[_i]), &out),
			 -1);
	ck_assert_ptr_null(out);
	scram_client_free(c);
}
END_TEST

START_TEST(test_constructors)
{
	struct scram_client_creds creds = password_creds("x"), kc;
	struct scram_secret secret = rfc_secret(), bad = secret;

	ck_assert_ptr_null(scram_server_new_with_nonce(&secret, ""));
	ck_assert_ptr_null(scram_server_new_with_nonce(&secret, "a,b"));
	ck_assert_ptr_null(scram_server_new_with_nonce(&secret, "a b"));
	bad.salt_len = 0;
	ck_assert_ptr_null(scram_server_new(&bad));
	bad.salt_len = SCRAM_MAX_SALT_LEN + 1;
	ck_assert_ptr_null(scram_server_new(&bad));
	ck_assert_ptr_null(scram_client_new(NULL));
	ck_assert_ptr_null(scram_client_new_with_nonce(&creds, ""));
	ck_assert_ptr_null(scram_client_new_with_nonce(&creds, "a\x7f"));
	ck_assert_ptr_null(scram_client_new_with_nonce_user(&creds, "abc", "a,b"));
	ck_assert_ptr_null(scram_client_new_with_nonce_user(&creds, "abc", "a=b"));
	memset(&kc, 0, sizeof kc); /* key mode without salt */
	kc.iterations = 4096;
	ck_assert_ptr_null(scram_client_new(&kc));
	kc.salt_len = 16;
	kc.iterations = 0;
	ck_assert_ptr_null(scram_client_new(&kc));
	scram_server_free(NULL);
	scram_client_free(NULL);
}
END_TEST

START_TEST(test_out_of_order)
{
	struct scram_client_creds creds = password_creds("x");
	struct scram_secret secret = rfc_secret();
	struct scram_server *s = scram_server_new(&secret);
	struct scram_client *c = scram_client_new(&creds);
	char *out = NULL;

	ck_assert_int_eq(scram_server_handle_final(s, "c=biws,r=a,p=" P32, 13 + 44, &out, NULL), -1);
	ck_assert_int_eq(scram_server_handle_first(s, "n,,n=,r=abc", 11, &out), -1);
	ck_assert_int_eq(scram_client_handle_server_first(c, RFC_SERVER_FIRST,
							  strlen(RFC_SERVER_FIRST), &out),
			 -1);
	ck_assert_int_eq(scram_client_handle_server_final(c, RFC_SERVER_FINAL, 46), -1);
	ck_assert_ptr_null(out);
	ck_assert_int_eq(scram_server_handle_first(NULL, "n,,n=,r=abc", 11, &out), -1);
	ck_assert_int_eq(scram_client_first(NULL, &out), -1);
	scram_server_free(s);
	scram_client_free(c);
}
END_TEST

/* ---- server: gs2 "y" ---- */

/* Client-final for AuthMessage CFB,SF,WP with ClientKey CK (test-side). */
static char *make_final(const char *cfb, const char *sf, const char *wp, const uint8_t *ck)
{
	uint8_t stored[SCRAM_KEY_LEN], sig[SCRAM_KEY_LEN], proof[SCRAM_KEY_LEN];
	char am[1024], *out = malloc(1024);
	unsigned int n = 0;
	int i, len;

	len = snprintf(am, sizeof am, "%s,%s,%s", cfb, sf, wp);
	ck_assert(len > 0 && (size_t)len < sizeof am);
	ck_assert_int_eq(EVP_Digest(ck, SCRAM_KEY_LEN, stored, &n, EVP_sha256(), NULL), 1);
	ck_assert_ptr_nonnull(HMAC(EVP_sha256(), stored, SCRAM_KEY_LEN, (const unsigned char *)am,
				   (size_t)len, sig, &n));
	for (i = 0; i < SCRAM_KEY_LEN; i++)
		proof[i] = ck[i] ^ sig[i];
	len = snprintf(out, 1024, "%s,p=", wp);
	EVP_EncodeBlock((unsigned char *)out + len, proof, SCRAM_KEY_LEN);
	return out;
}

START_TEST(test_server_gs2_y)
{
	struct scram_secret secret = rfc_secret();
	struct scram_server *s = scram_server_new_with_nonce(&secret, SN);
	char *sf = NULL, *cf, *sfin = NULL;

	ck_assert_int_eq(scram_server_handle_first(s, "y,,n=,r=" CN, 14, &sf), 0);
	cf = make_final("n=,r=" CN, sf, "c=eSws,r=" NONCE, rfc_client_key);
	ck_assert_int_eq(scram_server_handle_final(s, cf, strlen(cf), &sfin, NULL), 0);
	ck_assert_ptr_nonnull(sfin);
	free(cf);
	free(sfin);
	scram_server_free(s);

	/* The same proof algebra with c=biws after "y" is a binding mismatch. */
	s = scram_server_new_with_nonce(&secret, SN);
	free(sf);
	ck_assert_int_eq(scram_server_handle_first(s, "y,,n=,r=" CN, 14, &sf), 0);
	cf = make_final("n=,r=" CN, sf, "c=biws,r=" NONCE, rfc_client_key);
	ck_assert_int_eq(scram_server_handle_final(s, cf, strlen(cf), &sfin, NULL), -1);
	free(cf);
	free(sf);
	scram_server_free(s);
}
END_TEST

/* SCRAM-SHA-256-PLUS: c= carries the gs2 header and the binding data. */
START_TEST(test_server_channel_binding)
{
	struct scram_secret secret = rfc_secret();
	static const char hdr[] = "p=tls-server-end-point,,";
	uint8_t cb[32], raw[sizeof(hdr) - 1 + sizeof(cb)];
	char b64[80], attrs[160], *sf = NULL, *cf, *sfin = NULL;
	struct scram_server *s;

	for (size_t i = 0; i < sizeof(cb); i++)
		cb[i] = (uint8_t)(i * 7 + 1);
	memcpy(raw, hdr, sizeof(hdr) - 1);
	memcpy(raw + sizeof(hdr) - 1, cb, sizeof(cb));
	EVP_EncodeBlock((unsigned char *)b64, raw, (int)sizeof(raw));
	snprintf(attrs, sizeof(attrs), "c=%s,r=" NONCE, b64);

	/* the binding matches: logged in */
	s = scram_server_new_with_nonce(&secret, SN);
	ck_assert_int_eq(scram_server_channel_binding(s, true, cb, sizeof(cb)), 0);
	ck_assert_int_eq(scram_server_handle_first(s, "p=tls-server-end-point,,n=,r=" CN, 35, &sf), 0);
	cf = make_final("n=,r=" CN, sf, attrs, rfc_client_key);
	ck_assert_int_eq(scram_server_handle_final(s, cf, strlen(cf), &sfin, NULL), 0);
	ck_assert_ptr_nonnull(sfin);
	free(cf);
	free(sfin);
	sfin = NULL;
	scram_server_free(s);
	free(sf);
	sf = NULL;

	/* the client saw another certificate (a man in the middle): refused */
	s = scram_server_new_with_nonce(&secret, SN);
	cb[0] ^= 1;
	ck_assert_int_eq(scram_server_channel_binding(s, true, cb, sizeof(cb)), 0);
	ck_assert_int_eq(scram_server_handle_first(s, "p=tls-server-end-point,,n=,r=" CN, 35, &sf), 0);
	cf = make_final("n=,r=" CN, sf, attrs, rfc_client_key);
	ck_assert_int_eq(scram_server_handle_final(s, cf, strlen(cf), &sfin, NULL), -1);
	ck_assert_ptr_null(sfin);
	free(cf);
	scram_server_free(s);
	free(sf);
	sf = NULL;

	/* -PLUS chosen but no binding asked for; another binding type */
	s = scram_server_new_with_nonce(&secret, SN);
	ck_assert_int_eq(scram_server_channel_binding(s, true, cb, sizeof(cb)), 0);
	ck_assert_int_eq(scram_server_handle_first(s, "n,,n=,r=" CN, 14, &sf), -1);
	scram_server_free(s);
	s = scram_server_new_with_nonce(&secret, SN);
	ck_assert_int_eq(scram_server_channel_binding(s, true, cb, sizeof(cb)), 0);
	ck_assert_int_eq(scram_server_handle_first(s, "p=tls-unique,,n=,r=" CN, 25, &sf), -1);
	scram_server_free(s);

	/* -PLUS offered, SCRAM-SHA-256 chosen: "n" is fine, "y" a downgrade,
	 * "p" contradicts the mechanism */
	s = scram_server_new_with_nonce(&secret, SN);
	ck_assert_int_eq(scram_server_channel_binding(s, false, cb, sizeof(cb)), 0);
	ck_assert_int_eq(scram_server_handle_first(s, "n,,n=,r=" CN, 14, &sf), 0);
	cf = make_final("n=,r=" CN, sf, "c=biws,r=" NONCE, rfc_client_key);
	ck_assert_int_eq(scram_server_handle_final(s, cf, strlen(cf), &sfin, NULL), 0);
	free(cf);
	free(sfin);
	free(sf);
	sf = NULL;
	scram_server_free(s);
	s = scram_server_new_with_nonce(&secret, SN);
	ck_assert_int_eq(scram_server_channel_binding(s, false, cb, sizeof(cb)), 0);
	ck_assert_int_eq(scram_server_handle_first(s, "y,,n=,r=" CN, 14, &sf), -1);
	scram_server_free(s);
	s = scram_server_new_with_nonce(&secret, SN);
	ck_assert_int_eq(scram_server_channel_binding(s, false, cb, sizeof(cb)), 0);
	ck_assert_int_eq(scram_server_handle_first(s, "p=tls-server-end-point,,n=,r=" CN, 35, &sf),
			 -1);
	scram_server_free(s);

	/* bad arguments, and too late */
	s = scram_server_new_with_nonce(&secret, SN);
	ck_assert_int_eq(scram_server_channel_binding(s, true, cb, 0), -1);
	ck_assert_int_eq(scram_server_channel_binding(s, true, cb, SCRAM_CB_MAX + 1), -1);
	ck_assert_int_eq(scram_server_channel_binding(NULL, true, cb, sizeof(cb)), -1);
	ck_assert_int_eq(scram_server_handle_first(s, "n,,n=,r=" CN, 14, &sf), 0);
	ck_assert_int_eq(scram_server_channel_binding(s, false, cb, sizeof(cb)), -1);
	free(sf);
	scram_server_free(s);
}
END_TEST

/* ---- malformed input tables ---- */

static const struct msg_case server_first_cases[] = {
	ROW("n,,n=,r=abc", 0),
	ROW("y,,n=,r=abc", 0),
	ROW("n,,n=user,r=abc", 0),
	ROW("n,,n=*,r=abc", 0),
	ROW("n,,n=,r=abc,x=ext", 0),
	ROW("n,,n=,r=!~", 0),
	ROW("", -1),
	ROW("n", -1),
	ROW("n,", -1),
	ROW("n,,", -1),
	ROW("n,,n=", -1),
	ROW("n,,n=,", -1),
	ROW("n,,n=,r=", -1),
	ROW("n,,n=,r=,", -1),
	ROW("n,,n=,r", -1),
	ROW("p=tls-server-end-point,,n=,r=abc", -1),
	ROW("p,,n=,r=abc", -1),
	ROW("n,a=user,n=,r=abc", -1),
	ROW("y,a=user,n=,r=abc", -1),
	ROW("x,,n=,r=abc", -1),
	ROW("N,,n=,r=abc", -1),
	ROW(",,n=,r=abc", -1),
	ROW("n,,,n=,r=abc", -1),
	ROW("n,,m=ext,n=,r=abc", -1),
	ROW("n,,r=abc", -1),
	ROW("n,,r=abc,n=", -1),
	ROW("n,,n=,r=abc,", -1),
	ROW("n,,n=,r=abc,garbage", -1),
	ROW("n,,n=,r=abc,=x", -1),
	ROW("n,,n=,r=abc,1=x", -1),
	ROW("n,,n=,r=abc,x=", -1),
	ROW("n,,n=,r=ab c", -1),
	ROW("n,,n=,r=ab\tc", -1),
	ROW("n,,n=,r=ab\x7f", -1),
	ROW("n,,n=,r=ab\xc3\xa9", -1),
	ROW("n,,n=,r=ab\0cd", -1),
	ROW("\0n,,n=,r=abc", -1),
	ROW("n,,n=,r=abc\0", -1),
	ROW("n,,n=a\0b,r=abc", -1),
	ROW("n,,n=,r=abc\n", -1),
};

START_TEST(test_server_first_table)
{
	const struct msg_case *t = &server_first_cases[_i];
	struct scram_secret secret = rfc_secret();
	struct scram_server *s = scram_server_new_with_nonce(&secret, SN);
	char *out = NULL;

	ck_assert_msg(scram_server_handle_first(s, t->msg, t->len, &out) == t->want,
		      "case %d (\"%s\") did not give %d", _i, t->msg, t->want);
	if (t->want != 0)
		ck_assert_ptr_null(out);
	else
		ck_assert_int_eq(strncmp(out, "r=", 2), 0);
	free(out);
	scram_server_free(s);
}
END_TEST

#define WP "c=biws,r=" NONCE
static const struct msg_case server_final_cases[] = {
	/* Well-formed but a wrong proof: -2 marks where parsing ended. */
	ROW(WP ",p=" P32, -2),
	ROW(WP ",x=ext,p=" P32, -2),
	ROW("", -1),
	ROW("c=biws", -1),
	ROW("c=biws,", -1),
	ROW(WP, -1),
	ROW(WP ",", -1),
	ROW(WP ",p=", -1),
	ROW(WP ",p", -1),
	ROW("c=biws,r=" CN ",p=" P32, -1),
	ROW("c=biws,r=" SN ",p=" P32, -1),
	ROW("c=biws,r=" NONCE "X,p=" P32, -1),
	ROW("c=biws,r=CNONCESNONCf,p=" P32, -1),
	ROW("c=biws,r=,p=" P32, -1),
	ROW("c=eSws,r=" NONCE ",p=" P32, -1),
	ROW("c=cD10bHMtc2VydmVyLWVuZC1wb2ludCws,r=" NONCE ",p=" P32, -1),
	ROW("c=biwsAAAA,r=" NONCE ",p=" P32, -1),
	ROW("c=,r=" NONCE ",p=" P32, -1),
	ROW("c=biws,p=" P32, -1),
	ROW("r=" NONCE ",c=biws,p=" P32, -1),
	ROW("p=" P32 ",c=biws,r=" NONCE, -1),
	ROW(WP ",p=" P32 ",x=y", -1),
	ROW(WP ",p=" P32 "garbage", -1),
	ROW(WP ",p=" P32 ",", -1),
	ROW(WP ",p=" P32 ",p=" P32, -1),
	ROW(WP ",p=" P32 "AAAA", -1),
	ROW(WP ",p=" P31, -1),
	ROW(WP ",p=" P33, -1),
	ROW(WP ",p=AAAA", -1),
	ROW(WP ",p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", -1),
	ROW(WP ",p=!AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", -1),
	ROW(WP ",p=AAAAAAAAAAAAAAAAAAAAA=AAAAAAAAAAAAAAAAAAAAA=", -1),
	ROW(WP ",p=AAAAAAAAAAAAAAAAAAAAAA AAAAAAAAAAAAAAAAAAAA=", -1),
	ROW(WP ",p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n=", -1),
	ROW(WP ",p====================================AAAAAAAA", -1),
	ROW(WP ",p=" P32 "\0", -1),
	ROW(WP "\0,p=" P32, -1),
	ROW("c=biws,r=CNONCE\0NONCE,p=" P32, -1),
	ROW(WP ",1=x,p=" P32, -1),
	ROW(WP ",x=,p=" P32, -1),
	ROW(WP ",,p=" P32, -1),
};

START_TEST(test_server_final_table)
{
	const struct msg_case *t = &server_final_cases[_i];
	struct scram_secret secret = rfc_secret();
	struct scram_server *s = scram_server_new_with_nonce(&secret, SN);
	uint8_t ck[SCRAM_KEY_LEN] = { 0 }, zero[SCRAM_KEY_LEN] = { 0 };
	char *out = NULL;

	ck_assert_int_eq(scram_server_handle_first(s, "n,,n=,r=" CN, 14, &out), 0);
	ck_assert_str_eq(out, "r=" NONCE ",s=" RFC_SALT_B64 ",i=4096");
	free(out);
	out = NULL;
	ck_assert_msg(scram_server_handle_final(s, t->msg, t->len, &out, ck) == t->want,
		      "case %d (\"%s\") did not give %d", _i, t->msg, t->want);
	ck_assert_ptr_null(out);
	ck_assert_mem_eq(ck, zero, SCRAM_KEY_LEN);
	scram_server_free(s);
}
END_TEST

#define SALT ",s=" RFC_SALT_B64
static const struct msg_case client_first_cases[] = {
	ROW("r=" NONCE SALT ",i=4096", 0),
	ROW("r=" NONCE SALT ",i=1", 0),
	ROW("r=" CN "!" SALT ",i=4096", 0),
	ROW("r=" NONCE ",s=AA==,i=1", 0),
	ROW("", -1),
	ROW("e=other-error", -1),
	ROW("r=" CN SALT ",i=4096", -1),
	ROW("r=CNONC" SALT ",i=4096", -1),
	ROW("r=XNONCESNONCE" SALT ",i=4096", -1),
	ROW("r=cnonceSNONCE" SALT ",i=4096", -1),
	ROW("r=" CN " SNONCE" SALT ",i=4096", -1),
	ROW("r=" CN "\x80SNONCE" SALT ",i=4096", -1),
	ROW("r=" NONCE "\0" SALT ",i=4096", -1),
	ROW("r=" NONCE SALT ",i=4096\0", -1),
	ROW("s=" RFC_SALT_B64 ",r=" NONCE ",i=4096", -1),
	ROW("r=" NONCE ",i=4096" SALT, -1),
	ROW("r=" NONCE ",i=4096", -1),
	ROW("r=" NONCE SALT, -1),
	ROW("r=" NONCE SALT ",", -1),
	ROW("r=" NONCE ",s=,i=4096", -1),
	ROW("r=" NONCE ",s=====,i=4096", -1),
	ROW("r=" NONCE ",s=W22ZaJ0SNY7soEsUEjb6gQ=,i=4096", -1),
	ROW("r=" NONCE ",s=W22ZaJ0SNY7soEsUEjb6g!==,i=4096", -1),
	ROW("r=" NONCE SALT ",i=", -1),
	ROW("r=" NONCE SALT ",i=0", -1),
	ROW("r=" NONCE SALT ",i=-1", -1),
	ROW("r=" NONCE SALT ",i=-4096", -1),
	ROW("r=" NONCE SALT ",i=+5", -1),
	ROW("r=" NONCE SALT ",i=10000001", -1),
	ROW("r=" NONCE SALT ",i=2147483648", -1),
	ROW("r=" NONCE SALT ",i=99999999999999999999", -1),
	ROW("r=" NONCE SALT ",i=abc", -1),
	ROW("r=" NONCE SALT ",i=12a", -1),
	ROW("r=" NONCE SALT ",i=0x10", -1),
	ROW("r=" NONCE SALT ",i= 4096", -1),
	ROW("r=" NONCE SALT ",i=4096 ", -1),
	ROW("r=" NONCE SALT ",i=4096,x=y", -1),
	ROW("r=" NONCE SALT ",i=4096,", -1),
	ROW("r=" NONCE SALT ",i=4096,i=4096", -1),
};

START_TEST(test_client_first_table)
{
	const struct msg_case *t = &client_first_cases[_i];
	struct scram_client_creds creds = password_creds(RFC_PASSWORD);
	struct scram_client *c = scram_client_new_with_nonce(&creds, CN);
	char *out = NULL;

	ck_assert_int_eq(scram_client_first(c, &out), 0);
	free(out);
	out = NULL;
	ck_assert_msg(scram_client_handle_server_first(c, t->msg, t->len, &out) == t->want,
		      "case %d (\"%s\") did not give %d", _i, t->msg, t->want);
	if (t->want == 0)
		ck_assert_int_eq(strncmp(out, "c=biws,r=", 9), 0);
	else
		ck_assert_ptr_null(out);
	free(out);
	scram_client_free(c);
}
END_TEST

/* How a server-final case is made from the right v= value. */
enum sig_form { SIG_NONE, SIG_RIGHT, SIG_TRUNCATED, SIG_FLIPPED };

static const struct {
	const char *prefix; /* before the signature */
	enum sig_form sig;  /* what goes in the middle */
	const char *suffix; /* after it */
	int want;           /* expected result */
} client_final_cases[] = {
	{ "v=", SIG_RIGHT, "", 0 },
	{ "", SIG_NONE, "", -1 },
	{ "e=invalid-proof", SIG_NONE, "", -1 },
	{ "e=other-error", SIG_NONE, "", -1 },
	{ "v=", SIG_NONE, "", -1 },
	{ "v=", SIG_NONE, P32, -1 },
	{ "v=", SIG_NONE, P31, -1 },
	{ "v=", SIG_FLIPPED, "", -1 },
	{ "v=", SIG_TRUNCATED, "", -1 },
	{ "v=", SIG_RIGHT, ",x=y", -1 },
	{ "v=", SIG_RIGHT, ",", -1 },
	{ "v=", SIG_RIGHT, "AAAA", -1 },
	{ "v=", SIG_RIGHT, "\n", -1 },
	{ " v=", SIG_RIGHT, "", -1 },
	{ "V=", SIG_RIGHT, "", -1 },
	{ "x=y,v=", SIG_RIGHT, "", -1 },
	{ "e=x,v=", SIG_RIGHT, "", -1 },
};

START_TEST(test_client_final_table)
{
	struct scram_client_creds creds = password_creds(RFC_PASSWORD);
	struct scram_secret secret = rfc_secret();
	struct scram_client *c = scram_client_new_with_nonce(&creds, CN);
	struct scram_server *s = scram_server_new_with_nonce(&secret, SN);
	char *m1 = NULL, *m2 = NULL, *m3 = NULL, *v = NULL, msg[256];
	const char *sig;

	ck_assert_int_eq(scram_client_first(c, &m1), 0);
	ck_assert_int_eq(scram_server_handle_first(s, m1, strlen(m1), &m2), 0);
	ck_assert_int_eq(scram_client_handle_server_first(c, m2, strlen(m2), &m3), 0);
	ck_assert_int_eq(scram_server_handle_final(s, m3, strlen(m3), &v, NULL), 0);
	sig = v + 2;
	switch (client_final_cases[_i].sig) {
	case SIG_NONE:
		sig = "";
		break;
	case SIG_RIGHT:
		break;
	case SIG_TRUNCATED:
		v[strlen(v) - 4] = '\0';
		break;
	case SIG_FLIPPED:
		v[2] = v[2] == 'A' ? 'B' : 'A';
		break;
	}
	snprintf(msg, sizeof msg, "%s%s%s", client_final_cases[_i].prefix, sig,
		 client_final_cases[_i].suffix);
	ck_assert_msg(scram_client_handle_server_final(c, msg, strlen(msg)) ==
			      client_final_cases[_i].want,
		      "case %d (\"%s\")", _i, msg);
	free(m1);
	free(m2);
	free(m3);
	free(v);
	scram_client_free(c);
	scram_server_free(s);
}
END_TEST

/* The right v= followed by a NUL: the length says it is there. */
START_TEST(test_client_final_nul)
{
	struct scram_client_creds creds = password_creds(RFC_PASSWORD);
	struct scram_client *c = scram_client_new_with_nonce(&creds, RFC_CNONCE);
	char *out = NULL;

	ck_assert_int_eq(scram_client_first(c, &out), 0);
	free(out);
	ck_assert_int_eq(scram_client_handle_server_first(c, RFC_SERVER_FIRST,
							  strlen(RFC_SERVER_FIRST), &out),
			 0);
	free(out);
	ck_assert_int_eq(scram_client_handle_server_final(c, EMPTY_USER_SERVER_FINAL,
							  strlen(EMPTY_USER_SERVER_FINAL) + 1),
			 -1);
	scram_client_free(c);
}
END_TEST

/* ---- lengths an attacker picks ---- */

static const size_t huge_lens[] = { 4097, 65536, (size_t)INT_MAX + 1, SIZE_MAX / 2 + 1,
				    SIZE_MAX - 1, SIZE_MAX };

/* Lengths past the limit are refused before any byte is read, so a lying
 * length cannot make the parser walk off the buffer. */
START_TEST(test_huge_lengths)
{
	static char big[65536];
	struct scram_client_creds creds = password_creds(RFC_PASSWORD);
	struct scram_secret secret = rfc_secret();
	struct scram_server *s = scram_server_new_with_nonce(&secret, SN);
	struct scram_client *c = scram_client_new_with_nonce(&creds, CN);
	size_t len = huge_lens[_i];
	const char *msg = len <= sizeof big ? big : "n,,n=,r=abc";
	char *out = NULL;

	memset(big, 'A', sizeof big);
	memcpy(big, "n,,n=,r=", 8);
	ck_assert_int_eq(scram_server_handle_first(s, msg, len, &out), -1);
	ck_assert_ptr_null(out);
	ck_assert_int_eq(scram_client_first(c, &out), 0);
	free(out);
	out = NULL;
	memcpy(big, "r=" NONCE, 14);
	msg = len <= sizeof big ? big : RFC_SERVER_FIRST;
	ck_assert_int_eq(scram_client_handle_server_first(c, msg, len, &out), -1);
	ck_assert_ptr_null(out);
	scram_server_free(s);
	scram_client_free(c);
}
END_TEST

START_TEST(test_huge_lengths_final)
{
	struct scram_secret secret = rfc_secret();
	struct scram_server *s = scram_server_new_with_nonce(&secret, SN);
	char *out = NULL;

	ck_assert_int_eq(scram_server_handle_first(s, "n,,n=,r=" CN, 14, &out), 0);
	free(out);
	out = NULL;
	ck_assert_int_eq(scram_server_handle_final(s, WP ",p=" P32, huge_lens[_i], &out, NULL), -1);
	ck_assert_ptr_null(out);
	scram_server_free(s);
}
END_TEST

/* CVE-2026-6665 shape: a server nonce far longer than anything sane. */
START_TEST(test_long_server_nonce)
{
	struct scram_client_creds creds = password_creds(RFC_PASSWORD);
	struct scram_client *c = scram_client_new_with_nonce(&creds, CN);
	size_t n = 100000;
	char *msg = malloc(n + 64), *out = NULL;

	memset(msg, 'Z', n + 64);
	memcpy(msg, "r=" CN, 8);
	strcpy(msg + n, SALT ",i=4096");
	ck_assert_int_eq(scram_client_first(c, &out), 0);
	free(out);
	out = NULL;
	ck_assert_int_eq(scram_client_handle_server_first(c, msg, strlen(msg), &out), -1);
	ck_assert_ptr_null(out);
	free(msg);
	scram_client_free(c);
}
END_TEST

/* The limits themselves: a 4000-byte client nonce and a 128-byte salt are
 * fine, 129 bytes of salt are not. */
START_TEST(test_boundaries)
{
	struct scram_secret secret = rfc_secret();
	struct scram_server *s = scram_server_new_with_nonce(&secret, SN);
	struct scram_client_creds creds = password_creds(RFC_PASSWORD);
	struct scram_client *c;
	char msg[4096], salt[200], *out = NULL;
	size_t i;

	memcpy(msg, "n,,n=,r=", 8);
	memset(msg + 8, 'q', 4000);
	ck_assert_int_eq(scram_server_handle_first(s, msg, 4008, &out), 0);
	ck_assert_uint_eq(strlen(out), 2 + 4000 + 6 + strlen(SALT ",i=4096"));
	free(out);
	scram_server_free(s);

	for (i = 128; i <= 129; i++) {
		/* i bytes of zeros in base64: 'A's with padding. */
		size_t chars = 4 * ((i + 2) / 3), pad = (3 - i % 3) % 3;

		memset(salt, 'A', chars);
		memset(salt + chars - pad, '=', pad);
		salt[chars] = '\0';
		snprintf(msg, sizeof msg, "r=" NONCE ",s=%s,i=1", salt);
		c = scram_client_new_with_nonce(&creds, CN);
		ck_assert_int_eq(scram_client_first(c, &out), 0);
		free(out);
		out = NULL;
		ck_assert_int_eq(scram_client_handle_server_first(c, msg, strlen(msg), &out),
				 i == 128 ? 0 : -1);
		free(out);
		out = NULL;
		scram_client_free(c);
	}
}
END_TEST

static Suite *scram_suite(void)
{
	Suite *s = suite_create("scram");
	TCase *tc = tcase_create("vectors");
	TCase *tm = tcase_create("malformed");

	tcase_add_test(tc, test_secret_from_password_rfc);
	tcase_add_loop_test(tc, test_secret_parse_real, 0,
			    sizeof real_verifiers / sizeof real_verifiers[0]);
	tcase_add_test(tc, test_secret_parse_null);
	tcase_add_test(tc, test_server_rfc);
	tcase_add_test(tc, test_client_rfc);
	tcase_add_test(tc, test_client_rfc_empty_user);
	tcase_add_loop_test(tc, test_end_to_end, 0,
			    sizeof real_verifiers / sizeof real_verifiers[0]);
	tcase_add_test(tc, test_random_nonces);
	tcase_add_test(tc, test_end_to_end_plus);
	tcase_add_test(tc, test_wrong_password);
	tcase_add_test(tc, test_mock);
	tcase_add_test(tc, test_key_mode);
	tcase_add_loop_test(tc, test_key_mode_mismatch, 0,
			    sizeof key_mode_mismatch / sizeof key_mode_mismatch[0]);
	tcase_add_test(tc, test_constructors);
	tcase_add_test(tc, test_out_of_order);
	tcase_add_test(tc, test_server_gs2_y);
	tcase_add_test(tc, test_server_channel_binding);
	suite_add_tcase(s, tc);

	tcase_add_loop_test(tm, test_secret_parse_malformed, 0,
			    sizeof bad_verifiers / sizeof bad_verifiers[0]);
	tcase_add_loop_test(tm, test_server_first_table, 0,
			    sizeof server_first_cases / sizeof server_first_cases[0]);
	tcase_add_loop_test(tm, test_server_final_table, 0,
			    sizeof server_final_cases / sizeof server_final_cases[0]);
	tcase_add_loop_test(tm, test_client_first_table, 0,
			    sizeof client_first_cases / sizeof client_first_cases[0]);
	tcase_add_loop_test(tm, test_client_final_table, 0,
			    sizeof client_final_cases / sizeof client_final_cases[0]);
	tcase_add_test(tm, test_client_final_nul);
	tcase_add_loop_test(tm, test_huge_lengths, 0, sizeof huge_lens / sizeof huge_lens[0]);
	tcase_add_loop_test(tm, test_huge_lengths_final, 0,
			    sizeof huge_lens / sizeof huge_lens[0]);
	tcase_add_test(tm, test_long_server_nonce);
	tcase_add_test(tm, test_boundaries);
	suite_add_tcase(s, tm);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(scram_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
