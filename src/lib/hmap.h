/* An intrusive chained hash map keyed by bytes. The caller embeds a struct
 * hnode in its record and owns the key bytes (they must outlive the entry).
 * Not thread-safe: callers lock if they share a map. */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct hnode {
	struct hnode *next;  /* bucket chain */
	uint64_t hash;
	const void *key;     /* borrowed from the record */
	size_t keylen;
};

struct hmap {
	struct hnode **b;    /* owned bucket array, nb entries (power of two) */
	size_t nb;
	size_t n;            /* entries */
};

/* 64-bit FNV-1a of LEN bytes at P. */
uint64_t hmap_hash(const void *p, size_t len);

void hmap_init(struct hmap *m);
/* Frees the bucket array only; entries belong to the caller. */
void hmap_free(struct hmap *m);

/* The entry with this key, or NULL. HASH must be hmap_hash(key, len). */
struct hnode *hmap_get(const struct hmap *m, uint64_t hash, const void *key, size_t len);
/* Add N (its hash/key/keylen set by the caller; the key must not be present).
 * Returns 0, or -1 (N not added) on allocation failure. */
int hmap_add(struct hmap *m, struct hnode *n);
/* Remove N, which must be in M. */
void hmap_del(struct hmap *m, struct hnode *n);

/* Call FN for each entry; FN may hmap_del the entry it is given. */
void hmap_each(struct hmap *m, void (*fn)(struct hnode *n, void *arg), void *arg);

#define hmap_entry(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))
