/* ops_norm.c - SRMSNorm (parameter-free RMS norm, eps 1e-6), forward and
 * backward. Statistics in double: one row is at most a few thousand wide,
 * and double keeps the fp32 result independent of the summation order. */
#include "ops.h"

#include <math.h>

#define SRMS_EPS 1e-6

void srmsnorm_forward(float *out, float *rstd, const float *inp, int N, int C)
{
#pragma omp parallel for schedule(static) if ((size_t)N * C > TN_OMP_MIN)
	for (int i = 0; i < N; i++) {
		const float *x = inp + (size_t)i * C;
		double ss = 0;
		for (int j = 0; j < C; j++)
			ss += (double)x[j] * x[j];
		float r = (float)(1.0 / sqrt(ss / C + SRMS_EPS));
		rstd[i] = r;
		for (int j = 0; j < C; j++)
			out[(size_t)i * C + j] = x[j] * r;
	}
}

void srmsnorm_backward(float *dinp, const float *dout, const float *out, const float *rstd,
		       int N, int C)
{
#pragma omp parallel for schedule(static) if ((size_t)N * C > TN_OMP_MIN)
	for (int i = 0; i < N; i++) {
		const float *dy = dout + (size_t)i * C, *y = out + (size_t)i * C;
		double dot = 0;
		for (int j = 0; j < C; j++)
			dot += (double)y[j] * dy[j];
		float mean = (float)(dot / C);
		for (int j = 0; j < C; j++)
			dinp[(size_t)i * C + j] += rstd[i] * (dy[j] - y[j] * mean);
	}
}
