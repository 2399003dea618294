/*
 * hmap.h: an intrusive chained hash table keyed by 64-bit hashes.
 *
 * Objects embed a struct hmap_node. Several nodes may share a key (callers
 * hashing strings compare the real key while walking hmap_first/hmap_next),
 * so the table never decides equality beyond the 64-bit key. The table
 * doubles when it holds more nodes than buckets; it never shrinks.
 */
#ifndef DG_HMAP_H
#define DG_HMAP_H

#include "dg.h"

struct hmap_node {
	struct hmap_node *next;
	uint64_t key;
};

struct hmap {
	struct hmap_node **buckets;
	size_t nbuckets; /* power of two, or 0 before the first insert */
	size_t count;
};

/* Inserts n under key. Returns 0 or DG_ENOMEM (then nothing changed). */
int hmap_insert(struct hmap *m, struct hmap_node *n, uint64_t key);
/* Removes n, which must be in m. */
void hmap_remove(struct hmap *m, struct hmap_node *n);
/* The first node with key, or NULL; hmap_next continues with the same key. */
struct hmap_node *hmap_first(const struct hmap *m, uint64_t key);
struct hmap_node *hmap_next(const struct hmap_node *n);
/* Frees the bucket array; the nodes belong to the caller. */
void hmap_free(struct hmap *m);

/* Iteration over every node: i starts at 0; returns NULL at the end.
 * Removing the returned node during iteration is allowed. */
struct hmap_iter { size_t bucket; struct hmap_node *next; };
struct hmap_node *hmap_iter_next(const struct hmap *m, struct hmap_iter *it);

/* FNV-1a over bytes, for string keys. */
uint64_t hmap_hash_bytes(const void *p, size_t len);
uint64_t hmap_hash_u64(uint64_t v);

#define hmap_entry(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))

#endif
