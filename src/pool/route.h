/* Where a pool's new server connections go. The login (server_login.c)
 * asks route_get and nothing else, so what decides the answer can change
 * behind it: today the [database.*] host and port; the failover issue's
 * topology monitor gives it its real body. A server keeps the route it was
 * opened with, and its cancel requests go there, not to where new servers
 * go now. */
#pragma once

#include <stdint.h>

struct pool;

#define ROUTE_HOST_MAX 256

struct route {
	char host[ROUTE_HOST_MAX]; /* name (resolved at each connect) or address */
	int port;
	uint64_t version;          /* differs whenever the destination does: a server opened
				    * under another version went somewhere else */
};

/* Where P's next server connection goes. Returns 0, or -1 if no destination
 * is known (the caller fails or waits). Any thread. */
int route_get(const struct pool *p, struct route *out) __attribute__((warn_unused_result));
