/* ops_adamw.c - the optimizer's ops: AdamW (decoupled weight decay, bias
 * correction), per tensor and over a table of tensors (the fused form; on
 * the CPU simply the per-tensor loop), and the sum of squares behind
 * global-norm clipping. The sum is taken in fixed blocks of doubles,
 * combined in block order, so a run gives the same norm bit for bit on any
 * number of threads (exact resume). */
#include "ops.h"

#include <math.h>
#include <stdlib.h>

#define SUMSQ_BLOCK 65536

double sumsq_forward(const float *x, size_t n)
{
	size_t nb = (n + SUMSQ_BLOCK - 1) / SUMSQ_BLOCK;
	double part[256], total = 0;
	for (size_t b0 = 0; b0 < nb; b0 += 256) {
		size_t cnt = nb - b0 < 256 ? nb - b0 : 256;
#pragma omp parallel for schedule(static) if (cnt * SUMSQ_BLOCK > TN_OMP_MIN)
		for (size_t b = 0; b < cnt; b++) {
			size_t lo = (b0 + b) * SUMSQ_BLOCK, hi = lo + SUMSQ_BLOCK;
			double s = 0;
			for (size_t i = lo; i < hi && i < n; i++)
				s += (double)x[i] * x[i];
			part[b] = s;
		}
		for (size_t b = 0; b < cnt; b++)
			total += part[b];
	}
	return total;
}

void adamw_update(float *p, const float *g, float *m, float *v, size_t n, float lr,
		  float beta1, float beta2, float eps, float wd, float gscale, float bc1,
		  float bc2)
{
#pragma omp parallel for schedule(static) if (n > TN_OMP_MIN)
	for (size_t i = 0; i < n; i++) {
		float gi = g[i] * gscale;
		m[i] = beta1 * m[i] + (1.0f - beta1) * gi;
		v[i] = beta2 * v[i] + (1.0f - beta2) * gi * gi;
		float mh = m[i] / bc1, vh = v[i] / bc2;
		p[i] -= lr * (mh / (sqrtf(vh) + eps) + wd * p[i]);
	}
}

void adamw_fused(float *p, const float *g, float *m, float *v, size_t lo, size_t hi,
		 const struct tn_adamw_seg *seg, size_t n_seg, const struct tn_adamw_args *a)
{
	for (size_t i = 0; i < n_seg; i++) {
		size_t x = seg[i].offset > lo ? seg[i].offset : lo;
		size_t y = seg[i].offset + seg[i].numel < hi ? seg[i].offset + seg[i].numel : hi;
		if (x < y)
			adamw_update(p + x, g + x, m + (x - lo), v + (x - lo), y - x, a->lr, a->beta1,
				     a->beta2, a->eps, seg[i].wd, a->gscale, a->bc1, a->bc2);
	}
}
