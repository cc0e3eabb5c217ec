/* Unit tests for pg/startup: the first packet a client sends. StartupMessage
 * 3.0 and 3.x, SSLRequest, GSSENCRequest, CancelRequest; what must be
 * refused and with which SQLSTATE (PROTOCOL-NOTES §9: protocol versions,
 * _pq_ options, replication, hardened parsing of truncated, oversized and
 * duplicated input); the "options" parameter; and that startup_cleanup is
 * safe after any outcome. Packets are built by pkt_build() below and copied
 * into exactly-sized heap blocks so that valgrind sees any over-read. */
#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg/proto.h"
#include "pg/startup.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

#define V3_0 0x00030000u
#define V3_2 0x00030002u

/* 63 and 64 characters: NAMEDATALEN - 1 fits, one more does not. */
#define NAME63 "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijk"
#define NAME64 NAME63 "l"

/* ---- packet helper ----------------------------------------------------- */

struct pkt {
	uint8_t *p; /* owned: exactly len bytes */
	size_t len;
};

static void pkt_add(struct pkt *k, const void *data, size_t n)
{
	uint8_t *np = realloc(k->p, k->len + n ? k->len + n : 1);

	ck_assert_ptr_nonnull(np);
	k->p = np;
	if (n)
		memcpy(k->p + k->len, data, n);
	k->len += n;
}

static void pkt_u32(struct pkt *k, uint32_t v)
{
	const uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8),
	                      (uint8_t)v};
	pkt_add(k, b, 4);
}

static void pkt_str(struct pkt *k, const char *s)
{
	pkt_add(k, s, strlen(s) + 1);
}

static void pkt_set_len(struct pkt *k, uint32_t v)
{
	k->p[0] = (uint8_t)(v >> 24);
	k->p[1] = (uint8_t)(v >> 16);
	k->p[2] = (uint8_t)(v >> 8);
	k->p[3] = (uint8_t)v;
}

/* A StartupMessage: length, VERSION, the NULL-terminated name/value list
 * KV, and the final terminator. */
static struct pkt pkt_build(uint32_t version, const char *const *kv)
{
	struct pkt k = {NULL, 0};

	pkt_u32(&k, 0);
	pkt_u32(&k, version);
	for (int i = 0; kv && kv[i]; i++)
		pkt_str(&k, kv[i]);
	pkt_add(&k, "", 1);
	pkt_set_len(&k, (uint32_t)k.len);
	return k;
}

/* A packet of raw bytes after the length word, which is set right. */
static struct pkt pkt_raw(const void *body, size_t len)
{
	struct pkt k = {NULL, 0};

	pkt_u32(&k, 0);
	pkt_add(&k, body, len);
	pkt_set_len(&k, (uint32_t)k.len);
	return k;
}

/* sp's params as "name=value;name=value", in order. */
static void format_params(const struct startup_packet *sp, char *out, size_t size)
{
	size_t n = 0;

	out[0] = '\0';
	for (int i = 0; i < sp->nparams; i++)
		n += (size_t)snprintf(out + n, n < size ? size - n : 0, "%s%s=%s", i ? ";" : "",
		                      sp->params[i].name, sp->params[i].value);
	ck_assert_uint_lt(n, size);
}

static void format_pq_opts(const struct startup_packet *sp, char *out, size_t size)
{
	size_t n = 0;

	out[0] = '\0';
	for (int i = 0; i < sp->npq_opts; i++)
		n += (size_t)snprintf(out + n, n < size ? size - n : 0, "%s%s", i ? ";" : "",
		                      sp->pq_opts[i]);
	ck_assert_uint_lt(n, size);
}

/* ---- accepted StartupMessages ------------------------------------------ */

static const struct {
	const char *what;
	uint32_t version;
	const char *kv[16];   /* name, value, ..., NULL */
	const char *user;     /* expected */
	const char *database; /* expected */
	const char *params;   /* expected, "name=value;..." in order */
	const char *pq_opts;  /* expected, "name;..." */
} ok_cases[] = {
        {"user, database and parameters",
         V3_0,
         {"user", "bob", "database", "app", "application_name", "psql", "client_encoding", "UTF8",
          NULL},
         "bob",
         "app",
         "application_name=psql;client_encoding=UTF8",
         ""},
        {"order does not matter",
         V3_0,
         {"application_name", "x", "database", "app", "user", "bob", NULL},
         "bob",
         "app",
         "application_name=x",
         ""},
        {"database defaults to user", V3_0, {"user", "bob", NULL}, "bob", "bob", "", ""},
        {"empty database defaults to user",
         V3_0,
         {"user", "bob", "database", "", NULL},
         "bob",
         "bob",
         "",
         ""},
        {"empty parameter value",
         V3_0,
         {"user", "bob", "application_name", "", NULL},
         "bob",
         "bob",
         "application_name=",
         ""},
        {"protocol 3.2 is accepted", V3_2, {"user", "bob", NULL}, "bob", "bob", "", ""},
        {"a newer 3.x is left to negotiation (libpq grease 3.9999)",
         0x0003270fu,
         {"user", "bob", "_pq_.test_protocol_negotiation", "", NULL},
         "bob",
         "bob",
         "",
         "_pq_.test_protocol_negotiation"},
        {"_pq_ options are collected, not parameters",
         V3_0,
         {"user", "bob", "_pq_.foo", "1", "search_path", "s", "_pq_.bar", "x", NULL},
         "bob",
         "bob",
         "search_path=s",
         "_pq_.foo;_pq_.bar"},
        {"replication=false",
         V3_0,
         {"user", "bob", "replication", "false", NULL},
         "bob",
         "bob",
         "",
         ""},
        {"replication=off",
         V3_0,
         {"user", "bob", "replication", "off", NULL},
         "bob",
         "bob",
         "",
         ""},
        {"replication=0", V3_0, {"user", "bob", "replication", "0", NULL}, "bob", "bob", "", ""},
        {"replication=no", V3_0, {"user", "bob", "replication", "no", NULL}, "bob", "bob", "", ""},
        {"duplicate parameter: the later wins",
         V3_0,
         {"user", "bob", "search_path", "a", "application_name", "x", "search_path", "b", NULL},
         "bob",
         "bob",
         "search_path=b;application_name=x",
         ""},
        {"duplicate parameter, other case: one setting",
         V3_0,
         {"user", "bob", "DateStyle", "ISO", "datestyle", "SQL", NULL},
         "bob",
         "bob",
         "DateStyle=SQL",
         ""},
        {"63-byte names", V3_0, {"user", NAME63, "database", NAME63, NULL}, NAME63, NAME63, "", ""},
        {"63-byte parameter name",
         V3_0,
         {"user", "bob", NAME63, "v", NULL},
         "bob",
         "bob",
         NAME63 "=v",
         ""},
        /* the options parameter */
        {"options -c a=b",
         V3_0,
         {"user", "bob", "options", "-c a=b", NULL},
         "bob",
         "bob",
         "a=b",
         ""},
        {"options -ca=b", V3_0, {"user", "bob", "options", "-ca=b", NULL}, "bob", "bob", "a=b", ""},
        {"options --a-b=c",
         V3_0,
         {"user", "bob", "options", "--a-b=c", NULL},
         "bob",
         "bob",
         "a_b=c",
         ""},
        {"options -c a-b=c (dashes become underscores here too)",
         V3_0,
         {"user", "bob", "options", "-c a-b=c", NULL},
         "bob",
         "bob",
         "a_b=c",
         ""},
        {"options: escaped space",
         V3_0,
         {"user", "bob", "options", "-c search_path=a\\ b", NULL},
         "bob",
         "bob",
         "search_path=a b",
         ""},
        {"options: escaped backslash",
         V3_0,
         {"user", "bob", "options", "-c x=a\\\\b", NULL},
         "bob",
         "bob",
         "x=a\\b",
         ""},
        {"options: multiple settings, extra blanks",
         V3_0,
         {"user", "bob", "options", "  -c a=1\t-cb=2   --c-d=3 -c e=  ", NULL},
         "bob",
         "bob",
         "a=1;b=2;c_d=3;e=",
         ""},
        {"options: value keeps its '='",
         V3_0,
         {"user", "bob", "options", "-c x=a=b", NULL},
         "bob",
         "bob",
         "x=a=b",
         ""},
        {"options next to ordinary parameters",
         V3_0,
         {"user", "bob", "application_name", "app", "options", "-c statement_timeout=5s", NULL},
         "bob",
         "bob",
         "application_name=app;statement_timeout=5s",
         ""},
        {"options: empty", V3_0, {"user", "bob", "options", "", NULL}, "bob", "bob", "", ""},
        {"options: blanks only",
         V3_0,
         {"user", "bob", "options", " \t ", NULL},
         "bob",
         "bob",
         "",
         ""},
        {"options: the same setting twice, the later wins",
         V3_0,
         {"user", "bob", "options", "-c a=1 -c a=2", NULL},
         "bob",
         "bob",
         "a=2",
         ""},
};

START_TEST(test_startup_ok)
{
	struct pkt k = pkt_build(ok_cases[_i].version, ok_cases[_i].kv);
	struct startup_packet sp;
	const char *err = NULL, *sqlstate = NULL;
	char buf[1024];

	int rc = startup_parse(k.p, k.len, &sp, &err, &sqlstate);
	ck_assert_msg(rc == 0, "%s: %s (%s)", ok_cases[_i].what, err ? err : "-",
	              sqlstate ? sqlstate : "-");
	ck_assert_int_eq(sp.kind, STARTUP_MESSAGE);
	ck_assert_uint_eq(sp.version, ok_cases[_i].version);
	ck_assert_str_eq(sp.user, ok_cases[_i].user);
	ck_assert_str_eq(sp.database, ok_cases[_i].database);
	format_params(&sp, buf, sizeof(buf));
	ck_assert_msg(strcmp(buf, ok_cases[_i].params) == 0, "%s: params \"%s\", want \"%s\"",
	              ok_cases[_i].what, buf, ok_cases[_i].params);
	format_pq_opts(&sp, buf, sizeof(buf));
	ck_assert_msg(strcmp(buf, ok_cases[_i].pq_opts) == 0, "%s: pq_opts \"%s\", want \"%s\"",
	              ok_cases[_i].what, buf, ok_cases[_i].pq_opts);
	/* nothing reserved leaks into the parameters to SET */
	for (int i = 0; i < sp.nparams; i++) {
		ck_assert_str_ne(sp.params[i].name, "user");
		ck_assert_str_ne(sp.params[i].name, "database");
		ck_assert_str_ne(sp.params[i].name, "options");
		ck_assert_str_ne(sp.params[i].name, "replication");
		ck_assert(strncmp(sp.params[i].name, "_pq_.", 5) != 0);
	}
	startup_cleanup(&sp);
	free(k.p);
}
END_TEST

/* ---- refused StartupMessages ------------------------------------------- */

static const struct {
	const char *what;
	uint32_t version;
	const char *kv[16];
	const char *sqlstate;
} err_cases[] = {
        {"protocol 2.0", 0x00020000u, {"user", "bob", NULL}, "0A000"},
        {"protocol 4.0", 0x00040000u, {"user", "bob", NULL}, "0A000"},
        {"protocol 1.0", 0x00010000u, {"user", "bob", NULL}, "0A000"},
        {"protocol 0.0", 0, {"user", "bob", NULL}, "0A000"},
        {"protocol 0xffff.0", 0xffff0000u, {"user", "bob", NULL}, "0A000"},
        {"replication=database", V3_0, {"user", "bob", "replication", "database", NULL}, "0A000"},
        {"replication=true", V3_0, {"user", "bob", "replication", "true", NULL}, "0A000"},
        {"replication=on", V3_0, {"user", "bob", "replication", "on", NULL}, "0A000"},
        {"replication=1", V3_0, {"user", "bob", "replication", "1", NULL}, "0A000"},
        {"missing user", V3_0, {"database", "app", NULL}, "28000"},
        {"no parameters at all", V3_0, {NULL}, "28000"},
        {"empty user", V3_0, {"user", "", "database", "app", NULL}, "28000"},
        {"user is case-sensitive: USER is no user", V3_0, {"USER", "bob", NULL}, "28000"},
        {"duplicate user", V3_0, {"user", "bob", "user", "alice", NULL}, "08P01"},
        {"duplicate user, same value", V3_0, {"user", "bob", "user", "bob", NULL}, "08P01"},
        {"duplicate database",
         V3_0,
         {"user", "bob", "database", "a", "database", "b", NULL},
         "08P01"},
        {"64-byte user", V3_0, {"user", NAME64, NULL}, "08P01"},
        {"64-byte user as the default database",
         V3_0,
         {"user", NAME64, "database", "app", NULL},
         "08P01"},
        {"64-byte database", V3_0, {"user", "bob", "database", NAME64, NULL}, "08P01"},
        {"64-byte parameter name", V3_0, {"user", "bob", NAME64, "v", NULL}, "08P01"},
        /* options that are not -c / -- settings */
        {"options -x", V3_0, {"user", "bob", "options", "-x", NULL}, "08P01"},
        {"options -c with nothing after", V3_0, {"user", "bob", "options", "-c", NULL}, "08P01"},
        {"options -c with blanks after", V3_0, {"user", "bob", "options", "-c   ", NULL}, "08P01"},
        {"options -c noequals", V3_0, {"user", "bob", "options", "-c noequals", NULL}, "08P01"},
        {"options --noequals", V3_0, {"user", "bob", "options", "--noequals", NULL}, "08P01"},
        {"options -c =value", V3_0, {"user", "bob", "options", "-c =v", NULL}, "08P01"},
        {"options --", V3_0, {"user", "bob", "options", "--", NULL}, "08P01"},
        {"options: a bare word", V3_0, {"user", "bob", "options", "geqo=off", NULL}, "08P01"},
        {"options: good then bad", V3_0, {"user", "bob", "options", "-c a=b -x", NULL}, "08P01"},
        {"options: 64-byte name",
         V3_0,
         {"user", "bob", "options", "-c " NAME64 "=v", NULL},
         "08P01"},
        /* a bad options value is refused even if the user is missing too */
        {"options -x, no user", V3_0, {"options", "-x", NULL}, NULL},
};

START_TEST(test_startup_err)
{
	struct pkt k = pkt_build(err_cases[_i].version, err_cases[_i].kv);
	struct startup_packet sp;
	const char *err = NULL, *sqlstate = NULL;

	ck_assert_msg(startup_parse(k.p, k.len, &sp, &err, &sqlstate) == -1, "%s: accepted",
	              err_cases[_i].what);
	ck_assert_ptr_nonnull(err);
	ck_assert_ptr_nonnull(sqlstate);
	if (err_cases[_i].sqlstate)
		ck_assert_msg(strcmp(sqlstate, err_cases[_i].sqlstate) == 0, "%s: %s (%s), want %s",
		              err_cases[_i].what, sqlstate, err, err_cases[_i].sqlstate);
	startup_cleanup(&sp);
	free(k.p);
}
END_TEST

/* ---- malformed packets (raw bytes) ------------------------------------- */

#define RAW(lit) lit, sizeof(lit) - 1
#define VER30    "\0\3\0\0"

static const struct {
	const char *what;
	const char *body; /* after the length word */
	size_t body_len;
	int64_t len_delta; /* added to the correct length word */
} raw_cases[] = {
        {"missing terminator", RAW(VER30 "user\0bob\0"), 0},
        {"missing value", RAW(VER30 "user\0bob\0database\0"), 0},
        {"unterminated name", RAW(VER30 "user\0bob\0data"), 0},
        {"unterminated value", RAW(VER30 "user\0bo"), 0},
        {"version only", RAW(VER30), 0},
        {"trailing bytes", RAW(VER30 "user\0bob\0\0xyz"), 0},
        {"trailing NUL", RAW(VER30 "user\0bob\0\0\0"), 0},
        {"trailing pair", RAW(VER30 "user\0bob\0\0a\0b\0\0"), 0},
        {"length word one too big", RAW(VER30 "user\0bob\0\0"), 1},
        {"length word one too small", RAW(VER30 "user\0bob\0\0"), -1},
        {"length word 0", RAW(VER30 "user\0bob\0\0"), -18},
        {"length word 0xffffffff", RAW(VER30 "user\0bob\0\0"), 0xffffffffll - 18},
        {"SSLRequest with a body", RAW("\x04\xd2\x16\x2f\0\0\0\0"), 0},
        {"GSSENCRequest with a body", RAW("\x04\xd2\x16\x30\0"), 0},
        {"CancelRequest, short", RAW("\x04\xd2\x16\x2e\0\0\0\1"), 0},
        {"CancelRequest, long", RAW("\x04\xd2\x16\x2e\0\0\0\1\0\0\0\2\0\0\0\3"), 0},
        {"CancelRequest, 3.2-style 32-byte key",
         RAW("\x04\xd2\x16\x2e\0\0\0\1"
             "0123456789abcdef0123456789abcdef"),
         0},
};

START_TEST(test_startup_raw)
{
	struct pkt k = pkt_raw(raw_cases[_i].body, raw_cases[_i].body_len);
	struct startup_packet sp;
	const char *err = NULL, *sqlstate = NULL;

	pkt_set_len(&k, (uint32_t)((int64_t)k.len + raw_cases[_i].len_delta));
	ck_assert_msg(startup_parse(k.p, k.len, &sp, &err, &sqlstate) == -1, "%s: accepted",
	              raw_cases[_i].what);
	ck_assert_ptr_nonnull(err);
	ck_assert_msg(strcmp(sqlstate, "08P01") == 0, "%s: %s (%s)", raw_cases[_i].what, sqlstate,
	              err);
	startup_cleanup(&sp);
	free(k.p);
}
END_TEST

/* Packets shorter than 8 bytes, each with a length word that matches. */
START_TEST(test_startup_too_short)
{
	static const uint8_t full[8] = {0, 0, 0, 0, 0x04, 0xd2, 0x16, 0x2f};
	size_t len = (size_t)_i;
	uint8_t tmp[8];
	struct startup_packet sp;
	const char *err = NULL, *sqlstate = NULL;

	memcpy(tmp, full, sizeof(tmp));
	tmp[3] = (uint8_t)len;
	uint8_t *p = malloc(len ? len : 1);
	ck_assert_ptr_nonnull(p);
	memcpy(p, tmp, len);
	ck_assert_int_eq(startup_parse(p, len, &sp, &err, &sqlstate), -1);
	ck_assert_str_eq(sqlstate, "08P01");
	startup_cleanup(&sp);
	free(p);
}
END_TEST

/* A packet of exactly PROTO_STARTUP_MAX_LEN bytes is accepted; one byte
 * more is refused before it is looked at. */
START_TEST(test_startup_size_limit)
{
	for (size_t total = PROTO_STARTUP_MAX_LEN - 1; total <= PROTO_STARTUP_MAX_LEN + 1;
	     total++) {
		/* 8 + "user\0bob\0" (9) + "application_name\0" (17) + value + NUL + NUL */
		size_t vlen = total - 8 - 9 - 17 - 2;
		char *value = malloc(vlen + 1);
		ck_assert_ptr_nonnull(value);
		memset(value, 'v', vlen);
		value[vlen] = '\0';
		const char *kv[] = {"user", "bob", "application_name", value, NULL};
		struct pkt k = pkt_build(V3_0, kv);
		struct startup_packet sp;
		const char *err = NULL, *sqlstate = NULL;

		ck_assert_uint_eq(k.len, total);
		int rc = startup_parse(k.p, k.len, &sp, &err, &sqlstate);
		if (total <= PROTO_STARTUP_MAX_LEN) {
			ck_assert_msg(rc == 0, "%zu bytes: %s", total, err);
			ck_assert_int_eq(sp.nparams, 1);
			ck_assert_uint_eq(strlen(sp.params[0].value), vlen);
		} else {
			ck_assert_int_eq(rc, -1);
			ck_assert_str_eq(sqlstate, "08P01");
		}
		startup_cleanup(&sp);
		free(k.p);
		free(value);
	}
}
END_TEST

/* ---- SSLRequest, GSSENCRequest, CancelRequest --------------------------- */

static const struct {
	const char *what;
	const char *bytes; /* the whole packet */
	size_t len;
	enum startup_kind kind;
	uint32_t pid, key; /* CancelRequest */
} special_cases[] = {
        /* 80877103 = 1234 << 16 | 5679 */
        {"SSLRequest", RAW("\0\0\0\x08\x04\xd2\x16\x2f"), STARTUP_SSL, 0, 0},
        /* 80877104 = 1234 << 16 | 5680 */
        {"GSSENCRequest", RAW("\0\0\0\x08\x04\xd2\x16\x30"), STARTUP_GSSENC, 0, 0},
        /* 80877102 = 1234 << 16 | 5678 */
        {"CancelRequest", RAW("\0\0\0\x10\x04\xd2\x16\x2e\x01\x02\x03\x04\xfe\xdc\xba\x98"),
         STARTUP_CANCEL, 0x01020304u, 0xfedcba98u},
        {"CancelRequest, zero pid and key", RAW("\0\0\0\x10\x04\xd2\x16\x2e\0\0\0\0\0\0\0\0"),
         STARTUP_CANCEL, 0, 0},
        {"CancelRequest, all ones",
         RAW("\0\0\0\x10\x04\xd2\x16\x2e\xff\xff\xff\xff\xff\xff\xff\xff"), STARTUP_CANCEL,
         0xffffffffu, 0xffffffffu},
};

START_TEST(test_startup_special)
{
	size_t len = special_cases[_i].len;
	uint8_t *p = malloc(len);
	struct startup_packet sp;
	const char *err = NULL, *sqlstate = NULL;

	ck_assert_ptr_nonnull(p);
	memcpy(p, special_cases[_i].bytes, len);
	ck_assert_msg(startup_parse(p, len, &sp, &err, &sqlstate) == 0, "%s: %s",
	              special_cases[_i].what, err);
	ck_assert_int_eq(sp.kind, special_cases[_i].kind);
	ck_assert_uint_eq(sp.cancel_pid, special_cases[_i].pid);
	ck_assert_uint_eq(sp.cancel_key, special_cases[_i].key);
	ck_assert_ptr_null(sp.user);
	ck_assert_ptr_null(sp.database);
	ck_assert_int_eq(sp.nparams, 0);
	startup_cleanup(&sp);
	free(p);
}
END_TEST

/* ---- limits on counts -------------------------------------------------- */

/* Parameters p0..p(N-1) with the user: up to STARTUP_MAX_PARAMS fit, one
 * more is refused without a crash. _i selects how many: the limit or one
 * more, as distinct parameters, as options settings, or as _pq_ options. */
enum count_kind { COUNT_PARAMS, COUNT_OPTIONS, COUNT_PQ };

static const struct {
	enum count_kind kind;
	int n;
	bool ok;
} count_cases[] = {
        {COUNT_PARAMS, STARTUP_MAX_PARAMS, true},
        {COUNT_PARAMS, STARTUP_MAX_PARAMS + 1, false},
        {COUNT_PARAMS, STARTUP_MAX_PARAMS * 2, false},
        {COUNT_OPTIONS, STARTUP_MAX_PARAMS, true},
        {COUNT_OPTIONS, STARTUP_MAX_PARAMS + 1, false},
        {COUNT_PQ, STARTUP_MAX_PARAMS, true},
        {COUNT_PQ, STARTUP_MAX_PARAMS + 1, false},
};

START_TEST(test_startup_counts)
{
	enum count_kind kind = count_cases[_i].kind;
	int n = count_cases[_i].n;
	struct pkt k = {NULL, 0};
	char name[32], options[4096] = "";
	size_t olen = 0;

	pkt_u32(&k, 0);
	pkt_u32(&k, V3_0);
	pkt_str(&k, "user");
	pkt_str(&k, "bob");
	for (int i = 0; i < n; i++) {
		switch (kind) {
		case COUNT_PARAMS:
			snprintf(name, sizeof(name), "p%d", i);
			pkt_str(&k, name);
			pkt_str(&k, "v");
			break;
		case COUNT_OPTIONS:
			olen += (size_t)snprintf(options + olen, sizeof(options) - olen,
			                         "-c p%d=v ", i);
			ck_assert_uint_lt(olen, sizeof(options));
			break;
		case COUNT_PQ:
			snprintf(name, sizeof(name), "_pq_.o%d", i);
			pkt_str(&k, name);
			pkt_str(&k, "1");
			break;
		}
	}
	if (kind == COUNT_OPTIONS) {
		pkt_str(&k, "options");
		pkt_str(&k, options);
	}
	pkt_add(&k, "", 1);
	pkt_set_len(&k, (uint32_t)k.len);

	struct startup_packet sp;
	const char *err = NULL, *sqlstate = NULL;
	int rc = startup_parse(k.p, k.len, &sp, &err, &sqlstate);
	if (count_cases[_i].ok) {
		ck_assert_msg(rc == 0, "kind %d n %d: %s", kind, n, err);
		ck_assert_int_eq(kind == COUNT_PQ ? sp.npq_opts : sp.nparams, n);
	} else {
		ck_assert_int_eq(rc, -1);
		ck_assert_str_eq(sqlstate, "08P01");
		ck_assert_int_le(sp.nparams, STARTUP_MAX_PARAMS);
		ck_assert_int_le(sp.npq_opts, STARTUP_MAX_PARAMS);
	}
	startup_cleanup(&sp);
	free(k.p);
}
END_TEST

/* A repeated parameter does not use up a slot: the limit counts distinct
 * names. */
START_TEST(test_startup_repeats_do_not_count)
{
	struct pkt k = {NULL, 0};
	struct startup_packet sp;
	const char *err = NULL, *sqlstate = NULL;

	pkt_u32(&k, 0);
	pkt_u32(&k, V3_0);
	pkt_str(&k, "user");
	pkt_str(&k, "bob");
	for (int i = 0; i < STARTUP_MAX_PARAMS * 3; i++) {
		char value[16];
		snprintf(value, sizeof(value), "%d", i);
		pkt_str(&k, "search_path");
		pkt_str(&k, value);
	}
	pkt_add(&k, "", 1);
	pkt_set_len(&k, (uint32_t)k.len);
	ck_assert_int_eq(startup_parse(k.p, k.len, &sp, &err, &sqlstate), 0);
	ck_assert_int_eq(sp.nparams, 1);
	ck_assert_str_eq(sp.params[0].value, "191");
	startup_cleanup(&sp);
	free(k.p);
}
END_TEST

/* ---- startup_parse_options directly ------------------------------------ */

static const struct {
	const char *options;
	int rc;
	const char *params; /* on success */
} options_cases[] = {
        {"-c a=b", 0, "a=b"},
        {"-ca=b", 0, "a=b"},
        {"--a-b=c", 0, "a_b=c"},
        {"-c search_path=a\\ b", 0, "search_path=a b"},
        {"-c a=1 -c b=2 --c=3 -cd=4", 0, "a=1;b=2;c=3;d=4"},
        {"-c a=\\-c", 0, "a=-c"},
        {"-c a=x\\ -c\\ b=y", 0, "a=x -c b=y"}, /* escaped blanks do not split */
        {"", 0, ""},
        {"-x", -1, NULL},
        {"-c", -1, NULL},
        {"-c noequals", -1, NULL},
        {"-c=b", -1, NULL},
        {"--=b", -1, NULL},
        {"-c a=b junk", -1, NULL},
        {"-d 5", -1, NULL},
        {"-xa=b", -1, NULL}, /* only -c takes a glued setting */
        {"-Da=b", -1, NULL},
        {"-S 1024", -1, NULL}, /* other postgres switches are refused */
};

START_TEST(test_parse_options)
{
	struct startup_packet sp;
	char buf[512];

	memset(&sp, 0, sizeof(sp));
	int rc = startup_parse_options(&sp, options_cases[_i].options);
	ck_assert_msg(rc == options_cases[_i].rc, "\"%s\": rc %d", options_cases[_i].options, rc);
	if (rc == 0) {
		format_params(&sp, buf, sizeof(buf));
		ck_assert_str_eq(buf, options_cases[_i].params);
	}
	startup_cleanup(&sp);
}
END_TEST

/* ---- startup_cleanup --------------------------------------------------- */

START_TEST(test_cleanup_safe)
{
	struct startup_packet sp;
	const char *err = NULL, *sqlstate = NULL;

	/* a zeroed packet, twice */
	memset(&sp, 0, sizeof(sp));
	startup_cleanup(&sp);
	startup_cleanup(&sp);

	/* a parse that failed after allocating user, database, params and
	 * _pq_ options: cleanup frees them (valgrind checks) and can repeat */
	const char *kv[] = {"user",   "bob", "database", "app",       "a", "1",
	                    "_pq_.x", "1",   "options",  "-c b=2 -x", NULL};
	struct pkt k = pkt_build(V3_0, kv);
	ck_assert_int_eq(startup_parse(k.p, k.len, &sp, &err, &sqlstate), -1);
	startup_cleanup(&sp);
	ck_assert_ptr_null(sp.user);
	ck_assert_int_eq(sp.nparams, 0);
	startup_cleanup(&sp);
	free(k.p);

	/* startup_parse does not trust the caller's struct: garbage in it is
	 * overwritten, not freed */
	memset(&sp, 0xa5, sizeof(sp));
	const char *kv2[] = {"user", "bob", NULL};
	k = pkt_build(V3_0, kv2);
	ck_assert_int_eq(startup_parse(k.p, k.len, &sp, &err, &sqlstate), 0);
	startup_cleanup(&sp);
	free(k.p);

	/* and a failure before anything was allocated */
	static const uint8_t tiny[3] = {0, 0, 3};
	memset(&sp, 0xa5, sizeof(sp));
	ck_assert_int_eq(startup_parse(tiny, sizeof(tiny), &sp, &err, &sqlstate), -1);
	startup_cleanup(&sp);
}
END_TEST

/* ---- options precedence ------------------------------------------------ */

/* PostgreSQL applies the options parameter first and the other startup
 * parameters after it (process_startup_options in postinit.c), so an
 * explicit parameter wins over the same setting in options, whatever their
 * order in the packet. */
static const struct {
	const char *kv[8];
	const char *params;
} precedence_cases[] = {
        {{"user", "bob", "search_path", "explicit", "options", "-c search_path=opt", NULL},
         "search_path=explicit"},
        {{"user", "bob", "options", "-c search_path=opt", "search_path", "explicit", NULL},
         "search_path=explicit"},
};

START_TEST(test_options_precedence)
{
	struct pkt k = pkt_build(V3_0, precedence_cases[_i].kv);
	struct startup_packet sp;
	const char *err = NULL, *sqlstate = NULL;
	char buf[256];

	ck_assert_int_eq(startup_parse(k.p, k.len, &sp, &err, &sqlstate), 0);
	format_params(&sp, buf, sizeof(buf));
	ck_assert_str_eq(buf, precedence_cases[_i].params);
	startup_cleanup(&sp);
	free(k.p);
}
END_TEST

static Suite *startup_suite(void)
{
	Suite *s = suite_create("startup");
	TCase *tc;

	tc = tcase_create("accept");
	tcase_add_loop_test(tc, test_startup_ok, 0, N_ELEMS(ok_cases));
	tcase_add_loop_test(tc, test_startup_special, 0, N_ELEMS(special_cases));
	suite_add_tcase(s, tc);

	tc = tcase_create("refuse");
	tcase_add_loop_test(tc, test_startup_err, 0, N_ELEMS(err_cases));
	tcase_add_loop_test(tc, test_startup_raw, 0, N_ELEMS(raw_cases));
	tcase_add_loop_test(tc, test_startup_too_short, 0, 8);
	tcase_add_test(tc, test_startup_size_limit);
	suite_add_tcase(s, tc);

	tc = tcase_create("counts");
	tcase_add_loop_test(tc, test_startup_counts, 0, N_ELEMS(count_cases));
	tcase_add_test(tc, test_startup_repeats_do_not_count);
	suite_add_tcase(s, tc);

	tc = tcase_create("options");
	tcase_add_loop_test(tc, test_parse_options, 0, N_ELEMS(options_cases));
	suite_add_tcase(s, tc);

	tc = tcase_create("cleanup");
	tcase_add_test(tc, test_cleanup_safe);
	suite_add_tcase(s, tc);

	tc = tcase_create("precedence");
	tcase_add_loop_test(tc, test_options_precedence, 0, N_ELEMS(precedence_cases));
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(startup_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
