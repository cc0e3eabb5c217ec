/* kvlist: see kvlist.h. Linear search: the lists hold a handful of pairs. */
#include "lib/kvlist.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static inline unsigned char fold(unsigned char ch)
{
	return ch >= 'A' && ch <= 'Z' ? (unsigned char)(ch + ('a' - 'A')) : ch;
}

static int find(const struct kvlist *l, const char *name)
{
	/* the first letters settle most mismatches without a call: a link
	 * compares a dozen reported parameters against a dozen seen ones */
	unsigned char first = fold((unsigned char)name[0]);
	for (int i = 0; i < l->n; i++)
		if (fold((unsigned char)l->v[i].name[0]) == first &&
		    strcasecmp(l->v[i].name, name) == 0)
			return i;
	return -1;
}

const char *kvlist_get(const struct kvlist *l, const char *name)
{
	int i = find(l, name);
	return i < 0 ? NULL : l->v[i].value;
}

/* kvlist_get, looking at position HINT first: lists filled in the same
 * order match there. */
static const char *get_hint(const struct kvlist *l, const char *name, int hint)
{
	if (hint >= 0 && hint < l->n && strcasecmp(l->v[hint].name, name) == 0)
		return l->v[hint].value;
	return kvlist_get(l, name);
}

int kvlist_set(struct kvlist *l, const char *name, const char *value)
{
	char *v = strdup(value);
	if (!v)
		return -1;
	int i = find(l, name);
	if (i >= 0) {
		free(l->v[i].value);
		l->v[i].value = v;
		return 0;
	}
	if (l->n == l->cap) {
		int cap = l->cap ? l->cap * 2 : 8;
		struct kv *nv = realloc(l->v, (size_t)cap * sizeof(*nv));
		if (!nv) {
			free(v);
			return -1;
		}
		l->v = nv;
		l->cap = cap;
	}
	char *n = strdup(name);
	if (!n) {
		free(v);
		return -1;
	}
	l->v[l->n].name = n;
	l->v[l->n].value = v;
	l->n++;
	return 0;
}

void kvlist_del(struct kvlist *l, const char *name)
{
	int i = find(l, name);
	if (i < 0)
		return;
	free(l->v[i].name);
	free(l->v[i].value);
	l->v[i] = l->v[l->n - 1];
	l->n--;
}

int kvlist_copy(struct kvlist *dst, const struct kvlist *src)
{
	kvlist_clear(dst);
	for (int i = 0; i < src->n; i++)
		if (kvlist_set(dst, src->v[i].name, src->v[i].value) < 0)
			return -1;
	return 0;
}

void kvlist_clear(struct kvlist *l)
{
	for (int i = 0; i < l->n; i++) {
		free(l->v[i].name);
		free(l->v[i].value);
	}
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}

bool kvlist_equal(const struct kvlist *a, const struct kvlist *b)
{
	if (a->n != b->n)
		return false;
	for (int i = 0; i < a->n; i++) {
		const char *v = get_hint(b, a->v[i].name, i);
		if (!v || strcmp(v, a->v[i].value) != 0)
			return false;
	}
	return true;
}
