/* Cancel keys: every client gets its own BackendKeyData (pid, key) from
 * pgmux. A CancelRequest, arriving on any worker, is looked up here and
 * carried out on the worker that owns the client. */
#pragma once

#include <stdint.h>

struct client;
struct route;
struct worker;

/* Give C a fresh unique pid (positive: pgjdbc ignores pid <= 0) and random
 * key, and register it. Returns 0 / -1. */
int cancel_register(struct client *c) __attribute__((warn_unused_result));
/* Forget C (its own thread, before it is freed). */
void cancel_unregister(struct client *c);

/* A CancelRequest for (PID, KEY) arrived (any thread). If it matches a
 * client, the cancel is run on that client's worker. */
void cancel_request(uint32_t pid, uint32_t key, const char *from_addr);

/* Send a CancelRequest for backend (PID, KEY) to ROUTE, over a connection
 * of its own on W (PostgreSQL answers a cancel by closing it). DONE(ARG) runs
 * on W once that connection is over, however it ends (at most TIMEOUT_S
 * seconds per step), unless this returns -1 (nothing was started). */
int cancel_to_backend(struct worker *w, const struct route *route, uint32_t pid, uint32_t key,
		      int timeout_s, void (*done)(void *arg), void *arg)
	__attribute__((warn_unused_result));
