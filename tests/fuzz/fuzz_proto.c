/* libFuzzer harness: the pg/proto.c and pg/frame.c functions fed by the
 * network, driven the way the read loops of client.c and server.c drive
 * them.
 *
 * Input: one mode byte, then a byte stream. Mode bits 0-1 pick the length
 * limits: 0 = client before login (proto_client_max_len(type, false)),
 * 1 = client after login (.., true), 2 and 3 = server
 * (proto_server_max_len). Mode bits 2-7 (K) cut the stream into K-byte
 * pieces that arrive one after the other (K = 0: all at once); after each
 * piece the read loop runs as the daemon's does:
 * frame_peek the header with the sender's limits (checked against
 * proto_parse_header on the raw bytes, and against a peek at an offset; a
 * bad length ends the stream: the connection is closed), wait while the
 * message is incomplete, else frame_take it out of the buffer. Each
 * message taken is then
 *   - checked against the input bytes it came from,
 *   - in mode 1 (a logged-in client), checked with proto_client_type_known
 *     and proto_check_client_msg, whole and as prefixes, whose verdict must
 *     match an independent reading of the layout (frontend.c relies on it),
 *   - read with a proto_reader program: the body's own bytes pick the next
 *     operation (get_u8/u16/u32/str/bytes), with every documented bounds
 *     and error-stickiness rule checked,
 *   - searched with proto_error_field for each field code, and rewritten
 *     with proto_write_error_filtered (the drop sets the daemon uses among
 *     others), whose output must be one well-formed message without the
 *     dropped fields,
 *   - forwarded with proto_msg_forward (the bytes must be the input's) and
 *     released with proto_msg_cleanup.
 * Seeds: corpus/fuzz_proto (captured client and server streams with a mode
 * byte in front). */
#include "fuzz_common.h"

#include "pg/frame.h"
#include "pg/proto.h"

#include <event2/buffer.h>

static const char field_codes[] = "SVCMDdHPpqWstcnFLRZ";
static const char *const drop_sets[] = {"", "C", "WFLR", "MDH", "SVCMDdHPpqWstcnFLR"};

static const enum frame_peer peers[] = {FRAME_CLIENT_LOGIN, FRAME_CLIENT, FRAME_SERVER,
                                         FRAME_SERVER};

static uint32_t max_len(int mode, char type)
{
	switch (mode) {
	case 0:
		return proto_client_max_len(type, false);
	case 1:
		return proto_client_max_len(type, true);
	default:
		return proto_server_max_len(type);
	}
}

/* S points into BODY (LEN bytes) and is NUL-terminated inside it. */
static void check_in_body(const uint8_t *body, size_t len, const char *s)
{
	const uint8_t *p = (const uint8_t *)s;

	FUZZ_CHECK(p >= body && p < body + len);
	FUZZ_CHECK(memchr(p, 0, (size_t)(body + len - p)) != NULL);
}

static void reader_program(const uint8_t *body, size_t len)
{
	struct proto_reader r;

	proto_reader_init(&r, body, len);
	FUZZ_CHECK(r.pos == 0 && !r.err && r.len == len);
	for (int step = 0; step < 256 && !r.err; step++) {
		size_t before = r.pos;
		uint8_t op = proto_get_u8(&r);

		if (r.err) {
			FUZZ_CHECK(op == 0 && r.pos == before && before == len);
			break;
		}
		before = r.pos;
		switch (op % 5) {
		case 0: {
			uint8_t v = proto_get_u8(&r);
			FUZZ_CHECK(r.err ? v == 0 && len - before < 1 : v == body[before]);
			break;
		}
		case 1: {
			uint16_t v = proto_get_u16(&r);
			FUZZ_CHECK(r.err ? v == 0 && len - before < 2
			                 : v == ((body[before] << 8) | body[before + 1]));
			break;
		}
		case 2: {
			uint32_t v = proto_get_u32(&r);
			FUZZ_CHECK(r.err ? v == 0 && len - before < 4
			                 : v >> 24 == body[before] &&
			                           (v & 0xff) == body[before + 3]);
			break;
		}
		case 3: {
			const char *s = proto_get_str(&r);
			if (r.err) {
				FUZZ_CHECK(!s && !memchr(body + before, 0, len - before));
			} else {
				FUZZ_CHECK(s == (const char *)body + before);
				check_in_body(body, len, s);
				FUZZ_CHECK(r.pos == before + strlen(s) + 1);
			}
			break;
		}
		default: {
			size_t n = op / 5;
			const uint8_t *b = proto_get_bytes(&r, n);
			FUZZ_CHECK(r.err ? !b && len - before < n : b == body + before);
			break;
		}
		}
		FUZZ_CHECK(r.pos <= r.len);
		if (r.err)
			FUZZ_CHECK(r.pos == before); /* a failed read consumes nothing */
	}
	if (r.err) {
		/* sticky: every later read fails and moves nothing */
		size_t pos = r.pos;
		FUZZ_CHECK(proto_get_u8(&r) == 0 && proto_get_u16(&r) == 0 &&
		           proto_get_u32(&r) == 0);
		FUZZ_CHECK(proto_get_str(&r) == NULL && proto_get_bytes(&r, 0) == NULL);
		FUZZ_CHECK(r.err && r.pos == pos);
	}
}

/* OUT holds exactly one ErrorResponse/NoticeResponse of TYPE: its fields
 * parse to the terminator at the very end, none of them in DROP, and
 * proto_error_field finds the first field of each code right there. */
static void check_filtered(struct evbuffer *out, char type, const char *drop)
{
	bool seen[256] = {false};

	size_t n = evbuffer_get_length(out);
	uint8_t *msg = evbuffer_pullup(out, -1);
	struct proto_header h;

	FUZZ_CHECK(n >= PROTO_HEADER_LEN + 1 && msg);
	FUZZ_CHECK(proto_parse_header(msg, n, 0xffffffffu, &h) == PROTO_OK);
	FUZZ_CHECK(h.type == type && 1 + (size_t)h.len == n);
	const uint8_t *body = msg + PROTO_HEADER_LEN;
	size_t len = n - PROTO_HEADER_LEN;
	struct proto_reader r;
	proto_reader_init(&r, body, len);
	for (;;) {
		uint8_t code = proto_get_u8(&r);
		FUZZ_CHECK(!r.err);
		if (code == 0)
			break;
		FUZZ_CHECK(!strchr(drop, (char)code));
		const char *v = proto_get_str(&r);
		FUZZ_CHECK(v != NULL);
		if (!seen[code]) /* once per code: no quadratic harness on many fields */
			FUZZ_CHECK(proto_error_field(body, len, (char)code) == v);
		seen[code] = true;
	}
	FUZZ_CHECK(r.pos == len);
	evbuffer_drain(out, n);
}

/* ---- an independent reading of the client message layouts, to hold
 * proto_check_client_msg to its word (frontend.c reads names it accepted
 * without checking them again) ---- */

struct cur {
	const uint8_t *p;
	size_t len, pos;
};

static bool c_str(struct cur *c)
{
	const uint8_t *nul = memchr(c->p + c->pos, 0, c->len - c->pos);

	if (!nul)
		return false;
	c->pos = (size_t)(nul - c->p) + 1;
	return true;
}

static bool c_skip(struct cur *c, size_t n)
{
	if (c->len - c->pos < n)
		return false;
	c->pos += n;
	return true;
}

static bool c_i16(struct cur *c, int *v)
{
	if (c->len - c->pos < 2)
		return false;
	*v = (int16_t)((c->p[c->pos] << 8) | c->p[c->pos + 1]);
	c->pos += 2;
	return true;
}

static bool c_i32(struct cur *c, int32_t *v)
{
	if (c->len - c->pos < 4)
		return false;
	*v = (int32_t)(((uint32_t)c->p[c->pos] << 24) | ((uint32_t)c->p[c->pos + 1] << 16) |
	               ((uint32_t)c->p[c->pos + 2] << 8) | c->p[c->pos + 3]);
	c->pos += 4;
	return true;
}

static bool c_array(struct cur *c, size_t size)
{
	int n;

	return c_i16(c, &n) && n >= 0 && c_skip(c, (size_t)n * size);
}

/* Is BODY a well-formed client message of TYPE (PREFIX: only what
 * proto_check_client_msg promises for a prefix)? -1: a type without a
 * fixed layout. */
static int layout_ok(char type, const uint8_t *body, size_t len, bool prefix)
{
	struct cur c = {body, len, 0};
	int n;
	int32_t v;

	switch (type) {
	case 'Q':
		return prefix || (c_str(&c) && c.pos == len);
	case 'P':
		if (prefix)
			return c_str(&c);
		return c_str(&c) && c_str(&c) && c_array(&c, 4) && c.pos == len;
	case 'B':
		if (!c_str(&c) || !c_str(&c))
			return 0;
		if (prefix)
			return 1;
		if (!c_array(&c, 2) || !c_i16(&c, &n) || n < 0)
			return 0;
		for (int i = 0; i < n; i++) {
			if (!c_i32(&c, &v) || v < -1 || (v > 0 && !c_skip(&c, (size_t)v)))
				return 0;
		}
		return c_array(&c, 2) && c.pos == len;
	case 'D':
	case 'C':
		return len >= 1 && (body[0] == 'S' || body[0] == 'P') && c_skip(&c, 1) &&
		       c_str(&c) && c.pos == len;
	case 'E':
		return c_str(&c) && c_i32(&c, &v) && c.pos == len;
	case 'S':
	case 'H':
	case 'c':
	case 'X':
		return len == 0;
	case 'f':
		return c_str(&c) && c.pos == len;
	default:
		return -1;
	}
}

static void check_client_layout(const struct proto_msg *m)
{
	/* whole, and as the prefixes frontend.c checks while a message streams */
	size_t cuts[] = {m->body_len, m->body_len / 2, m->body_len > 0 ? m->body_len - 1 : 0, 1};

	(void)proto_client_type_known(m->type);
	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		size_t len = cuts[i] < m->body_len ? cuts[i] : m->body_len;
		bool prefix = i > 0;
		const char *bad = proto_check_client_msg(m->type, m->body, len, prefix);
		int want = layout_ok(m->type, m->body, len, prefix);

		FUZZ_CHECK(!bad || bad[0]);
		if (want >= 0)
			FUZZ_CHECK((bad == NULL) == (want == 1));
		else
			FUZZ_CHECK(bad == NULL);
	}
}

static void check_message(const struct proto_msg *m, struct evbuffer *out, int mode)
{
	const uint8_t *body = m->body;
	size_t len = m->body_len;

	if (mode == 1)
		check_client_layout(m);
	reader_program(body, len);
	for (const char *c = field_codes; *c; c++) {
		const char *v = proto_error_field(body, len, *c);
		if (v)
			check_in_body(body, len, v);
	}
	FUZZ_CHECK(proto_error_field(body, len, '\0') == NULL);
	for (size_t i = 0; i < sizeof(drop_sets) / sizeof(drop_sets[0]); i++) {
		FUZZ_CHECK(proto_write_error_filtered(out, m->type, body, len, drop_sets[i]) == 0);
		check_filtered(out, m->type, drop_sets[i]);
	}
	FUZZ_CHECK(proto_msg_forward(out, m) == 0);
	FUZZ_CHECK(evbuffer_get_length(out) == m->total);
	FUZZ_CHECK(memcmp(evbuffer_pullup(out, -1), m->raw, m->total) == 0);
	evbuffer_drain(out, m->total);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	int mode = data[0] & 3;
	size_t piece = data[0] >> 2;
	const uint8_t *stream = data + 1;
	size_t slen = size - 1, fed = 0, used = 0;
	struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
	bool closed = false;

	FUZZ_CHECK(in && out);
	if (piece == 0)
		piece = slen ? slen : 1;
	while (fed < slen && !closed) {
		size_t n = slen - fed < piece ? slen - fed : piece;

		/* a separate read from the socket (appended to the last chain
		 * while it has room, as bufferevent reads are) */
		FUZZ_CHECK(evbuffer_add(in, stream + fed, n) == 0);
		fed += n;
		for (;;) {
			size_t avail = evbuffer_get_length(in);
			struct proto_header h;
			struct frame f;

			FUZZ_CHECK(avail == fed - used);
			enum proto_result pr = frame_peek(in, 0, peers[mode], &f);
			if (avail < PROTO_HEADER_LEN) {
				FUZZ_CHECK(pr == PROTO_AGAIN);
				if (avail)
					FUZZ_CHECK(proto_parse_header(stream + used, avail, 0,
					                              &h) == PROTO_AGAIN);
				break;
			}
			uint32_t max = max_len(mode, (char)stream[used]);
			FUZZ_CHECK(max >= 4);
			FUZZ_CHECK(f.type == (char)stream[used]);
			/* the framing agrees with the header parser on the raw bytes */
			FUZZ_CHECK(proto_parse_header(stream + used, avail, max, &h) == pr);
			if (pr != PROTO_OK) {
				FUZZ_CHECK(pr == PROTO_ERROR);
				closed = true; /* 08P01 / invalid_message_from_server */
				break;
			}
			FUZZ_CHECK(f.len == h.len && f.total == 1 + (size_t)h.len && f.avail == avail);
			FUZZ_CHECK(h.type == f.type && h.len >= 4 && h.len <= max);
			/* a peek further in frames the same message as one at the front */
			if (avail > 7) {
				struct frame g;
				struct evbuffer *two = evbuffer_new();
				FUZZ_CHECK(two && evbuffer_add(two, "xyz", 3) == 0);
				FUZZ_CHECK(evbuffer_add(two, stream + used, avail) == 0);
				FUZZ_CHECK(frame_peek(two, 3, peers[mode], &g) == PROTO_OK);
				FUZZ_CHECK(g.type == f.type && g.total == f.total && g.avail == avail);
				evbuffer_free(two);
			}
			if (!frame_whole(&f)) {
				FUZZ_CHECK(frame_have(&f) == avail);
				break; /* the rest of the message is not there yet */
			}
			FUZZ_CHECK(avail >= 1 + (size_t)h.len && frame_have(&f) == f.total);

			struct proto_msg m;
			FUZZ_CHECK(frame_take(in, &f, &m) == 0);
			FUZZ_CHECK(m.type == h.type && m.len == h.len &&
			           m.total == 1 + (size_t)h.len);
			FUZZ_CHECK(m.body == m.raw + PROTO_HEADER_LEN && m.body_len == h.len - 4);
			FUZZ_CHECK(memcmp(m.raw, stream + used, m.total) == 0);
			used += m.total;
			FUZZ_CHECK(evbuffer_get_length(in) == avail - m.total);
			check_message(&m, out, mode);
			proto_msg_cleanup(&m);
			FUZZ_CHECK(m.raw == NULL && m.body == NULL);
			proto_msg_cleanup(&m); /* twice is harmless */
		}
	}
	evbuffer_free(out);
	evbuffer_free(in);
	return 0;
}
