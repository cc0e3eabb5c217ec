/* Message framing on input evbuffers (see frame.h). */
#include "pg/frame.h"

#include <event2/buffer.h>

static uint32_t max_len(enum frame_peer peer, char type)
{
	switch (peer) {
	case FRAME_CLIENT_LOGIN:
		return proto_client_max_len(type, false);
	case FRAME_CLIENT:
		return proto_client_max_len(type, true);
	case FRAME_SERVER:
		break;
	}
	return proto_server_max_len(type);
}

enum proto_result frame_peek(struct evbuffer *in, size_t off, enum frame_peer peer,
			     struct frame *f)
{
	size_t len = evbuffer_get_length(in);
	if (off > len || len - off < PROTO_HEADER_LEN)
		return PROTO_AGAIN;
	uint8_t hdr[PROTO_HEADER_LEN];
	if (off == 0) {
		evbuffer_copyout(in, hdr, PROTO_HEADER_LEN);
	} else {
		struct evbuffer_ptr pos;
		if (evbuffer_ptr_set(in, &pos, off, EVBUFFER_PTR_SET) < 0 ||
		    evbuffer_copyout_from(in, &pos, hdr, PROTO_HEADER_LEN) != PROTO_HEADER_LEN)
			return PROTO_AGAIN;
	}
	f->type = (char)hdr[0];
	struct proto_header h;
	enum proto_result rc = proto_parse_header(hdr, len - off, max_len(peer, f->type), &h);
	if (rc != PROTO_OK)
		return rc;
	f->len = h.len;
	f->total = 1 + (size_t)h.len;
	f->avail = len - off;
	return PROTO_OK;
}

enum proto_result frame_peek_startup(struct evbuffer *in, uint32_t *len)
{
	uint8_t b[4];
	if (evbuffer_get_length(in) < 4)
		return PROTO_AGAIN;
	evbuffer_copyout(in, b, 4);
	uint32_t n = ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
	*len = n;
	return n < 8 || n > PROTO_STARTUP_MAX_LEN ? PROTO_ERROR : PROTO_OK;
}

int frame_take(struct evbuffer *in, const struct frame *f, struct proto_msg *m)
{
	struct proto_header h = {.type = f->type, .len = f->len};
	return proto_msg_take(in, &h, m);
}
