/* TCP listeners: one SO_REUSEPORT socket per worker on the same address, so
 * the kernel spreads new connections over the workers without a hand-off. */
#pragma once

struct worker;
struct listener;

/* Called on W's thread with a new non-blocking socket the callee owns. */
typedef void (*listener_accept_fn)(struct worker *w, int fd, const char *addr);

/* Bind ADDR:PORT for W. Returns NULL (and logs) on failure. */
struct listener *listener_new(struct worker *w, const char *addr, int port, listener_accept_fn cb);
/* Stop accepting (from W's thread). */
void listener_disable(struct listener *l);
/* Close the socket. Accepts NULL. */
void listener_free(struct listener *l);
