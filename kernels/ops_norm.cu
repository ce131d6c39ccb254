/* ops_norm.cu - SRMSNorm forward and backward, and the fused ops around it
 * (residual + norm; merge + norm + gate and its backward), one warp per
 * row, the row statistics in double as in the CPU reference (eps 1e-6);
 * the mixed precision forms also write a bf16 twin of the output, or only
 * that where it is an operand. */
#include "cuda_common.h"
#include "ops_bf16.h"
#include "ops_cuda.h"
#include "reduce.cuh"

#define SRMS_EPS 1e-6

/* One warp per row, ROWS rows per block: no block-wide barrier, and a
 * warp re-reads its row from L1 for the second pass. */
#define ROWS 8

/* 1 / rms of a row from each lane's part of its sum of squares. */
static __device__ inline float row_rstd(double ss, int C)
{
	return (float)(1.0 / sqrt(warp_sum(ss) / C + SRMS_EPS));
}

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
	float r = row_rstd(ss, C);
	if (lane == 0)
		rstd[row] = r;
	for (int j = lane; j < C; j += 32)
		put(out, out16, (size_t)row * C + j, x[j] * r);
}

__global__ static void srms_bwd(float *dinp, bf16 *dinp16, const float *dout, const float *out,
				const bf16 *out16, const float *rstd, int N, int C)
{
	int r0 = blockIdx.x * ROWS + threadIdx.x / 32, lane = threadIdx.x % 32;
	if (r0 >= N)
		return;
	size_t row = (size_t)r0 * C;
	double dot = 0;
	for (int j = lane; j < C; j += 32)
		dot += (double)get(out, out16, row + j) * dout[row + j];
	float mean = (float)(warp_sum(dot) / C), r = rstd[r0];
	for (int j = lane; j < C; j += 32) {
		float y = get(out, out16, row + j);
		float v = dinp[row + j] + r * (dout[row + j] - y * mean);
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
	srmsnorm_backward_twin(dinp, NULL, dout, out, NULL, rstd, N, C);
}

void srmsnorm_backward_twin(float *dinp, bf16 *dinp16, const float *dout, const float *out,
			    const bf16 *out16, const float *rstd, int N, int C)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu || N == 0)
		return;
	srms_bwd<<<(N + ROWS - 1) / ROWS, 32 * ROWS, 0, cu->stream>>>(dinp, dinp16, dout, out, out16,
								    rstd, N, C);
	TN_CUDA_CHECK_LAUNCH("srmsnorm_backward");
}

/* ---- fused ---- */

__global__ static void resid_norm(float *sum, float *out, bf16 *out16, float *rstd,
				  const float *a, const float *b, int N, int C)
{
	int row = blockIdx.x * ROWS + threadIdx.x / 32, lane = threadIdx.x % 32;
	if (row >= N)
		return;
	size_t r0 = (size_t)row * C;
	double ss = 0;
	for (int j = lane; j < C; j += 32) {
		float v = a[r0 + j] + b[r0 + j];
		sum[r0 + j] = v;
		ss += (double)v * v;
	}
	float r = row_rstd(ss, C);
	if (lane == 0)
		rstd[row] = r;
	__syncwarp();
	for (int j = lane; j < C; j += 32)
		put(out, out16, r0 + j, sum[r0 + j] * r);
}

/* Element j of row `row` of the head-major [B, H, n, hd] tensor x. */
static __device__ inline size_t head_at(int row, int j, int n, int H, int hd)
{
	int b = row / n, t = row % n, h = j / hd;
	return (((size_t)b * H + h) * n + t) * hd + (j - h * hd);
}

__global__ static void merge_norm_gate(float *on, float *rstd, float *z, bf16 *z16,
				       const float *oh, const bf16 *oh16, const float *u, int N, int n, int H,
				       int hd)
{
	int row = blockIdx.x * ROWS + threadIdx.x / 32, lane = threadIdx.x % 32, E = H * hd;
	if (row >= N)
		return;
	double ss = 0;
	for (int j = lane; j < E; j += 32) {
		float v = get(oh, oh16, head_at(row, j, n, H, hd));
		ss += (double)v * v;
	}
	float r = row_rstd(ss, E);
	if (lane == 0)
		rstd[row] = r;
	size_t r0 = (size_t)row * E;
	for (int j = lane; j < E; j += 32) {
		float v = get(oh, oh16, head_at(row, j, n, H, hd)) * r;
		on[r0 + j] = v;
		put(z, z16, r0 + j, u[r0 + j] * v);
	}
}

__global__ static void gate_norm_split(float *du, bf16 *du16, float *doh, bf16 *doh16,
				       const float *dz, const float *u, const float *on,
				       const float *rstd, int N, int n, int H, int hd)
{
	int row = blockIdx.x * ROWS + threadIdx.x / 32, lane = threadIdx.x % 32, E = H * hd;
	if (row >= N)
		return;
	size_t r0 = (size_t)row * E;
	double dot = 0;
	for (int j = lane; j < E; j += 32) {
		float g = dz[r0 + j], y = on[r0 + j];
		put(du, du16, r0 + j, g * y);
		dot += (double)y * (g * u[r0 + j]);
	}
	float mean = (float)(warp_sum(dot) / E), r = rstd[row];
	for (int j = lane; j < E; j += 32)
		put(doh, doh16, head_at(row, j, n, H, hd),
		    r * (dz[r0 + j] * u[r0 + j] - on[r0 + j] * mean));
}

#define ROW_GRID(N) (unsigned)(((N) + ROWS - 1) / ROWS), 32 * ROWS

void residual_norm_forward_cuda(float *sum, float *out, float *rstd, const float *a,
				const float *b, int N, int C)
{
	residual_norm_forward_twin(sum, out, NULL, rstd, a, b, N, C);
}

void residual_norm_forward_twin(float *sum, float *out, bf16 *out16, float *rstd,
				const float *a, const float *b, int N, int C)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu || N == 0)
		return;
	resid_norm<<<ROW_GRID(N), 0, cu->stream>>>(sum, out, out16, rstd, a, b, N, C);
	TN_CUDA_CHECK_LAUNCH("residual_norm_forward");
}

void merge_norm_gate_forward_cuda(float *on, float *rstd, float *z, const float *oh,
				  const float *u, int B, int n, int H, int hd)
{
	merge_norm_gate_twin(on, rstd, z, NULL, oh, NULL, u, B, n, H, hd);
}

void merge_norm_gate_twin(float *on, float *rstd, float *z, bf16 *z16, const float *oh,
			  const bf16 *oh16, const float *u, int B, int n, int H, int hd)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu || B * n == 0)
		return;
	merge_norm_gate<<<ROW_GRID(B * n), 0, cu->stream>>>(on, rstd, z, z16, oh, oh16, u,
								  B * n, n, H, hd);
	TN_CUDA_CHECK_LAUNCH("merge_norm_gate_forward");
}

void gate_norm_split_backward_cuda(float *du, float *doh, const float *dz, const float *u,
				   const float *on, const float *rstd, int B, int n, int H, int hd)
{
	gate_norm_split_twin(du, NULL, doh, NULL, dz, u, on, rstd, B, n, H, hd);
}

void gate_norm_split_twin(float *du, bf16 *du16, float *doh, bf16 *doh16, const float *dz,
			  const float *u, const float *on, const float *rstd, int B, int n, int H,
			  int hd)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu || B * n == 0)
		return;
	gate_norm_split<<<ROW_GRID(B * n), 0, cu->stream>>>(du, du16, doh, doh16, dz, u, on, rstd,
							       B * n, n, H, hd);
	TN_CUDA_CHECK_LAUNCH("gate_norm_split_backward");
}
