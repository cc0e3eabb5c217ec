/* The PostgreSQL v3 wire protocol on buffers, without I/O: message framing
 * (the 5-byte header), per-type length limits, a bounds-checked reader for
 * message bodies, and builders that append whole messages to an evbuffer.
 * Builders never fail half-way: a message is appended whole or not at all. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;

#define PROTO_HEADER_LEN 5
#define PROTO_STARTUP_MAX_LEN 10000
#define PROTO_VERSION_3_0 196608u
#define PROTO_SSL_REQUEST 80877103u
#define PROTO_GSSENC_REQUEST 80877104u
#define PROTO_CANCEL_REQUEST 80877102u

enum proto_result { PROTO_OK, PROTO_AGAIN, PROTO_ERROR };

struct proto_header {
	char type;    /* message type byte */
	uint32_t len; /* the length field: body + 4 */
};

/* Read a header from the first AVAIL bytes of P. AGAIN if fewer than 5
 * bytes; ERROR if the length is under 4 or over MAX_LEN. */
enum proto_result proto_parse_header(const uint8_t *p, size_t avail, uint32_t max_len,
				     struct proto_header *h);

/* A whole message taken out of an input buffer. Handlers read it here and
 * never in the buffer it came from, so no pointer into that buffer can
 * outlive a drain or a move of its bytes (a read-after-free by
 * construction: the buffer no longer holds the message when the handler
 * runs). Forward it with proto_msg_forward. */
struct proto_msg {
	char type;            /* message type byte */
	uint32_t len;         /* the length field: body + 4 */
	const uint8_t *body;  /* body_len bytes, inside raw */
	size_t body_len;
	uint8_t *raw;         /* header + body: inline_buf, or heap (owned) */
	size_t total;         /* 1 + len */
	uint8_t inline_buf[256];
};

/* Remove the whole message with header H (1 + H->len bytes, all there) from
 * the front of IN into M. Returns 0, or -1 on allocation failure (IN is
 * unchanged then). Call proto_msg_cleanup either way. */
int proto_msg_take(struct evbuffer *in, const struct proto_header *h, struct proto_msg *m)
	__attribute__((warn_unused_result));
/* Append M, header included, to OUT. Returns 0 / -1. */
int proto_msg_forward(struct evbuffer *out, const struct proto_msg *m)
	__attribute__((warn_unused_result));
void proto_msg_cleanup(struct proto_msg *m);

/* Largest length field accepted for a message of TYPE from a client: small
 * control messages 10,000 bytes, authentication 65,535 before login, data
 * messages (Query, Parse, Bind, CopyData, FunctionCall) 1 GiB - 1. */
uint32_t proto_client_max_len(char type, bool authenticated);

/* True for the message types a client may send once logged in (B C D E F H
 * P Q S X c d f); PostgreSQL closes the connection on any other with
 * "invalid frontend message type". */
bool proto_client_type_known(char type);

/* Check the layout of a whole client message of TYPE (BODY, LEN bytes) the
 * way the backend reads it: strings terminated inside the body, counts that
 * match what follows, nothing left over, Describe/Close subtypes 'S' or
 * 'P'. Query, Parse and Bind may be checked from a prefix only (PREFIX: LEN
 * bytes are the start of a longer body): then only the names in it are
 * checked (the statement name of a Parse, both names of a Bind). Returns NULL
 * if it is well formed, else PostgreSQL's message for the problem. Types
 * without a fixed layout (CopyData, FunctionCall...) are accepted. */
const char *proto_check_client_msg(char type, const uint8_t *body, size_t len, bool prefix);

/* Largest length field accepted from a server: 1 GiB - 1 for row, copy,
 * notice, error and notification messages, 10,000 for the rest... plus
 * authentication (65,535). */
uint32_t proto_server_max_len(char type);

/* Bounds-checked reader over one message body. Any read past the end sets
 * err and returns 0 / NULL; callers check err once at the end. */
struct proto_reader {
	const uint8_t *p; /* borrowed: body start */
	size_t len;       /* body length */
	size_t pos;       /* read offset */
	bool err;         /* set by any out-of-bounds read */
};

void proto_reader_init(struct proto_reader *r, const void *p, size_t len);
uint8_t proto_get_u8(struct proto_reader *r);
uint16_t proto_get_u16(struct proto_reader *r);
uint32_t proto_get_u32(struct proto_reader *r);
/* A NUL-terminated string inside the body, or NULL (err set) if none. */
const char *proto_get_str(struct proto_reader *r);
/* N raw bytes, or NULL (err set). */
const uint8_t *proto_get_bytes(struct proto_reader *r, size_t n);

/* The value of field CODE ('C' = SQLSTATE, 'M' = message, 'S'/'V' =
 * severity) of an ErrorResponse/NoticeResponse BODY, or NULL when absent
 * (or when the body is damaged before that field). Pointer into BODY,
 * always NUL-terminated inside it. */
const char *proto_error_field(const uint8_t *body, size_t len, char code);

/* Append an ErrorResponse/NoticeResponse of TYPE with BODY's fields except
 * those whose codes are in DROP (a damaged tail is cut off). */
int proto_write_error_filtered(struct evbuffer *out, char type, const uint8_t *body, size_t len,
			       const char *drop);

/* ---- builders (append to OUT; return 0, or -1 on allocation failure) ---- */
int proto_write_error(struct evbuffer *out, const char *severity, const char *sqlstate,
		      const char *fmt, ...) __attribute__((format(printf, 4, 5)));
int proto_write_auth(struct evbuffer *out, uint32_t code, const void *data, size_t len);
int proto_write_param_status(struct evbuffer *out, const char *name, const char *value);
int proto_write_backend_key(struct evbuffer *out, uint32_t pid, uint32_t key);
int proto_write_ready(struct evbuffer *out, char status);
int proto_write_query(struct evbuffer *out, const char *sql);
int proto_write_password(struct evbuffer *out, const char *password);
int proto_write_sasl_initial(struct evbuffer *out, const char *mech, const void *data, size_t len);
int proto_write_sasl_response(struct evbuffer *out, const void *data, size_t len);
int proto_write_negotiate(struct evbuffer *out, uint32_t minor, const char *const *opts, int nopts);
int proto_write_cancel(struct evbuffer *out, uint32_t pid, uint32_t key);
/* SSLRequest: length 8, code 80877103. */
int proto_write_ssl_request(struct evbuffer *out);
int proto_write_terminate(struct evbuffer *out);
/* StartupMessage 3.0 with NAMES[i]=VALUES[i] pairs. */
int proto_write_startup(struct evbuffer *out, const char *const *names, const char *const *values,
			int n);
/* Any message: TYPE plus LEN body bytes. */
int proto_write_msg(struct evbuffer *out, char type, const void *body, size_t len);
