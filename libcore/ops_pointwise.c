/* ops_pointwise.c - elementwise ops: the q/k feature map (SiLU, ReLU or
 * identity), the product used by the output gate and by SGLU, and the
 * residual add. Backward of the feature map recomputes from its input. */
#include "ops.h"

#include <math.h>

static float silu(float x) { return x / (1.0f + expf(-x)); }

void act_forward(float *out, const float *inp, size_t n, enum tn_act act)
{
#pragma omp parallel for schedule(static) if (n > TN_OMP_MIN)
	for (size_t i = 0; i < n; i++) {
		float x = inp[i];
		out[i] = act == TN_ACT_SILU ? silu(x) : act == TN_ACT_RELU ? (x > 0 ? x : 0) : x;
	}
}

void act_backward(float *dinp, const float *dout, const float *inp, size_t n, enum tn_act act)
{
#pragma omp parallel for schedule(static) if (n > TN_OMP_MIN)
	for (size_t i = 0; i < n; i++) {
		float x = inp[i], g;
		if (act == TN_ACT_SILU) {
			float sg = 1.0f / (1.0f + expf(-x));
			g = sg * (1.0f + x * (1.0f - sg));
		} else {
			g = act == TN_ACT_RELU ? (x > 0) : 1.0f;
		}
		dinp[i] = dout[i] * g;
	}
}

void gate_forward(float *out, const float *a, const float *b, size_t n)
{
#pragma omp parallel for schedule(static) if (n > TN_OMP_MIN)
	for (size_t i = 0; i < n; i++)
		out[i] = a[i] * b[i];
}

void gate_backward(float *da, float *db, const float *dout, const float *a, const float *b,
		   size_t n)
{
#pragma omp parallel for schedule(static) if (n > TN_OMP_MIN)
	for (size_t i = 0; i < n; i++) {
		da[i] = dout[i] * b[i];
		db[i] = dout[i] * a[i];
	}
}

void residual_forward(float *out, const float *a, const float *b, size_t n)
{
#pragma omp parallel for schedule(static) if (n > TN_OMP_MIN)
	for (size_t i = 0; i < n; i++)
		out[i] = a[i] + b[i];
}
