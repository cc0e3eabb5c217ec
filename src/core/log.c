/* Logging in logfmt to a file descriptor (stderr by default). Each event is
 * formatted into one buffer and written with a single write(2), so lines from
 * different worker threads never interleave. */
#include "core/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int log_level_current = LOG_INFO; /* read without a lock: an int store is atomic enough */
static int log_fd = 2;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_set_level(enum log_level level)
{
	__atomic_store_n(&log_level_current, (int)level, __ATOMIC_RELAXED);
}

int log_level_parse(const char *s, enum log_level *out)
{
	for (int i = 0; i < 4; i++) {
		if (strcasecmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

const char *log_level_name(enum log_level level)
{
	return (level >= LOG_ERROR && level <= LOG_DEBUG) ? level_names[level] : "unknown";
}

bool log_enabled(enum log_level level)
{
	return (int)level <= __atomic_load_n(&log_level_current, __ATOMIC_RELAXED);
}

void log_set_fd(int fd)
{
	log_fd = fd;
}

void log_event(enum log_level level, const char *event, const char *fmt, ...)
{
	if (!log_enabled(level))
		return;
	char line[2048];
	struct timeval tv;
	struct tm tm;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	int n = snprintf(line, sizeof(line), "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s event=%s",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec, (long)(tv.tv_usec / 1000), log_level_name(level), event);
	if (n < 0)
		return;
	size_t len = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
	if (fmt && fmt[0] && len + 2 < sizeof(line)) {
		line[len++] = ' ';
		va_list ap;
		va_start(ap, fmt);
		int m = vsnprintf(line + len, sizeof(line) - len, fmt, ap);
		va_end(ap);
		if (m > 0)
			len += (size_t)m < sizeof(line) - len ? (size_t)m : sizeof(line) - len - 1;
	}
	if (len >= sizeof(line) - 1)
		len = sizeof(line) - 2;
	line[len++] = '\n';
	const char *p = line;
	while (len > 0) {
		ssize_t w = write(log_fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		p += w;
		len -= (size_t)w;
	}
}

const char *log_quote(char *buf, size_t size, const char *s)
{
	if (size == 0)
		return buf;
	if (!s)
		s = "";
	bool plain = s[0] != '\0';
	for (const char *q = s; *q && plain; q++) {
		unsigned char c = (unsigned char)*q;
		if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f)
			plain = false;
	}
	if (plain) {
		snprintf(buf, size, "%s", s);
		return buf;
	}
	size_t o = 0;
	buf[o++] = '"';
	for (const char *q = s; *q && o + 6 < size; q++) {
		unsigned char c = (unsigned char)*q;
		if (c == '"' || c == '\\') {
			buf[o++] = '\\';
			buf[o++] = (char)c;
		} else if (c < ' ' || c == 0x7f) {
			o += (size_t)snprintf(buf + o, size - o, "\\x%02x", c);
		} else {
			buf[o++] = (char)c;
		}
	}
	if (o + 1 < size)
		buf[o++] = '"';
	buf[o < size ? o : size - 1] = '\0';
	return buf;
}
