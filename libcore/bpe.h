/* bpe.h - the BPE merge engine shared by every tokenizer kind.
 *
 * A vocabulary is a table of token byte strings; merges are a table from a
 * pair of adjacent token ids to (rank, merged id). Encoding a word starts
 * from its initial symbols and repeatedly merges the adjacent pair of lowest
 * rank, leftmost first on ties: the rule of GPT-2's encoder.py, tiktoken,
 * Hugging Face BPE and SentencePiece BPE alike, once their tables are put in
 * this form. Short words use a flat scan, long ones a heap, so a word of n
 * symbols costs O(n log n), never O(n^2). */
#ifndef TN_BPE_H
#define TN_BPE_H

#include <stddef.h>
#include <stdint.h>

#define TN_BPE_NONE UINT32_MAX /* no token / no merge */

/* A growable array of token ids. */
struct tn_idvec {
	uint32_t *v;
	size_t n, cap;
};
int tn_idvec_push(struct tn_idvec *a, uint32_t id);
int tn_idvec_reserve(struct tn_idvec *a, size_t extra);
int tn_idvec_append(struct tn_idvec *a, const uint32_t *v, size_t n);
void tn_idvec_free(struct tn_idvec *a);

struct tn_bpe;

/* An empty vocabulary of room for n tokens (ids 0..n-1, all unset). */
int tn_bpe_new(struct tn_bpe **b, uint32_t n);
void tn_bpe_free(struct tn_bpe *b);
/* Set token id's bytes; fails (TN_EDATA) on a duplicate string. */
int tn_bpe_set(struct tn_bpe *b, uint32_t id, const void *bytes, size_t len);
/* Token bytes (NULL if the id is unset or out of range). */
const uint8_t *tn_bpe_bytes(const struct tn_bpe *b, uint32_t id, size_t *len);
/* The id of a byte string, or TN_BPE_NONE. */
uint32_t tn_bpe_lookup(const struct tn_bpe *b, const void *bytes, size_t len);
/* Add merge (left, right) -> merged at rank; the first one added for a pair
 * wins (later duplicates are ignored, as in the references). */
int tn_bpe_add_merge(struct tn_bpe *b, uint32_t left, uint32_t right,
		     uint32_t rank, uint32_t merged);
/* Derive the merges from ranks alone (tiktoken's rule): each token of two or
 * more bytes is the merge, at rank rank[id], of every split of its bytes
 * into two tokens. rank may be NULL to use the id as the rank; a token of
 * rank TN_BPE_NONE neither is made by a merge nor takes part in one. */
int tn_bpe_merges_from_ranks(struct tn_bpe *b, const uint32_t *rank);
size_t tn_bpe_merge_count(const struct tn_bpe *b);

/* Merge the n symbols in ids[] in place; returns the new count, or
 * SIZE_MAX when out of memory. Symbols equal to TN_BPE_NONE never merge. */
size_t tn_bpe_merge(const struct tn_bpe *b, uint32_t *ids, size_t n);

/* Byte-level encoding of one pre-token: the initial symbols are the tokens
 * of its single bytes (byte_id[256]), then merges. Appends to out. A cache
 * (one per thread) remembers short words. */
struct tn_bpe_cache;
int tn_bpe_cache_new(struct tn_bpe_cache **c);
void tn_bpe_cache_free(struct tn_bpe_cache *c);
/* The cached ids of a word (NULL if absent; valid until the next put). */
const uint32_t *tn_bpe_cache_get(struct tn_bpe_cache *c, const uint8_t *p,
				 size_t len, size_t *n);
/* Remember a word's ids (words longer than the cache takes are ignored). */
int tn_bpe_cache_put(struct tn_bpe_cache *c, const uint8_t *p, size_t len,
		     const uint32_t *ids, size_t n);
int tn_bpe_encode_bytes(const struct tn_bpe *b, const uint32_t byte_id[256],
			struct tn_bpe_cache *c, const uint8_t *p, size_t len,
			struct tn_idvec *out);

#endif
