/* Where new server connections go. See route.h. */
#include "pool/route.h"

#include "core/config.h"
#include "pool/pool.h"

#include <stdio.h>
#include <string.h>

/* FNV-1a over the destination: the same destination, the same version,
 * with no state to keep in step. */
static uint64_t version_of(const char *host, int port)
{
	uint64_t h = 1469598103934665603ull;
	for (const unsigned char *p = (const unsigned char *)host; *p; p++)
		h = (h ^ *p) * 1099511628211ull;
	for (int i = 0; i < 4; i++)
		h = (h ^ (unsigned)((port >> (8 * i)) & 0xff)) * 1099511628211ull;
	return h;
}

int route_get(const struct pool *p, struct route *out)
{
	const struct config_db *db = pool_db(p);
	if (!db || !db->host || strlen(db->host) >= sizeof(out->host))
		return -1;
	snprintf(out->host, sizeof(out->host), "%s", db->host);
	out->port = db->port;
	out->version = version_of(out->host, out->port);
	return 0;
}
