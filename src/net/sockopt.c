/* TCP socket options. See sockopt.h. */
#include "net/sockopt.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static int set(int fd, int level, int name, int value)
{
	return setsockopt(fd, level, name, &value, sizeof(value)) == 0 ? 0 : 1;
}

int sockopt_tune_tcp(int fd, const struct sockopt_tcp *o)
{
	int failed = set(fd, IPPROTO_TCP, TCP_NODELAY, 1);
	/* set either way: an accepted socket inherits the listener's (libevent's
	 * listener turns keepalive on) */
	failed += set(fd, SOL_SOCKET, SO_KEEPALIVE, o->keepalive ? 1 : 0);
	if (o->keepalive) {
		if (o->keepidle > 0)
			failed += set(fd, IPPROTO_TCP, TCP_KEEPIDLE, o->keepidle);
		if (o->keepintvl > 0)
			failed += set(fd, IPPROTO_TCP, TCP_KEEPINTVL, o->keepintvl);
		if (o->keepcnt > 0)
			failed += set(fd, IPPROTO_TCP, TCP_KEEPCNT, o->keepcnt);
	}
	if (o->user_timeout_ms > 0)
		failed += set(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, o->user_timeout_ms);
	return failed;
}
