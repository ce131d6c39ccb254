/* loader.c - training windows over the shards of one split (loader.h).
 * The epoch order is a keyed Feistel permutation of the window indices with
 * cycle walking, so any window count is permuted exactly, in O(1) memory,
 * and position p of epoch e can be computed directly: resuming is exact. */
#include "loader.h"
#include "manifest.h"
#include "shard.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define FEISTEL_ROUNDS 4

struct tn_loader {
	struct tn_loader_opts o;
	struct tn_shard *shards;
	size_t n_shards;
	uint64_t *first;      /* global index of each shard's first token; [n_shards] = T */
	uint64_t windows;     /* W, over all ranks */
	uint64_t per_rank;    /* floor(W / world) */
	uint32_t vocab_size;
	struct tn_loader_cursor cur;
	unsigned half_bits;   /* the permutation works on 2 * half_bits bits */
};

static uint64_t round_fn(uint64_t x, uint64_t seed, uint64_t epoch, int round)
{
	uint64_t key[3] = {x, epoch, (uint64_t)round};
	return XXH3_64bits_withSeed(key, sizeof key, seed);
}

/* A bijection on [0, 2^(2h)); cycle-walked into [0, W). */
static uint64_t permute(const struct tn_loader *l, uint64_t i, uint64_t epoch)
{
	uint64_t mask = (1ull << l->half_bits) - 1;
	do {
		uint64_t left = i >> l->half_bits, right = i & mask;
		for (int r = 0; r < FEISTEL_ROUNDS; r++) {
			uint64_t next = left ^ (round_fn(right, l->o.seed, epoch, r) & mask);
			left = right;
			right = next;
		}
		i = left << l->half_bits | right;
	} while (i >= l->windows);
	return i;
}

int tn_loader_open(struct tn_loader **lp, const struct tn_loader_opts *o)
{
	if (o->seq_len == 0 || o->world == 0 || o->rank >= o->world)
		return tn_fail(TN_EUSAGE, "loader: invalid sequence length or rank %u of %u",
			       o->rank, o->world);
	struct tn_loader *l = tn_calloc(1, sizeof *l);
	if (!l)
		return TN_ENOMEM;
	l->o = *o;
	struct tn_manifest m;
	int rc = tn_manifest_read(o->dir, &m);
	if (!rc) {
		l->vocab_size = m.info.vocab_size;
		rc = tn_manifest_open_shards(&m, o->dir, o->split, TN_SHARD_CHECK_ALL,
					     &l->shards, &l->n_shards);
		tn_manifest_free(&m);
	}
	if (!rc && !(l->first = tn_malloc((l->n_shards + 1) * sizeof *l->first)))
		rc = TN_ENOMEM;
	if (rc) {
		tn_loader_free(l);
		return rc;
	}
	l->first[0] = 0;
	for (size_t i = 0; i < l->n_shards; i++)
		l->first[i + 1] = l->first[i] + l->shards[i].h.n_tokens;
	uint64_t total = l->first[l->n_shards];
	l->windows = total > o->seq_len ? (total - 1) / o->seq_len : 0;
	l->per_rank = l->windows / o->world;
	if (l->per_rank == 0) {
		rc = tn_fail(TN_EDATA, "%s: the %s split holds %llu tokens, too few for %u rank(s) of %u + 1",
			     o->dir, o->split, (unsigned long long)total, o->world, o->seq_len);
		tn_loader_free(l);
		return rc;
	}
	unsigned bits = 2;
	while (bits < 64 && (1ull << bits) < l->windows)
		bits++;
	l->half_bits = (bits + 1) / 2;
	*lp = l;
	return TN_OK;
}

/* The shard holding global token g. */
static size_t shard_of(const struct tn_loader *l, uint64_t g)
{
	size_t lo = 0, hi = l->n_shards - 1;
	while (lo < hi) {
		size_t mid = (lo + hi + 1) / 2;
		if (l->first[mid] <= g)
			lo = mid;
		else
			hi = mid - 1;
	}
	while (l->shards[lo].h.n_tokens == 0)
		lo++; /* empty shards hold no token */
	return lo;
}

/* First document of shard s starting at or after local token t. */
static uint64_t first_doc_at(const struct tn_shard *s, uint64_t t)
{
	uint64_t lo = 0, hi = s->h.n_docs;
	while (lo < hi) {
		uint64_t mid = (lo + hi) / 2;
		if (tn_shard_doc_offset(s, mid) < t)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void copy_window(const struct tn_loader *l, uint64_t start, uint32_t *tokens,
			uint32_t *doc_starts, size_t *n_doc_starts)
{
	uint64_t len = (uint64_t)l->o.seq_len + 1, done = 0;
	size_t starts = 0;
	size_t s = shard_of(l, start);
	while (done < len) {
		const struct tn_shard *sh = &l->shards[s];
		uint64_t local = start + done - l->first[s];
		uint64_t take = TN_MIN(len - done, sh->h.n_tokens - local);
		tn_shard_tokens(sh, local, (size_t)take, tokens + done);
		if (doc_starts) {
			for (uint64_t d = first_doc_at(sh, local); d < sh->h.n_docs; d++) {
				uint64_t at = tn_shard_doc_offset(sh, d);
				if (at >= local + take || done + at - local >= l->o.seq_len)
					break;
				if (starts == 0 || doc_starts[starts - 1] != done + at - local)
					doc_starts[starts++] = (uint32_t)(done + at - local);
			}
		}
		done += take;
		s++;
	}
	if (n_doc_starts)
		*n_doc_starts = starts;
}

int tn_loader_next(struct tn_loader *l, uint32_t *tokens, uint32_t *doc_starts,
		   size_t *n_doc_starts)
{
	if (l->cur.position >= l->per_rank) {
		l->cur.epoch++;
		l->cur.position = 0;
	}
	uint64_t g = l->cur.position * l->o.world + l->o.rank;
	uint64_t w = l->o.shuffle ? permute(l, g, l->cur.epoch) : g;
	copy_window(l, w * l->o.seq_len, tokens, doc_starts, n_doc_starts);
	l->cur.position++;
	return TN_OK;
}

uint64_t tn_loader_windows_per_epoch(const struct tn_loader *l) { return l->per_rank; }
uint64_t tn_loader_tokens(const struct tn_loader *l) { return l->first[l->n_shards]; }
uint32_t tn_loader_vocab_size(const struct tn_loader *l) { return l->vocab_size; }
struct tn_loader_cursor tn_loader_get_cursor(const struct tn_loader *l) { return l->cur; }

int tn_loader_set_cursor(struct tn_loader *l, struct tn_loader_cursor c)
{
	if (c.position > l->per_rank)
		return tn_fail(TN_EDATA, "loader cursor position %llu is past the %llu windows of an epoch",
			       (unsigned long long)c.position, (unsigned long long)l->per_rank);
	l->cur = c;
	return TN_OK;
}

void tn_loader_free(struct tn_loader *l)
{
	if (!l)
		return;
	tn_shards_close(l->shards, l->n_shards);
	free(l->first);
	free(l);
}
