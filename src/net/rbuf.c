/* Reads without FIONREAD. See rbuf.h. */
#include "net/rbuf.h"

#include "net/transport.h"
#include "net/worker.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <sys/socket.h>

#define READ_CHUNK 32768 /* one read: large enough for COPY and big rows */

/* Append N bytes read from the socket to the input. */
static int take(struct evbuffer *in, const char *buf, size_t n)
{
	/* a socket bufferevent keeps its input's end frozen outside its own
	 * read handler; thaw it for this append, as that handler does */
	evbuffer_unfreeze(in, 0);
	int rc = evbuffer_add(in, buf, n);
	evbuffer_freeze(in, 0);
	return rc;
}

static void read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rbuf *rb = arg;
	if (rb->peek) {
		unsigned char first;
		ssize_t p = recv(fd, &first, 1, MSG_PEEK);
		if (p < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return;
		rbuf_peek_fn fn = rb->peek;
		rb->peek = NULL;
		if (p == 1 && fn(rb->bev, first, rb->arg))
			return;
		/* EOF or an error: the read below reports it */
	}
	struct evbuffer *in = bufferevent_get_input(rb->bev);
	/* read into the stack and append: evbuffer_reserve_space would allocate
	 * (and, once drained, free) a READ_CHUNK chain per read, and freeing that
	 * in a worker thread's malloc arena trims it with madvise every time */
	char buf[READ_CHUNK];
	ssize_t r = transport_read(fd, rb->ssl, buf, sizeof(buf));
	int err = errno;
	if (r > 0) {
		if (take(in, buf, (size_t)r) < 0) {
			rbuf_stop(rb);
			errno = ENOMEM;
			rb->event_cb(rb->bev, BEV_EVENT_READING | BEV_EVENT_ERROR, rb->arg);
			return;
		}
		rb->read_cb(rb->bev, rb->arg);
		/* OpenSSL may hold more than one read took, and the socket will
		 * not say so. The owner is freed only on a later loop turn, so RB
		 * is still there; if it was stopped, rbuf_start looks again. */
		if (rb->on && transport_pending(rb->ssl))
			event_active(rb->ev, EV_READ, 1);
		return;
	}
	if (r < 0 && (err == EAGAIN || err == EWOULDBLOCK || err == EINTR))
		return;
	rbuf_stop(rb);
	errno = err;
	rb->event_cb(rb->bev, BEV_EVENT_READING | (r == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR), rb->arg);
}

int rbuf_attach(struct rbuf *rb, struct worker *w, struct bufferevent *bev, rbuf_read_fn rcb,
		rbuf_event_fn ecb, void *arg)
{
	rb->bev = bev;
	rb->read_cb = rcb;
	rb->event_cb = ecb;
	rb->arg = arg;
	rb->on = false;
	rb->peek = NULL;
	rb->ssl = NULL; /* rbuf_set_ssl: after the attach */
	rb->ev = event_new(w->base, bufferevent_getfd(bev), EV_READ | EV_PERSIST, read_cb, rb);
	return rb->ev ? 0 : -1;
}

void rbuf_detach(struct rbuf *rb)
{
	if (rb->ev)
		event_free(rb->ev);
	rb->ev = NULL;
	rb->on = false;
	rb->bev = NULL;
}

void rbuf_set_ssl(struct rbuf *rb, struct ssl_st *ssl)
{
	rb->ssl = ssl;
}

size_t rbuf_read_pending(struct rbuf *rb)
{
	if (!rb->bev || !rb->ev)
		return 0;
	struct evbuffer *in = bufferevent_get_input(rb->bev);
	int fd = event_get_fd(rb->ev);
	size_t total = 0;
	for (int i = 0; i < 64; i++) { /* bounded: 2 MiB at most */
		char buf[READ_CHUNK];
		/* the socket is non-blocking: this returns at once */
		ssize_t r = transport_read(fd, rb->ssl, buf, sizeof(buf));
		if (r <= 0 || take(in, buf, (size_t)r) < 0)
			break;
		total += (size_t)r;
	}
	return total;
}

void rbuf_start(struct rbuf *rb)
{
	if (!rb->ev || rb->on || event_add(rb->ev, NULL) != 0)
		return;
	rb->on = true;
	if (transport_pending(rb->ssl))
		event_active(rb->ev, EV_READ, 1);
}

void rbuf_stop(struct rbuf *rb)
{
	if (rb->ev && rb->on) {
		event_del(rb->ev);
		rb->on = false;
	}
}

void rbuf_peek_first(struct rbuf *rb, rbuf_peek_fn fn)
{
	if (!rb->ssl)
		rb->peek = fn;
}
