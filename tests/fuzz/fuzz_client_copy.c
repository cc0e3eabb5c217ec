/* libFuzzer harness: a client in COPY FROM STDIN. The harness logs in,
 * starts a copy (by a Query, or by Parse/Bind/Describe/Execute with or
 * without its Sync, optionally inside BEGIN or followed by more statements
 * in the same Query), waits for pgmux to pass on the CopyInResponse, and
 * then plays the input as the client's copy-in traffic: CopyData, CopyDone,
 * CopyFail, Sync, Flush, other messages, garbage (rig_play_stream, with the
 * player's directives of rig.h). Covers client.c's copy handling
 * (server_in_copy, late copy data dropped), server.c's CopyInResponse and
 * copy_open bookkeeping and requests.c's Syncs sent during copy-in (which
 * the backend ignores).
 *
 * Input: an optional header byte 0x80..0xEF, then the stream. Header bits:
 *   0x01 start by Execute (else by Query)   0x02 pool_mode = session
 *   0x04 inside BEGIN                        0x08 Execute without Sync
 *                                               (Flush instead)
 *   0x10 Query: "COPY ...; SELECT 1" (a statement after the copy)
 *   0x60 chunk size 0 / 1 / 7 / 64
 * Without a header the player is paced (rig.h); with one, the client
 * pipelines up to the next pause directive. Seeds: corpus/fuzz_client_copy:
 * rig-* hand-made, rig-found-* kept from long fuzz runs. */
#include "fuzz_common.h"
#include "rig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct rig_play p;
	static const size_t chunk[4] = {0, 1, 7, 64};
	struct rig *r = rig_get();
	uint8_t h = 0;
	size_t off = 0;
	if (size > 0 && data[0] >= 0x80 && data[0] < 0xf0) {
		h = data[0];
		off = 1;
	}
	struct rig_config cfg = {.auth = RIG_AUTH_TRUST, .session = (h & 0x02) != 0};
	rig_begin(r, &cfg, RIG_BE_TRUST);
	rig_play_init(&p, r, true);
	p.chunk = chunk[(h >> 5) & 3];
	p.paced = off == 0; /* no header: the client waits for answers (rig.h) */
	struct rig_client *c = rig_play_client(&p);
	FUZZ_CHECK(c && !p.login_failed);
	if (h & 0x04)
		rig_send_query(c, "BEGIN");
	if (h & 0x01) {
		rig_send_parse(c, "", "COPY t FROM STDIN", 0);
		rig_send_bind(c, "", "", 0);
		rig_send_describe(c, 'P', "");
		rig_send_execute(c, "", 0);
		if (h & 0x08)
			rig_send_flush(c);
		else
			rig_send_sync(c);
	} else {
		rig_send_query(c, (h & 0x10) ? "COPY t FROM STDIN; SELECT 1" : "COPY t FROM STDIN");
	}
	rig_run(r);
	/* the honest backend answered CopyInResponse: pgmux must pass it on */
	FUZZ_CHECK(rig_client_seen(c)->copy_in == 1);
	rig_play_stream(&p, data + off, size - off);
	rig_end(r);
	return 0;
}
