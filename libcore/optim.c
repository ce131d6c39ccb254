/* optim.c - AdamW over the model's parameter table, clipping and schedule.
 * The clipping factor is folded into the update (gradients are never
 * rewritten), so a skipped step leaves the gradients as they were. */
#include "optim.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>

void tn_optim_defaults(struct tn_optim_opts *o)
{
	*o = (struct tn_optim_opts){
		.lr = 3e-3, .min_lr = 3e-4, .warmup = 0, .steps = 1,
		.schedule = TN_SCHED_COSINE, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8,
		.weight_decay = 0.1, .clip = 1.0, .decay_embedding = 0,
	};
}

int tn_optim_new(struct tn_optim **out, const struct tn_model *m, const struct tn_optim_opts *o)
{
	struct tn_optim *opt = tn_calloc(1, sizeof(*opt));
	*out = NULL;
	if (!opt)
		return TN_ENOMEM;
	opt->o = *o;
	opt->m = m->be->alloc(m->n_floats * sizeof(float));
	opt->v = opt->m ? m->be->alloc(m->n_floats * sizeof(float)) : NULL;
	if (!opt->v) {
		tn_optim_free(opt, m);
		return TN_ENOMEM;
	}
	*out = opt;
	return TN_OK;
}

void tn_optim_free(struct tn_optim *opt, const struct tn_model *m)
{
	if (!opt)
		return;
	if (opt->m)
		m->be->free(opt->m);
	if (opt->v)
		m->be->free(opt->v);
	free(opt);
}

double tn_optim_lr(const struct tn_optim_opts *o, int64_t step)
{
	if (step < o->warmup)
		return o->lr * (double)(step + 1) / (double)o->warmup;
	if (o->schedule == TN_SCHED_CONSTANT)
		return o->lr;
	double span = (double)TN_MAX(o->steps - o->warmup, 1);
	double p = TN_MIN((double)(step - o->warmup) / span, 1.0);
	double f = o->schedule == TN_SCHED_COSINE ? 0.5 * (1.0 + cos(M_PI * p)) : 1.0 - p;
	return o->min_lr + (o->lr - o->min_lr) * f;
}

double tn_optim_grad_norm(const struct tn_model *m)
{
	return sqrt(m->be->sumsq_forward(m->grads, m->n_floats));
}

int tn_optim_step(struct tn_optim *opt, struct tn_model *m, double *grad_norm, double *lr)
{
	double norm = tn_optim_grad_norm(m);
	*grad_norm = norm;
	*lr = tn_optim_lr(&opt->o, opt->step);
	if (!isfinite(norm))
		return tn_fail(TN_EDATA, "step %lld: the gradient norm is %g",
			       (long long)opt->step + 1, norm);
	float gscale = opt->o.clip > 0 && norm > opt->o.clip ? (float)(opt->o.clip / norm) : 1.0f;
	int64_t t = opt->step + 1;
	float bc1 = (float)(1.0 - pow(opt->o.beta1, (double)t));
	float bc2 = (float)(1.0 - pow(opt->o.beta2, (double)t));
	for (size_t i = 0; i < m->n_param; i++) {
		const struct tn_param *p = &m->param[i];
		int decay = p->decay || (p->role == TN_P_EMB && opt->o.decay_embedding);
		m->be->adamw_update(m->params + p->offset, m->grads + p->offset, opt->m + p->offset,
				    opt->v + p->offset, p->numel, (float)*lr, (float)opt->o.beta1,
				    (float)opt->o.beta2, (float)opt->o.eps,
				    decay ? (float)opt->o.weight_decay : 0.0f, gscale, bc1, bc2);
	}
	opt->step = t;
	return TN_OK;
}
