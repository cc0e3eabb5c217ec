/* Plain and TLS reads and writes. See transport.h. */
#include "net/transport.h"

#include <errno.h>
#include <event2/buffer.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <sys/socket.h>

static __thread char last_error[96]; /* transport_last_error */

/* A TLS error ends the connection: nothing more may be sent on it, not
 * even close_notify (OpenSSL forbids SSL_shutdown after a fatal error). */
static int tls_failed(SSL *ssl, int err)
{
	int saved = errno;
	unsigned long e = ERR_peek_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;
	snprintf(last_error, sizeof(last_error), "%s",
		 r ? r : (err == SSL_ERROR_SYSCALL ? "connection broken" : "TLS error"));
	SSL_set_quiet_shutdown(ssl, 1);
	ERR_clear_error();
	errno = (err == SSL_ERROR_SYSCALL && saved != 0) ? saved : EPROTO;
	return -1;
}

ssize_t transport_read(int fd, SSL *ssl, char *buf, size_t len)
{
	if (!ssl)
		return recv(fd, buf, len, 0);
	size_t got = 0;
	while (got < len) {
		size_t want = len - got;
		ERR_clear_error();
		int r = SSL_read(ssl, buf + got, want > INT_MAX ? INT_MAX : (int)want);
		if (r > 0) {
			got += (size_t)r;
			if (!SSL_has_pending(ssl))
				break;
			continue;
		}
		if (got > 0)
			break; /* an EOF or error shows again on the next read */
		int e = SSL_get_error(ssl, r);
		switch (e) {
		case SSL_ERROR_WANT_READ:
		case SSL_ERROR_WANT_WRITE: /* a TLS 1.3 KeyUpdate answer that would block */
			errno = EAGAIN;
			return -1;
		case SSL_ERROR_ZERO_RETURN:
			SSL_set_quiet_shutdown(ssl, 1);
			return 0;
		default:
			return tls_failed(ssl, e);
		}
	}
	return (ssize_t)got;
}

bool transport_pending(SSL *ssl)
{
	return ssl && SSL_has_pending(ssl);
}

int transport_write(struct evbuffer *out, int fd, SSL *ssl, size_t *retry)
{
	if (!ssl)
		return evbuffer_write(out, fd);
	int total = 0;
	for (;;) {
		size_t len = evbuffer_get_length(out);
		if (len == 0)
			return total;
		size_t n = len < TRANSPORT_TLS_RECORD ? len : TRANSPORT_TLS_RECORD;
		if (n < *retry) {
			/* the front was drained behind OpenSSL's back: the record it
			 * holds cannot be completed */
			errno = EPROTO;
			return -1;
		}
		/* one record's bytes: the first chunk itself when it holds them
		 * (a pointer that may differ from the last try's:
		 * SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER), else a copy */
		struct evbuffer_iovec v;
		char copy[TRANSPORT_TLS_RECORD];
		const void *p = copy;
		if (evbuffer_peek(out, (ev_ssize_t)n, NULL, &v, 1) >= 1 && v.iov_len >= n)
			p = v.iov_base;
		else
			evbuffer_copyout(out, copy, n);
		ERR_clear_error();
		int w = SSL_write(ssl, p, (int)n);
		if (w > 0) {
			*retry = 0;
			evbuffer_drain(out, (size_t)w);
			total += w;
			continue;
		}
		int e = SSL_get_error(ssl, w);
		if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
			*retry = n;
			if (total > 0)
				return total;
			errno = EAGAIN;
			return -1;
		}
		return tls_failed(ssl, e);
	}
}

void transport_tls_start(SSL *ssl)
{
	SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_set_options(ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_set_read_ahead(ssl, 1);
}

void transport_tls_close(SSL *ssl)
{
	if (!ssl)
		return;
	if (!(SSL_get_shutdown(ssl) & SSL_RECEIVED_SHUTDOWN) && SSL_is_init_finished(ssl)) {
		ERR_clear_error();
		(void)SSL_shutdown(ssl); /* one non-blocking try */
	}
	ERR_clear_error();
	SSL_free(ssl);
}

const char *transport_last_error(void)
{
	return last_error;
}
