/* The first packet a client sends: StartupMessage, SSLRequest,
 * GSSENCRequest or CancelRequest. Parsed from a complete packet (length word
 * included); the caller frames it (length 8..PROTO_STARTUP_MAX_LEN). */
#pragma once

#include <stddef.h>
#include <stdint.h>

enum startup_kind { STARTUP_MESSAGE, STARTUP_SSL, STARTUP_GSSENC, STARTUP_CANCEL };

#define STARTUP_MAX_PARAMS 64

struct startup_param {
	char *name;  /* owned */
	char *value; /* owned */
};

struct startup_packet {
	enum startup_kind kind;
	uint32_t version;          /* protocol version word (major << 16 | minor) */
	char *user;                /* owned; required */
	char *database;            /* owned; defaults to user */
	struct startup_param params[STARTUP_MAX_PARAMS]; /* session parameters to apply on the
							   * server (options' -c pairs included) */
	int nparams;
	char *pq_opts[STARTUP_MAX_PARAMS]; /* owned: unrecognised _pq_.* option names */
	int npq_opts;
	uint32_t cancel_pid;       /* CancelRequest */
	uint32_t cancel_key;
};

/* Parse DATA (LEN bytes, starting with the length word). Returns 0, or -1
 * with *ERR set to a static reason and *SQLSTATE to the code to answer with
 * (08P01 protocol violation, 0A000 unsupported feature such as replication
 * or protocol 2, 28000 no user, 53200 out of memory). Frees nothing on failure: call
 * startup_cleanup either way. */
int startup_parse(const uint8_t *data, size_t len, struct startup_packet *out, const char **err,
		  const char **sqlstate) __attribute__((warn_unused_result));

void startup_cleanup(struct startup_packet *sp);

/* Split the "options" parameter ("-c a=b --c=d", backslash escapes) into
 * name/value pairs appended to SP->params. Returns 0, or -1 if it holds
 * anything but -c/-- settings. Exposed for tests. */
int startup_parse_options(struct startup_packet *sp, const char *options)
	__attribute__((warn_unused_result));
