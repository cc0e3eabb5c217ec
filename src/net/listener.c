/* Listeners on evconnlistener with SO_REUSEPORT. See listener.h. */
#include "net/listener.h"

#include "core/log.h"
#include "net/worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct listener {
	struct evconnlistener *evl; /* owned */
	struct worker *worker;      /* borrowed */
	listener_accept_fn cb;
};

static void accept_cb(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa,
		      int socklen, void *arg)
{
	struct listener *l = arg;
	char host[INET6_ADDRSTRLEN] = "?";
	char addr[INET6_ADDRSTRLEN + 8];
	int port = 0;
	if (sa->sa_family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		port = ntohs(sin->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		port = ntohs(sin6->sin6_port);
	}
	snprintf(addr, sizeof(addr), "%s:%d", host, port);
	l->cb(l->worker, fd, addr); /* the callback sets TCP options (net/sockopt) */
}

static void error_cb(struct evconnlistener *evl, void *arg)
{
	int err = EVUTIL_SOCKET_ERROR();
	/* EMFILE and friends: keep listening; the next accept may succeed */
	log_warn("accept_failed", "error=%d reason=\"%s\"", err, evutil_socket_error_to_string(err));
}

struct listener *listener_new(struct worker *w, const char *addr, int port, listener_accept_fn cb)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	char portstr[16];
	snprintf(portstr, sizeof(portstr), "%d", port);
	const char *host = strcmp(addr, "*") == 0 ? NULL : addr;
	int gai = getaddrinfo(host, portstr, &hints, &res);
	if (gai != 0) {
		log_error("listen_failed", "addr=%s port=%d reason=\"%s\"", addr, port,
			  gai_strerror(gai));
		return NULL;
	}
	struct listener *l = calloc(1, sizeof(*l));
	if (!l) {
		freeaddrinfo(res);
		return NULL;
	}
	l->worker = w;
	l->cb = cb;
	l->evl = evconnlistener_new_bind(w->base, accept_cb, l,
					 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
						 LEV_OPT_REUSEABLE_PORT | LEV_OPT_CLOSE_ON_EXEC,
					 1024, res->ai_addr, (int)res->ai_addrlen);
	freeaddrinfo(res);
	if (!l->evl) {
		log_error("listen_failed", "addr=%s port=%d reason=\"%s\"", addr, port,
			  strerror(errno));
		free(l);
		return NULL;
	}
	evconnlistener_set_error_cb(l->evl, error_cb);
	return l;
}

void listener_disable(struct listener *l)
{
	if (l)
		evconnlistener_disable(l->evl);
}

void listener_free(struct listener *l)
{
	if (!l)
		return;
	evconnlistener_free(l->evl);
	free(l);
}
