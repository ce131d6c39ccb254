/* ops_lrpe.cu - head split with LRPE, its backward, and the head merge.
 * Angles and their cos/sin in double, rounded to fp32, as on the CPU; the
 * gradient of theta is one block per (head, channel), summed in double.
 * The mixed-precision forms also write a bf16 twin of the output. */
#include "cuda_common.h"
#include "ops_bf16.h"
#include "ops_cuda.h"
#include "reduce.cuh"

__device__ static size_t head_row(int b, int h, int t, int H, int n, int dk)
{
	return (((size_t)b * H + h) * n + t) * dk;
}

/* Where element i of the rows [B*n, H*hd] sits: row, channel e = h*hd + c,
 * sequence b and position t. */
struct elem {
	size_t row;
	int e, h, c, b, t;
};

__device__ static struct elem locate(size_t i, int n, int H, int hd)
{
	struct elem x;
	int E = H * hd;
	x.row = i / E;
	x.e = (int)(i % E);
	x.h = x.e / hd;
	x.c = x.e % hd;
	x.b = (int)(x.row / n);
	x.t = (int)(x.row % n);
	return x;
}

__global__ static void lrpe_fwd(float *out, bf16 *out16, const float *inp, const float *theta,
				const int32_t *pos, int B, int n, int H, int hd)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	int dk = theta ? 2 * hd : hd;
	if (i >= (size_t)B * n * H * hd)
		return;
	struct elem x = locate(i, n, H, hd);
	int e = x.e, c = x.c, t = x.t;
	size_t row = x.row;
	float v = inp[i];
	size_t o = head_row(x.b, x.h, t, H, n, dk);
	if (!theta) {
		out[o + c] = v;
		put16(out16, o + c, v);
		return;
	}
	double a = (double)theta[e] * (pos ? pos[row] : t);
	float vc = v * (float)cos(a), vs = v * (float)sin(a);
	out[o + c] = vc;
	out[o + hd + c] = vs;
	put16(out16, o + c, vc);
	put16(out16, o + hd + c, vs);
}

__global__ static void lrpe_bwd(float *dinp, bf16 *dinp16, const float *dout, const float *theta,
				const int32_t *pos, int B, int n, int H, int hd)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	int dk = theta ? 2 * hd : hd;
	if (i >= (size_t)B * n * H * hd)
		return;
	struct elem x = locate(i, n, H, hd);
	int e = x.e, c = x.c, t = x.t;
	size_t row = x.row;
	const float *g = dout + head_row(x.b, x.h, t, H, n, dk);
	float v = g[c];
	if (theta) {
		double a = (double)theta[e] * (pos ? pos[row] : t);
		v = g[c] * (float)cos(a) + g[hd + c] * (float)sin(a);
	}
	dinp[i] = v;
	put16(dinp16, i, v);
}

/* One block per (h, c): dtheta += sum over rows of p x (-sin(a) g_cos + cos(a) g_sin). */
__global__ static void lrpe_dtheta(float *dtheta, const float *dout, const float *inp,
				   const float *theta, const int32_t *pos, int B, int n, int H,
				   int hd)
{
	int e = blockIdx.x, h = e / hd, c = e % hd, E = H * hd;
	double acc = 0;
	for (size_t row = threadIdx.x; row < (size_t)B * n; row += blockDim.x) {
		int b = (int)(row / n), t = (int)(row % n);
		double p = pos ? pos[row] : t, a = (double)theta[e] * p;
		const float *g = dout + head_row(b, h, t, H, n, 2 * hd);
		acc += p * inp[row * E + e] * (-sin(a) * g[c] + cos(a) * g[hd + c]);
	}
	acc = block_sum(acc);
	if (threadIdx.x == 0)
		dtheta[e] += (float)acc;
}

__global__ static void merge(float *out, const float *inp, int B, int n, int H, int hd)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= (size_t)B * n * H * hd)
		return;
	struct elem x = locate(i, n, H, hd);
	out[i] = inp[head_row(x.b, x.h, x.t, H, n, hd) + x.c];
}

void lrpe_forward_cuda(float *out, const float *inp, const float *theta, const int32_t *pos,
		       int B, int n, int H, int hd)
{
	lrpe_forward_twin(out, NULL, inp, theta, pos, B, n, H, hd);
}

void lrpe_forward_twin(float *out, bf16 *out16, const float *inp, const float *theta,
		       const int32_t *pos, int B, int n, int H, int hd)
{
	struct tn_cuda *cu = tn_cuda_get();
	size_t total = (size_t)B * n * H * hd;
	if (!cu || total == 0)
		return;
	lrpe_fwd<<<TN_CUDA_BLOCKS(total), 256, 0, cu->stream>>>(out, out16, inp, theta, pos, B, n,
								H, hd);
	TN_CUDA_CHECK_LAUNCH("lrpe_forward");
}

void lrpe_backward_cuda(float *dinp, float *dtheta, const float *dout, const float *inp,
			const float *theta, const int32_t *pos, int B, int n, int H, int hd)
{
	lrpe_backward_twin(dinp, NULL, dtheta, dout, inp, theta, pos, B, n, H, hd);
}

void lrpe_backward_twin(float *dinp, bf16 *dinp16, float *dtheta, const float *dout,
			const float *inp, const float *theta, const int32_t *pos, int B, int n,
			int H, int hd)
{
	struct tn_cuda *cu = tn_cuda_get();
	size_t total = (size_t)B * n * H * hd;
	if (!cu || total == 0)
		return;
	lrpe_bwd<<<TN_CUDA_BLOCKS(total), 256, 0, cu->stream>>>(dinp, dinp16, dout, theta, pos, B,
								n, H, hd);
	TN_CUDA_CHECK_LAUNCH("lrpe_backward");
	if (!theta || !dtheta)
		return;
	lrpe_dtheta<<<H * hd, 256, 0, cu->stream>>>(dtheta, dout, inp, theta, pos, B, n, H, hd);
	TN_CUDA_CHECK_LAUNCH("lrpe_backward theta");
}

void heads_merge_cuda(float *out, const float *inp, int B, int n, int H, int hd)
{
	struct tn_cuda *cu = tn_cuda_get();
	size_t total = (size_t)B * n * H * hd;
	if (!cu || total == 0)
		return;
	merge<<<TN_CUDA_BLOCKS(total), 256, 0, cu->stream>>>(out, inp, B, n, H, hd);
	TN_CUDA_CHECK_LAUNCH("heads_merge");
}
