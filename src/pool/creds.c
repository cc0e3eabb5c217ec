/* A pool's user's credentials. See creds.h. */
#include "pool/creds.h"

#include "core/authfile.h"
#include "pool/pool.h"

/* FNV-1a over the secret's kind and text: the same secret, the same
 * version, with no state to keep in step with the source. */
static uint64_t version_of(const struct auth_secret *s)
{
	uint64_t h = 1469598103934665603ull;
	h = (h ^ (unsigned)s->kind) * 1099511628211ull;
	for (const unsigned char *p = (const unsigned char *)s->value; p && *p; p++)
		h = (h ^ *p) * 1099511628211ull;
	return h ? h : 1;
}

struct creds creds_get(const struct pool *p)
{
	const struct authfile *af = pool_authfile();
	const struct auth_secret *s = af ? authfile_lookup(af, pool_user(p)) : NULL;
	return (struct creds){.secret = s, .version = s ? version_of(s) : 0};
}
