/* Startup packet parsing. See startup.h. Hardened against the startup-phase
 * pitfalls other poolers hit: missing terminator, empty or overlong names,
 * duplicate keys, _pq_ options forwarded as parameters. */
#include "pg/startup.h"

#include "pg/proto.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_NAME_LEN 63 /* NAMEDATALEN - 1 */

static int fail(const char **err, const char **sqlstate, const char *why, const char *code)
{
	*err = why;
	*sqlstate = code;
	return -1;
}

static int add_param(struct startup_packet *sp, const char *name, const char *value)
{
	if (sp->nparams >= STARTUP_MAX_PARAMS)
		return -1;
	for (int i = 0; i < sp->nparams; i++) {
		if (strcasecmp(sp->params[i].name, name) == 0) {
			/* the later setting wins, as in PostgreSQL */
			char *v = strdup(value);
			if (!v)
				return -1;
			free(sp->params[i].value);
			sp->params[i].value = v;
			return 0;
		}
	}
	sp->params[sp->nparams].name = strdup(name);
	sp->params[sp->nparams].value = strdup(value);
	if (!sp->params[sp->nparams].name || !sp->params[sp->nparams].value) {
		free(sp->params[sp->nparams].name);
		free(sp->params[sp->nparams].value);
		return -1;
	}
	sp->nparams++;
	return 0;
}

/* Next whitespace-separated word of the options string, with backslash
 * escapes resolved, into WORD (size SIZE). Returns NULL at the end. */
static const char *next_word(const char *s, char *word, size_t size, bool *toolong)
{
	while (*s == ' ' || *s == '\t')
		s++;
	if (!*s)
		return NULL;
	size_t n = 0;
	while (*s && *s != ' ' && *s != '\t') {
		if (*s == '\\' && s[1])
			s++;
		if (n + 1 >= size)
			*toolong = true;
		else
			word[n++] = *s;
		s++;
	}
	word[n] = '\0';
	return s;
}

/* Parameters given explicitly in the packet win over -c settings from
 * "options", as in PostgreSQL (process_startup_options runs first there). */
static bool is_explicit(const struct startup_packet *sp, int nexplicit, const char *name)
{
	for (int i = 0; i < nexplicit; i++)
		if (strcasecmp(sp->params[i].name, name) == 0)
			return true;
	return false;
}

static int add_setting(struct startup_packet *sp, int nexplicit, const char *setting)
{
	const char *eq = strchr(setting, '=');
	if (!eq || eq == setting || (size_t)(eq - setting) > MAX_NAME_LEN)
		return -1;
	char name[MAX_NAME_LEN + 1];
	memcpy(name, setting, (size_t)(eq - setting));
	name[eq - setting] = '\0';
	for (char *p = name; *p; p++)
		if (*p == '-')
			*p = '_'; /* --foo-bar=x means foo_bar, as in postgres */
	if (is_explicit(sp, nexplicit, name))
		return 0;
	return add_param(sp, name, eq + 1);
}

int startup_parse_options(struct startup_packet *sp, const char *options)
{
	char word[PROTO_STARTUP_MAX_LEN];
	bool toolong = false;
	int nexplicit = sp->nparams;
	const char *s = options;
	while ((s = next_word(s, word, sizeof(word), &toolong)) != NULL) {
		if (toolong)
			return -1;
		if (strcmp(word, "-c") == 0) {
			s = next_word(s, word, sizeof(word), &toolong);
			if (!s || toolong || add_setting(sp, nexplicit, word) < 0)
				return -1;
		} else if (strncmp(word, "-c", 2) == 0) {
			if (add_setting(sp, nexplicit, word + 2) < 0)
				return -1;
		} else if (strncmp(word, "--", 2) == 0) {
			if (add_setting(sp, nexplicit, word + 2) < 0)
				return -1;
		} else {
			return -1;
		}
	}
	return 0;
}

/* Parameters that never become server-side SETs. */
static bool is_reserved(const char *name)
{
	return strcmp(name, "user") == 0 || strcmp(name, "database") == 0 ||
	       strcmp(name, "options") == 0 || strcmp(name, "replication") == 0;
}

static int parse_pairs(struct proto_reader *r, struct startup_packet *sp, const char **err,
		       const char **sqlstate)
{
	const char *options = NULL;
	for (;;) {
		const char *name = proto_get_str(r);
		if (!name)
			return fail(err, sqlstate, "startup packet is not terminated", "08P01");
		if (name[0] == '\0')
			break;
		const char *value = proto_get_str(r);
		if (!value)
			return fail(err, sqlstate, "startup packet parameter has no value", "08P01");
		if (strcmp(name, "user") == 0) {
			if (sp->user)
				return fail(err, sqlstate, "duplicate user parameter", "08P01");
			sp->user = strdup(value);
			if (!sp->user)
				return fail(err, sqlstate, "out of memory", "53200");
		} else if (strcmp(name, "database") == 0) {
			if (sp->database)
				return fail(err, sqlstate, "duplicate database parameter", "08P01");
			sp->database = strdup(value);
			if (!sp->database)
				return fail(err, sqlstate, "out of memory", "53200");
		} else if (strcmp(name, "replication") == 0) {
			if (strcasecmp(value, "false") != 0 && strcasecmp(value, "off") != 0 &&
			    strcmp(value, "0") != 0 && strcasecmp(value, "no") != 0)
				return fail(err, sqlstate, "replication connections are not supported",
					    "0A000");
		} else if (strcmp(name, "options") == 0) {
			options = value;
		} else if (strncmp(name, "_pq_.", 5) == 0) {
			if (sp->npq_opts >= STARTUP_MAX_PARAMS)
				return fail(err, sqlstate, "too many protocol options", "08P01");
			sp->pq_opts[sp->npq_opts] = strdup(name);
			if (!sp->pq_opts[sp->npq_opts])
				return fail(err, sqlstate, "out of memory", "53200");
			sp->npq_opts++;
		} else if (!is_reserved(name)) {
			if (name[0] == '\0' || strlen(name) > MAX_NAME_LEN)
				return fail(err, sqlstate, "invalid parameter name", "08P01");
			if (add_param(sp, name, value) < 0)
				return fail(err, sqlstate, "too many startup parameters", "08P01");
		}
	}
	if (r->pos != r->len)
		return fail(err, sqlstate, "trailing bytes after startup packet terminator", "08P01");
	if (options && options[0] && startup_parse_options(sp, options) < 0)
		return fail(err, sqlstate, "unsupported startup options: only -c name=value is allowed",
			    "08P01");
	return 0;
}

int startup_parse(const uint8_t *data, size_t len, struct startup_packet *out, const char **err,
		  const char **sqlstate)
{
	memset(out, 0, sizeof(*out));
	if (len < 8 || len > PROTO_STARTUP_MAX_LEN)
		return fail(err, sqlstate, "invalid startup packet length", "08P01");
	struct proto_reader r;
	proto_reader_init(&r, data, len);
	uint32_t plen = proto_get_u32(&r);
	if (plen != len)
		return fail(err, sqlstate, "startup packet length mismatch", "08P01");
	uint32_t code = proto_get_u32(&r);
	out->version = code;
	if (code == PROTO_SSL_REQUEST || code == PROTO_GSSENC_REQUEST) {
		if (len != 8)
			return fail(err, sqlstate, "invalid encryption request length", "08P01");
		out->kind = code == PROTO_SSL_REQUEST ? STARTUP_SSL : STARTUP_GSSENC;
		return 0;
	}
	if (code == PROTO_CANCEL_REQUEST) {
		if (len != 16)
			return fail(err, sqlstate, "invalid cancel request length", "08P01");
		out->kind = STARTUP_CANCEL;
		out->cancel_pid = proto_get_u32(&r);
		out->cancel_key = proto_get_u32(&r);
		return 0;
	}
	if ((code >> 16) != 3)
		return fail(err, sqlstate, "unsupported frontend protocol: pgmux speaks 3.0",
			    "0A000");
	out->kind = STARTUP_MESSAGE;
	if (parse_pairs(&r, out, err, sqlstate) < 0)
		return -1;
	if (!out->user || !out->user[0])
		return fail(err, sqlstate, "no PostgreSQL user name specified in startup packet",
			    "28000");
	if (strlen(out->user) > MAX_NAME_LEN)
		return fail(err, sqlstate, "user name too long", "08P01");
	if (!out->database || !out->database[0]) {
		free(out->database);
		out->database = strdup(out->user);
		if (!out->database)
			return fail(err, sqlstate, "out of memory", "53200");
	}
	if (strlen(out->database) > MAX_NAME_LEN)
		return fail(err, sqlstate, "database name too long", "08P01");
	return 0;
}

void startup_cleanup(struct startup_packet *sp)
{
	free(sp->user);
	free(sp->database);
	for (int i = 0; i < sp->nparams; i++) {
		free(sp->params[i].name);
		free(sp->params[i].value);
	}
	for (int i = 0; i < sp->npq_opts; i++)
		free(sp->pq_opts[i]);
	memset(sp, 0, sizeof(*sp));
}
