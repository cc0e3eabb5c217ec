/* Message framing, limits, body reader and message builders. See proto.h. */
#include "pg/proto.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DATA_LEN 0x3fffffffu /* 1 GiB - 1, PostgreSQL's MaxAllocSize */
#define MAX_SMALL_LEN 10000u
#define MAX_AUTH_LEN 65535u

enum proto_result proto_parse_header(const uint8_t *p, size_t avail, uint32_t max_len,
				     struct proto_header *h)
{
	if (avail < PROTO_HEADER_LEN)
		return PROTO_AGAIN;
	uint32_t len;
	memcpy(&len, p + 1, 4);
	len = ntohl(len);
	if (len < 4 || len > max_len)
		return PROTO_ERROR;
	h->type = (char)p[0];
	h->len = len;
	return PROTO_OK;
}

uint32_t proto_client_max_len(char type, bool authenticated)
{
	if (!authenticated)
		return type == 'p' ? MAX_AUTH_LEN : MAX_SMALL_LEN;
	switch (type) {
	case 'Q': case 'P': case 'B': case 'd': case 'F':
		return MAX_DATA_LEN;
	case 'f': /* CopyFail carries a message text */
	case 'p':
		return MAX_AUTH_LEN;
	default:
		return MAX_SMALL_LEN;
	}
}

bool proto_client_type_known(char type)
{
	switch (type) {
	case 'B': case 'C': case 'D': case 'E': case 'F': case 'H': case 'P': case 'Q': case 'S':
	case 'X': case 'c': case 'd': case 'f':
		return true;
	default:
		return false;
	}
}

static const char *const MSG_FORMAT = "invalid message format";
static const char *const MSG_SHORT = "insufficient data left in message";

/* int16 count N, then N items of SIZE bytes. PostgreSQL reads the count
 * unsigned (up to 65,535 parameters). */
static bool skip_array(struct proto_reader *r, size_t size)
{
	uint16_t n = proto_get_u16(r);
	if (r->err)
		return false;
	return proto_get_bytes(r, (size_t)n * size) != NULL || n == 0;
}

static const char *check_bind(struct proto_reader *r, bool prefix)
{
	if (!proto_get_str(r) || !proto_get_str(r))
		return MSG_FORMAT; /* with a prefix too: pgmux maps both names */
	if (prefix)
		return NULL; /* the rest streams: the names are what pgmux reads */
	if (!skip_array(r, 2))
		return MSG_SHORT;
	uint16_t np = proto_get_u16(r); /* unsigned, as PostgreSQL reads it */
	if (r->err)
		return MSG_SHORT;
	for (uint16_t i = 0; i < np; i++) {
		uint32_t vl = proto_get_u32(r);
		if (r->err)
			return MSG_SHORT;
		if (vl == 0xffffffffu)
			continue; /* NULL */
		if ((int32_t)vl < 0 || (vl > 0 && !proto_get_bytes(r, vl)))
			return MSG_SHORT;
	}
	if (!skip_array(r, 2))
		return MSG_SHORT;
	return NULL;
}

const char *proto_check_client_msg(char type, const uint8_t *body, size_t len, bool prefix)
{
	struct proto_reader r;
	proto_reader_init(&r, body, len);
	const char *err = NULL;
	uint8_t kind;
	switch (type) {
	case 'Q':
		if (prefix)
			return NULL; /* streamed: its end is checked when it arrives */
		if (!proto_get_str(&r))
			return MSG_FORMAT;
		break;
	case 'P':
		if (prefix)
			return proto_get_str(&r) ? NULL : MSG_FORMAT; /* the name pgmux maps */
		if (!proto_get_str(&r) || !proto_get_str(&r))
			return MSG_FORMAT;
		if (!skip_array(&r, 4))
			return MSG_SHORT;
		break;
	case 'B':
		err = check_bind(&r, prefix);
		if (err || prefix)
			return err;
		break;
	case 'D':
	case 'C':
		kind = proto_get_u8(&r);
		if (r.err)
			return MSG_SHORT;
		if (kind != 'S' && kind != 'P')
			return type == 'D' ? "invalid DESCRIBE message subtype"
					   : "invalid CLOSE message subtype";
		if (!proto_get_str(&r))
			return MSG_FORMAT;
		break;
	case 'E':
		if (!proto_get_str(&r))
			return MSG_FORMAT;
		(void)proto_get_u32(&r);
		if (r.err)
			return MSG_SHORT;
		break;
	case 'S':
	case 'H':
	case 'c':
	case 'X':
		break;
	case 'f':
		if (!proto_get_str(&r))
			return MSG_FORMAT;
		break;
	default:
		return NULL;
	}
	return r.pos == r.len ? NULL : MSG_FORMAT;
}

uint32_t proto_server_max_len(char type)
{
	switch (type) {
	case 'D': case 'd': case 'T': case 'E': case 'N': case 'A': case 'V': case 't':
		return MAX_DATA_LEN;
	case 'R': case 'S': case 'C': case 'G': case 'H': case 'W': case 'v':
		return MAX_AUTH_LEN;
	default:
		return MAX_SMALL_LEN;
	}
}

void proto_reader_init(struct proto_reader *r, const void *p, size_t len)
{
	r->p = p;
	r->len = len;
	r->pos = 0;
	r->err = false;
}

static bool reader_has(struct proto_reader *r, size_t n)
{
	if (r->err || n > r->len - r->pos) {
		r->err = true;
		return false;
	}
	return true;
}

uint8_t proto_get_u8(struct proto_reader *r)
{
	if (!reader_has(r, 1))
		return 0;
	return r->p[r->pos++];
}

uint16_t proto_get_u16(struct proto_reader *r)
{
	if (!reader_has(r, 2))
		return 0;
	uint16_t v = (uint16_t)((r->p[r->pos] << 8) | r->p[r->pos + 1]);
	r->pos += 2;
	return v;
}

uint32_t proto_get_u32(struct proto_reader *r)
{
	if (!reader_has(r, 4))
		return 0;
	const uint8_t *b = r->p + r->pos;
	r->pos += 4;
	return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
}

const char *proto_get_str(struct proto_reader *r)
{
	if (r->err)
		return NULL;
	const uint8_t *start = r->p + r->pos;
	const uint8_t *nul = memchr(start, 0, r->len - r->pos);
	if (!nul) {
		r->err = true;
		return NULL;
	}
	r->pos += (size_t)(nul - start) + 1;
	return (const char *)start;
}

const uint8_t *proto_get_bytes(struct proto_reader *r, size_t n)
{
	if (!reader_has(r, n))
		return NULL;
	const uint8_t *b = r->p + r->pos;
	r->pos += n;
	return b;
}

const char *proto_error_field(const uint8_t *body, size_t len, char code)
{
	struct proto_reader r;
	proto_reader_init(&r, body, len);
	for (;;) {
		uint8_t c = proto_get_u8(&r);
		if (r.err || c == 0)
			return NULL;
		const char *v = proto_get_str(&r);
		if (!v)
			return NULL;
		if ((char)c == code)
			return v;
	}
}

int proto_write_error_filtered(struct evbuffer *out, char type, const uint8_t *body, size_t len,
			       const char *drop)
{
	uint8_t *copy = malloc(len + 1);
	size_t n = 0;
	struct proto_reader r;
	if (!copy)
		return -1;
	proto_reader_init(&r, body, len);
	for (;;) {
		size_t start = r.pos;
		uint8_t c = proto_get_u8(&r);
		if (r.err || c == 0)
			break;
		const char *v = proto_get_str(&r);
		if (!v)
			break;
		if (!strchr(drop, (char)c)) {
			memcpy(copy + n, body + start, r.pos - start);
			n += r.pos - start;
		}
	}
	copy[n++] = 0;
	int rc = proto_write_msg(out, type, copy, n);
	free(copy);
	return rc;
}

int proto_msg_take(struct evbuffer *in, const struct proto_header *h, struct proto_msg *m)
{
	size_t total = 1 + (size_t)h->len;
	m->type = h->type;
	m->len = h->len;
	m->total = total;
	m->raw = NULL;
	m->body = NULL;
	m->body_len = 0;
	if (evbuffer_get_length(in) < total)
		return -1; /* the caller checked: a broken length, and the buffer stays */
	m->raw = total <= sizeof(m->inline_buf) ? m->inline_buf : malloc(total);
	if (!m->raw) {
		m->body = NULL;
		m->body_len = 0;
		return -1;
	}
	if (evbuffer_remove(in, m->raw, total) != (int)total) {
		if (m->raw != m->inline_buf)
			free(m->raw);
		m->raw = NULL;
		m->body = NULL;
		m->body_len = 0;
		return -1;
	}
	m->body = m->raw + PROTO_HEADER_LEN;
	m->body_len = total - PROTO_HEADER_LEN;
	return 0;
}

int proto_msg_forward(struct evbuffer *out, const struct proto_msg *m)
{
	return evbuffer_add(out, m->raw, m->total);
}

void proto_msg_cleanup(struct proto_msg *m)
{
	if (m->raw && m->raw != m->inline_buf)
		free(m->raw);
	m->raw = NULL;
	m->body = NULL;
}

/* Append header + body in one evbuffer_add so a message is never half-added. */
int proto_write_msg(struct evbuffer *out, char type, const void *body, size_t len)
{
	if (len > MAX_DATA_LEN)
		return -1;
	uint8_t stackbuf[512];
	uint8_t *buf = len + PROTO_HEADER_LEN <= sizeof(stackbuf) ? stackbuf : malloc(len + PROTO_HEADER_LEN);
	if (!buf)
		return -1;
	uint32_t nlen = htonl((uint32_t)(len + 4));
	buf[0] = (uint8_t)type;
	memcpy(buf + 1, &nlen, 4);
	if (len)
		memcpy(buf + PROTO_HEADER_LEN, body, len);
	int rc = evbuffer_add(out, buf, len + PROTO_HEADER_LEN);
	if (buf != stackbuf)
		free(buf);
	return rc;
}

/* A small growable byte array for building bodies. */
struct body {
	uint8_t *p;
	size_t len, cap;
	bool oom;
};

static void body_add(struct body *b, const void *data, size_t n)
{
	if (b->oom || n == 0)
		return;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 256;
		while (cap < b->len + n)
			cap *= 2;
		uint8_t *np = realloc(b->p, cap);
		if (!np) {
			b->oom = true;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, n);
	b->len += n;
}

static void body_str(struct body *b, const char *s)
{
	body_add(b, s, strlen(s) + 1);
}

static void body_u32(struct body *b, uint32_t v)
{
	uint32_t n = htonl(v);
	body_add(b, &n, 4);
}

static int body_finish(struct body *b, struct evbuffer *out, char type)
{
	int rc = b->oom ? -1 : proto_write_msg(out, type, b->p, b->len);
	free(b->p);
	return rc;
}

int proto_write_error(struct evbuffer *out, const char *severity, const char *sqlstate,
		      const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	struct body b = {0};
	body_add(&b, "S", 1);
	body_str(&b, severity);
	body_add(&b, "V", 1);
	body_str(&b, severity);
	body_add(&b, "C", 1);
	body_str(&b, sqlstate);
	body_add(&b, "M", 1);
	body_str(&b, msg);
	body_add(&b, "", 1);
	return body_finish(&b, out, 'E');
}

int proto_write_auth(struct evbuffer *out, uint32_t code, const void *data, size_t len)
{
	struct body b = {0};
	body_u32(&b, code);
	if (len)
		body_add(&b, data, len);
	return body_finish(&b, out, 'R');
}

int proto_write_param_status(struct evbuffer *out, const char *name, const char *value)
{
	struct body b = {0};
	body_str(&b, name);
	body_str(&b, value);
	return body_finish(&b, out, 'S');
}

int proto_write_backend_key(struct evbuffer *out, uint32_t pid, uint32_t key)
{
	struct body b = {0};
	body_u32(&b, pid);
	body_u32(&b, key);
	return body_finish(&b, out, 'K');
}

int proto_write_ready(struct evbuffer *out, char status)
{
	return proto_write_msg(out, 'Z', &status, 1);
}

int proto_write_query(struct evbuffer *out, const char *sql)
{
	return proto_write_msg(out, 'Q', sql, strlen(sql) + 1);
}

int proto_write_password(struct evbuffer *out, const char *password)
{
	return proto_write_msg(out, 'p', password, strlen(password) + 1);
}

int proto_write_sasl_initial(struct evbuffer *out, const char *mech, const void *data, size_t len)
{
	struct body b = {0};
	body_str(&b, mech);
	body_u32(&b, (uint32_t)len);
	body_add(&b, data, len);
	return body_finish(&b, out, 'p');
}

int proto_write_sasl_response(struct evbuffer *out, const void *data, size_t len)
{
	return proto_write_msg(out, 'p', data, len);
}

int proto_write_negotiate(struct evbuffer *out, uint32_t minor, const char *const *opts, int nopts)
{
	struct body b = {0};
	body_u32(&b, minor);
	body_u32(&b, (uint32_t)nopts);
	for (int i = 0; i < nopts; i++)
		body_str(&b, opts[i]);
	return body_finish(&b, out, 'v');
}

int proto_write_cancel(struct evbuffer *out, uint32_t pid, uint32_t key)
{
	uint32_t v[4] = {htonl(16), htonl(PROTO_CANCEL_REQUEST), htonl(pid), htonl(key)};
	return evbuffer_add(out, v, sizeof(v));
}

int proto_write_ssl_request(struct evbuffer *out)
{
	uint32_t v[2] = {htonl(8), htonl(PROTO_SSL_REQUEST)};
	return evbuffer_add(out, v, sizeof(v));
}

int proto_write_terminate(struct evbuffer *out)
{
	return proto_write_msg(out, 'X', NULL, 0);
}

int proto_write_startup(struct evbuffer *out, const char *const *names, const char *const *values,
			int n)
{
	struct body b = {0};
	body_u32(&b, 0); /* length, patched below */
	body_u32(&b, PROTO_VERSION_3_0);
	for (int i = 0; i < n; i++) {
		body_str(&b, names[i]);
		body_str(&b, values[i]);
	}
	body_add(&b, "", 1);
	if (b.oom || b.len > PROTO_STARTUP_MAX_LEN) {
		free(b.p);
		return -1;
	}
	uint32_t nlen = htonl((uint32_t)b.len);
	memcpy(b.p, &nlen, 4);
	int rc = evbuffer_add(out, b.p, b.len);
	free(b.p);
	return rc;
}
