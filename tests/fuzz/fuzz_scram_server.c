/* libFuzzer harness: the server half of SCRAM-SHA-256, as client.c's
 * handle_password drives it for a client logging in to pgmux.
 *
 * Input: client-first-message, a NUL byte, client-final-message (the NUL is
 * only the separator: neither message may contain one, scram refuses them).
 * Without a NUL the whole input is the client-first-message. These are the
 * SCRAM payloads only: the SASLInitialResponse's mechanism name and length
 * word are parsed inline in client.c, not by a pg/ function.
 *
 * The server side is the RFC 7677 example: password "pencil", salt
 * W22ZaJ0SNY7soEsUEjb6gQ==, 4096 iterations, server nonce
 * %hvYDpWUa2RaTCAfuxFIlj)hNlF$k0. So the RFC's own messages are a seed
 * that logs in:
 *   n,,n=user,r=rOprNGfwEbeRWgbNEkqO
 *   c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,
 *     p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=
 * (tests/fuzz/capture/make_seeds.py rewrites captured client messages to
 * this server nonce and recomputes their proofs.) As in the daemon, the
 * final message is only handled after the first succeeded.
 *
 * Each input runs twice: as on plaintext (no channel binding offered), and
 * as on TLS, with SCRAM-SHA-256-PLUS offered and chosen when the message
 * starts with "p" (binding data: 32 bytes 0xcb), as client.c does. */
#include "fuzz_common.h"

#include "pg/proto.h"
#include "pg/scram.h"

#include <event2/buffer.h>

#define SNONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"

static const uint8_t rfc_salt[16] = {0x5b, 0x6d, 0x99, 0x68, 0x9d, 0x12, 0x35, 0x8e,
                                     0xec, 0xa0, 0x4b, 0x14, 0x12, 0x36, 0xfa, 0x81};

static struct scram_secret secret;
static uint8_t client_key[SCRAM_KEY_LEN];

static uint8_t cb_data[32];

static void run(const uint8_t *data, size_t size, bool offer)
{
	static int inited;
	const uint8_t *nul = memchr(data, 0, size);
	size_t first_len = nul ? (size_t)(nul - data) : size;

	if (!inited) {
		FUZZ_CHECK(scram_secret_from_password("pencil", rfc_salt, sizeof(rfc_salt), 4096,
		                                      &secret, client_key) == 0);
		inited = 1;
	}
	struct evbuffer *out = evbuffer_new();
	struct scram_server *s = scram_server_new_with_nonce(&secret, SNONCE);
	FUZZ_CHECK(out && s);
	bool plus = offer && size > 0 && data[0] == 'p';
	if (offer) {
		memset(cb_data, 0xcb, sizeof(cb_data));
		FUZZ_CHECK(scram_server_channel_binding(s, plus, cb_data, sizeof(cb_data)) == 0);
	}

	/* LG_SASL_FIRST */
	char *msg = (char *)fuzz_dup(data, first_len);
	char *reply = NULL;
	int rc = scram_server_handle_first(s, msg, first_len, &reply);
	free(msg);
	if (rc < 0) {
		FUZZ_CHECK(rc == -1 && reply == NULL);
		goto done; /* 08P01, connection closed */
	}
	FUZZ_CHECK(rc == 0 && reply && strncmp(reply, "r=", 2) == 0);
	/* binding only when offered and chosen; no "y" when it was offered */
	FUZZ_CHECK(data[0] != 'p' || plus);
	FUZZ_CHECK(!(offer && data[0] == 'y'));
	FUZZ_CHECK(proto_write_auth(out, 11, reply, strlen(reply)) == 0);
	free(reply);
	if (!nul)
		goto done;

	/* LG_SASL_FINAL */
	size_t final_len = size - first_len - 1;
	msg = (char *)fuzz_dup(nul + 1, final_len);
	reply = NULL;
	uint8_t ckey[SCRAM_KEY_LEN];
	rc = scram_server_handle_final(s, msg, final_len, &reply, ckey);
	free(msg);
	if (rc == -1) {
		FUZZ_CHECK(reply == NULL); /* client.c closes without freeing it */
		goto done;
	}
	if (rc < 0) {
		FUZZ_CHECK(rc == -2 && reply == NULL);
		goto done;
	}
	/* a proof that verified recovered the real ClientKey */
	FUZZ_CHECK(rc == 0 && reply && strncmp(reply, "v=", 2) == 0);
	FUZZ_CHECK(memcmp(ckey, client_key, SCRAM_KEY_LEN) == 0);
	FUZZ_CHECK(proto_write_auth(out, 12, reply, strlen(reply)) == 0);
	free(reply);
	/* and the exchange is over */
	reply = NULL;
	FUZZ_CHECK(scram_server_handle_final(s, "x", 1, &reply, ckey) == -1 && reply == NULL);
done:
	scram_server_free(s);
	evbuffer_free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	run(data, size, false);
	run(data, size, true);
	return 0;
}
