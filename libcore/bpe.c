/* bpe.c - vocabulary and merge tables, and the merge loop.
 * Both tables are open-addressing hash tables (power-of-two sizes, linear
 * probing), keyed by XXH3 of the token bytes and by the packed id pair. */
#include "bpe.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define FLAT_MAX 96       /* words up to this many symbols use the flat scan */
#define CACHE_WORD_MAX 64 /* bytes; longer words are not cached */
#define CACHE_SLOTS (1u << 18)

struct pair_slot {
	uint64_t key; /* left << 32 | right; UINT64_MAX = empty */
	uint32_t rank, merged;
};

struct tn_bpe {
	uint32_t n;
	uint64_t *off;  /* byte offset in blob, per id */
	uint32_t *len;  /* UINT32_MAX = unset */
	uint8_t *blob;
	size_t blob_len, blob_cap;
	uint32_t *str_slot; /* id per slot, TN_BPE_NONE = empty */
	size_t str_mask;
	struct pair_slot *pairs;
	size_t pair_mask, pair_count;
};

int tn_idvec_reserve(struct tn_idvec *a, size_t extra)
{
	if (a->n + extra <= a->cap)
		return TN_OK;
	size_t cap = a->cap ? a->cap : 64;
	while (cap < a->n + extra)
		cap *= 2;
	uint32_t *v = tn_realloc(a->v, cap * sizeof *v);
	if (!v)
		return TN_ENOMEM;
	a->v = v;
	a->cap = cap;
	return TN_OK;
}

int tn_idvec_push(struct tn_idvec *a, uint32_t id)
{
	if (a->n == a->cap && tn_idvec_reserve(a, 1))
		return TN_ENOMEM;
	a->v[a->n++] = id;
	return TN_OK;
}

int tn_idvec_append(struct tn_idvec *out, const uint32_t *v, size_t n)
{
	if (n == 0)
		return TN_OK;
	if (tn_idvec_reserve(out, n))
		return TN_ENOMEM;
	memcpy(out->v + out->n, v, n * sizeof *v);
	out->n += n;
	return TN_OK;
}

void tn_idvec_free(struct tn_idvec *a)
{
	free(a->v);
	memset(a, 0, sizeof *a);
}

static size_t pow2_at_least(size_t n)
{
	size_t p = 16;
	while (p < n)
		p *= 2;
	return p;
}

int tn_bpe_new(struct tn_bpe **out, uint32_t n)
{
	struct tn_bpe *b = tn_calloc(1, sizeof *b);
	if (!b)
		return TN_ENOMEM;
	b->n = n;
	b->off = tn_calloc(n, sizeof *b->off);
	b->len = tn_malloc((size_t)n * sizeof *b->len + 1);
	b->str_mask = pow2_at_least((size_t)n * 2) - 1;
	b->str_slot = tn_malloc((b->str_mask + 1) * sizeof *b->str_slot);
	b->pair_mask = pow2_at_least((size_t)n * 4) - 1;
	b->pairs = tn_malloc((b->pair_mask + 1) * sizeof *b->pairs);
	if (!b->off || !b->len || !b->str_slot || !b->pairs) {
		tn_bpe_free(b);
		return TN_ENOMEM;
	}
	memset(b->len, 0xff, (size_t)n * sizeof *b->len);
	memset(b->str_slot, 0xff, (b->str_mask + 1) * sizeof *b->str_slot);
	memset(b->pairs, 0xff, (b->pair_mask + 1) * sizeof *b->pairs);
	*out = b;
	return TN_OK;
}

void tn_bpe_free(struct tn_bpe *b)
{
	if (!b)
		return;
	free(b->off);
	free(b->len);
	free(b->blob);
	free(b->str_slot);
	free(b->pairs);
	free(b);
}

const uint8_t *tn_bpe_bytes(const struct tn_bpe *b, uint32_t id, size_t *len)
{
	if (id >= b->n || b->len[id] == UINT32_MAX)
		return NULL;
	*len = b->len[id];
	return b->blob + b->off[id];
}

/* The slot holding bytes, or the empty slot where they would go. */
static size_t str_find(const struct tn_bpe *b, const void *p, size_t len)
{
	size_t i = (size_t)XXH3_64bits(p, len) & b->str_mask;
	for (;; i = (i + 1) & b->str_mask) {
		uint32_t id = b->str_slot[i];
		if (id == TN_BPE_NONE)
			return i;
		if (b->len[id] == len && memcmp(b->blob + b->off[id], p, len) == 0)
			return i;
	}
}

uint32_t tn_bpe_lookup(const struct tn_bpe *b, const void *bytes, size_t len)
{
	return b->str_slot[str_find(b, bytes, len)];
}

int tn_bpe_set(struct tn_bpe *b, uint32_t id, const void *bytes, size_t len)
{
	if (id >= b->n)
		return tn_fail(TN_EDATA, "token id %u is outside the vocabulary of %u", id, b->n);
	if (b->len[id] != UINT32_MAX)
		return tn_fail(TN_EDATA, "token id %u is defined twice", id);
	size_t slot = str_find(b, bytes, len);
	if (b->str_slot[slot] != TN_BPE_NONE)
		return tn_fail(TN_EDATA, "tokens %u and %u have the same bytes",
			       b->str_slot[slot], id);
	if (b->blob_len + len > b->blob_cap) {
		size_t cap = pow2_at_least(b->blob_len + len + 4096);
		uint8_t *nb = tn_realloc(b->blob, cap);
		if (!nb)
			return TN_ENOMEM;
		b->blob = nb;
		b->blob_cap = cap;
	}
	memcpy(b->blob + b->blob_len, bytes, len);
	b->off[id] = b->blob_len;
	b->len[id] = (uint32_t)len;
	b->blob_len += len;
	b->str_slot[slot] = id;
	return TN_OK;
}

static inline size_t pair_hash(uint64_t key, size_t mask)
{
	key *= 0x9E3779B97F4A7C15ull;
	return (size_t)(key >> 32) & mask;
}

static inline const struct pair_slot *pair_get(const struct tn_bpe *b,
						uint32_t l, uint32_t r)
{
	uint64_t key = (uint64_t)l << 32 | r;
	for (size_t i = pair_hash(key, b->pair_mask);; i = (i + 1) & b->pair_mask) {
		const struct pair_slot *s = &b->pairs[i];
		if (s->key == key)
			return s;
		if (s->key == UINT64_MAX)
			return NULL;
	}
}

static int pair_grow(struct tn_bpe *b)
{
	size_t old = b->pair_mask + 1;
	struct pair_slot *ps = b->pairs;
	size_t mask = old * 2 - 1;
	struct pair_slot *np = tn_malloc((mask + 1) * sizeof *np);
	if (!np)
		return TN_ENOMEM;
	memset(np, 0xff, (mask + 1) * sizeof *np);
	for (size_t i = 0; i < old; i++) {
		if (ps[i].key == UINT64_MAX)
			continue;
		size_t j = pair_hash(ps[i].key, mask);
		while (np[j].key != UINT64_MAX)
			j = (j + 1) & mask;
		np[j] = ps[i];
	}
	free(ps);
	b->pairs = np;
	b->pair_mask = mask;
	return TN_OK;
}

int tn_bpe_add_merge(struct tn_bpe *b, uint32_t left, uint32_t right,
		     uint32_t rank, uint32_t merged)
{
	if ((b->pair_count + 1) * 2 > b->pair_mask + 1 && pair_grow(b))
		return TN_ENOMEM;
	uint64_t key = (uint64_t)left << 32 | right;
	size_t i = pair_hash(key, b->pair_mask);
	while (b->pairs[i].key != UINT64_MAX) {
		if (b->pairs[i].key == key)
			return TN_OK;
		i = (i + 1) & b->pair_mask;
	}
	b->pairs[i] = (struct pair_slot){ key, rank, merged };
	b->pair_count++;
	return TN_OK;
}

size_t tn_bpe_merge_count(const struct tn_bpe *b) { return b->pair_count; }

static int cmp_rank(const void *a, const void *b, void *rank)
{
	uint32_t ra = ((const uint32_t *)rank)[*(const uint32_t *)a];
	uint32_t rb = ((const uint32_t *)rank)[*(const uint32_t *)b];
	if (ra != rb)
		return ra < rb ? -1 : 1;
	return *(const uint32_t *)a < *(const uint32_t *)b ? -1 : 1;
}

int tn_bpe_merges_from_ranks(struct tn_bpe *b, const uint32_t *rank)
{
	/* Add in rank order so that, should two tokens share a split, the
	 * lower rank is the one kept. */
	uint32_t *order = tn_malloc((size_t)b->n * sizeof *order);
	if (!order)
		return TN_ENOMEM;
	uint32_t m = 0;
	for (uint32_t id = 0; id < b->n; id++)
		if (b->len[id] != UINT32_MAX && b->len[id] >= 2 &&
		    (!rank || rank[id] != TN_BPE_NONE))
			order[m++] = id;
	if (rank)
		qsort_r(order, m, sizeof *order, cmp_rank, (void *)rank);
	int rc = TN_OK;
	for (uint32_t k = 0; k < m && !rc; k++) {
		uint32_t id = order[k];
		const uint8_t *p = b->blob + b->off[id];
		for (size_t s = 1; s < b->len[id] && !rc; s++) {
			uint32_t l = tn_bpe_lookup(b, p, s);
			uint32_t r = tn_bpe_lookup(b, p + s, b->len[id] - s);
			if (l != TN_BPE_NONE && r != TN_BPE_NONE &&
			    (!rank || (rank[l] != TN_BPE_NONE && rank[r] != TN_BPE_NONE)))
				rc = tn_bpe_add_merge(b, l, r, rank ? rank[id] : id, id);
		}
	}
	free(order);
	return rc;
}

static inline uint32_t pair_rank(const struct tn_bpe *b, uint32_t l, uint32_t r,
				 uint32_t *merged)
{
	if (l == TN_BPE_NONE || r == TN_BPE_NONE)
		return TN_BPE_NONE;
	const struct pair_slot *s = pair_get(b, l, r);
	if (!s)
		return TN_BPE_NONE;
	*merged = s->merged;
	return s->rank;
}

/* Short words: keep the rank of every adjacent pair, scan for the least. */
static size_t merge_flat(const struct tn_bpe *b, uint32_t *ids, size_t n)
{
	uint32_t rk[FLAT_MAX], mg[FLAT_MAX];
	for (size_t i = 0; i + 1 < n; i++)
		rk[i] = pair_rank(b, ids[i], ids[i + 1], &mg[i]);
	while (n > 1) {
		size_t best = 0;
		for (size_t i = 1; i + 1 < n; i++)
			if (rk[i] < rk[best])
				best = i;
		if (rk[best] == TN_BPE_NONE)
			break;
		ids[best] = mg[best];
		size_t tail = n - best - 2; /* symbols after the merged pair */
		memmove(ids + best + 1, ids + best + 2, tail * sizeof *ids);
		if (tail > 0) {
			memmove(rk + best + 1, rk + best + 2, (tail - 1) * sizeof *rk);
			memmove(mg + best + 1, mg + best + 2, (tail - 1) * sizeof *mg);
		}
		n--;
		if (best > 0)
			rk[best - 1] = pair_rank(b, ids[best - 1], ids[best], &mg[best - 1]);
		if (best + 1 < n)
			rk[best] = pair_rank(b, ids[best], ids[best + 1], &mg[best]);
	}
	return n;
}

/* A candidate merge: the pair starting at symbol pos, of this rank. Only
 * (rank, pos) is kept (8 bytes: long words need 3n entries); when popped,
 * the pair now at pos is looked up again and merged if its rank is still
 * this one. That is exact: every live pair has an entry of its own rank and
 * position, so a popped entry that still matches is the least (rank, pos). */
struct heap_ent {
	uint32_t rank, pos;
};

static inline int ent_less(struct heap_ent a, struct heap_ent c)
{
	return a.rank < c.rank || (a.rank == c.rank && a.pos < c.pos);
}

static void heap_push(struct heap_ent *h, size_t *n, struct heap_ent e)
{
	size_t i = (*n)++;
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!ent_less(e, h[p]))
			break;
		h[i] = h[p];
		i = p;
	}
	h[i] = e;
}

static struct heap_ent heap_pop(struct heap_ent *h, size_t *n)
{
	struct heap_ent top = h[0], last = h[--(*n)];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= *n)
			break;
		if (c + 1 < *n && ent_less(h[c + 1], h[c]))
			c++;
		if (!ent_less(h[c], last))
			break;
		h[i] = h[c];
		i = c;
	}
	if (*n > 0)
		h[i] = last;
	return top;
}

static void heap_offer(const struct tn_bpe *b, struct heap_ent *h, size_t *hn,
		       const uint32_t *ids, uint32_t l, uint32_t r)
{
	uint32_t merged;
	uint32_t rank = pair_rank(b, ids[l], ids[r], &merged);
	if (rank != TN_BPE_NONE)
		heap_push(h, hn, (struct heap_ent){ rank, l });
}

#define DEAD (UINT32_MAX - 1) /* next[] of a symbol merged into its left */

/* Long words: a linked list of symbols and a heap of candidate pairs whose
 * stale entries are skipped when popped. */
static size_t merge_heap(const struct tn_bpe *b, uint32_t *ids, size_t n)
{
	uint32_t *next = malloc(n * sizeof *next), *prev = malloc(n * sizeof *prev);
	/* each merge offers at most two pairs: n + 2n entries in all */
	struct heap_ent *h = malloc(3 * n * sizeof *h);
	if (!next || !prev || !h) {
		free(next); free(prev); free(h);
		tn_fail(TN_ENOMEM, "out of memory merging a word of %zu symbols", n);
		return SIZE_MAX;
	}
	size_t hn = 0;
	for (size_t i = 0; i < n; i++) {
		next[i] = i + 1 < n ? (uint32_t)i + 1 : UINT32_MAX;
		prev[i] = i > 0 ? (uint32_t)i - 1 : UINT32_MAX;
	}
	for (size_t i = 0; i + 1 < n; i++)
		heap_offer(b, h, &hn, ids, (uint32_t)i, (uint32_t)i + 1);
	while (hn > 0) {
		struct heap_ent e = heap_pop(h, &hn);
		uint32_t right = next[e.pos], merged = TN_BPE_NONE;
		if (right == UINT32_MAX || right == DEAD ||
		    pair_rank(b, ids[e.pos], ids[right], &merged) != e.rank)
			continue; /* stale: one side merged since */
		ids[e.pos] = merged;
		uint32_t nx = next[right];
		next[e.pos] = nx;
		next[right] = DEAD;
		if (nx != UINT32_MAX)
			prev[nx] = e.pos;
		if (prev[e.pos] != UINT32_MAX)
			heap_offer(b, h, &hn, ids, prev[e.pos], e.pos);
		if (nx != UINT32_MAX)
			heap_offer(b, h, &hn, ids, e.pos, nx);
	}
	size_t m = 0;
	for (uint32_t i = 0; i != UINT32_MAX; i = next[i])
		ids[m++] = ids[i];
	free(next); free(prev); free(h);
	return m;
}

size_t tn_bpe_merge(const struct tn_bpe *b, uint32_t *ids, size_t n)
{
	if (n < 2)
		return n;
	if (n <= FLAT_MAX)
		return merge_flat(b, ids, n);
	return merge_heap(b, ids, n);
}

struct cache_slot {
	uint64_t hash; /* 0 = empty */
	uint32_t key_off, key_len, ids_off, ids_n;
};

struct tn_bpe_cache {
	struct cache_slot *slot;
	size_t used;
	uint8_t *keys;
	size_t keys_len, keys_cap;
	struct tn_idvec ids;
	struct tn_idvec scratch;
};

int tn_bpe_cache_new(struct tn_bpe_cache **out)
{
	struct tn_bpe_cache *c = tn_calloc(1, sizeof *c);
	if (!c)
		return TN_ENOMEM;
	c->slot = tn_calloc(CACHE_SLOTS, sizeof *c->slot);
	c->keys_cap = (size_t)CACHE_SLOTS * 8;
	c->keys = tn_malloc(c->keys_cap);
	if (!c->slot || !c->keys) {
		tn_bpe_cache_free(c);
		return TN_ENOMEM;
	}
	*out = c;
	return TN_OK;
}

void tn_bpe_cache_free(struct tn_bpe_cache *c)
{
	if (!c)
		return;
	free(c->slot);
	free(c->keys);
	tn_idvec_free(&c->ids);
	tn_idvec_free(&c->scratch);
	free(c);
}

/* Forget everything: the cache is bounded, not an LRU. */
static void cache_clear(struct tn_bpe_cache *c)
{
	memset(c->slot, 0, CACHE_SLOTS * sizeof *c->slot);
	c->used = 0;
	c->keys_len = 0;
	c->ids.n = 0;
}

static int merge_bytes(const struct tn_bpe *b, const uint32_t byte_id[256],
		       const uint8_t *p, size_t len, struct tn_idvec *w)
{
	w->n = 0;
	if (tn_idvec_reserve(w, len))
		return TN_ENOMEM;
	for (size_t i = 0; i < len; i++)
		w->v[i] = byte_id[p[i]];
	size_t m = tn_bpe_merge(b, w->v, len);
	if (m == SIZE_MAX)
		return TN_ENOMEM;
	w->n = m;
	return TN_OK;
}


static size_t cache_slot_of(const struct tn_bpe_cache *c, uint64_t h,
			    const uint8_t *p, size_t len)
{
	size_t mask = CACHE_SLOTS - 1, i = (size_t)h & mask;
	for (; c->slot[i].hash; i = (i + 1) & mask) {
		const struct cache_slot *s = &c->slot[i];
		if (s->hash == h && s->key_len == len &&
		    memcmp(c->keys + s->key_off, p, len) == 0)
			break;
	}
	return i;
}

const uint32_t *tn_bpe_cache_get(struct tn_bpe_cache *c, const uint8_t *p,
				 size_t len, size_t *n)
{
	if (len > CACHE_WORD_MAX)
		return NULL;
	uint64_t h = XXH3_64bits(p, len) | 1;
	const struct cache_slot *s = &c->slot[cache_slot_of(c, h, p, len)];
	if (!s->hash)
		return NULL;
	*n = s->ids_n;
	return c->ids.v + s->ids_off;
}

int tn_bpe_cache_put(struct tn_bpe_cache *c, const uint8_t *p, size_t len,
		     const uint32_t *ids, size_t n)
{
	if (len > CACHE_WORD_MAX)
		return TN_OK;
	if (c->used * 2 >= CACHE_SLOTS || c->keys_len + len > c->keys_cap)
		cache_clear(c);
	uint64_t h = XXH3_64bits(p, len) | 1;
	size_t i = cache_slot_of(c, h, p, len);
	if (c->slot[i].hash)
		return TN_OK;
	if (tn_idvec_append(&c->ids, ids, n))
		return TN_ENOMEM;
	memcpy(c->keys + c->keys_len, p, len);
	c->slot[i] = (struct cache_slot){ h, (uint32_t)c->keys_len, (uint32_t)len,
					  (uint32_t)(c->ids.n - n), (uint32_t)n };
	c->keys_len += len;
	c->used++;
	return TN_OK;
}

int tn_bpe_encode_bytes(const struct tn_bpe *b, const uint32_t byte_id[256],
			struct tn_bpe_cache *c, const uint8_t *p, size_t len,
			struct tn_idvec *out)
{
	if (len == 1)
		return tn_idvec_push(out, byte_id[p[0]]);
	size_t n;
	const uint32_t *hit = c ? tn_bpe_cache_get(c, p, len, &n) : NULL;
	if (hit)
		return tn_idvec_append(out, hit, n);
	struct tn_idvec tmp = { 0 }, *w = c ? &c->scratch : &tmp;
	int rc = merge_bytes(b, byte_id, p, len, w);
	if (!rc && c)
		rc = tn_bpe_cache_put(c, p, len, w->v, w->n);
	if (!rc)
		rc = tn_idvec_append(out, w->v, w->n);
	tn_idvec_free(&tmp);
	return rc;
}
