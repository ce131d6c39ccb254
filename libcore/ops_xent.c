/* ops_xent.c - tied LM head, softmax and cross-entropy fused and chunked:
 * rows in blocks of TN_XENT_ROWS, the vocabulary in chunks of
 * TN_XENT_VCHUNK, an online log-sum-exp across chunks. The backward
 * recomputes each chunk's logits from the saved log-sum-exp instead of
 * keeping them, so memory is one block x chunk whatever the batch. */
#include "ops.h"

#include <math.h>
#include <string.h>

size_t tn_xent_scratch(int V)
{
	return (size_t)TN_XENT_ROWS * (size_t)(V < TN_XENT_VCHUNK ? V : TN_XENT_VCHUNK);
}

/* Fold one chunk of logits into the running max m and sum s of each row. */
static void fold_chunk(const float *lg, int rows, int vc, int v0, const int32_t *target,
		       double *m, double *s, float *tlogit)
{
#pragma omp parallel for schedule(static) if ((size_t)rows * vc > TN_OMP_MIN)
	for (int i = 0; i < rows; i++) {
		const float *l = lg + (size_t)i * vc;
		float cm = l[0];
		for (int j = 1; j < vc; j++)
			cm = l[j] > cm ? l[j] : cm;
		double nm = cm > m[i] ? cm : m[i], acc = 0;
		float fm = (float)nm;
		for (int j = 0; j < vc; j++)
			acc += expf(l[j] - fm);
		s[i] = s[i] * exp(m[i] - nm) + acc;
		m[i] = nm;
		if (target[i] >= v0 && target[i] < v0 + vc)
			tlogit[i] = l[target[i] - v0];
	}
}

void crossentropy_forward(float *loss, float *lse, const float *x, const float *emb,
			  const int32_t *target, int R, int C, int V, float *scratch)
{
	double m[TN_XENT_ROWS], s[TN_XENT_ROWS];
	float tl[TN_XENT_ROWS];
	for (int r0 = 0; r0 < R; r0 += TN_XENT_ROWS) {
		int rows = R - r0 < TN_XENT_ROWS ? R - r0 : TN_XENT_ROWS;
		for (int i = 0; i < rows; i++) {
			m[i] = -INFINITY;
			s[i] = 0;
			tl[i] = 0;
		}
		for (int v0 = 0; v0 < V; v0 += TN_XENT_VCHUNK) {
			int vc = V - v0 < TN_XENT_VCHUNK ? V - v0 : TN_XENT_VCHUNK;
			matmul_forward(scratch, x + (size_t)r0 * C, emb + (size_t)v0 * C, rows, C,
				       vc, 0);
			fold_chunk(scratch, rows, vc, v0, target + r0, m, s, tl);
		}
		for (int i = 0; i < rows; i++) {
			double l = m[i] + log(s[i]);
			lse[r0 + i] = (float)l;
			loss[r0 + i] = target[r0 + i] >= 0 ? (float)(l - tl[i]) : 0.0f;
		}
	}
}

/* Logits of one chunk into softmax gradients, in place. */
static void chunk_grad(float *lg, int rows, int vc, int v0, const int32_t *target,
		       const float *lse, float scale)
{
#pragma omp parallel for schedule(static) if ((size_t)rows * vc > TN_OMP_MIN)
	for (int i = 0; i < rows; i++) {
		float *l = lg + (size_t)i * vc;
		if (target[i] < 0) {
			memset(l, 0, (size_t)vc * sizeof(float));
			continue;
		}
		for (int j = 0; j < vc; j++)
			l[j] = scale * expf(l[j] - lse[i]);
		if (target[i] >= v0 && target[i] < v0 + vc)
			l[target[i] - v0] -= scale;
	}
}

void crossentropy_backward(float *dx, float *demb, const float *x, const float *emb,
			   const int32_t *target, const float *lse, float scale, int R, int C,
			   int V, float *scratch)
{
	memset(dx, 0, (size_t)R * C * sizeof(float));
	for (int r0 = 0; r0 < R; r0 += TN_XENT_ROWS) {
		int rows = R - r0 < TN_XENT_ROWS ? R - r0 : TN_XENT_ROWS;
		const float *xr = x + (size_t)r0 * C;
		for (int v0 = 0; v0 < V; v0 += TN_XENT_VCHUNK) {
			int vc = V - v0 < TN_XENT_VCHUNK ? V - v0 : TN_XENT_VCHUNK;
			const float *e = emb + (size_t)v0 * C;
			matmul_forward(scratch, xr, e, rows, C, vc, 0);
			chunk_grad(scratch, rows, vc, v0, target + r0, lse + r0, scale);
			matmul_backward(dx + (size_t)r0 * C, demb + (size_t)v0 * C, scratch, xr, e,
					rows, C, vc, 1);
		}
	}
}
