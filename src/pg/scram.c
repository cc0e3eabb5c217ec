/* SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it: the verifier
 * format of pg_authid, the server half that checks clients logging in to
 * pgmux, and the client half that logs pgmux in to PostgreSQL. Every message
 * is attacker-controlled input: lengths are checked before any arithmetic,
 * embedded NULs are refused, and parsing never relies on strlen. All crypto
 * is OpenSSL's; secrets are wiped with OPENSSL_cleanse. */
#include "pg/scram.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

/* Largest iteration count accepted anywhere: above it a login costs seconds
 * of CPU, which is an attack (from a server) or a mistake (in a verifier). */
#define SCRAM_MAX_ITERATIONS 10000000
/* Longest SCRAM message accepted; real ones are under 200 bytes. Checked
 * first, so every later length sum is far from overflowing. */
#define SCRAM_MAX_MSG_LEN 4096
/* Longest fixed nonce a test hook accepts. */
#define SCRAM_MAX_FIXED_NONCE_LEN 255
/* Random nonces: 18 bytes, which base64 turns into 24 characters. */
#define SCRAM_NONCE_RAW_LEN 18
#define SCRAM_NONCE_LEN 24
/* Salt length of the made-up secret in mock mode (PostgreSQL's default). */
#define SCRAM_MOCK_SALT_LEN 16
/* Characters base64 makes of N bytes, without the NUL. */
#define B64_LEN(n) (4 * (((n) + 2) / 3))
#define SCRAM_VERIFIER_PREFIX "SCRAM-SHA-256$"

/* A run of bytes inside a message being parsed; not NUL-terminated. */
struct span {
	const char *p; /* borrowed: first byte */
	size_t len;    /* number of bytes */
};

/* Read position in a message being parsed. */
struct cursor {
	const char *p;   /* borrowed: next unread byte */
	const char *end; /* borrowed: one past the last byte */
};

/* ---- crypto and encoding helpers ---- */

static int sha256(const void *data, size_t len, uint8_t out[SCRAM_KEY_LEN])
{
	unsigned int n = 0;

	if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1 || n != SCRAM_KEY_LEN)
		return -1;
	return 0;
}

static int hmac_sha256(const uint8_t *key, size_t key_len, const void *data, size_t len,
		       uint8_t out[SCRAM_KEY_LEN])
{
	unsigned int n = 0;

	if (key_len > INT_MAX)
		return -1;
	if (HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &n) == NULL ||
	    n != SCRAM_KEY_LEN)
		return -1;
	return 0;
}

/* OUT must hold B64_LEN(LEN) + 1 bytes; LEN is at most SCRAM_MAX_SALT_LEN. */
static void b64_encode(const uint8_t *in, size_t len, char *out)
{
	EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

static bool b64_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '+' || c == '/';
}

/* Strict base64 (no whitespace, padding only at the end) decoding to between
 * MIN and MAX bytes (MAX <= SCRAM_MAX_SALT_LEN). EVP_DecodeBlock counts
 * padding as zero bytes, so the real length comes from the trailing '='s. */
static int b64_decode(const char *in, size_t len, uint8_t *out, size_t min, size_t max,
		      size_t *out_len)
{
	uint8_t tmp[SCRAM_MAX_SALT_LEN + 3];
	size_t pad = 0, n, i;
	int rc = -1;

	if (len == 0 || len % 4 != 0 || max > SCRAM_MAX_SALT_LEN)
		return -1;
	if (in[len - 1] == '=')
		pad = in[len - 2] == '=' ? 2 : 1;
	for (i = 0; i < len - pad; i++)
		if (!b64_char((unsigned char)in[i]))
			return -1;
	n = len / 4 * 3 - pad;
	if (n < min || n > max)
		return -1;
	/* Here len / 4 * 3 == n + pad <= max + 2 < sizeof tmp. */
	if (EVP_DecodeBlock(tmp, (const unsigned char *)in, (int)len) == (int)(len / 4 * 3)) {
		memcpy(out, tmp, n);
		*out_len = n;
		rc = 0;
	}
	OPENSSL_cleanse(tmp, sizeof tmp);
	return rc;
}

/* RFC 5802 nonce: printable ASCII except ','. */
static bool nonce_valid(const char *p, size_t len)
{
	size_t i;

	if (len == 0)
		return false;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c < 0x21 || c > 0x7e || c == ',')
			return false;
	}
	return true;
}

static int random_nonce(char out[SCRAM_NONCE_LEN + 1])
{
	uint8_t raw[SCRAM_NONCE_RAW_LEN];

	if (RAND_bytes(raw, sizeof raw) != 1)
		return -1;
	b64_encode(raw, sizeof raw, out);
	return 0;
}

/* A malloc'ed NUL-terminated copy of LEN bytes, or NULL. */
static char *memdup_str(const char *p, size_t len)
{
	char *s;

	if (len == SIZE_MAX)
		return NULL;
	s = malloc(len + 1);
	if (s == NULL)
		return NULL;
	memcpy(s, p, len);
	s[len] = '\0';
	return s;
}

/* Frees a malloc'ed buffer of LEN bytes after wiping it. */
static void free_wiped(void *p, size_t len)
{
	if (p == NULL)
		return;
	OPENSSL_cleanse(p, len);
	free(p);
}

/* AuthMessage = client-first-bare "," server-first "," client-final-without-
 * proof, from the bytes exactly as sent and received. Malloc'ed, or NULL. */
static char *auth_message(const char *a, size_t a_len, const char *b, size_t b_len,
			  const char *c, size_t c_len, size_t *out_len)
{
	size_t len;
	char *m;

	/* Each part is at most SCRAM_MAX_MSG_LEN-ish; still, check the sums. */
	if (a_len > SIZE_MAX / 4 || b_len > SIZE_MAX / 4 || c_len > SIZE_MAX / 4)
		return NULL;
	len = a_len + 1 + b_len + 1 + c_len;
	m = malloc(len);
	if (m == NULL)
		return NULL;
	memcpy(m, a, a_len);
	m[a_len] = ',';
	memcpy(m + a_len + 1, b, b_len);
	m[a_len + 1 + b_len] = ',';
	memcpy(m + a_len + 1 + b_len + 1, c, c_len);
	*out_len = len;
	return m;
}

/* ---- message parsing ---- */

/* Starts parsing MSG; refuses empty, oversized and NUL-containing input. */
static int cursor_open(struct cursor *c, const char *msg, size_t len)
{
	if (msg == NULL || len == 0 || len > SCRAM_MAX_MSG_LEN || memchr(msg, '\0', len) != NULL)
		return -1;
	c->p = msg;
	c->end = msg + len;
	return 0;
}

static bool cursor_at_end(const struct cursor *c)
{
	return c->p == c->end;
}

static int cursor_comma(struct cursor *c)
{
	if (c->p == c->end || *c->p != ',')
		return -1;
	c->p++;
	return 0;
}

/* Reads "NAME=value" (the value runs to the next ',' or the end, which are
 * not consumed). NAME == 0 accepts any ASCII letter (an extension). */
static int cursor_attr(struct cursor *c, char name, struct span *val)
{
	const char *v, *comma;
	unsigned char n;

	if (c->end - c->p < 2 || c->p[1] != '=')
		return -1;
	n = (unsigned char)c->p[0];
	if (name != 0 ? n != (unsigned char)name
		      : !((n >= 'a' && n <= 'z') || (n >= 'A' && n <= 'Z')))
		return -1;
	v = c->p + 2;
	comma = memchr(v, ',', (size_t)(c->end - v));
	val->p = v;
	val->len = (size_t)((comma != NULL ? comma : c->end) - v);
	c->p = v + val->len;
	return 0;
}

static bool span_eq(struct span s, const char *p, size_t len)
{
	return s.len == len && memcmp(s.p, p, len) == 0;
}

/* Iteration count: decimal digits only, 1..SCRAM_MAX_ITERATIONS. */
static int parse_iterations(const char *p, size_t len, int *out)
{
	long v = 0;
	size_t i;

	if (len == 0)
		return -1;
	for (i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + (p[i] - '0');
		if (v > SCRAM_MAX_ITERATIONS)
			return -1;
	}
	if (v < 1)
		return -1;
	*out = (int)v;
	return 0;
}

/* ---- keys and verifiers ---- */

/* ClientKey and ServerKey from PASSWORD (PBKDF2 is RFC 5802's Hi()). */
static int derive_keys(const char *password, const uint8_t *salt, size_t salt_len,
		       int iterations, uint8_t client_key[SCRAM_KEY_LEN],
		       uint8_t server_key[SCRAM_KEY_LEN])
{
	uint8_t salted[SCRAM_KEY_LEN];
	size_t pw_len;
	int rc = -1;

	if (password == NULL || salt == NULL || salt_len == 0 || salt_len > SCRAM_MAX_SALT_LEN ||
	    iterations < 1 || iterations > SCRAM_MAX_ITERATIONS)
		return -1;
	pw_len = strlen(password);
	if (pw_len > INT_MAX)
		return -1;
	if (PKCS5_PBKDF2_HMAC(password, (int)pw_len, salt, (int)salt_len, iterations, EVP_sha256(),
			      SCRAM_KEY_LEN, salted) == 1 &&
	    hmac_sha256(salted, sizeof salted, "Client Key", 10, client_key) == 0 &&
	    hmac_sha256(salted, sizeof salted, "Server Key", 10, server_key) == 0)
		rc = 0;
	OPENSSL_cleanse(salted, sizeof salted);
	return rc;
}

int scram_secret_from_password(const char *password, const uint8_t *salt, size_t salt_len,
			       int iterations, struct scram_secret *out,
			       uint8_t client_key_out[SCRAM_KEY_LEN])
{
	uint8_t client_key[SCRAM_KEY_LEN];
	int rc = -1;

	if (out == NULL)
		return -1;
	if (derive_keys(password, salt, salt_len, iterations, client_key, out->server_key) == 0 &&
	    sha256(client_key, sizeof client_key, out->stored_key) == 0) {
		out->iterations = iterations;
		memcpy(out->salt, salt, salt_len);
		out->salt_len = salt_len;
		if (client_key_out != NULL)
			memcpy(client_key_out, client_key, SCRAM_KEY_LEN);
		rc = 0;
	}
	OPENSSL_cleanse(client_key, sizeof client_key);
	if (rc != 0)
		OPENSSL_cleanse(out, sizeof *out);
	return rc;
}

int scram_secret_parse(const char *verifier, struct scram_secret *out)
{
	struct scram_secret tmp;
	const char *p, *sep, *end;
	size_t key_len;
	int rc = -1;

	if (verifier == NULL || out == NULL)
		return -1;
	if (strncmp(verifier, SCRAM_VERIFIER_PREFIX, strlen(SCRAM_VERIFIER_PREFIX)) != 0)
		return -1;
	p = verifier + strlen(SCRAM_VERIFIER_PREFIX);
	end = p + strlen(p);
	memset(&tmp, 0, sizeof tmp);
	/* Each field ends at its separator; b64_decode refuses any stray
	 * ':' or '$', so a field cannot swallow the next one. */
	if ((sep = memchr(p, ':', (size_t)(end - p))) == NULL ||
	    parse_iterations(p, (size_t)(sep - p), &tmp.iterations) < 0)
		goto out;
	p = sep + 1;
	if ((sep = memchr(p, '$', (size_t)(end - p))) == NULL ||
	    b64_decode(p, (size_t)(sep - p), tmp.salt, 1, SCRAM_MAX_SALT_LEN, &tmp.salt_len) < 0)
		goto out;
	p = sep + 1;
	if ((sep = memchr(p, ':', (size_t)(end - p))) == NULL ||
	    b64_decode(p, (size_t)(sep - p), tmp.stored_key, SCRAM_KEY_LEN, SCRAM_KEY_LEN,
		       &key_len) < 0)
		goto out;
	p = sep + 1;
	if (b64_decode(p, (size_t)(end - p), tmp.server_key, SCRAM_KEY_LEN, SCRAM_KEY_LEN,
		       &key_len) < 0)
		goto out;
	*out = tmp;
	rc = 0;
out:
	OPENSSL_cleanse(&tmp, sizeof tmp);
	return rc;
}

/* ---- server half ---- */

enum scram_server_state {
	SCRAM_SERVER_WANT_FIRST, /* waiting for the client-first-message */
	SCRAM_SERVER_WANT_FINAL, /* server-first sent, waiting for client-final */
	SCRAM_SERVER_DONE,       /* finished, successfully or not: no more input */
};

struct scram_server {
	enum scram_server_state state; /* which message may come next */
	bool mock;                     /* unknown user: same steps, always fails at the proof */
	struct scram_secret secret;    /* copy of the verifier; random in mock mode */
	char *server_nonce;            /* owned: our part of the nonce */
	char gs2_flag;                 /* 'n', 'y' or 'p', from the client-first-message */
	bool cb_offered;               /* -PLUS was in the mechanism list */
	bool cb_selected;              /* ...and the client chose it */
	uint8_t cb_data[SCRAM_CB_MAX]; /* tls-server-end-point of our certificate */
	size_t cb_len;
	char *expected_c;              /* owned: the c= value the client-final must carry */
	char *client_first_bare;       /* owned: as received (NUL added), for AuthMessage */
	size_t client_first_bare_len;  /* its length without the NUL */
	char *server_first;            /* owned: as sent, for AuthMessage */
	size_t server_first_len;       /* its length without the NUL */
	size_t nonce_len;              /* the combined nonce is server_first[2 .. 2 + nonce_len) */
};

static int mock_secret(struct scram_secret *s)
{
	memset(s, 0, sizeof *s);
	s->iterations = SCRAM_DEFAULT_ITERATIONS;
	s->salt_len = SCRAM_MOCK_SALT_LEN;
	if (RAND_bytes(s->salt, SCRAM_MOCK_SALT_LEN) != 1 ||
	    RAND_bytes(s->stored_key, SCRAM_KEY_LEN) != 1 ||
	    RAND_bytes(s->server_key, SCRAM_KEY_LEN) != 1)
		return -1;
	return 0;
}

struct scram_server *scram_server_new_with_nonce(const struct scram_secret *secret,
						 const char *server_nonce)
{
	char nonce[SCRAM_NONCE_LEN + 1];
	struct scram_server *s;

	if (secret != NULL && (secret->salt_len == 0 || secret->salt_len > SCRAM_MAX_SALT_LEN ||
			       secret->iterations < 1))
		return NULL;
	if (server_nonce != NULL) {
		size_t len = strnlen(server_nonce, SCRAM_MAX_FIXED_NONCE_LEN + 1);

		if (len > SCRAM_MAX_FIXED_NONCE_LEN || !nonce_valid(server_nonce, len))
			return NULL;
	} else if (random_nonce(nonce) < 0) {
		return NULL;
	}
	s = calloc(1, sizeof *s);
	if (s == NULL)
		return NULL;
	s->state = SCRAM_SERVER_WANT_FIRST;
	s->mock = secret == NULL;
	if (secret != NULL)
		s->secret = *secret;
	else if (mock_secret(&s->secret) < 0)
		goto fail;
	s->server_nonce = strdup(server_nonce != NULL ? server_nonce : nonce);
	if (s->server_nonce == NULL)
		goto fail;
	return s;
fail:
	scram_server_free(s);
	return NULL;
}

struct scram_server *scram_server_new(const struct scram_secret *secret)
{
	return scram_server_new_with_nonce(secret, NULL);
}

/* gs2-header: "n,,", "y,," or "p=tls-server-end-point,," (the only
 * channel binding type PostgreSQL knows); an authzid "a=..." is refused, as
 * PostgreSQL does. Which flags are acceptable depends on what was offered:
 * see scram_server_channel_binding. */
static int parse_gs2_header(struct cursor *c, char *flag)
{
	static const char plus[] = "p=tls-server-end-point,,";
	if (c->end - c->p >= (ptrdiff_t)(sizeof plus - 1) && memcmp(c->p, plus, sizeof plus - 1) == 0) {
		*flag = 'p';
		c->p += sizeof plus - 1;
		return 0;
	}
	if (c->end - c->p < 3)
		return -1;
	if ((c->p[0] != 'n' && c->p[0] != 'y') || c->p[1] != ',' || c->p[2] != ',')
		return -1;
	*flag = c->p[0];
	c->p += 3;
	return 0;
}

/* The c= attribute the client-final-message must carry: base64 of the
 * gs2 header, followed by the channel binding data if it binds. */
static char *expected_cbind(const struct scram_server *s, const char *hdr, size_t hdr_len)
{
	uint8_t raw[64 + SCRAM_CB_MAX];
	size_t n = 0;
	if (hdr_len > 64)
		return NULL;
	memcpy(raw, hdr, hdr_len);
	n = hdr_len;
	if (s->gs2_flag == 'p') {
		memcpy(raw + n, s->cb_data, s->cb_len);
		n += s->cb_len;
	}
	char *out = malloc(B64_LEN(n) + 1);
	if (out)
		EVP_EncodeBlock((unsigned char *)out, raw, (int)n);
	return out;
}

/* Optional extensions after the mandatory attributes: RFC 5802 allows them
 * and PostgreSQL ignores them; each must still be a well-formed "x=value". */
static int skip_extensions(struct cursor *c)
{
	struct span ext;

	while (!cursor_at_end(c))
		if (cursor_comma(c) < 0 || cursor_attr(c, 0, &ext) < 0 || ext.len == 0)
			return -1;
	return 0;
}

static int server_build_first(struct scram_server *s, struct span cnonce)
{
	char salt_b64[B64_LEN(SCRAM_MAX_SALT_LEN) + 1];
	size_t snonce_len = strlen(s->server_nonce), size;
	int n;

	b64_encode(s->secret.salt, s->secret.salt_len, salt_b64);
	/* cnonce.len <= SCRAM_MAX_MSG_LEN and snonce_len <= 255: no overflow. */
	size = sizeof "r=" + cnonce.len + snonce_len + sizeof ",s=" + strlen(salt_b64) +
	       sizeof ",i=" + 12;
	s->server_first = malloc(size);
	if (s->server_first == NULL)
		return -1;
	n = snprintf(s->server_first, size, "r=%.*s%s,s=%s,i=%d", (int)cnonce.len, cnonce.p,
		     s->server_nonce, salt_b64, s->secret.iterations);
	if (n < 0 || (size_t)n >= size)
		return -1;
	s->server_first_len = (size_t)n;
	s->nonce_len = cnonce.len + snonce_len;
	return 0;
}

int scram_server_handle_first(struct scram_server *s, const char *msg, size_t len, char **out)
{
	struct cursor c;
	enum scram_server_state prev;
	struct span user, cnonce;
	const char *bare;

	if (out == NULL)
		return -1;
	*out = NULL;
	if (s == NULL)
		return -1;
	/* Any failure, or a message out of turn, ends the exchange. */
	prev = s->state;
	s->state = SCRAM_SERVER_DONE;
	if (prev != SCRAM_SERVER_WANT_FIRST)
		return -1;
	if (cursor_open(&c, msg, len) < 0 || parse_gs2_header(&c, &s->gs2_flag) < 0)
		return -1;
	/* -PLUS chosen: the client must bind. Not chosen: it must not, and
	 * "y" (it could bind, but thinks we cannot) is a downgrade when we
	 * offered -PLUS. Not offered: binding is impossible. */
	if (s->cb_selected ? s->gs2_flag != 'p'
			   : s->gs2_flag == 'p' || (s->cb_offered && s->gs2_flag == 'y'))
		return -1;
	bare = c.p;
	s->expected_c = expected_cbind(s, msg, (size_t)(bare - msg));
	if (!s->expected_c)
		return -1;
	/* "m=" (a mandatory extension) fails here: n= must come first. The
	 * user name is ignored: PostgreSQL takes it from the startup packet. */
	if (cursor_attr(&c, 'n', &user) < 0 || cursor_comma(&c) < 0 ||
	    cursor_attr(&c, 'r', &cnonce) < 0 || !nonce_valid(cnonce.p, cnonce.len) ||
	    skip_extensions(&c) < 0)
		return -1;
	s->client_first_bare_len = (size_t)(c.end - bare);
	s->client_first_bare = memdup_str(bare, s->client_first_bare_len);
	if (s->client_first_bare == NULL || server_build_first(s, cnonce) < 0)
		return -1;
	*out = memdup_str(s->server_first, s->server_first_len);
	if (*out == NULL)
		return -1;
	s->state = SCRAM_SERVER_WANT_FINAL;
	return 0;
}

/* Checks PROOF against the AuthMessage; on success builds "v=...". */
static int server_verify_proof(struct scram_server *s, const char *final, size_t without_proof_len,
			       const uint8_t proof[SCRAM_KEY_LEN], char **out,
			       uint8_t client_key_out[SCRAM_KEY_LEN])
{
	uint8_t sig[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN], stored[SCRAM_KEY_LEN];
	char v[sizeof "v=" + B64_LEN(SCRAM_KEY_LEN)];
	size_t am_len = 0, i;
	char *am;
	int rc = -1;

	am = auth_message(s->client_first_bare, s->client_first_bare_len, s->server_first,
			  s->server_first_len, final, without_proof_len, &am_len);
	if (am == NULL)
		return -1;
	if (hmac_sha256(s->secret.stored_key, SCRAM_KEY_LEN, am, am_len, sig) < 0)
		goto out;
	for (i = 0; i < SCRAM_KEY_LEN; i++)
		client_key[i] = proof[i] ^ sig[i];
	if (sha256(client_key, sizeof client_key, stored) < 0)
		goto out;
	/* Mock mode computes the same and then fails, like a wrong password. */
	if (CRYPTO_memcmp(stored, s->secret.stored_key, SCRAM_KEY_LEN) != 0 || s->mock) {
		rc = -2;
		goto out;
	}
	if (hmac_sha256(s->secret.server_key, SCRAM_KEY_LEN, am, am_len, sig) < 0)
		goto out;
	memcpy(v, "v=", 2);
	b64_encode(sig, SCRAM_KEY_LEN, v + 2);
	*out = strdup(v);
	if (*out == NULL)
		goto out;
	if (client_key_out != NULL)
		memcpy(client_key_out, client_key, SCRAM_KEY_LEN);
	rc = 0;
out:
	OPENSSL_cleanse(sig, sizeof sig);
	OPENSSL_cleanse(client_key, sizeof client_key);
	OPENSSL_cleanse(stored, sizeof stored);
	free(am);
	return rc;
}

int scram_server_handle_final(struct scram_server *s, const char *msg, size_t len, char **out,
			      uint8_t client_key_out[SCRAM_KEY_LEN])
{
	enum scram_server_state prev;
	const char *cbind, *without_proof_end;
	uint8_t proof[SCRAM_KEY_LEN];
	struct span val, nonce;
	struct cursor c;
	size_t proof_len;
	int rc;

	if (out == NULL)
		return -1;
	*out = NULL;
	if (s == NULL)
		return -1;
	prev = s->state;
	s->state = SCRAM_SERVER_DONE;
	if (prev != SCRAM_SERVER_WANT_FINAL)
		return -1;
	if (cursor_open(&c, msg, len) < 0)
		return -1;
	/* c= must be exactly the gs2 header of the first message and, when it
	 * binds, our channel binding data, base64'd (canonical base64 is
	 * unique, so comparing text is enough). */
	cbind = s->expected_c;
	if (cursor_attr(&c, 'c', &val) < 0 || !span_eq(val, cbind, strlen(cbind)) ||
	    cursor_comma(&c) < 0 ||
	    cursor_attr(&c, 'r', &nonce) < 0 ||
	    !span_eq(nonce, s->server_first + 2, s->nonce_len))
		return -1;
	/* Extensions may come before the proof, which must be last. */
	for (;;) {
		without_proof_end = c.p;
		if (cursor_comma(&c) < 0)
			return -1;
		if (cursor_attr(&c, 'p', &val) == 0)
			break;
		if (cursor_attr(&c, 0, &val) < 0 || val.len == 0)
			return -1;
	}
	if (!cursor_at_end(&c) ||
	    b64_decode(val.p, val.len, proof, SCRAM_KEY_LEN, SCRAM_KEY_LEN, &proof_len) < 0)
		return -1;
	rc = server_verify_proof(s, msg, (size_t)(without_proof_end - msg), proof, out,
				 client_key_out);
	OPENSSL_cleanse(proof, sizeof proof);
	return rc;
}

void scram_server_free(struct scram_server *s)
{
	if (s == NULL)
		return;
	free(s->server_nonce);
	free(s->client_first_bare);
	free(s->server_first);
	free(s->expected_c);
	OPENSSL_cleanse(s, sizeof *s);
	free(s);
}

int scram_server_channel_binding(struct scram_server *s, bool selected, const uint8_t *data,
				 size_t len)
{
	if (!s || s->state != SCRAM_SERVER_WANT_FIRST || len == 0 || len > SCRAM_CB_MAX)
		return -1;
	s->cb_offered = true;
	s->cb_selected = selected;
	memcpy(s->cb_data, data, len);
	s->cb_len = len;
	return 0;
}

/* ---- client half ---- */

enum scram_client_state {
	SCRAM_CLIENT_START,             /* client-first-message not built yet */
	SCRAM_CLIENT_WANT_SERVER_FIRST, /* client-first sent */
	SCRAM_CLIENT_WANT_SERVER_FINAL, /* client-final sent */
	SCRAM_CLIENT_DONE,              /* finished, successfully or not */
};

struct scram_client {
	enum scram_client_state state;      /* where the exchange is */
	struct scram_client_creds creds;    /* copy; creds.password is the copy below */
	char *password;                     /* owned copy of the password, or NULL (key mode) */
	char *nonce;                        /* owned: client nonce */
	char *user;                         /* owned: saslname sent in n= ("" but in tests) */
	char *client_first_bare;            /* owned: as sent, for AuthMessage */
	size_t client_first_bare_len;       /* its length without the NUL */
	uint8_t server_signature[SCRAM_KEY_LEN]; /* the v= we expect */
	bool binds;                         /* -PLUS: "p=tls-server-end-point" */
	bool could_bind;                    /* "y": on TLS, but -PLUS was not offered */
	uint8_t cb_data[SCRAM_CB_MAX];      /* the server certificate's end point hash */
	size_t cb_len;
	char *cbind;                        /* owned: the c= value, made at _first */
};

struct scram_client *scram_client_new_with_nonce_user(const struct scram_client_creds *creds,
						      const char *client_nonce, const char *user)
{
	char nonce[SCRAM_NONCE_LEN + 1];
	struct scram_client *c;

	if (creds == NULL || user == NULL || strnlen(user, 256) > 255 || strpbrk(user, ",=") != NULL)
		return NULL;
	/* Key mode needs the salt and iterations the keys were made with. */
	if (creds->password == NULL &&
	    (creds->salt_len == 0 || creds->salt_len > SCRAM_MAX_SALT_LEN ||
	     creds->iterations < 1 || creds->iterations > SCRAM_MAX_ITERATIONS))
		return NULL;
	if (client_nonce != NULL) {
		size_t len = strnlen(client_nonce, SCRAM_MAX_FIXED_NONCE_LEN + 1);

		if (len > SCRAM_MAX_FIXED_NONCE_LEN || !nonce_valid(client_nonce, len))
			return NULL;
	} else if (random_nonce(nonce) < 0) {
		return NULL;
	}
	c = calloc(1, sizeof *c);
	if (c == NULL)
		return NULL;
	c->state = SCRAM_CLIENT_START;
	c->creds = *creds;
	c->password = creds->password != NULL ? strdup(creds->password) : NULL;
	c->creds.password = c->password;
	c->nonce = strdup(client_nonce != NULL ? client_nonce : nonce);
	c->user = strdup(user);
	if ((creds->password != NULL && c->password == NULL) || c->nonce == NULL || c->user == NULL) {
		scram_client_free(c);
		return NULL;
	}
	return c;
}

struct scram_client *scram_client_new_with_nonce(const struct scram_client_creds *creds,
						 const char *client_nonce)
{
	return scram_client_new_with_nonce_user(creds, client_nonce, "");
}

struct scram_client *scram_client_new(const struct scram_client_creds *creds)
{
	return scram_client_new_with_nonce_user(creds, NULL, "");
}

int scram_client_first(struct scram_client *c, char **out)
{
	enum scram_client_state prev;
	size_t size;
	int n;

	if (out == NULL)
		return -1;
	*out = NULL;
	if (c == NULL)
		return -1;
	prev = c->state;
	c->state = SCRAM_CLIENT_DONE;
	if (prev != SCRAM_CLIENT_START)
		return -1;
	/* Both strings are at most 255 bytes (checked in _new). */
	size = sizeof "n=,r=" + strlen(c->user) + strlen(c->nonce);
	c->client_first_bare = malloc(size);
	if (c->client_first_bare == NULL)
		return -1;
	n = snprintf(c->client_first_bare, size, "n=%s,r=%s", c->user, c->nonce);
	if (n < 0 || (size_t)n >= size)
		return -1;
	c->client_first_bare_len = (size_t)n;
	*out = NULL;
	static const char plus[] = "p=tls-server-end-point,,";
	const char *gs2 = c->binds ? plus : c->could_bind ? "y,," : "n,,";
	size_t gs2_len = strlen(gs2);
	uint8_t raw[sizeof plus + SCRAM_CB_MAX];
	memcpy(raw, gs2, gs2_len);
	if (c->binds)
		memcpy(raw + gs2_len, c->cb_data, c->cb_len);
	c->cbind = malloc(B64_LEN(gs2_len + c->cb_len) + 1);
	free(*out);
	*out = malloc(gs2_len + (size_t)n + 1);
	if (*out == NULL || c->cbind == NULL)
		return -1;
	EVP_EncodeBlock((unsigned char *)c->cbind, raw, (int)(gs2_len + (c->binds ? c->cb_len : 0)));
	memcpy(*out, gs2, gs2_len);
	memcpy(*out + gs2_len, c->client_first_bare, (size_t)n + 1);
	c->state = SCRAM_CLIENT_WANT_SERVER_FIRST;
	return 0;
}

int scram_client_could_bind(struct scram_client *c)
{
	if (!c || c->state != SCRAM_CLIENT_START || c->binds)
		return -1;
	c->could_bind = true;
	return 0;
}

int scram_client_channel_binding(struct scram_client *c, const uint8_t *data, size_t len)
{
	if (!c || c->state != SCRAM_CLIENT_START || len == 0 || len > SCRAM_CB_MAX)
		return -1;
	c->binds = true;
	memcpy(c->cb_data, data, len);
	c->cb_len = len;
	return 0;
}

/* ClientKey and ServerKey: derived from the password, or (key mode) taken
 * from the creds, which only fit the server's salt and iterations. */
static int client_keys(struct scram_client *c, const uint8_t *salt, size_t salt_len,
		       int iterations, uint8_t client_key[SCRAM_KEY_LEN],
		       uint8_t server_key[SCRAM_KEY_LEN])
{
	if (c->password != NULL)
		return derive_keys(c->password, salt, salt_len, iterations, client_key, server_key);
	if (salt_len != c->creds.salt_len || iterations != c->creds.iterations ||
	    memcmp(salt, c->creds.salt, salt_len) != 0)
		return -1;
	memcpy(client_key, c->creds.client_key, SCRAM_KEY_LEN);
	memcpy(server_key, c->creds.server_key, SCRAM_KEY_LEN);
	return 0;
}

/* Builds "c=<gs2 header and binding, base64>,r=<nonce>,p=<proof>" and
 * remembers the expected v=. */
static int client_build_final(struct scram_client *c, const char *server_first,
			      size_t server_first_len, struct span nonce,
			      const uint8_t client_key[SCRAM_KEY_LEN],
			      const uint8_t server_key[SCRAM_KEY_LEN], char **out)
{
	uint8_t stored[SCRAM_KEY_LEN], sig[SCRAM_KEY_LEN], proof[SCRAM_KEY_LEN];
	size_t am_len = 0, wp_len, i;
	char *am = NULL, *msg;
	int rc = -1;

	/* nonce.len <= SCRAM_MAX_MSG_LEN, so this cannot overflow. */
	size_t cb = strlen(c->cbind);
	msg = malloc(sizeof "c=,r=" + cb + nonce.len + sizeof ",p=" + B64_LEN(SCRAM_KEY_LEN));
	if (msg == NULL)
		return -1;
	memcpy(msg, "c=", 2);
	memcpy(msg + 2, c->cbind, cb);
	memcpy(msg + 2 + cb, ",r=", 3);
	memcpy(msg + 5 + cb, nonce.p, nonce.len);
	wp_len = 5 + cb + nonce.len;
	am = auth_message(c->client_first_bare, c->client_first_bare_len, server_first,
			  server_first_len, msg, wp_len, &am_len);
	if (am == NULL || sha256(client_key, SCRAM_KEY_LEN, stored) < 0 ||
	    hmac_sha256(stored, sizeof stored, am, am_len, sig) < 0 ||
	    hmac_sha256(server_key, SCRAM_KEY_LEN, am, am_len, c->server_signature) < 0)
		goto out;
	for (i = 0; i < SCRAM_KEY_LEN; i++)
		proof[i] = client_key[i] ^ sig[i];
	memcpy(msg + wp_len, ",p=", 3);
	b64_encode(proof, sizeof proof, msg + wp_len + 3);
	*out = msg;
	msg = NULL;
	rc = 0;
out:
	OPENSSL_cleanse(stored, sizeof stored);
	OPENSSL_cleanse(sig, sizeof sig);
	OPENSSL_cleanse(proof, sizeof proof);
	free(am);
	free(msg);
	return rc;
}

int scram_client_handle_server_first(struct scram_client *c, const char *msg, size_t len,
				     char **out)
{
	uint8_t salt[SCRAM_MAX_SALT_LEN], client_key[SCRAM_KEY_LEN], server_key[SCRAM_KEY_LEN];
	struct span nonce, val;
	struct cursor cur;
	size_t salt_len = 0, our_len;
	int iterations = 0, rc = -1;
	enum scram_client_state prev;

	if (out == NULL)
		return -1;
	*out = NULL;
	if (c == NULL)
		return -1;
	prev = c->state;
	c->state = SCRAM_CLIENT_DONE;
	if (prev != SCRAM_CLIENT_WANT_SERVER_FIRST)
		return -1;
	our_len = strlen(c->nonce);
	/* r=, s=, i= in this order (RFC 5802), nothing after (as libpq). The
	 * combined nonce must extend ours. */
	if (cursor_open(&cur, msg, len) < 0 || cursor_attr(&cur, 'r', &nonce) < 0 ||
	    nonce.len <= our_len || memcmp(nonce.p, c->nonce, our_len) != 0 ||
	    !nonce_valid(nonce.p, nonce.len) || cursor_comma(&cur) < 0 ||
	    cursor_attr(&cur, 's', &val) < 0 ||
	    b64_decode(val.p, val.len, salt, 1, SCRAM_MAX_SALT_LEN, &salt_len) < 0 ||
	    cursor_comma(&cur) < 0 || cursor_attr(&cur, 'i', &val) < 0 ||
	    parse_iterations(val.p, val.len, &iterations) < 0 || !cursor_at_end(&cur))
		return -1;
	if (client_keys(c, salt, salt_len, iterations, client_key, server_key) == 0)
		rc = client_build_final(c, msg, len, nonce, client_key, server_key, out);
	OPENSSL_cleanse(client_key, sizeof client_key);
	OPENSSL_cleanse(server_key, sizeof server_key);
	if (rc == 0)
		c->state = SCRAM_CLIENT_WANT_SERVER_FINAL;
	return rc;
}

int scram_client_handle_server_final(struct scram_client *c, const char *msg, size_t len)
{
	enum scram_client_state prev;
	uint8_t sig[SCRAM_KEY_LEN];
	struct cursor cur;
	struct span val;
	size_t sig_len;
	int rc = -1;

	if (c == NULL)
		return -1;
	prev = c->state;
	c->state = SCRAM_CLIENT_DONE;
	if (prev != SCRAM_CLIENT_WANT_SERVER_FINAL)
		return -1;
	/* "e=..." (a server error) fails the 'v' match. */
	if (cursor_open(&cur, msg, len) == 0 && cursor_attr(&cur, 'v', &val) == 0 &&
	    cursor_at_end(&cur) &&
	    b64_decode(val.p, val.len, sig, SCRAM_KEY_LEN, SCRAM_KEY_LEN, &sig_len) == 0 &&
	    CRYPTO_memcmp(sig, c->server_signature, SCRAM_KEY_LEN) == 0)
		rc = 0;
	OPENSSL_cleanse(sig, sizeof sig);
	OPENSSL_cleanse(c->server_signature, sizeof c->server_signature);
	return rc;
}

void scram_client_free(struct scram_client *c)
{
	if (c == NULL)
		return;
	if (c->password != NULL)
		free_wiped(c->password, strlen(c->password));
	free(c->nonce);
	free(c->user);
	free(c->client_first_bare);
	free(c->cbind);
	OPENSSL_cleanse(c, sizeof *c);
	free(c);
}
