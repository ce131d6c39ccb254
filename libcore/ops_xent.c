/* ops_xent.c - tied LM head, softmax and cross-entropy. The forward keeps
 * the logits' gradient softmax - onehot for every row ([R, V] floats, the
 * logits' own memory, overwritten row by row), unscaled, so the backward is
 * two products with the scale as their alpha: three products of [R, V] a
 * step, no recomputed logits. The memory is the price: R x V floats, about
 * what one layer's activations take per row at a 64K vocabulary. */
#include "ops.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

size_t tn_xent_scratch(int R, int V)
{
	return (size_t)R * (size_t)V;
}

/* One row of logits l[V] into softmax - onehot in place; its loss. */
static float row_grad(float *l, int V, int32_t target)
{
	if (target < 0) {
		memset(l, 0, (size_t)V * sizeof(float));
		return 0.0f;
	}
	float m = l[0], lt = l[target];
	for (int j = 1; j < V; j++)
		m = l[j] > m ? l[j] : m;
	double s = 0;
	for (int j = 0; j < V; j++) {
		l[j] = expf(l[j] - m);
		s += l[j];
	}
	float inv = (float)(1.0 / s);
	for (int j = 0; j < V; j++)
		l[j] *= inv;
	l[target] -= 1.0f;
	return (float)((double)m + log(s) - lt);
}

void crossentropy_forward(float *loss, const float *x, const float *emb, const int32_t *target,
			  int R, int C, int V, float *scratch)
{
	matmul_forward(scratch, x, emb, R, C, V, 0);
#pragma omp parallel for schedule(static) if ((size_t)R * V > TN_OMP_MIN)
	for (int i = 0; i < R; i++)
		loss[i] = row_grad(scratch + (size_t)i * V, V, target[i]);
}

void crossentropy_backward(float *dx, float *demb, const float *x, const float *emb, float scale,
			   int R, int C, int V, const float *scratch)
{
	/* dx[R, C] = scale G E; demb[V, C] += scale G^T x */
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, R, C, V, scale, scratch, V, emb, C,
		    0.0f, dx, C);
	cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, V, C, R, scale, scratch, V, x, C, 1.0f,
		    demb, C);
}
