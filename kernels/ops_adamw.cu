/* ops_adamw.cu - AdamW over the flat parameter buffer (in mixed precision
 * it also writes the parameters' bf16 shadow, so the shadows never go
 * stale), and the sum of squares for global-norm clipping: fixed
 * 65536-element blocks summed in double into a staging buffer, the block
 * sums added on the host in block order, so the result does not depend on
 * scheduling. */
#include <stdlib.h>

#include "cuda_common.h"
#include "ops_bf16.h"
#include "ops_cuda.h"
#include "reduce.cuh"

#define SUMSQ_BLOCK 65536

__global__ static void sumsq_part(double *part, const float *x, size_t n)
{
	size_t lo = (size_t)blockIdx.x * SUMSQ_BLOCK, hi = lo + SUMSQ_BLOCK < n ? lo + SUMSQ_BLOCK : n;
	double s = 0;
	for (size_t i = lo + threadIdx.x; i < hi; i += blockDim.x)
		s += (double)x[i] * x[i];
	s = block_sum(s);
	if (threadIdx.x == 0)
		part[blockIdx.x] = s;
}

double sumsq_forward_cuda(const float *x, size_t n)
{
	struct tn_cuda *cu = tn_cuda_get();
	size_t nb = (n + SUMSQ_BLOCK - 1) / SUMSQ_BLOCK;
	if (!cu || nb == 0)
		return 0;
	double *host = (double *)malloc(nb * sizeof(double)), total = 0;
	double *dev = (double *)tn_cuda_stage(TN_STAGE_SUMSQ, nb * sizeof(double));
	cudaError_t e = host && dev ? cudaSuccess : cudaErrorMemoryAllocation;
	if (e == cudaSuccess) {
		sumsq_part<<<(unsigned)nb, 256, 0, cu->stream>>>(dev, x, n);
		e = cudaGetLastError();
	}
	if (e == cudaSuccess)
		e = cudaMemcpyAsync(host, dev, nb * sizeof(double), cudaMemcpyDeviceToHost, cu->stream);
	if (e == cudaSuccess)
		e = cudaStreamSynchronize(cu->stream);
	tn_cuda_note(e, "sumsq_forward");
	for (size_t b = 0; e == cudaSuccess && b < nb; b++)
		total += host[b];
	free(host);
	return total;
}

__global__ static void adamw(float *p, bf16 *shadow, const float *g, float *m, float *v,
			     size_t n, float lr, float beta1, float beta2, float eps, float wd,
			     float gscale, float bc1, float bc2)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= n)
		return;
	float gi = g[i] * gscale;
	float mi = beta1 * m[i] + (1.0f - beta1) * gi;
	float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
	m[i] = mi;
	v[i] = vi;
	float mh = mi / bc1, vh = vi / bc2;
	float pi = p[i] - lr * (mh / (sqrtf(vh) + eps) + wd * p[i]);
	p[i] = pi;
	if (shadow)
		shadow[i] = __float2bfloat16_rn(pi);
}

static void adamw_launch(float *p, bf16 *shadow, const float *g, float *m, float *v, size_t n,
			 float lr, float beta1, float beta2, float eps, float wd, float gscale,
			 float bc1, float bc2)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu || n == 0)
		return;
	adamw<<<TN_CUDA_BLOCKS(n), 256, 0, cu->stream>>>(p, shadow, g, m, v, n, lr, beta1, beta2,
							 eps, wd, gscale, bc1, bc2);
	TN_CUDA_CHECK_LAUNCH("adamw_update");
}

void adamw_update_cuda(float *p, const float *g, float *m, float *v, size_t n, float lr,
		       float beta1, float beta2, float eps, float wd, float gscale, float bc1,
		       float bc2)
{
	adamw_launch(p, NULL, g, m, v, n, lr, beta1, beta2, eps, wd, gscale, bc1, bc2);
}

void adamw_update_bf16(float *p, const float *g, float *m, float *v, size_t n, float lr,
		       float beta1, float beta2, float eps, float wd, float gscale, float bc1,
		       float bc2)
{
	adamw_launch(p, tn_bf16_shadow_of(p), g, m, v, n, lr, beta1, beta2, eps, wd, gscale, bc1,
		     bc2);
}
