/* ops_lrpe.cu - head split with LRPE, its backward, and the head merge.
 * Angles and their cos/sin in double, rounded to fp32, as on the CPU; the
 * gradient of theta is one block per (head, channel), summed in double.
 * The mixed-precision forms also write a bf16 twin of the output (or only
 * it); the fused forms apply the q/k feature map first. */
#include "cuda_common.h"
#include "ops_bf16.h"
#include "ops_cuda.h"
#include "reduce.cuh"

__device__ static size_t head_row(int b, int h, int t, int H, int n, int dk)
{
	return (((size_t)b * H + h) * n + t) * dk;
}

/* One block per row (position) of the [B*n, H*hd] side, its threads over
 * the channels e = h*hd + c: 32-bit index arithmetic once per element, and
 * both sides read and written in runs of hd consecutive floats. */
__global__ static void lrpe_fwd(float *out, bf16 *out16, const float *inp, const float *theta,
				const int32_t *pos, int n, int H, int hd, int act)
{
	int row = blockIdx.x, b = row / n, t = row % n, E = H * hd, dk = theta ? 2 * hd : hd;
	double p = pos ? pos[row] : t;
	for (int e = threadIdx.x; e < E; e += blockDim.x) {
		int h = e / hd, c = e - h * hd;
		float v = act_value(inp[(size_t)row * E + e], act);
		size_t o = head_row(b, h, t, H, n, dk);
		if (!theta) {
			put(out, out16, o + c, v);
			continue;
		}
		double a = (double)theta[e] * p;
		put(out, out16, o + c, v * (float)cos(a));
		put(out, out16, o + hd + c, v * (float)sin(a));
	}
}

__global__ static void lrpe_bwd(float *dinp, bf16 *dinp16, const float *dout,
				const bf16 *dout16, const float *inp,
				const float *theta, const int32_t *pos, int n, int H, int hd,
				int act)
{
	int row = blockIdx.x, b = row / n, t = row % n, E = H * hd, dk = theta ? 2 * hd : hd;
	double p = pos ? pos[row] : t;
	for (int e = threadIdx.x; e < E; e += blockDim.x) {
		int h = e / hd, c = e - h * hd;
		size_t g = head_row(b, h, t, H, n, dk) + c;
		float v = get(dout, dout16, g);
		if (theta) {
			double a = (double)theta[e] * p;
			v = v * (float)cos(a) + get(dout, dout16, g + hd) * (float)sin(a);
		}
		size_t i = (size_t)row * E + e;
		put(dinp, dinp16, i, act == TN_ACT_NONE ? v : v * act_slope(inp[i], act));
	}
}

/* One block per (h, c): dtheta += sum over rows of p x (-sin(a) g_cos + cos(a) g_sin). */
__global__ static void lrpe_dtheta(float *dtheta, const float *dout, const bf16 *dout16,
				   const float *inp,
				   const float *theta, const int32_t *pos, int B, int n, int H,
				   int hd, int act)
{
	int e = blockIdx.x, h = e / hd, c = e % hd, E = H * hd;
	double acc = 0;
	for (size_t row = threadIdx.x; row < (size_t)B * n; row += blockDim.x) {
		int b = (int)(row / n), t = (int)(row % n);
		double p = pos ? pos[row] : t, a = (double)theta[e] * p;
		size_t g = head_row(b, h, t, H, n, 2 * hd) + c;
		acc += p * act_value(inp[row * E + e], act) *
		       (-sin(a) * get(dout, dout16, g) + cos(a) * get(dout, dout16, g + hd));
	}
	acc = block_sum(acc);
	if (threadIdx.x == 0)
		dtheta[e] += (float)acc;
}

__global__ static void merge(float *out, const float *inp, int n, int H, int hd)
{
	int row = blockIdx.x, b = row / n, t = row % n, E = H * hd;
	for (int e = threadIdx.x; e < E; e += blockDim.x) {
		int h = e / hd, c = e - h * hd;
		out[(size_t)row * E + e] = inp[head_row(b, h, t, H, n, hd) + c];
	}
}

/* Threads per row block: the channels, rounded up to whole warps, at most 256. */
static unsigned row_threads(int E) { return E >= 256 ? 256 : (unsigned)((E + 31) / 32 * 32); }

void lrpe_forward_cuda(float *out, const float *inp, const float *theta, const int32_t *pos,
		       int B, int n, int H, int hd)
{
	act_lrpe_forward_twin(out, NULL, inp, theta, pos, B, n, H, hd, TN_ACT_NONE);
}

void act_lrpe_forward_cuda(float *out, const float *inp, const float *theta, const int32_t *pos,
			   int B, int n, int H, int hd, enum tn_act act)
{
	act_lrpe_forward_twin(out, NULL, inp, theta, pos, B, n, H, hd, act);
}

void act_lrpe_forward_twin(float *out, bf16 *out16, const float *inp, const float *theta,
			   const int32_t *pos, int B, int n, int H, int hd, int act)
{
	struct tn_cuda *cu = tn_cuda_get();
	size_t total = (size_t)B * n * H * hd;
	if (!cu || total == 0)
		return;
	lrpe_fwd<<<(unsigned)(B * n), row_threads(H * hd), 0, cu->stream>>>(out, out16, inp, theta,
									 pos, n, H, hd, act);
	TN_CUDA_CHECK_LAUNCH("lrpe_forward");
}

void lrpe_backward_cuda(float *dinp, float *dtheta, const float *dout, const float *inp,
			const float *theta, const int32_t *pos, int B, int n, int H, int hd)
{
	act_lrpe_backward_twin(dinp, NULL, dtheta, dout, NULL, inp, theta, pos, B, n, H, hd,
			       TN_ACT_NONE);
}

void act_lrpe_backward_cuda(float *dinp, float *dtheta, const float *dout, const float *inp,
			    const float *theta, const int32_t *pos, int B, int n, int H, int hd,
			    enum tn_act act)
{
	act_lrpe_backward_twin(dinp, NULL, dtheta, dout, NULL, inp, theta, pos, B, n, H, hd, act);
}

void act_lrpe_backward_twin(float *dinp, bf16 *dinp16, float *dtheta, const float *dout,
			    const bf16 *dout16, const float *inp, const float *theta, const int32_t *pos, int B,
			    int n, int H, int hd, int act)
{
	struct tn_cuda *cu = tn_cuda_get();
	size_t total = (size_t)B * n * H * hd;
	if (!cu || total == 0)
		return;
	lrpe_bwd<<<(unsigned)(B * n), row_threads(H * hd), 0, cu->stream>>>(
		dinp, dinp16, dout, dout16, inp, theta, pos, n, H, hd, act);
	TN_CUDA_CHECK_LAUNCH("lrpe_backward");
	if (!theta || !dtheta)
		return;
	lrpe_dtheta<<<H * hd, 256, 0, cu->stream>>>(dtheta, dout, dout16, inp, theta, pos, B, n, H,
						    hd, act);
	TN_CUDA_CHECK_LAUNCH("lrpe_backward theta");
}

void heads_merge_cuda(float *out, const float *inp, int B, int n, int H, int hd)
{
	struct tn_cuda *cu = tn_cuda_get();
	size_t total = (size_t)B * n * H * hd;
	if (!cu || total == 0)
		return;
	merge<<<(unsigned)(B * n), row_threads(H * hd), 0, cu->stream>>>(out, inp, n, H, hd);
	TN_CUDA_CHECK_LAUNCH("heads_merge");
}
