/* ops_lrpe.cu - head split with LRPE, its backward, and the head merge.
 * Angles and their cos/sin in double, rounded to fp32, as on the CPU.
 * A block is one head: its threads x over the head's channels, W = 8 at a
 * time where hd allows (16- and 32-byte loads and stores, whole rows of a
 * head coalesced), y over positions t; each thread walks the B sequences
 * at its (t, channels), so cos/sin are taken once per position, not once
 * per row. The gradient of theta is summed in fp32 per thread (its few
 * rows, as the CPU sums every row), then in double over a block's threads
 * and over the blocks in a fixed order (no atomics).
 * The mixed-precision forms also write a bf16 twin of the output (or only
 * it); the fused forms apply the q/k feature map first. */
#include <limits.h>
#include <math.h>
#include <stdint.h>

#include "cuda_common.h"
#include "ops_bf16.h"
#include "ops_cuda.h"

extern "C" {
#include "util.h"
}

__device__ static size_t head_row(int b, int h, int t, int H, int n, int dk)
{
	return (((size_t)b * H + h) * n + t) * dk;
}

/* cos and sin of theta[k] * p, k < W, when p differs from *last. */
template <int W>
__device__ static void angles(const float *theta, int p, int *last, float *cs, float *sn)
{
	if (p == *last)
		return;
	*last = p;
	for (int k = 0; k < W; k++) {
		double s, c;
		sincos((double)theta[k] * p, &s, &c);
		cs[k] = (float)c;
		sn[k] = (float)s;
	}
}

template <int W>
__global__ static void lrpe_fwd(float *out, bf16 *out16, const float *inp, const float *theta,
				const int32_t *pos, int B, int n, int H, int hd, int act)
{
	int h = blockIdx.x, c0 = threadIdx.x * W, E = H * hd, dk = theta ? 2 * hd : hd;
	const float *th = theta ? theta + h * hd + c0 : NULL;
	for (int t = blockIdx.y * blockDim.y + threadIdx.y; t < n; t += gridDim.y * blockDim.y) {
		int last = INT_MIN;
		float cs[W], sn[W], v[W], a[W];
		for (int b = 0; b < B; b++) {
			size_t row = (size_t)b * n + t, o = head_row(b, h, t, H, n, dk) + c0;
			getw<W>(inp, NULL, row * E + h * hd + c0, v);
			for (int k = 0; k < W; k++)
				v[k] = act_value(v[k], act);
			if (!th) {
				putw<W>(out, out16, o, v);
				continue;
			}
			angles<W>(th, pos ? pos[row] : t, &last, cs, sn);
			for (int k = 0; k < W; k++)
				a[k] = v[k] * cs[k];
			putw<W>(out, out16, o, a);
			for (int k = 0; k < W; k++)
				a[k] = v[k] * sn[k];
			putw<W>(out, out16, o + hd, a);
		}
	}
}

/* dinp = act'(inp) * (g_cos cos + g_sin sin) (or g without LRPE); with
 * part, each block also writes its sum over its rows of the theta gradient
 * p act(inp) (-sin g_cos + cos g_sin) to part[blockIdx.y, E]. */
template <int W>
__global__ static void lrpe_bwd(float *dinp, bf16 *dinp16, double *part, const float *dout,
				const bf16 *dout16, const float *inp, const float *theta,
				const int32_t *pos, int B, int n, int H, int hd, int act)
{
	extern __shared__ double red[];
	int h = blockIdx.x, c0 = threadIdx.x * W, E = H * hd, dk = theta ? 2 * hd : hd;
	const float *th = theta ? theta + h * hd + c0 : NULL;
	float acc[W] = {0};
	for (int t = blockIdx.y * blockDim.y + threadIdx.y; t < n; t += gridDim.y * blockDim.y) {
		int last = INT_MIN;
		float cs[W], sn[W], g0[W], g1[W], x[W], d[W];
		for (int b = 0; b < B; b++) {
			size_t row = (size_t)b * n + t, g = head_row(b, h, t, H, n, dk) + c0,
			       i = row * E + h * hd + c0;
			int p = pos ? pos[row] : t;
			getw<W>(dout, dout16, g, g0);
			if (inp)
				getw<W>(inp, NULL, i, x);
			if (th) {
				getw<W>(dout, dout16, g + hd, g1);
				angles<W>(th, p, &last, cs, sn);
			}
			for (int k = 0; k < W; k++) {
				float v = th ? g0[k] * cs[k] + g1[k] * sn[k] : g0[k];
				d[k] = act == TN_ACT_NONE ? v : v * act_slope(x[k], act);
				if (part)
					acc[k] += p * act_value(x[k], act) * (cs[k] * g1[k] - sn[k] * g0[k]);
			}
			putw<W>(dinp, dinp16, i, d);
		}
	}
	if (!part)
		return;
	int me = (threadIdx.y * blockDim.x + threadIdx.x) * W;
	for (int k = 0; k < W && blockDim.y > 1; k++)
		red[me + k] = acc[k];
	__syncthreads();
	if (threadIdx.y != 0)
		return;
	for (int k = 0; k < W; k++) {
		double sum = acc[k];
		for (int y = 1; y < (int)blockDim.y; y++)
			sum += red[(y * blockDim.x + threadIdx.x) * W + k];
		part[(size_t)blockIdx.y * E + h * hd + c0 + k] = sum;
	}
}

/* dtheta[e] += the sum of the blocks' parts, in block order. */
__global__ static void dtheta_sum(float *dtheta, const double *part, int parts, int E)
{
	int e = blockIdx.x * blockDim.x + threadIdx.x;
	if (e >= E)
		return;
	double s = 0;
	for (int y = 0; y < parts; y++)
		s += part[(size_t)y * E + e];
	dtheta[e] += (float)s;
}

/* The theta gradient's per-block parts: one stream, so one buffer serves
 * every call; a call splits its positions over at most PARTS blocks. */
#define PARTS 64
#define PART_MAX (PARTS * 8192)
__device__ static double dtheta_part[PART_MAX];

/* The launch shape of one head per block.x: W channels per thread, the
 * widest of wide (8: the pointers allow vectors, else 1), 4 and 1 that
 * divides hd; y positions per block, 256 threads in all. */
struct shape {
	int w;
	dim3 block;
	unsigned t_blocks; /* blocks over the positions to cover them once */
};

static int shape_of(struct shape *s, int n, int hd, int wide)
{
	s->w = hd % wide == 0 ? wide : hd % 4 == 0 && wide > 4 ? 4 : 1;
	unsigned x = (unsigned)(hd / s->w), y = x >= 256 ? 1 : 256 / x;
	s->block = dim3(x, y);
	s->t_blocks = (unsigned)((n + y - 1) / y);
	if (x <= 1024)
		return 1;
	tn_cuda_note(cudaErrorInvalidConfiguration, "lrpe: a head of over 1024 threads' channels");
	return 0;
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
	struct shape s;
	if (!cu || (size_t)B * n * H * hd == 0 ||
	    !shape_of(&s, n, hd, tn_vec8(out) && tn_vec8(out16) && tn_vec8(inp) ? 8 : 1))
		return;
	dim3 grid((unsigned)H, TN_MIN(s.t_blocks, 65535u));
	auto *kernel = s.w == 8 ? lrpe_fwd<8> : s.w == 4 ? lrpe_fwd<4> : lrpe_fwd<1>;
	kernel<<<grid, s.block, 0, cu->stream>>>(out, out16, inp, theta, pos, B, n, H, hd, act);
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
	struct shape s;
	int E = H * hd;
	if (!cu || (size_t)B * n * E == 0 ||
	    !shape_of(&s, n, hd, tn_vec8(dinp) && tn_vec8(dinp16) && tn_vec8(dout) &&
					 tn_vec8(dout16) && tn_vec8(inp) ? 8 : 1))
		return;
	double *part = NULL;
	unsigned parts = TN_MIN(s.t_blocks, 65535u);
	if (theta && dtheta) {
		parts = TN_MIN(TN_MIN(parts, (unsigned)PARTS), (unsigned)(PART_MAX / E));
		tn_cuda_note(parts ? cudaGetSymbolAddress((void **)&part, dtheta_part)
				   : cudaErrorInvalidValue,
			     "lrpe_backward theta parts");
		if (!part)
			return;
	}
	dim3 grid((unsigned)H, parts);
	size_t shared = part && s.block.y > 1 ? (size_t)s.block.x * s.block.y * s.w * sizeof(double) : 0;
	auto *kernel = s.w == 8 ? lrpe_bwd<8> : s.w == 4 ? lrpe_bwd<4> : lrpe_bwd<1>;
	kernel<<<grid, s.block, shared, cu->stream>>>(dinp, dinp16, part, dout, dout16, inp, theta,
						      pos, B, n, H, hd, act);
	TN_CUDA_CHECK_LAUNCH("lrpe_backward");
	if (!part)
		return;
	dtheta_sum<<<TN_CUDA_BLOCKS(E), 256, 0, cu->stream>>>(dtheta, part, (int)parts, E);
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
