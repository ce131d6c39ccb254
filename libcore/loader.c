/* loader.c - training windows over the shards of one split (loader.h), and
 * the trainer's micro-batches made ahead of it on a thread (two slots, taken
 * in turn). The epoch order is a keyed Feistel permutation of the window
 * indices with cycle walking, so any window count is permuted exactly, in
 * O(1) memory, and position p of epoch e can be computed directly: resuming
 * is exact. */
#include "loader.h"
#include "manifest.h"
#include "shard.h"
#include "util.h"

#include <pthread.h>
#include <stdio.h>
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

/* ---- micro-batches made ahead ---- */

struct tn_batches {
	struct tn_loader *l;
	uint32_t batch;
	void (*release)(void *);
	uint32_t *window;
	struct tn_batch slot[2];
	/* under mu: full[s] (made, not yet handed back), next (the slot the
	 * caller takes next), held (the one it has, -1 none), stop; rc and msg:
	 * the failure that ended the thread, handed on once the batches made
	 * before it are taken. The thread fills the slots in turn. */
	int full[2], next, held, stop, ahead, rc;
	char msg[256];
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
};

static int make_batch(struct tn_batches *bs, struct tn_batch *b)
{
	size_t n = bs->l->o.seq_len;
	for (uint32_t k = 0; k < bs->batch; k++) {
		int rc = tn_loader_next(bs->l, bs->window, NULL, NULL);
		if (rc)
			return rc;
		for (size_t t = 0; t < n; t++) {
			b->in[k * n + t] = (int32_t)bs->window[t];
			b->tgt[k * n + t] = (int32_t)bs->window[t + 1];
		}
	}
	b->after = tn_loader_get_cursor(bs->l);
	return TN_OK;
}

static void *maker(void *arg)
{
	struct tn_batches *bs = arg;
	int s = 0, rc = TN_OK;
	pthread_mutex_lock(&bs->mu);
	while (!rc) {
		while (!bs->stop && bs->full[s])
			pthread_cond_wait(&bs->cv, &bs->mu);
		if (bs->stop)
			break;
		pthread_mutex_unlock(&bs->mu);
		rc = make_batch(bs, &bs->slot[s]);
		pthread_mutex_lock(&bs->mu);
		if (rc) /* the message is this thread's: the caller's thread repeats it */
			snprintf(bs->msg, sizeof bs->msg, "%s", tn_errmsg());
		bs->rc = rc;
		bs->full[s] = !rc;
		s ^= 1;
		pthread_cond_broadcast(&bs->cv);
	}
	pthread_mutex_unlock(&bs->mu);
	return NULL;
}

int tn_batches_open(struct tn_batches **out, struct tn_loader *l, uint32_t batch, int ahead,
		    void *(*alloc)(size_t), void (*release)(void *))
{
	struct tn_batches *bs = tn_calloc(1, sizeof *bs);
	*out = NULL;
	if (!bs)
		return TN_ENOMEM;
	size_t n = l->o.seq_len, bytes = (size_t)batch * n * sizeof(int32_t);
	*bs = (struct tn_batches){.l = l, .batch = batch, .release = release, .held = -1};
	bs->window = tn_malloc((n + 1) * sizeof(uint32_t));
	int rc = bs->window ? TN_OK : TN_ENOMEM;
	for (int s = 0; !rc && s < 2; s++) {
		bs->slot[s].in = alloc(bytes);
		bs->slot[s].tgt = bs->slot[s].in ? alloc(bytes) : NULL;
		if (!bs->slot[s].tgt)
			rc = TN_ENOMEM;
	}
	if (!rc && ahead) {
		pthread_mutex_init(&bs->mu, NULL);
		pthread_cond_init(&bs->cv, NULL);
		bs->ahead = 1; /* from here on close stops and joins the thread */
		if (pthread_create(&bs->thread, NULL, maker, bs)) {
			bs->ahead = 0;
			pthread_mutex_destroy(&bs->mu);
			pthread_cond_destroy(&bs->cv);
			rc = tn_fail(TN_EIO, "cannot start the batch thread");
		}
	}
	if (rc) {
		tn_batches_close(bs);
		return rc;
	}
	*out = bs;
	return TN_OK;
}

int tn_batches_next(struct tn_batches *bs, const struct tn_batch **b)
{
	if (!bs->ahead) {
		*b = &bs->slot[0];
		return make_batch(bs, &bs->slot[0]);
	}
	pthread_mutex_lock(&bs->mu);
	if (bs->held >= 0) {
		bs->full[bs->held] = 0;
		pthread_cond_broadcast(&bs->cv);
	}
	bs->held = -1;
	while (!bs->full[bs->next] && !bs->rc)
		pthread_cond_wait(&bs->cv, &bs->mu);
	int s = bs->next, rc = bs->full[s] ? TN_OK : bs->rc;
	if (rc) {
		tn_fail(rc, "%s", bs->msg);
	} else {
		bs->held = s;
		bs->next ^= 1;
	}
	pthread_mutex_unlock(&bs->mu);
	*b = &bs->slot[s];
	return rc;
}

void tn_batches_close(struct tn_batches *bs)
{
	if (!bs)
		return;
	if (bs->ahead) {
		pthread_mutex_lock(&bs->mu);
		bs->stop = 1;
		pthread_cond_broadcast(&bs->cv);
		pthread_mutex_unlock(&bs->mu);
		pthread_join(bs->thread, NULL);
		pthread_mutex_destroy(&bs->mu);
		pthread_cond_destroy(&bs->cv);
	}
	for (int s = 0; s < 2; s++) {
		if (bs->slot[s].in)
			bs->release(bs->slot[s].in);
		if (bs->slot[s].tgt)
			bs->release(bs->slot[s].tgt);
	}
	free(bs->window);
	free(bs);
}
