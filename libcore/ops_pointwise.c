/* ops_pointwise.c - elementwise ops: the q/k feature map (SiLU, ReLU or
 * identity), the product used by the output gate and by SGLU, and the
 * residual add. Backward of the feature map recomputes from its input. */
#include "ops.h"

void act_forward(float *out, const float *inp, size_t n, enum tn_act act)
{
#pragma omp parallel for schedule(static) if (n > TN_OMP_MIN)
	for (size_t i = 0; i < n; i++)
		out[i] = tn_act_value(inp[i], act);
}

void act_backward(float *dinp, const float *dout, const float *inp, size_t n, enum tn_act act)
{
#pragma omp parallel for schedule(static) if (n > TN_OMP_MIN)
	for (size_t i = 0; i < n; i++)
		dinp[i] = dout[i] * tn_act_slope(inp[i], act);
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
