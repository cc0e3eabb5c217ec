/* libFuzzer harness: the server message stream, as server.c's
 * server_read_cb, handle_active_msg and handle_internal_msg and
 * server_login.c's handle_login_msg/handle_auth read it. A client runs a
 * fixed, realistic pipeline through pgmux while the fake backend's replies
 * come from the input: its honest replies are held back and released,
 * dropped, cut in two or mixed with crafted messages (ReadyForQuery,
 * ErrorResponse, ParameterStatus, CopyInResponse, CommandComplete, rows,
 * authentication requests...) in any order and shape.
 *
 * Input, structured form: a header byte 0x80..0xBF (or 0xC0..0xEF plus a
 * second byte for the login variants), then script ops (below).
 *   header & 0x07: the client's pipeline
 *     0 simple queries and a transaction   1 extended: unnamed, named,
 *     2 a pipeline with an error              Describe, row limits, Flush
 *     3 COPY FROM STDIN by Query, CopyFail 4 COPY by Execute, COPY TO STDOUT
 *     5 two clients with different startup parameters: pgmux syncs them
 *       with its own query on the shared server (pool_size = 1)
 *     6 as 0 in pool_mode = session        7 a client that leaves inside a
 *                                            transaction (pgmux's ROLLBACK)
 *   header & 0x08: the script starts at the server's login too
 *   header & 0x30: backend authentication when it does: trust, cleartext,
 *     md5, SCRAM-SHA-256 (the login's replies are scripted then: AuthenticationXXX
 *     requests, SASL exchange, ParameterStatus, BackendKeyData, ReadyForQuery)
 *   header & 0x40 (then a second byte): the login user (byte & 3: plain,
 *     md5user, scramuser) and how the client logs in to pgmux ((byte >> 2)
 *     & 3: trust, md5, SCRAM-SHA-256), for server_login.c's secrets (a SCRAM
 *     verifier works only after a client's own SCRAM login)
 * Raw form: an input whose first byte is a backend message type letter is
 * a captured server stream. Anything up to its first ReadyForQuery that
 * looks like a login is dropped (the rig logs in itself), the rest is cut
 * after each ReadyForQuery, and each piece is sent when pgmux has asked
 * for something; the client sends, for each piece, the requests those
 * replies answer (Parse for ParseComplete, Bind, Describe, Execute, Sync;
 * a Query for a simple-protocol piece; copy data after a CopyInResponse).
 *
 * Script ops (one byte each, then their arguments; a loop turn runs after
 * each op; a byte past 0x30 is taken modulo 0x30):
 *   00 release every held reply       01..0F release that many
 *   10..17 drop 1..8 held replies      18 n: release n bytes of the next
 *   19 t l body: a message, 1-byte length   1A t hh ll body: 2-byte length
 *   1B l bytes: raw bytes              1C s: ReadyForQuery ('I','T','E', or s)
 *   1D v c r: ErrorResponse (severity, SQLSTATE, routine from tables)
 *   1E n v: ParameterStatus            1F t: CommandComplete (tag table)
 *   20 f n: CopyInResponse             21: RowDescription
 *   22 s: DataRow of a size (0 .. 1100000 bytes)
 *   23 t: a message without a body (1 2 3 n s I c)
 *   24 k: NoticeResponse / NotificationResponse   25: BackendKeyData
 *   26 c: Authentication request (0 3 5 10 11 12 2 7 8 9)
 *   27 k: CopyOutResponse / CopyData / CopyDone   28: NegotiateProtocolVersion
 *   29 n: ParameterDescription
 *   2A the client sends its next group now (it also does by itself once
 *      what it sent is answered)
 *   2B the client disconnects (a new one takes the next group)
 *   2C the backend closes the connection   2D FATAL, then it closes
 *   2E run until settled                   2F end of script (honest from here)
 * When the script ends the backend answers honestly and the client sends
 * the rest of its pipeline. Seeds: corpus/fuzz_server_stream: rig-* hand-made,
 * rig-found-* kept from long fuzz runs, cap-* captured by
 * capture/make_seeds.py (raw form). */
#include "fuzz_common.h"
#include "rig.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <string.h>

struct harness {
	struct rig *r;
	struct rig_client *c; /* the pipeline's client */
	int pipeline;
	int group;      /* next group to send */
	bool done;      /* no more groups */
	int want_ready; /* ReadyForQuery due for what it sent */
	int copy_seen;
	const char *user;
	bool params; /* the client has startup parameters */
};

static const char *const pnames[] = {"application_name", "DateStyle"};
static const char *const pvalues[] = {"stream", "SQL, DMY"};

static void connect_client(struct harness *h, bool params)
{
	h->c = rig_client_new(h->r);
	if (!h->c)
		return;
	h->params = params;
	if (rig_client_login(h->c, h->user, RIG_PASSWORD, params ? pnames : NULL,
	                     params ? pvalues : NULL, params ? 2 : 0) < 0) {
		/* scripted login replies may refuse it: nothing more to send */
		h->done = true;
	}
	h->want_ready = rig_client_seen(h->c)->ready;
	h->copy_seen = rig_client_seen(h->c)->copy_in;
}

/* Send group G of pipeline P on C. Returns false if there is none. */
static bool send_group(struct harness *h, struct rig_client *c, int p, int g)
{
	switch (p) {
	case 0:
	case 6:
		switch (g) {
		case 0:
			rig_send_query(c, "SELECT 1");
			return true;
		case 1:
			rig_send_query(c, "BEGIN");
			return true;
		case 2:
			rig_send_query(c, "UPDATE t SET x = 1");
			return true;
		case 3:
			rig_send_query(c, "COMMIT");
			return true;
		case 4:
			rig_send_query(c, "SELECT 2; SET application_name = 'x'");
			return true;
		}
		return false;
	case 1:
		switch (g) {
		case 0:
			rig_send_parse(c, "", "SELECT $1", 1);
			rig_send_bind(c, "", "", 1);
			rig_send_describe(c, 'P', "");
			rig_send_execute(c, "", 0);
			rig_send_sync(c);
			return true;
		case 1:
			rig_send_parse(c, "s1", "SELECT generate_series(1, 3)", 0);
			rig_send_describe(c, 'S', "s1");
			rig_send_sync(c);
			return true;
		case 2:
			rig_send_bind(c, "p1", "s1", 0);
			rig_send_execute(c, "p1", 1);
			rig_send_flush(c);
			return true;
		case 3:
			rig_send_execute(c, "p1", 0);
			rig_send_sync(c);
			return true;
		case 4:
			rig_send_bind(c, "", "s1", 0);
			rig_send_execute(c, "", 0);
			rig_send_close(c, 'S', "s1");
			rig_send_sync(c);
			return true;
		}
		return false;
	case 2:
		switch (g) {
		case 0:
			rig_send_parse(c, "", "SELECT 1", 0);
			rig_send_bind(c, "", "", 0);
			rig_send_execute(c, "", 0);
			rig_send_sync(c);
			rig_send_parse(c, "", "SELECT error", 0);
			rig_send_bind(c, "", "", 0);
			rig_send_execute(c, "", 0);
			rig_send_sync(c);
			rig_send_parse(c, "s2", "SELECT 3", 0);
			rig_send_bind(c, "", "s2", 0);
			rig_send_execute(c, "", 0);
			rig_send_sync(c);
			return true;
		case 1:
			rig_send_query(c, "BEGIN");
			return true;
		case 2:
			rig_send_bind(c, "", "s2", 0);
			rig_send_execute(c, "", 0);
			rig_send_sync(c);
			rig_send_query(c, "SELECT error");
			return true;
		case 3:
			rig_send_query(c, "ROLLBACK");
			return true;
		}
		return false;
	case 3:
		switch (g) {
		case 0:
			rig_send_query(c, "COPY t FROM STDIN");
			return true;
		case 1:
			rig_send_copy_data(c, "1\n");
			rig_send_copy_data(c, "2\n");
			rig_send_copy_done(c);
			return true;
		case 2:
			rig_send_query(c, "COPY t FROM STDIN");
			return true;
		case 3:
			rig_send_copy_data(c, "3\n");
			rig_send_copy_fail(c, "client gave up");
			return true;
		case 4:
			rig_send_query(c, "SELECT 1");
			return true;
		}
		return false;
	case 4:
		switch (g) {
		case 0:
			rig_send_parse(c, "", "COPY t FROM STDIN", 0);
			rig_send_bind(c, "", "", 0);
			rig_send_describe(c, 'P', "");
			rig_send_execute(c, "", 0);
			rig_send_sync(c);
			return true;
		case 1:
			rig_send_copy_data(c, "1\n");
			rig_send_copy_done(c);
			rig_send_sync(c);
			return true;
		case 2:
			rig_send_query(c, "COPY t TO STDOUT");
			return true;
		}
		return false;
	case 5:
		switch (g) {
		case 0:
			rig_send_query(c, "SELECT 1");
			return true;
		case 1:
			/* another client, other parameters, on the same server */
			rig_client_close(h->c);
			connect_client(h, !h->params);
			if (h->c)
				rig_send_query(h->c, "SELECT 2");
			return true;
		case 2:
			rig_send_query(c, "SET DateStyle = 'German'");
			return true;
		case 3:
			rig_send_query(c, "SELECT 3");
			return true;
		}
		return false;
	case 7:
		switch (g) {
		case 0:
			rig_send_query(c, "BEGIN");
			return true;
		case 1:
			rig_send_query(c, "SELECT 1");
			return true;
		case 2:
			/* gone inside the transaction: pgmux rolls it back */
			rig_client_close(h->c);
			connect_client(h, false);
			if (h->c)
				rig_send_query(h->c, "SELECT 2");
			return true;
		}
		return false;
	}
	return false;
}

static void next_group(struct harness *h)
{
	if (h->done)
		return;
	if (!h->c || rig_client_gone(h->c)) {
		rig_client_close(h->c);
		connect_client(h, h->params);
		if (!h->c || h->done)
			return;
	}
	if (!send_group(h, h->c, h->pipeline, h->group)) {
		h->done = true;
		return;
	}
	h->group++;
	if (h->c) {
		h->want_ready = rig_client_seen(h->c)->ready;
		h->copy_seen = rig_client_seen(h->c)->copy_in;
	}
}

/* A client waits for its answers before it sends the next group. */
static void maybe_next_group(struct harness *h)
{
	if (h->done || !h->c)
		return;
	const struct rig_client_seen *s = rig_client_seen(h->c);
	bool answered = s->ready > h->want_ready || s->copy_in > h->copy_seen;
	if (answered || rig_client_gone(h->c))
		next_group(h);
}

static const char *const sevs[] = {"ERROR", "FATAL", "PANIC", "WARNING", "NOTICE", "ERRORX", NULL};
static const char *const codes[] = {"42601", "0A000", "XX000", "57P01", "08P01",
                                    "25P02", "26000", "42P05", "57014", NULL};
static const char *const routines[] = {"RevalidateCachedQuery", "exec_stmt_raise", NULL};
static const char *const pnames_s[] = {"application_name",
                                       "client_encoding",
                                       "DateStyle",
                                       "TimeZone",
                                       "standard_conforming_strings",
                                       "",
                                       "is_superuser"};
static const char *const pvalues_s[] = {"", "UTF8", "SQL_ASCII", "LATIN1", "ISO, DMY", "off", "x"};
static const char *const tags[] = {
        "SELECT 1", "COMMIT", "ROLLBACK",   "BEGIN", "DEALLOCATE ALL", "DISCARD ALL",
        "SET",      "COPY 3", "INSERT 0 1", "",      "DEALLOCATE",     "RESET"};
static const size_t row_sizes[] = {0, 1, 100, 5000, 65536, 70000, 300000, 1100000};

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void put16(struct evbuffer *b, uint16_t v)
{
	uint16_t n = htons(v);
	evbuffer_add(b, &n, 2);
}

static void put32(struct evbuffer *b, uint32_t v)
{
	uint32_t n = htonl(v);
	evbuffer_add(b, &n, 4);
}

static void inject(struct rig *r, char type, struct evbuffer *b)
{
	size_t n = evbuffer_get_length(b);
	rig_be_inject_msg(r, type, n ? evbuffer_pullup(b, -1) : NULL, n);
	evbuffer_drain(b, n);
}

/* Run one op at DATA[*I]; advances *I. */
static void run_op(struct harness *h, const uint8_t *data, size_t size, size_t *i)
{
	struct rig *r = h->r;
	uint8_t op = data[*i] % 0x30;
	size_t at = *i + 1;
#define ARG(k) (at + (k) < size ? data[at + (k)] : 0)
	struct evbuffer *b = evbuffer_new();
	size_t used = 0;
	if (op == 0x00) {
		rig_be_release(r, -1);
	} else if (op < 0x10) {
		rig_be_release(r, op);
	} else if (op < 0x18) {
		rig_be_drop(r, op - 0x0f);
	} else {
		switch (op) {
		case 0x18:
			rig_be_release_part(r, ARG(0) + 1);
			used = 1;
			break;
		case 0x19: {
			size_t l = ARG(1);
			if (at + 2 + l > size)
				l = at + 2 <= size ? size - at - 2 : 0;
			rig_be_inject_msg(r, (char)ARG(0), data + at + 2, l);
			used = 2 + l;
			break;
		}
		case 0x1a: {
			size_t l = ((size_t)ARG(1) << 8) | ARG(2);
			if (at + 3 + l > size)
				l = at + 3 <= size ? size - at - 3 : 0;
			rig_be_inject_msg(r, (char)ARG(0), data + at + 3, l);
			used = 3 + l;
			break;
		}
		case 0x1b: {
			size_t l = ARG(0);
			if (at + 1 + l > size)
				l = at + 1 <= size ? size - at - 1 : 0;
			rig_be_inject(r, data + at + 1, l);
			used = 1 + l;
			break;
		}
		case 0x1c: {
			static const char st[] = "ITE";
			char s = ARG(0) < 3 * 80 ? st[ARG(0) % 3] : (char)ARG(0);
			rig_be_inject_msg(r, 'Z', &s, 1);
			used = 1;
			break;
		}
		case 0x1d: {
			const char *sev = sevs[ARG(0) % N(sevs)];
			const char *code = codes[ARG(1) % N(codes)];
			const char *rt = routines[ARG(2) % N(routines)];
			if (sev) {
				evbuffer_add(b, "S", 1);
				evbuffer_add(b, sev, strlen(sev) + 1);
				evbuffer_add(b, "V", 1);
				evbuffer_add(b, sev, strlen(sev) + 1);
			}
			if (code) {
				evbuffer_add(b, "C", 1);
				evbuffer_add(b, code, 6);
			}
			evbuffer_add(b, "Mscripted error", 16);
			if (rt) {
				evbuffer_add(b, "R", 1);
				evbuffer_add(b, rt, strlen(rt) + 1);
			}
			if (ARG(0) & 0x80)
				evbuffer_add(b, "Wdangling", 9); /* no NUL, no terminator */
			else
				evbuffer_add(b, "", 1);
			inject(r, 'E', b);
			used = 3;
			break;
		}
		case 0x1e: {
			const char *n = pnames_s[ARG(0) % N(pnames_s)];
			const char *v = pvalues_s[ARG(1) % N(pvalues_s)];
			evbuffer_add(b, n, strlen(n) + 1);
			if (!(ARG(0) & 0x80))
				evbuffer_add(b, v, strlen(v) + 1);
			inject(r, 'S', b);
			used = 2;
			break;
		}
		case 0x1f: {
			const char *t = tags[ARG(0) % N(tags)];
			rig_be_inject_msg(r, 'C', t, strlen(t) + ((ARG(0) & 0x80) ? 0 : 1));
			used = 1;
			break;
		}
		case 0x20:
			evbuffer_add(b, &data[at < size ? at : 0], at < size ? 1 : 0);
			put16(b, (uint16_t)(ARG(1) % 4));
			for (int k = 0; k < ARG(1) % 4; k++)
				put16(b, 0);
			inject(r, 'G', b);
			used = 2;
			break;
		case 0x21:
			put16(b, 1);
			evbuffer_add(b, "c\0", 2);
			put32(b, 0);
			put16(b, 0);
			put32(b, 25);
			put16(b, 0xffff);
			put32(b, 0xffffffffu);
			put16(b, 0);
			inject(r, 'T', b);
			break;
		case 0x22: {
			size_t sz = row_sizes[ARG(0) % N(row_sizes)];
			if (sz > 300000 && rig_avoiding("drain_stall"))
				sz = 300000;
			put16(b, 1);
			put32(b, (uint32_t)sz);
			char fill[4096];
			memset(fill, 'v', sizeof(fill));
			for (size_t left = sz; left > 0;) {
				size_t k = left < sizeof(fill) ? left : sizeof(fill);
				evbuffer_add(b, fill, k);
				left -= k;
			}
			inject(r, 'D', b);
			used = 1;
			break;
		}
		case 0x23: {
			static const char t[] = "123nsIc";
			rig_be_inject_msg(r, t[ARG(0) % 7], NULL, 0);
			used = 1;
			break;
		}
		case 0x24:
			if (ARG(0) & 1) {
				put32(b, 77);
				evbuffer_add(b, "ch\0pl", 6);
				inject(r, 'A', b);
			} else {
				evbuffer_add(b, "SWARNING\0C01000\0Mscripted notice\0", 34);
				inject(r, 'N', b);
			}
			used = 1;
			break;
		case 0x25:
			put32(b, 99);
			put32(b, 100);
			inject(r, 'K', b);
			break;
		case 0x26: {
			static const uint32_t ac[] = {0, 3, 5, 10, 11, 12, 2, 7, 8, 9};
			uint32_t c = ac[ARG(0) % N(ac)];
			put32(b, c);
			if (c == 5)
				evbuffer_add(b, "salt", 4);
			else if (c == 10)
				evbuffer_add(b, "SCRAM-SHA-256\0\0", 15);
			else if (c == 11)
				evbuffer_add(b, "r=bogus,s=c2FsdA==,i=1", 22);
			else if (c == 12)
				evbuffer_add(b, "v=bogus", 7);
			inject(r, 'R', b);
			used = 1;
			break;
		}
		case 0x27:
			switch (ARG(0) % 3) {
			case 0:
				evbuffer_add(b, "", 1);
				put16(b, 0);
				inject(r, 'H', b);
				break;
			case 1:
				rig_be_inject_msg(r, 'd', "row\n", 4);
				break;
			default:
				rig_be_inject_msg(r, 'c', NULL, 0);
				break;
			}
			used = 1;
			break;
		case 0x28:
			put32(b, 0);
			put32(b, 1);
			evbuffer_add(b, "_pq_.x", 7);
			inject(r, 'v', b);
			break;
		case 0x29:
			put16(b, (uint16_t)(ARG(0) % 3));
			for (int k = 0; k < ARG(0) % 3; k++)
				put32(b, 23);
			inject(r, 't', b);
			used = 1;
			break;
		case 0x2a:
			next_group(h);
			break;
		case 0x2b:
			if (h->c)
				rig_client_close(h->c);
			break;
		case 0x2c:
			rig_be_close(r);
			break;
		case 0x2d:
			rig_be_inject_msg(r, 'E',
			                  "SFATAL\0VFATAL\0C57P01\0Mterminating connection\0", 46);
			rig_be_close(r);
			break;
		case 0x2e:
			rig_run(r);
			break;
		case 0x2f:
			*i = size;
			evbuffer_free(b);
			return;
		}
	}
#undef ARG
	evbuffer_free(b);
	*i = at + used;
}

/* ---- raw form ---- */

static uint32_t get32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Send what client C would have sent for the replies in DATA[0..N). */
static void requests_for(struct rig_client *c, const uint8_t *data, size_t n, bool *copying)
{
	bool ext = false, simple_copy = false;
	for (size_t off = 0; off + 5 <= n;) {
		char t = (char)data[off];
		if (t == '1' || t == '2' || t == 't' || t == 's')
			ext = true;
		off += 1 + (size_t)get32(data + off + 1);
	}
	bool described = false;
	for (size_t off = 0; off + 5 <= n;) {
		char t = (char)data[off];
		uint32_t len = get32(data + off + 1);
		if (len < 4)
			break;
		switch (t) {
		case '1':
			rig_send_parse(c, "", "SELECT 1", 0);
			break;
		case '2':
			rig_send_bind(c, "", "", 0);
			break;
		case 't':
			rig_send_describe(c, 'S', "");
			described = true;
			break;
		case 'T':
		case 'n':
			if (ext && !described)
				rig_send_describe(c, 'P', "");
			described = false;
			break;
		case 'C':
		case 's':
		case 'I':
			if (ext)
				rig_send_execute(c, "", 0);
			break;
		case '3':
			rig_send_close(c, 'S', "");
			break;
		case 'G':
			if (!ext) {
				rig_send_query(c, "COPY t FROM STDIN");
				simple_copy = true;
			} else {
				rig_send_execute(c, "", 0);
			}
			*copying = true;
			break;
		case 'Z':
			if (ext)
				rig_send_sync(c);
			else if (!simple_copy)
				rig_send_query(c, "SELECT 1");
			simple_copy = false;
			break;
		}
		off += 1 + (size_t)len;
	}
}

static void run_raw(struct harness *h, const uint8_t *data, size_t size)
{
	struct rig *r = h->r;
	size_t off = 0;
	/* a captured login: up to and including the first ReadyForQuery */
	if (size >= 5 && data[0] == 'R') {
		size_t o = 0;
		while (o + 5 <= size) {
			uint32_t len = get32(data + o + 1);
			if (len < 4)
				break;
			bool z = data[o] == 'Z';
			o += 1 + (size_t)len;
			if (z) {
				off = o < size ? o : size;
				break;
			}
		}
	}
	rig_be_set_scripted(r, RIG_SCRIPT_AFTER_LOGIN);
	connect_client(h, false);
	if (!h->c)
		return;
	while (off < size) {
		/* the next piece: up to and including a ReadyForQuery */
		size_t end = off;
		while (end + 5 <= size) {
			uint32_t len = get32(data + end + 1);
			if (len < 4) {
				end = size;
				break;
			}
			bool z = data[end] == 'Z';
			end += 1 + (size_t)len;
			if (z)
				break;
		}
		if (end <= off || end > size || end + 5 > size)
			end = size;
		bool copying = false;
		if (rig_client_gone(h->c))
			break;
		requests_for(h->c, data + off, end - off, &copying);
		rig_run(r);
		rig_be_drop(r, rig_be_queued(r)); /* the honest answers are not used */
		(void)rig_be_take_demands(r);
		rig_be_inject(r, data + off, end - off);
		rig_run(r);
		if (copying) {
			rig_send_copy_data(h->c, "1\n");
			rig_send_copy_done(h->c);
			rig_run(r);
		}
		off = end;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rig *r = rig_get();
	struct harness h;
	memset(&h, 0, sizeof(h));
	h.r = r;
	h.user = RIG_USER_PLAIN;
	uint8_t hdr = size > 0 ? data[0] : 0;
	bool raw = hdr < 0x80;
	size_t off = raw ? 0 : 1;
	struct rig_config cfg = {.auth = RIG_AUTH_TRUST, .pool_size = 1};
	enum rig_be_auth be_auth = RIG_BE_TRUST;
	bool script_login = false;
	if (!raw) {
		h.pipeline = hdr & 7;
		cfg.session = h.pipeline == 6;
		script_login = (hdr & 0x08) != 0;
		if (script_login)
			be_auth = (enum rig_be_auth)((hdr >> 4) & 3);
		if (hdr & 0x40) {
			uint8_t b2 = off < size ? data[off] : 0;
			off++;
			static const char *const users[] = {RIG_USER_PLAIN, RIG_USER_MD5,
			                                    RIG_USER_SCRAM, RIG_USER_PLAIN};
			static const enum rig_auth auths[] = {RIG_AUTH_TRUST, RIG_AUTH_MD5,
			                                      RIG_AUTH_SCRAM, RIG_AUTH_SCRAM};
			h.user = users[b2 & 3];
			cfg.auth = auths[(b2 >> 2) & 3];
		}
	}
	rig_begin(r, &cfg, be_auth);
	rig_set_scripted_input(r);
	if (raw) {
		run_raw(&h, data, size);
		rig_end(r);
		return 0;
	}
	rig_be_set_scripted(r, script_login ? RIG_SCRIPT_ALL : RIG_SCRIPT_AFTER_LOGIN);
	/* the client logs in to pgmux (the pool knows the server's parameters:
	 * no server login yet), then sends its first group */
	h.c = rig_client_new(r);
	if (h.c) {
		rig_client_startup(h.c, h.user, h.pipeline == 5 ? pnames : NULL,
		                   h.pipeline == 5 ? pvalues : NULL, h.pipeline == 5 ? 2 : 0);
		h.params = h.pipeline == 5;
		for (int k = 0; k < 8 && rig_client_auth_step(h.c, RIG_PASSWORD) > 0; k++)
			;
		h.want_ready = rig_client_seen(h.c)->ready;
		if (rig_client_seen(h.c)->ready == 0)
			h.done = true;
		else
			next_group(&h);
	}
	size_t i = off;
	while (i < size) {
		run_op(&h, data, size, &i);
		rig_turn(r);
		maybe_next_group(&h);
	}
	/* the script is over: honest answers, the rest of the pipeline */
	rig_be_set_scripted(r, RIG_SCRIPT_OFF);
	for (int k = 0; k < 16 && !h.done; k++) {
		rig_run(r);
		maybe_next_group(&h);
		if (h.c && rig_client_gone(h.c))
			next_group(&h);
	}
	rig_run(r);
	rig_end(r);
	return 0;
}
