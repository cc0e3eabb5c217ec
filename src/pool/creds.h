/* The credentials of a pool's user: what its clients' logins are checked
 * against and what its server logins present. Client logins (client.c) and
 * server logins (server_login.c) ask creds_get and nothing else, so the
 * source can change behind it: today the auth_file; the secrets issue adds
 * AWS Secrets Manager. The answer is versioned: what pgmux derives from a
 * secret (the SCRAM keys of a plain password, a ClientKey recovered from a
 * client's proof) is kept with the version it came from and derived again
 * when the version changes, so a new secret takes effect for the next
 * login without a restart. */
#pragma once

#include <stdint.h>

struct auth_secret;
struct pool;

struct creds {
	/* borrowed: valid while the source it came from is installed (the
	 * auth_file, for the life of the process); NULL if the source does
	 * not know the user */
	const struct auth_secret *secret;
	uint64_t version; /* differs whenever the secret does; 0 when there is none */
};

/* P's user's credentials now. Any thread. */
struct creds creds_get(const struct pool *p);
