/* libFuzzer harness: the client half of SCRAM-SHA-256, as server_login.c's
 * handle_auth drives it when PostgreSQL asks pgmux to log in
 * (AuthenticationSASL, then SASLContinue = code 11, SASLFinal = code 12).
 *
 * Input: server-first-message, a NUL byte, server-final-message (the NUL is
 * only the separator; scram refuses messages containing one). Without a
 * NUL the whole input is the server-first-message. These are the payloads
 * after the 4-byte authentication code.
 *
 * pgmux's side: client nonce rOprNGfwEbeRWgbNEkqO, sent as "n,,n=,r=..." as
 * scram_client_new does, and the keys of the RFC 7677 example (password
 * "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==, 4096 iterations) in key mode, the
 * mode pgmux uses with a SCRAM verifier in the auth_file: no PBKDF2 per
 * input, so the fuzzer stays fast; the parsing is the same in password
 * mode. A server-first with that salt and i=4096 reaches the final message;
 * tests/fuzz/capture/make_seeds.py computes a matching v= for seeds. As in
 * the daemon, the final message is only handled after the first one
 * succeeded. */
#include "fuzz_common.h"

#include "pg/proto.h"
#include "pg/scram.h"

#include <event2/buffer.h>

#define CNONCE "rOprNGfwEbeRWgbNEkqO"

static const uint8_t rfc_salt[16] = {0x5b, 0x6d, 0x99, 0x68, 0x9d, 0x12, 0x35, 0x8e,
                                     0xec, 0xa0, 0x4b, 0x14, 0x12, 0x36, 0xfa, 0x81};

static struct scram_client_creds creds;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int inited;
	const uint8_t *nul = memchr(data, 0, size);
	size_t first_len = nul ? (size_t)(nul - data) : size;

	if (!inited) {
		struct scram_secret sec;
		FUZZ_CHECK(scram_secret_from_password("pencil", rfc_salt, sizeof(rfc_salt), 4096,
		                                      &sec, creds.client_key) == 0);
		creds.password = NULL;
		memcpy(creds.server_key, sec.server_key, SCRAM_KEY_LEN);
		memcpy(creds.salt, sec.salt, sec.salt_len);
		creds.salt_len = sec.salt_len;
		creds.iterations = sec.iterations;
		inited = 1;
	}
	struct evbuffer *out = evbuffer_new();
	struct scram_client *c = scram_client_new_with_nonce(&creds, CNONCE);
	char *first = NULL;
	FUZZ_CHECK(out && c);
	/* send_sasl_initial */
	FUZZ_CHECK(scram_client_first(c, &first) == 0 && first);
	FUZZ_CHECK(strcmp(first, "n,,n=,r=" CNONCE) == 0);
	FUZZ_CHECK(proto_write_sasl_initial(out, "SCRAM-SHA-256", first, strlen(first)) == 0);
	free(first);

	/* code 11: SASLContinue */
	char *msg = (char *)fuzz_dup(data, first_len);
	char *final = NULL;
	int rc = scram_client_handle_server_first(c, msg, first_len, &final);
	free(msg);
	if (rc < 0) {
		FUZZ_CHECK(rc == -1 && final == NULL);
		goto done; /* login_fail */
	}
	FUZZ_CHECK(rc == 0 && final && strncmp(final, "c=biws,r=" CNONCE, 9 + strlen(CNONCE)) == 0);
	FUZZ_CHECK(proto_write_sasl_response(out, final, strlen(final)) == 0);
	free(final);
	if (!nul)
		goto done;

	/* code 12: SASLFinal */
	size_t final_len = size - first_len - 1;
	msg = (char *)fuzz_dup(nul + 1, final_len);
	rc = scram_client_handle_server_final(c, msg, final_len);
	free(msg);
	FUZZ_CHECK(rc == 0 || rc == -1);
	/* the exchange is over either way */
	FUZZ_CHECK(scram_client_handle_server_final(c, "v=", 2) == -1);
done:
	scram_client_free(c);
	evbuffer_free(out);
	return 0;
}
