/* ops_norm.c - SRMSNorm (parameter-free RMS norm, eps 1e-6), forward and
 * backward, and the fused ops built around it (residual + norm, the token
 * mixer's merge + norm + gate and its backward). Statistics in double: one row is at most a few thousand wide,
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

/* 1 / rms of the C values at x (stride apart, in runs of `run`: a row
 * seen through the head-major layout), as srmsnorm_forward forms it. */
static float row_rstd(const float *x, int C, int run, size_t stride)
{
	double ss = 0;
	for (int j = 0; j < C; j++) {
		float v = x[(size_t)(j / run) * stride + j % run];
		ss += (double)v * v;
	}
	return (float)(1.0 / sqrt(ss / C + SRMS_EPS));
}

void residual_norm_forward(float *sum, float *out, float *rstd, const float *a, const float *b,
			   int N, int C)
{
#pragma omp parallel for schedule(static) if ((size_t)N * C > TN_OMP_MIN)
	for (int i = 0; i < N; i++) {
		size_t r = (size_t)i * C;
		for (int j = 0; j < C; j++)
			sum[r + j] = a[r + j] + b[r + j];
		rstd[i] = row_rstd(sum + r, C, C, 0);
		for (int j = 0; j < C; j++)
			out[r + j] = sum[r + j] * rstd[i];
	}
}

void merge_norm_gate_forward(float *on, float *rstd, float *z, const float *oh, const float *u,
			     int B, int n, int H, int hd)
{
	int E = H * hd;
	size_t stride = (size_t)n * hd;
#pragma omp parallel for schedule(static) if ((size_t)B * n * E > TN_OMP_MIN)
	for (int i = 0; i < B * n; i++) {
		const float *o = oh + (size_t)(i / n) * H * stride + (size_t)(i % n) * hd;
		size_t r = (size_t)i * E;
		rstd[i] = row_rstd(o, E, hd, stride);
		for (int j = 0; j < E; j++) {
			on[r + j] = o[(size_t)(j / hd) * stride + j % hd] * rstd[i];
			z[r + j] = u[r + j] * on[r + j];
		}
	}
}

void gate_norm_split_backward(float *du, float *doh, const float *dz, const float *u,
			      const float *on, const float *rstd, int B, int n, int H, int hd)
{
	int E = H * hd;
	size_t stride = (size_t)n * hd;
#pragma omp parallel for schedule(static) if ((size_t)B * n * E > TN_OMP_MIN)
	for (int i = 0; i < B * n; i++) {
		size_t r = (size_t)i * E;
		float *d = doh + (size_t)(i / n) * H * stride + (size_t)(i % n) * hd;
		double dot = 0;
		for (int j = 0; j < E; j++) {
			du[r + j] = dz[r + j] * on[r + j];
			dot += (double)on[r + j] * (dz[r + j] * u[r + j]);
		}
		float mean = (float)(dot / E);
		for (int j = 0; j < E; j++)
			d[(size_t)(j / hd) * stride + j % hd] =
				rstd[i] * (dz[r + j] * u[r + j] - on[r + j] * mean);
	}
}
