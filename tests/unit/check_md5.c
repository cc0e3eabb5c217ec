/* Unit tests for pg/md5: stored hashes (one taken from a real PostgreSQL
 * 15 pg_authid), salted responses and their constant-time check, and what
 * md5_is_hash accepts. Expected values were computed with Python's hashlib. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pg/md5.h"

static const struct {
	const char *password; /* plain text */
	const char *user;     /* role name */
	const char *hash;     /* "md5" + hex(md5(password || user)) */
} hash_cases[] = {
	{ "postgres", "postgres", "md53175bce1d3201d16594cebf9d7eb3f9d" },
	{ "password", "user", "md54d45974e13472b5a0be3533de4666414" },
	{ "s3cret", "carol", "md50e20c76932177a1cac78e173074f143e" }, /* from pg_authid */
	{ "", "", "md5d41d8cd98f00b204e9800998ecf8427e" },            /* md5("") */
};

START_TEST(test_password_hash)
{
	char out[MD5_PASSWD_LEN + 1];

	md5_password_hash(hash_cases[_i].password, hash_cases[_i].user, out);
	ck_assert_str_eq(out, hash_cases[_i].hash);
	ck_assert(md5_is_hash(out));
}
END_TEST

static const struct {
	const char *hash;   /* stored hash */
	uint8_t salt[4];    /* AuthenticationMD5Password salt */
	const char *answer; /* "md5" + hex(md5(hex || salt)) */
} salted_cases[] = {
	{ "md54d45974e13472b5a0be3533de4666414", { 1, 2, 3, 4 },
	  "md5a3576f1ae039b8996bc4fc2720f9c71a" },
	{ "md53175bce1d3201d16594cebf9d7eb3f9d", { 0xde, 0xad, 0xbe, 0xef },
	  "md58ee245854025535aedb7b15709315318" },
};

START_TEST(test_salted_response)
{
	const char *answer = salted_cases[_i].answer;
	const uint8_t *salt = salted_cases[_i].salt;
	const char *hash = salted_cases[_i].hash;
	uint8_t other_salt[4] = { salt[0], salt[1], salt[2], (uint8_t)(salt[3] ^ 1) };
	char out[MD5_PASSWD_LEN + 1], wrong[MD5_PASSWD_LEN + 1];

	ck_assert_int_eq(md5_salted_response(hash, salt, out), 0);
	ck_assert_str_eq(out, answer);
	ck_assert(md5_verify(hash, salt, answer, strlen(answer)));
	/* The PasswordMessage terminator may be counted. */
	ck_assert(md5_verify(hash, salt, answer, strlen(answer) + 1));
	ck_assert(!md5_verify(hash, other_salt, answer, strlen(answer)));
	ck_assert(!md5_verify(hash, salt, answer, strlen(answer) - 1));
	ck_assert(!md5_verify(hash, salt, answer, 0));
	ck_assert(!md5_verify(hash, salt, NULL, 35));
	/* Every single-character change is refused. */
	for (size_t i = 0; i < MD5_PASSWD_LEN; i++) {
		memcpy(wrong, answer, sizeof wrong);
		wrong[i] = wrong[i] == 'a' ? 'b' : 'a';
		ck_assert_msg(!md5_verify(hash, salt, wrong, MD5_PASSWD_LEN), "byte %zu", i);
	}
	/* The stored hash itself is not a valid answer (pass-the-hash). */
	ck_assert(!md5_verify(hash, salt, hash, strlen(hash)));
}
END_TEST

/* A full login: the server's expected answer is what a client computes
 * from the plain password. */
START_TEST(test_login_round_trip)
{
	const uint8_t salt[4] = { 0x7f, 0x00, 0x80, 0xff };
	char stored[MD5_PASSWD_LEN + 1], client[MD5_PASSWD_LEN + 1];

	md5_password_hash("correct horse", "alice", stored);
	ck_assert_int_eq(md5_salted_response(stored, salt, client), 0);
	ck_assert(md5_verify(stored, salt, client, strlen(client)));
	md5_password_hash("correct horsE", "alice", stored);
	ck_assert(!md5_verify(stored, salt, client, strlen(client)));
}
END_TEST

static const char *const not_hashes[] = {
	"",
	"md5",
	"md53175bce1d3201d16594cebf9d7eb3f9",   /* 31 digits */
	"md53175bce1d3201d16594cebf9d7eb3f9d0", /* 33 digits */
	"md53175BCE1D3201D16594CEBF9D7EB3F9D",  /* upper case */
	"MD53175bce1d3201d16594cebf9d7eb3f9d",
	"md53175bce1d3201d16594cebf9d7eb3f9g",
	"md5 3175bce1d3201d16594cebf9d7eb3f9d",
	"md53175bce1d3201d16594cebf9d7eb3f9 ",
	"xyz3175bce1d3201d16594cebf9d7eb3f9d",
	"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$x:y",
	"md5isnotahashbutapasswordofsomekind",
};

START_TEST(test_not_hash)
{
	const uint8_t salt[4] = { 1, 2, 3, 4 };
	char out[MD5_PASSWD_LEN + 1];

	ck_assert(!md5_is_hash(not_hashes[_i]));
	ck_assert_int_eq(md5_salted_response(not_hashes[_i], salt, out), -1);
	ck_assert(!md5_verify(not_hashes[_i], salt, "md5a3576f1ae039b8996bc4fc2720f9c71a", 35));
}
END_TEST

START_TEST(test_null)
{
	const uint8_t salt[4] = { 1, 2, 3, 4 };
	char out[MD5_PASSWD_LEN + 1];

	ck_assert(!md5_is_hash(NULL));
	ck_assert_int_eq(md5_salted_response(NULL, salt, out), -1);
	ck_assert_int_eq(md5_salted_response("md53175bce1d3201d16594cebf9d7eb3f9d", NULL, out), -1);
	md5_password_hash(NULL, "u", out);
	ck_assert_str_eq(out, "");
}
END_TEST

static Suite *md5_suite(void)
{
	Suite *s = suite_create("md5");
	TCase *tc = tcase_create("md5");

	tcase_add_loop_test(tc, test_password_hash, 0, sizeof hash_cases / sizeof hash_cases[0]);
	tcase_add_loop_test(tc, test_salted_response, 0,
			    sizeof salted_cases / sizeof salted_cases[0]);
	tcase_add_test(tc, test_login_round_trip);
	tcase_add_loop_test(tc, test_not_hash, 0, sizeof not_hashes / sizeof not_hashes[0]);
	tcase_add_test(tc, test_null);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(md5_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
