/* PostgreSQL MD5 password authentication: the stored "md5" hash of
 * password || user, the salted response to AuthenticationMD5Password, and a
 * constant-time check of a client's response. MD5 itself is OpenSSL's. */
#include "pg/md5.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#define MD5_DIGEST_BYTES 16

/* OUT = "md5" + hex(md5(A || B)) + NUL. Returns 0, or -1 if OpenSSL fails
 * (for instance MD5 disabled by a FIPS provider). */
static int md5_hex(const void *a, size_t a_len, const void *b, size_t b_len,
		   char out[MD5_PASSWD_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t digest[MD5_DIGEST_BYTES];
	unsigned int n = 0;
	EVP_MD_CTX *ctx;
	int ok, i;

	ctx = EVP_MD_CTX_new();
	if (ctx == NULL)
		return -1;
	ok = EVP_DigestInit_ex(ctx, EVP_md5(), NULL) == 1 && EVP_DigestUpdate(ctx, a, a_len) == 1 &&
	     EVP_DigestUpdate(ctx, b, b_len) == 1 && EVP_DigestFinal_ex(ctx, digest, &n) == 1 &&
	     n == MD5_DIGEST_BYTES;
	EVP_MD_CTX_free(ctx);
	if (!ok)
		return -1;
	memcpy(out, "md5", 3);
	for (i = 0; i < MD5_DIGEST_BYTES; i++) {
		out[3 + 2 * i] = hex[digest[i] >> 4];
		out[3 + 2 * i + 1] = hex[digest[i] & 0x0f];
	}
	out[MD5_PASSWD_LEN] = '\0';
	OPENSSL_cleanse(digest, sizeof digest);
	return 0;
}

/* On failure OUT is the empty string, which md5_is_hash() rejects and no
 * response can match. */
void md5_password_hash(const char *password, const char *user, char out[MD5_PASSWD_LEN + 1])
{
	if (password == NULL || user == NULL ||
	    md5_hex(password, strlen(password), user, strlen(user), out) < 0)
		out[0] = '\0';
}

bool md5_is_hash(const char *hash)
{
	size_t i;

	if (hash == NULL || strncmp(hash, "md5", 3) != 0)
		return false;
	for (i = 3; i < MD5_PASSWD_LEN; i++) {
		char c = hash[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
	}
	return hash[MD5_PASSWD_LEN] == '\0';
}

int md5_salted_response(const char *hash, const uint8_t salt[4], char out[MD5_PASSWD_LEN + 1])
{
	if (!md5_is_hash(hash) || salt == NULL)
		return -1;
	/* The response hashes the 32 hex digits, without "md5". */
	return md5_hex(hash + 3, MD5_PASSWD_LEN - 3, salt, 4, out);
}

/* A trailing NUL (the PasswordMessage string terminator) is tolerated. */
bool md5_verify(const char *hash, const uint8_t salt[4], const char *response, size_t len)
{
	char expected[MD5_PASSWD_LEN + 1];
	bool ok;

	if (response == NULL)
		return false;
	if (len == MD5_PASSWD_LEN + 1 && response[MD5_PASSWD_LEN] == '\0')
		len = MD5_PASSWD_LEN;
	/* The length is public (always 35 for a real response), so an early
	 * return on it leaks nothing. */
	if (len != MD5_PASSWD_LEN || md5_salted_response(hash, salt, expected) < 0)
		return false;
	ok = CRYPTO_memcmp(expected, response, MD5_PASSWD_LEN) == 0;
	OPENSSL_cleanse(expected, sizeof expected);
	return ok;
}
