/* libFuzzer harness: a logged-in client's message stream in pool_mode =
 * transaction (or session), through the real data path: client.c's
 * client_forward, frontend.c's whole-message handlers (Query, Parse, Bind,
 * Describe, Close) and its streaming of large Binds, requests.c's queue,
 * session.c's tracking, and server.c reading the fake backend's answers
 * (tests/fuzz/rig.c plays the backend like PostgreSQL would).
 *
 * Input: an optional header byte 0x80..0xEF, then the stream for
 * rig_play_stream (rig.h): the client's messages (Query, Parse, Bind,
 * Describe, Execute, Close, Sync, Flush, FunctionCall, CopyData...,
 * garbage), with the player's directives at message boundaries (pauses,
 * more clients, disconnects, chunk sizes, big messages). Header bits:
 *   0x01 pool_mode = session        0x02 session_pinning = deny
 *   0x04 max_prepared_statements = 2  0x08 startup parameters (application_name,
 *                                          DateStyle, options -c search_path)
 *   0x30 chunk size 0 / 1 / 7 / 64   0x40 pool_size = 1 (else 2)
 * Without a header (first byte a message type) the defaults are all 0 and
 * the player is paced (rig.h: the client waits for the answer to each Query,
 * Sync, Flush...), which is how a captured stream (corpus/fuzz_client_txn/cap-*,
 * client bytes after the login) replays as it happened; with a header the
 * client pipelines everything up to the next pause directive. An input
 * starting with a startup packet (a whole session captured from connect)
 * has its startup and password messages skipped: the harness logs in
 * itself. Seeds: corpus/fuzz_client_txn: rig-* hand-made
 * (tests/fuzz/rig_seeds.py), rig-found-* kept from long fuzz runs,
 * cap-* captured by capture/make_seeds.py (which owns the cap-, hand- and
 * found- prefixes). */
#include "fuzz_common.h"
#include "rig.h"

#include "pg/proto.h"

static const char *const pnames[] = {"application_name", "DateStyle", "options"};
static const char *const pvalues[] = {"fuzz", "ISO, DMY", "-c search_path=public"};

static uint32_t get32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Offset of the first message after a captured login (startup packets,
 * then password messages), or 0 if DATA does not start with one. */
static size_t skip_login(const uint8_t *data, size_t size)
{
	size_t off = 0;
	for (;;) {
		if (off + 8 > size)
			return 0;
		uint32_t len = get32(data + off), code = get32(data + off + 4);
		if (len < 8 || len > PROTO_STARTUP_MAX_LEN || off + len > size)
			return 0;
		off += len;
		if (code == PROTO_VERSION_3_0)
			break;
		if (code != PROTO_SSL_REQUEST && code != PROTO_GSSENC_REQUEST)
			return 0;
	}
	while (off + 5 <= size && data[off] == 'p') {
		uint32_t len = get32(data + off + 1);
		if (len < 4 || off + 1 + len > size)
			break;
		off += 1 + (size_t)len;
	}
	return off;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct rig_play p; /* 64 kB: not on the stack */
	static const size_t chunk[4] = {0, 1, 7, 64};
	struct rig *r = rig_get();
	uint8_t h = 0;
	size_t off = 0;
	if (size > 0 && data[0] >= 0x80 && data[0] < 0xf0) {
		h = data[0];
		off = 1;
	} else if (size > 0 && data[0] == 0) {
		off = skip_login(data, size);
	}
	struct rig_config cfg = {
	        .auth = RIG_AUTH_TRUST,
	        .session = (h & 0x01) != 0,
	        .deny = (h & 0x02) != 0,
	        .max_prepared = (h & 0x04) ? 2 : 0,
	        .pool_size = (h & 0x40) ? 1 : 2,
	};
	rig_begin(r, &cfg, RIG_BE_TRUST);
	rig_play_init(&p, r, true);
	if (h & 0x08) {
		p.names = pnames;
		p.values = pvalues;
		p.nparams = 3;
	}
	p.chunk = chunk[(h >> 4) & 3];
	p.paced = off == 0 || data[0] == 0; /* no header: a client that waits for answers */
	(void)rig_play_client(&p);
	FUZZ_CHECK(!p.login_failed);
	rig_play_stream(&p, data + off, size - off);
	rig_end(r);
	return 0;
}
