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

struct tn_optim {
	struct tn_optim_opts o;
	float *m, *v;            /* backend memory, n_floats each */
	int64_t step;            /* updates done */
};

void tn_optim_defaults(struct tn_optim_opts *o);
int tn_optim_new(struct tn_optim **opt, const struct tn_model *m, const struct tn_optim_opts *o);
void tn_optim_free(struct tn_optim *opt, const struct tn_model *m);
/* Learning rate of update number `step` (0-based). */
double tn_optim_lr(const struct tn_optim_opts *o, int64_t step);
/* Global norm of the model's gradients. */
double tn_optim_grad_norm(const struct tn_model *m);
/* Clip, update every parameter, advance the step; reports the gradient
 * norm before clipping and the rate used. A non-finite norm updates
 * nothing and is TN_EDATA. */
int tn_optim_step(struct tn_optim *opt, struct tn_model *m, double *grad_norm, double *lr);

#endif
