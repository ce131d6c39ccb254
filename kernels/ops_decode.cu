/* ops_decode.cu - the fused decode ops (libcore/ops_decode.h) on the GPU.
 * A decode step reads every weight once for a handful of rows, so its
 * products are bound by the weight stream, not by arithmetic: a block of
 * the streaming kernel takes a few outputs, its threads split the columns
 * in 16-byte loads, and all rows' dot products stay in registers, with the
 * input norm (a factor on the dot products), output gate, SGLU product,
 * residual and the head's argmax folded into the same kernel (one launch
 * per product, fp32 inputs and accumulation). Each thread issues its
 * weight loads (the mixer its state loads) before anything else. On the
 * H200, programmatic dependent launch (weights loaded before waiting for
 * the kernel before) did not pay: 1B batch 1 0.782 ms/step with, 0.757
 * without; persistent blocks streaming several groups each were slower too.
 * Decision: above TN_DMM_ROWS rows the bf16 form hands the product to the
 * tensor cores (cuBLAS) between a prologue and an epilogue kernel, since
 * then arithmetic, not the weight stream, is the bound. The token mixer of
 * one position is one kernel per (head, sequence, 128 state columns), or
 * 16 columns when that leaves too few blocks (batch 1). */
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
#define DMM_THREADS 256 /* per block of the streaming product */
#define DMM_WARPS (DMM_THREADS / 32)
#define DMM_PASS 8      /* rows per launch of the streaming kernel, at most */
#define DMM_FILL 1024   /* blocks wanted per launch: several waves over 132 SMs */

/* The arguments of one launch of the product: rows [0, nr) of a pass.
 * amax (NULL: none) gets each row's argmax over the OC outputs, through
 * keys[8] and done, which are zero before and after every launch. */
struct dmm_args {
	float *out;
	const float *inp, *gate, *res;
	int32_t *amax;
	unsigned long long *keys;
	unsigned *done;
	int norm, ldg, nr, C, OC;
};

/* One load of weights (16 bytes, or one weight when VEC is 0), kept raw in
 * registers until used, and its N values as floats. Streamed past the
 * caches: every weight is read once a step. */
template <typename WT, int VEC> struct wload;
template <> struct wload<float, 1> {
	static constexpr int N = 4;
	typedef float4 raw;
	static __device__ raw load(const float *p) { return __ldcs((const float4 *)p); }
	static __device__ void get(float *f, raw v) { f[0] = v.x, f[1] = v.y, f[2] = v.z, f[3] = v.w; }
};
template <> struct wload<bf16, 1> {
	static constexpr int N = 8;
	typedef uint4 raw;
	static __device__ raw load(const bf16 *p) { return __ldcs((const uint4 *)p); }
	static __device__ void get(float *f, raw u)
	{
		const __nv_bfloat162 *h = (const __nv_bfloat162 *)&u;
#pragma unroll
		for (int i = 0; i < 4; i++) {
			float2 t = __bfloat1622float2(h[i]);
			f[2 * i] = t.x, f[2 * i + 1] = t.y;
		}
	}
};
template <typename WT> struct wload<WT, 0> {
	static constexpr int N = 1;
	typedef WT raw;
	static __device__ raw load(const WT *p) { return *p; }
	static __device__ void get(float *f, raw v) { f[0] = (float)v; }
};

/* The weights of U chunks (k, k + DMM_THREADS, ...) of RB rows; zeros
 * for chunks past the row or rows past OC. */
template <int RB, int U, typename L, typename WT>
__device__ void load_w(typename L::raw (*f)[U], const WT *w, int k, int chunks, int nrow, int C)
{
#pragma unroll
	for (int j = 0; j < RB; j++)
#pragma unroll
		for (int u = 0; u < U; u++) {
			int kk = k + u * DMM_THREADS;
			f[j][u] = j < nrow && kk < chunks ? L::load(w + (size_t)j * C + (size_t)kk * L::N)
							  : typename L::raw{};
		}
}

/* The sortable key of output i with value v: larger value first, then the
 * lower index; NaN below every number. Zero means no output yet. */
__device__ static unsigned long long amax_key(float v, int i)
{
	unsigned u = __float_as_uint(v);
	u = isnan(v) ? 0 : (u & 0x80000000u) ? ~u : u | 0x80000000u;
	return (unsigned long long)u << 32 | (unsigned)~i;
}

/* The block's RB outputs of each row into the rows' argmax keys; the
 * block that finishes last writes amax and zeroes the keys and counter. */
template <int RB> __device__ void block_argmax(const dmm_args &a, const float (*y)[RB], int o0)
{
	__shared__ int last;
	int t = threadIdx.x;
	if (t < a.nr) {
		unsigned long long best = 0;
		for (int j = 0; j < RB && o0 + j < a.OC; j++) {
			unsigned long long key = amax_key(y[t][j], o0 + j);
			best = key > best ? key : best;
		}
		if (best > *(volatile unsigned long long *)&a.keys[t])
			atomicMax(&a.keys[t], best);
		__threadfence();
	}
	__syncthreads();
	if (t == 0)
		last = atomicAdd(a.done, 1u) == gridDim.x - 1;
	__syncthreads();
	if (!last)
		return;
	__threadfence();
	if (t < a.nr)
		a.amax[t] = (int32_t)~(unsigned)atomicExch(&a.keys[t], 0ull);
	if (t == 0)
		atomicExch(a.done, 0u);
}

/* N consecutive floats at p: one at a time, or in 16-byte loads when N is
 * a multiple of 4 (p then 16-byte aligned). */
template <int N> __device__ void ld(float *v, const float *p)
{
	if constexpr (N % 4) {
#pragma unroll
		for (int i = 0; i < N; i++)
			v[i] = p[i];
	} else {
#pragma unroll
		for (int i = 0; i < N; i += 4) {
			float4 t = *(const float4 *)(p + i);
			v[i] = t.x, v[i + 1] = t.y, v[i + 2] = t.z, v[i + 3] = t.w;
		}
	}
}

/* Chunk kk of input row r through the prologue: x = gate * inp (zeros
 * past the chunks or the rows), its sum of squares added to ss. */
template <int N>
__device__ void load_x(float *x, const dmm_args &a, int r, int kk, int chunks, double &ss)
{
	if (kk >= chunks || r >= a.nr) {
#pragma unroll
		for (int v = 0; v < N; v++)
			x[v] = 0;
		return;
	}
	size_t c = (size_t)kk * N;
	const float *p = a.inp + (size_t)r * a.C + c;
	float g[N];
	ld<N>(x, p);
#pragma unroll
	for (int v = 0; v < N; v++)
		ss += (double)x[v] * x[v];
	if (!a.gate)
		return;
	ld<N>(g, a.gate + (size_t)r * a.ldg + c);
#pragma unroll
	for (int v = 0; v < N; v++)
		x[v] *= g[v];
}

/* Block b: outputs [RB b, RB b + RB) of all R rows (nr of them real). Its
 * threads split the columns in chunks of L::N and load U chunks of every
 * weight row at once, before the inputs (U * RB loads of 16 bytes in
 * flight); the rows' sums of squares come with the input loads, so the
 * norm is the factor rstd on the dot products (no pass before them). */
template <int R, int RB, int SG, int VEC, typename WT>
__global__ void __launch_bounds__(DMM_THREADS) dmm_rows(dmm_args a, const WT *w, const WT *w2)
{
	typedef wload<WT, VEC> L;
	constexpr int N = L::N, NA = RB * R * (1 + SG), U = RB >= 4 ? 1 : 2;
	__shared__ float part[DMM_WARPS][NA];
	__shared__ double sq[DMM_WARPS][R];
	__shared__ float y[R][RB];
	int o0 = blockIdx.x * RB, nrow = min(RB, a.OC - o0), chunks = a.C / N;
	w += (size_t)o0 * a.C;
	if (SG)
		w2 += (size_t)o0 * a.C;
	typename L::raw f[RB][U], f2[RB][U];
	int k = threadIdx.x;
	load_w<RB, U, L>(f, w, k, chunks, nrow, a.C);
	if (SG)
		load_w<RB, U, L>(f2, w2, k, chunks, nrow, a.C);
	float acc[RB][R], acc2[RB][R];
	double ss[R];
#pragma unroll
	for (int r = 0; r < R; r++) {
		ss[r] = 0;
#pragma unroll
		for (int j = 0; j < RB; j++)
			acc[j][r] = acc2[j][r] = 0;
	}
	for (;;) {
		float x[U][R][N];
#pragma unroll
		for (int u = 0; u < U; u++)
#pragma unroll
			for (int r = 0; r < R; r++)
				load_x<N>(x[u][r], a, r, k + u * DMM_THREADS, chunks, ss[r]);
#pragma unroll
		for (int u = 0; u < U; u++)
#pragma unroll
			for (int j = 0; j < RB; j++) {
				if (k + u * DMM_THREADS >= chunks)
					break;
				float fw[N], fw2[N];
				L::get(fw, f[j][u]);
				if (SG)
					L::get(fw2, f2[j][u]);
#pragma unroll
				for (int r = 0; r < R; r++)
#pragma unroll
					for (int v = 0; v < N; v++) {
						acc[j][r] = fmaf(fw[v], x[u][r][v], acc[j][r]);
						if (SG)
							acc2[j][r] = fmaf(fw2[v], x[u][r][v], acc2[j][r]);
					}
			}
		k += U * DMM_THREADS;
		if (k >= chunks)
			break;
		load_w<RB, U, L>(f, w, k, chunks, nrow, a.C);
		if (SG)
			load_w<RB, U, L>(f2, w2, k, chunks, nrow, a.C);
	}
	int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
	for (int r = 0; r < R; r++) {
		double s = warp_sum(ss[r]);
		if (lane == 0)
			sq[warp][r] = s;
#pragma unroll
		for (int j = 0; j < RB; j++) {
			float s1 = warp_sum(acc[j][r]);
			float s2 = SG ? warp_sum(acc2[j][r]) : 0.0f;
			if (lane == 0) {
				part[warp][r * RB + j] = s1;
				if (SG)
					part[warp][RB * R + r * RB + j] = s2;
			}
		}
	}
	__syncthreads();
	int t = threadIdx.x, r = t / RB, j = t % RB;
	if (t < RB * R) {
		double s = 0;
		float d = 0, d2 = 0;
		for (int i = 0; i < DMM_WARPS; i++) {
			s += sq[i][r];
			d += part[i][t];
			if (SG)
				d2 += part[i][RB * R + t];
		}
		float rstd = a.norm ? (float)(1.0 / sqrt(s / a.C + SRMS_EPS)) : 1.0f;
		float v = rstd * d;
		if (SG)
			v *= rstd * d2;
		if (r < a.nr && j < nrow) {
			size_t at = (size_t)r * a.OC + o0 + j;
			v = a.res ? v + a.res[at] : v;
			a.out[at] = v;
		}
		y[r][j] = v;
	}
	if (a.amax) {
		__syncthreads();
		block_argmax<RB>(a, y, o0);
	}
}

/* The launch for RB outputs a block, whichever weights and loads. */
template <typename WT, int R, int RB>
static void launch_rows(const dmm_args &a, const WT *w, const WT *w2, int vec, cudaStream_t s)
{
	unsigned blocks = (unsigned)((a.OC + RB - 1) / RB);
	void (*k)(dmm_args, const WT *, const WT *) =
		w2 ? (vec ? dmm_rows<R, RB, 1, 1, WT> : dmm_rows<R, RB, 1, 0, WT>)
		   : (vec ? dmm_rows<R, RB, 0, 1, WT> : dmm_rows<R, RB, 0, 0, WT>);
	k<<<blocks, DMM_THREADS, 0, s>>>(a, w, w2);
}

/* Outputs a block: the most (fewest blocks to schedule) that still leaves
 * DMM_FILL blocks, so that every SM streams weights; at most 8 outputs of
 * all rows of the pass a block (registers). */
template <typename WT, int R>
static void launch_pass(const dmm_args &a, const WT *w, const WT *w2, int vec, cudaStream_t s)
{
	int per = a.OC / DMM_FILL;
	if constexpr (R == 1)
		if (per >= 8)
			return launch_rows<WT, R, 8>(a, w, w2, vec, s);
	if constexpr (R <= 2)
		if (per >= 4)
			return launch_rows<WT, R, 4>(a, w, w2, vec, s);
	launch_rows<WT, R, 2>(a, w, w2, vec, s);
}

static int aligned(const void *p) { return ((uintptr_t)p & 15) == 0; }

/* The argmax keys and counter of the streaming kernel (zeroed once). */
static struct {
	unsigned long long keys[DMM_PASS];
	unsigned done;
} *amax_slots;

/* The streaming kernel over passes of at most DMM_PASS rows. */
template <typename WT>
static int dmm_stream(float *out, const struct tn_dmm *t, const WT *w, const WT *w2)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu)
		return tn_cuda_status();
	if (t->amax && !amax_slots) {
		if (cudaMalloc(&amax_slots, sizeof *amax_slots) != cudaSuccess) {
			cudaGetLastError();
			amax_slots = NULL;
			return tn_fail(TN_ENOMEM, "decode_matmul: no device memory for the argmax");
		}
		tn_cuda_note(cudaMemsetAsync(amax_slots, 0, sizeof *amax_slots, cu->stream),
			     "zeroing the argmax slots");
	}
	int vec = t->C % wload<WT, 1>::N == 0 && aligned(t->inp) && aligned(w) &&
		  (!w2 || aligned(w2)) && (!t->gate || (aligned(t->gate) && t->ldg % 4 == 0));
	for (int r0 = 0; r0 < t->BT; r0 += DMM_PASS) {
		dmm_args a = {out + (size_t)r0 * t->OC, t->inp + (size_t)r0 * t->C,
			      t->gate ? t->gate + (size_t)r0 * t->ldg : NULL,
			      t->res ? t->res + (size_t)r0 * t->OC : NULL,
			      t->amax ? t->amax + r0 : NULL,
			      amax_slots ? amax_slots->keys : NULL, amax_slots ? &amax_slots->done : NULL,
			      t->norm, t->ldg, TN_MIN(DMM_PASS, t->BT - r0), t->C, t->OC};
		if constexpr (sizeof(WT) == sizeof(bf16) && TN_DMM_ROWS == 1)
			launch_pass<WT, 1>(a, w, w2, vec, cu->stream);
		else if (a.nr == 1)
			launch_pass<WT, 1>(a, w, w2, vec, cu->stream);
		else if (a.nr == 2)
			launch_pass<WT, 2>(a, w, w2, vec, cu->stream);
		else if (a.nr <= 4)
			launch_pass<WT, 4>(a, w, w2, vec, cu->stream);
		else
			launch_pass<WT, 8>(a, w, w2, vec, cu->stream);
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
	if (a->amax)
		tn_cuda_argmax_rows(a->amax, out, a->BT, a->OC);
	return TN_OK;
}

/* ---- the token mixer of one position ---- */

__device__ static float feature(float x, int act)
{
	return act == TN_ACT_SILU ? x / (1.0f + expf(-x)) : act == TN_ACT_RELU ? fmaxf(x, 0.0f) : x;
}

#define MIX_THREADS 256 /* per block of the mixer */
#define MIX_ROWS 128    /* state rows a thread's registers cover at once, over the block */
#define MIX_FILL 528    /* blocks below which the mixer splits the columns finer (4 an SM) */

template <int VW> __device__ void st(float *p, const float *v)
{
	if constexpr (VW == 4)
		*(float4 *)p = make_float4(v[0], v[1], v[2], v[3]);
	else
		*p = v[0];
}

/* The thread's state columns of the HELD rows x0, x0 + SL, ... (rows past
 * dk, or columns past hd, are left alone). */
template <int VW, int SL, int HELD>
__device__ void load_state(float (*s)[VW], const float *S, int x0, int dk, int hd, int live)
{
#pragma unroll
	for (int i = 0; i < HELD; i++) {
		int x = x0 + i * SL;
		if (live && x < dk)
			ld<VW>(s[i], S + (size_t)x * hd);
	}
}

/* Block (h, b, z): state columns [LPR VW z, LPR VW (z + 1)) of head h of
 * sequence b, VW to a thread, LPR threads to a row; the block's SL slices
 * of LPR threads take the rows x = slice, slice + SL, ... The first rows a
 * thread loads first; then q and k
 * of the head (feature map, LRPE at pos[b]) into shared memory, and
 * S = lambda S + k^T v, o = q S, the slices' sums added in shared memory. */
template <int VW, int LPR>
__global__ static void __launch_bounds__(MIX_THREADS)
	mixer_step(float *o, const float *p, const int32_t *pos, const float *theta,
		   const float *decay_s, float *state, int H, int hd, int act)
{
	constexpr int SL = MIX_THREADS / LPR, HELD = MIX_ROWS / SL;
	extern __shared__ float qk[];
	__shared__ float part[SL][LPR * VW];
	int h = blockIdx.x, b = blockIdx.y, E = H * hd, dk = theta ? 2 * hd : hd;
	int lane = threadIdx.x % LPR, sl = threadIdx.x / LPR, y = (blockIdx.z * LPR + lane) * VW;
	int live = y < hd;
	float *S = state + ((size_t)b * H + h) * dk * hd + y;
	float s[HELD][VW];
	load_state<VW, SL, HELD>(s, S, sl, dk, hd, live);
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
	float lambda = (float)exp(-(double)decay_s[h]), v[VW], acc[VW];
#pragma unroll
	for (int i = 0; i < VW; i++)
		acc[i] = 0;
	if (live)
		ld<VW>(v, row + 2 * E + h * hd + y);
	for (int x0 = sl; x0 < dk; x0 += MIX_ROWS) {
		if (x0 != sl)
			load_state<VW, SL, HELD>(s, S, x0, dk, hd, live);
#pragma unroll
		for (int i = 0; i < HELD; i++) {
			int x = x0 + i * SL;
			if (!live || x >= dk)
				break;
#pragma unroll
			for (int c = 0; c < VW; c++) {
				s[i][c] = lambda * s[i][c] + k[x] * v[c];
				acc[c] += q[x] * s[i][c];
			}
			st<VW>(S + (size_t)x * hd, s[i]);
		}
	}
#pragma unroll
	for (int c = 0; c < VW; c++)
		part[sl][lane * VW + c] = acc[c];
	__syncthreads();
	for (int c = threadIdx.x; c < LPR * VW; c += blockDim.x) {
		int col = blockIdx.z * LPR * VW + c;
		if (col >= hd)
			break;
		float sum = 0;
		for (int i = 0; i < SL; i++)
			sum += part[i][c];
		o[(size_t)b * E + h * hd + col] = sum;
	}
}

template <int VW, int LPR>
static void launch_mixer(float *o, const float *p, const int32_t *pos, const float *theta,
			 const float *decay_s, float *state, int B, int H, int hd, enum tn_act act,
			 size_t smem, cudaStream_t s)
{
	dim3 grid((unsigned)H, (unsigned)B, (unsigned)((hd + LPR * VW - 1) / (LPR * VW)));
	mixer_step<VW, LPR><<<grid, MIX_THREADS, smem, s>>>(o, p, pos, theta, decay_s, state, H, hd,
							   (int)act);
}

/* A warp to a state row (32 threads of 16-byte columns), or, when that
 * leaves too few blocks to keep the SMs streaming (few sequences), 4
 * threads to a row and 8 times the blocks. */
extern "C" int mixer_decode_cuda(float *o, const float *p, const int32_t *pos, const float *theta,
				 const float *decay_s, float *state, int B, int H, int hd,
				 enum tn_act act)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu)
		return tn_cuda_status();
	size_t smem = 2 * (size_t)(theta ? 2 * hd : hd) * sizeof(float);
	if (smem > 40 * 1024)
		return tn_fail(TN_EUSAGE, "mixer_decode: head dim %d needs %zu bytes of shared "
			       "memory, over 40 KiB", hd, smem);
	int vw = hd % 4 == 0 && aligned(p) && aligned(state) ? 4 : 1;
	int wide = (size_t)B * H * ((hd + 32 * vw - 1) / (32 * vw)) >= MIX_FILL;
	if (vw == 4 && wide)
		launch_mixer<4, 32>(o, p, pos, theta, decay_s, state, B, H, hd, act, smem, cu->stream);
	else if (vw == 4)
		launch_mixer<4, 4>(o, p, pos, theta, decay_s, state, B, H, hd, act, smem, cu->stream);
	else if (wide)
		launch_mixer<1, 32>(o, p, pos, theta, decay_s, state, B, H, hd, act, smem, cu->stream);
	else
		launch_mixer<1, 4>(o, p, pos, theta, decay_s, state, B, H, hd, act, smem, cu->stream);
	TN_CUDA_CHECK_LAUNCH("mixer_decode");
	return TN_OK;
}
