/* Logging: one line per event on stderr, in logfmt:
 *   ts=2026-11-25T13:47:46.123Z level=info event=client_login db=app user=app
 * Callers pass the event name and the remaining key=value pairs as a printf
 * format. Values that may contain spaces or quotes go through log_quote().
 * Never log a password, a token or a secret. Thread-safe. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

void log_set_level(enum log_level level);
/* Parse "error" | "warn" | "info" | "debug". Returns 0, or -1 if unknown. */
int log_level_parse(const char *s, enum log_level *out) __attribute__((warn_unused_result));
const char *log_level_name(enum log_level level);
bool log_enabled(enum log_level level);

/* Redirect output to FD (default 2). Used by --daemon with a log file. */
void log_set_fd(int fd);

/* Write one line: ts, level, event, then FMT's key=value pairs (may be ""). */
void log_event(enum log_level level, const char *event, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Quote S for a logfmt value into BUF (always NUL-terminated): returned as is
 * when it has no space, quote, '=' or control character, else wrapped in
 * double quotes with \" and \\ escapes and control bytes as \xNN. Returns BUF. */
const char *log_quote(char *buf, size_t size, const char *s);

#define log_error(ev, ...) log_event(LOG_ERROR, ev, __VA_ARGS__)
#define log_warn(ev, ...) log_event(LOG_WARN, ev, __VA_ARGS__)
#define log_info(ev, ...) log_event(LOG_INFO, ev, __VA_ARGS__)
#define log_debug(ev, ...) \
	do { if (log_enabled(LOG_DEBUG)) log_event(LOG_DEBUG, ev, __VA_ARGS__); } while (0)
