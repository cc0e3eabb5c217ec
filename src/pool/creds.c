/* A pool's user's credentials. See creds.h. */
#include "pool/creds.h"

#include "core/authfile.h"
#include "pool/pool.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <string.h>

/* The first 8 bytes of SHA-256 over the secret's kind and text: the same
 * secret, the same version, with no state to keep in step with the source;
 * a new secret cannot be chosen to keep the old version (and with it what
 * was derived from the old one). */
static uint64_t version_of(const struct auth_secret *s)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char kind = (unsigned char)s->kind;
	bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
		  EVP_DigestUpdate(ctx, &kind, 1) == 1 &&
		  EVP_DigestUpdate(ctx, s->value ? s->value : "", s->value ? strlen(s->value) : 0) == 1 &&
		  EVP_DigestFinal_ex(ctx, md, &n) == 1 && n >= 8;
	EVP_MD_CTX_free(ctx);
	uint64_t v = 0;
	for (int i = 0; ok && i < 8; i++)
		v = v << 8 | md[i];
	OPENSSL_cleanse(md, sizeof(md));
	if (!ok) {
		/* out of memory: a version no cache holds, so nothing derived
		 * from another secret is reused */
		static uint64_t failed = 1;
		return __atomic_add_fetch(&failed, 2, __ATOMIC_RELAXED) | (1ull << 63);
	}
	return v ? v : 1; /* 0 means "no secret" */
}

struct creds creds_get(const struct pool *p)
{
	const struct authfile *af = pool_authfile();
	const struct auth_secret *s = af ? authfile_lookup(af, pool_user(p)) : NULL;
	return (struct creds){.secret = s, .version = s ? version_of(s) : 0};
}
