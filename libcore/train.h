/* train.h - a training run: model from a config (or a checkpoint to
 * resume), windows from a shard directory through the loader, AdamW with
 * accumulation and clipping, periodic validation and checkpoints, a JSONL
 * metrics log and an SVG loss curve in the output directory.
 * Decision: everything a run depends on (weights, moments, step, RNG, data
 * cursor) is in the checkpoint, and every reduction is ordered, so a
 * resumed run continues bit for bit like an uninterrupted one. Several
 * ranks form a 2-D grid (tensor-parallel groups of consecutive ranks, data
 * parallel across them); a checkpoint always holds the whole model. */
#ifndef TN_TRAIN_H
#define TN_TRAIN_H

#include <signal.h>
#include <stdint.h>

#include "backend.h"
#include "collective.h"
#include "config.h"
#include "optim.h"
#include "tensor.h"

struct tn_train_log {
	const char *event;    /* "step", "eval", "checkpoint" or "skipped" */
	int64_t step, steps;  /* updates done, of the total ("skipped": the update left out) */
	uint64_t tokens;      /* training tokens consumed */
	double loss, lr, grad_norm, tokens_per_s;
	double val_loss;      /* "eval" */
	const char *path;     /* "checkpoint": its directory */
	int skips;            /* "skipped": steps skipped in a row, this one included */
};

struct tn_train_opts {
	struct tn_config cfg;        /* vocab_size 0: the data's */
	const struct tn_backend *be; /* NULL: the CPU */
	const char *data, *out;      /* shard directory; output directory */
	const char *resume;          /* checkpoint (or output) directory, or NULL */
	int64_t steps;               /* total updates, resumed ones included */
	uint32_t seq_len, batch, accum; /* window length; windows per micro-batch (per rank); micro-batches per update */
	struct tn_optim_opts optim;  /* optim.steps is set from steps */
	uint64_t seed;
	int64_t log_every, eval_every, save_every; /* 0 = never (a final checkpoint is always written) */
	int no_checkpoint;           /* metrics.jsonl and the plot at the end, no checkpoint ever
					(benchmark runs: a 7B checkpoint is 84 GB) */
	uint64_t eval_windows;       /* per evaluation; 0 = the whole val split */
	int keep;                    /* step checkpoints kept; 0 = all */
	enum tn_dtype save_dtype;
	const volatile sig_atomic_t *stop; /* set asynchronously: checkpoint and return */
	struct tn_comm *comm;        /* all ranks (NULL: this process alone) */
	int tp;                      /* tensor-parallel degree: groups of tp consecutive ranks
					share one model (0 or 1: none); data parallel across them */
	void (*heartbeat)(void *ctx); /* after every step, on every rank (a watchdog) */
	int zero;                    /* ZeRO stage with several ranks: 0, 1 or 2 */
	int no_overlap;              /* sum gradients after the backward, not during it */
	int recompute;               /* layers checkpointed (tn_model_set_recompute): 0 none, -1 all */
	enum tn_on_nan on_nan;       /* a non-finite loss or gradient norm: stop (default) or skip
					the step, stopping after max_skips skipped in a row */
	int max_skips;
	void (*log)(void *ctx, const struct tn_train_log *r);
	void *log_ctx;
};

struct tn_train_result {
	int64_t step;
	double loss, val_loss; /* last values (val_loss NaN if never evaluated) */
	int interrupted;
	/* Throughput of this run's updates after its first (which pays for
	 * warm-up), all ranks' tokens, with the evaluations and checkpoints
	 * made in between; over the one update if there was only one. */
	double tokens_per_s;
	size_t device_bytes; /* this rank's device memory at the end; 0 on the CPU */
};

void tn_train_defaults(struct tn_train_opts *o);
int tn_train_run(const struct tn_train_opts *o, struct tn_train_result *res);

#endif
