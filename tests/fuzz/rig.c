/* The in-process pgmux of the data-path fuzz harnesses. See rig.h.
 *
 * The fake backend's deliberate misbehaviour, chosen by words in the SQL it
 * runs (case-insensitive; libFuzzer learns them from the strcasestr calls):
 *   error          ERROR 42703 (column "error" does not exist)
 *   fatal          FATAL 57P01, then the connection is closed
 *   rig_die        the connection is closed without a word
 *   rig_half       half a DataRow, then the connection is closed
 *   badparse       a Parse of it fails (42601)
 *   stale          the first Bind of a named statement on a connection
 *                  fails with 0A000 "cached plan must not change result
 *                  type" (routine RevalidateCachedQuery)
 *   cache lookup   the same with XX000 "cache lookup failed for type"
 *   notice         a NoticeResponse before the result
 *   notify         a NotificationResponse before the result
 *   many / big / huge  40 rows / one 100 kB row / 12 rows of 200 kB
 * pgmux's own DO block that raises an error (frontend.c inject_error) is
 * answered with the SQLSTATE and message it names. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem, strcasestr (configure defines it for the tree) */
#endif
#include "rig.h"

#include "fuzz_common.h"

#include "core/authfile.h"
#include "core/config.h"
#include "core/log.h"
#include "net/tls.h"
#include "net/worker.h"
#include "pg/md5.h"
#include "pg/proto.h"
#include "pg/scram.h"
#include "pool/client.h"
#include "pool/pool.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

/* The rig is not what is being fuzzed: no coverage feedback from it, so
 * that libFuzzer is rewarded for reaching new code in pgmux only (and the
 * fake backend runs at full speed). Its strcmp/strstr calls still feed
 * libFuzzer's value profile through the sanitizer's interceptors, which is
 * how it learns the backend's trigger words. */
#ifdef __clang__
#pragma clang attribute push(__attribute__((no_sanitize("coverage"))), apply_to = function)
#endif

#define MAX_CLIENTS      32
#define MAX_CONFIGS      32
#define MAX_NAMES        512   /* server statement names checked per input */
#define TURN_CAP         20000 /* loop turns per rig_run: beyond it, a livelock */
#define TCP_WAIT_TURNS   2000  /* turns of 100 us waiting for TCP before giving up on it */
#define IDLE_TURNS       2     /* turns without progress that mean "settled" */
#define READ_CHUNK       65536
#define WRITE_MAX        (256u << 10) /* bytes a client writes per turn at most */
#define BE_SMALL_MAX     10000u       /* PostgreSQL's PQ_SMALL_MESSAGE_LIMIT */
#define BE_LARGE_MAX     0x3fffffffu
#define CLIENT_PARSE_MAX (1u << 20) /* client side: messages looked at whole up to this */

/* ---------------------------------------------------------------------- */
/* state */

struct be_stmt {
	char *name;
	char *sql;
	int nparams;
	struct be_stmt *next;
};

struct be_portal {
	char *name;
	char *sql;
	int rows_total; /* rows of its result */
	int rows_sent;
	bool done;    /* ran to completion */
	bool started; /* its statement's effects happened */
	struct be_portal *next;
};

enum be_phase { BE_STARTUP, BE_AUTH, BE_READY };

struct be_conn {
	struct rig *rig;
	struct bufferevent *bev;
	int serial;
	enum be_phase phase;
	bool closing;         /* close at the end of the current callback */
	bool held;            /* scripted: replies wait in queue */
	bool close_when_sent; /* scripted: close once the queue is empty */
	char user[64];
	/* authentication */
	uint8_t salt[4];
	int sasl_step;
	struct scram_server *scram;
	/* session */
	char txn;      /* 'I', 'T' (explicit block), 'E' (failed block) */
	bool ext_open; /* P/B/D/E since the last Sync */
	bool skip;     /* error in extended protocol: skip until Sync */
	int copy;      /* 0, 1 copy-in from a Query, 2 from an Execute */
	long copy_rows;
	char *qtext; /* Query being run (resumed after a COPY) */
	size_t qlen, qpos;
	bool q_failed;
	bool stale_fired;
	bool lax;             /* the client touched pgmux_ names itself: no strict checks */
	char skipped[32][32]; /* pgmux_ statements whose Parse was skipped or failed */
	int nskipped;
	struct be_stmt *stmts; /* "" is the unnamed statement */
	struct be_portal *portals;
	char params[16][2][64]; /* reported parameters: name, value */
	int nparams;
	struct evbuffer *queue;  /* replies not sent yet (scripted mode) */
	int peer_fd;             /* pgmux's end of this TCP connection (same process), -1 */
	struct sockaddr_in peer; /* its address, to check the fd still is that socket */
	struct be_conn *next;
};

struct cfg_entry {
	struct rig_config key;
	struct config *cfg;
	struct authfile *af;
	SSL_CTX *tls; /* the accepting context of a tls configuration, or NULL */
};

struct key_cache {
	bool valid;
	int cfg;
	char user[64];
	uint8_t salt[SCRAM_MAX_SALT_LEN];
	size_t salt_len;
	int iterations;
	uint8_t client_key[SCRAM_KEY_LEN];
	uint8_t server_key[SCRAM_KEY_LEN];
};

struct name_seen {
	char name[32];
	uint64_t hash;
};

struct rig {
	struct worker *w;
	struct worker *workers[1];
	struct evconnlistener *lst;
	int port;
	char dir[512];
	char verifier[256];
	struct scram_secret be_secret;
	struct cfg_entry cfgs[MAX_CONFIGS];
	int ncfgs;
	int cur; /* index into cfgs */
	struct rig_client *clients[MAX_CLIENTS];
	int nclients;
	struct be_conn *conns; /* open server connections, newest first */
	int serial;
	enum rig_be_auth be_auth;
	enum rig_script scripted;
	bool scripted_input;
	int demands;
	int accepted;
	uint64_t moved; /* bytes and events the backend saw this turn */
	uint64_t turns;
	int tcp_waits;           /* consecutive turns that only waited for TCP */
	uint64_t tcp_wait_total; /* all such turns (RIG_STATS) */
	uint64_t inputs;
	int fd_baseline;
	bool trace;
	struct key_cache keys[8];
	struct name_seen names[MAX_NAMES];
	int nnames;
};

struct rig_client {
	struct rig *rig;
	int fd; /* the rig's end; -1 once closed */
	bool eof;
	struct evbuffer *out;
	size_t chunk;
	char user[64];
	/* what pgmux sent: framing */
	struct evbuffer *in;
	uint64_t skip;  /* body bytes of a large message still to pass */
	int expect_ssl; /* SSLRequest/GSSENCRequest answers due */
	bool tls;       /* pgmux speaks TLS to it now (an S, or direct TLS): what it
			 * sends is drained unparsed, what the client sends is not
			 * framed */
	bool sent_any;  /* the first byte of the stream went out */
	struct rig_client_seen seen;
	/* the last authentication request, unanswered */
	bool auth_pending;
	uint32_t auth_code;
	uint8_t *auth_data;
	size_t auth_len;
	struct scram_client *scram;
	char nonce[128];
	bool scram_keys;
	bool sent_final; /* our client-final-message went out last */
	/* what the client sent: framing */
	bool sent_typed;
	bool sent_desync;
	uint8_t shdr[8];
	int shdr_len;
	uint64_t sent_skip;
	int sent_qsf;       /* Query, Sync, FunctionCall */
	int errors_at_sync; /* seen.errors when it last sent a Sync or Query */
	bool in_copy;       /* CopyInResponse received, copy not ended yet */
	bool copy_asked;    /* sent a COPY ... FROM STDIN, no answer yet (RIG_AVOID) */
	bool stalled;       /* not reading what pgmux sends (a slow client) */
};

static struct rig *the_rig;
static const char *avoid_list(void);
static void write_users(struct rig *r, const char *path);
/* the auth_file's users, by index */
static const char *const users[3] = {RIG_USER_PLAIN, RIG_USER_MD5, RIG_USER_SCRAM};

static void trace(struct rig *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void trace(struct rig *r, const char *fmt, ...)
{
	if (!r->trace)
		return;
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "rig: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
}

/* A broken invariant: say which, then crash. */
static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "rig: INVARIANT BROKEN: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	__builtin_trap();
}

static uint32_t be32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void put32(struct evbuffer *b, uint32_t v)
{
	uint32_t n = htonl(v);
	evbuffer_add(b, &n, 4);
}

static void put16(struct evbuffer *b, uint16_t v)
{
	uint16_t n = htons(v);
	evbuffer_add(b, &n, 2);
}

static void putstr(struct evbuffer *b, const char *s)
{
	evbuffer_add(b, s, strlen(s) + 1);
}

/* Append message TYPE with the bytes of BODY (an evbuffer, emptied). */
static void frame(struct evbuffer *out, char type, struct evbuffer *body)
{
	size_t len = evbuffer_get_length(body);
	uint8_t hdr[5];
	uint32_t n = htonl((uint32_t)(len + 4));
	hdr[0] = (uint8_t)type;
	memcpy(hdr + 1, &n, 4);
	evbuffer_add(out, hdr, 5);
	evbuffer_add_buffer(out, body);
}

static void frame_raw(struct evbuffer *out, char type, const void *body, size_t len)
{
	uint8_t hdr[5];
	uint32_t n = htonl((uint32_t)(len + 4));
	hdr[0] = (uint8_t)type;
	memcpy(hdr + 1, &n, 4);
	evbuffer_add(out, hdr, 5);
	if (len)
		evbuffer_add(out, body, len);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;
	if (!d)
		return -1;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static char *xstrndup(const char *s, size_t n)
{
	char *d = malloc(n + 1);
	if (!d)
		abort();
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

static uint64_t fnv(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ull;
	return h;
}

/* ---------------------------------------------------------------------- */
/* the fake backend: sending */

static void be_flush(struct be_conn *b);

/* Queue a reply; it goes out at the end of the callback unless scripted. */
static void be_put(struct be_conn *b, char type, struct evbuffer *body)
{
	trace(b->rig, "be%d -> %c (%zu)", b->serial, type, evbuffer_get_length(body));
	frame(b->queue, type, body);
}

static void be_put_raw(struct be_conn *b, char type, const void *body, size_t len)
{
	trace(b->rig, "be%d -> %c (%zu)", b->serial, type, len);
	frame_raw(b->queue, type, body, len);
}

static void be_put_error(struct be_conn *b, const char *sev, const char *code, const char *routine,
                         const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void be_put_error(struct be_conn *b, const char *sev, const char *code, const char *routine,
                         const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	struct evbuffer *e = evbuffer_new();
	evbuffer_add(e, "S", 1);
	putstr(e, sev);
	evbuffer_add(e, "V", 1);
	putstr(e, sev);
	evbuffer_add(e, "C", 1);
	putstr(e, code);
	evbuffer_add(e, "M", 1);
	putstr(e, msg);
	evbuffer_add(e, "F", 1);
	putstr(e, "rig.c");
	evbuffer_add(e, "L", 1);
	putstr(e, "1");
	evbuffer_add(e, "R", 1);
	putstr(e, routine ? routine : "rig");
	evbuffer_add(e, "", 1);
	be_put(b, 'E', e);
	evbuffer_free(e);
}

static void be_put_ready(struct be_conn *b)
{
	be_put_raw(b, 'Z', &b->txn, 1);
}

static void be_put_tag(struct be_conn *b, const char *tag)
{
	be_put_raw(b, 'C', tag, strlen(tag) + 1);
}

static void be_put_param(struct be_conn *b, const char *name, const char *value)
{
	struct evbuffer *e = evbuffer_new();
	putstr(e, name);
	putstr(e, value);
	be_put(b, 'S', e);
	evbuffer_free(e);
}

static void be_put_rowdesc(struct be_conn *b)
{
	struct evbuffer *e = evbuffer_new();
	put16(e, 1);
	putstr(e, "?column?");
	put32(e, 0);
	put16(e, 0);
	put32(e, 25); /* text */
	put16(e, (uint16_t)-1);
	put32(e, (uint32_t)-1);
	put16(e, 0);
	be_put(b, 'T', e);
	evbuffer_free(e);
}

static void be_put_row(struct be_conn *b, size_t size)
{
	struct evbuffer *e = evbuffer_new();
	put16(e, 1);
	if (size <= 1) {
		put32(e, 1);
		evbuffer_add(e, "1", 1);
	} else {
		put32(e, (uint32_t)size);
		char fill[4096];
		memset(fill, 'r', sizeof(fill));
		for (size_t left = size; left > 0;) {
			size_t k = left < sizeof(fill) ? left : sizeof(fill);
			evbuffer_add(e, fill, k);
			left -= k;
		}
	}
	be_put(b, 'D', e);
	evbuffer_free(e);
}

static void be_free(struct be_conn *b)
{
	struct rig *r = b->rig;
	for (struct be_conn **pp = &r->conns; *pp; pp = &(*pp)->next)
		if (*pp == b) {
			*pp = b->next;
			break;
		}
	if (b->bev) {
		/* what is queued on the socket goes before the close, as a
		 * backend's last words do */
		struct evbuffer *out = bufferevent_get_output(b->bev);
		if (evbuffer_get_length(out) > 0)
			(void)evbuffer_write(out, bufferevent_getfd(b->bev));
		bufferevent_free(b->bev);
	}
	scram_server_free(b->scram);
	while (b->stmts) {
		struct be_stmt *s = b->stmts;
		b->stmts = s->next;
		free(s->name);
		free(s->sql);
		free(s);
	}
	while (b->portals) {
		struct be_portal *p = b->portals;
		b->portals = p->next;
		free(p->name);
		free(p->sql);
		free(p);
	}
	free(b->qtext);
	evbuffer_free(b->queue);
	r->moved++;
	trace(r, "be%d closed", b->serial);
	free(b);
}

/* Send queued replies now (not in scripted mode). */
static void be_flush(struct be_conn *b)
{
	if (b->held || !b->bev)
		return;
	if (evbuffer_get_length(b->queue) > 0)
		bufferevent_write_buffer(b->bev, b->queue);
	if (b->close_when_sent)
		b->closing = true;
}

/* FATAL and close, as a backend does. */
static void be_fatal(struct be_conn *b, const char *code, const char *msg)
{
	be_put_error(b, "FATAL", code, NULL, "%s", msg);
	b->close_when_sent = true;
	be_flush(b);
}

/* ---------------------------------------------------------------------- */
/* the fake backend: SQL */

static const char *const reported[][2] = {
        {"application_name", ""},   {"client_encoding", "UTF8"},
        {"DateStyle", "ISO, MDY"},  {"IntervalStyle", "postgres"},
        {"TimeZone", "UTC"},        {"integer_datetimes", "on"},
        {"is_superuser", "on"},     {"server_encoding", "UTF8"},
        {"server_version", "15.0"}, {"standard_conforming_strings", "on"},
};
#define N_REPORTED (sizeof(reported) / sizeof(reported[0]))

static void be_reset_params(struct be_conn *b, bool announce)
{
	for (size_t i = 0; i < N_REPORTED; i++) {
		bool changed = strcmp(b->params[i][1], reported[i][1]) != 0;
		snprintf(b->params[i][0], sizeof(b->params[i][0]), "%s", reported[i][0]);
		snprintf(b->params[i][1], sizeof(b->params[i][1]), "%s", reported[i][1]);
		if (announce && changed)
			be_put_param(b, b->params[i][0], b->params[i][1]);
	}
	b->nparams = (int)N_REPORTED;
}

/* SET NAME to VALUE: a ParameterStatus if NAME is reported and changed. */
static void be_set_param(struct be_conn *b, const char *name, const char *value)
{
	for (int i = 0; i < b->nparams; i++) {
		if (strcasecmp(b->params[i][0], name) != 0)
			continue;
		if (strcmp(b->params[i][1], value) == 0)
			return;
		snprintf(b->params[i][1], sizeof(b->params[i][1]), "%s", value);
		be_put_param(b, b->params[i][0], b->params[i][1]);
		return;
	}
}

static const char *skip_space(const char *p, const char *end)
{
	for (;;) {
		while (p < end && isspace((unsigned char)*p))
			p++;
		if (end - p >= 2 && p[0] == '-' && p[1] == '-') {
			while (p < end && *p != '\n')
				p++;
			continue;
		}
		if (end - p >= 2 && p[0] == '/' && p[1] == '*') {
			int depth = 0;
			while (p < end) {
				if (end - p >= 2 && p[0] == '/' && p[1] == '*') {
					depth++;
					p += 2;
				} else if (end - p >= 2 && p[0] == '*' && p[1] == '/') {
					p += 2;
					if (--depth == 0)
						break;
				} else {
					p++;
				}
			}
			continue;
		}
		return p;
	}
}

/* The next statement of the SQL at *POS (up to END): its start and length,
 * without the ';'. Returns false when there is none left. */
static bool next_stmt(const char *sql, size_t end, size_t *pos, const char **start, size_t *len)
{
	const char *e = sql + end;
	const char *p = sql + *pos;
	for (;;) {
		p = skip_space(p, e);
		if (p < e && *p == ';') {
			p++;
			continue;
		}
		break;
	}
	if (p >= e) {
		*pos = end;
		return false;
	}
	const char *s = p;
	while (p < e && *p != ';') {
		char c = *p;
		if (c == '\'' || c == '"') {
			bool esc = c == '\'' && p > s && (p[-1] == 'E' || p[-1] == 'e');
			p++;
			while (p < e) {
				if (esc && *p == '\\' && p + 1 < e) {
					p += 2;
					continue;
				}
				if (*p == c) {
					if (p + 1 < e && p[1] == c) {
						p += 2;
						continue;
					}
					break;
				}
				p++;
			}
			if (p < e)
				p++;
		} else if (c == '$') {
			const char *t = p + 1;
			while (t < e && (isalnum((unsigned char)*t) || *t == '_'))
				t++;
			if (t < e && *t == '$' && !(p > s && isalnum((unsigned char)p[-1]))) {
				size_t tl = (size_t)(t - p + 1);
				const char *q = t + 1;
				while (q + tl <= e && memcmp(q, p, tl) != 0)
					q++;
				p = q + tl <= e ? q + tl : e;
			} else {
				p++;
			}
		} else if (c == '-' && p + 1 < e && p[1] == '-') {
			while (p < e && *p != '\n')
				p++;
		} else if (c == '/' && p + 1 < e && p[1] == '*') {
			const char *q = skip_space(p, e);
			p = q > p ? q : p + 1;
		} else {
			p++;
		}
	}
	*start = s;
	*len = (size_t)(p - s);
	while (*len > 0 && isspace((unsigned char)s[*len - 1]))
		(*len)--;
	*pos = (size_t)(p - sql) + (p < e ? 1 : 0);
	return true;
}

static int count_stmts(const char *sql, size_t len)
{
	size_t pos = 0;
	const char *s;
	size_t l;
	int n = 0;
	while (next_stmt(sql, len, &pos, &s, &l))
		n++;
	return n;
}

/* Case-insensitive: does STMT (LEN bytes) start with keyword KW? */
static bool starts(const char *stmt, size_t len, const char *kw)
{
	size_t k = strlen(kw);
	return len >= k && strncasecmp(stmt, kw, k) == 0 &&
	       (len == k || !isalnum((unsigned char)stmt[k]));
}

static bool has(const char *lower, const char *word)
{
	return strstr(lower, word) != NULL;
}

/* Copy of the head of STMT, lower-cased, NUL-terminated (for the keyword
 * checks: a 1 MB query is not searched a dozen times). */
#define KEYWORD_HEAD 4096
static char *lower_copy(const char *stmt, size_t len)
{
	if (len > KEYWORD_HEAD)
		len = KEYWORD_HEAD;
	char *l = xstrndup(stmt, len);
	for (size_t i = 0; i < len; i++)
		l[i] = (char)tolower((unsigned char)l[i]);
	for (size_t i = 0; i < len; i++)
		if (l[i] == '\0')
			l[i] = ' ';
	return l;
}

/* A quoted or bare value at P: unquoted into OUT. */
static void sql_value(const char *p, const char *e, char *out, size_t outsz)
{
	size_t n = 0;
	p = skip_space(p, e);
	if (p < e && (*p == 'E' || *p == 'e') && p + 1 < e && p[1] == '\'')
		p++;
	if (p < e && *p == '\'') {
		p++;
		while (p < e && n + 1 < outsz) {
			if (*p == '\\' && p + 1 < e) {
				out[n++] = p[1];
				p += 2;
				continue;
			}
			if (*p == '\'') {
				if (p + 1 < e && p[1] == '\'') {
					out[n++] = '\'';
					p += 2;
					continue;
				}
				break;
			}
			out[n++] = *p++;
		}
	} else {
		while (p < e && n + 1 < outsz && !isspace((unsigned char)*p) && *p != ',' &&
		       *p != ')')
			out[n++] = *p++;
	}
	out[n] = '\0';
}

/* SET [SESSION|LOCAL] name {TO|=} value / SET TIME ZONE value */
static void be_sql_set(struct be_conn *b, const char *stmt, size_t len)
{
	const char *e = stmt + len, *p = skip_space(stmt + 3, e);
	char name[64], value[64];
	if (starts(p, (size_t)(e - p), "session") &&
	    !starts(p, (size_t)(e - p), "session_authorization"))
		p = skip_space(p + 7, e);
	if (starts(p, (size_t)(e - p), "local"))
		return; /* transaction-local: not reported here */
	if (starts(p, (size_t)(e - p), "time")) {
		p = skip_space(p + 4, e);
		if (starts(p, (size_t)(e - p), "zone"))
			p += 4;
		sql_value(p, e, value, sizeof(value));
		be_set_param(b, "TimeZone", value);
		return;
	}
	size_t n = 0;
	bool quoted = p < e && *p == '"';
	if (quoted)
		p++;
	while (p < e && n + 1 < sizeof(name) &&
	       (quoted ? *p != '"' : (isalnum((unsigned char)*p) || *p == '_' || *p == '.')))
		name[n++] = *p++;
	name[n] = '\0';
	if (quoted && p < e)
		p++;
	p = skip_space(p, e);
	if (starts(p, (size_t)(e - p), "to"))
		p += 2;
	else if (p < e && *p == '=')
		p++;
	sql_value(p, e, value, sizeof(value));
	if (strcasecmp(value, "default") == 0) {
		for (size_t i = 0; i < N_REPORTED; i++)
			if (strcasecmp(reported[i][0], name) == 0)
				be_set_param(b, reported[i][0], reported[i][1]);
		return;
	}
	be_set_param(b, name, value);
}

/* pg_catalog.set_config(E'name', E'value', false), ... inside a SELECT */
static void be_sql_set_config(struct be_conn *b, const char *stmt, size_t len)
{
	const char *e = stmt + len, *p = stmt;
	while ((p = memmem(p, (size_t)(e - p), "set_config(", 11)) != NULL) {
		p += 11;
		char name[64], value[64];
		sql_value(p, e, name, sizeof(name));
		const char *comma = memchr(p, ',', (size_t)(e - p));
		/* the name literal may hold a comma: skip past its closing quote */
		const char *q = skip_space(p, e);
		if (q < e && (*q == 'E' || *q == 'e'))
			q++;
		if (q < e && *q == '\'') {
			for (q++; q < e; q++) {
				if (*q == '\\' && q + 1 < e) {
					q++;
					continue;
				}
				if (*q == '\'' && !(q + 1 < e && q[1] == '\''))
					break;
				if (*q == '\'')
					q++;
			}
			comma = q < e ? memchr(q, ',', (size_t)(e - q)) : NULL;
		}
		if (!comma)
			return;
		sql_value(comma + 1, e, value, sizeof(value));
		be_set_param(b, name, value);
		p = comma + 1;
	}
}

enum ex_result { EX_OK, EX_ERROR, EX_COPY, EX_CLOSED };

static struct be_stmt *be_find_stmt(struct be_conn *b, const char *name)
{
	for (struct be_stmt *s = b->stmts; s; s = s->next)
		if (strcmp(s->name, name) == 0)
			return s;
	return NULL;
}

static void be_drop_stmt(struct be_conn *b, const char *name)
{
	for (struct be_stmt **pp = &b->stmts; *pp; pp = &(*pp)->next)
		if (strcmp((*pp)->name, name) == 0) {
			struct be_stmt *s = *pp;
			*pp = s->next;
			free(s->name);
			free(s->sql);
			free(s);
			return;
		}
}

static void be_drop_all_stmts(struct be_conn *b, bool keep_unnamed)
{
	struct be_stmt **pp = &b->stmts;
	while (*pp) {
		struct be_stmt *s = *pp;
		if (keep_unnamed && !s->name[0]) {
			pp = &s->next;
			continue;
		}
		*pp = s->next;
		free(s->name);
		free(s->sql);
		free(s);
	}
}

static struct be_portal *be_find_portal(struct be_conn *b, const char *name)
{
	for (struct be_portal *p = b->portals; p; p = p->next)
		if (strcmp(p->name, name) == 0)
			return p;
	return NULL;
}

static void be_drop_portal(struct be_conn *b, const char *name)
{
	for (struct be_portal **pp = &b->portals; *pp; pp = &(*pp)->next)
		if (strcmp((*pp)->name, name) == 0) {
			struct be_portal *p = *pp;
			*pp = p->next;
			free(p->name);
			free(p->sql);
			free(p);
			return;
		}
}

static void be_drop_portals(struct be_conn *b)
{
	while (b->portals) {
		struct be_portal *p = b->portals;
		b->portals = p->next;
		free(p->name);
		free(p->sql);
		free(p);
	}
}

/* Rows a SELECT-like statement returns, and the size of each value. */
static int rows_of(const char *lower, size_t *size)
{
	*size = 1;
	if (has(lower, "huge")) {
		*size = 200000;
		return rig_avoiding("drain_stall") ? 3 : 12;
	}
	if (has(lower, "big")) {
		*size = 100000;
		return 1;
	}
	if (has(lower, "many"))
		return 40;
	if (has(lower, "generate_series"))
		return 3;
	return 1;
}

static bool returns_rows(const char *stmt, size_t len)
{
	return starts(stmt, len, "select") || starts(stmt, len, "values") ||
	       starts(stmt, len, "with") || starts(stmt, len, "show") ||
	       starts(stmt, len, "table") || starts(stmt, len, "fetch") ||
	       starts(stmt, len, "execute") || starts(stmt, len, "explain") ||
	       starts(stmt, len, "(");
}

static bool is_copy_in(const char *lower)
{
	return strncmp(lower, "copy", 4) == 0 && has(lower, "from stdin");
}

static bool is_copy_out(const char *lower)
{
	return strncmp(lower, "copy", 4) == 0 && has(lower, "to stdout");
}

/* The backend's error for a statement: ERROR, or FATAL and close. */
static enum ex_result be_fail(struct be_conn *b, const char *code, const char *routine,
                              const char *msg)
{
	be_put_error(b, "ERROR", code, routine, "%s", msg);
	if (b->txn == 'T')
		b->txn = 'E';
	return EX_ERROR;
}

/* The error a DO block of pgmux's raises: ERRCODE = 'xxxxx', MESSAGE = E'...' */
static bool be_do_raise(struct be_conn *b, const char *stmt, size_t len)
{
	const char *e = stmt + len;
	const char *p = memmem(stmt, len, "ERRCODE = '", 11);
	if (!p || e - p < 16)
		return false;
	char code[6];
	memcpy(code, p + 11, 5);
	code[5] = '\0';
	char msg[256] = "error";
	const char *m = memmem(p, (size_t)(e - p), "MESSAGE = ", 10);
	if (m)
		sql_value(m + 10, e, msg, sizeof(msg));
	struct evbuffer *x = evbuffer_new();
	putstr(x, "SERROR");
	putstr(x, "VERROR");
	evbuffer_add(x, "C", 1);
	putstr(x, code);
	evbuffer_add(x, "M", 1);
	putstr(x, msg);
	putstr(x, "WPL/pgSQL function inline_code_block line 1 at RAISE");
	putstr(x, "Fpl_exec.c");
	putstr(x, "L3907");
	putstr(x, "Rexec_stmt_raise");
	evbuffer_add(x, "", 1);
	be_put(b, 'E', x);
	evbuffer_free(x);
	if (b->txn == 'T')
		b->txn = 'E';
	return true;
}

/* Run one statement. EXTENDED: from an Execute (no RowDescription); then
 * PORTAL is what it runs and MAX_ROWS its row limit. */
static enum ex_result be_exec(struct be_conn *b, const char *stmt, size_t len, bool extended,
                              struct be_portal *portal, uint32_t max_rows)
{
	char *lower = lower_copy(stmt, len);
	enum ex_result rc = EX_OK;
	char tag[96];
	tag[0] = '\0';
	bool pgmux_own = has(lower, "$pgmux$") || starts(stmt, len, "deallocate pgmux_d");
	if (has(lower, "pgmux_") && !pgmux_own)
		b->lax = true;
	if (b->txn == 'E' && !starts(stmt, len, "rollback") && !starts(stmt, len, "commit") &&
	    !starts(stmt, len, "end") && !starts(stmt, len, "abort")) {
		rc = be_fail(b, "25P02", "exec_simple_query",
		             "current transaction is aborted, commands ignored until end of "
		             "transaction block");
		goto out;
	}
	if (has(lower, "fatal")) {
		be_fatal(b, "57P01", "terminating connection due to administrator command");
		rc = EX_CLOSED;
		goto out;
	}
	if (has(lower, "rig_die")) {
		b->close_when_sent = true;
		be_flush(b);
		rc = EX_CLOSED;
		goto out;
	}
	if (has(lower, "rig_half")) {
		uint8_t half[] = {'D', 0, 0, 0, 40, 0, 1, 0, 0, 0, 30, 'h', 'a', 'l', 'f'};
		evbuffer_add(b->queue, half, sizeof(half));
		b->close_when_sent = true;
		be_flush(b);
		rc = EX_CLOSED;
		goto out;
	}
	if (starts(stmt, len, "do") && be_do_raise(b, stmt, len)) {
		rc = EX_ERROR;
		goto out;
	}
	if (has(lower, "error")) {
		rc = be_fail(b, "42703", "errorMissingColumn", "column \"error\" does not exist");
		goto out;
	}
	if (has(lower, "notice")) {
		struct evbuffer *x = evbuffer_new();
		putstr(x, "SNOTICE");
		putstr(x, "VNOTICE");
		putstr(x, "C00000");
		putstr(x, "Ma notice");
		evbuffer_add(x, "", 1);
		be_put(b, 'N', x);
		evbuffer_free(x);
	}
	if (has(lower, "notify")) {
		struct evbuffer *x = evbuffer_new();
		put32(x, 4242);
		putstr(x, "chan");
		putstr(x, "payload");
		be_put(b, 'A', x);
		evbuffer_free(x);
	}
	static const char already[] = "SWARNING\0VWARNING\0C25001\0Mthere is already a "
	                              "transaction in progress\0";
	if (starts(stmt, len, "begin") || starts(stmt, len, "start")) {
		if (b->txn == 'T')
			be_put_raw(b, 'N', already, sizeof(already));
		b->txn = 'T';
		snprintf(tag, sizeof(tag), "BEGIN");
	} else if (starts(stmt, len, "commit") || starts(stmt, len, "end")) {
		snprintf(tag, sizeof(tag), b->txn == 'E' ? "ROLLBACK" : "COMMIT");
		b->txn = 'I';
	} else if (starts(stmt, len, "rollback") || starts(stmt, len, "abort")) {
		if (has(lower, " to ")) {
			if (b->txn == 'I') {
				rc = be_fail(b, "25P01", "RequireTransactionBlock",
				             "ROLLBACK TO SAVEPOINT can only be used in "
				             "transaction blocks");
				goto out;
			}
			b->txn = 'T';
		} else {
			b->txn = 'I';
		}
		snprintf(tag, sizeof(tag), "ROLLBACK");
	} else if (starts(stmt, len, "savepoint") || starts(stmt, len, "release")) {
		if (b->txn == 'I') {
			rc = be_fail(b, "25P01", "RequireTransactionBlock",
			             "SAVEPOINT can only be used in transaction blocks");
			goto out;
		}
		snprintf(tag, sizeof(tag), starts(stmt, len, "release") ? "RELEASE" : "SAVEPOINT");
	} else if (starts(stmt, len, "set")) {
		be_sql_set(b, stmt, len);
		snprintf(tag, sizeof(tag), "SET");
	} else if (starts(stmt, len, "reset")) {
		const char *p = skip_space(stmt + 5, stmt + len);
		if (starts(p, (size_t)(stmt + len - p), "all")) {
			be_reset_params(b, true);
		} else {
			char name[64];
			sql_value(p, stmt + len, name, sizeof(name));
			if (name[0] == '"')
				memmove(name, name + 1, strlen(name));
			char *q = strchr(name, '"');
			if (q)
				*q = '\0';
			for (size_t i = 0; i < N_REPORTED; i++)
				if (strcasecmp(reported[i][0], name) == 0)
					be_set_param(b, reported[i][0], reported[i][1]);
		}
		snprintf(tag, sizeof(tag), "RESET");
	} else if (starts(stmt, len, "discard")) {
		if (b->txn != 'I') {
			rc = be_fail(b, "25001", "PreventInTransactionBlock",
			             "DISCARD ALL cannot run inside a transaction block");
			goto out;
		}
		be_drop_all_stmts(b, false);
		be_drop_portals(b);
		be_reset_params(b, true);
		snprintf(tag, sizeof(tag), "DISCARD ALL");
	} else if (starts(stmt, len, "deallocate")) {
		const char *p = skip_space(stmt + 10, stmt + len);
		if (starts(p, (size_t)(stmt + len - p), "prepare"))
			p = skip_space(p + 7, stmt + len);
		if (starts(p, (size_t)(stmt + len - p), "all")) {
			be_drop_all_stmts(b, true);
			snprintf(tag, sizeof(tag), "DEALLOCATE ALL");
		} else {
			char name[64];
			sql_value(p, stmt + len, name, sizeof(name));
			if (!name[0] || !be_find_stmt(b, name)) {
				char m[128];
				snprintf(m, sizeof(m), "prepared statement \"%s\" does not exist",
				         name);
				rc = be_fail(b, "26000", "FetchPreparedStatement", m);
				goto out;
			}
			be_drop_stmt(b, name);
			snprintf(tag, sizeof(tag), "DEALLOCATE");
		}
	} else if (starts(stmt, len, "prepare")) {
		char name[64];
		sql_value(stmt + 7, stmt + len, name, sizeof(name));
		if (be_find_stmt(b, name)) {
			char m[128];
			snprintf(m, sizeof(m), "prepared statement \"%s\" already exists", name);
			rc = be_fail(b, "42P05", "StorePreparedStatement", m);
			goto out;
		}
		struct be_stmt *s = calloc(1, sizeof(*s));
		s->name = strdup(name);
		s->sql = strdup("SELECT 1");
		s->next = b->stmts;
		b->stmts = s;
		snprintf(tag, sizeof(tag), "PREPARE");
	} else if (is_copy_in(lower)) {
		struct evbuffer *x = evbuffer_new();
		evbuffer_add(x, "", 1);
		put16(x, 1);
		put16(x, 0);
		be_put(b, 'G', x);
		evbuffer_free(x);
		b->copy = extended ? 2 : 1;
		b->copy_rows = 0;
		rc = EX_COPY;
		goto out;
	} else if (is_copy_out(lower)) {
		struct evbuffer *x = evbuffer_new();
		evbuffer_add(x, "", 1);
		put16(x, 1);
		put16(x, 0);
		be_put(b, 'H', x);
		evbuffer_free(x);
		be_put_raw(b, 'd', "1\n", 2);
		be_put_raw(b, 'd', "2\n", 2);
		be_put_raw(b, 'c', NULL, 0);
		snprintf(tag, sizeof(tag), "COPY 2");
	} else if (returns_rows(stmt, len)) {
		if (has(lower, "set_config("))
			be_sql_set_config(b, stmt, len);
		if (starts(stmt, len, "execute")) {
			char name[64];
			sql_value(stmt + 7, stmt + len, name, sizeof(name));
			if (!be_find_stmt(b, name)) {
				char m[128];
				snprintf(m, sizeof(m), "prepared statement \"%s\" does not exist",
				         name);
				rc = be_fail(b, "26000", "FetchPreparedStatement", m);
				goto out;
			}
		}
		size_t size;
		int rows = rows_of(lower, &size);
		int first = 0, n = rows;
		if (portal) {
			if (!portal->started)
				portal->rows_total = rows;
			first = portal->rows_sent;
			n = portal->rows_total - first;
			if (max_rows > 0 && (uint32_t)n > max_rows)
				n = (int)max_rows;
		}
		if (!extended)
			be_put_rowdesc(b);
		for (int i = 0; i < n; i++)
			be_put_row(b, size);
		if (portal) {
			portal->started = true;
			portal->rows_sent += n;
			if (portal->rows_sent < portal->rows_total) {
				be_put_raw(b, 's', NULL, 0);
				goto out;
			}
			portal->done = true;
		}
		snprintf(tag, sizeof(tag), "%s %d", starts(stmt, len, "fetch") ? "FETCH" : "SELECT",
		         portal ? portal->rows_sent : n);
	} else if (starts(stmt, len, "insert")) {
		snprintf(tag, sizeof(tag), "INSERT 0 1");
	} else if (starts(stmt, len, "update") || starts(stmt, len, "delete") ||
	           starts(stmt, len, "merge")) {
		snprintf(tag, sizeof(tag), "%.6s 1", stmt);
		for (char *t = tag; *t; t++)
			*t = (char)toupper((unsigned char)*t);
	} else {
		/* CREATE TABLE, DROP TYPE, LISTEN, DO...: the first word or two */
		size_t n = 0, words = 0;
		bool two = starts(stmt, len, "create") || starts(stmt, len, "drop") ||
		           starts(stmt, len, "alter");
		while (n < len && n + 1 < sizeof(tag)) {
			if (isspace((unsigned char)stmt[n])) {
				if (++words == (two ? 2u : 1u))
					break;
				tag[n] = ' ';
			} else {
				tag[n] = (char)toupper((unsigned char)stmt[n]);
			}
			n++;
		}
		tag[n] = '\0';
	}
	if (portal)
		portal->done = true;
	be_put_tag(b, tag);
out:
	free(lower);
	return rc;
}

/* Run (or go on running, after a COPY) the Query in b->qtext. */
static void be_query_run(struct be_conn *b)
{
	const char *s;
	size_t len;
	while (!b->q_failed && next_stmt(b->qtext, b->qlen, &b->qpos, &s, &len)) {
		enum ex_result rc = be_exec(b, s, len, false, NULL, 0);
		if (rc == EX_CLOSED)
			return;
		if (rc == EX_COPY)
			return; /* resumed by CopyDone / CopyFail */
		if (rc == EX_ERROR)
			b->q_failed = true;
	}
	free(b->qtext);
	b->qtext = NULL;
	if (b->txn == 'I')
		be_drop_portals(b);
	be_put_ready(b);
}

static void be_query(struct be_conn *b, const uint8_t *body, size_t len)
{
	const uint8_t *nul = memchr(body, 0, len);
	if (!nul || (size_t)(nul - body) + 1 != len) {
		be_fatal(b, "08P01", "invalid string in message");
		return;
	}
	be_drop_stmt(b, ""); /* a simple Query destroys the unnamed statement */
	be_drop_portal(b, "");
	if (count_stmts((const char *)body, len - 1) == 0) {
		be_put_raw(b, 'I', NULL, 0);
		be_put_ready(b);
		return;
	}
	free(b->qtext);
	b->qtext = xstrndup((const char *)body, len - 1);
	b->qlen = len - 1;
	b->qpos = 0;
	b->q_failed = false;
	be_query_run(b);
}

/* An error in an extended-protocol message: skip until Sync. */
static void be_ext_error(struct be_conn *b, const char *code, const char *routine, const char *msg)
{
	be_fail(b, code, routine, msg);
	b->skip = true;
}

static int max_param_ref(const char *sql)
{
	int max = 0;
	for (const char *p = strchr(sql, '$'); p; p = strchr(p + 1, '$')) {
		int n = 0;
		const char *q = p + 1;
		while (isdigit((unsigned char)*q) && n < 100000)
			n = n * 10 + (*q++ - '0');
		if (q > p + 1 && n > max)
			max = n;
	}
	return max;
}

/* A pgmux_ statement B never got a Parse for (one that was skipped or
 * failed counts: a Bind pipelined behind it gets the client's own 26000, as
 * on a direct connection). */
static bool never_sent(struct be_conn *b, const char *name)
{
	for (int i = 0; i < b->nskipped; i++)
		if (strcmp(b->skipped[i], name) == 0)
			return false;
	return true;
}

static bool strict(struct be_conn *b)
{
	const struct rig *r = b->rig;
	return !b->lax && !r->scripted_input && !r->cfgs[r->cur].key.session;
}

static void note_server_name(struct be_conn *b, const char *name, const uint8_t *rest, size_t rlen)
{
	struct rig *r = b->rig;
	if (strncmp(name, "pgmux_", 6) != 0 || strlen(name) >= sizeof(r->names[0].name))
		return;
	uint64_t h = fnv(rest, rlen);
	for (int i = 0; i < r->nnames; i++) {
		if (strcmp(r->names[i].name, name) != 0)
			continue;
		if (r->names[i].hash != h && strict(b) && strncmp(name, "pgmux_d", 7) != 0)
			fail("pgmux prepared server statement %s with two different bodies", name);
		return;
	}
	if (r->nnames < MAX_NAMES) {
		snprintf(r->names[r->nnames].name, sizeof(r->names[0].name), "%s", name);
		r->names[r->nnames++].hash = h;
	}
}

static void be_parse(struct be_conn *b, const uint8_t *body, size_t len)
{
	struct proto_reader rd;
	proto_reader_init(&rd, body, len);
	const char *name = proto_get_str(&rd);
	const char *sql = proto_get_str(&rd);
	size_t rest_at = rd.pos - (sql ? strlen(sql) + 1 : 0);
	uint16_t ntypes = proto_get_u16(&rd);
	for (int i = 0; i < ntypes && !rd.err; i++)
		(void)proto_get_u32(&rd);
	if (rd.err || rd.pos != len) {
		be_ext_error(b, "08P01", "pq_getmsgend", "invalid message format");
		return;
	}
	b->ext_open = true;
	note_server_name(b, name, body + rest_at, len - rest_at);
	if (name[0] && be_find_stmt(b, name)) {
		if (strict(b) && strncmp(name, "pgmux_", 6) == 0)
			fail("pgmux prepared server statement %s twice on connection be%d", name,
			     b->serial);
		char m[128];
		snprintf(m, sizeof(m), "prepared statement \"%.60s\" already exists", name);
		be_ext_error(b, "42P05", "StorePreparedStatement", m);
		return;
	}
	if (count_stmts(sql, strlen(sql)) > 1) {
		be_ext_error(b, "42601", "exec_parse_message",
		             "cannot insert multiple commands into a prepared statement");
		return;
	}
	if (strcasestr(sql, "badparse")) {
		be_ext_error(b, "42601", "scanner_yyerror", "syntax error at or near \"badparse\"");
		return;
	}
	if (b->txn == 'E') {
		be_ext_error(b, "25P02", "exec_parse_message",
		             "current transaction is aborted, commands ignored until end of "
		             "transaction block");
		return;
	}
	be_drop_stmt(b, name);
	struct be_stmt *s = calloc(1, sizeof(*s));
	s->name = strdup(name);
	s->sql = strdup(sql);
	int refs = max_param_ref(sql);
	s->nparams = ntypes > refs ? ntypes : refs;
	s->next = b->stmts;
	b->stmts = s;
	be_put_raw(b, '1', NULL, 0);
}

static void be_bind(struct be_conn *b, const uint8_t *body, size_t len)
{
	struct proto_reader rd;
	proto_reader_init(&rd, body, len);
	const char *portal = proto_get_str(&rd);
	const char *name = proto_get_str(&rd);
	uint16_t nfmt = proto_get_u16(&rd);
	for (int i = 0; i < nfmt && !rd.err; i++)
		(void)proto_get_u16(&rd);
	uint16_t nparams = proto_get_u16(&rd);
	for (int i = 0; i < nparams && !rd.err; i++) {
		uint32_t l = proto_get_u32(&rd);
		if (l != 0xffffffffu)
			(void)proto_get_bytes(&rd, l);
	}
	uint16_t nres = proto_get_u16(&rd);
	for (int i = 0; i < nres && !rd.err; i++)
		(void)proto_get_u16(&rd);
	if (rd.err || rd.pos != len) {
		be_ext_error(b, "08P01", "pq_getmsgend", "insufficient data left in message");
		return;
	}
	b->ext_open = true;
	struct be_stmt *s = be_find_stmt(b, name);
	if (!s) {
		if (strict(b) && strncmp(name, "pgmux_", 6) == 0 && never_sent(b, name))
			fail("pgmux bound server statement %s, never prepared on connection be%d",
			     name, b->serial);
		char m[128];
		if (name[0])
			snprintf(m, sizeof(m), "prepared statement \"%.60s\" does not exist", name);
		else
			snprintf(m, sizeof(m), "unnamed prepared statement does not exist");
		be_ext_error(b, "26000", "FetchPreparedStatement", m);
		return;
	}
	if (b->txn == 'E') {
		be_ext_error(b, "25P02", "exec_bind_message",
		             "current transaction is aborted, commands ignored until end of "
		             "transaction block");
		return;
	}
	if (nparams != s->nparams) {
		char m[160];
		snprintf(m, sizeof(m),
		         "bind message supplies %d parameters, but prepared statement \"%.60s\" "
		         "requires %d",
		         nparams, name, s->nparams);
		be_ext_error(b, "08P01", "exec_bind_message", m);
		return;
	}
	if (name[0] && !b->stale_fired && strcasestr(s->sql, "stale")) {
		b->stale_fired = true;
		be_ext_error(b, "0A000", "RevalidateCachedQuery",
		             "cached plan must not change result type");
		return;
	}
	if (name[0] && !b->stale_fired && strcasestr(s->sql, "cache lookup")) {
		b->stale_fired = true;
		be_ext_error(b, "XX000", "getTypeOutputInfo", "cache lookup failed for type 16390");
		return;
	}
	if (portal[0] && be_find_portal(b, portal)) {
		char m[128];
		snprintf(m, sizeof(m), "cursor \"%.60s\" already exists", portal);
		be_ext_error(b, "42P03", "CreatePortal", m);
		return;
	}
	be_drop_portal(b, portal);
	struct be_portal *p = calloc(1, sizeof(*p));
	p->name = strdup(portal);
	p->sql = strdup(s->sql);
	p->next = b->portals;
	b->portals = p;
	be_put_raw(b, '2', NULL, 0);
}

static void be_describe(struct be_conn *b, const uint8_t *body, size_t len)
{
	struct proto_reader rd;
	proto_reader_init(&rd, body, len);
	uint8_t kind = proto_get_u8(&rd);
	const char *name = proto_get_str(&rd);
	if (rd.err || rd.pos != len || (kind != 'S' && kind != 'P')) {
		be_ext_error(b, "08P01", "exec_describe_message",
		             "invalid DESCRIBE message subtype");
		return;
	}
	b->ext_open = true;
	const char *sql;
	if (kind == 'S') {
		struct be_stmt *s = be_find_stmt(b, name);
		if (!s) {
			if (strict(b) && strncmp(name, "pgmux_", 6) == 0 && never_sent(b, name))
				fail("pgmux described server statement %s, never prepared on be%d",
				     name, b->serial);
			char m[128];
			snprintf(m, sizeof(m), "prepared statement \"%.60s\" does not exist", name);
			be_ext_error(b, "26000", "FetchPreparedStatement", m);
			return;
		}
		struct evbuffer *x = evbuffer_new();
		put16(x, (uint16_t)s->nparams);
		for (int i = 0; i < s->nparams; i++)
			put32(x, 23);
		be_put(b, 't', x);
		evbuffer_free(x);
		sql = s->sql;
	} else {
		struct be_portal *p = be_find_portal(b, name);
		if (!p) {
			char m[128];
			snprintf(m, sizeof(m), "portal \"%.60s\" does not exist", name);
			be_ext_error(b, "34000", "exec_describe_portal_message", m);
			return;
		}
		sql = p->sql;
	}
	const char *e = sql + strlen(sql), *st = skip_space(sql, e);
	if (returns_rows(st, (size_t)(e - st)))
		be_put_rowdesc(b);
	else
		be_put_raw(b, 'n', NULL, 0);
}

static void be_execute(struct be_conn *b, const uint8_t *body, size_t len)
{
	struct proto_reader rd;
	proto_reader_init(&rd, body, len);
	const char *name = proto_get_str(&rd);
	uint32_t max_rows = proto_get_u32(&rd);
	if (rd.err || rd.pos != len) {
		be_ext_error(b, "08P01", "pq_getmsgend", "invalid message format");
		return;
	}
	b->ext_open = true;
	struct be_portal *p = be_find_portal(b, name);
	if (!p) {
		char m[128];
		snprintf(m, sizeof(m), "portal \"%.60s\" does not exist", name);
		be_ext_error(b, "34000", "exec_execute_message", m);
		return;
	}
	const char *e = p->sql + strlen(p->sql), *st = skip_space(p->sql, e);
	if (st == e) {
		be_put_raw(b, 'I', NULL, 0);
		return;
	}
	if (p->done) {
		be_put_tag(b, "SELECT 0");
		return;
	}
	size_t l = (size_t)(e - st);
	while (l > 0 && (st[l - 1] == ';' || isspace((unsigned char)st[l - 1])))
		l--;
	enum ex_result rc = be_exec(b, st, l, true, p, max_rows);
	if (rc == EX_ERROR)
		b->skip = true;
}

static void be_sync(struct be_conn *b)
{
	b->skip = false;
	b->ext_open = false;
	if (b->txn == 'I')
		be_drop_portals(b);
	be_put_ready(b);
}

static void be_close_msg(struct be_conn *b, const uint8_t *body, size_t len)
{
	struct proto_reader rd;
	proto_reader_init(&rd, body, len);
	uint8_t kind = proto_get_u8(&rd);
	const char *name = proto_get_str(&rd);
	if (rd.err || rd.pos != len || (kind != 'S' && kind != 'P')) {
		be_ext_error(b, "08P01", "exec_close_message", "invalid CLOSE message subtype");
		return;
	}
	if (kind == 'S')
		be_drop_stmt(b, name);
	else
		be_drop_portal(b, name);
	be_put_raw(b, '3', NULL, 0);
}

/* A message while in copy-in mode. */
static void be_copy_msg(struct be_conn *b, char type, const uint8_t *body, size_t len)
{
	bool simple = b->copy == 1;
	switch (type) {
	case 'd':
		for (size_t i = 0; i < len; i++)
			b->copy_rows += body[i] == '\n';
		return;
	case 'H':
	case 'S':
		return; /* ignored in copy-in */
	case 'c': {
		char tag[32];
		snprintf(tag, sizeof(tag), "COPY %ld", b->copy_rows);
		b->copy = 0;
		be_put_tag(b, tag);
		if (simple)
			be_query_run(b);
		return;
	}
	case 'f':
		b->copy = 0;
		be_fail(b, "57014", "CopyGetData", "COPY from stdin failed: client sent CopyFail");
		break;
	case 'X':
		b->closing = true;
		return;
	default: {
		char m[96];
		snprintf(m, sizeof(m), "unexpected message type 0x%02X during COPY from stdin",
		         (unsigned char)type);
		b->copy = 0;
		be_fail(b, "08P01", "CopyGetData", m);
		break;
	}
	}
	/* the copy failed */
	if (simple) {
		b->q_failed = true;
		be_query_run(b);
	} else {
		b->skip = true;
	}
}

static void be_auth_ok(struct be_conn *b)
{
	uint32_t zero = 0;
	be_put_raw(b, 'R', &zero, 4);
	for (int i = 0; i < b->nparams; i++)
		be_put_param(b, b->params[i][0], b->params[i][1]);
	be_put_param(b, "session_authorization", b->user);
	uint8_t key[8];
	uint32_t pid = htonl(1000u + (uint32_t)b->serial),
	         k = htonl(0x5eed0000u + (uint32_t)b->serial);
	memcpy(key, &pid, 4);
	memcpy(key + 4, &k, 4);
	be_put_raw(b, 'K', key, 8);
	b->phase = BE_READY;
	be_put_ready(b);
	if (b->rig->scripted == RIG_SCRIPT_AFTER_LOGIN) {
		/* the login goes out; what follows is the script's */
		bufferevent_write_buffer(b->bev, b->queue);
		b->held = true;
	}
}

static void be_auth_request(struct be_conn *b, uint32_t code, const void *data, size_t len)
{
	struct evbuffer *x = evbuffer_new();
	put32(x, code);
	if (len)
		evbuffer_add(x, data, len);
	be_put(b, 'R', x);
	evbuffer_free(x);
}

static void be_startup(struct be_conn *b, const uint8_t *p, size_t len)
{
	struct rig *r = b->rig;
	uint32_t code = be32(p + 4);
	if (len == 16 && code == PROTO_CANCEL_REQUEST) {
		trace(r, "be%d: CancelRequest", b->serial);
		b->closing = true;
		return;
	}
	if (len == 8 && (code == PROTO_SSL_REQUEST || code == PROTO_GSSENC_REQUEST)) {
		bufferevent_write(b->bev, "N", 1);
		return;
	}
	if (code != PROTO_VERSION_3_0) {
		be_fatal(b, "0A000", "unsupported frontend protocol");
		return;
	}
	r->demands++;
	struct proto_reader rd;
	proto_reader_init(&rd, p + 8, len - 8);
	const char *n;
	while ((n = proto_get_str(&rd)) != NULL && n[0]) {
		const char *v = proto_get_str(&rd);
		if (!v)
			break;
		if (strcmp(n, "user") == 0)
			snprintf(b->user, sizeof(b->user), "%s", v);
	}
	if (!b->user[0]) {
		be_fatal(b, "28000", "no PostgreSQL user name specified in startup packet");
		return;
	}
	switch (r->be_auth) {
	case RIG_BE_TRUST:
		be_auth_ok(b);
		return;
	case RIG_BE_CLEARTEXT:
		be_auth_request(b, 3, NULL, 0);
		break;
	case RIG_BE_MD5:
		memcpy(b->salt, "s4lt", 4);
		be_auth_request(b, 5, b->salt, 4);
		break;
	case RIG_BE_SCRAM:
		be_auth_request(b, 10, "SCRAM-SHA-256\0", 15);
		b->sasl_step = 0;
		break;
	}
	b->phase = BE_AUTH;
}

static void be_password(struct be_conn *b, const uint8_t *body, size_t len)
{
	struct rig *r = b->rig;
	r->demands++;
	switch (r->be_auth) {
	case RIG_BE_CLEARTEXT:
		if (len == strlen(RIG_PASSWORD) + 1 && memcmp(body, RIG_PASSWORD, len) == 0)
			be_auth_ok(b);
		else
			be_fatal(b, "28P01", "password authentication failed");
		return;
	case RIG_BE_MD5: {
		char hash[MD5_PASSWD_LEN + 1], want[MD5_PASSWD_LEN + 1];
		md5_password_hash(RIG_PASSWORD, b->user, hash);
		if (md5_salted_response(hash, b->salt, want) == 0 && len == strlen(want) + 1 &&
		    memcmp(body, want, len) == 0)
			be_auth_ok(b);
		else
			be_fatal(b, "28P01", "password authentication failed");
		return;
	}
	case RIG_BE_SCRAM:
		break;
	case RIG_BE_TRUST:
		be_fatal(b, "08P01", "unexpected password message");
		return;
	}
	char *reply = NULL;
	if (b->sasl_step == 0) {
		struct proto_reader rd;
		proto_reader_init(&rd, body, len);
		const char *mech = proto_get_str(&rd);
		uint32_t dl = proto_get_u32(&rd);
		if (rd.err || !mech || strcmp(mech, "SCRAM-SHA-256") != 0 || dl != len - rd.pos) {
			be_fatal(b, "08P01", "malformed SASLInitialResponse");
			return;
		}
		b->scram = scram_server_new(&r->be_secret);
		if (!b->scram || scram_server_handle_first(b->scram, (const char *)body + rd.pos,
		                                           dl, &reply) < 0) {
			be_fatal(b, "08P01", "malformed SCRAM message");
			return;
		}
		be_auth_request(b, 11, reply, strlen(reply));
		free(reply);
		b->sasl_step = 1;
		return;
	}
	int rc = scram_server_handle_final(b->scram, (const char *)body, len, &reply, NULL);
	if (rc < 0) {
		free(reply);
		be_fatal(b, "28P01", "password authentication failed");
		return;
	}
	be_auth_request(b, 12, reply, strlen(reply));
	free(reply);
	be_auth_ok(b);
}

/* One whole message from pgmux (TYPE, BODY of LEN bytes). */
static void be_msg(struct be_conn *b, char type, const uint8_t *body, size_t len)
{
	struct rig *r = b->rig;
	trace(r, "be%d <- %c (%zu)%s%s", b->serial, type, len, b->skip ? " [skipping]" : "",
	      b->copy ? " [copy]" : "");
	if (type == 'Q' || type == 'S' || type == 'F' || type == 'H')
		r->demands++;
	if (b->phase == BE_AUTH) {
		if (type == 'p')
			be_password(b, body, len);
		else
			be_fatal(b, "08P01", "expected password response");
		return;
	}
	if (b->copy) {
		be_copy_msg(b, type, body, len);
		return;
	}
	bool known = strchr("QPBDECSHFXdcf", type) != NULL && type != '\0';
	if (!known) {
		char m[64];
		snprintf(m, sizeof(m), "invalid frontend message type %d", (unsigned char)type);
		be_fatal(b, "08P01", m);
		return;
	}
	/* a Parse of pgmux's own that the backend skips or fails: a Bind of it
	 * pipelined behind gets 26000, as the client's own would on a direct
	 * connection (only the name in the message differs) */
	if (type == 'P' && len > 6 && memcmp(body, "pgmux_", 6) == 0 && memchr(body, 0, len) &&
	    strlen((const char *)body) < sizeof(b->skipped[0]) &&
	    b->nskipped < (int)(sizeof(b->skipped) / sizeof(b->skipped[0])))
		snprintf(b->skipped[b->nskipped++], sizeof(b->skipped[0]), "%s", body);
	if (b->skip && type != 'S')
		return;
	switch (type) {
	case 'Q':
		be_query(b, body, len);
		break;
	case 'P':
		be_parse(b, body, len);
		break;
	case 'B':
		be_bind(b, body, len);
		break;
	case 'D':
		be_describe(b, body, len);
		break;
	case 'E':
		be_execute(b, body, len);
		break;
	case 'C':
		be_close_msg(b, body, len);
		break;
	case 'S':
		be_sync(b);
		break;
	case 'H':
		break;
	case 'F': {
		uint32_t null = 0xffffffffu;
		be_put_raw(b, 'V', &null, 4);
		be_put_ready(b);
		break;
	}
	case 'X':
		b->closing = true;
		break;
	default: /* CopyData, CopyDone, CopyFail outside copy: ignored */
		break;
	}
}

static uint32_t be_max_len(char type)
{
	return strchr("QFPBd", type) ? BE_LARGE_MAX : BE_SMALL_MAX;
}

static void be_read_cb(struct bufferevent *bev, void *arg)
{
	struct be_conn *b = arg;
	struct rig *r = b->rig;
	struct evbuffer *in = bufferevent_get_input(bev);
	while (!b->closing && !b->close_when_sent) {
		size_t avail = evbuffer_get_length(in);
		uint8_t hdr[8];
		if (b->phase == BE_STARTUP) {
			if (avail < 8)
				break;
			evbuffer_copyout(in, hdr, 8);
			uint32_t len = be32(hdr);
			if (len < 8 || len > PROTO_STARTUP_MAX_LEN) {
				be_fatal(b, "08P01", "invalid length of startup packet");
				break;
			}
			if (avail < len)
				break;
			uint8_t *p = fuzz_dup(evbuffer_pullup(in, len), len);
			evbuffer_drain(in, len);
			r->moved += len;
			be_startup(b, p, len);
			free(p);
			continue;
		}
		if (avail < 5)
			break;
		evbuffer_copyout(in, hdr, 5);
		uint32_t len = be32(hdr + 1);
		uint32_t max = b->phase == BE_AUTH ? 65535u : be_max_len((char)hdr[0]);
		if (len < 4 || len > max) {
			be_fatal(b, "08P01", "invalid message length");
			break;
		}
		if (avail < 1 + (size_t)len)
			break;
		evbuffer_drain(in, 5);
		uint8_t *body = malloc(len - 4 ? len - 4 : 1);
		if (!body)
			abort();
		evbuffer_remove(in, body, len - 4);
		r->moved += 1 + (size_t)len;
		be_msg(b, (char)hdr[0], body, len - 4);
		free(body);
	}
	be_flush(b);
	if (b->closing)
		be_free(b);
}

static void be_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct be_conn *b = arg;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		trace(b->rig, "be%d: pgmux closed the connection", b->serial);
		be_free(b);
	}
}

static void be_write_cb(struct bufferevent *bev, void *arg)
{
	struct be_conn *b = arg;
	b->rig->moved++;
}

/* pgmux's descriptor for the other end of accepted socket FD (whose peer is
 * SA): the loop must not call itself settled while TCP still holds bytes
 * between the two (a receiver's delayed ACK can hold a window-limited
 * sender back for 40 ms). -1 if not found. */
static int find_peer_fd(int fd, const struct sockaddr *sa, int socklen, struct sockaddr_in *out)
{
	if (sa->sa_family != AF_INET || socklen < (int)sizeof(*out))
		return -1;
	memcpy(out, sa, sizeof(*out));
	for (int i = 0; i < 4096; i++) {
		struct sockaddr_in me;
		socklen_t ml = sizeof(me);
		if (i == fd || getsockname(i, (struct sockaddr *)&me, &ml) < 0 ||
		    ml != sizeof(me) || me.sin_family != AF_INET)
			continue;
		if (me.sin_port == out->sin_port && me.sin_addr.s_addr == out->sin_addr.s_addr)
			return i;
	}
	return -1;
}

/* Bytes the kernel still holds back between pgmux and the backend on B, in
 * either direction: queued but not sent (window or congestion limited, so
 * waiting for the peer to read or acknowledge). Bytes sent and not yet
 * acknowledged are readable on the other side already: not counted (a
 * delayed ACK would make every exchange look busy for 40 ms). */
#ifndef SIOCOUTQNSD
#define SIOCOUTQNSD 0x894B
#endif
static int be_in_flight(struct be_conn *b)
{
	int n = 0, total = 0;
	if (ioctl(bufferevent_getfd(b->bev), SIOCOUTQNSD, &n) == 0)
		total += n;
	if (b->peer_fd >= 0) {
		struct sockaddr_in me;
		socklen_t ml = sizeof(me);
		if (getsockname(b->peer_fd, (struct sockaddr *)&me, &ml) == 0 && ml == sizeof(me) &&
		    me.sin_port == b->peer.sin_port && ioctl(b->peer_fd, SIOCOUTQNSD, &n) == 0)
			total += n;
		else
			b->peer_fd = -1; /* pgmux closed it: it may be another file now */
	}
	return total;
}

static void be_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                         int socklen, void *arg)
{
	struct rig *r = arg;
	struct be_conn *b = calloc(1, sizeof(*b));
	if (!b)
		abort();
	b->rig = r;
	b->serial = ++r->serial;
	b->txn = 'I';
	b->queue = evbuffer_new();
	b->bev = bufferevent_socket_new(r->w->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!b->queue || !b->bev)
		abort();
	be_reset_params(b, false);
	b->held = r->scripted == RIG_SCRIPT_ALL;
	b->peer_fd = find_peer_fd(fd, sa, socklen, &b->peer);
	int one = 1; /* as PostgreSQL does: no Nagle delay behind a delayed ACK */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	bufferevent_setcb(b->bev, be_read_cb, be_write_cb, be_event_cb, b);
	bufferevent_enable(b->bev, EV_READ | EV_WRITE);
	b->next = r->conns;
	r->conns = b;
	r->accepted++;
	r->moved++;
	trace(r, "be%d accepted", b->serial);
}

/* ---------------------------------------------------------------------- */
/* the fake backend: script control */

static struct be_conn *be_current(struct rig *r)
{
	for (struct be_conn *b = r->conns; b; b = b->next)
		if (!b->closing)
			return b;
	return NULL;
}

/* Length of the first whole message in Q, or 0. */
static size_t queued_msg_len(struct evbuffer *q)
{
	uint8_t hdr[5];
	if (evbuffer_copyout(q, hdr, 5) != 5)
		return evbuffer_get_length(q);
	size_t n = 1 + (size_t)be32(hdr + 1);
	size_t have = evbuffer_get_length(q);
	return n < have ? n : have;
}

static void be_after_script_op(struct be_conn *b)
{
	if (b->close_when_sent && evbuffer_get_length(b->queue) == 0)
		be_free(b);
}

void rig_be_set_scripted(struct rig *r, enum rig_script mode)
{
	r->scripted = mode;
	struct be_conn *b = r->conns, *next;
	for (; b; b = next) {
		next = b->next;
		b->held = mode == RIG_SCRIPT_ALL ||
		          (mode == RIG_SCRIPT_AFTER_LOGIN && b->phase == BE_READY);
		be_flush(b);
		if (b->closing)
			be_free(b);
	}
}

int rig_be_queued(struct rig *r)
{
	struct be_conn *b = be_current(r);
	if (!b)
		return 0;
	int n = 0;
	size_t off = 0, have = evbuffer_get_length(b->queue);
	while (off < have) {
		uint8_t hdr[5];
		struct evbuffer_ptr pos;
		evbuffer_ptr_set(b->queue, &pos, off, EVBUFFER_PTR_SET);
		if (evbuffer_copyout_from(b->queue, &pos, hdr, 5) != 5)
			break;
		off += 1 + (size_t)be32(hdr + 1);
		n++;
	}
	return n;
}

int rig_be_release(struct rig *r, int n)
{
	struct be_conn *b = be_current(r);
	int done = 0;
	if (!b)
		return 0;
	while ((n < 0 || done < n) && evbuffer_get_length(b->queue) > 0) {
		size_t len = queued_msg_len(b->queue);
		evbuffer_remove_buffer(b->queue, bufferevent_get_output(b->bev), len);
		done++;
	}
	be_after_script_op(b);
	return done;
}

void rig_be_release_part(struct rig *r, size_t n)
{
	struct be_conn *b = be_current(r);
	if (!b)
		return;
	size_t len = queued_msg_len(b->queue);
	if (len < 2)
		return;
	if (n >= len)
		n = len - 1;
	if (n == 0)
		n = 1;
	evbuffer_remove_buffer(b->queue, bufferevent_get_output(b->bev), n);
}

void rig_be_drop(struct rig *r, int n)
{
	struct be_conn *b = be_current(r);
	if (!b)
		return;
	for (int i = 0; i < n && evbuffer_get_length(b->queue) > 0; i++)
		evbuffer_drain(b->queue, queued_msg_len(b->queue));
	be_after_script_op(b);
}

void rig_be_inject(struct rig *r, const void *p, size_t n)
{
	struct be_conn *b = be_current(r);
	if (b && n)
		bufferevent_write(b->bev, p, n);
}

void rig_be_inject_msg(struct rig *r, char type, const void *body, size_t len)
{
	struct be_conn *b = be_current(r);
	if (!b)
		return;
	struct evbuffer *x = evbuffer_new();
	frame_raw(x, type, body, len);
	bufferevent_write_buffer(b->bev, x);
	evbuffer_free(x);
}

void rig_be_close(struct rig *r)
{
	struct be_conn *b = be_current(r);
	if (b)
		be_free(b);
}

int rig_be_take_demands(struct rig *r)
{
	int n = r->demands;
	r->demands = 0;
	return n;
}

int rig_be_accepted(const struct rig *r)
{
	return r->accepted;
}

bool rig_be_connected(const struct rig *r)
{
	for (struct be_conn *b = r->conns; b; b = b->next)
		if (!b->closing)
			return true;
	return false;
}

void rig_set_scripted_input(struct rig *r)
{
	r->scripted_input = true;
}

/* ---------------------------------------------------------------------- */
/* clients: what pgmux sends them */

static bool backend_type(uint8_t t)
{
	return t && strchr("RKSZTDCIEN A123ntsGHWdcVv", t) != NULL && t != ' ';
}

static void client_auth_request(struct rig_client *c, const uint8_t *body, size_t len)
{
	if (len < 4)
		return;
	c->auth_code = be32(body);
	if (c->auth_code == 0) {
		c->auth_pending = false;
		return;
	}
	free(c->auth_data);
	c->auth_data = fuzz_dup(body + 4, len - 4);
	c->auth_len = len - 4;
	c->auth_pending = true;
}

/* A whole (small) message from pgmux. */
static void client_msg(struct rig_client *c, char type, const uint8_t *body, size_t len)
{
	struct rig *r = c->rig;
	struct rig_client_seen *s = &c->seen;
	switch (type) {
	case 'R':
		client_auth_request(c, body, len);
		break;
	case 'K':
		if (len == 8) {
			s->have_key = true;
			s->pid = be32(body);
			s->key = be32(body + 4);
		}
		break;
	case 'Z':
		c->in_copy = false;
		c->copy_asked = false;
		s->ready++;
		s->status = len ? (char)body[0] : '?';
		if (s->ready > 1 + c->sent_qsf)
			fail("pgmux sent client %d its ReadyForQuery number %d, but the client "
			     "sent "
			     "only %d Query/Sync/FunctionCall messages (plus the login)",
			     c->fd, s->ready, c->sent_qsf);
		break;
	case 'E': {
		c->in_copy = false;
		s->errors++;
		const char *sev = proto_error_field(body, len, 'V');
		if (!sev)
			sev = proto_error_field(body, len, 'S');
		if (sev && strcmp(sev, "FATAL") == 0)
			s->fatal = true;
		const char *code = proto_error_field(body, len, 'C');
		snprintf(s->sqlstate, sizeof(s->sqlstate), "%s", code ? code : "");
		trace(r, "client %d <- E %s %s", c->fd, sev ? sev : "?", s->sqlstate);
		return;
	}
	case 'G':
		s->copy_in++;
		c->in_copy = true;
		c->copy_asked = false;
		break;
	default:
		break;
	}
	trace(r, "client %d <- %c (%zu)", c->fd, type, len);
}

/* Check and take apart what pgmux sent: BUF holds every byte not looked at
 * yet (a message looked at whole stays there until it is all in). */
static void client_parse(struct rig_client *c)
{
	struct rig *r = c->rig;
	struct evbuffer *in = c->in;
	for (;;) {
		size_t avail = evbuffer_get_length(in);
		if (c->skip) {
			size_t n = avail < c->skip ? avail : (size_t)c->skip;
			evbuffer_drain(in, n);
			c->skip -= n;
			if (c->skip)
				return;
			continue;
		}
		if (avail == 0)
			return;
		uint8_t hdr[5];
		if (c->tls) {
			evbuffer_drain(in, avail);
			return;
		}
		if (c->expect_ssl > 0) {
			evbuffer_copyout(in, hdr, 1);
			if (hdr[0] == 'N' || hdr[0] == 'S' || hdr[0] == 'G') {
				c->expect_ssl--;
				evbuffer_drain(in, 1);
				if (hdr[0] == 'S')
					c->tls = true;
				continue;
			}
			c->expect_ssl = 0;
		}
		if (avail < 5)
			return;
		evbuffer_copyout(in, hdr, 5);
		uint32_t len = be32(hdr + 1);
		if (len < 4 || len > 0x7fffffffu)
			fail("pgmux sent client %d a message of type 0x%02x with length %u", c->fd,
			     hdr[0], len);
		if (!r->scripted_input && !backend_type(hdr[0]))
			fail("pgmux sent client %d a message of type 0x%02x, not a backend message "
			     "type",
			     c->fd, hdr[0]);
		bool whole = len <= CLIENT_PARSE_MAX && strchr("RKZESG", hdr[0]);
		if (!whole) {
			trace(r, "client %d <- %c (%u)", c->fd, hdr[0], len - 4);
			evbuffer_drain(in, 5);
			c->skip = len - 4;
			continue;
		}
		if (avail < 1 + (size_t)len)
			return;
		evbuffer_drain(in, 5);
		uint8_t *body = malloc(len - 4 ? len - 4 : 1);
		if (!body)
			abort();
		evbuffer_remove(in, body, len - 4);
		client_msg(c, (char)hdr[0], body, len - 4);
		free(body);
	}
}

/* ---- what the client sends: framing, as pgmux reads it ---- */

static void track_sent(struct rig_client *c, const uint8_t *p, size_t n)
{
	if (n > 0 && !c->sent_any) {
		c->sent_any = true;
		if (p[0] == TLS_HANDSHAKE_BYTE && tls_accepting())
			c->tls = true; /* direct TLS */
	}
	if (c->tls) {
		c->sent_desync = true; /* TLS records: nothing to frame */
		return;
	}
	while (n > 0 && !c->sent_desync) {
		if (c->sent_skip) {
			size_t k = n < c->sent_skip ? n : (size_t)c->sent_skip;
			c->sent_skip -= k;
			p += k;
			n -= k;
			continue;
		}
		int need = c->sent_typed ? 5 : 8;
		while (n > 0 && c->shdr_len < need) {
			c->shdr[c->shdr_len++] = *p++;
			n--;
		}
		if (c->shdr_len < need)
			return;
		c->shdr_len = 0;
		if (!c->sent_typed) {
			uint32_t len = be32(c->shdr), code = be32(c->shdr + 4);
			if (len < 8 || len > PROTO_STARTUP_MAX_LEN) {
				c->sent_desync = true;
				return;
			}
			if (code == PROTO_SSL_REQUEST || code == PROTO_GSSENC_REQUEST)
				c->expect_ssl++;
			else if (code != PROTO_CANCEL_REQUEST)
				c->sent_typed = true;
			c->sent_skip = len - 8;
			continue;
		}
		uint32_t len = be32(c->shdr + 1);
		if (len < 4) {
			c->sent_desync = true;
			return;
		}
		char t = (char)c->shdr[0];
		if (t == 'c' || t == 'f')
			c->in_copy = false;
		if (t == 'Q' || t == 'S' || t == 'F') {
			c->sent_qsf++;
			c->errors_at_sync = c->seen.errors;
		}
		c->sent_skip = len - 4;
	}
}

bool rig_client_at_boundary(const struct rig_client *c)
{
	return !c->sent_desync && c->sent_skip == 0 && c->shdr_len == 0;
}

bool rig_client_typed(const struct rig_client *c)
{
	return c->sent_typed;
}

/* ---------------------------------------------------------------------- */
/* clients: API */

struct rig_client *rig_client_new(struct rig *r)
{
	if (r->nclients == MAX_CLIENTS)
		return NULL;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		abort();
	fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
	fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK);
	struct rig_client *c = calloc(1, sizeof(*c));
	if (!c)
		abort();
	c->rig = r;
	c->fd = sv[0];
	c->out = evbuffer_new();
	c->in = evbuffer_new();
	if (!c->out || !c->in)
		abort();
	r->clients[r->nclients++] = c;
	client_accept(r->w, sv[1], "rig");
	trace(r, "client %d connected", c->fd);
	return c;
}

void rig_client_send(struct rig_client *c, const void *p, size_t n)
{
	if (n > 5 && c->sent_typed && rig_client_at_boundary(c) &&
	    (((const uint8_t *)p)[0] == 'Q' || ((const uint8_t *)p)[0] == 'P') &&
	    memmem(p, n, "STDIN", 5))
		c->copy_asked = true;
	track_sent(c, p, n);
	if (c->fd >= 0 && n)
		evbuffer_add(c->out, p, n);
}

void rig_client_set_stalled(struct rig_client *c, bool stalled)
{
	c->stalled = stalled;
}

void rig_client_set_chunk(struct rig_client *c, size_t chunk)
{
	c->chunk = chunk;
}

size_t rig_client_pending(const struct rig_client *c)
{
	return evbuffer_get_length(c->out);
}

/* Input shapes that hit a known pgmux bug, to skip while fuzzing for the
 * next one (RIG_AVOID=name,name in the environment; never by default, so
 * that the regression inputs replay the bug):
 *   bind_after_error  a Bind or Describe sent after an ErrorResponse with
 *                     nothing outstanding (the server skips to Sync): see
 *                     regressions/fuzz_client_txn/uaf-bind-ensure-prepared
 *   query_in_copy     a Query or FunctionCall sent during copy-in (the backend
 *                     takes it as the copy's failure and never answers it):
 *                     regressions/fuzz_client_txn/query-during-copy-in-never-answered
 *   gone_before_copy  a client leaving (Terminate or close) after a COPY ... FROM
 *                     STDIN before its CopyInResponse came: it waits for it first.
 *                     regressions/fuzz_client_txn/copy-*-then-client-gone-*
 *   drain_stall       a client leaving while pgmux holds more than a socket's
 *                     worth of output for it (back-pressure has paused its
 *                     server): the client reads that first. See
 *                     regressions/fuzz_client_txn/drain-stalls-under-backpressure */
static const char *avoid_list(void)
{
	static const char *list;
	static bool init;
	if (!init) {
		list = getenv("RIG_AVOID");
		init = true;
	}
	return list;
}

static void drain_socket(struct rig_client *c)
{
	for (int k = 0; k < 256 && c->fd >= 0 && !c->eof; k++) {
		int n = 0;
		if (ioctl(c->fd, FIONREAD, &n) < 0 || n < 65536)
			break;
		rig_turn(c->rig);
	}
}

void rig_client_close(struct rig_client *c)
{
	if (c->fd < 0)
		return;
	if (avoid_list() && strstr(avoid_list(), "drain_stall"))
		drain_socket(c);
	if (c->copy_asked && rig_avoiding("gone_before_copy"))
		rig_run(c->rig);
	trace(c->rig, "client %d closes", c->fd);
	close(c->fd);
	c->fd = -1;
	evbuffer_drain(c->out, evbuffer_get_length(c->out));
}

bool rig_client_gone(const struct rig_client *c)
{
	return c->fd < 0 || c->eof;
}

const struct rig_client_seen *rig_client_seen(const struct rig_client *c)
{
	return &c->seen;
}

static void client_free(struct rig_client *c)
{
	rig_client_close(c);
	evbuffer_free(c->out);
	evbuffer_free(c->in);
	free(c->auth_data);
	scram_client_free(c->scram);
	free(c);
}

void rig_send_msg(struct rig_client *c, char type, const void *body, size_t len)
{
	struct evbuffer *x = evbuffer_new();
	frame_raw(x, type, body, len);
	size_t n = evbuffer_get_length(x);
	rig_client_send(c, evbuffer_pullup(x, -1), n);
	evbuffer_free(x);
}

static void send_buf(struct rig_client *c, char type, struct evbuffer *body)
{
	struct evbuffer *x = evbuffer_new();
	frame(x, type, body);
	size_t n = evbuffer_get_length(x);
	rig_client_send(c, evbuffer_pullup(x, -1), n);
	evbuffer_free(x);
}

void rig_client_startup(struct rig_client *c, const char *user, const char *const *names,
                        const char *const *values, int nparams)
{
	struct evbuffer *b = evbuffer_new();
	put32(b, PROTO_VERSION_3_0);
	putstr(b, "user");
	putstr(b, user);
	putstr(b, "database");
	putstr(b, RIG_DB);
	for (int i = 0; i < nparams; i++) {
		putstr(b, names[i]);
		putstr(b, values[i]);
	}
	evbuffer_add(b, "", 1);
	struct evbuffer *x = evbuffer_new();
	put32(x, (uint32_t)evbuffer_get_length(b) + 4);
	evbuffer_add_buffer(x, b);
	size_t n = evbuffer_get_length(x);
	snprintf(c->user, sizeof(c->user), "%s", user);
	rig_client_send(c, evbuffer_pullup(x, -1), n);
	evbuffer_free(x);
	evbuffer_free(b);
}

void rig_send_query(struct rig_client *c, const char *sql)
{
	rig_send_msg(c, 'Q', sql, strlen(sql) + 1);
}

void rig_send_parse(struct rig_client *c, const char *name, const char *sql, int ntypes)
{
	struct evbuffer *b = evbuffer_new();
	putstr(b, name);
	putstr(b, sql);
	put16(b, (uint16_t)ntypes);
	for (int i = 0; i < ntypes; i++)
		put32(b, 0);
	send_buf(c, 'P', b);
	evbuffer_free(b);
}

void rig_send_bind(struct rig_client *c, const char *portal, const char *stmt, int nparams)
{
	struct evbuffer *b = evbuffer_new();
	putstr(b, portal);
	putstr(b, stmt);
	put16(b, 0);
	put16(b, (uint16_t)nparams);
	for (int i = 0; i < nparams; i++) {
		char v[16];
		snprintf(v, sizeof(v), "%d", i + 1);
		put32(b, (uint32_t)strlen(v));
		evbuffer_add(b, v, strlen(v));
	}
	put16(b, 0);
	send_buf(c, 'B', b);
	evbuffer_free(b);
}

void rig_send_describe(struct rig_client *c, char kind, const char *name)
{
	struct evbuffer *b = evbuffer_new();
	evbuffer_add(b, &kind, 1);
	putstr(b, name);
	send_buf(c, 'D', b);
	evbuffer_free(b);
}

void rig_send_execute(struct rig_client *c, const char *portal, uint32_t max_rows)
{
	struct evbuffer *b = evbuffer_new();
	putstr(b, portal);
	put32(b, max_rows);
	send_buf(c, 'E', b);
	evbuffer_free(b);
}

void rig_send_close(struct rig_client *c, char kind, const char *name)
{
	struct evbuffer *b = evbuffer_new();
	evbuffer_add(b, &kind, 1);
	putstr(b, name);
	send_buf(c, 'C', b);
	evbuffer_free(b);
}

void rig_send_sync(struct rig_client *c)
{
	rig_send_msg(c, 'S', NULL, 0);
}

void rig_send_flush(struct rig_client *c)
{
	rig_send_msg(c, 'H', NULL, 0);
}

void rig_send_copy_data(struct rig_client *c, const char *line)
{
	rig_send_msg(c, 'd', line, strlen(line));
}

void rig_send_copy_done(struct rig_client *c)
{
	rig_send_msg(c, 'c', NULL, 0);
}

void rig_send_copy_fail(struct rig_client *c, const char *why)
{
	rig_send_msg(c, 'f', why, strlen(why) + 1);
}

void rig_send_terminate(struct rig_client *c)
{
	rig_send_msg(c, 'X', NULL, 0);
}

void rig_client_cancel(struct rig *r, const struct rig_client *c)
{
	struct rig_client *k = rig_client_new(r);
	if (!k)
		return;
	uint8_t req[16];
	uint32_t v[4] = {htonl(16), htonl(PROTO_CANCEL_REQUEST),
	                 htonl(c->seen.have_key ? c->seen.pid : 12345u),
	                 htonl(c->seen.have_key ? c->seen.key : 67890u)};
	memcpy(req, v, sizeof(req));
	rig_client_send(k, req, sizeof(req));
}

/* ---- authentication, the client's half ---- */

static int b64_decode(const char *s, size_t n, uint8_t *out, size_t outsz)
{
	if (n % 4 || n / 4 * 3 > outsz)
		return -1;
	int len = EVP_DecodeBlock(out, (const unsigned char *)s, (int)n);
	if (len < 0)
		return -1;
	if (n >= 1 && s[n - 1] == '=')
		len--;
	if (n >= 2 && s[n - 2] == '=')
		len--;
	return len;
}

/* Remember the keys for the salt and iteration count of server-first MSG. */
static void cache_keys(struct rig_client *c, const char *msg, size_t len, const char *password)
{
	struct rig *r = c->rig;
	char *m = xstrndup(msg, len);
	char *s = strstr(m, ",s="), *i = strstr(m, ",i=");
	if (s && i && i > s) {
		struct key_cache k = {.valid = true, .cfg = r->cur};
		snprintf(k.user, sizeof(k.user), "%s", c->user);
		int sl = b64_decode(s + 3, (size_t)(i - s - 3), k.salt, sizeof(k.salt));
		k.iterations = atoi(i + 3);
		struct scram_secret sec;
		if (sl > 0 && k.iterations > 0 &&
		    scram_secret_from_password(password, k.salt, (size_t)sl, k.iterations, &sec,
		                               k.client_key) == 0) {
			k.salt_len = (size_t)sl;
			memcpy(k.server_key, sec.server_key, SCRAM_KEY_LEN);
			memmove(&r->keys[1], &r->keys[0], sizeof(r->keys) - sizeof(r->keys[0]));
			r->keys[0] = k;
		}
	}
	free(m);
}

static const struct key_cache *find_keys(struct rig_client *c)
{
	struct rig *r = c->rig;
	for (size_t i = 0; i < sizeof(r->keys) / sizeof(r->keys[0]); i++)
		if (r->keys[i].valid && r->keys[i].cfg == r->cur &&
		    strcmp(r->keys[i].user, c->user) == 0)
			return &r->keys[i];
	return NULL;
}

int rig_client_auth_step(struct rig_client *c, const char *password)
{
	struct rig *r = c->rig;
	rig_run(r);
	if (!c->auth_pending || rig_client_gone(c))
		return 0;
	c->auth_pending = false;
	switch (c->auth_code) {
	case 3:
		rig_send_msg(c, 'p', password, strlen(password) + 1);
		return 1;
	case 5: {
		char hash[MD5_PASSWD_LEN + 1], resp[MD5_PASSWD_LEN + 1];
		if (c->auth_len < 4)
			return -1;
		md5_password_hash(password, c->user, hash);
		if (md5_salted_response(hash, c->auth_data, resp) < 0)
			return -1;
		rig_send_msg(c, 'p', resp, strlen(resp) + 1);
		return 1;
	}
	case 10: {
		struct scram_client_creds creds;
		memset(&creds, 0, sizeof(creds));
		const struct key_cache *k =
		        strcmp(password, RIG_PASSWORD) == 0 ? find_keys(c) : NULL;
		if (k) {
			memcpy(creds.client_key, k->client_key, SCRAM_KEY_LEN);
			memcpy(creds.server_key, k->server_key, SCRAM_KEY_LEN);
			memcpy(creds.salt, k->salt, k->salt_len);
			creds.salt_len = k->salt_len;
			creds.iterations = k->iterations;
		} else {
			creds.password = password;
		}
		scram_client_free(c->scram);
		c->scram = scram_client_new(&creds);
		c->scram_keys = k != NULL;
		c->sent_final = false;
		char *first = NULL;
		if (!c->scram || scram_client_first(c->scram, &first) < 0)
			return -1;
		const char *nonce = strstr(first, "r=");
		snprintf(c->nonce, sizeof(c->nonce), "%s", nonce ? nonce + 2 : "");
		struct evbuffer *b = evbuffer_new();
		putstr(b, "SCRAM-SHA-256");
		put32(b, (uint32_t)strlen(first));
		evbuffer_add(b, first, strlen(first));
		send_buf(c, 'p', b);
		evbuffer_free(b);
		free(first);
		return 1;
	}
	case 11: {
		char *final = NULL;
		if (!c->scram)
			return -1;
		const char *msg = (const char *)c->auth_data;
		int rc = scram_client_handle_server_first(c->scram, msg, c->auth_len, &final);
		if (rc < 0 && c->scram_keys) {
			/* another salt than the cached keys': the password, same nonce */
			struct scram_client_creds creds;
			memset(&creds, 0, sizeof(creds));
			creds.password = password;
			scram_client_free(c->scram);
			c->scram = scram_client_new_with_nonce(&creds, c->nonce);
			char *first = NULL;
			if (!c->scram || scram_client_first(c->scram, &first) < 0)
				return -1;
			free(first);
			c->scram_keys = false;
			rc = scram_client_handle_server_first(c->scram, msg, c->auth_len, &final);
		}
		if (rc < 0)
			return -1;
		if (!c->scram_keys)
			cache_keys(c, msg, c->auth_len, password);
		rig_send_msg(c, 'p', final, strlen(final));
		free(final);
		c->sent_final = true;
		return 1;
	}
	case 12:
		/* after our own proof, pgmux's signature must verify */
		if (c->scram &&
		    scram_client_handle_server_final(c->scram, (const char *)c->auth_data,
		                                     c->auth_len) < 0 &&
		    c->sent_final)
			fail("pgmux's SCRAM server-final-message did not verify");
		c->sent_final = false;
		return 1;
	default:
		return -1;
	}
}

int rig_client_login(struct rig_client *c, const char *user, const char *password,
                     const char *const *names, const char *const *values, int nparams)
{
	rig_client_startup(c, user, names, values, nparams);
	for (int i = 0; i < 8; i++) {
		int a = rig_client_auth_step(c, password);
		if (c->seen.ready > 0)
			return c->seen.fatal ? -1 : 0;
		if (a <= 0 || rig_client_gone(c))
			return -1;
	}
	return -1;
}

/* ---------------------------------------------------------------------- */
/* the loop */

static size_t be_output_total(struct rig *r)
{
	size_t n = 0;
	for (struct be_conn *b = r->conns; b; b = b->next)
		n += evbuffer_get_length(bufferevent_get_output(b->bev)) + 1;
	return n;
}

bool rig_turn(struct rig *r)
{
	bool moved = false;
	r->turns++;
	for (int i = 0; i < r->nclients; i++) {
		struct rig_client *c = r->clients[i];
		size_t have = c->fd >= 0 ? evbuffer_get_length(c->out) : 0;
		if (!have)
			continue;
		size_t n = c->chunk ? c->chunk : have;
		if (n < have / 256)
			n = have / 256; /* at most 256 turns per stream, whatever the chunk */
		if (n > have)
			n = have;
		if (n > WRITE_MAX)
			n = WRITE_MAX;
		ssize_t w = send(c->fd, evbuffer_pullup(c->out, (ssize_t)n), n,
		                 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w > 0) {
			evbuffer_drain(c->out, (size_t)w);
			moved = true;
		} else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			evbuffer_drain(c->out, have); /* pgmux closed it */
		}
	}
	size_t before = be_output_total(r);
	r->moved = 0;
	event_base_loop(r->w->base, EVLOOP_NONBLOCK);
	if (r->moved || be_output_total(r) != before)
		moved = true;
	for (int i = 0; i < r->nclients; i++) {
		struct rig_client *c = r->clients[i];
		for (int k = 0; k < 32 && c->fd >= 0 && !c->eof && !c->stalled; k++) {
			char buf[READ_CHUNK];
			ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (n > 0) {
				moved = true;
				c->seen.bytes += (uint64_t)n;
				evbuffer_add(c->in, buf, (size_t)n);
				client_parse(c);
				continue;
			}
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
				break;
			c->eof = true;
			moved = true;
			trace(r, "client %d: pgmux closed the connection", c->fd);
		}
	}
	if (event_base_get_num_events(r->w->base, EVENT_BASE_COUNT_ACTIVE) > 0)
		moved = true;
	if (moved) {
		r->tcp_waits = 0;
	} else if (r->tcp_waits < TCP_WAIT_TURNS) {
		/* bytes still in TCP between pgmux and the backend: not settled;
		 * give the kernel a moment (its ACK timers). Past TCP_WAIT_TURNS
		 * nobody is reading them: settled, and the end-of-input checks
		 * say who holds what. */
		for (struct be_conn *b = r->conns; b; b = b->next)
			if (be_in_flight(b) > 0) {
				if (r->tcp_waits == 0 && getenv("RIG_STATS")) {
					int a = 0, c2 = 0;
					(void)ioctl(bufferevent_getfd(b->bev), SIOCOUTQNSD, &a);
					if (b->peer_fd >= 0)
						(void)ioctl(b->peer_fd, SIOCOUTQNSD, &c2);
					fprintf(stderr,
					        "rig: wait be%d: backend unsent %d, pgmux unsent "
					        "%d, phase %d closing %d cws %d held %d\n",
					        b->serial, a, c2, b->phase, b->closing,
					        b->close_when_sent, b->held);
				}
				usleep(100);
				r->tcp_waits++;
				r->tcp_wait_total++;
				moved = true;
				break;
			}
	}
	return moved;
}

bool rig_run(struct rig *r)
{
	int idle = 0;
	for (int i = 0; i < TURN_CAP; i++) {
		if (rig_turn(r))
			idle = 0;
		else if (++idle >= IDLE_TURNS)
			return true;
	}
	fail("livelock: still busy after %d loop turns", TURN_CAP);
}

uint64_t rig_turns(const struct rig *r)
{
	return r->turns;
}

/* ---------------------------------------------------------------------- */
/* setup */

static void write_text(const char *path, const char *text)
{
	if (fuzz_write_file(path, (const uint8_t *)text, strlen(text)) < 0) {
		fprintf(stderr, "rig: cannot write %s\n", path);
		abort();
	}
}

static void config_err(void *arg, const char *file, int line, const char *reason)
{
	fprintf(stderr, "rig: %s:%d: %s\n", file, line, reason);
}

/* A P-256 key and a self-signed certificate for localhost, as PEM files
 * (made once per file pair; the fuzzer never verifies it). */
static void write_cert(const char *crt, const char *key)
{
	EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	X509 *x = X509_new();
	if (!pk || !x)
		abort();
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600L * 24 * 365);
	X509_NAME *name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1,
	                           -1, 0);
	X509_set_issuer_name(x, name);
	X509_set_pubkey(x, pk);
	if (!X509_sign(x, pk, EVP_sha256()))
		abort();
	FILE *f = fopen(crt, "w");
	if (!f || !PEM_write_X509(f, x) || fclose(f) != 0)
		abort();
	f = fopen(key, "w");
	if (!f || !PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL) || fclose(f) != 0)
		abort();
	X509_free(x);
	EVP_PKEY_free(pk);
}

static int config_index(struct rig *r, const struct rig_config *want)
{
	struct rig_config k;
	memset(&k, 0, sizeof(k)); /* field by field: WANT's padding is anything */
	k.auth = want->auth;
	k.session = want->session;
	k.deny = want->deny;
	k.pool_size = want->pool_size > 0 ? want->pool_size : 2;
	k.max_prepared = want->max_prepared > 0 ? want->max_prepared : 200;
	k.tls = want->tls;
	for (int i = 0; i < r->ncfgs; i++) {
		const struct rig_config *c = &r->cfgs[i].key;
		if (c->auth == k.auth && c->session == k.session && c->deny == k.deny &&
		    c->pool_size == k.pool_size && c->max_prepared == k.max_prepared &&
		    c->tls == k.tls)
			return i;
	}
	if (r->ncfgs == MAX_CONFIGS)
		abort();
	static const char *const auth[] = {"trust", "md5", "scram-sha-256"};
	char path[600], upath[600], text[3072], tls[1400] = "";
	/* written, loaded and removed at once: nothing is left in the scratch
	 * directory (pgmux reads neither file again) */
	if (mkdir(r->dir, 0700) < 0 && errno != EEXIST) {
		fprintf(stderr, "rig: cannot create %s\n", r->dir);
		abort();
	}
	snprintf(path, sizeof(path), "%s/pgmux-%d.ini", r->dir, r->ncfgs);
	snprintf(upath, sizeof(upath), "%s/users.txt", r->dir);
	write_users(r, upath);
	char crt[700] = "", key[700] = "";
	if (k.tls) {
		snprintf(crt, sizeof(crt), "%s/pgmux.crt", r->dir);
		snprintf(key, sizeof(key), "%s/pgmux.key", r->dir);
		write_cert(crt, key);
		snprintf(tls, sizeof(tls),
		         "client_tls_sslmode = prefer\n"
		         "client_tls_cert_file = %s\n"
		         "client_tls_key_file = %s\n",
		         crt, key);
	}
	snprintf(text, sizeof(text),
	         "[pgmux]\n"
	         "listen_addr = 127.0.0.1\n"
	         "workers = 1\n"
	         "pool_mode = %s\n"
	         "session_pinning = %s\n"
	         "auth_type = %s\n"
	         "auth_file = users.txt\n"
	         "max_client_conn = 1000\n"
	         "default_pool_size = %d\n"
	         "max_prepared_statements = %d\n"
	         "connection_borrow_timeout = 600\n"
	         "idle_client_timeout = 0\n"
	         "server_idle_timeout = 0\n"
	         "server_lifetime = 0\n"
	         "server_connect_timeout = 600\n"
	         "client_login_timeout = 600\n"
	         "log_level = error\n"
	         "server_tls_sslmode = disable\n"
	         "%s"
	         "\n"
	         "[database.%s]\n"
	         "host = 127.0.0.1\n"
	         "port = %d\n",
	         k.session ? "session" : "transaction", k.deny ? "deny" : "allow", auth[k.auth],
	         k.pool_size, k.max_prepared, tls, RIG_DB, r->port);
	write_text(path, text);
	struct cfg_entry *e = &r->cfgs[r->ncfgs];
	e->key = k;
	e->cfg = config_load(path, config_err, NULL);
	if (!e->cfg)
		abort();
	e->af = authfile_load(e->cfg->auth_file, config_err, NULL);
	if (!e->af)
		abort();
	char err[512];
	e->tls = tls_accept_ctx_new(e->cfg, err, sizeof(err));
	if (k.tls && !e->tls) {
		fprintf(stderr, "rig: %s\n", err);
		abort();
	}
	if (k.tls) {
		unlink(crt);
		unlink(key);
	}
	unlink(path);
	unlink(upath);
	rmdir(r->dir);
	return r->ncfgs++;
}

static void b64(const uint8_t *p, size_t n, char *out)
{
	EVP_EncodeBlock((unsigned char *)out, p, (int)n);
}

static void write_authfile(struct rig *r)
{
	static const uint8_t salt[16] = "rig-salt-16bytes";
	if (scram_secret_from_password(RIG_PASSWORD, salt, sizeof(salt), 16, &r->be_secret, NULL) <
	    0)
		abort();
	char s[64], sk[64], vk[64];
	b64(r->be_secret.salt, r->be_secret.salt_len, s);
	b64(r->be_secret.stored_key, SCRAM_KEY_LEN, sk);
	b64(r->be_secret.server_key, SCRAM_KEY_LEN, vk);
	snprintf(r->verifier, sizeof(r->verifier), "SCRAM-SHA-256$16:%s$%s:%s", s, sk, vk);
}

/* The auth_file, next to the config that names it. */
static void write_users(struct rig *r, const char *path)
{
	char md5[MD5_PASSWD_LEN + 1];
	md5_password_hash(RIG_PASSWORD, RIG_USER_MD5, md5);
	char text[1024];
	snprintf(text, sizeof(text), "\"%s\" \"%s\"\n\"%s\" \"%s\"\n\"%s\" \"%s\"\n",
	         RIG_USER_PLAIN, RIG_PASSWORD, RIG_USER_MD5, md5, RIG_USER_SCRAM, r->verifier);
	write_text(path, text);
}

struct rig *rig_get(void)
{
	if (the_rig)
		return the_rig;
	struct rig *r = calloc(1, sizeof(*r));
	if (!r)
		abort();
	signal(SIGPIPE, SIG_IGN);
	const char *lv = getenv("RIG_LOG");
	enum log_level level = LOG_ERROR;
	if (lv && log_level_parse(lv, &level) == 0) {
		log_set_level(level);
	} else {
		log_set_level(LOG_ERROR);
		int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
		if (null >= 0)
			log_set_fd(null);
	}
	r->trace = getenv("RIG_TRACE") != NULL;
	const char *dir = fuzz_scratch_dir();
	if (!dir)
		abort();
	snprintf(r->dir, sizeof(r->dir), "%s", dir);
	if (worker_global_init() < 0)
		abort();
	r->w = worker_new(0);
	if (!r->w || pool_worker_attach(r->w) < 0)
		abort();
	r->workers[0] = r->w;
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	r->lst = evconnlistener_new_bind(r->w->base, be_accept_cb, r,
	                                 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
	                                         LEV_OPT_CLOSE_ON_EXEC,
	                                 64, (struct sockaddr *)&sin, sizeof(sin));
	if (!r->lst)
		abort();
	struct sockaddr_in bound;
	socklen_t bl = sizeof(bound);
	if (getsockname(evconnlistener_get_fd(r->lst), (struct sockaddr *)&bound, &bl) < 0)
		abort();
	r->port = ntohs(bound.sin_port);
	write_authfile(r);
	r->cur = -1;
	the_rig = r;
	return r;
}

static void begin_state(struct rig *r, enum rig_be_auth be_auth)
{
	r->be_auth = be_auth;
	r->scripted = RIG_SCRIPT_OFF;
	r->scripted_input = false;
	r->demands = 0;
	r->accepted = 0;
	r->nnames = 0;
	r->turns = 0;
	r->fd_baseline = count_fds();
}

/* The first login of a pool waits for a server to learn the welcome
 * parameters; later ones do not. Log every auth_file user in once when a
 * configuration is first used, so that an input behaves the same whether
 * it runs first in the process or not. */
static void warm_up(struct rig *r)
{
	begin_state(r, RIG_BE_TRUST);
	for (int i = 0; i < 3; i++) {
		struct rig_client *c = rig_client_new(r);
		if (!c || rig_client_login(c, users[i], RIG_PASSWORD, NULL, NULL, 0) < 0) {
			fprintf(stderr, "rig: warm-up login of %s failed\n", users[i]);
			abort();
		}
	}
	rig_end(r);
}

void rig_begin(struct rig *r, const struct rig_config *cfg, enum rig_be_auth be_auth)
{
	int n = r->ncfgs;
	int i = config_index(r, cfg);
	if (i != r->cur) {
		FUZZ_CHECK(pool_total_servers() == 0 && client_count() == 0);
		pool_global_init(r->cfgs[i].cfg, r->cfgs[i].af, r->workers, 1);
		/* the installed context is given away: hand over a reference */
		if (r->cfgs[i].tls)
			SSL_CTX_up_ref(r->cfgs[i].tls);
		tls_accept_ctx_install(r->cfgs[i].tls);
		r->cur = i;
		if (i == n)
			warm_up(r);
	}
	begin_state(r, be_auth);
}

/* Servers pgmux counts for the auth_file users' pools: total and idle; and
 * the per-state counts SHOW POOLS will print, summed over those pools. */
static void pool_counts_of(struct rig *r, int *total, int *idle, struct pool_counts *pc)
{
	const struct config_db *db = config_find_db(r->cfgs[r->cur].cfg, RIG_DB);
	*total = *idle = 0;
	*pc = (struct pool_counts){0};
	for (int i = 0; db && i < 3; i++) {
		struct pool *p = pool_get(db, users[i]);
		if (!p)
			continue;
		struct pool_stats st = pool_get_stats(p);
		*total += st.total;
		*idle += st.idle;
		struct pool_counts c = pool_counts(p);
		pc->cl_active += c.cl_active;
		pc->cl_waiting += c.cl_waiting;
		pc->sv_active += c.sv_active;
		pc->sv_idle += c.sv_idle;
		pc->sv_used += c.sv_used;
		pc->sv_login += c.sv_login;
	}
}

/* The per-state counts agree with what is there: IDLE parked servers and
 * nothing else, once every client is gone and the loop has settled (or
 * nothing at all, once every server is gone too). */
static void check_state_counts(struct rig *r, int idle, const struct pool_counts *pc)
{
	if (pc->cl_active || pc->cl_waiting || pc->sv_active || pc->sv_used || pc->sv_login ||
	    pc->sv_idle != idle)
		fail("pool state counts are off: cl_active %d cl_waiting %d sv_active %d sv_idle %d "
		     "(%d parked) sv_used %d sv_login %d",
		     pc->cl_active, pc->cl_waiting, pc->sv_active, pc->sv_idle, idle, pc->sv_used,
		     pc->sv_login);
}

/* The server connections pgmux kept in its pool must be clean. Once every
 * client is gone, a server pgmux still holds open but has not parked is
 * stuck (waiting for a reply that will not come, or not reading). */
static void check_parked(struct rig *r)
{
	int total, idle;
	struct pool_counts pc;
	pool_counts_of(r, &total, &idle, &pc);
	if (total != idle) {
		for (struct be_conn *b = r->conns; b; b = b->next) {
			fprintf(stderr,
			        "rig: be%d: %zu bytes not yet written, %d in TCP, %zu of a "
			        "message from pgmux unfinished\n",
			        b->serial, evbuffer_get_length(bufferevent_get_output(b->bev)),
			        be_in_flight(b),
			        evbuffer_get_length(bufferevent_get_input(b->bev)));
		}
	}
	if (total != idle)
		fail("every client is gone and the loop has settled, but pgmux's pools count %d "
		     "servers of which only %d are idle (a server is stuck outside the pool)",
		     total, idle);
	check_state_counts(r, idle, &pc);
	for (struct be_conn *b = r->conns; b; b = b->next) {
		if (b->closing || b->close_when_sent || b->phase != BE_READY)
			continue;
		size_t partial = evbuffer_get_length(bufferevent_get_input(b->bev));
		if (b->txn != 'I' || b->copy || b->ext_open || b->skip || partial)
			fail("pgmux kept server connection be%d in its pool in a dirty state: "
			     "transaction status %c, copy %d, extended messages since Sync %d, "
			     "skipping to Sync %d, %zu bytes of a message unfinished",
			     b->serial, b->txn, b->copy, b->ext_open, b->skip, partial);
	}
}

static void print_stats(void)
{
	struct rig *r = the_rig;
	if (r)
		fprintf(stderr, "rig: %llu inputs, %llu loop turns waiting for TCP\n",
		        (unsigned long long)r->inputs, (unsigned long long)r->tcp_wait_total);
}

void rig_end(struct rig *r)
{
	static bool stats;
	if (!stats && getenv("RIG_STATS")) {
		stats = true;
		atexit(print_stats);
	}
	r->inputs++;
	rig_be_set_scripted(r, RIG_SCRIPT_OFF);
	rig_run(r);
	for (int i = 0; i < r->nclients; i++)
		rig_client_close(r->clients[i]);
	rig_run(r);
	if (!r->scripted_input && client_count() == 0)
		check_parked(r);
	while (r->conns)
		be_free(r->conns);
	rig_run(r);
	int servers = pool_total_servers(), clients = client_count();
	if (servers != 0 || clients != 0)
		fail("after every client and server connection was closed, pgmux still counts %d "
		     "servers and %d clients",
		     servers, clients);
	int total, idle;
	struct pool_counts pc;
	pool_counts_of(r, &total, &idle, &pc);
	check_state_counts(r, 0, &pc);
	for (int i = 0; i < r->nclients; i++)
		client_free(r->clients[i]);
	r->nclients = 0;
	int fds = count_fds();
	if (fds > r->fd_baseline)
		fail("file descriptors leaked: %d open at the start of the input, %d at the end",
		     r->fd_baseline, fds);
}

/* ---------------------------------------------------------------------- */
/* the stream player */

/* Bytes of DATA (N) that finish the message C is in the middle of, or
 * make the next whole one; everything when its framing is lost. */
static size_t client_span(const struct rig_client *c, const uint8_t *data, size_t n)
{
	if (c->sent_desync)
		return n;
	if (c->sent_skip || c->shdr_len) {
		/* finish the header byte by byte, then the body at once */
		if (c->shdr_len)
			return 1;
		return c->sent_skip < n ? (size_t)c->sent_skip : n;
	}
	if (!c->sent_typed) {
		if (n < 4)
			return n;
		uint32_t len = be32(data);
		return len >= 8 && len <= n ? len : n;
	}
	if (n < 5)
		return n;
	uint64_t total = 1 + (uint64_t)be32(data + 1);
	return total <= n ? (size_t)total : n;
}

static const size_t chunks[8] = {0, 1, 2, 3, 5, 16, 100, 4096};
static const size_t sizes[8] = {0, 100, 5000, 10001, 65537, 70000, 300000, 1100000};
static const char *const stmt_names[4] = {"", "s1", "s2", "s3"};

void rig_play_init(struct rig_play *p, struct rig *r, bool login)
{
	/* not the 64 kB of LAST: that costs more than a short input */
	memset(p->slot, 0, sizeof(p->slot));
	p->cur = 0;
	p->login_failed = false;
	p->names = NULL;
	p->values = NULL;
	p->nparams = 0;
	p->chunk = 0;
	p->last_len = 0;
	p->paced = false;
	p->r = r;
	p->login = login;
	p->user = RIG_USER_PLAIN;
}

struct rig_client *rig_play_client(struct rig_play *p)
{
	struct rig_client *c = p->slot[p->cur];
	if (c)
		return c;
	c = rig_client_new(p->r);
	if (!c)
		return NULL;
	p->slot[p->cur] = c;
	rig_client_set_chunk(c, p->chunk);
	if (p->login &&
	    rig_client_login(c, p->user, RIG_PASSWORD, p->names, p->values, p->nparams) < 0)
		p->login_failed = true;
	return c;
}

static void send_big(struct rig_client *c, char type, const char *name, size_t size)
{
	struct evbuffer *b = evbuffer_new();
	char fill[4096];
	memset(fill, 'x', sizeof(fill));
	if (type == 'B') {
		putstr(b, "");
		putstr(b, name);
		put16(b, 0);
		put16(b, 1);
		put32(b, (uint32_t)size);
	} else if (type == 'P' || type == 'Q') {
		if (type == 'P')
			putstr(b, name);
		evbuffer_add(b, "SELECT '", 8);
	}
	for (size_t left = size; left > 0;) {
		size_t k = left < sizeof(fill) ? left : sizeof(fill);
		evbuffer_add(b, fill, k);
		left -= k;
	}
	if (type == 'B')
		put16(b, 0);
	else if (type == 'P' || type == 'Q')
		evbuffer_add(b, "'", 2);
	if (type == 'P')
		put16(b, 0);
	send_buf(c, type, b);
	evbuffer_free(b);
}

bool rig_avoiding(const char *shape)
{
	const char *list = avoid_list();
	return list && strstr(list, shape);
}

static bool avoid(const struct rig_client *c, const uint8_t *msg, size_t n)
{
	const char *list = avoid_list();
	if (!list || n < 5 || !c->sent_typed)
		return false;
	if (strstr(list, "drain_stall") && msg[0] == 'X')
		drain_socket((struct rig_client *)c);
	if (strstr(list, "gone_before_copy") && msg[0] == 'X' && c->copy_asked)
		rig_run(c->rig);
	if (strstr(list, "query_in_copy") && (msg[0] == 'Q' || msg[0] == 'F') && c->in_copy)
		return true;
	if (strstr(list, "bind_after_error") && (msg[0] == 'B' || msg[0] == 'D') &&
	    c->seen.errors > c->errors_at_sync && c->seen.ready >= 1 + c->sent_qsf)
		return true;
	return false;
}

void rig_play_stream(struct rig_play *p, const uint8_t *data, size_t n)
{
	struct rig *r = p->r;
	size_t i = 0;
#define ARG(k) (i + (k) < n ? data[i + (k)] : 0)
	while (i < n) {
		struct rig_client *c = rig_play_client(p);
		if (!c)
			return;
		if (!rig_client_at_boundary(c) || data[i] < 0xf0 || data[i] > 0xfe) {
			size_t k = client_span(c, data + i, n - i);
			if (rig_client_at_boundary(c) && k <= sizeof(p->last)) {
				memcpy(p->last, data + i, k);
				p->last_len = k;
			}
			if (rig_client_at_boundary(c) && avoid(c, data + i, k)) {
				i += k;
				continue;
			}
			bool whole = rig_client_at_boundary(c);
			bool typed = c->sent_typed;
			rig_client_send(c, data + i, k);
			i += k;
			/* messages go out together, as a client writes a pipeline, up
			 * to a directive (or this much); or, in the paced mode, the
			 * client waits for the answer to each of these, as clients
			 * mostly do (and as a capture without its timing needs) */
			if (p->paced && whole && rig_client_at_boundary(c) &&
			    (!typed || strchr("QSHFcfp", data[i - k])))
				rig_run(r);
			else if (rig_client_pending(c) >= 65536)
				rig_turn(r);
			continue;
		}
		uint8_t op = data[i];
		switch (op) {
		case 0xf0: /* let everything settle */
			rig_run(r);
			i += 1;
			break;
		case 0xf1: /* switch to client slot ARG */
			p->cur = ARG(1) % RIG_PLAY_SLOTS;
			i += 2;
			break;
		case 0xf2: /* the client disconnects */
			rig_run(r);
			rig_client_close(c);
			p->slot[p->cur] = NULL;
			i += 1;
			break;
		case 0xf3: /* chunk size */
			p->chunk = chunks[ARG(1) % 8];
			rig_client_set_chunk(c, p->chunk);
			i += 2;
			break;
		case 0xf4: /* answer the authentication request right */
			(void)rig_client_auth_step(c, RIG_PASSWORD);
			i += 1;
			break;
		case 0xf5: /* ... or wrong */
			(void)rig_client_auth_step(c, "wrong password");
			i += 1;
			break;
		case 0xf6: /* a CancelRequest for it, from another connection */
			rig_client_cancel(r, c);
			i += 1;
			break;
		case 0xf7: /* a new connection that logs in properly as user ARG */
			rig_run(r);
			rig_client_close(c);
			c = rig_client_new(r);
			p->slot[p->cur] = c;
			if (c) {
				rig_client_set_chunk(c, p->chunk);
				(void)rig_client_login(c, users[ARG(1) % 3], RIG_PASSWORD, p->names,
				                       p->values, p->nparams);
			}
			i += 2;
			break;
		case 0xf8: /* a big Query (1100000: streamed past TEXT_WHOLE_MAX) */
			send_big(c, 'Q', "", sizes[ARG(1) % 8]);
			i += 2;
			break;
		case 0xf9: /* a big Bind */
			send_big(c, 'B', stmt_names[ARG(2) % 4], sizes[ARG(1) % 8]);
			i += 3;
			break;
		case 0xfa: /* a big Parse */
			send_big(c, 'P', stmt_names[ARG(2) % 4], sizes[ARG(1) % 8]);
			i += 3;
			break;
		case 0xfb: /* a big CopyData */
			send_big(c, 'd', "", sizes[ARG(1) % 8]);
			i += 2;
			break;
		case 0xfe: /* the client stops (or resumes) reading: back-pressure */
			c->stalled = !c->stalled;
			i += 1;
			break;
		case 0xfd: /* one loop turn: what is queued goes out now */
			rig_turn(r);
			i += 1;
			break;
		case 0xfc: /* the last whole message again, ARG+1 times */
			for (int k = 0; k <= ARG(1) % 64 && p->last_len; k++)
				rig_client_send(c, p->last, p->last_len);
			i += 2;
			break;
		}
	}
#undef ARG
	rig_run(r);
}

#ifdef __clang__
#pragma clang attribute pop
#endif
