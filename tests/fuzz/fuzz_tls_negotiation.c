/* libFuzzer harness: how a client's connection turns into TLS, as
 * client.c takes it with client_tls_sslmode = prefer: an SSLRequest
 * answered 'S' (start_tls: bytes already sent after it are refused), a
 * ClientHello as the very first byte (direct TLS, client_first_byte: ALPN
 * "postgresql" is required once the handshake is done), GSSENCRequest
 * answered 'N', a second SSLRequest, a plaintext StartupMessage; then
 * whatever the input sends, which after an 'S' is handed to OpenSSL's
 * handshake as TLS records. The rig (tests/fuzz/rig.c) makes the
 * certificate, stops parsing what pgmux sends once it speaks TLS, and
 * checks between inputs that no descriptor, client or server is left.
 *
 * Input: a mode byte, then the stream for rig_play_stream (rig.h).
 *   0x01 paced: the client waits for the answer to each startup packet
 *        (the SSLRequest's 'S' arrives before the next bytes are sent, so
 *        they reach the handshake); otherwise everything is sent at once
 *        (and bytes after an SSLRequest are refused as unencrypted)
 *   0x02 auth_type md5 (else scram-sha-256)
 * Seeds: corpus/fuzz_tls_negotiation, made by capture/make_seeds.py
 * (tls_seeds): SSLRequest alone, with a StartupMessage behind it, paced
 * and not, a real ClientHello with and without ALPN, sent directly and
 * after an SSLRequest, and a GSSENCRequest first. */
#include "fuzz_common.h"
#include "rig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct rig_play p;
	struct rig *r = rig_get();
	uint8_t mode = size > 0 ? data[0] : 0;
	struct rig_config cfg = {.auth = (mode & 2) ? RIG_AUTH_MD5 : RIG_AUTH_SCRAM, .tls = true};
	rig_begin(r, &cfg, RIG_BE_TRUST);
	rig_play_init(&p, r, false);
	p.paced = (mode & 1) != 0;
	if (size > 0)
		rig_play_stream(&p, data + 1, size - 1);
	rig_end(r);
	return 0;
}
