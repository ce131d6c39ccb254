/* optim.c - AdamW over the model's parameter table, clipping and schedule.
 * The clipping factor is folded into the update (gradients are never
 * rewritten), so a skipped step leaves the gradients as they were; a step
 * whose loss or gradient norm is not finite updates nothing. With a
 * tensor-parallel model the tensors replicated on the TP ranks count once
 * in the gradient norm. */
#include "optim.h"
#include "collective.h"
#include "ops.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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
	opt->hi = opt->shard = m->n_floats;
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

static int ranks(const struct tn_optim *opt) { return opt->comm ? tn_comm_size(opt->comm) : 1; }
/* Gradients go through the communicator: several ranks, or NCCL checked alone. */
static int communicating(const struct tn_optim *opt)
{
	return opt->comm && tn_comm_kind(opt->comm) != TN_COMM_SINGLE;
}

/* Moments narrowed from the whole range to [lo, hi). */
static int narrow(struct tn_optim *opt, const struct tn_model *m, size_t lo, size_t hi)
{
	float *nm = m->be->alloc((hi - lo) * sizeof(float) + 1);
	float *nv = nm ? m->be->alloc((hi - lo) * sizeof(float) + 1) : NULL;
	if (!nv) {
		if (nm)
			m->be->free(nm);
		return TN_ENOMEM;
	}
	m->be->copy(nm, opt->m + lo, (hi - lo) * sizeof(float));
	m->be->copy(nv, opt->v + lo, (hi - lo) * sizeof(float));
	m->be->free(opt->m);
	m->be->free(opt->v);
	opt->m = nm;
	opt->v = nv;
	opt->lo = lo;
	opt->hi = hi;
	return TN_OK;
}

int tn_optim_distribute(struct tn_optim *opt, struct tn_model *m, struct tn_comm *comm,
			int zero)
{
	int w = tn_comm_size(comm), r = tn_comm_rank(comm);
	if (zero < 0 || zero > 2)
		return tn_fail(TN_EUSAGE, "ZeRO stage must be 0, 1 or 2, not %d", zero);
	int nccl = tn_comm_kind(comm) == TN_COMM_NCCL;
	if (w > 1 && strcmp(m->be->name, "cpu") != 0 && !nccl)
		return tn_fail(TN_EUSAGE, "several ranks on the GPU need NCCL");
	opt->comm = comm;
	opt->zero = w > 1 ? zero : 0;
	if (!opt->zero)
		return TN_OK;
	opt->shard = (m->n_floats + (size_t)w - 1) / (size_t)w;
	size_t lo = TN_MIN((size_t)r * opt->shard, m->n_floats);
	int rc = narrow(opt, m, lo, TN_MIN(lo + opt->shard, m->n_floats));
	return rc ? rc : tn_model_pad_to(m, (size_t)w * opt->shard);
}

/* Every rank's shard src[0, hi - lo) into a new whole buffer (ranks * shard
 * floats), through this rank's block of it. */
static int gather_on_device(const struct tn_optim *opt, const struct tn_model *m,
			    const float *src, float **whole)
{
	const struct tn_backend *be = m->be;
	size_t w = (size_t)ranks(opt);
	float *buf = be->alloc(w * opt->shard * sizeof(float)); /* zeroed: the padding too */
	if (!(*whole = buf))
		return TN_ENOMEM;
	be->copy(buf + opt->lo, src, (opt->hi - opt->lo) * sizeof(float));
	return tn_comm_allgather_inplace(opt->comm, buf, opt->shard);
}

int tn_optim_whole(const struct tn_optim *opt, const struct tn_model *m, struct tn_optim *full)
{
	*full = *opt;
	if (!opt->zero)
		return TN_OK;
	full->lo = 0;
	full->hi = m->n_floats;
	full->m = full->v = NULL;
	int rc = gather_on_device(opt, m, opt->m, &full->m);
	if (!rc)
		rc = gather_on_device(opt, m, opt->v, &full->v);
	if (rc)
		tn_optim_release_whole(opt, m, full);
	return rc;
}

void tn_optim_release_whole(const struct tn_optim *opt, const struct tn_model *m,
			    struct tn_optim *full)
{
	if (opt->zero) {
		if (full->m)
			m->be->free(full->m);
		if (full->v)
			m->be->free(full->v);
	}
	full->m = full->v = NULL;
}

/* One moment buffer's shards into dst (host, NULL: not here), in rounds of
 * `chunk` floats a rank through stage (ranks * chunk floats on the device)
 * and host (as many in host memory). */
static int gather_rounds(const struct tn_optim *opt, const struct tn_model *m, const float *src,
			 float *dst, float *stage, float *host, size_t chunk)
{
	const struct tn_backend *be = m->be;
	size_t w = (size_t)ranks(opt), r = (size_t)tn_comm_rank(opt->comm), mine = opt->hi - opt->lo;
	for (size_t c = 0; c < opt->shard; c += chunk) {
		size_t len = TN_MIN(chunk, opt->shard - c), have = c < mine ? TN_MIN(len, mine - c) : 0;
		be->zero(stage + r * len, len * sizeof(float));
		if (have)
			be->copy(stage + r * len, src + c, have * sizeof(float));
		int rc = tn_comm_allgather_inplace(opt->comm, stage, len);
		if (rc)
			return rc;
		if (!dst)
			continue;
		be->download(host, stage, w * len * sizeof(float));
		for (size_t q = 0; q < w; q++) {
			size_t at = q * opt->shard + c;
			if (at < m->n_floats)
				memcpy(dst + at, host + q * len,
				       TN_MIN(len, m->n_floats - at) * sizeof(float));
		}
	}
	return TN_OK;
}

int tn_optim_gather_host(const struct tn_optim *opt, const struct tn_model *m, float *m_host,
			 float *v_host, size_t chunk)
{
	if (!opt->zero) { /* whole already */
		if (m_host) {
			m->be->download(m_host, opt->m, m->n_floats * sizeof(float));
			m->be->download(v_host, opt->v, m->n_floats * sizeof(float));
		}
		return TN_OK;
	}
	size_t w = (size_t)ranks(opt);
	chunk = TN_MIN(chunk ? chunk : (size_t)16 << 20, opt->shard);
	float *stage = m->be->alloc(w * chunk * sizeof(float));
	float *host = stage && m_host ? tn_malloc(w * chunk * sizeof(float)) : NULL;
	int rc = stage && (host || !m_host) ? TN_OK : TN_ENOMEM;
	if (!rc)
		rc = gather_rounds(opt, m, opt->m, m_host, stage, host, chunk);
	if (!rc)
		rc = gather_rounds(opt, m, opt->v, v_host, stage, host, chunk);
	free(host);
	if (stage)
		m->be->free(stage);
	return rc;
}

/* A bucket of finished gradients: summed in full, or (ZeRO-2) each rank
 * receiving the part inside its shard, in place. */
static int bucket_ready(void *ctx, size_t offset, size_t n)
{
	struct tn_optim *opt = ctx;
	float *g = opt->overlap->grads + offset;
	if (!opt->zero)
		return tn_comm_iallreduce(opt->comm, g, n);
	size_t w = (size_t)ranks(opt), *cnt = tn_malloc(w * sizeof(*cnt));
	if (!cnt)
		return TN_ENOMEM;
	for (size_t q = 0; q < w; q++) {
		size_t a = TN_MAX(offset, q * opt->shard), b = TN_MIN(offset + n, (q + 1) * opt->shard);
		cnt[q] = b > a ? b - a : 0;
	}
	int rc = tn_comm_ireduce_scatterv_inplace(opt->comm, g, cnt);
	free(cnt);
	return rc;
}

void tn_optim_overlap(struct tn_optim *opt, struct tn_model *m)
{
	if (!communicating(opt) || opt->zero == 1)
		return; /* ZeRO-1 reduce-scatters once, after the backward */
	if (m->tp && tn_comm_kind(opt->comm) == TN_COMM_NCCL)
		return; /* the backward's TP all-reduces would run beside these, on another
			 * communicator: NCCL does not promise that both make progress */
	opt->overlap = m;
	m->grad_ready = bucket_ready;
	m->grad_ctx = opt;
}

/* Sum the gradients over the ranks: in full (DP), or only this rank's
 * shard, in place (ZeRO: the padding past n_floats is zero); or wait for
 * the sums the backward started. */
static int reduce_grads(struct tn_optim *opt, struct tn_model *m)
{
	if (opt->overlap) {
		opt->overlap = NULL;
		m->grad_ready = NULL;
		return tn_comm_wait(opt->comm);
	}
	if (!communicating(opt))
		return TN_OK;
	if (!opt->zero)
		return tn_comm_allreduce(opt->comm, m->grads, m->n_floats);
	return tn_comm_reduce_scatter_inplace(opt->comm, m->grads, opt->shard);
}

/* Sum of squares of the gradients in [lo, hi) of a TP part, counting the
 * replicated tensors on TP rank 0 only. */
static double part_sumsq(const struct tn_model *m, size_t lo, size_t hi)
{
	double ss = 0;
	for (size_t i = 0; i < m->n_param; i++) {
		const struct tn_param *p = &m->param[i];
		size_t a = TN_MAX(p->offset, lo), b = TN_MIN(p->offset + p->numel, hi);
		if (a < b && (p->split != TN_TP_WHOLE || m->tp_rank == 0))
			ss += m->be->sumsq_forward(m->grads + a, b - a);
	}
	return ss;
}

/* The global gradient norm, over what this rank holds summed over ranks:
 * with TP over the TP group, and with ZeRO over the DP group too. */
static int global_grad_norm(struct tn_optim *opt, const struct tn_model *m, double *norm)
{
	if (m->tp) {
		int z = opt->zero > 0;
		double ss = part_sumsq(m, z ? opt->lo : 0, z ? opt->hi : m->n_floats);
		int rc = tn_comm_allreduce_f64(m->tp, &ss, 1);
		if (!rc && z)
			rc = tn_comm_allreduce_f64(opt->comm, &ss, 1);
		*norm = sqrt(ss);
		return rc;
	}
	if (!opt->zero) {
		*norm = tn_optim_grad_norm(m);
		return TN_OK;
	}
	double ss = m->be->sumsq_forward(m->grads + opt->lo, opt->hi - opt->lo);
	int rc = tn_comm_allreduce_f64(opt->comm, &ss, 1);
	*norm = sqrt(ss);
	return rc;
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

/* Clip by the global norm, update this rank's shard, gather, advance the step. */
static int update(struct tn_optim *opt, struct tn_model *m, double norm, double lr)
{
	float gscale = opt->o.clip > 0 && norm > opt->o.clip ? (float)(opt->o.clip / norm) : 1.0f;
	int64_t t = opt->step + 1;
	float bc1 = (float)(1.0 - pow(opt->o.beta1, (double)t));
	float bc2 = (float)(1.0 - pow(opt->o.beta2, (double)t));
	struct tn_adamw_seg *seg = tn_malloc(m->n_param * sizeof(*seg) + 1);
	if (!seg)
		return TN_ENOMEM;
	for (size_t i = 0; i < m->n_param; i++) {
		const struct tn_param *p = &m->param[i];
		int decay = p->decay || (p->role == TN_P_EMB && opt->o.decay_embedding);
		seg[i] = (struct tn_adamw_seg){p->offset, p->numel,
					       decay ? (float)opt->o.weight_decay : 0.0f};
	}
	struct tn_adamw_args args = {(float)lr, (float)opt->o.beta1, (float)opt->o.beta2,
				     (float)opt->o.eps, gscale, bc1, bc2};
	/* one pass over this rank's shard [lo, hi) */
	m->be->adamw_fused(m->params, m->grads, opt->m, opt->v, opt->lo, opt->hi, seg, m->n_param,
			   &args);
	free(seg);
	opt->step = t;
	return opt->zero ? tn_comm_allgather_inplace(opt->comm, m->params, opt->shard) : TN_OK;
}

int tn_optim_step_checked(struct tn_optim *opt, struct tn_model *m, double loss,
			  enum tn_on_nan on_nan, double *grad_norm, double *lr, int *skipped)
{
	double norm = 0;
	int rc = reduce_grads(opt, m);
	if (!rc)
		rc = global_grad_norm(opt, m, &norm);
	if (rc)
		return rc;
	*grad_norm = isnan(norm) ? NAN : norm; /* "nan" when printed, whatever its sign */
	*lr = tn_optim_lr(&opt->o, opt->step);
	*skipped = !isfinite(loss) || !isfinite(norm);
	if (!*skipped)
		return update(opt, m, norm, *lr);
	if (on_nan == TN_NAN_SKIP)
		return TN_OK;
	double bad = isfinite(loss) ? norm : loss;
	return tn_fail(TN_EDATA, "step %lld: the %s is %g", (long long)opt->step + 1,
		       isfinite(loss) ? "gradient norm" : "loss", isnan(bad) ? fabs(bad) : bad);
}

int tn_optim_step(struct tn_optim *opt, struct tn_model *m, double *grad_norm, double *lr)
{
	int skipped;
	return tn_optim_step_checked(opt, m, 0.0, TN_NAN_STOP, grad_norm, lr, &skipped);
}
