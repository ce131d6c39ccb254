/* lightning_attn.cu - CUDA Lightning Attention: forward (with the final state),
 * backward and decode, fp32 or bf16 in, fp32 accumulation, packed documents.
 *
 * One design for every pass (o; dq; dk and dv): a block walks the chunks of
 * BC = 64 rows of one segment in order (backward: in reverse), carrying the
 * running state in registers, so inputs are read once and states stay on
 * chip (Lightning Attention-2's loop, chunk_seq, one kernel for all four
 * outputs). When B*H blocks would not fill the GPU (long N, small B), each
 * sequence gets several segments: (1) the local state sum_j w_j x_j y_j^T of
 * each segment ("span", `sub` chunks) into a [B,H,spans,dk,dv] fp32 buffer;
 * (2) a scan over spans, element-parallel, turns it into the state before
 * (forward) or after (backward) each span, where chunk_seq starts.
 * The state walk's spans may be finer than the segments (dims.ratio), so
 * that it fills the GPU too. In the backward one walk (chunk_dkv) computes
 * dk and dv from the one state they share (dk, dv of 128). Matrix products
 * run on mma.sync m16n8k16 bf16 tensor cores; the fp32 values among their
 * operands (scores, state, decay-weighted rows) enter as hi = bf16(x), lo =
 * bf16(x - hi), two products each: with any of them as bf16 alone, bf16
 * results reach or leave the test's bound (bench/RESULTS.md). At dk = dv = 128
 * (bf16) every walk runs on Hopper's wgmma instead (chunk_wg, same pairs; dk
 * and dv in two walks). fp32 inputs (the
 * checking mode) take the same walk on the CUDA cores (chunk_seq_f32). Only
 * non-negative powers lambda^p, p <= span length, appear (MODEL.md §6.11).
 * Documents: seg[t] = last start <= t (-1: none); tokens t, j interact iff
 * seg[t] <= j <= t, as in libcore/lightning_attn.c. */
#include <cuda_bf16.h>
#include <initializer_list>
#include <limits.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "lightning_attn_cuda.h"

extern "C" {
#include "util.h"
}

typedef __nv_bfloat16 bf16;

namespace {

constexpr int BC = 64;       /* chunk rows */
constexpr int NWARP = BC / 16; /* each warp owns 16 rows of a chunk tile */
constexpr int SCAN_THR = 256;

/* A matrix operand in shared memory, row-major with leading dimension ld;
 * lo is NULL when the values are exact in bf16. */
struct op {
	bf16 *hi, *lo;
	int ld;
};

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(bf16 x) { return __bfloat162float(x); }
template <typename T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ bf16 from_f<bf16>(float x) { return __float2bfloat16_rn(x); }

__device__ __forceinline__ void store_split(const op &d, int r, int c, float x)
{
	bf16 h = __float2bfloat16_rn(x);
	d.hi[r * d.ld + c] = h;
	if (d.lo)
		d.lo[r * d.ld + c] = __float2bfloat16_rn(x - __bfloat162float(h));
}

__device__ __forceinline__ void mma(float c[4], const uint32_t a[4], const uint32_t b[2])
{
	asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
		     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
		     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
		     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

/* ldmatrix.x4: four 8x8 bf16 matrices from shared memory, the rows of matrix
 * q at the addresses of lanes 8q..8q+7; TR (.trans) hands each thread its
 * fragment of the transposed matrices. */
template <bool TR> __device__ __forceinline__ void ldsm4(uint32_t r[4], const bf16 *p)
{
	unsigned a = (unsigned)__cvta_generic_to_shared(p);
	if (TR)
		asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
			     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
			     : "r"(a));
	else
		asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
			     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
			     : "r"(a));
}

/* Fragments of m16n8k16 (g = lane / 4, t = lane % 4), each 8x8 piece one
 * ldmatrix matrix. A 16x16 at (r0, k0): ATR = false reads A(i,k) =
 * X[r0+i][k0+k], true reads A(i,k) = X[k0+k][r0+i]. Rows of X must start
 * 16 bytes apart (smem_alloc's tiles do). */
template <bool ATR>
__device__ __forceinline__ void load_a(uint32_t a[4], const bf16 *X, int ld, int r0, int k0)
{
	int l = threadIdx.x & 31, q = l >> 3, i = l & 7;
	if (!ATR)
		ldsm4<false>(a, X + (r0 + (q & 1) * 8 + i) * ld + k0 + (q >> 1) * 8);
	else
		ldsm4<true>(a, X + (k0 + (q >> 1) * 8 + i) * ld + r0 + (q & 1) * 8);
}

/* Two B fragments 16x8 at (k0, n0) and (k0, n0 + 8), in b[0..1] and b[2..3]:
 * BKN = false reads B(k,n) = X[n0+n][k0+k], true reads B(k,n) = X[k0+k][n0+n]. */
template <bool BKN>
__device__ __forceinline__ void load_b2(uint32_t b[4], const bf16 *X, int ld, int k0, int n0)
{
	int l = threadIdx.x & 31, q = l >> 3, i = l & 7;
	if (!BKN)
		ldsm4<false>(b, X + (n0 + (q >> 1) * 8 + i) * ld + k0 + (q & 1) * 8);
	else
		ldsm4<true>(b, X + (k0 + (q & 1) * 8 + i) * ld + n0 + (q >> 1) * 8);
}

/* acc[16 x 8NT] += A[ar0.., ak0 .. ak0+K) . B[bk0 .. bk0+K, bn0..), one warp
 * (the hi halves: A and B are bf16 inputs). */
template <int NT, bool ATR, bool BKN>
__device__ void warp_mma(float (&acc)[NT][4], const op &A, int ar0, int ak0, const op &B,
			 int bk0, int bn0, int K)
{
	static_assert(NT % 2 == 0, "B pieces come in pairs");
	for (int k = 0; k < K; k += 16) {
		uint32_t a[4];
		load_a<ATR>(a, A.hi, A.ld, ar0, ak0 + k);
#pragma unroll
		for (int n = 0; n < NT; n += 2) {
			uint32_t b[4];
			load_b2<BKN>(b, B.hi, B.ld, bk0 + k, bn0 + 8 * n);
			mma(acc[n], a, b);
			mma(acc[n + 1], a, b + 2);
		}
	}
}

template <int NT> __device__ __forceinline__ void zero(float (&acc)[NT][4])
{
#pragma unroll
	for (int n = 0; n < NT; n++)
		acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
}

/* The accumulator element (n, r) of this thread sits at row rr, column cc of
 * the warp's 16 x 8NT tile. */
__device__ __forceinline__ int acc_row(int r) { return ((threadIdx.x & 31) >> 2) + (r >> 1) * 8; }
__device__ __forceinline__ int acc_col(int n, int r) { return 8 * n + 2 * (threadIdx.x & 3) + (r & 1); }

/* acc[16 x 64] += a . B[k0 .. k0+16, 0 .. 64) (BKN as in load_b2). */
template <bool BKN>
__device__ __forceinline__ void mma_band(float (&acc)[8][4], const uint32_t a[4], const bf16 *X,
					 int ld, int k0)
{
#pragma unroll
	for (int n = 0; n < 8; n += 2) {
		uint32_t b[4];
		load_b2<BKN>(b, X, ld, k0, 8 * n);
		mma(acc[n], a, b);
		mma(acc[n + 1], a, b + 2);
	}
}

/* acc[16 x 64] += (ah + al) . B[k0 .. k0+16, 0 .. 64), each B fragment loaded once. */
template <bool BKN>
__device__ __forceinline__ void mma_band2(float (&acc)[8][4], const uint32_t ah[4],
					  const uint32_t al[4], const bf16 *X, int ld, int k0)
{
#pragma unroll
	for (int n = 0; n < 8; n += 2) {
		uint32_t b[4];
		load_b2<BKN>(b, X, ld, k0, 8 * n);
#pragma unroll
		for (int u = 0; u < 2; u++) {
			mma(acc[n + u], ah, b + 2 * u);
			mma(acc[n + u], al, b + 2 * u);
		}
	}
}

/* Column j of acc[16 x 64] times w[j]. */
__device__ __forceinline__ void scale_acc(float (&acc)[8][4], const float *w)
{
#pragma unroll
	for (int n = 0; n < 8; n++)
#pragma unroll
		for (int e = 0; e < 4; e++)
			acc[n][e] *= w[acc_col(n, e)];
}

/* cp.async: 16 bytes global -> shared without passing through registers. */
__device__ __forceinline__ void cp_async16(void *dst, const void *src)
{
	unsigned a = (unsigned)__cvta_generic_to_shared(dst);
	asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(a), "l"(src));
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_wait()
{
	asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

/* Rows x cols (a multiple of 8) of a row-major global matrix (row stride ld)
 * into a shared tile, zero outside nrows x ncols: 16-byte cp.async where an
 * aligned piece is whole, plain copies elsewhere. Completion: cp_wait + a
 * barrier. */
__device__ void issue_tile(const op &d, const bf16 *src, long ld, int rows, int cols, int nrows,
			   int ncols)
{
	bool vec = ld % 8 == 0 && ((uintptr_t)src & 15) == 0;
	int per_row = cols / 8;
	for (int it = threadIdx.x; it < rows * per_row; it += blockDim.x) {
		int r = it / per_row, c = it % per_row * 8;
		bf16 *dst = d.hi + r * d.ld + c;
		if (vec && r < nrows && c + 8 <= ncols)
			cp_async16(dst, src + r * ld + c);
		else if (r >= nrows || c >= ncols)
			*(uint4 *)dst = make_uint4(0, 0, 0, 0);
		else
			for (int k = 0; k < 8; k++)
				dst[k] = c + k < ncols ? src[r * ld + c + k] : __float2bfloat16_rn(0.f);
	}
}

/* A tile of shared memory: rows x cols bf16 (+ the lo half when split). */
struct smem_alloc {
	char *p;
	__device__ op take(int rows, int cols, bool split)
	{
		op o;
		o.ld = cols + 8; /* rows 4 banks apart: conflict-free fragment loads */
		o.hi = (bf16 *)p;
		p += rows * o.ld * sizeof(bf16);
		o.lo = split ? (bf16 *)p : nullptr;
		if (split)
			p += rows * o.ld * sizeof(bf16);
		return o;
	}
};

__host__ __device__ constexpr int tile_bytes(int rows, int cols, bool split)
{
	return rows * (cols + 8) * 2 * (split ? 2 : 1);
}

__host__ __device__ constexpr int pad64(int x) { return (x + 63) / 64 * 64; }

/* Sizes of one call. Chunks (BC rows) are the unit of the quadratic
 * products; states are kept per span of `sub` chunks (SR = sub * BC rows). */
struct dims {
	int B, H, N, dk, dv, T, sub, SR, TS; /* T chunks, TS spans */
	int ratio; /* spans of the state-only walk per span of the output walk */
};

/* The spans of the state-only walk: `ratio` to each span of d. */
__host__ __device__ dims fine(const dims &d)
{
	dims f = d;
	f.sub = d.sub / d.ratio;
	f.SR = f.sub * BC;
	f.TS = (d.T + f.sub - 1) / f.sub;
	f.ratio = 1;
	return f;
}

/* Where a chunk is, for the mask of its scores. */
struct chunk {
	int c, n;           /* first row, sequence length */
	const int *seg;     /* this sequence's seg, or NULL */
	/* seg of token t; tokens past the end interact with nothing */
	__device__ int seg_of(int t) const { return t >= n ? INT_MAX : seg ? seg[t] : -1; }
};

__device__ chunk chunk_of(const dims &d, const int *seg, int c, int bh)
{
	return chunk{c, d.N, seg ? seg + (long)(bh / d.H) * d.N : nullptr};
}

/* P[i][j] = lambda^(t-k) (A_i . B_j) for the query t = c + i and the key
 * k = c + j of one document with t >= k, else 0; A, B in shared memory
 * (BC x D), P written split (BC x BC), pw[p] = lambda^p. With NW = 8 warps,
 * each warp computes half of the columns of its 16 rows. */
template <int NW>
__device__ void masked_scores(const chunk &ch, const op &A, const op &B, int D, const op &P,
			      const float *pw)
{
	constexpr int NT = BC / 8 / (NW / NWARP);
	int w = threadIdx.x >> 5, r0 = 16 * (w % NWARP), n0 = 8 * NT * (w / NWARP);
	float acc[NT][4];
	zero(acc);
	warp_mma<NT, false, false>(acc, A, r0, 0, B, 0, n0, D);
#pragma unroll
	for (int n = 0; n < NT; n++)
#pragma unroll
		for (int r = 0; r < 4; r++) {
			int i = r0 + acc_row(r), j = n0 + acc_col(n, r), t = ch.c + i, k = ch.c + j;
			bool keep = t >= k && ch.seg_of(t) <= k;
			store_split(P, i, j, keep ? acc[n][r] * pw[i - j] : 0.f);
		}
}

/* (2) Scan over spans, four state elements per thread: the buffer's local
 * states become the state before each span (forward: S_{cs-1}, from
 * state_in) or after it (backward: R at the span's end), written where an
 * output walk starts (every ratio-th span). The first nx spans in scan order
 * have local states (the last segment's, forward, or the first's, backward,
 * are never needed). */
template <bool REV>
__global__ void __launch_bounds__(SCAN_THR) scan_states(dims d, int ratio, int nx,
							const float *decay_s, const int *seg,
							float *L, const float *state_in)
{
	long n = (long)d.dk * d.dv, e = 4 * ((long)blockIdx.x * SCAN_THR + threadIdx.x);
	int bh = blockIdx.y;
	if (e >= n)
		return;
	float s = decay_s[bh % d.H];
	const int *sg = seg ? seg + (long)(bh / d.H) * d.N : nullptr;
	float *buf = L + (long)bh * d.TS * n + e;
	float4 S = state_in ? *(const float4 *)(state_in + bh * n + e) : make_float4(0, 0, 0, 0);
	constexpr int U = 8; /* loads in flight */
	for (int i0 = 0; i0 <= nx; i0 += U) {
		float4 x[U];
#pragma unroll
		for (int u = 0; u < U; u++) {
			int tau = REV ? d.TS - 1 - (i0 + u) : i0 + u;
			if (i0 + u < nx)
				x[u] = *(const float4 *)(buf + tau * n);
		}
#pragma unroll
		for (int u = 0; u < U; u++) {
			if (i0 + u > nx)
				break;
			int tau = REV ? d.TS - 1 - (i0 + u) : i0 + u;
			int c = tau * d.SR, m = min(d.SR, d.N - c);
			if (REV ? (tau + 1) % ratio == 0 || tau == d.TS - 1 : tau % ratio == 0)
				*(float4 *)(buf + tau * n) = S;
			if (i0 + u == nx)
				break;
			bool keep = REV ? c + m < d.N && (!sg || sg[c + m] <= c)
					: !(sg && sg[c + m - 1] >= c);
			float g = keep ? expf(-s * (float)m) : 0.f;
			S = make_float4(g * S.x + x[u].x, g * S.y + x[u].y, g * S.z + x[u].z,
					g * S.w + x[u].w);
		}
	}
}

/* What one launch of chunk_seq computes: rows of `out` for each chunk from
 * the same rows of F, M and W and the state R carried from chunk to chunk. */
template <typename T> struct pass {
	const T *F, *M, *W;  /* [B,H,N,da], [B,H,N,da], [B,H,N,dw] */
	int da, dw;
	T *out;              /* [B,H,N,dw] */
	float *state_out;    /* forward: R after the last token, or NULL */
	const float *state;  /* the states R before (REV: after) the spans, or NULL: zero */
	int nst, sst, soff;  /* states per (b, h); block x starts from min(x sst + soff, nst-1) */
	int spans, first;    /* blocks in x, walking spans first .. first + spans - 1 */
};

template <typename T>
pass<T> pass_of(const T *F, const T *M, const T *W, int da, int dw, T *out, const dims &d)
{
	return pass<T>{F, M, W, da, dw, out, nullptr, nullptr, 1, 0, 0, d.TS, 0};
}

/* The states of a pass from the scan's buffer L (fine(d) spans). */
template <typename T> pass<T> from_states(pass<T> p, const dims &d, const float *L, bool rev)
{
	p.state = L;
	p.nst = fine(d).TS;
	p.sst = d.ratio;
	p.soff = rev ? d.ratio - 1 : 0;
	return p;
}

/* Where R^T[r][c] lives in a [dk, dv] state: R^T is the state itself (STN)
 * or its transpose. */
template <bool STN> __device__ __forceinline__ long state_at(const dims &d, int r, int c)
{
	return STN ? (long)r * d.dv + c : (long)c * d.dv + r;
}

__device__ __forceinline__ float2 unpack2(uint32_t x)
{
	return make_float2(__uint_as_float(x << 16), __uint_as_float(x & 0xffff0000u));
}

/* bf16(a) | bf16(b) << 16, one conversion instruction for the pair. */
__device__ __forceinline__ uint32_t pack_rn(float a, float b)
{
	__nv_bfloat162 h = __floats2bfloat162_rn(a, b);
	return *reinterpret_cast<uint32_t *>(&h);
}

__device__ __forceinline__ void split_pair(float a, float b, uint32_t &h, uint32_t &l)
{
	h = pack_rn(a, b);
	float2 x = unpack2(h);
	l = pack_rn(a - x.x, b - x.y);
}

/* The A fragments (hi, lo) of R^T's columns 16 kk .. 16 kk + 15, from R held
 * as mma accumulators (the n-tiles 2 kk, 2 kk + 1). */
template <int NR>
__device__ __forceinline__ void state_frags(const float (&R)[NR][4], int kk, uint32_t ah[4],
					    uint32_t al[4])
{
	split_pair(R[2 * kk][0], R[2 * kk][1], ah[0], al[0]);
	split_pair(R[2 * kk][2], R[2 * kk][3], ah[1], al[1]);
	split_pair(R[2 * kk + 1][0], R[2 * kk + 1][1], ah[2], al[2]);
	split_pair(R[2 * kk + 1][2], R[2 * kk + 1][3], ah[3], al[3]);
}

/* An A fragment with its column k scaled by w[k], split into hi + lo. */
__device__ __forceinline__ void scale_cols(const uint32_t h[4], const float *w, uint32_t xh[4],
					   uint32_t xl[4])
{
	int t = threadIdx.x & 3;
	float2 wa = *(const float2 *)(w + 2 * t), wb = *(const float2 *)(w + 2 * t + 8);
#pragma unroll
	for (int i = 0; i < 4; i++) {
		float2 x = unpack2(h[i]), sc = i < 2 ? wa : wb;
		split_pair(x.x * sc.x, x.y * sc.y, xh[i], xl[i]);
	}
}

/* R^T[16 rows x 8 NR] += W^T diag(w) M over the 16 chunk rows of wh (W^T's
 * A fragment), M's columns from k0; w * W enters as hi + lo. */
template <int NR>
__device__ __forceinline__ void update_band(float (&R)[NR][4], const uint32_t wh[4],
					    const float *w, const op &M, int j0, int k0)
{
	uint32_t xh[4], xl[4];
	scale_cols(wh, w, xh, xl);
#pragma unroll
	for (int n = 0; n < NR; n += 2) {
		uint32_t mb[4];
		load_b2<true>(mb, M.hi, M.ld, j0, k0 + 8 * n);
#pragma unroll
		for (int u = 0; u < 2; u++) {
			mma(R[n + u], xh, mb + 2 * u);
			mma(R[n + u], xl, mb + 2 * u);
		}
	}
}

template <int NR> __device__ __forceinline__ void scale_state(float (&R)[NR][4], float g)
{
#pragma unroll
	for (int n = 0; n < NR; n++)
#pragma unroll
		for (int e = 0; e < 4; e++)
			R[n][e] *= g;
}

__device__ __forceinline__ op shifted(const op &o, int n)
{
	return op{o.hi + n, o.lo ? o.lo + n : nullptr, o.ld};
}

/* The rows of chunk c of F (unless NULL), M and W (columns cb.. of W) into
 * shared memory. */
template <int DA, int CW>
__device__ void issue_chunk(const dims &d, const pass<bf16> &p, const op &F, const op &M,
			    const op &W, long base, int c, int cb)
{
	if (p.F)
		issue_tile(F, p.F + (base + c) * p.da, p.da, BC, DA, d.N - c, p.da);
	issue_tile(M, p.M + (base + c) * p.da, p.da, BC, DA, d.N - c, p.da);
	issue_tile(W, p.W + (base + c) * p.dw + cb, p.dw, BC, CW, d.N - c, p.dw - cb);
}

/* What a block walks: its segment's chunks from c, nch of them, `step` apart
 * (REV: last to first), and the state it starts from (NULL: zero). Also
 * fills pw[p] = lambda^p, p <= BC (a barrier must follow). */
struct walk {
	const int *sq; /* seg of this sequence, or NULL */
	int nch, step, c;
	long base; /* (b*H + h) * N */
	const float *S0;
	long at; /* where the state-only walk's R goes in state_out */
};

template <bool REV, typename T>
__device__ walk walk_of(const dims &d, const pass<T> &p, const float *decay_s, const int *seg,
			int bh, float *pw)
{
	float s = decay_s[bh % d.H];
	for (int i = threadIdx.x; i <= BC; i += blockDim.x)
		pw[i] = expf(-s * (float)i);
	int sp = blockIdx.x + p.first, cs = sp * d.SR;
	int nch = (min(d.N, cs + d.SR) - cs + BC - 1) / BC;
	long si = (long)bh * p.nst + min((int)blockIdx.x * p.sst + p.soff, p.nst - 1);
	return walk{seg ? seg + (long)(bh / d.H) * d.N : nullptr, nch, REV ? -BC : BC,
		    REV ? cs + (nch - 1) * BC : cs, (long)bh * d.N,
		    p.state ? p.state + si * d.dk * d.dv : nullptr, (long)bh * d.TS + sp};
}

/* The decay factors of chunk [c, c+m): rs[i] for output row i (how much of R
 * reaches it), wu[j] for row j of M, W (its weight in the next R); returns g,
 * the factor of the old R in the next. Forward: R is the state after token
 * c-1 of its document; REV: the state at c+m of the queries after the chunk. */
template <bool REV>
__device__ float chunk_decay(const dims &d, const int *sq, int c, int m, const float *pw,
			     float *rs, float *wu)
{
	int last = sq ? sq[c + m - 1] : -1;
	bool more = c + m < d.N;
	int next = more && sq ? sq[c + m] : -1;
	for (int i = threadIdx.x; i < BC; i += blockDim.x) {
		int si = i < m && sq ? sq[c + i] : -1;
		if (REV) {
			rs[i] = i < m && more && next <= c + i ? pw[m - i] : 0.f;
			wu[i] = i < m && si <= c ? pw[i] : 0.f;
		} else {
			rs[i] = i < m && si < c ? pw[i + 1] : 0.f;
			wu[i] = i < m && c + i >= last ? pw[m - 1 - i] : 0.f;
		}
	}
	if (REV)
		return more && next <= c ? pw[m] : 0.f;
	return last >= c ? 0.f : pw[m];
}

/* stmatrix.x4.trans: four 8x8 bf16 matrices (a..d, each in the mma
 * fragment layout) stored transposed, the rows of matrix q at the addresses
 * of lanes 8q..8q+7. */
__device__ __forceinline__ void stsm4t(bf16 *p, uint32_t a, uint32_t b, uint32_t c, uint32_t d)
{
	unsigned s = (unsigned)__cvta_generic_to_shared(p);
	asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1,%2,%3,%4};\n" ::"r"(s),
		     "r"(a), "r"(b), "r"(c), "r"(d)
		     : "memory");
}

/* A warp's 16 columns x 64 rows of output (acc holds them transposed, as
 * chunk_seq computes them; warp w has columns 16w mod CW, written when
 * `mine`, warp-uniform) into rows [0, m), columns [0, ncols) of dst (row
 * stride ld), through `stage` (64 x (CW + 8) bf16 of shared memory, free on
 * entry) so that the stores are 16 bytes wide. SM: into `stage` by stmatrix
 * (rows 16 bytes and 4 banks apart: each 8x8 matrix conflict-free), four
 * instructions instead of 32 scalar stores (chunk_wg; in chunk_seq's blocks
 * of 128 registers it costs spills). */
template <int CW, bool SM = false>
__device__ void store_chunk(bf16 *dst, long ld, int m, int ncols, const float (&acc)[8][4],
			    bf16 *stage, bool mine)
{
	constexpr int LD = CW + 8;
	int r0 = 16 * (threadIdx.x >> 5) % CW, l = threadIdx.x & 31, g = l >> 2, t = l & 3;
	/* lane l: row l % 8 of matrix l / 8, (n + l / 16, r0 / 8 + l / 8 % 2) */
	bf16 *at = stage + (8 * (l >> 4) + (l & 7)) * LD + r0 + 8 * (l >> 3 & 1);
#pragma unroll
	for (int n = 0; n < (mine ? 8 : 0); n += SM ? 2 : 1)
		if (SM)
			stsm4t(at + 8 * n * LD, pack_rn(acc[n][0], acc[n][1]),
			       pack_rn(acc[n][2], acc[n][3]), pack_rn(acc[n + 1][0], acc[n + 1][1]),
			       pack_rn(acc[n + 1][2], acc[n + 1][3]));
		else
#pragma unroll
			for (int e = 0; e < 4; e++)
				stage[(8 * n + 2 * t + (e & 1)) * LD + r0 + g + 8 * (e >> 1)] =
					__float2bfloat16_rn(acc[n][e]);
	__syncthreads();
	bool vec = ld % 8 == 0 && ((uintptr_t)dst & 15) == 0;
	for (int it = threadIdx.x; it < BC * CW / 8; it += blockDim.x) {
		int i = it / (CW / 8), col = it % (CW / 8) * 8;
		const bf16 *src = stage + i * LD + col;
		if (i >= m || col >= ncols)
			continue;
		if (vec && col + 8 <= ncols)
			*(uint4 *)(dst + i * ld + col) = *(const uint4 *)src;
		else
			for (int k = 0; k < 8 && col + k < ncols; k++)
				dst[i * ld + col + k] = src[k];
	}
}

/* (3) One segment of chunks, walked in order (REV: backwards), for CW output
 * columns; warp w (of KS * CW / 16) owns output columns cb + 16 (w mod CW/16)..
 * and keeps the same rows of R^T, its part (w / (CW/16) of KS) of the columns,
 * in registers, as mma accumulators, which are the A fragments of the product
 * with F^T; the KS parts add their sums in shared memory (red). Per chunk (F its rows of the input the
 * output rows belong to, M and W the same rows of the other two inputs):
 *   out^T = R^T F^T diag(rs) + W^T P^T,  P = mask(F M^T) (REV: mask(M F^T)^T)
 *   R^T  <- g R^T + W^T diag(wu) M
 * so R = the decayed sum of M^T W over the chunks already walked:
 *   o:  F=Q,  M=K,  W=V,  R = S            dq: F=dO, M=V,  W=K,  R = S^T
 *   dk: F=V,  M=dO, W=Q,  R = R_b^T        dv: F=K,  M=Q,  W=dO, R = R_b
 * (S = sum k v^T forward, R_b = sum q dO^T backward, both [dk, dv]; STN: R^T
 * is the [dk, dv] state itself). The output goes through shared memory (bf16)
 * so that its stores are 16 bytes wide. ST (state only): no F, no output, R
 * from zero, and the final R of each segment into p.state_out[b,h,segment]. */
template <int DA, int CW, int KS, bool REV, bool STN, bool ST>
__global__ void __launch_bounds__(2 * CW * KS, DA <= 64 && CW <= 64 ? 2 : 1)
	chunk_seq(dims d, pass<bf16> p, const float *decay_s, const int *seg)
{
	extern __shared__ __align__(16) char smem[];
	constexpr int NB = CW / 16, NW = NB * KS, NR = DA / KS / 8;
	constexpr int JP = BC / 16 / KS; /* k-steps of W^T P^T per part */
	int w = threadIdx.x >> 5, r0 = 16 * (w % NB), part = KS > 1 ? w / NB : 0;
	int k0 = part * (DA / KS);
	int bh = blockIdx.y, cb = blockIdx.z * CW, g4 = (threadIdx.x & 31) >> 2, t4 = threadIdx.x & 3;
	smem_alloc al{smem};
	op F0 = al.take(BC, DA, false), M0 = al.take(BC, DA, false), W0 = al.take(BC, CW, false);
	int stage = (int)((bf16 *)al.p - F0.hi); /* bf16 elements per stage; two stages */
	al.p += stage * sizeof(bf16);
	op P = al.take(BC, BC, true);
	float *pw = (float *)al.p, *rs = pw + 2 * BC, *wu = rs + BC, *red = wu + BC;
	walk wk = walk_of<REV>(d, p, decay_s, seg, bh, pw);
	const int *sq = wk.sq;
	int nch = wk.nch, step = wk.step, c = wk.c;
	long base = wk.base;
	const float *S0 = wk.S0;
	float R[NR][4];
#pragma unroll
	for (int n = 0; n < NR; n++)
#pragma unroll
		for (int e = 0; e < 4; e++) {
			int r = cb + r0 + g4 + 8 * (e >> 1), k = k0 + 8 * n + 2 * t4 + (e & 1);
			R[n][e] = S0 && r < p.dw && k < p.da ? S0[state_at<STN>(d, r, k)] : 0.f;
		}
	issue_chunk<DA, CW>(d, p, F0, M0, W0, base, c, cb);
	cp_commit();
	__syncthreads(); /* pw */
	for (int it = 0; it < nch; it++, c += step) {
		int m = min(BC, d.N - c), now = (it & 1) * stage, next = stage - now;
		op F = shifted(F0, now), M = shifted(M0, now), W = shifted(W0, now);
		if (it + 1 < nch)
			issue_chunk<DA, CW>(d, p, shifted(F0, next), shifted(M0, next), shifted(W0, next),
					    base, c + step, cb);
		cp_commit();
		float g = chunk_decay<REV>(d, sq, c, m, pw, rs, wu);
		cp_wait<1>();
		__syncthreads(); /* this chunk's tiles, rs, wu */
		float acc[8][4];
		zero(acc);
		if (!ST) {
			chunk ch = chunk_of(d, seg, c, bh);
			if (REV)
				masked_scores<NW>(ch, M, F, DA, P, pw);
			else
				masked_scores<NW>(ch, F, M, DA, P, pw);
			__syncthreads(); /* P */
		}
		if (!ST && (it > 0 || S0)) { /* R^T F^T, R^T split into hi + lo as it goes */
#pragma unroll
			for (int kk = 0; kk < NR / 2; kk++) {
				uint32_t ah[4], al[4];
				state_frags(R, kk, ah, al);
				mma_band2<false>(acc, ah, al, F.hi, F.ld, k0 + 16 * kk);
			}
			scale_acc(acc, rs);
		}
		scale_state(R, g);
#pragma unroll
		for (int jj = 0; jj < BC / 16; jj++) {
			uint32_t wh[4];
			load_a<true>(wh, W.hi, W.ld, r0, 16 * jj);
			if (!ST && jj / JP == part) { /* W^T P^T */
				mma_band<REV>(acc, wh, P.hi, P.ld, 16 * jj);
				mma_band<REV>(acc, wh, P.lo, P.ld, 16 * jj);
			}
			update_band(R, wh, wu + 16 * jj, M, 16 * jj, k0); /* R^T += W^T diag(wu) M */
		}
		int lane = threadIdx.x & 31;
		if (!ST && part > 0) /* the parts' sums meet in part 0 */
#pragma unroll
			for (int n = 0; n < 8; n++)
#pragma unroll
				for (int e = 0; e < 4; e++)
					red[((part - 1) * 32 + 4 * n + e) * NB * 32 + (w % NB) * 32 + lane] =
						acc[n][e];
		__syncthreads(); /* P, the tiles, rs, wu are free; red is written */
		if (!ST && part == 0)
			for (int q = 1; q < KS; q++)
#pragma unroll
				for (int n = 0; n < 8; n++)
#pragma unroll
					for (int e = 0; e < 4; e++)
						acc[n][e] += red[((q - 1) * 32 + 4 * n + e) * NB * 32 +
								 w * 32 + lane];
		if (!ST)
			store_chunk<CW>(p.out + (base + c) * p.dw + cb, p.dw, m, p.dw - cb, acc,
					   P.hi, part == 0);
	}
	if (p.state_out && (ST || blockIdx.x == gridDim.x - 1)) {
		long at = ST ? wk.at : bh;
		float *So = p.state_out + at * d.dk * d.dv;
#pragma unroll
		for (int n = 0; n < NR; n++)
#pragma unroll
			for (int e = 0; e < 4; e++) {
				int r = cb + r0 + g4 + 8 * (e >> 1), k = k0 + 8 * n + 2 * t4 + (e & 1);
				if (r < p.dw && k < p.da)
					So[state_at<STN>(d, r, k)] = R[n][e];
			}
	}
}

/* (3') dk and dv in one backward walk (bf16, dk and dv padded to D = 128):
 * both walks of chunk_seq share the state R_b = sum q dO^T, so one block
 * keeps it once, in registers as the dk walk does (warp w: rows 16 (w mod
 * D/16).. of dk, its part of dv), and copies it (hi + lo) to shared memory
 * each chunk for the dv output,
 *   dv^T = R_b^T K^T diag(rs) + dO^T Pv^T,  Pv = mask(Q K^T)^T,
 * whose A fragments it reads transposed. The four tiles (K, V, Q, dO) are
 * read once for both outputs; K, last used by dv, has one buffer (the next
 * chunk's K is fetched while dk is computed); R_b's copy is also the staging
 * area of both outputs' stores (hi) and the parts' reduction buffer (lo, once
 * the dv products are done), which is what lets it all fit. pk and pv are
 * the passes of the two walks. */
template <int D>
__global__ void __launch_bounds__(4 * D, 1) chunk_dkv(dims d, pass<bf16> pk, pass<bf16> pv,
						      const float *decay_s, const int *seg)
{
	extern __shared__ __align__(16) char smem[];
	constexpr int NB = D / 16, NW = 2 * NB, NR = D / 16, JP = BC / 32;
	static_assert(32 * 32 * NB * sizeof(float) <= D * (D + 8) * sizeof(bf16), "red in Rs.lo");
	int w = threadIdx.x >> 5, r0 = 16 * (w % NB), part = w / NB, k0 = part * (D / 2);
	int bh = blockIdx.y, g4 = (threadIdx.x & 31) >> 2, t4 = threadIdx.x & 3, lane = threadIdx.x & 31;
	smem_alloc al{smem};
	op V0 = al.take(BC, D, false), Q0 = al.take(BC, D, false), G0 = al.take(BC, D, false);
	int stage = (int)((bf16 *)al.p - V0.hi);
	al.p += stage * sizeof(bf16);
	op K = al.take(BC, D, false), Pk = al.take(BC, BC, true), Pv = al.take(BC, BC, true);
	op Rs = al.take(D, D, true);
	float *pw = (float *)al.p, *rs = pw + 2 * BC, *wu = rs + BC, *red = (float *)Rs.lo;
	walk wk = walk_of<true>(d, pk, decay_s, seg, bh, pw);
	const int *sq = wk.sq;
	int nch = wk.nch, c = wk.c;
	long base = wk.base;
	const float *S0 = wk.S0;
	float R[NR][4]; /* R_b[dk][dv], rows r0 + .., columns k0 + .. */
#pragma unroll
	for (int n = 0; n < NR; n++)
#pragma unroll
		for (int e = 0; e < 4; e++) {
			int r = r0 + g4 + 8 * (e >> 1), k = k0 + 8 * n + 2 * t4 + (e & 1);
			R[n][e] = S0 && r < pk.dw && k < pk.da ? S0[state_at<true>(d, r, k)] : 0.f;
		}
	auto issue_k = [&](int cc) {
		issue_tile(K, pv.F + (base + cc) * pv.da, pv.da, BC, D, d.N - cc, pv.da);
	};
	auto issue = [&](int at, int cc) {
		issue_tile(shifted(V0, at), pk.F + (base + cc) * pk.da, pk.da, BC, D, d.N - cc, pk.da);
		issue_tile(shifted(Q0, at), pk.W + (base + cc) * pk.dw, pk.dw, BC, D, d.N - cc, pk.dw);
		issue_tile(shifted(G0, at), pk.M + (base + cc) * pk.da, pk.da, BC, D, d.N - cc, pk.da);
	};
	/* the KS = 2 parts' sums meet in part 0, which stores the chunk; `wait`:
	 * other warps may still read Rs.lo */
	auto finish = [&](float(&acc)[8][4], const pass<bf16> &p, int m, bool wait) {
		if (wait)
			__syncthreads();
		if (part > 0)
#pragma unroll
			for (int n = 0; n < 8; n++)
#pragma unroll
				for (int e = 0; e < 4; e++)
					red[((4 * n + e) * NB + w % NB) * 32 + lane] = acc[n][e];
		__syncthreads(); /* red */
		if (part == 0)
#pragma unroll
			for (int n = 0; n < 8; n++)
#pragma unroll
				for (int e = 0; e < 4; e++)
					acc[n][e] += red[((4 * n + e) * NB + w) * 32 + lane];
		store_chunk<D>(p.out + (base + c) * p.dw, p.dw, m, p.dw, acc, Rs.hi, part == 0);
	};
	issue(0, c);
	issue_k(c);
	cp_commit();
	__syncthreads(); /* pw */
	for (int it = 0; it < nch; it++, c -= BC) {
		int m = min(BC, d.N - c), now = (it & 1) * stage, next = stage - now;
		op V = shifted(V0, now), Q = shifted(Q0, now), G = shifted(G0, now);
		if (it + 1 < nch)
			issue(next, c - BC);
		cp_commit();
		float g = chunk_decay<true>(d, sq, c, m, pw, rs, wu);
		cp_wait<1>(); /* all but the next chunk's V, Q, dO: this chunk's tiles and K */
		__syncthreads(); /* this chunk's tiles, rs, wu; the last stores' staging is read */
#pragma unroll
		for (int n = 0; n < NR; n++)
#pragma unroll
			for (int e = 0; e < 4; e += 2) {
				int at = (r0 + g4 + 4 * e) * Rs.ld + k0 + 8 * n + 2 * t4;
				split_pair(R[n][e], R[n][e + 1], *(uint32_t *)(Rs.hi + at),
					   *(uint32_t *)(Rs.lo + at));
			}
		chunk ch = chunk_of(d, seg, c, bh);
		masked_scores<NW>(ch, G, V, D, Pk, pw);
		masked_scores<NW>(ch, Q, K, D, Pv, pw);
		__syncthreads(); /* Pk, Pv, Rs */
		bool carry = it > 0 || S0;
		float acc[8][4];
		zero(acc);
		if (carry) { /* R_b^T K^T, this part's half of dk */
#pragma unroll
			for (int kk = 0; kk < D / 32; kk++) {
				uint32_t ah[4], al[4];
				load_a<true>(ah, Rs.hi, Rs.ld, r0, k0 + 16 * kk);
				load_a<true>(al, Rs.lo, Rs.ld, r0, k0 + 16 * kk);
				mma_band2<false>(acc, ah, al, K.hi, K.ld, k0 + 16 * kk);
			}
			scale_acc(acc, rs);
		}
#pragma unroll
		for (int jj = part * JP; jj < (part + 1) * JP; jj++) { /* dO^T Pv^T */
			uint32_t wh[4];
			load_a<true>(wh, G.hi, G.ld, r0, 16 * jj);
			mma_band<true>(acc, wh, Pv.hi, Pv.ld, 16 * jj);
			mma_band<true>(acc, wh, Pv.lo, Pv.ld, 16 * jj);
		}
		finish(acc, pv, m, true); /* its barriers: every read of K is done */
		if (it + 1 < nch)
			issue_k(c - BC);
		cp_commit();
		zero(acc);
		if (carry) { /* R_b V^T, R_b's fragments as the A operand */
#pragma unroll
			for (int kk = 0; kk < NR / 2; kk++) {
				uint32_t ah[4], al[4];
				state_frags(R, kk, ah, al);
				mma_band2<false>(acc, ah, al, V.hi, V.ld, k0 + 16 * kk);
			}
			scale_acc(acc, rs);
		}
		scale_state(R, g);
#pragma unroll
		for (int jj = 0; jj < BC / 16; jj++) {
			uint32_t wh[4];
			load_a<true>(wh, Q.hi, Q.ld, r0, 16 * jj);
			if (jj / JP == part) { /* Q^T Pk^T */
				mma_band<true>(acc, wh, Pk.hi, Pk.ld, 16 * jj);
				mma_band<true>(acc, wh, Pk.lo, Pk.ld, 16 * jj);
			}
			update_band(R, wh, wu + 16 * jj, G, 16 * jj, k0); /* R_b += Q^T diag(wu) dO */
		}
		finish(acc, pk, m, false);
	}
}

/* ---- (3w) the forward output walk on wgmma (bf16, dk = dv = 128) ----
 * Tiles of 64 rows x 128 bf16 are two halves of 64 rows x 128 bytes (8 KB
 * each, 1024-byte aligned), the 16-byte piece c of row r stored at c ^ (r mod
 * 8): the hardware's 128-byte swizzle, read by wgmma through descriptors as
 * K-major (rows along M or N) or MN-major (rows along K). */
constexpr int WG_T = 2 * 64 * 128; /* bytes of a 64 x 128 bf16 tile */

/* Byte offset of the 16-byte piece pc (0..15) of row r of a tile. */
__device__ __forceinline__ int sw_off(int r, int pc)
{
	return (pc >> 3) * 8192 + r * 128 + (((pc & 7) ^ (r & 7)) << 4);
}

/* Rows [0, nrows) of a [*, 128] bf16 matrix into a swizzled tile, zeros below. */
__device__ void wg_issue(char *tile, const bf16 *src, int nrows)
{
	for (int it = threadIdx.x; it < 64 * 16; it += blockDim.x) {
		int r = it >> 4, pc = it & 15;
		char *dst = tile + sw_off(r, pc);
		if (r < nrows)
			cp_async16(dst, src + r * 128 + pc * 8);
		else
			*(uint4 *)dst = make_uint4(0, 0, 0, 0);
	}
}

/* A wgmma shared-memory descriptor, 128-byte swizzle: K-major operands step
 * 8-row groups by 1024 bytes (sbo); MN-major ones (one 64-wide atom along MN
 * here) step their 8-row groups along K by 1024 bytes too, so both offsets
 * hold 1024 there. */
__device__ __forceinline__ uint64_t wg_desc(const char *p, bool mn)
{
	uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
	uint64_t lbo = mn ? 1024 >> 4 : 1, sbo = 1024 >> 4;
	return (uint64_t)((a & 0x3FFFF) >> 4) | lbo << 16 | sbo << 32 | 1ull << 62;
}

/* K-major descriptor of k-step ks (16 columns) of a tile. */
__device__ __forceinline__ uint64_t wg_kdesc(const char *tile, int ks)
{
	return wg_desc(tile + (ks >> 2) * 8192 + (ks & 3) * 32, false);
}

__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void wg_wait()
{
	asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
__device__ __forceinline__ void fence_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

/* Keep registers that an asynchronous wgmma reads or writes where they are
 * (the compiler must not move or reuse them before the wait). */
__device__ __forceinline__ void wg_keep1(float &x) { asm volatile("" : "+f"(x)::"memory"); }
__device__ __forceinline__ void wg_keep1(uint32_t &x) { asm volatile("" : "+r"(x)::"memory"); }
template <typename X, int NT> __device__ __forceinline__ void wg_keep(X (&a)[NT][4])
{
#pragma unroll
	for (int n = 0; n < NT; n++)
#pragma unroll
		for (int e = 0; e < 4; e++)
			wg_keep1(a[n][e]);
}

#define WG_D8(d, n) "+f"(d[n][0]), "+f"(d[n][1]), "+f"(d[n][2]), "+f"(d[n][3])
#define WG_D32(d) WG_D8(d, 0), WG_D8(d, 1), WG_D8(d, 2), WG_D8(d, 3)
#define WG_D64(d) WG_D32(d), WG_D8(d, 4), WG_D8(d, 5), WG_D8(d, 6), WG_D8(d, 7)
/* scale-d = 1 (accumulate) as the predicate p, from operand n */
#define WG_ACC(n) "{\n.reg .pred p;\nsetp.ne.b32 p, %" #n ", 0;\n"
#define WG_R16 "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15}"
#define WG_R32                                                                              \
	"{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22," \
	"%23,%24,%25,%26,%27,%28,%29,%30,%31}"

/* wgmma with both operands from shared memory: A M-major when TA, B N-major
 * when TB (operand it); descriptors in operands ia and ib, scale-d in ip. */
#define WG_SS(shape, regs, ia, ib, ip, TA, TB)                                             \
	WG_ACC(ip) "wgmma.mma_async.sync.aligned." shape ".f32.bf16.bf16 " regs ", %" #ia    \
		   ", %" #ib ", p, 1, 1, " #TA ", " TB ";\n}\n"

/* d[64 x 32] += A . B, K-major. */
__device__ __forceinline__ void wg_ss32(float (&d)[4][4], uint64_t a, uint64_t b)
{
	asm volatile(WG_SS("m64n32k16", WG_R16, 16, 17, 18, 0, "0") : WG_D32(d) : "l"(a), "l"(b), "r"(1));
}

/* d[64 x 64] += A . B, A M-major, B N-major when TB. */
template <int TB> __device__ __forceinline__ void wg_ss64t(float (&d)[8][4], uint64_t a, uint64_t b)
{
	asm volatile(WG_SS("m64n64k16", WG_R32, 32, 33, 34, 1, "%35")
		     : WG_D64(d)
		     : "l"(a), "l"(b), "r"(1), "n"(TB));
}

/* d[64 x 64] += A . B, A from registers (the mma.sync A fragment of each
 * warp's 16 rows), B from shared memory, N-major when TB. */
template <int TB>
__device__ __forceinline__ void wg_rs64(float (&d)[8][4], const uint32_t (&a)[4], uint64_t b)
{
	asm volatile(WG_ACC(37)
		     "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " WG_R32
		     ", {%32,%33,%34,%35}, %36, p, 1, 1, %38;\n}\n"
		     : WG_D64(d)
		     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1), "n"(TB));
}

/* The A fragment (16 x 16, rows r0.., columns k0..) of X^T for a tile X:
 * A(i, k) = X[k0 + k][r0 + i]. */
__device__ __forceinline__ void wg_load_at(uint32_t a[4], const char *X, int r0, int k0)
{
	int l = threadIdx.x & 31, q = l >> 3, j = k0 + (q >> 1) * 8 + (l & 7);
	ldsm4<true>(a, (const bf16 *)(X + sw_off(j, (r0 >> 3) + (q & 1))));
}

/* Scores of the forward, masked and decayed: P[i][j] for this warpgroup's
 * 32 columns (S as the m64n32 accumulators), hi + lo into swizzled 64 x 64
 * tiles (one half each). */
__device__ __forceinline__ void wg_scores(const chunk &ch, const float (&S)[4][4], int j0,
					  const float *pw, char *Ph, char *Pl)
{
	int wi = (threadIdx.x >> 5) & 3, g4 = (threadIdx.x & 31) >> 2, t4 = threadIdx.x & 3;
#pragma unroll
	for (int n = 0; n < 4; n++)
#pragma unroll
		for (int h = 0; h < 2; h++) {
			int i = 16 * wi + g4 + 8 * h, j = j0 + 8 * n + 2 * t4, t = ch.c + i;
			float x[2];
#pragma unroll
			for (int u = 0; u < 2; u++) {
				int k = ch.c + j + u;
				bool keep = t >= k && ch.seg_of(t) <= k;
				x[u] = keep ? S[n][2 * h + u] * pw[i - j - u] : 0.f;
			}
			int at = i * 128 + (((j >> 3) ^ (i & 7)) << 4) + (j & 7) * 2;
			split_pair(x[0], x[1], *(uint32_t *)(Ph + at), *(uint32_t *)(Pl + at));
		}
}

/* (3w) chunk_seq's walk (REV, STN, ST as there) at dk = dv = 128 on wgmma.
 * Warpgroup g (of two) owns output columns 64g.. and the same rows of R^T,
 * as m64n128 accumulators (64 per thread). Per chunk, in the order issued
 * (the tensor cores run the state update and R^T F^T while the warps mask
 * the scores):
 *   Sg  = F M[32g..)^T (REV: M F[32g..)^T)  (both operands in shared memory)
 *   o^T = R^T F^T                           (A: R^T's registers, hi + lo; B: F)
 *   R^T = g R^T + (W^T diag(wu)) M          (A: W^T from ldmatrix, scaled, hi + lo; B: M, N-major)
 *   P   = mask(S), hi + lo, shared by both warpgroups through shared memory
 *   o^T = o^T diag(rs) + W^T P^T (REV: W^T P) (A: W, M-major; B: P hi, lo)
 * The tiles of the next chunk arrive by cp.async while this one is computed;
 * the output leaves through shared memory (store_chunk). ST (state only):
 * M and W tiles alone, R from zero, no output, the final R into
 * p.state_out[b,h,span]. */
template <bool REV, bool STN, bool ST>
__global__ void __launch_bounds__(256, ST ? 2 : 1)
	chunk_wg(dims d, pass<bf16> p, const float *decay_s, const int *seg)
{
	constexpr int NT = ST ? 2 : 3; /* tiles a stage: (F,) M, W */
	extern __shared__ __align__(16) char smem[];
	uint32_t s0 = (uint32_t)__cvta_generic_to_shared(smem);
	char *sm = smem + ((1024 - (s0 & 1023)) & 1023); /* 1024-aligned for the swizzle */
	char *Ph = sm + 2 * NT * WG_T, *Pl = Ph + 8192;
	bf16 *stage = (bf16 *)(Pl + 8192);
	float *pw = ST ? (float *)Ph : (float *)(stage + BC * 136), *rs = pw + 2 * BC, *wu = rs + BC;
	int wg = threadIdx.x >> 7, wi = (threadIdx.x >> 5) & 3, g4 = (threadIdx.x & 31) >> 2;
	int t4 = threadIdx.x & 3, bh = blockIdx.y, r0 = 64 * wg + 16 * wi;
	walk wk = walk_of<REV>(d, p, decay_s, seg, bh, pw);
	int nch = wk.nch, c = wk.c, step = wk.step;
	long base = wk.base;
	const float *S0 = wk.S0;
	float R[16][4]; /* R^T[r0 + g4 (+8)][8n + 2t4 (+1)] */
#pragma unroll
	for (int n = 0; n < 16; n++)
#pragma unroll
		for (int e = 0; e < 4; e++)
			R[n][e] = S0 ? S0[state_at<STN>(d, r0 + g4 + 8 * (e >> 1), 8 * n + 2 * t4 + (e & 1))]
				     : 0.f;
	float(&R0)[8][4] = *reinterpret_cast<float(*)[8][4]>(&R[0]);
	float(&R1)[8][4] = *reinterpret_cast<float(*)[8][4]>(&R[8]);
	auto issue = [&](int st, int cc) {
		char *t = sm + st * NT * WG_T;
		if (!ST)
			wg_issue(t, p.F + (base + cc) * 128, d.N - cc);
		wg_issue(t + (NT - 2) * WG_T, p.M + (base + cc) * 128, d.N - cc);
		wg_issue(t + (NT - 1) * WG_T, p.W + (base + cc) * 128, d.N - cc);
	};
	issue(0, c);
	cp_commit();
	__syncthreads(); /* pw */
	for (int it = 0; it < nch; it++, c += step) {
		int m = min(BC, d.N - c), st = it & 1;
		const char *F = sm + st * NT * WG_T, *M = F + (NT - 2) * WG_T, *W = M + WG_T;
		if (it + 1 < nch)
			issue(st ^ 1, c + step);
		cp_commit();
		float g = chunk_decay<REV>(d, wk.sq, c, m, pw, rs, wu);
		cp_wait<1>();
		fence_async(); /* this thread's tile writes, to the tensor cores */
		__syncthreads(); /* this chunk's tiles, rs, wu */
		bool carry = it > 0 || S0;
		float S[4][4], acc[8][4];
		uint32_t rh[8][4], rl[8][4], xh[4][4], xl[4][4];
		if (!ST) {
			zero(S);
			zero(acc);
#pragma unroll
			for (int kk = 0; kk < 8; kk++)
				state_frags(R, kk, rh[kk], rl[kk]);
		}
		scale_state(R, g); /* R^T F^T reads R's hi + lo copies */
		if (!ST) {
			wg_keep(S);
			wg_keep(acc);
			wg_fence();
#pragma unroll
			for (int ks = 0; ks < 8; ks++)
				wg_ss32(S, wg_kdesc(REV ? M : F, ks), wg_kdesc((REV ? F : M) + 4096 * wg, ks));
			wg_commit();
			if (carry)
#pragma unroll
				for (int kk = 0; kk < 8; kk++) {
					wg_rs64<0>(acc, rh[kk], wg_kdesc(F, kk));
					wg_rs64<0>(acc, rl[kk], wg_kdesc(F, kk));
				}
			wg_commit();
		}
#pragma unroll
		for (int jj = 0; jj < 4; jj++) {
			uint32_t vh[4];
			wg_load_at(vh, W, r0, 16 * jj);
			scale_cols(vh, wu + 16 * jj, xh[jj], xl[jj]);
		}
		wg_keep(R);
		wg_fence();
#pragma unroll
		for (int jj = 0; jj < 4; jj++) {
			uint64_t b0 = wg_desc(M + 2048 * jj, true), b1 = wg_desc(M + 8192 + 2048 * jj, true);
			wg_rs64<1>(R0, xh[jj], b0);
			wg_rs64<1>(R0, xl[jj], b0);
			wg_rs64<1>(R1, xh[jj], b1);
			wg_rs64<1>(R1, xl[jj], b1);
		}
		wg_commit();
		if (!ST) {
			wg_wait<2>(); /* the scores */
			wg_keep(S);
			wg_scores(chunk_of(d, seg, c, bh), S, 32 * wg, pw, Ph, Pl);
			fence_async();
			__syncthreads(); /* P */
			wg_wait<1>(); /* R^T F^T; the state update may still run */
			wg_keep(acc);
			wg_keep(rh);
			wg_keep(rl);
			if (carry)
				scale_acc(acc, rs);
			wg_keep(acc);
			wg_fence();
#pragma unroll
			for (int ks = 0; ks < 4; ks++) {
				/* P's rows are the k index when REV (N-major), else its columns */
				uint64_t a = wg_desc(W + 8192 * wg + 2048 * ks, true);
				int at = REV ? 2048 * ks : 32 * ks;
				wg_ss64t<REV>(acc, a, wg_desc(Ph + at, REV));
				wg_ss64t<REV>(acc, a, wg_desc(Pl + at, REV));
			}
			wg_commit();
		}
		wg_wait<0>();
		wg_keep(R);
		wg_keep(xh);
		wg_keep(xl);
		if (!ST) {
			wg_keep(acc);
			store_chunk<128, true>(p.out + (base + c) * 128, 128, m, 128, acc, stage, true);
		} else {
			__syncthreads(); /* the tiles and wu are free */
		}
	}
	if (p.state_out && (ST || blockIdx.x == gridDim.x - 1)) {
		float *So = p.state_out + (ST ? wk.at : bh) * 128 * 128;
#pragma unroll
		for (int n = 0; n < 16; n++)
#pragma unroll
			for (int e = 0; e < 4; e++)
				So[state_at<STN>(d, r0 + g4 + 8 * (e >> 1), 8 * n + 2 * t4 + (e & 1))] =
					R[n][e];
	}
}

/* fp32 inputs (the checking mode): the walk of chunk_seq on the CUDA cores,
 * fp32 throughout, so results are exact to fp32 rounding (the tensor cores'
 * bf16 pairs are not: ~2e-5). One block of 256 threads per segment and 32
 * output columns; R [da][32] in shared memory, F and M rows padded by one
 * float so that the score loop reads 16 different rows without conflicts. */
template <bool REV, bool STN, bool ST>
__global__ void __launch_bounds__(256) chunk_seq_f32(dims d, pass<float> p, const float *decay_s,
						     const int *seg)
{
	extern __shared__ __align__(16) char smem[];
	const int da = p.da, FS = da + 1, PS = BC + 1, t = threadIdx.x, lane = t & 31, wq = t >> 5;
	int bh = blockIdx.y, cb = blockIdx.z * 32;
	float *F = (float *)smem, *M = F + BC * FS, *W = M + BC * FS, *P = W + BC * 32;
	float *R = P + BC * PS, *pw = R + da * 32, *rs = pw + 2 * BC, *wu = rs + BC;
	walk wk = walk_of<REV>(d, p, decay_s, seg, bh, pw);
	const int *sq = wk.sq;
	int nch = wk.nch, step = wk.step, c = wk.c;
	long base = wk.base;
	const float *S0 = wk.S0;
	for (int e = t; e < da * 32; e += blockDim.x) {
		int r = cb + e % 32;
		R[e] = S0 && r < p.dw ? S0[state_at<STN>(d, r, e / 32)] : 0.f;
	}
	__syncthreads(); /* pw */
	for (int it = 0; it < nch; it++, c += step) {
		int m = min(BC, d.N - c);
		for (int e = t; e < BC * da; e += blockDim.x) {
			int i = e / da, k = e % da;
			if (!ST)
				F[i * FS + k] = i < m ? p.F[(base + c + i) * da + k] : 0.f;
			M[i * FS + k] = i < m ? p.M[(base + c + i) * da + k] : 0.f;
		}
		for (int e = t; e < BC * 32; e += blockDim.x) {
			int j = e / 32, col = cb + e % 32;
			W[e] = j < m && col < p.dw ? p.W[(base + c + j) * p.dw + col] : 0.f;
		}
		float g = chunk_decay<REV>(d, sq, c, m, pw, rs, wu);
		__syncthreads(); /* tiles, rs, wu */
		if (!ST) {
			/* P[i][j] = mask(F_i . M_j): the query is i (REV: j) */
			chunk ch = chunk_of(d, seg, c, bh);
			int i0 = 4 * (t / 16), j0 = 4 * (t % 16);
			float acc[4][4] = {};
			for (int k = 0; k < da; k++) {
				float f[4], x[4];
#pragma unroll
				for (int a = 0; a < 4; a++)
					f[a] = F[(i0 + a) * FS + k], x[a] = M[(j0 + a) * FS + k];
#pragma unroll
				for (int a = 0; a < 4; a++)
#pragma unroll
					for (int b = 0; b < 4; b++)
						acc[a][b] += f[a] * x[b];
			}
#pragma unroll
			for (int a = 0; a < 4; a++)
#pragma unroll
				for (int b = 0; b < 4; b++) {
					int q = REV ? j0 + b : i0 + a, k = REV ? i0 + a : j0 + b;
					bool keep = q >= k && ch.seg_of(c + q) <= c + k;
					P[(i0 + a) * PS + j0 + b] = keep ? acc[a][b] * pw[q - k] : 0.f;
				}
			__syncthreads(); /* P */
			for (int i = wq; i < BC; i += blockDim.x / 32) {
				float x = 0.f, y = 0.f;
				for (int j = 0; j < BC; j++)
					x += P[i * PS + j] * W[j * 32 + lane];
				for (int a = 0; a < da; a++)
					y += F[i * FS + a] * R[a * 32 + lane];
				if (i < m && cb + lane < p.dw)
					p.out[(base + c + i) * p.dw + cb + lane] = x + rs[i] * y;
			}
			__syncthreads(); /* R is read */
		}
		for (int a = wq; a < da; a += blockDim.x / 32) {
			float x = 0.f;
			for (int j = 0; j < BC; j++)
				x += wu[j] * M[j * FS + a] * W[j * 32 + lane];
			R[a * 32 + lane] = g * R[a * 32 + lane] + x;
		}
		__syncthreads(); /* the tiles, P, rs, wu are free */
	}
	if (p.state_out && (ST || blockIdx.x == gridDim.x - 1)) {
		long at = ST ? wk.at : bh;
		float *So = p.state_out + at * d.dk * d.dv;
		for (int e = t; e < da * 32; e += blockDim.x)
			if (cb + e % 32 < p.dw)
				So[state_at<STN>(d, cb + e % 32, e / 32)] = R[e];
	}
}

/* seg[b][t] from the CSR offsets: the last start <= t, or -1. */
__global__ void make_seg(int B, int N, const int *ptr, const int *start, int *seg)
{
	long e = (long)blockIdx.x * blockDim.x + threadIdx.x;
	if (e >= (long)B * N)
		return;
	int b = (int)(e / N), t = (int)(e % N), lo = ptr[b], hi = ptr[b + 1];
	while (lo < hi) { /* first start > t */
		int mid = (lo + hi) / 2;
		if (start[mid] <= t)
			lo = mid + 1;
		else
			hi = mid;
	}
	seg[e] = lo > ptr[b] ? start[lo - 1] : -1;
}

/* Decode: one block per (b, h), the state streamed once in 16-byte pieces:
 * thread (g, c) owns the four columns 4c..4c+3 of rows x = g (mod G), G =
 * 256 / (dv / 4) row groups, so a warp reads whole rows (dv = 128: 512
 * bytes) and each element is read and written once; the G partial outputs
 * meet in shared memory. dv is a multiple of 4 (check_shape). */
template <typename T>
__global__ void __launch_bounds__(256) decode_step(int H, int dk, int dv, const T *q, const T *k,
						   const T *v, const float *decay_s, float *state,
						   T *o)
{
	__shared__ float qs[256], ks[256];
	__shared__ float4 part[256];
	int bh = blockIdx.x, quads = dv / 4, groups = 256 / quads;
	int c = threadIdx.x % quads, g = threadIdx.x / quads;
	for (int x = threadIdx.x; x < dk; x += 256) {
		qs[x] = to_f(q[(long)bh * dk + x]);
		ks[x] = to_f(k[(long)bh * dk + x]);
	}
	__syncthreads();
	float lambda = expf(-decay_s[bh % H]);
	float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
	if (g < groups) {
		const T *vp = v + (long)bh * dv + 4 * c;
		float4 vy = make_float4(to_f(vp[0]), to_f(vp[1]), to_f(vp[2]), to_f(vp[3]));
		float4 *S = reinterpret_cast<float4 *>(state + (long)bh * dk * dv) + c;
#pragma unroll 4
		for (int x = g; x < dk; x += groups) {
			float4 s = S[(long)x * quads];
			float kx = ks[x], qx = qs[x];
			s.x = lambda * s.x + kx * vy.x;
			s.y = lambda * s.y + kx * vy.y;
			s.z = lambda * s.z + kx * vy.z;
			s.w = lambda * s.w + kx * vy.w;
			S[(long)x * quads] = s;
			acc.x += qx * s.x;
			acc.y += qx * s.y;
			acc.z += qx * s.z;
			acc.w += qx * s.w;
		}
	}
	part[threadIdx.x] = acc;
	__syncthreads();
	if (g == 0) {
		for (int r = 1; r < groups; r++) {
			float4 p = part[r * quads + c];
			acc.x += p.x;
			acc.y += p.y;
			acc.z += p.z;
			acc.w += p.w;
		}
		T *op = o + (long)bh * dv + 4 * c;
		op[0] = from_f<T>(acc.x);
		op[1] = from_f<T>(acc.y);
		op[2] = from_f<T>(acc.z);
		op[3] = from_f<T>(acc.w);
	}
}

/* ---- host side ---- */

int cuda_fail(cudaError_t e, const char *what)
{
	return tn_fail(TN_EIO, "lightning_attn_cuda: %s: %s", what, cudaGetErrorString(e));
}

int check_shape(const struct tn_attn_shape *sh)
{
	int rc = lightning_attn_check(sh, nullptr);
	if (rc)
		return rc;
	if (sh->dk > 256 || sh->dv > 128 || sh->dv % 4)
		return tn_fail(TN_EDATA, "lightning_attn_cuda: dk=%d dv=%d: the kernels take "
					 "dk <= 256 and dv <= 128, a multiple of 4", sh->dk, sh->dv);
	return TN_OK;
}

/* Launch a kernel with `bytes` of dynamic shared memory, raising the limit. */
template <typename K, typename... A>
cudaError_t launch(K kern, dim3 grid, int threads, int bytes, cudaStream_t st, A... args)
{
	cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
	if (e != cudaSuccess)
		return e;
	kern<<<grid, threads, bytes, st>>>(args...);
	return cudaGetLastError();
}

/* KS = 2 (two warps per 16 output columns, each with half of R's columns)
 * where the registers allow (R up to 128 columns) and there are products
 * to share. */
template <int DA, int CW, bool REV, bool STN, bool ST>
cudaError_t seq_pass(const dims &d, const pass<bf16> &p, const float *s, const int *seg,
		     cudaStream_t st)
{
	constexpr int KS = DA <= 128 && !ST ? 2 : 1;
	int bytes = 2 * (2 * tile_bytes(BC, DA, false) + tile_bytes(BC, CW, false)) +
		    tile_bytes(BC, BC, true) + 4 * BC * (int)sizeof(float) +
		    (KS - 1) * 32 * 32 * (CW / 16) * (int)sizeof(float);
	return launch(chunk_seq<DA, CW, KS, REV, STN, ST>,
		      dim3(p.spans, d.B * d.H, (p.dw + CW - 1) / CW), 2 * CW * KS, bytes, st, d, p, s,
		      seg);
}

/* chunk_seq for the padded width of F and M (64, 128 or 256). */
template <int CW, bool REV, bool STN, bool ST>
cudaError_t seq_cw(const dims &d, const pass<bf16> &p, const float *s, const int *seg,
		   cudaStream_t st)
{
	int P = pad64(p.da);
	return P <= 64	  ? seq_pass<64, CW, REV, STN, ST>(d, p, s, seg, st)
	       : P <= 128 ? seq_pass<128, CW, REV, STN, ST>(d, p, s, seg, st)
			  : seq_pass<256, CW, REV, STN, ST>(d, p, s, seg, st);
}

/* One walk: bf16 through chunk_seq with 64 or 128 output columns per block
 * (the state-only walk always takes 64: with no scores to share, narrower
 * blocks only add parallelism); fp32 through chunk_seq_f32. */
template <typename T, bool REV, bool STN, bool ST = false>
cudaError_t seq_any(const dims &d, const pass<T> &p, const float *s, const int *seg,
		    cudaStream_t st)
{
	if constexpr (sizeof(T) == 4) {
		int bytes = (int)sizeof(float) * (2 * BC * (p.da + 1) + BC * 32 + BC * (BC + 1) +
						  p.da * 32 + 4 * BC);
		return launch(chunk_seq_f32<REV, STN, ST>, dim3(p.spans, d.B * d.H, (p.dw + 31) / 32),
			      256, bytes, st, d, p, s, seg);
	} else {
		if (ST || p.dw <= 64)
			return seq_cw<64, REV, STN, ST>(d, p, s, seg, st);
		return seq_cw<ST ? 64 : 128, REV, STN, ST>(d, p, s, seg, st);
	}
}

/* A measuring knob: the number the environment sets (read once), else def. */
int knob(const char *name, int &cache, int def)
{
	if (cache < 0) {
		const char *e = getenv(name);
		cache = e && *e >= '0' && *e <= '9' ? atoi(e) : def;
	}
	return cache;
}

/* Whether a walk runs on wgmma (chunk_wg): bf16 at dk = dv = 128 with 16-byte
 * aligned tensors, and TN_ATTN_WG (default 2) at least `level`: 1 for the
 * forward's walks (its output, the state-only walk before its scan), 2 for
 * the backward's (dq, dk, dv and the reversed state-only walk); TN_ATTN_WG=0
 * runs them all on mma.sync, for measuring. */
bool wg_on(int dk, int dv, int level)
{
	static int on = -1;
	return knob("TN_ATTN_WG", on, 2) >= level && dk == 128 && dv == 128;
}

bool wg_fits(const dims &d, std::initializer_list<const void *> ts, int level)
{
	uintptr_t a = 0;
	for (const void *t : ts)
		a |= (uintptr_t)t;
	return wg_on(d.dk, d.dv, level) && a % 16 == 0;
}

template <bool REV, bool STN, bool ST>
cudaError_t wg_pass(const dims &d, const pass<bf16> &p, const float *s, const int *seg,
		    cudaStream_t st)
{
	int bytes = 1024 + 2 * (ST ? 2 : 3) * WG_T + 4 * BC * (int)sizeof(float) +
		    (ST ? 0 : 2 * 8192 + BC * 136 * (int)sizeof(bf16));
	return launch(chunk_wg<REV, STN, ST>, dim3(p.spans, d.B * d.H), 256, bytes, st, d, p, s,
		      seg);
}

/* One walk of a bf16 pass: chunk_wg where it fits, else seq_any. */
template <bool REV, bool STN, bool ST = false>
cudaError_t walk_bf16(const dims &d, const pass<bf16> &p, bool wg, const float *s, const int *seg,
		      cudaStream_t st)
{
	return wg ? wg_pass<REV, STN, ST>(d, p, s, seg, st) : seq_any<bf16, REV, STN, ST>(d, p, s, seg, st);
}

/* (1) The local state sum_j w_j x_j y_j^T of each span of fine(d) into L,
 * [B,H,spans,dk,dv], by chunk_seq walking x as M and y as W without
 * outputs (only the spans outside the segment that needs no state: the
 * last forward, the first backward); then (2) the scan over spans. */
template <typename T, bool REV>
cudaError_t states(const dims &d, const T *x, const T *y, const float *s, const int *seg,
		   float *L, const float *state_in, cudaStream_t st)
{
	dims f = fine(d);
	int nx = REV ? f.TS - d.ratio : (d.TS - 1) * d.ratio;
	pass<T> p = pass_of<T>(nullptr, x, y, d.dk, d.dv, nullptr, f);
	p.state_out = L;
	p.spans = nx;
	p.first = REV ? d.ratio : 0;
	cudaError_t e;
	if constexpr (sizeof(T) == 2)
		e = walk_bf16<REV, false, true>(f, p, wg_fits(d, {x, y}, REV ? 2 : 1), s, seg, st);
	else
		e = seq_any<T, REV, false, true>(f, p, s, seg, st);
	if (e != cudaSuccess)
		return e;
	long n4 = (long)d.dk * d.dv / 4;
	scan_states<REV><<<dim3((unsigned)((n4 + SCAN_THR - 1) / SCAN_THR), d.B * d.H), SCAN_THR, 0,
			   st>>>(f, d.ratio, nx, s, seg, L, state_in);
	return cudaGetLastError();
}

/* The default pool returns freed memory to the driver at every synchronisation
 * (release threshold 0), which would make each call pay for fresh allocations:
 * keep it instead (once per process, on the current device). */
cudaError_t keep_pool()
{
	static int done;
	if (done)
		return cudaSuccess;
	int dev;
	cudaMemPool_t pool;
	uint64_t all = UINT64_MAX;
	cudaError_t e = cudaGetDevice(&dev);
	if (e == cudaSuccess)
		e = cudaDeviceGetDefaultMemPool(&pool, dev);
	if (e == cudaSuccess)
		e = cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &all);
	done = e == cudaSuccess;
	return e;
}

/* Temporary device memory for one call: seg (with documents) and n_states
 * state buffers of [B,H,spans,dk,dv] fp32 (the spans of fine(d)). */
struct workspace {
	int *seg = nullptr;
	float *L[2] = {nullptr, nullptr};
	cudaStream_t st;
	cudaError_t get(const dims &d, const struct tn_attn_docs *docs, int n_states)
	{
		cudaError_t e = keep_pool();
		size_t n = (size_t)d.B * d.H * fine(d).TS * d.dk * d.dv * sizeof(float);
		for (int i = 0; i < n_states && e == cudaSuccess; i++)
			e = cudaMallocAsync(&L[i], n, st);
		if (docs && e == cudaSuccess) {
			long nt = (long)d.B * d.N;
			e = cudaMallocAsync(&seg, nt * sizeof(int), st);
			if (e == cudaSuccess) {
				make_seg<<<(unsigned)((nt + 255) / 256), 256, 0, st>>>(d.B, d.N, docs->ptr,
										  docs->start, seg);
				e = cudaGetLastError();
			}
		}
		return e;
	}
	~workspace()
	{
		for (float *p : L)
			if (p)
				cudaFreeAsync(p, st);
		if (seg)
			cudaFreeAsync(seg, st);
	}
};

/* The state-only walk on wgmma: one block per span, two an SM, each ending
 * by writing a 64 KB state that the scan reads back (about two chunks' worth
 * of k, v). The ratio (spans per segment of sub chunks, at most 64, keeping
 * the TS segments) whose walk ends soonest by that count, whole waves of
 * blocks included: 1.2 waves cost two. */
int wg_ratio(int T, int bh, int sub, int TS, int sms)
{
	long best = LONG_MAX;
	int ratio = 1;
	for (int r = 1; r <= TN_MIN(sub, 64); r++) {
		int fsub = (sub + r - 1) / r, rr = (sub + fsub - 1) / fsub;
		int ts = (T + fsub * rr - 1) / (fsub * rr);
		long blocks = (long)bh * (ts - 1) * rr;
		long cost = (blocks + 2L * sms - 1) / (2L * sms) * (fsub + 2) * sms + blocks;
		if (ts == TS && cost < best) {
			best = cost;
			ratio = rr;
		}
	}
	return ratio;
}

/* Chunks per segment: the fewest segments that still fill the GPU with one
 * wave of output walks (one block per multiprocessor; two when the head dims
 * are <= 64: the blocks that fit), each walked by one block; more segments
 * cost the state-only walk over more of k, v (q, dO). That walk's spans are
 * `ratio` to a segment: on wgmma (bf16, wg) as wg_ratio says, else as many
 * as give it about four blocks per multiprocessor (it keeps far fewer
 * registers). TN_ATTN_SUB (1 to 4096 chunks) overrides the segment length,
 * for tuning. */
dims dims_of(const struct tn_attn_shape *sh, bool wg)
{
	static int sub_env = -1, sms = 132;
	if (sub_env < 0) {
		const char *e = getenv("TN_ATTN_SUB");
		sub_env = e && atoi(e) >= 1 && atoi(e) <= 4096 ? atoi(e) : 0;
		int dev;
		if (cudaGetDevice(&dev) != cudaSuccess ||
		    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
			sms = 132;
	}
	int T = (sh->N + BC - 1) / BC, bh = sh->B * sh->H;
	int want = (sh->dk <= 64 && sh->dv <= 64 ? 2 : 1) * sms;
	int per = TN_MAX(1, want / bh), sub = sub_env ? sub_env : (T + per - 1) / per;
	int TS = (T + sub - 1) / sub, ratio = 1;
	if (TS > 1) {
		long blocks = (long)bh * ((sh->dv + 63) / 64) * (TS - 1);
		ratio = wg ? wg_ratio(T, bh, sub, TS, sms)
			   : (int)TN_MIN((long)sub, TN_MAX(1L, (4L * sms + blocks - 1) / blocks));
		int fsub = (sub + ratio - 1) / ratio;
		ratio = (sub + fsub - 1) / fsub;
		sub = fsub * ratio;
		TS = (T + sub - 1) / sub;
	}
	return dims{sh->B, sh->H, sh->N, sh->dk, sh->dv, T, sub, sub * BC, TS, ratio};
}

template <typename T>
cudaError_t forward_t(const dims &d, const struct tn_attn_docs *docs, const T *q, const T *k,
		      const T *v, const float *s, const float *state_in, T *o, float *state_out,
		      cudaStream_t st)
{
	workspace ws;
	ws.st = st;
	bool segs = d.TS > 1; /* the states before the segments from a scan */
	cudaError_t e = ws.get(d, docs, segs);
	if (e == cudaSuccess && segs)
		e = states<T, false>(d, k, v, s, ws.seg, ws.L[0], state_in, st);
	pass<T> p = pass_of<T>(q, k, v, d.dk, d.dv, o, d);
	p.state_out = state_out;
	if (segs)
		p = from_states(p, d, ws.L[0], false);
	else
		p.state = state_in;
	if (e != cudaSuccess)
		return e;
	if constexpr (sizeof(T) == 2)
		return walk_bf16<false, false>(d, p, wg_fits(d, {q, k, v, o}, 1), s, ws.seg, st);
	else
		return seq_any<T, false, false>(d, p, s, ws.seg, st);
}

/* Whether chunk_dkv takes dk and dv: bf16 with dk, dv padded to 128 (at 64
 * its shared memory allows one block per multiprocessor, and two walks of
 * two blocks each are faster). TN_ATTN_DKV=0 turns it off, for measuring. */
bool dkv_fits(const dims &d)
{
	static int on = -1;
	return knob("TN_ATTN_DKV", on, 1) && pad64(d.dk) == 128 && pad64(d.dv) == 128;
}

template <int D>
cudaError_t dkv_pass(const dims &d, const pass<bf16> &pk, const pass<bf16> &pv, const float *s,
		     const int *seg, cudaStream_t st)
{
	int bytes = 7 * tile_bytes(BC, D, false) + 2 * tile_bytes(BC, BC, true) +
		    tile_bytes(D, D, true) + 4 * BC * (int)sizeof(float);
	return launch(chunk_dkv<D>, dim3(pk.spans, d.B * d.H), 4 * D, bytes, st, d, pk, pv, s, seg);
}

template <typename T>
cudaError_t backward_t(const dims &d, const struct tn_attn_docs *docs, const T *q, const T *k,
		       const T *v, const float *s, const T *g, T *dq, T *dk, T *dv,
		       cudaStream_t st)
{
	workspace ws;
	ws.st = st;
	bool segs = d.TS > 1;
	cudaError_t e = ws.get(d, docs, segs ? 2 : 0);
	if (e == cudaSuccess && segs)
		e = states<T, false>(d, k, v, s, ws.seg, ws.L[0], nullptr, st);
	if (e == cudaSuccess && segs)
		e = states<T, true>(d, q, g, s, ws.seg, ws.L[1], nullptr, st);
	pass<T> pq = pass_of<T>(g, v, k, d.dv, d.dk, dq, d);
	pass<T> pk = pass_of<T>(v, g, q, d.dv, d.dk, dk, d);
	pass<T> pv = pass_of<T>(k, q, g, d.dk, d.dv, dv, d);
	if (segs) {
		pq = from_states(pq, d, ws.L[0], false);
		pk = from_states(pk, d, ws.L[1], true);
		pv = from_states(pv, d, ws.L[1], true);
	}
	if constexpr (sizeof(T) == 2) {
		bool wg = wg_fits(d, {q, k, v, g, dq, dk, dv}, 2);
		if (e == cudaSuccess)
			e = walk_bf16<false, true>(d, pq, wg, s, ws.seg, st);
		if (e == cudaSuccess && !wg && dkv_fits(d))
			return dkv_pass<128>(d, pk, pv, s, ws.seg, st);
		if (e == cudaSuccess)
			e = walk_bf16<true, true>(d, pk, wg, s, ws.seg, st);
		if (e == cudaSuccess)
			e = walk_bf16<true, false>(d, pv, wg, s, ws.seg, st);
		return e;
	}
	if (e == cudaSuccess)
		e = seq_any<T, false, true>(d, pq, s, ws.seg, st);
	if (e == cudaSuccess)
		e = seq_any<T, true, true>(d, pk, s, ws.seg, st);
	if (e == cudaSuccess)
		e = seq_any<T, true, false>(d, pv, s, ws.seg, st);
	return e;
}

} /* namespace */

extern "C" int lightning_attn_forward_cuda(const struct tn_attn_shape *sh,
					   const struct tn_attn_docs *docs, int dtype,
					   const void *q, const void *k, const void *v,
					   const float *decay_s, const float *state_in, void *o,
					   float *state_out, cudaStream_t stream)
{
	int rc = check_shape(sh);
	if (rc)
		return rc;
	dims d = dims_of(sh, dtype == TN_ATTN_BF16 && wg_on(sh->dk, sh->dv, 1));
	cudaError_t e = dtype == TN_ATTN_BF16
				? forward_t<bf16>(d, docs, (const bf16 *)q, (const bf16 *)k,
						  (const bf16 *)v, decay_s, state_in, (bf16 *)o,
						  state_out, stream)
				: forward_t<float>(d, docs, (const float *)q, (const float *)k,
						   (const float *)v, decay_s, state_in, (float *)o,
						   state_out, stream);
	return e == cudaSuccess ? TN_OK : cuda_fail(e, "forward");
}

extern "C" int lightning_attn_backward_cuda(const struct tn_attn_shape *sh,
					    const struct tn_attn_docs *docs, int dtype,
					    const void *q, const void *k, const void *v,
					    const float *decay_s, const void *dout, void *dq,
					    void *dk, void *dv, cudaStream_t stream)
{
	int rc = check_shape(sh);
	if (rc)
		return rc;
	dims d = dims_of(sh, dtype == TN_ATTN_BF16 && wg_on(sh->dk, sh->dv, 1));
	cudaError_t e = dtype == TN_ATTN_BF16
				? backward_t<bf16>(d, docs, (const bf16 *)q, (const bf16 *)k,
						   (const bf16 *)v, decay_s, (const bf16 *)dout,
						   (bf16 *)dq, (bf16 *)dk, (bf16 *)dv, stream)
				: backward_t<float>(d, docs, (const float *)q, (const float *)k,
						    (const float *)v, decay_s, (const float *)dout,
						    (float *)dq, (float *)dk, (float *)dv, stream);
	return e == cudaSuccess ? TN_OK : cuda_fail(e, "backward");
}

extern "C" int lightning_attn_decode_cuda(int B, int H, int dk, int dv, int dtype, const void *q,
					  const void *k, const void *v, const float *decay_s,
					  float *state, void *o, cudaStream_t stream)
{
	struct tn_attn_shape sh = {B, H, 1, dk, dv};
	int rc = check_shape(&sh);
	if (rc)
		return rc;
	if (dtype == TN_ATTN_BF16)
		decode_step<bf16><<<B * H, 256, 0, stream>>>(H, dk, dv, (const bf16 *)q,
							     (const bf16 *)k, (const bf16 *)v,
							     decay_s, state, (bf16 *)o);
	else
		decode_step<float><<<B * H, 256, 0, stream>>>(H, dk, dv, (const float *)q,
							      (const float *)k, (const float *)v,
							      decay_s, state, (float *)o);
	cudaError_t e = cudaGetLastError();
	return e == cudaSuccess ? TN_OK : cuda_fail(e, "decode");
}
