/* auth_file: PgBouncer's userlist format, one `"user" "password"` per line
 * (a doubled "" inside quotes is a literal quote; lines not starting with a
 * quote are comments). The password is plain text, "md5" + 32 hex digits, or
 * a "SCRAM-SHA-256$iter:salt$storedkey:serverkey" verifier. */
#pragma once

#include "core/config.h"
#include "pg/scram.h"

enum secret_kind { SECRET_PLAIN, SECRET_MD5, SECRET_SCRAM };

struct auth_secret {
	char *user;                 /* owned */
	enum secret_kind kind;
	char *value;                /* owned: the password field as written */
	struct scram_secret scram;  /* parsed verifier when kind == SECRET_SCRAM */
};

struct authfile;

/* Load PATH. Every problem (unreadable file, unterminated quote, bad md5 or
 * SCRAM verifier, duplicate user) goes to ERR with file:line; returns NULL
 * if there was any. Never puts a password into an error message. */
struct authfile *authfile_load(const char *path, config_error_fn err, void *arg)
	__attribute__((warn_unused_result));

/* The entry for USER, or NULL. Borrowed from AF. */
const struct auth_secret *authfile_lookup(const struct authfile *af, const char *user);

/* Wipes every secret with OPENSSL_cleanse and frees. Accepts NULL. */
void authfile_free(struct authfile *af);
