/* A small ordered list of name/value string pairs (session parameters).
 * Names compare case-insensitively, as PostgreSQL GUC names do. */
#pragma once

#include <stdbool.h>

struct kv {
	char *name;  /* owned */
	char *value; /* owned */
};

struct kvlist {
	struct kv *v; /* owned array */
	int n;        /* pairs in use */
	int cap;      /* allocated pairs */
};

/* Value for NAME, or NULL. */
const char *kvlist_get(const struct kvlist *l, const char *name);
/* Insert or replace. Returns 0, or -1 on allocation failure. */
int kvlist_set(struct kvlist *l, const char *name, const char *value)
	__attribute__((warn_unused_result));
/* Remove NAME if present. */
void kvlist_del(struct kvlist *l, const char *name);
/* Replace DST's contents with a copy of SRC. Returns 0 / -1. */
int kvlist_copy(struct kvlist *dst, const struct kvlist *src) __attribute__((warn_unused_result));
void kvlist_clear(struct kvlist *l);
/* Same names with the same values, in any order. */
bool kvlist_equal(const struct kvlist *a, const struct kvlist *b);
