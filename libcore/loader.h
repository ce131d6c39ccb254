/* loader.h - training windows from a shard directory, for the trainer.
 *
 * The train (or val) shards of a directory, in manifest order, form one
 * token sequence of T tokens. Window i is tokens [i*n, i*n + n + 1): n
 * inputs and n targets, consecutive windows sharing one token, so an epoch
 * holds W = floor((T - 1) / n) windows. Each epoch visits them in a seeded
 * pseudo-random order (a bijection on [0, W), so no table is stored), or in
 * order when shuffle is off. Rank r of w takes positions r, r + w, r + 2w,
 * ... of that order, floor(W / w) of them, so the ranks of one epoch never
 * share a window. The cursor (epoch, position) is all a checkpoint needs to
 * resume exactly. */
#ifndef TN_LOADER_H
#define TN_LOADER_H

#include <stddef.h>
#include <stdint.h>

struct tn_loader_opts {
	const char *dir;   /* shard directory (with manifest.json) */
	const char *split; /* "train" or "val" */
	uint32_t seq_len;  /* n: tokens per window, without the extra target */
	uint64_t seed;
	int shuffle;       /* 0: windows in order (evaluation) */
	uint32_t rank, world;
};

struct tn_loader_cursor {
	uint64_t epoch;
	uint64_t position; /* windows this rank has taken in this epoch */
};

struct tn_loader;
/* Opens and checks every shard of the split (headers, index, payload
 * checksums) and the manifest. */
int tn_loader_open(struct tn_loader **l, const struct tn_loader_opts *o);
/* The next window of this rank: n + 1 tokens into tokens[]. The positions
 * (0..n-1) where a document starts inside the window go to doc_starts
 * (capacity n), their count to *n_doc_starts; pass NULL to skip them. */
int tn_loader_next(struct tn_loader *l, uint32_t *tokens, uint32_t *doc_starts,
		   size_t *n_doc_starts);
uint64_t tn_loader_windows_per_epoch(const struct tn_loader *l); /* per rank */
uint64_t tn_loader_tokens(const struct tn_loader *l);            /* T */
uint32_t tn_loader_vocab_size(const struct tn_loader *l);
struct tn_loader_cursor tn_loader_get_cursor(const struct tn_loader *l);
int tn_loader_set_cursor(struct tn_loader *l, struct tn_loader_cursor c);
void tn_loader_free(struct tn_loader *l);

/* Micro-batches for the trainer, made ahead on a thread of their own while
 * the model works on the one before: `batch` windows of the loader, each
 * split into n inputs and n targets (the window shifted by one). The
 * loader's order is untouched (only the thread reads it, in turn), and each
 * batch carries the loader's cursor after it, which is what a checkpoint
 * must record: the loader itself runs a batch ahead. */
struct tn_batch {
	int32_t *in, *tgt;             /* [batch * n] each */
	struct tn_loader_cursor after; /* the cursor once this batch is taken */
};
struct tn_batches;
/* ahead 1: on a thread; 0: each batch made when asked. alloc, release: the
 * memory of in and tgt (a backend's host_alloc and host_free: pinned, so
 * that its upload need not wait). The loader belongs to the batches until
 * tn_batches_close. */
int tn_batches_open(struct tn_batches **bs, struct tn_loader *l, uint32_t batch, int ahead,
		    void *(*alloc)(size_t), void (*release)(void *));
/* The next batch; it stays unchanged until the next call, which hands it
 * back for refilling (so the caller must be done with it, and any device
 * copy of it finished). */
int tn_batches_next(struct tn_batches *bs, const struct tn_batch **b);
void tn_batches_close(struct tn_batches *bs);

#endif
