/* PostgreSQL MD5 password authentication: the stored hash
 * "md5" + hex(md5(password || user)) and the salted challenge response
 * "md5" + hex(md5(hex_hash || salt)). Pure functions, no I/O. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MD5_PASSWD_LEN 35 /* "md5" + 32 hex digits, without the NUL */

/* OUT receives "md5" + 32 hex digits + NUL. */
void md5_password_hash(const char *password, const char *user, char out[MD5_PASSWD_LEN + 1]);

/* OUT receives the response to AuthenticationMD5Password for a stored hash
 * HASH ("md5" + 32 hex). Returns 0, or -1 if HASH is not of that form. */
int md5_salted_response(const char *hash, const uint8_t salt[4], char out[MD5_PASSWD_LEN + 1])
	__attribute__((warn_unused_result));

/* True if HASH is "md5" followed by exactly 32 lower-case hex digits. */
bool md5_is_hash(const char *hash);

/* Constant-time check of a client's PasswordMessage RESPONSE (LEN bytes, no
 * NUL required) against the expected response for HASH and SALT. */
bool md5_verify(const char *hash, const uint8_t salt[4], const char *response, size_t len);
