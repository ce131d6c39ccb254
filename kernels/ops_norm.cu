/* ops_norm.cu - SRMSNorm forward and backward, one warp per row, the row
 * statistics in double as in the CPU reference (eps 1e-6); the mixed
 * precision forms also write a bf16 twin of the output. */
#include "cuda_common.h"
#include "ops_bf16.h"
#include "ops_cuda.h"
#include "reduce.cuh"

#define SRMS_EPS 1e-6

/* One warp per row, ROWS rows per block: no block-wide barrier, and a
 * warp re-reads its row from L1 for the second pass. */
#define ROWS 8

__global__ static void srms_fwd(float *out, bf16 *out16, float *rstd, const float *inp, int N,
				int C)
{
	int row = blockIdx.x * ROWS + threadIdx.x / 32, lane = threadIdx.x % 32;
	if (row >= N)
		return;
	const float *x = inp + (size_t)row * C;
	double ss = 0;
	for (int j = lane; j < C; j += 32)
		ss += (double)x[j] * x[j];
	ss = warp_sum(ss);
	float r = (float)(1.0 / sqrt(ss / C + SRMS_EPS));
	if (lane == 0)
		rstd[row] = r;
	for (int j = lane; j < C; j += 32) {
		float v = x[j] * r;
		out[(size_t)row * C + j] = v;
		put16(out16, (size_t)row * C + j, v);
	}
}

__global__ static void srms_bwd(float *dinp, bf16 *dinp16, const float *dout, const float *out,
				const float *rstd, int N, int C)
{
	int r0 = blockIdx.x * ROWS + threadIdx.x / 32, lane = threadIdx.x % 32;
	if (r0 >= N)
		return;
	size_t row = (size_t)r0 * C;
	double dot = 0;
	for (int j = lane; j < C; j += 32)
		dot += (double)out[row + j] * dout[row + j];
	float mean = (float)(warp_sum(dot) / C), r = rstd[r0];
	for (int j = lane; j < C; j += 32) {
		float v = dinp[row + j] + r * (dout[row + j] - out[row + j] * mean);
		dinp[row + j] = v;
		put16(dinp16, row + j, v);
	}
}

void srmsnorm_forward_cuda(float *out, float *rstd, const float *inp, int N, int C)
{
	srmsnorm_forward_twin(out, NULL, rstd, inp, N, C);
}

void srmsnorm_forward_twin(float *out, bf16 *out16, float *rstd, const float *inp, int N, int C)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu || N == 0)
		return;
	srms_fwd<<<(N + ROWS - 1) / ROWS, 32 * ROWS, 0, cu->stream>>>(out, out16, rstd, inp, N, C);
	TN_CUDA_CHECK_LAUNCH("srmsnorm_forward");
}

void srmsnorm_backward_cuda(float *dinp, const float *dout, const float *out,
			    const float *rstd, int N, int C)
{
	srmsnorm_backward_twin(dinp, NULL, dout, out, rstd, N, C);
}

void srmsnorm_backward_twin(float *dinp, bf16 *dinp16, const float *dout, const float *out,
			    const float *rstd, int N, int C)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu || N == 0)
		return;
	srms_bwd<<<(N + ROWS - 1) / ROWS, 32 * ROWS, 0, cu->stream>>>(dinp, dinp16, dout, out, rstd,
								    N, C);
	TN_CUDA_CHECK_LAUNCH("srmsnorm_backward");
}
