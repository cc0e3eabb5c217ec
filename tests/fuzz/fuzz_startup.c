/* libFuzzer harness: the startup packet, as client.c's login_read and
 * handle_startup take it. The input is the client's byte stream from its
 * first byte: a length word (8..PROTO_STARTUP_MAX_LEN, anything else closes
 * the connection), then that many bytes go to startup_parse. After an
 * SSLRequest or GSSENCRequest (answered 'N') the client may send the next
 * packet, so the stream is read packet after packet until one is a
 * StartupMessage or CancelRequest, fails, or is incomplete. What the daemon
 * does with a StartupMessage's result that goes through pg/ functions
 * (NegotiateProtocolVersion for 3.x and _pq_ options) is done too, and the
 * result's documented invariants are checked. Seeds: corpus/fuzz_startup. */
#include "fuzz_common.h"

#include "pg/proto.h"
#include "pg/startup.h"

#include <event2/buffer.h>
#include <string.h>
#include <strings.h>

static void check_result(const struct startup_packet *sp)
{
	FUZZ_CHECK(sp->nparams >= 0 && sp->nparams <= STARTUP_MAX_PARAMS);
	FUZZ_CHECK(sp->npq_opts >= 0 && sp->npq_opts <= STARTUP_MAX_PARAMS);
	if (sp->kind != STARTUP_MESSAGE)
		return;
	/* client.c uses these without checking for NULL */
	FUZZ_CHECK(sp->user && sp->user[0] && strlen(sp->user) <= 63);
	FUZZ_CHECK(sp->database && sp->database[0] && strlen(sp->database) <= 63);
	for (int i = 0; i < sp->nparams; i++) {
		FUZZ_CHECK(sp->params[i].name && sp->params[i].value);
		FUZZ_CHECK(sp->params[i].name[0] && strlen(sp->params[i].name) <= 63);
		for (int j = 0; j < i; j++) /* duplicates are merged (case-insensitively) */
			FUZZ_CHECK(strcasecmp(sp->params[i].name, sp->params[j].name) != 0);
	}
	for (int i = 0; i < sp->npq_opts; i++)
		FUZZ_CHECK(sp->pq_opts[i] && strncmp(sp->pq_opts[i], "_pq_.", 5) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct startup_packet sp;
	struct evbuffer *out = evbuffer_new();
	size_t off = 0;

	if (!out)
		return 0;
	memset(&sp, 0, sizeof(sp));
	while (size - off >= 4) {
		const uint8_t *p = data + off;
		uint32_t plen = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
		                ((uint32_t)p[2] << 8) | p[3];
		const char *err = NULL, *code = NULL;

		if (plen < 8 || plen > PROTO_STARTUP_MAX_LEN || size - off < plen)
			break; /* closed, or waiting for more */
		uint8_t *copy = fuzz_dup(p, plen);
		off += plen;
		startup_cleanup(&sp);
		int rc = startup_parse(copy, plen, &sp, &err, &code);
		free(copy);
		if (rc < 0) {
			FUZZ_CHECK(err && code && strlen(code) == 5);
			break;
		}
		check_result(&sp);
		if (sp.kind == STARTUP_SSL || sp.kind == STARTUP_GSSENC)
			continue; /* "N", then the next packet */
		if (sp.kind == STARTUP_MESSAGE && ((sp.version & 0xffff) != 0 || sp.npq_opts > 0))
			FUZZ_CHECK(proto_write_negotiate(out, 0, (const char *const *)sp.pq_opts,
			                                 sp.npq_opts) == 0);
		break;
	}
	startup_cleanup(&sp);
	evbuffer_free(out);
	return 0;
}
