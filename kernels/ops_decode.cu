/* ops_decode.cu - the fused decode ops (libcore/ops_decode.h) on the GPU.
 * A decode step reads every weight once for a handful of rows, so its
 * products are bound by the weight stream, not by arithmetic: each warp
 * streams whole weight rows in 16-byte loads and keeps all the rows' dot
 * products in registers, with the input norm, output gate, SGLU product and
 * residual folded into the same kernel (one launch per product, fp32 inputs
 * and accumulation). Decision: above TN_DMM_ROWS rows the bf16 form hands
 * the product to the tensor cores (cuBLAS) between a prologue and an
 * epilogue kernel, since then arithmetic, not the weight stream, is the
 * bound. The token mixer of one position is one kernel per (head, sequence,
 * 32 state columns). */
#include <math.h>

#include "cuda_common.h"
#include "graph_cuda.h"
#include "ops_cuda.h"
#include "ops_decode_cuda.h"
#include "reduce.cuh"

extern "C" {
#include "util.h"
}

#define SRMS_EPS 1e-6
#define WARPS 8     /* per block of the product kernels */
#define DMM_PASS 8  /* rows per launch of the streaming kernel, at most */

/* The arguments of one launch of the product: rows [0, nr) of a pass. */
struct dmm_args {
	float *out;
	const float *inp, *gate, *res;
	int norm, ldg, nr, C, OC;
};

/* 16 bytes of weights as floats (N of them), streamed past the caches. */
template <typename WT> struct wvec;
template <> struct wvec<float> {
	static constexpr int N = 4;
	static __device__ void load(float *f, const float *p)
	{
		float4 v = __ldcs((const float4 *)p);
		f[0] = v.x, f[1] = v.y, f[2] = v.z, f[3] = v.w;
	}
	static __device__ float one(const float *p) { return *p; }
};
template <> struct wvec<bf16> {
	static constexpr int N = 8;
	static __device__ void load(float *f, const bf16 *p)
	{
		uint4 u = __ldcs((const uint4 *)p);
		const __nv_bfloat162 *h = (const __nv_bfloat162 *)&u;
#pragma unroll
		for (int i = 0; i < 4; i++) {
			float2 t = __bfloat1622float2(h[i]);
			f[2 * i] = t.x, f[2 * i + 1] = t.y;
		}
	}
	static __device__ float one(const bf16 *p) { return __bfloat162float(*p); }
};

/* rstd[r] of each row of the pass (1 without the norm), as srmsnorm_forward
 * computes it (sum of squares in double). */
template <int R> __device__ void rows_rstd(float *rstd, const dmm_args &a)
{
	__shared__ double part[WARPS][R];
	if (!a.norm) {
		if (threadIdx.x < R)
			rstd[threadIdx.x] = 1.0f;
		__syncthreads();
		return;
	}
	double ss[R];
#pragma unroll
	for (int r = 0; r < R; r++)
		ss[r] = 0;
#pragma unroll 4
	for (int c = threadIdx.x; c < a.C; c += blockDim.x)
#pragma unroll
		for (int r = 0; r < R; r++)
			if (r < a.nr) {
				double v = a.inp[(size_t)r * a.C + c];
				ss[r] += v * v;
			}
	int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
	for (int r = 0; r < R; r++) {
		double s = warp_sum(ss[r]);
		if (lane == 0)
			part[warp][r] = s;
	}
	__syncthreads();
	if (threadIdx.x < a.nr) {
		double s = 0;
		for (int w = 0; w < WARPS; w++)
			s += part[w][threadIdx.x];
		rstd[threadIdx.x] = (float)(1.0 / sqrt(s / a.C + SRMS_EPS));
	}
	__syncthreads();
}

/* N consecutive inputs of row r at column c, through the prologue. */
template <int N>
__device__ void load_x(float *x, const dmm_args &a, int r, int c, float rstd)
{
	const float *p = a.inp + (size_t)r * a.C + c;
	const float *g = a.gate ? a.gate + (size_t)r * a.ldg + c : NULL;
	if constexpr (N == 1) {
		x[0] = p[0] * rstd;
		if (g)
			x[0] = g[0] * x[0];
	} else {
#pragma unroll
		for (int i = 0; i < N; i += 4) {
			float4 v = *(const float4 *)(p + i);
			x[i] = v.x * rstd, x[i + 1] = v.y * rstd;
			x[i + 2] = v.z * rstd, x[i + 3] = v.w * rstd;
			if (g) {
				float4 u = *(const float4 *)(g + i);
				x[i] = u.x * x[i], x[i + 1] = u.y * x[i + 1];
				x[i + 2] = u.z * x[i + 2], x[i + 3] = u.w * x[i + 3];
			}
		}
	}
}

/* Each warp: OPW consecutive outputs for all R rows (nr of them real);
 * lanes stride the columns VEC-wide (16-byte loads) or one by one. */
template <int R, int OPW, int SG, int VEC, typename WT>
__global__ void __launch_bounds__(WARPS * 32) dmm_small(dmm_args a, const WT *w, const WT *w2)
{
	constexpr int N = VEC ? wvec<WT>::N : 1;
	__shared__ float rstd[R];
	rows_rstd<R>(rstd, a);
	int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
	int o0 = (blockIdx.x * WARPS + warp) * OPW;
	if (o0 >= a.OC)
		return;
	float acc[OPW][R], acc2[OPW][R];
#pragma unroll
	for (int j = 0; j < OPW; j++)
#pragma unroll
		for (int r = 0; r < R; r++)
			acc[j][r] = acc2[j][r] = 0;
#pragma unroll 2
	for (int c = lane * N; c < a.C; c += 32 * N) {
		float x[R][N];
#pragma unroll
		for (int r = 0; r < R; r++) {
			if (r < a.nr)
				load_x<N>(x[r], a, r, c, rstd[r]);
			else
#pragma unroll
				for (int v = 0; v < N; v++)
					x[r][v] = 0;
		}
#pragma unroll
		for (int j = 0; j < OPW; j++) {
			if (o0 + j >= a.OC)
				break;
			size_t at = (size_t)(o0 + j) * a.C + c;
			float f[N], f2[N];
			if (VEC)
				wvec<WT>::load(f, w + at);
			else
				f[0] = wvec<WT>::one(w + at);
			if (SG && VEC)
				wvec<WT>::load(f2, w2 + at);
			else if (SG)
				f2[0] = wvec<WT>::one(w2 + at);
#pragma unroll
			for (int r = 0; r < R; r++)
#pragma unroll
				for (int v = 0; v < N; v++) {
					acc[j][r] = fmaf(f[v], x[r][v], acc[j][r]);
					if (SG)
						acc2[j][r] = fmaf(f2[v], x[r][v], acc2[j][r]);
				}
		}
	}
#pragma unroll
	for (int j = 0; j < OPW; j++)
#pragma unroll
		for (int r = 0; r < R; r++) {
			float y = warp_sum(acc[j][r]);
			if (SG)
				y *= warp_sum(acc2[j][r]);
			int o = o0 + j;
			if (lane || o >= a.OC || r >= a.nr)
				continue;
			size_t at = (size_t)r * a.OC + o;
			a.out[at] = a.res ? y + a.res[at] : y;
		}
}

template <typename WT, int R, int OPW>
static void launch_rows(const dmm_args &a, const WT *w, const WT *w2, int vec, cudaStream_t s)
{
	unsigned blocks = (unsigned)((a.OC + WARPS * OPW - 1) / (WARPS * OPW));
	if (w2 && vec)
		dmm_small<R, OPW, 1, 1, WT><<<blocks, WARPS * 32, 0, s>>>(a, w, w2);
	else if (w2)
		dmm_small<R, OPW, 1, 0, WT><<<blocks, WARPS * 32, 0, s>>>(a, w, w2);
	else if (vec)
		dmm_small<R, OPW, 0, 1, WT><<<blocks, WARPS * 32, 0, s>>>(a, w, w2);
	else
		dmm_small<R, OPW, 0, 0, WT><<<blocks, WARPS * 32, 0, s>>>(a, w, w2);
}

static int aligned(const void *p) { return ((uintptr_t)p & 15) == 0; }

/* The streaming kernel over passes of at most DMM_PASS rows. */
template <typename WT>
static int dmm_stream(float *out, const struct tn_dmm *t, const WT *w, const WT *w2)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu)
		return tn_cuda_status();
	int vec = t->C % wvec<WT>::N == 0 && aligned(t->inp) && aligned(w) && (!w2 || aligned(w2)) &&
		  (!t->gate || (aligned(t->gate) && t->ldg % 4 == 0));
	for (int r0 = 0; r0 < t->BT; r0 += DMM_PASS) {
		dmm_args a = {out + (size_t)r0 * t->OC, t->inp + (size_t)r0 * t->C,
			      t->gate ? t->gate + (size_t)r0 * t->ldg : NULL,
			      t->res ? t->res + (size_t)r0 * t->OC : NULL,
			      t->norm, t->ldg, TN_MIN(DMM_PASS, t->BT - r0), t->C, t->OC};
		if (a.nr == 1)
			launch_rows<WT, 1, 2>(a, w, w2, vec, cu->stream);
		else if (a.nr == 2)
			launch_rows<WT, 2, 4>(a, w, w2, vec, cu->stream);
		else if (a.nr <= 4)
			launch_rows<WT, 4, 4>(a, w, w2, vec, cu->stream);
		else
			launch_rows<WT, 8, 4>(a, w, w2, vec, cu->stream);
	}
	TN_CUDA_CHECK_LAUNCH("decode_matmul");
	return TN_OK;
}

extern "C" int decode_matmul_cuda(float *out, const struct tn_dmm *a)
{
	return dmm_stream<float>(out, a, a->w, a->w2);
}

/* ---- many rows (bf16): prologue, tensor-core product, epilogue ---- */

/* Grow-only device buffers of the many-row path; growing moves them, so
 * graphs that recorded them are captured again (tn_cuda_stage_epoch). */
static struct {
	void *p;
	size_t bytes;
} buf[2];

static void *grow(int which, size_t bytes)
{
	if (buf[which].bytes >= bytes)
		return buf[which].p;
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu)
		return NULL;
	if (buf[which].p) { /* kernels in flight may still read it */
		tn_cuda_note(cudaStreamSynchronize(cu->stream), "decode staging");
		cudaFree(buf[which].p);
	}
	buf[which].bytes = 0;
	tn_cuda_stage_epoch++;
	if (cudaMalloc(&buf[which].p, bytes) != cudaSuccess) {
		cudaGetLastError();
		return buf[which].p = NULL;
	}
	buf[which].bytes = bytes;
	return buf[which].p;
}

/* One block per row: x16 = bf16(gate * (inp * rstd)). */
__global__ static void dmm_prologue(bf16 *x16, const float *inp, const float *gate, int ldg,
				    int norm, int C)
{
	int r = blockIdx.x;
	const float *x = inp + (size_t)r * C;
	float rs = 1.0f;
	if (norm) {
		double ss = 0;
		for (int c = threadIdx.x; c < C; c += blockDim.x)
			ss += (double)x[c] * x[c];
		ss = block_sum(ss);
		rs = (float)(1.0 / sqrt(ss / C + SRMS_EPS));
	}
	for (int c = threadIdx.x; c < C; c += blockDim.x) {
		float v = x[c] * rs;
		if (gate)
			v = gate[(size_t)r * ldg + c] * v;
		x16[(size_t)r * C + c] = __float2bfloat16_rn(v);
	}
}

int decode_matmul_bf16(float *out, const struct tn_dmm *a, const bf16 *w16, const bf16 *w2_16)
{
	if (a->BT <= TN_DMM_ROWS)
		return dmm_stream<bf16>(out, a, w16, w2_16);
	struct tn_cuda *cu = tn_cuda_get();
	size_t n = (size_t)a->BT * a->OC;
	bf16 *x16 = (bf16 *)grow(0, (size_t)a->BT * a->C * sizeof(bf16));
	float *y2 = w2_16 ? (float *)grow(1, n * sizeof(float)) : NULL;
	if (!cu || !x16 || (w2_16 && !y2))
		return tn_fail(TN_ENOMEM, "decode_matmul: no device memory to stage %d rows of %d",
			       a->BT, a->C);
	dmm_prologue<<<a->BT, 256, 0, cu->stream>>>(x16, a->inp, a->gate, a->ldg, a->norm, a->C);
	TN_CUDA_CHECK_LAUNCH("decode_matmul prologue");
	matmul_forward_bf16(out, x16, w16, a->BT, a->C, a->OC, 0);
	if (w2_16) {
		matmul_forward_bf16(y2, x16, w2_16, a->BT, a->C, a->OC, 0);
		gate_forward_cuda(out, out, y2, n);
	}
	if (a->res)
		residual_forward_cuda(out, out, a->res, n);
	return TN_OK;
}

/* ---- the token mixer of one position ---- */

__device__ static float feature(float x, int act)
{
	return act == TN_ACT_SILU ? x / (1.0f + expf(-x)) : act == TN_ACT_RELU ? fmaxf(x, 0.0f) : x;
}

#define MIX_COLS 32 /* state columns per block */
#define MIX_SLICES 8 /* the rows of the state split over this many warps */

/* Block (h, b, z): q and k of head h (feature map, LRPE at pos[b]) into
 * shared memory, then state columns [32 z, 32 z + 32) of S = lambda S +
 * k^T v and their o = q S, the rows of S split over the warps. */
__global__ static void __launch_bounds__(MIX_COLS *MIX_SLICES)
	mixer_step(float *o, const float *p, const int32_t *pos, const float *theta,
		   const float *decay_s, float *state, int H, int hd, int act)
{
	extern __shared__ float qk[];
	__shared__ float part[MIX_SLICES][MIX_COLS];
	int h = blockIdx.x, b = blockIdx.y, E = H * hd, dk = theta ? 2 * hd : hd;
	const float *row = p + (size_t)b * 4 * E;
	float *q = qk, *k = qk + dk;
	double t = pos[b];
	for (int c = threadIdx.x; c < hd; c += blockDim.x) {
		float qa = feature(row[h * hd + c], act), ka = feature(row[E + h * hd + c], act);
		if (!theta) {
			q[c] = qa;
			k[c] = ka;
			continue;
		}
		double ang = (double)theta[h * hd + c] * t;
		float cs = (float)cos(ang), sn = (float)sin(ang);
		q[c] = qa * cs, q[hd + c] = qa * sn;
		k[c] = ka * cs, k[hd + c] = ka * sn;
	}
	__syncthreads();
	int yl = threadIdx.x % MIX_COLS, sl = threadIdx.x / MIX_COLS, y = blockIdx.z * MIX_COLS + yl;
	float acc = 0;
	if (y < hd) {
		float lambda = (float)exp(-(double)decay_s[h]), vy = row[2 * E + h * hd + y];
		float *S = state + ((size_t)b * H + h) * dk * hd + y;
#pragma unroll 4
		for (int x = sl; x < dk; x += MIX_SLICES) {
			float s = lambda * S[(size_t)x * hd] + k[x] * vy;
			S[(size_t)x * hd] = s;
			acc += q[x] * s;
		}
	}
	part[sl][yl] = acc;
	__syncthreads();
	if (sl || y >= hd)
		return;
	float s = 0;
	for (int i = 0; i < MIX_SLICES; i++)
		s += part[i][yl];
	o[(size_t)b * E + h * hd + y] = s;
}

extern "C" int mixer_decode_cuda(float *o, const float *p, const int32_t *pos, const float *theta,
				 const float *decay_s, float *state, int B, int H, int hd,
				 enum tn_act act)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu)
		return tn_cuda_status();
	size_t smem = 2 * (size_t)(theta ? 2 * hd : hd) * sizeof(float);
	if (smem > 48 * 1024)
		return tn_fail(TN_EUSAGE, "mixer_decode: head dim %d needs %zu bytes of shared "
			       "memory, over 48 KiB", hd, smem);
	dim3 grid((unsigned)H, (unsigned)B, (unsigned)((hd + MIX_COLS - 1) / MIX_COLS));
	mixer_step<<<grid, MIX_COLS * MIX_SLICES, smem, cu->stream>>>(o, p, pos, theta, decay_s,
								     state, H, hd, (int)act);
	TN_CUDA_CHECK_LAUNCH("mixer_decode");
	return TN_OK;
}
