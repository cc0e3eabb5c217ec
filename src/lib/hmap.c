#include "lib/hmap.h"

#include <stdlib.h>
#include <string.h>

uint64_t hmap_hash(const void *p, size_t len)
{
	const unsigned char *s = p;
	uint64_t h = 14695981039346656037ULL;
	for (size_t i = 0; i < len; i++) {
		h ^= s[i];
		h *= 1099511628211ULL;
	}
	return h ^ (h >> 29);
}

void hmap_init(struct hmap *m)
{
	m->b = NULL;
	m->nb = 0;
	m->n = 0;
}

void hmap_free(struct hmap *m)
{
	free(m->b);
	hmap_init(m);
}

struct hnode *hmap_get(const struct hmap *m, uint64_t hash, const void *key, size_t len)
{
	if (!m->nb)
		return NULL;
	for (struct hnode *n = m->b[hash & (m->nb - 1)]; n; n = n->next)
		if (n->hash == hash && n->keylen == len && memcmp(n->key, key, len) == 0)
			return n;
	return NULL;
}

static int grow(struct hmap *m)
{
	size_t nb = m->nb ? m->nb * 2 : 16;
	struct hnode **b = calloc(nb, sizeof(*b));
	if (!b)
		return -1;
	for (size_t i = 0; i < m->nb; i++) {
		struct hnode *n = m->b[i], *next;
		for (; n; n = next) {
			next = n->next;
			n->next = b[n->hash & (nb - 1)];
			b[n->hash & (nb - 1)] = n;
		}
	}
	free(m->b);
	m->b = b;
	m->nb = nb;
	return 0;
}

int hmap_add(struct hmap *m, struct hnode *n)
{
	if (m->n >= m->nb && grow(m) < 0 && !m->nb)
		return -1; /* no table at all; a failed later growth only lengthens chains */
	struct hnode **slot = &m->b[n->hash & (m->nb - 1)];
	n->next = *slot;
	*slot = n;
	m->n++;
	return 0;
}

void hmap_del(struct hmap *m, struct hnode *n)
{
	struct hnode **p = &m->b[n->hash & (m->nb - 1)];
	while (*p && *p != n)
		p = &(*p)->next;
	if (*p) {
		*p = n->next;
		m->n--;
	}
	n->next = NULL;
}

void hmap_each(struct hmap *m, void (*fn)(struct hnode *n, void *arg), void *arg)
{
	for (size_t i = 0; i < m->nb; i++) {
		struct hnode *n = m->b[i], *next;
		for (; n; n = next) {
			next = n->next;
			fn(n, arg);
		}
	}
}
