/* Unit tests for pg/proto: header framing over partial buffers and hostile
 * lengths (PROTOCOL-NOTES §11), the per-type length caps before and after
 * authentication, the bounds-checked body reader, ErrorResponse field lookup
 * on malformed bodies (CVE-2026-6666: no SQLSTATE field), the byte-exact
 * output of every builder, a reader that frames a stream fed one byte
 * at a time, and pg/frame's framing on evbuffers of many chains. Expected bytes are written out by hand from the PostgreSQL
 * protocol documentation ("Message Formats"); bodies under test are copied
 * into exactly-sized heap blocks so that valgrind sees any over-read. */
#include <check.h>
#include <event2/buffer.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg/frame.h"
#include "pg/proto.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))
/* A string literal with embedded NULs, and its length without the implicit
 * terminator. */
#define BYTES(lit) (const uint8_t *)(lit), (sizeof(lit) - 1)

#define DATA_MAX  0x3fffffffu /* 1 GiB - 1 */
#define SMALL_MAX 10000u
#define AUTH_MAX  65535u

/* A heap copy of exactly LEN bytes (at least one byte allocated), so that a
 * read past the end is an invalid read under valgrind. */
static uint8_t *dup_exact(const void *p, size_t len)
{
	uint8_t *copy = malloc(len ? len : 1);

	ck_assert_ptr_nonnull(copy);
	if (len)
		memcpy(copy, p, len);
	return copy;
}

/* ---- proto_parse_header ------------------------------------------------ */

START_TEST(test_header_partial)
{
	/* A valid 'Q' header with length 9; every prefix shorter than 5 bytes
	 * must ask for more and leave the output alone. */
	static const uint8_t hdr[] = {'Q', 0, 0, 0, 9};
	size_t avail = (size_t)_i;
	uint8_t *p = dup_exact(hdr, avail);
	struct proto_header h = {.type = '?', .len = 0xabcdef};

	ck_assert_int_eq(proto_parse_header(p, avail, UINT32_MAX, &h), PROTO_AGAIN);
	ck_assert_int_eq(h.type, '?');
	ck_assert_uint_eq(h.len, 0xabcdef);
	free(p);
}
END_TEST

static const struct {
	uint32_t len;     /* the length field on the wire */
	uint32_t max_len; /* the caller's cap */
	enum proto_result want;
} header_cases[] = {
        /* a 10,000-byte cap (small control messages) */
        {0, SMALL_MAX, PROTO_ERROR},
        {3, SMALL_MAX, PROTO_ERROR},
        {4, SMALL_MAX, PROTO_OK}, /* empty body, e.g. Sync */
        {5, SMALL_MAX, PROTO_OK},
        {SMALL_MAX - 1, SMALL_MAX, PROTO_OK},
        {SMALL_MAX, SMALL_MAX, PROTO_OK},
        {SMALL_MAX + 1, SMALL_MAX, PROTO_ERROR},
        {0x7fffffffu, SMALL_MAX, PROTO_ERROR},
        {0x80000000u, SMALL_MAX, PROTO_ERROR},
        {0xffffffffu, SMALL_MAX, PROTO_ERROR},
        /* the 1 GiB - 1 cap (DataRow, CopyData, Query...) */
        {0, DATA_MAX, PROTO_ERROR},
        {3, DATA_MAX, PROTO_ERROR},
        {4, DATA_MAX, PROTO_OK},
        {5, DATA_MAX, PROTO_OK},
        {DATA_MAX, DATA_MAX, PROTO_OK},
        {DATA_MAX + 1, DATA_MAX, PROTO_ERROR},
        {0x7fffffffu, DATA_MAX, PROTO_ERROR},
        {0x80000000u, DATA_MAX, PROTO_ERROR},
        {0xffffffffu, DATA_MAX, PROTO_ERROR},
        /* the tightest cap possible: only an empty body fits */
        {4, 4, PROTO_OK},
        {5, 4, PROTO_ERROR},
        /* no cap at all: the header itself never wraps or sign-extends */
        {3, UINT32_MAX, PROTO_ERROR},
        {4, UINT32_MAX, PROTO_OK},
        {0x7fffffffu, UINT32_MAX, PROTO_OK},
        {0x80000000u, UINT32_MAX, PROTO_OK},
        {0xffffffffu, UINT32_MAX, PROTO_OK},
        /* a cap under 4 rejects everything */
        {4, 3, PROTO_ERROR},
        {0, 0, PROTO_ERROR},
};

START_TEST(test_header_lengths)
{
	uint32_t len = header_cases[_i].len;
	/* header plus three body bytes that must not be looked at */
	const uint8_t bytes[] = {'D',
	                         (uint8_t)(len >> 24),
	                         (uint8_t)(len >> 16),
	                         (uint8_t)(len >> 8),
	                         (uint8_t)len,
	                         'x',
	                         'y',
	                         'z'};
	struct proto_header h = {.type = '?', .len = 0};

	/* with exactly the header, and with more bytes behind it */
	for (size_t avail = PROTO_HEADER_LEN; avail <= sizeof(bytes); avail += 3) {
		uint8_t *p = dup_exact(bytes, avail);
		enum proto_result got = proto_parse_header(p, avail, header_cases[_i].max_len, &h);

		ck_assert_msg(got == header_cases[_i].want,
		              "len=0x%08x max=0x%08x avail=%zu: got %d want %d", len,
		              header_cases[_i].max_len, avail, got, header_cases[_i].want);
		if (got == PROTO_OK) {
			ck_assert_int_eq(h.type, 'D');
			ck_assert_uint_eq(h.len, len);
		}
		free(p);
	}
}
END_TEST

/* The length field is big-endian and the type byte is taken as is, even a
 * high-bit one. */
START_TEST(test_header_byte_order)
{
	static const uint8_t bytes[] = {0xff, 0x00, 0x00, 0x01, 0x02};
	struct proto_header h;

	ck_assert_int_eq(proto_parse_header(bytes, sizeof(bytes), UINT32_MAX, &h), PROTO_OK);
	ck_assert_int_eq((uint8_t)h.type, 0xff);
	ck_assert_uint_eq(h.len, 0x102);
}
END_TEST

/* ---- per-type caps ----------------------------------------------------- */

static const struct {
	char type;
	uint32_t before_auth; /* proto_client_max_len(type, false) */
	uint32_t after_auth;  /* proto_client_max_len(type, true) */
} client_cap_cases[] = {
        /* data messages: PostgreSQL's PQ_LARGE_MESSAGE_LIMIT once logged in */
        {'Q', SMALL_MAX, DATA_MAX}, /* Query */
        {'P', SMALL_MAX, DATA_MAX}, /* Parse */
        {'B', SMALL_MAX, DATA_MAX}, /* Bind */
        {'d', SMALL_MAX, DATA_MAX}, /* CopyData */
        {'F', SMALL_MAX, DATA_MAX}, /* FunctionCall */
        /* authentication: PasswordMessage / SASL responses */
        {'p', AUTH_MAX, AUTH_MAX},
        /* CopyFail carries a message text */
        {'f', SMALL_MAX, AUTH_MAX},
        /* small control messages: PQ_SMALL_MESSAGE_LIMIT */
        {'S', SMALL_MAX, SMALL_MAX}, /* Sync */
        {'X', SMALL_MAX, SMALL_MAX}, /* Terminate */
        {'H', SMALL_MAX, SMALL_MAX}, /* Flush */
        {'c', SMALL_MAX, SMALL_MAX}, /* CopyDone */
        {'E', SMALL_MAX, SMALL_MAX}, /* Execute */
        {'D', SMALL_MAX, SMALL_MAX}, /* Describe */
        {'C', SMALL_MAX, SMALL_MAX}, /* Close */
        /* unknown types get the small cap */
        {'z', SMALL_MAX, SMALL_MAX},
        {'\0', SMALL_MAX, SMALL_MAX},
        {(char)0xff, SMALL_MAX, SMALL_MAX},
};

START_TEST(test_client_max_len)
{
	char type = client_cap_cases[_i].type;

	ck_assert_msg(proto_client_max_len(type, false) == client_cap_cases[_i].before_auth,
	              "type 0x%02x before auth: %u", (uint8_t)type,
	              proto_client_max_len(type, false));
	ck_assert_msg(proto_client_max_len(type, true) == client_cap_cases[_i].after_auth,
	              "type 0x%02x after auth: %u", (uint8_t)type,
	              proto_client_max_len(type, true));
}
END_TEST

/* "Apply per-type caps, stricter before authentication": for every type
 * byte, nothing before login exceeds the authentication cap, nothing is
 * larger before login than after, and nothing exceeds 1 GiB - 1. */
START_TEST(test_client_caps_all_types)
{
	for (int t = 0; t < 256; t++) {
		uint32_t before = proto_client_max_len((char)t, false);
		uint32_t after = proto_client_max_len((char)t, true);

		ck_assert_msg(before >= SMALL_MAX && before <= AUTH_MAX, "type 0x%02x: %u", t,
		              before);
		ck_assert_msg(before <= after, "type 0x%02x: %u > %u", t, before, after);
		ck_assert_msg(after <= DATA_MAX, "type 0x%02x: %u", t, after);
	}
}
END_TEST

static const struct {
	char type;
	uint32_t max_len;
} server_cap_cases[] = {
        /* libpq's VALID_LONG_MESSAGE_TYPE, plus ParameterDescription */
        {'D', DATA_MAX}, /* DataRow */
        {'d', DATA_MAX}, /* CopyData */
        {'T', DATA_MAX}, /* RowDescription */
        {'E', DATA_MAX}, /* ErrorResponse */
        {'N', DATA_MAX}, /* NoticeResponse */
        {'A', DATA_MAX}, /* NotificationResponse */
        {'V', DATA_MAX}, /* FunctionCallResponse */
        {'t', DATA_MAX}, /* ParameterDescription */
        /* authentication and other medium-sized messages */
        {'R', AUTH_MAX}, /* Authentication* */
        {'S', AUTH_MAX}, /* ParameterStatus */
        {'C', AUTH_MAX}, /* CommandComplete */
        {'G', AUTH_MAX}, /* CopyInResponse */
        {'H', AUTH_MAX}, /* CopyOutResponse */
        {'W', AUTH_MAX}, /* CopyBothResponse */
        {'v', AUTH_MAX}, /* NegotiateProtocolVersion */
        /* small fixed-size replies */
        {'Z', SMALL_MAX}, /* ReadyForQuery */
        {'K', SMALL_MAX}, /* BackendKeyData (3.2 keys are up to 256 bytes) */
        {'1', SMALL_MAX}, /* ParseComplete */
        {'2', SMALL_MAX}, /* BindComplete */
        {'3', SMALL_MAX}, /* CloseComplete */
        {'n', SMALL_MAX}, /* NoData */
        {'s', SMALL_MAX}, /* PortalSuspended */
        {'I', SMALL_MAX}, /* EmptyQueryResponse */
        {'c', SMALL_MAX}, /* CopyDone */
        {'z', SMALL_MAX}, /* unknown */
        {'\0', SMALL_MAX},
};

START_TEST(test_server_max_len)
{
	char type = server_cap_cases[_i].type;

	ck_assert_msg(proto_server_max_len(type) == server_cap_cases[_i].max_len, "type '%c': %u",
	              type, proto_server_max_len(type));
}
END_TEST

/* PROTOCOL-NOTES §11: headers with lengths {0, 3, 4, 0x7fffffff,
 * 0x80000000, 0xffffffff} for every type, both before and after
 * authentication and from the server, against the cap for that type. */
START_TEST(test_header_fuzz_caps)
{
	static const struct {
		uint32_t len;
		enum proto_result want;
	} lens[] = {
	        {0, PROTO_ERROR},           {3, PROTO_ERROR},           {4, PROTO_OK},
	        {0x7fffffffu, PROTO_ERROR}, {0x80000000u, PROTO_ERROR}, {0xffffffffu, PROTO_ERROR},
	};
	for (int t = 0; t < 256; t++) {
		for (size_t i = 0; i < N_ELEMS(lens); i++) {
			uint32_t len = lens[i].len;
			const uint8_t hdr[] = {(uint8_t)t, (uint8_t)(len >> 24),
			                       (uint8_t)(len >> 16), (uint8_t)(len >> 8),
			                       (uint8_t)len};
			const uint32_t caps[] = {proto_client_max_len((char)t, false),
			                         proto_client_max_len((char)t, true),
			                         proto_server_max_len((char)t)};
			for (size_t c = 0; c < N_ELEMS(caps); c++) {
				struct proto_header h;
				ck_assert_msg(proto_parse_header(hdr, sizeof(hdr), caps[c], &h) ==
				                      lens[i].want,
				              "type 0x%02x len 0x%08x cap #%zu", t, len, c);
			}
		}
	}
}
END_TEST

/* ---- proto_reader ------------------------------------------------------ */

START_TEST(test_reader_ints)
{
	static const uint8_t body[] = {0x81, 0x01, 0x02, 0xfe, 0xdc, 0xba, 0x98, 0x7f};
	uint8_t *p = dup_exact(body, sizeof(body));
	struct proto_reader r;

	proto_reader_init(&r, p, sizeof(body));
	ck_assert_uint_eq(proto_get_u8(&r), 0x81);
	ck_assert_uint_eq(proto_get_u16(&r), 0x0102);
	ck_assert_uint_eq(proto_get_u32(&r), 0xfedcba98u);
	ck_assert_uint_eq(proto_get_u8(&r), 0x7f);
	ck_assert(!r.err);
	ck_assert_uint_eq(r.pos, sizeof(body));
	/* at the end: every read fails */
	ck_assert_uint_eq(proto_get_u8(&r), 0);
	ck_assert(r.err);
	free(p);
}
END_TEST

enum read_op { OP_U8, OP_U16, OP_U32, OP_BYTES };

/* One read of WIDTH bytes on a body of AVAIL bytes (all 0xff, so a value of
 * 0 can only mean "failed"). */
static const struct {
	enum read_op op;
	size_t width;
	size_t avail;
} read_cases[] = {
        {OP_U8, 1, 0},    {OP_U8, 1, 1},    {OP_U16, 2, 0},   {OP_U16, 2, 1},   {OP_U16, 2, 2},
        {OP_U32, 4, 0},   {OP_U32, 4, 3},   {OP_U32, 4, 4},   {OP_U32, 4, 5},   {OP_BYTES, 0, 0},
        {OP_BYTES, 3, 2}, {OP_BYTES, 3, 3}, {OP_BYTES, 8, 4}, {OP_BYTES, 1, 0},
};

START_TEST(test_reader_bounds)
{
	size_t avail = read_cases[_i].avail, width = read_cases[_i].width;
	uint8_t *p = malloc(avail ? avail : 1);
	struct proto_reader r;
	bool fits = width <= avail;
	uint64_t v = 0;
	const uint8_t *b = NULL;

	ck_assert_ptr_nonnull(p);
	memset(p, 0xff, avail);
	proto_reader_init(&r, p, avail);
	switch (read_cases[_i].op) {
	case OP_U8:
		v = proto_get_u8(&r);
		break;
	case OP_U16:
		v = proto_get_u16(&r);
		break;
	case OP_U32:
		v = proto_get_u32(&r);
		break;
	case OP_BYTES:
		b = proto_get_bytes(&r, width);
		break;
	}
	ck_assert_msg(r.err == !fits, "op %d width %zu avail %zu: err=%d", read_cases[_i].op, width,
	              avail, r.err);
	ck_assert_uint_eq(r.pos, fits ? width : 0);
	if (read_cases[_i].op == OP_BYTES) {
		if (fits)
			ck_assert_ptr_eq(b, p);
		else
			ck_assert_ptr_null(b);
	} else {
		ck_assert_uint_eq(v, fits ? (1ull << (8 * width)) - 1 : 0);
	}
	free(p);
}
END_TEST

/* A failed read is sticky: later reads fail too, even ones that would fit. */
START_TEST(test_reader_sticky_err)
{
	static const uint8_t body[] = {'a', 0, 1, 2, 3};
	uint8_t *p = dup_exact(body, sizeof(body));
	struct proto_reader r;

	proto_reader_init(&r, p, sizeof(body));
	ck_assert_ptr_null(proto_get_bytes(&r, 6));
	ck_assert(r.err);
	ck_assert_uint_eq(proto_get_u8(&r), 0);
	ck_assert_uint_eq(proto_get_u16(&r), 0);
	ck_assert_uint_eq(proto_get_u32(&r), 0);
	ck_assert_ptr_null(proto_get_str(&r));
	ck_assert_ptr_null(proto_get_bytes(&r, 0));
	ck_assert(r.err);
	ck_assert_uint_eq(r.pos, 0);
	free(p);
}
END_TEST

/* A huge count must not wrap the bounds check. */
START_TEST(test_reader_huge_count)
{
	static const uint8_t body[] = {1, 2, 3, 4};
	uint8_t *p = dup_exact(body, sizeof(body));
	struct proto_reader r;

	proto_reader_init(&r, p, sizeof(body));
	ck_assert_uint_eq(proto_get_u8(&r), 1);
	ck_assert_ptr_null(proto_get_bytes(&r, SIZE_MAX));
	ck_assert(r.err);
	proto_reader_init(&r, p, sizeof(body));
	ck_assert_ptr_null(proto_get_bytes(&r, SIZE_MAX - 2));
	ck_assert(r.err);
	free(p);
}
END_TEST

static const struct {
	const char *body; /* bytes, NULs included */
	size_t len;
	const char *want[4]; /* the strings expected in order, then NULL */
	bool err;            /* whether one more read after them fails */
} str_cases[] = {
        {"abc\0def\0", 8, {"abc", "def", NULL}, true}, /* then nothing left */
        {"\0", 1, {"", NULL}, true},
        {"\0\0", 2, {"", "", NULL}, true},
        {"abc", 3, {NULL}, true},            /* no NUL: fails */
        {"abc\0de", 6, {"abc", NULL}, true}, /* second one unterminated */
        {"", 0, {NULL}, true},               /* empty body */
};

START_TEST(test_reader_str)
{
	uint8_t *p = dup_exact(str_cases[_i].body, str_cases[_i].len);
	struct proto_reader r;
	int n = 0;

	proto_reader_init(&r, p, str_cases[_i].len);
	for (; str_cases[_i].want[n]; n++) {
		const char *s = proto_get_str(&r);
		ck_assert_ptr_nonnull(s);
		ck_assert_str_eq(s, str_cases[_i].want[n]);
		ck_assert_ptr_eq(s, p + (r.pos - strlen(s) - 1)); /* points into the body */
	}
	ck_assert(!r.err);
	size_t pos = r.pos;
	ck_assert_ptr_null(proto_get_str(&r));
	ck_assert(r.err == str_cases[_i].err);
	ck_assert_uint_eq(r.pos, pos);
	free(p);
}
END_TEST

/* ---- proto_error_field ------------------------------------------------- */

static const struct {
	const char *what;
	const char *body;
	size_t len;
	char code;
	const char *want; /* NULL: must return NULL */
} field_cases[] = {
#define FULL "SERROR\0VERROR\0C42P01\0Mrelation \"t\" does not exist\0P15\0\0"
        {"sqlstate", FULL, sizeof(FULL) - 1, 'C', "42P01"},
        {"message", FULL, sizeof(FULL) - 1, 'M', "relation \"t\" does not exist"},
        {"severity", FULL, sizeof(FULL) - 1, 'S', "ERROR"},
        {"nonlocalized severity", FULL, sizeof(FULL) - 1, 'V', "ERROR"},
        {"last field", FULL, sizeof(FULL) - 1, 'P', "15"},
        {"absent field", FULL, sizeof(FULL) - 1, 'H', NULL},
        {"code 0 is the terminator", FULL, sizeof(FULL) - 1, '\0', NULL},
#undef FULL
/* CVE-2026-6666: an ErrorResponse from a (malicious) backend without the
 * SQLSTATE field */
#define NOCODE "SFATAL\0VFATAL\0Mterminating connection\0\0"
        {"no C field", NOCODE, sizeof(NOCODE) - 1, 'C', NULL},
        {"no C field, M present", NOCODE, sizeof(NOCODE) - 1, 'M', "terminating connection"},
#undef NOCODE
        {"a C inside a value is not a field", "MC0000\0CXX000\0\0", 15, 'C', "XX000"},
        {"empty value", "C\0\0", 3, 'C', ""},
        {"only the terminator", "\0", 1, 'C', NULL},
        {"empty body", "", 0, 'C', NULL},
        {"empty body, code 0", "", 0, '\0', NULL},
        {"field code with nothing after it", "C", 1, 'C', NULL},
        {"value without NUL", "SERROR\0C42P0", 12, 'C', NULL},
        {"unterminated, field absent", "SERROR\0C42P01\0", 14, 'M', NULL},
        {"unterminated, field after the cut", "SERROR\0C4", 9, 'M', NULL},
        {"bytes after the terminator are not fields", "SERROR\0\0C42P01\0", 15, 'C', NULL},
        {"a field after the terminator and a NUL", "SERROR\0\0\0C42P01\0\0", 17, 'C', NULL},
        {"terminator first", "\0\0C42P01\0\0", 10, 'C', NULL},
        {"high-bit field code",
         "\xff"
         "x\0C42P01\0\0",
         11, 'C', "42P01"},
};

START_TEST(test_error_field)
{
	uint8_t *p = dup_exact(field_cases[_i].body, field_cases[_i].len);
	const char *got = proto_error_field(p, field_cases[_i].len, field_cases[_i].code);

	if (!field_cases[_i].want) {
		ck_assert_msg(got == NULL, "%s: got \"%s\"", field_cases[_i].what, got);
	} else {
		ck_assert_msg(got != NULL, "%s: got NULL", field_cases[_i].what);
		ck_assert_str_eq(got, field_cases[_i].want);
		/* a pointer into the body, NUL inside it */
		ck_assert((const uint8_t *)got >= p);
		ck_assert((const uint8_t *)got + strlen(got) < p + field_cases[_i].len);
	}
	free(p);
}
END_TEST

/* Every truncation of a well-formed ErrorResponse body: never a crash or an
 * over-read (run under valgrind), and any answer lies inside the prefix and
 * is the right value. */
START_TEST(test_error_field_truncations)
{
	static const char body[] = "SERROR\0VERROR\0C23505\0Mduplicate key\0Dkey (id)=(1)\0\0";
	static const char codes[] = {'S', 'V', 'C', 'M', 'D', 'H', '\0'};
	static const char *const want[] = {"ERROR",        "ERROR", "23505", "duplicate key",
	                                   "key (id)=(1)", NULL,    NULL};

	for (size_t cut = 0; cut < sizeof(body); cut++) {
		uint8_t *p = dup_exact(body, cut);
		for (size_t c = 0; c < sizeof(codes); c++) {
			const char *got = proto_error_field(p, cut, codes[c]);
			if (!got)
				continue;
			ck_assert_msg(want[c] != NULL, "cut %zu code '%c'", cut, codes[c]);
			ck_assert_str_eq(got, want[c]);
			ck_assert((const uint8_t *)got + strlen(got) < p + cut);
		}
		free(p);
	}
	/* The whole body answers every present field. */
	uint8_t *p = dup_exact(body, sizeof(body) - 1);
	for (size_t c = 0; c < sizeof(codes); c++)
		ck_assert_pstr_eq(proto_error_field(p, sizeof(body) - 1, codes[c]), want[c]);
	free(p);
	/* NULL with length 0 is an empty body, not a crash. */
	ck_assert_ptr_null(proto_error_field(NULL, 0, 'C'));
}
END_TEST

/* ---- builders ---------------------------------------------------------- */

/* Compare OUT's whole content with WANT. */
static void assert_buffer(struct evbuffer *out, const uint8_t *want, size_t want_len,
                          const char *what)
{
	size_t len = evbuffer_get_length(out);
	const uint8_t *got = len ? evbuffer_pullup(out, -1) : NULL;

	ck_assert_msg(len == want_len, "%s: %zu bytes, want %zu", what, len, want_len);
	for (size_t i = 0; i < len; i++)
		ck_assert_msg(got[i] == want[i], "%s: byte %zu is 0x%02x, want 0x%02x", what, i,
		              got[i], want[i]);
}

static int build_ready_idle(struct evbuffer *b)
{
	return proto_write_ready(b, 'I');
}
static int build_ready_tx(struct evbuffer *b)
{
	return proto_write_ready(b, 'T');
}
static int build_ready_failed(struct evbuffer *b)
{
	return proto_write_ready(b, 'E');
}
static int build_query(struct evbuffer *b)
{
	return proto_write_query(b, "SELECT 1");
}
static int build_query_empty(struct evbuffer *b)
{
	return proto_write_query(b, "");
}
static int build_password(struct evbuffer *b)
{
	return proto_write_password(b, "secret");
}
static int build_auth_ok(struct evbuffer *b)
{
	return proto_write_auth(b, 0, NULL, 0);
}
static int build_auth_cleartext(struct evbuffer *b)
{
	return proto_write_auth(b, 3, NULL, 0);
}
static int build_auth_md5(struct evbuffer *b)
{
	static const uint8_t salt[4] = {0x01, 0x02, 0xfe, 0xff};
	return proto_write_auth(b, 5, salt, sizeof(salt));
}
static int build_auth_sasl(struct evbuffer *b)
{
	/* mechanism list: one name, then an empty string */
	return proto_write_auth(b, 10, "SCRAM-SHA-256\0", 15);
}
static int build_auth_sasl_continue(struct evbuffer *b)
{
	return proto_write_auth(b, 11, "r=abc,s=QQ==,i=4096", 19);
}
static int build_param_status(struct evbuffer *b)
{
	return proto_write_param_status(b, "client_encoding", "UTF8");
}
static int build_param_status_empty(struct evbuffer *b)
{
	return proto_write_param_status(b, "application_name", "");
}
static int build_backend_key(struct evbuffer *b)
{
	return proto_write_backend_key(b, 0x01020304u, 0xdeadbeefu);
}
static int build_error(struct evbuffer *b)
{
	return proto_write_error(b, "FATAL", "28P01",
	                         "password authentication failed for user \"%s\"", "bob");
}
static int build_error_plain(struct evbuffer *b)
{
	return proto_write_error(b, "ERROR", "08P01", "%s", "bad");
}
static int build_sasl_initial(struct evbuffer *b)
{
	return proto_write_sasl_initial(b, "SCRAM-SHA-256", "n,,n=,r=abc", 11);
}
static int build_sasl_response(struct evbuffer *b)
{
	return proto_write_sasl_response(b, "c=biws,r=abc", 12);
}
static int build_negotiate_one(struct evbuffer *b)
{
	static const char *const opts[] = {"_pq_.foo"};
	return proto_write_negotiate(b, 0, opts, 1);
}
static int build_negotiate_none(struct evbuffer *b)
{
	return proto_write_negotiate(b, 2, NULL, 0);
}
static int build_negotiate_two(struct evbuffer *b)
{
	static const char *const opts[] = {"_pq_.a", "_pq_.bc"};
	return proto_write_negotiate(b, 0, opts, 2);
}
static int build_cancel(struct evbuffer *b)
{
	return proto_write_cancel(b, 0x01020304u, 0x8090a0b0u);
}
static int build_terminate(struct evbuffer *b)
{
	return proto_write_terminate(b);
}
static int build_startup(struct evbuffer *b)
{
	static const char *const names[] = {"user", "database"};
	static const char *const values[] = {"bob", "app"};
	return proto_write_startup(b, names, values, 2);
}
static int build_startup_empty(struct evbuffer *b)
{
	return proto_write_startup(b, NULL, NULL, 0);
}
static int build_msg(struct evbuffer *b)
{
	return proto_write_msg(b, 'H', NULL, 0);
}
static int build_msg_body(struct evbuffer *b)
{
	return proto_write_msg(b, 'd', "\0\1\2", 3);
}

static const struct {
	const char *what;
	int (*build)(struct evbuffer *);
	const uint8_t *want;
	size_t want_len;
	bool typed; /* starts with a type byte (all but CancelRequest and StartupMessage) */
} builder_cases[] = {
        {"ReadyForQuery I", build_ready_idle, BYTES("Z\0\0\0\5I"), true},
        {"ReadyForQuery T", build_ready_tx, BYTES("Z\0\0\0\5T"), true},
        {"ReadyForQuery E", build_ready_failed, BYTES("Z\0\0\0\5E"), true},
        {"Query", build_query, BYTES("Q\0\0\0\15SELECT 1\0"), true},
        {"empty Query", build_query_empty, BYTES("Q\0\0\0\5\0"), true},
        {"PasswordMessage", build_password, BYTES("p\0\0\0\13secret\0"), true},
        {"AuthenticationOk", build_auth_ok, BYTES("R\0\0\0\10\0\0\0\0"), true},
        {"AuthenticationCleartextPassword", build_auth_cleartext, BYTES("R\0\0\0\10\0\0\0\3"),
         true},
        {"AuthenticationMD5Password", build_auth_md5, BYTES("R\0\0\0\14\0\0\0\5\x01\x02\xfe\xff"),
         true},
        {"AuthenticationSASL", build_auth_sasl, BYTES("R\0\0\0\27\0\0\0\12SCRAM-SHA-256\0\0"),
         true},
        {"AuthenticationSASLContinue", build_auth_sasl_continue,
         BYTES("R\0\0\0\33\0\0\0\13r=abc,s=QQ==,i=4096"), true},
        {"ParameterStatus", build_param_status, BYTES("S\0\0\0\31client_encoding\0UTF8\0"), true},
        {"ParameterStatus, empty value", build_param_status_empty,
         BYTES("S\0\0\0\26application_name\0\0"), true},
        {"BackendKeyData", build_backend_key, BYTES("K\0\0\0\14\x01\x02\x03\x04\xde\xad\xbe\xef"),
         true},
        {"ErrorResponse", build_error,
         BYTES("E\0\0\0\111"
               "SFATAL\0"
               "VFATAL\0"
               "C28P01\0"
               "Mpassword authentication failed for user \"bob\"\0"
               "\0"),
         true},
        {"ErrorResponse, short", build_error_plain,
         BYTES("E\0\0\0\37SERROR\0VERROR\0C08P01\0Mbad\0\0"), true},
        {"SASLInitialResponse", build_sasl_initial,
         BYTES("p\0\0\0\41SCRAM-SHA-256\0\0\0\0\13n,,n=,r=abc"), true},
        {"SASLResponse", build_sasl_response, BYTES("p\0\0\0\20c=biws,r=abc"), true},
        {"NegotiateProtocolVersion, one option", build_negotiate_one,
         BYTES("v\0\0\0\25\0\0\0\0\0\0\0\1_pq_.foo\0"), true},
        {"NegotiateProtocolVersion, no options", build_negotiate_none,
         BYTES("v\0\0\0\14\0\0\0\2\0\0\0\0"), true},
        {"NegotiateProtocolVersion, two options", build_negotiate_two,
         BYTES("v\0\0\0\33\0\0\0\0\0\0\0\2_pq_.a\0_pq_.bc\0"), true},
        {"Terminate", build_terminate, BYTES("X\0\0\0\4"), true},
        {"generic, empty body", build_msg, BYTES("H\0\0\0\4"), true},
        {"generic, binary body", build_msg_body, BYTES("d\0\0\0\7\0\1\2"), true},
        /* 80877102 = 1234 << 16 | 5678 = 0x04d2162e */
        {"CancelRequest", build_cancel,
         BYTES("\0\0\0\20\x04\xd2\x16\x2e\x01\x02\x03\x04\x80\x90\xa0\xb0"), false},
        /* 196608 = 3 << 16 */
        {"StartupMessage", build_startup, BYTES("\0\0\0\37\0\3\0\0user\0bob\0database\0app\0\0"),
         false},
        {"StartupMessage, no parameters", build_startup_empty, BYTES("\0\0\0\11\0\3\0\0\0"), false},
};

START_TEST(test_builder)
{
	const uint8_t *want = builder_cases[_i].want;
	size_t want_len = builder_cases[_i].want_len;
	const char *what = builder_cases[_i].what;

	/* Self-check of the hand-written vector: its length word matches its size. */
	size_t off = builder_cases[_i].typed ? 1 : 0;
	uint32_t word = (uint32_t)want[off] << 24 | (uint32_t)want[off + 1] << 16 |
	                (uint32_t)want[off + 2] << 8 | want[off + 3];
	ck_assert_msg(word == want_len - off, "%s: bad test vector (%u vs %zu)", what, word,
	              want_len - off);

	/* Into an empty buffer. */
	struct evbuffer *out = evbuffer_new();
	ck_assert_ptr_nonnull(out);
	ck_assert_int_eq(builder_cases[_i].build(out), 0);
	assert_buffer(out, want, want_len, what);
	evbuffer_free(out);

	/* Appended after bytes already queued, which stay as they were. */
	out = evbuffer_new();
	ck_assert_ptr_nonnull(out);
	ck_assert_int_eq(evbuffer_add(out, "xyz", 3), 0);
	ck_assert_int_eq(builder_cases[_i].build(out), 0);
	uint8_t *both = malloc(want_len + 3);
	ck_assert_ptr_nonnull(both);
	memcpy(both, "xyz", 3);
	memcpy(both + 3, want, want_len);
	assert_buffer(out, both, want_len + 3, what);
	free(both);
	evbuffer_free(out);
}
END_TEST

/* A message text longer than the builder's buffer still makes one
 * well-formed ErrorResponse whose fields can be read back. */
START_TEST(test_error_long_message)
{
	char big[3000];
	struct evbuffer *out = evbuffer_new();
	struct proto_header h;

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	ck_assert_ptr_nonnull(out);
	ck_assert_int_eq(proto_write_error(out, "ERROR", "54000", "%s", big), 0);
	size_t len = evbuffer_get_length(out);
	const uint8_t *p = evbuffer_pullup(out, -1);
	ck_assert_int_eq(proto_parse_header(p, len, proto_server_max_len('E'), &h), PROTO_OK);
	ck_assert_int_eq(h.type, 'E');
	ck_assert_uint_eq(h.len + 1, len);
	ck_assert_uint_eq(p[len - 1], 0);
	ck_assert_str_eq(proto_error_field(p + 5, len - 5, 'C'), "54000");
	ck_assert_str_eq(proto_error_field(p + 5, len - 5, 'S'), "ERROR");
	const char *m = proto_error_field(p + 5, len - 5, 'M');
	ck_assert_ptr_nonnull(m);
	ck_assert_uint_gt(strlen(m), 0);
	ck_assert_uint_lt(strlen(m), sizeof(big));
	ck_assert(strspn(m, "x") == strlen(m));
	evbuffer_free(out);
}
END_TEST

/* Refusals append nothing: a StartupMessage over 10,000 bytes, and a
 * message body over 1 GiB - 1 (rejected before the body is read). */
START_TEST(test_builder_refusals)
{
	static char big[PROTO_STARTUP_MAX_LEN];
	static const char *const names[] = {"user", "application_name"};
	const char *values[] = {"bob", big};
	struct evbuffer *out = evbuffer_new();

	ck_assert_ptr_nonnull(out);
	ck_assert_int_eq(evbuffer_add(out, "q", 1), 0);
	memset(big, 'a', sizeof(big) - 1);
	ck_assert_int_eq(proto_write_startup(out, names, values, 2), -1);
	ck_assert_uint_eq(evbuffer_get_length(out), 1);
	/* The largest StartupMessage that fits: 8 + "user\0bob\0" (9) +
	 * "application_name\0" (17) + value + NUL + final NUL = 10,000. */
	big[10000 - 8 - 9 - 17 - 2 + 1] = '\0'; /* one byte over */
	ck_assert_int_eq(proto_write_startup(out, names, values, 2), -1);
	ck_assert_uint_eq(evbuffer_get_length(out), 1);
	big[10000 - 8 - 9 - 17 - 2] = '\0';
	ck_assert_int_eq(proto_write_startup(out, names, values, 2), 0);
	ck_assert_uint_eq(evbuffer_get_length(out), 1 + PROTO_STARTUP_MAX_LEN);
	evbuffer_drain(out, evbuffer_get_length(out));
	ck_assert_int_eq(proto_write_msg(out, 'd', big, (size_t)DATA_MAX + 1), -1);
	ck_assert_uint_eq(evbuffer_get_length(out), 0);
	evbuffer_free(out);
}
END_TEST

/* ---- framing ----------------------------------------------------------- */

struct framed {
	char type;
	size_t len; /* body length */
	uint8_t body[300];
};

/* Build a stream of server messages (the same bytes a backend sends after
 * a successful login, then a query result) and what a reader must find. */
static size_t build_stream(struct evbuffer *out, struct framed *want, size_t max)
{
	size_t n = 0;
	uint8_t row[300];

	for (size_t i = 0; i < sizeof(row); i++)
		row[i] = (uint8_t)i; /* includes bytes that look like headers */
	ck_assert_int_eq(proto_write_auth(out, 0, NULL, 0), 0);
	want[n++] = (struct framed){'R', 4, {0, 0, 0, 0}};
	ck_assert_int_eq(proto_write_param_status(out, "a", "b"), 0);
	want[n++] = (struct framed){'S', 4, {'a', 0, 'b', 0}};
	ck_assert_int_eq(proto_write_backend_key(out, 7, 9), 0);
	want[n++] = (struct framed){'K', 8, {0, 0, 0, 7, 0, 0, 0, 9}};
	ck_assert_int_eq(proto_write_ready(out, 'I'), 0);
	want[n++] = (struct framed){'Z', 1, {'I'}};
	ck_assert_int_eq(proto_write_msg(out, '1', NULL, 0), 0);
	want[n++] = (struct framed){'1', 0, {0}};
	ck_assert_int_eq(proto_write_msg(out, 'D', row, sizeof(row)), 0);
	want[n] = (struct framed){'D', sizeof(row), {0}};
	memcpy(want[n++].body, row, sizeof(row));
	ck_assert_int_eq(proto_write_msg(out, '2', NULL, 0), 0);
	want[n++] = (struct framed){'2', 0, {0}};
	ck_assert_int_eq(proto_write_error(out, "ERROR", "XX000", "e"), 0);
	want[n] = (struct framed){'E', 0, {0}};
	memcpy(want[n].body, "SERROR\0VERROR\0CXX000\0Me\0\0", 25);
	want[n++].len = 25;
	ck_assert_int_eq(proto_write_ready(out, 'E'), 0);
	want[n++] = (struct framed){'Z', 1, {'E'}};
	ck_assert_uint_le(n, max);
	return n;
}

/* Feed the stream CHUNK bytes at a time into a reader that does what a
 * connection's read callback does: peek at the header with the cap for its
 * type, wait for the whole message, consume it, repeat. */
static const size_t chunk_sizes[] = {1, 2, 3, 4, 5, 6, 7, 13, 64, 301, 100000};

START_TEST(test_framing_stream)
{
	struct framed want[16];
	struct evbuffer *src = evbuffer_new();
	ck_assert_ptr_nonnull(src);
	size_t nwant = build_stream(src, want, N_ELEMS(want));
	size_t total = evbuffer_get_length(src);
	uint8_t *stream = dup_exact(evbuffer_pullup(src, -1), total);
	evbuffer_free(src);

	size_t chunk = chunk_sizes[_i];
	size_t have = 0;  /* bytes delivered so far */
	size_t start = 0; /* start of the first unconsumed message */
	size_t found = 0;
	size_t expected_end = 0; /* where message FOUND ends in the stream */
	while (have < total) {
		have += chunk < total - have ? chunk : total - have;
		for (;;) {
			struct proto_header h;
			size_t avail = have - start;
			uint32_t cap = avail ? proto_server_max_len((char)stream[start]) : 0;
			/* Parse from an exact copy so valgrind flags a peek past AVAIL. */
			uint8_t *peek = dup_exact(stream + start, avail);
			enum proto_result rc = proto_parse_header(peek, avail, cap, &h);
			free(peek);
			if (avail < PROTO_HEADER_LEN) {
				ck_assert_int_eq(rc, PROTO_AGAIN);
				break;
			}
			ck_assert_int_eq(rc, PROTO_OK);
			if (avail < 1 + (size_t)h.len)
				break; /* wait for the rest of the body */
			ck_assert_uint_lt(found, nwant);
			expected_end += 1 + 4 + want[found].len;
			ck_assert_int_eq(h.type, want[found].type);
			ck_assert_uint_eq(h.len, want[found].len + 4);
			ck_assert_mem_eq(stream + start + 5, want[found].body, want[found].len);
			/* With one byte at a time, a message is found on the very byte
			 * that completes it. */
			if (chunk == 1)
				ck_assert_uint_eq(have, expected_end);
			start += 1 + h.len;
			found++;
		}
	}
	ck_assert_uint_eq(found, nwant);
	ck_assert_uint_eq(start, total);
	free(stream);
}
END_TEST

/* A hostile length in the middle of a stream stops the reader with ERROR at
 * that header, after the messages before it were found. */
START_TEST(test_framing_bad_length)
{
	static const uint8_t stream[] = {'Z', 0,    0,    0,    5,    'I', /* ReadyForQuery */
	                                 'D', 0xff, 0xff, 0xff, 0xff, /* DataRow, length 2^32-1 */
	                                 0,   0,    0};
	size_t start = 0, found = 0;
	enum proto_result rc = PROTO_AGAIN;

	for (size_t have = 1; have <= sizeof(stream); have++) {
		struct proto_header h;
		rc = proto_parse_header(stream + start, have - start, proto_server_max_len('D'),
		                        &h);
		if (rc == PROTO_ERROR)
			break;
		if (rc == PROTO_OK && have - start >= 1 + (size_t)h.len) {
			start += 1 + h.len;
			found++;
		}
	}
	ck_assert_int_eq(rc, PROTO_ERROR);
	ck_assert_uint_eq(found, 1);
	ck_assert_uint_eq(start, 6);
}
END_TEST

/* ---- client message checks and whole-message take ---------------------- */

static const struct {
	char type;
	const char *body;  /* bytes, with embedded NULs */
	size_t len;
	bool prefix;
	const char *want;  /* NULL: well formed; else a substring of the reason */
} check_cases[] = {
#define C(t, lit, pre, w) { t, lit, sizeof(lit) - 1, pre, w }
	C('Q', "SELECT 1\0", false, NULL),
	C('Q', "SELECT 1", false, "invalid message format"),
	C('Q', "SELECT 1\0x", false, "invalid message format"),
	C('Q', "SELECT 1 and no end yet", true, NULL),
	C('P', "s\0SELECT $1\0\0\1\0\0\0\x17", false, NULL),
	C('P', "s\0SELECT 1\0\0\0", false, NULL),
	C('P', "s\0SELECT 1\0\0\5", false, "insufficient data"),
	C('P', "s\0SELECT 1\0\0", false, "insufficient data"),
	C('P', "s\0SELECT 1\0\0\0extra", false, "invalid message format"),
	C('P', "s\0SELECT", false, "invalid message format"),
	C('P', "name\0SELECT a very long", true, NULL),
	C('P', "unterminated name", true, "invalid message format"),
	C('B', "p\0s\0\0\0\0\0\0\0", false, NULL),
	C('B', "\0s\0\0\1\0\1\0\1\0\0\0\2hi\0\0", false, NULL),
	C('B', "\0s\0\0\0\0\1\xff\xff\xff\xff\0\0", false, NULL),  /* a NULL */
	C('B', "\0s\0\0\0\0\1\0\0\0\5hi\0\0", false, "insufficient data"),
	C('B', "\0s\0\0\0\0\1\x80\0\0\0\0\0", false, "insufficient data"),
	C('B', "\0s\0\0\0\0\0\0\0x", false, "invalid message format"),
	C('B', "p\0s\0\0\0\0\1\0\0", true, NULL),
	C('B', "p\0s", true, "invalid message format"),
	C('D', "S\0", false, NULL),
	C('D', "Pportal\0", false, NULL),
	C('D', "X\0", false, "invalid DESCRIBE message subtype"),
	C('D', "S", false, "invalid message format"),
	C('D', "", false, "insufficient data"),
	C('C', "Sname\0", false, NULL),
	C('C', "Q\0", false, "invalid CLOSE message subtype"),
	C('E', "\0\0\0\0\0", false, NULL),
	C('E', "\0\0\0", false, "insufficient data"),
	C('S', "", false, NULL),
	C('S', "x", false, "invalid message format"),
	C('H', "", false, NULL),
	C('c', "", false, NULL),
	C('f', "reason\0", false, NULL),
	C('f', "reason", false, "invalid message format"),
	C('d', "any bytes", false, NULL),
	C('F', "any bytes", false, NULL),
#undef C
};

START_TEST(test_check_client_msg)
{
	uint8_t *body = dup_exact(check_cases[_i].body, check_cases[_i].len);
	const char *got = proto_check_client_msg(check_cases[_i].type, body, check_cases[_i].len,
						 check_cases[_i].prefix);
	if (!check_cases[_i].want)
		ck_assert_msg(got == NULL, "case %d: %s", _i, got);
	else
		ck_assert_msg(got && strstr(got, check_cases[_i].want), "case %d: got %s", _i,
			      got ? got : "(ok)");
	free(body);
}
END_TEST

START_TEST(test_client_types_known)
{
	static const char known[] = "BCDEFHPQSXcdf";
	for (int t = 0; t < 256; t++)
		ck_assert((strchr(known, t) != NULL && t != 0) == proto_client_type_known((char)t));
}
END_TEST

START_TEST(test_msg_take)
{
	/* small (inline) and large (heap) messages come out whole, in order,
	 * and the buffer no longer holds them */
	struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
	ck_assert_ptr_nonnull(in);
	size_t sizes[] = {0, 1, 250, 251, 4000, 100000};
	for (size_t i = 0; i < N_ELEMS(sizes); i++) {
		uint8_t *body = malloc(sizes[i] + 1);
		memset(body, 'a' + (int)i, sizes[i]);
		ck_assert_int_eq(proto_write_msg(in, 'D', body, sizes[i]), 0);
		free(body);
	}
	for (size_t i = 0; i < N_ELEMS(sizes); i++) {
		uint8_t hdr[5];
		struct proto_header h;
		struct proto_msg m;
		evbuffer_copyout(in, hdr, 5);
		ck_assert_int_eq(proto_parse_header(hdr, evbuffer_get_length(in), DATA_MAX, &h),
				 PROTO_OK);
		size_t before = evbuffer_get_length(in);
		ck_assert_int_eq(proto_msg_take(in, &h, &m), 0);
		ck_assert_uint_eq(evbuffer_get_length(in), before - 5 - sizes[i]);
		ck_assert_int_eq(m.type, 'D');
		ck_assert_uint_eq(m.body_len, sizes[i]);
		for (size_t j = 0; j < sizes[i]; j++)
			ck_assert_int_eq(m.body[j], 'a' + (int)i);
		ck_assert_int_eq(proto_msg_forward(out, &m), 0);
		proto_msg_cleanup(&m);
		ck_assert_ptr_null(m.raw);
	}
	ck_assert_uint_eq(evbuffer_get_length(in), 0);
	size_t total = 0;
	for (size_t i = 0; i < N_ELEMS(sizes); i++)
		total += 5 + sizes[i];
	ck_assert_uint_eq(evbuffer_get_length(out), total);
	/* a header that claims more than the buffer holds is refused, buffer intact */
	ck_assert_int_eq(proto_write_msg(in, 'D', "xy", 2), 0);
	struct proto_header lie = {.type = 'D', .len = 400};
	struct proto_msg m;
	ck_assert_int_eq(proto_msg_take(in, &lie, &m), -1);
	proto_msg_cleanup(&m);
	ck_assert_uint_eq(evbuffer_get_length(in), 7);
	evbuffer_free(in);
	evbuffer_free(out);
}
END_TEST

/* ---- pg/frame: framing on evbuffers ------------------------------------- */

/* A buffer of many chains: each piece of BYTES (cut every STEP bytes) is
 * its own chain, as when reads arrive one after the other. */
static struct evbuffer *chained(const uint8_t *bytes, size_t len, size_t step)
{
	struct evbuffer *in = evbuffer_new();
	ck_assert_ptr_nonnull(in);
	for (size_t off = 0; off < len; off += step) {
		struct evbuffer *piece = evbuffer_new();
		size_t n = len - off < step ? len - off : step;
		ck_assert_int_eq(evbuffer_add(piece, bytes + off, n), 0);
		ck_assert_int_eq(evbuffer_add_buffer(in, piece), 0);
		evbuffer_free(piece);
	}
	return in;
}

static const size_t frame_steps[] = {1, 2, 3, 5, 7, 64};

START_TEST(test_frame_walk)
{
	/* Query "SELECT 1", Sync, a 300-byte CopyData, Terminate: walked by
	 * offset across chain boundaries, then taken from the front */
	struct evbuffer *src = evbuffer_new();
	uint8_t copy[300];
	memset(copy, 'x', sizeof(copy));
	ck_assert_int_eq(proto_write_query(src, "SELECT 1"), 0);
	ck_assert_int_eq(proto_write_msg(src, 'S', NULL, 0), 0);
	ck_assert_int_eq(proto_write_msg(src, 'd', copy, sizeof(copy)), 0);
	ck_assert_int_eq(proto_write_terminate(src), 0);
	size_t len = evbuffer_get_length(src);
	uint8_t *bytes = dup_exact(evbuffer_pullup(src, -1), len);
	evbuffer_free(src);
	struct evbuffer *in = chained(bytes, len, frame_steps[_i]);
	static const struct {
		char type;
		size_t total;
	} want[] = {{'Q', 14}, {'S', 5}, {'d', 305}, {'X', 5}};
	size_t off = 0;
	struct frame f;
	for (size_t i = 0; i < N_ELEMS(want); i++) {
		ck_assert_int_eq(frame_peek(in, off, FRAME_CLIENT, &f), PROTO_OK);
		ck_assert_int_eq(f.type, want[i].type);
		ck_assert_uint_eq(f.total, want[i].total);
		ck_assert_uint_eq(f.len, want[i].total - 1);
		ck_assert_uint_eq(f.avail, len - off);
		ck_assert(frame_whole(&f));
		ck_assert_uint_eq(frame_have(&f), f.total);
		off += f.total;
	}
	ck_assert_uint_eq(off, len);
	ck_assert_int_eq(frame_peek(in, off, FRAME_CLIENT, &f), PROTO_AGAIN);
	ck_assert_int_eq(frame_peek(in, off + 3, FRAME_CLIENT, &f), PROTO_AGAIN);
	for (size_t i = 0; i < N_ELEMS(want); i++) {
		struct proto_msg m;
		ck_assert_int_eq(frame_peek(in, 0, FRAME_CLIENT, &f), PROTO_OK);
		ck_assert_int_eq(frame_take(in, &f, &m), 0);
		ck_assert_int_eq(m.type, want[i].type);
		ck_assert_uint_eq(m.total, want[i].total);
		proto_msg_cleanup(&m);
	}
	ck_assert_uint_eq(evbuffer_get_length(in), 0);
	evbuffer_free(in);
	free(bytes);
}
END_TEST

START_TEST(test_frame_partial)
{
	/* under 5 bytes: AGAIN; a header with half its body: OK, not whole */
	static const uint8_t q[] = {'Q', 0, 0, 0, 13, 'S', 'E', 'L', 'E', 'C', 'T', ' ', '1', 0};
	for (size_t n = 0; n <= sizeof(q); n++) {
		struct evbuffer *in = chained(q, n, 2);
		struct frame f = {.type = '?'};
		enum proto_result rc = frame_peek(in, 0, FRAME_CLIENT, &f);
		if (n < PROTO_HEADER_LEN) {
			ck_assert_int_eq(rc, PROTO_AGAIN);
		} else {
			ck_assert_int_eq(rc, PROTO_OK);
			ck_assert_uint_eq(f.avail, n);
			ck_assert(frame_whole(&f) == (n == sizeof(q)));
			ck_assert_uint_eq(frame_have(&f), n);
		}
		evbuffer_free(in);
	}
}
END_TEST

static const struct {
	enum frame_peer peer;
	char type;
	uint32_t len;
	enum proto_result want;
} frame_limit_cases[] = {
	{FRAME_CLIENT_LOGIN, 'p', AUTH_MAX, PROTO_OK},
	{FRAME_CLIENT_LOGIN, 'p', AUTH_MAX + 1, PROTO_ERROR},
	{FRAME_CLIENT_LOGIN, 'Q', SMALL_MAX + 1, PROTO_ERROR}, /* no Query before login */
	{FRAME_CLIENT, 'Q', DATA_MAX, PROTO_OK},
	{FRAME_CLIENT, 'Q', DATA_MAX + 1, PROTO_ERROR},
	{FRAME_CLIENT, 'S', SMALL_MAX + 1, PROTO_ERROR},
	{FRAME_CLIENT, 'S', 3, PROTO_ERROR},
	{FRAME_SERVER, 'D', DATA_MAX, PROTO_OK},
	{FRAME_SERVER, 'Z', SMALL_MAX + 1, PROTO_ERROR},
	{FRAME_SERVER, 'R', AUTH_MAX, PROTO_OK},
};

START_TEST(test_frame_limits)
{
	/* each sender's limit per type; a refused length still names the type
	 * (for the log line) */
	uint8_t hdr[5] = {(uint8_t)frame_limit_cases[_i].type};
	uint32_t l = frame_limit_cases[_i].len;
	hdr[1] = (uint8_t)(l >> 24), hdr[2] = (uint8_t)(l >> 16), hdr[3] = (uint8_t)(l >> 8),
	hdr[4] = (uint8_t)l;
	struct evbuffer *in = chained(hdr, sizeof(hdr), 5);
	struct frame f = {.type = '?'};
	ck_assert_int_eq(frame_peek(in, 0, frame_limit_cases[_i].peer, &f),
			 frame_limit_cases[_i].want);
	ck_assert_int_eq(f.type, frame_limit_cases[_i].type);
	if (frame_limit_cases[_i].want == PROTO_OK) {
		ck_assert_uint_eq(f.total, 1 + (size_t)l);
		ck_assert(!frame_whole(&f));
	}
	evbuffer_free(in);
}
END_TEST

START_TEST(test_frame_startup)
{
	static const struct {
		uint8_t b[4];
		size_t n;
		enum proto_result want;
		uint32_t len;
	} cases[] = {
		{{0, 0, 0}, 3, PROTO_AGAIN, 0},
		{{0, 0, 0, 7}, 4, PROTO_ERROR, 7},
		{{0, 0, 0, 8}, 4, PROTO_OK, 8},
		{{0, 0, 0x27, 0x10}, 4, PROTO_OK, 10000},
		{{0, 0, 0x27, 0x11}, 4, PROTO_ERROR, 10001},
		{{0x80, 0, 0, 8}, 4, PROTO_ERROR, 0x80000008u},
	};
	for (size_t i = 0; i < N_ELEMS(cases); i++) {
		struct evbuffer *in = chained(cases[i].b, cases[i].n, 1);
		uint32_t len = 0;
		ck_assert_int_eq(frame_peek_startup(in, &len), cases[i].want);
		if (cases[i].want != PROTO_AGAIN)
			ck_assert_uint_eq(len, cases[i].len);
		ck_assert_uint_eq(evbuffer_get_length(in), cases[i].n); /* nothing consumed */
		evbuffer_free(in);
	}
}
END_TEST

START_TEST(test_frame_stream)
{
	/* a 1,000-byte message of which 300 bytes came: the rest goes in
	 * chunks no larger than what is buffered, and never past its end */
	struct frame f = {.type = 'd', .len = 999, .total = 1000, .avail = 300};
	struct frame_stream st = {0};
	frame_stream_start(&st, &f, frame_have(&f), true);
	ck_assert_uint_eq(st.left, 700);
	ck_assert(st.drop);
	ck_assert_uint_eq(frame_stream_chunk(&st, 100), 100);
	ck_assert(!frame_stream_took(&st, 100));
	ck_assert_uint_eq(frame_stream_chunk(&st, 5000), 600);
	ck_assert(frame_stream_took(&st, 600));
	ck_assert_uint_eq(st.left, 0);
	ck_assert(!st.drop); /* the next message starts clean */
	/* a whole message leaves nothing to stream, and never a drop */
	f.avail = 2000;
	frame_stream_start(&st, &f, frame_have(&f), true);
	ck_assert_uint_eq(st.left, 0);
	ck_assert(!st.drop);
}
END_TEST

static Suite *proto_suite(void)
{
	Suite *s = suite_create("proto");
	TCase *tc;

	tc = tcase_create("header");
	tcase_add_loop_test(tc, test_header_partial, 0, PROTO_HEADER_LEN);
	tcase_add_loop_test(tc, test_header_lengths, 0, N_ELEMS(header_cases));
	tcase_add_test(tc, test_header_byte_order);
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_add_loop_test(tc, test_client_max_len, 0, N_ELEMS(client_cap_cases));
	tcase_add_test(tc, test_client_caps_all_types);
	tcase_add_loop_test(tc, test_server_max_len, 0, N_ELEMS(server_cap_cases));
	tcase_add_test(tc, test_header_fuzz_caps);
	suite_add_tcase(s, tc);

	tc = tcase_create("reader");
	tcase_add_test(tc, test_reader_ints);
	tcase_add_loop_test(tc, test_reader_bounds, 0, N_ELEMS(read_cases));
	tcase_add_test(tc, test_reader_sticky_err);
	tcase_add_test(tc, test_reader_huge_count);
	tcase_add_loop_test(tc, test_reader_str, 0, N_ELEMS(str_cases));
	suite_add_tcase(s, tc);

	tc = tcase_create("error_field");
	tcase_add_loop_test(tc, test_error_field, 0, N_ELEMS(field_cases));
	tcase_add_test(tc, test_error_field_truncations);
	suite_add_tcase(s, tc);

	tc = tcase_create("builders");
	tcase_add_loop_test(tc, test_builder, 0, N_ELEMS(builder_cases));
	tcase_add_test(tc, test_error_long_message);
	tcase_add_test(tc, test_builder_refusals);
	suite_add_tcase(s, tc);

	tc = tcase_create("client_checks");
	tcase_add_loop_test(tc, test_check_client_msg, 0, N_ELEMS(check_cases));
	tcase_add_test(tc, test_client_types_known);
	tcase_add_test(tc, test_msg_take);
	suite_add_tcase(s, tc);

	tc = tcase_create("framing");
	tcase_add_loop_test(tc, test_framing_stream, 0, N_ELEMS(chunk_sizes));
	tcase_add_test(tc, test_framing_bad_length);
	suite_add_tcase(s, tc);

	tc = tcase_create("frame");
	tcase_add_loop_test(tc, test_frame_walk, 0, N_ELEMS(frame_steps));
	tcase_add_test(tc, test_frame_partial);
	tcase_add_loop_test(tc, test_frame_limits, 0, N_ELEMS(frame_limit_cases));
	tcase_add_test(tc, test_frame_startup);
	tcase_add_test(tc, test_frame_stream);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(proto_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
