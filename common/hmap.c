#include "hmap.h"

#include <stdlib.h>

uint64_t hmap_hash_bytes(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < len; i++) {
		h ^= b[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

uint64_t hmap_hash_u64(uint64_t v)
{
	/* splitmix64 finaliser: sequential ids spread over all buckets. */
	v ^= v >> 30;
	v *= 0xbf58476d1ce4e5b9ULL;
	v ^= v >> 27;
	v *= 0x94d049bb133111ebULL;
	v ^= v >> 31;
	return v;
}

static int hmap_grow(struct hmap *m)
{
	size_t n = m->nbuckets ? m->nbuckets * 2 : 16;
	struct hmap_node **b = calloc(n, sizeof(*b));

	if (!b)
		return DG_ENOMEM;
	for (size_t i = 0; i < m->nbuckets; i++) {
		struct hmap_node *e = m->buckets[i];
		while (e) {
			struct hmap_node *next = e->next;
			size_t j = e->key & (n - 1);
			e->next = b[j];
			b[j] = e;
			e = next;
		}
	}
	free(m->buckets);
	m->buckets = b;
	m->nbuckets = n;
	return 0;
}

int hmap_insert(struct hmap *m, struct hmap_node *n, uint64_t key)
{
	if (m->count >= m->nbuckets) {
		int rc = hmap_grow(m);
		/* A full table still works, only slower: grow failure is
		 * fatal only when there is no table at all. */
		if (rc && !m->nbuckets)
			return rc;
	}
	size_t i = key & (m->nbuckets - 1);
	n->key = key;
	n->next = m->buckets[i];
	m->buckets[i] = n;
	m->count++;
	return 0;
}

void hmap_remove(struct hmap *m, struct hmap_node *n)
{
	struct hmap_node **p = &m->buckets[n->key & (m->nbuckets - 1)];

	while (*p && *p != n)
		p = &(*p)->next;
	if (*p) {
		*p = n->next;
		m->count--;
	}
	n->next = NULL;
}

struct hmap_node *hmap_first(const struct hmap *m, uint64_t key)
{
	if (!m->nbuckets)
		return NULL;
	struct hmap_node *e = m->buckets[key & (m->nbuckets - 1)];
	while (e && e->key != key)
		e = e->next;
	return e;
}

struct hmap_node *hmap_next(const struct hmap_node *n)
{
	uint64_t key = n->key;
	struct hmap_node *e = n->next;

	while (e && e->key != key)
		e = e->next;
	return e;
}

struct hmap_node *hmap_iter_next(const struct hmap *m, struct hmap_iter *it)
{
	struct hmap_node *e = it->next;

	while (!e && it->bucket < m->nbuckets)
		e = m->buckets[it->bucket++];
	if (e)
		it->next = e->next;
	return e;
}

void hmap_free(struct hmap *m)
{
	free(m->buckets);
	m->buckets = NULL;
	m->nbuckets = m->count = 0;
}
