/* optim.h - AdamW with decoupled weight decay and bias correction, global
 * gradient-norm clipping, and the learning-rate schedule (linear warm-up,
 * then cosine or linear decay to a floor, or constant).
 * Decision: the moments are two flat buffers laid out like the parameters
 * (the model's table), so the update, the saver and the loader walk the
 * same table; which tensors get weight decay is the table's `decay` flag
 * (matrices; never theta; the embedding only if asked). */
#ifndef TN_OPTIM_H
#define TN_OPTIM_H

#include <stdint.h>

#include "model.h"

enum tn_schedule { TN_SCHED_COSINE, TN_SCHED_LINEAR, TN_SCHED_CONSTANT };

struct tn_optim_opts {
	double lr, min_lr;       /* peak rate and the floor the decay ends at */
	int64_t warmup, steps;   /* warm-up steps; total steps of the schedule */
	enum tn_schedule schedule;
	double beta1, beta2, eps, weight_decay;
	double clip;             /* global gradient-norm limit; 0 = none */
	int decay_embedding;     /* also decay model.embed_tokens.weight */
};

struct tn_comm;

struct tn_optim {
	struct tn_optim_opts o;
	float *m, *v;            /* backend memory, hi - lo floats each */
	int64_t step;            /* updates done */
	/* Data parallel: gradients are summed over the ranks of comm before the
	 * update. With zero >= 1 (ZeRO) this rank keeps the moments of, and
	 * updates, only [lo, hi) of the flat parameters, receiving only that
	 * shard of the summed gradients (a reduce-scatter), then all ranks
	 * gather the parameters. ZeRO-1 reduce-scatters once after the
	 * backward, ZeRO-2 layer by layer during it. Both run in place on the
	 * model's buffers, padded to ranks * shard floats, so ZeRO keeps no
	 * staging buffer: rank r's block is [r * shard, (r + 1) * shard).
	 * Unsharded: lo = 0, hi = n_floats. */
	struct tn_comm *comm;
	int zero;
	size_t lo, hi, shard;    /* shard = ceil(n_floats / ranks) */
	struct tn_model *overlap; /* the model whose backward is summing its gradients */
};

void tn_optim_defaults(struct tn_optim_opts *o);
int tn_optim_new(struct tn_optim **opt, const struct tn_model *m, const struct tn_optim_opts *o);
void tn_optim_free(struct tn_optim *opt, const struct tn_model *m);
/* Spread the optimizer over the ranks of comm (zero: 0, 1 or 2, as above),
 * keeping this rank's part of any moments already loaded, and pad m's
 * buffers (tn_model_pad_to) for ZeRO. The shards live in the backend's
 * memory, so ZeRO runs over MPI (CPU) and NCCL (GPU) alike. */
int tn_optim_distribute(struct tn_optim *opt, struct tn_model *m, struct tn_comm *comm,
			int zero);
/* Whole moments on every rank (collective), as a checkpoint stores them:
 * full->m and full->v are new buffers (ranks * shard floats, only while
 * saving) unless opt is unsharded, when they are opt's own. Release with
 * tn_optim_release_whole. */
int tn_optim_whole(const struct tn_optim *opt, const struct tn_model *m, struct tn_optim *full);
void tn_optim_release_whole(const struct tn_optim *opt, const struct tn_model *m,
			    struct tn_optim *full);
/* The whole moments of a ZeRO optimizer in host memory, m_host and v_host
 * (n_floats each), on the ranks that pass them (NULL elsewhere; every rank
 * of opt's communicator calls it). They travel in rounds of `chunk` floats
 * a rank (0: 16M) through a device buffer of ranks * chunk floats, so no
 * rank ever holds them whole on the device (7B: 52 GiB). Unsharded: a copy of
 * the moments, on the ranks that pass the buffers. */
int tn_optim_gather_host(const struct tn_optim *opt, const struct tn_model *m, float *m_host,
			 float *v_host, size_t chunk);
/* Sum the gradients over the ranks in buckets (a layer each) as the next
 * tn_model_backward finishes them, overlapped with the rest of it; the
 * next tn_optim_step waits for the sums instead of making them. Call
 * before the backward of an update's last micro-batch. With ZeRO-2 each
 * bucket is reduce-scattered to the ranks whose shards it crosses. Without
 * several ranks, with ZeRO-1, and with tensor parallelism over NCCL, it
 * does nothing. */
void tn_optim_overlap(struct tn_optim *opt, struct tn_model *m);
/* Learning rate of update number `step` (0-based). */
double tn_optim_lr(const struct tn_optim_opts *o, int64_t step);
/* Global norm of the model's gradients. */
double tn_optim_grad_norm(const struct tn_model *m);
/* Sum the gradients over the ranks (when distributed), clip, update every
 * parameter (this rank's shard, then gather), advance the step; reports the
 * gradient norm before clipping and the rate used. A non-finite norm
 * updates nothing and is TN_EDATA. */
int tn_optim_step(struct tn_optim *opt, struct tn_model *m, double *grad_norm, double *lr);
/* What a step with a non-finite loss or gradient norm does: fail, or skip it. */
enum tn_on_nan { TN_NAN_STOP, TN_NAN_SKIP };
/* tn_optim_step for a step whose mean loss is `loss` (summed over the
 * ranks: with the global gradient norm, the same on every rank, so all
 * decide alike). If either is not finite nothing is updated (weights,
 * moments and step stay bit for bit) and *skipped is 1: TN_OK with
 * TN_NAN_SKIP, TN_EDATA "step N: the loss is nan" with TN_NAN_STOP. */
int tn_optim_step_checked(struct tn_optim *opt, struct tn_model *m, double loss,
			  enum tn_on_nan on_nan, double *grad_norm, double *lr, int *skipped);

#endif
