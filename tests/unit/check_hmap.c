/* Unit tests for lib/hmap: add, find, delete and iterate with thousands of
 * string keys (growth and chains), keys differing only in length, deletion
 * during iteration, and the empty map. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/hmap.h"

struct item {
	struct hnode node;
	char key[32];
	int value;
};

static struct item *mk(const char *key, int value)
{
	struct item *it = calloc(1, sizeof(*it));
	ck_assert_ptr_nonnull(it);
	snprintf(it->key, sizeof(it->key), "%s", key);
	it->value = value;
	it->node.key = it->key;
	it->node.keylen = strlen(it->key);
	it->node.hash = hmap_hash(it->key, it->node.keylen);
	return it;
}

static struct item *get(struct hmap *m, const char *key)
{
	struct hnode *n = hmap_get(m, hmap_hash(key, strlen(key)), key, strlen(key));
	return n ? hmap_entry(n, struct item, node) : NULL;
}

START_TEST(test_empty)
{
	struct hmap m;
	hmap_init(&m);
	ck_assert_ptr_null(get(&m, "x"));
	ck_assert_uint_eq(m.n, 0);
	hmap_free(&m);
}
END_TEST

START_TEST(test_many)
{
	struct hmap m;
	char key[32];
	hmap_init(&m);
	for (int i = 0; i < 5000; i++) {
		snprintf(key, sizeof(key), "stmt_%d", i);
		ck_assert_int_eq(hmap_add(&m, &mk(key, i)->node), 0);
	}
	ck_assert_uint_eq(m.n, 5000);
	for (int i = 0; i < 5000; i++) {
		snprintf(key, sizeof(key), "stmt_%d", i);
		struct item *it = get(&m, key);
		ck_assert_ptr_nonnull(it);
		ck_assert_int_eq(it->value, i);
	}
	ck_assert_ptr_null(get(&m, "stmt_5000"));
	/* delete the odd ones */
	for (int i = 1; i < 5000; i += 2) {
		snprintf(key, sizeof(key), "stmt_%d", i);
		struct item *it = get(&m, key);
		hmap_del(&m, &it->node);
		free(it);
	}
	ck_assert_uint_eq(m.n, 2500);
	for (int i = 0; i < 5000; i++) {
		snprintf(key, sizeof(key), "stmt_%d", i);
		ck_assert((get(&m, key) != NULL) == (i % 2 == 0));
	}
	struct hnode *n;
	while (m.n) {
		for (size_t b = 0; b < m.nb; b++)
			if ((n = m.b[b]) != NULL) {
				hmap_del(&m, n);
				free(hmap_entry(n, struct item, node));
				break;
			}
	}
	hmap_free(&m);
}
END_TEST

START_TEST(test_prefix_keys)
{
	struct hmap m;
	hmap_init(&m);
	struct item *a = mk("ab", 1), *b = mk("abc", 2), *e = mk("", 3);
	ck_assert_int_eq(hmap_add(&m, &a->node), 0);
	ck_assert_int_eq(hmap_add(&m, &b->node), 0);
	ck_assert_int_eq(hmap_add(&m, &e->node), 0);
	ck_assert_int_eq(get(&m, "ab")->value, 1);
	ck_assert_int_eq(get(&m, "abc")->value, 2);
	ck_assert_int_eq(get(&m, "")->value, 3);
	ck_assert_ptr_null(get(&m, "a"));
	hmap_del(&m, &a->node);
	ck_assert_ptr_null(get(&m, "ab"));
	ck_assert_int_eq(get(&m, "abc")->value, 2);
	free(a);
	free(b);
	free(e);
	hmap_free(&m);
}
END_TEST

static void count_one(struct hnode *n, void *arg)
{
	struct item *it = hmap_entry(n, struct item, node);
	int *count = arg;
	(*count)++;
	(void)it;
}

static void free_all(struct hnode *n, void *arg)
{
	hmap_del(arg, n);
	free(hmap_entry(n, struct item, node));
}

START_TEST(test_each_deletes)
{
	struct hmap m;
	char key[32];
	int count = 0;
	hmap_init(&m);
	for (int i = 0; i < 300; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		ck_assert_int_eq(hmap_add(&m, &mk(key, i)->node), 0);
	}
	hmap_each(&m, count_one, &count);
	ck_assert_int_eq(count, 300);
	hmap_each(&m, free_all, &m);
	ck_assert_uint_eq(m.n, 0);
	hmap_free(&m);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("hmap");
	TCase *tc = tcase_create("hmap");
	tcase_add_test(tc, test_empty);
	tcase_add_test(tc, test_many);
	tcase_add_test(tc, test_prefix_keys);
	tcase_add_test(tc, test_each_deletes);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
