/* SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it, both halves:
 * the server half authenticates clients logging in to pgmux; the client half
 * logs pgmux in to a PostgreSQL server. Pure: messages in, messages out, no
 * I/O. The server half binds to the TLS channel (SCRAM-SHA-256-PLUS,
 * tls-server-end-point) when its owner offered it (see
 * scram_server_channel_binding); without it, "p=" is refused and "y,,"
 * (client could bind, server did not offer) is accepted as RFC 5802
 * allows. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SCRAM_KEY_LEN 32
#define SCRAM_MAX_SALT_LEN 128
#define SCRAM_DEFAULT_ITERATIONS 4096

struct scram_secret {
	int iterations;
	uint8_t salt[SCRAM_MAX_SALT_LEN];
	size_t salt_len;
	uint8_t stored_key[SCRAM_KEY_LEN];
	uint8_t server_key[SCRAM_KEY_LEN];
};

/* Parse "SCRAM-SHA-256$<iter>:<b64 salt>$<b64 StoredKey>:<b64 ServerKey>".
 * Returns 0, or -1 if malformed. */
int scram_secret_parse(const char *verifier, struct scram_secret *out)
	__attribute__((warn_unused_result));

/* Derive a verifier from a plain-text PASSWORD (SASLprep is not applied; an
 * ASCII password is used as is). CLIENT_KEY_OUT may be NULL. Returns 0 / -1. */
int scram_secret_from_password(const char *password, const uint8_t *salt, size_t salt_len,
			       int iterations, struct scram_secret *out,
			       uint8_t client_key_out[SCRAM_KEY_LEN])
	__attribute__((warn_unused_result));

/* ---- server half ---- */
struct scram_server;

/* SECRET is copied. SECRET == NULL runs a mock exchange for an unknown user
 * (a made-up salt derived from NONCE_SECRET-free randomness) that always fails
 * at the proof, so unknown users look like wrong passwords. */
struct scram_server *scram_server_new(const struct scram_secret *secret);
/* Test hook: a fixed server nonce part instead of a random one. */
struct scram_server *scram_server_new_with_nonce(const struct scram_secret *secret,
						 const char *server_nonce);

/* MSG is the client-first-message (SASLInitialResponse data, LEN bytes).
 * On success *OUT is a malloc'ed NUL-terminated server-first-message.
 * Returns 0, or -1 if MSG is malformed. */
int scram_server_handle_first(struct scram_server *s, const char *msg, size_t len, char **out)
	__attribute__((warn_unused_result));

/* MSG is the client-final-message. Returns 0 if the proof is right (*OUT is a
 * malloc'ed server-final-message "v=..." and CLIENT_KEY_OUT, if not NULL,
 * receives the recovered ClientKey), -1 if malformed (wrong nonce, bad
 * channel-binding attribute, trailing garbage), -2 if the proof is wrong. */
int scram_server_handle_final(struct scram_server *s, const char *msg, size_t len, char **out,
			      uint8_t client_key_out[SCRAM_KEY_LEN])
	__attribute__((warn_unused_result));

/* Wipes keys with OPENSSL_cleanse. Accepts NULL. */
void scram_server_free(struct scram_server *s);
#define SCRAM_CB_MAX 64 /* bytes of channel binding data (a SHA-512 hash at most) */
/* Before the client-first-message: SCRAM-SHA-256-PLUS was offered, with
 * DATA (LEN bytes: the tls-server-end-point hash of the certificate the
 * client saw), and SELECTED says whether the client chose it. A client that
 * chose it must bind ("p=tls-server-end-point") and send DATA in c=; one
 * that did not must send "n" ("y" is then a downgrade, refused). Returns
 * 0, or -1 if called late or LEN is 0 or over SCRAM_CB_MAX. */
int scram_server_channel_binding(struct scram_server *s, bool selected, const uint8_t *data,
				 size_t len) __attribute__((warn_unused_result));

/* ---- client half ---- */
struct scram_client_creds {
	const char *password;            /* plain text, or NULL to use the keys below */
	uint8_t client_key[SCRAM_KEY_LEN]; /* when password == NULL: ClientKey ... */
	uint8_t server_key[SCRAM_KEY_LEN]; /* ... and ServerKey of the secret ... */
	uint8_t salt[SCRAM_MAX_SALT_LEN];  /* ... which was made with this salt ... */
	size_t salt_len;
	int iterations;                  /* ... and iteration count */
};

struct scram_client;

/* CREDS is copied. */
struct scram_client *scram_client_new(const struct scram_client_creds *creds);
/* Test hook: a fixed client nonce. */
struct scram_client *scram_client_new_with_nonce(const struct scram_client_creds *creds,
						 const char *client_nonce);
/* Test hook: a fixed client nonce and USER sent as "n=<USER>" instead of the
 * empty "n=" (the RFC 7677 test vector's AuthMessage has "n=user"). USER must
 * not contain ',' or '=' and be at most 255 bytes. */
struct scram_client *scram_client_new_with_nonce_user(const struct scram_client_creds *creds,
						      const char *client_nonce, const char *user);

/* Before scram_client_first: choose SCRAM-SHA-256-PLUS, binding to DATA
 * (LEN bytes, the tls-server-end-point hash of the server's certificate):
 * the gs2 header becomes "p=tls-server-end-point,," and c= carries DATA.
 * Returns 0, or -1 if called late or LEN is 0 or over SCRAM_CB_MAX. */
int scram_client_channel_binding(struct scram_client *c, const uint8_t *data, size_t len)
	__attribute__((warn_unused_result));
/* Before scram_client_first, on a TLS connection whose server did not
 * offer -PLUS: send "y,," (RFC 5802: the client could bind, but believes
 * the server cannot), so that a man in the middle who stripped -PLUS from
 * the mechanism list is caught by a server that does offer it. Returns 0,
 * or -1 if called late or after scram_client_channel_binding. */
int scram_client_could_bind(struct scram_client *c) __attribute__((warn_unused_result));
/* *OUT: malloc'ed client-first-message "n,,n=,r=<nonce>" (or with the
 * binding header). Returns 0 / -1. */
int scram_client_first(struct scram_client *c, char **out) __attribute__((warn_unused_result));

/* MSG: server-first-message. *OUT: malloc'ed client-final-message. Returns 0,
 * or -1 if MSG is malformed, the nonce does not start with ours, the
 * iteration count or salt is invalid, or (key mode) the server's salt and
 * iterations differ from the keys'. */
int scram_client_handle_server_first(struct scram_client *c, const char *msg, size_t len,
				     char **out) __attribute__((warn_unused_result));

/* MSG: server-final-message. Returns 0 if "v=" proves the server knows the
 * secret, -1 otherwise (including "e=" errors). */
int scram_client_handle_server_final(struct scram_client *c, const char *msg, size_t len)
	__attribute__((warn_unused_result));

/* Wipes keys and password copy. Accepts NULL. */
void scram_client_free(struct scram_client *c);
