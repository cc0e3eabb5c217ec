/* libFuzzer harness: the raw byte stream a client sends from connect, as
 * client.c's login_read, handle_startup, start_auth and handle_password
 * take it: StartupMessage, SSLRequest/GSSENCRequest (answered 'N'),
 * CancelRequest, PasswordMessage for md5 and cleartext, SASLInitialResponse
 * and SASLResponse for SCRAM-SHA-256, Terminate, garbage; then whatever
 * follows a login that succeeded. The auth_file holds a plain password
 * (user "plain"), an md5 hash ("md5user") and a SCRAM verifier
 * ("scramuser"), all "secret", so that the SASL and md5 paths run for real:
 * the player's directives F4 / F5 (rig.h) answer pgmux's challenge with the
 * right or a wrong password (computing the SCRAM proof from pgmux's nonce),
 * and F7 logs a new connection in properly. Once a client is in, its first
 * query makes pgmux log in to the fake backend with the auth_file's secret
 * (server_login.c), by the method the header picks.
 *
 * Input: an optional header byte (any first byte but 0x00 and 0xF0..0xFF;
 * a raw stream starts with a startup packet, whose first byte is 0x00),
 * then the stream for rig_play_stream. Header bits:
 *   0x03 auth_type: trust, md5, scram-sha-256, scram-sha-256
 *   0x04 pool_mode = session
 *   0x18 the backend asks pgmux for: trust, cleartext, md5, SCRAM-SHA-256
 * A raw stream (no header) is played paced (rig.h: the client waits for the
 * answer to each startup packet, password message, Query...), as the
 * captures in corpus/fuzz_client_login/cap-* happened; with a header the
 * client sends everything up to the next pause directive at once.
 * Seeds: corpus/fuzz_client_login: rig-* hand-made, rig-found-* kept from
 * long fuzz runs, cap-* captured by capture/make_seeds.py. */
#include "fuzz_common.h"
#include "rig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct rig_play p;
	static const enum rig_auth auth[4] = {RIG_AUTH_TRUST, RIG_AUTH_MD5, RIG_AUTH_SCRAM,
	                                      RIG_AUTH_SCRAM};
	struct rig *r = rig_get();
	uint8_t h = 0;
	size_t off = 0;
	if (size > 0 && data[0] != 0 && data[0] < 0xf0) {
		h = data[0];
		off = 1;
	}
	struct rig_config cfg = {.auth = auth[h & 3], .session = (h & 0x04) != 0};
	rig_begin(r, &cfg, (enum rig_be_auth)((h >> 3) & 3));
	rig_play_init(&p, r, false);
	p.paced = off == 0; /* a raw stream (a capture): the client waits for answers */
	rig_play_stream(&p, data + off, size - off);
	rig_end(r);
	return 0;
}
