/* lightning_attn.cu - CUDA Lightning Attention: forward (with the final state),
 * backward and decode, fp32 or bf16 in, fp32 accumulation, packed documents.
 *
 * One design, parallel over chunks of BC rows in every pass, so B = 1 at long
 * N fills the GPU: (1) each chunk's local state sum_j w_j x_j y_j^T into a
 * [B,H,T,dk,dv] fp32 buffer; (2) a scan over chunks, element-parallel, turning
 * it into the state before (forward) or after (backward) each chunk; (3) each
 * chunk's outputs from its intra-chunk products plus one product with that
 * state. Matrix products run on mma.sync m16n8k16 bf16 tensor cores; an fp32
 * operand x enters as hi = bf16(x), lo = bf16(x - hi) and costs three products
 * (hi.hi + hi.lo + lo.hi). Only non-negative powers lambda^p, p <= BC, appear
 * (MODEL.md §6.11). Documents: seg[t] = last start <= t (-1: none); tokens t, j
 * interact iff seg[t] <= j <= t, as in libcore/lightning_attn.c. */
#include <cuda_bf16.h>
#include <stdint.h>

#include "lightning_attn_cuda.h"

/* util.h is C only (implicit void * conversions); its error reporting and the
 * two classes used here, declared for C++. */
extern "C" int tn_fail(int status, const char *fmt, ...);
enum { TN_OK = 0, TN_EDATA = 1, TN_EIO = 3 };

typedef __nv_bfloat16 bf16;

namespace {

constexpr int BC = 64;       /* chunk rows */
constexpr int NWARP = BC / 16; /* each warp owns 16 rows of a chunk tile */
constexpr int NTHR = NWARP * 32;
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

__device__ __forceinline__ uint32_t pack2(bf16 a, bf16 b)
{
	return (uint32_t)__bfloat16_as_ushort(a) | (uint32_t)__bfloat16_as_ushort(b) << 16;
}

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

/* Fragments of m16n8k16 (g = lane / 4, t = lane % 4). A 16x16 at (r0, k0):
 * ATR = false reads A(i,k) = X[r0+i][k0+k], true reads A(i,k) = X[k0+k][r0+i]. */
template <bool ATR>
__device__ __forceinline__ void load_a(uint32_t a[4], const bf16 *X, int ld, int r0, int k0)
{
	int g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
	if (!ATR) {
		const bf16 *p = X + (r0 + g) * ld + k0 + 2 * t;
		a[0] = *(const uint32_t *)p;
		a[1] = *(const uint32_t *)(p + 8 * ld);
		a[2] = *(const uint32_t *)(p + 8);
		a[3] = *(const uint32_t *)(p + 8 * ld + 8);
	} else {
		const bf16 *p = X + (k0 + 2 * t) * ld + r0 + g;
		a[0] = pack2(p[0], p[ld]);
		a[1] = pack2(p[8], p[ld + 8]);
		a[2] = pack2(p[8 * ld], p[9 * ld]);
		a[3] = pack2(p[8 * ld + 8], p[9 * ld + 8]);
	}
}

/* B 16x8 at (k0, n0): BKN = false reads B(k,n) = X[n0+n][k0+k], true reads
 * B(k,n) = X[k0+k][n0+n]. */
template <bool BKN>
__device__ __forceinline__ void load_b(uint32_t b[2], const bf16 *X, int ld, int k0, int n0)
{
	int g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
	if (!BKN) {
		const bf16 *p = X + (n0 + g) * ld + k0 + 2 * t;
		b[0] = *(const uint32_t *)p;
		b[1] = *(const uint32_t *)(p + 8);
	} else {
		const bf16 *p = X + (k0 + 2 * t) * ld + n0 + g;
		b[0] = pack2(p[0], p[ld]);
		b[1] = pack2(p[8 * ld], p[9 * ld]);
	}
}

/* acc[16 x 8NT] += A[ar0.., ak0 .. ak0+K) . B[bk0 .. bk0+K, bn0..), one warp. */
template <int NT, bool ATR, bool BKN>
__device__ void warp_mma(float (&acc)[NT][4], const op &A, int ar0, int ak0, const op &B,
			 int bk0, int bn0, int K)
{
	for (int k = 0; k < K; k += 16) {
		uint32_t ah[4], al[4];
		load_a<ATR>(ah, A.hi, A.ld, ar0, ak0 + k);
		if (A.lo)
			load_a<ATR>(al, A.lo, A.ld, ar0, ak0 + k);
#pragma unroll
		for (int n = 0; n < NT; n++) {
			uint32_t bh[2], bl[2];
			load_b<BKN>(bh, B.hi, B.ld, bk0 + k, bn0 + 8 * n);
			mma(acc[n], ah, bh);
			if (B.lo) {
				load_b<BKN>(bl, B.lo, B.ld, bk0 + k, bn0 + 8 * n);
				mma(acc[n], ah, bl);
			}
			if (A.lo)
				mma(acc[n], al, bh);
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

/* Copy a rows x cols block of a row-major global matrix (row stride ld) into
 * a shared operand, zero outside nrows x ncols, each row times scale[r] when
 * scale is given. Called by the whole block. */
template <typename T>
__device__ void load_tile(const op &d, const T *src, long ld, int rows, int cols, int nrows,
			  int ncols, const float *scale)
{
	for (int e = threadIdx.x; e < rows * cols; e += blockDim.x) {
		int r = e / cols, c = e % cols;
		float x = r < nrows && c < ncols ? to_f(src[r * ld + c]) : 0.f;
		if (scale)
			x *= scale[r];
		store_split(d, r, c, x);
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

/* Per-chunk facts shared by every kernel. */
struct chunk {
	int b, h, bh, c, m; /* sequence, head, b*H+h, first row, rows */
	const int *seg;     /* this sequence's seg, or NULL */
	float s;            /* decay: lambda = exp(-s) */
	__device__ int seg_at(int t) const { return seg ? seg[t] : -1; }
	__device__ float pw(int p) const { return expf(-s * (float)p); }
};

struct dims {
	int B, H, N, dk, dv, T;
};

__device__ chunk chunk_of(const dims &d, const float *decay_s, const int *seg, int tau, int bh)
{
	chunk ch;
	ch.bh = bh;
	ch.b = bh / d.H;
	ch.h = bh % d.H;
	ch.c = tau * BC;
	ch.m = min(BC, d.N - ch.c);
	ch.seg = seg ? seg + (long)ch.b * d.N : nullptr;
	ch.s = decay_s[ch.h];
	return ch;
}

/* P[i][j] = lambda^(i-j) (A_i . B_j) for same-document i >= j, else 0, from
 * shared A, B (BC x D, split or not), written split into P (BC x BC). */
__device__ void masked_scores(const chunk &ch, const op &A, const op &B, int D, const op &P)
{
	constexpr int NT = BC / 8;
	int w = threadIdx.x >> 5;
	float acc[NT][4];
	zero(acc);
	warp_mma<NT, false, false>(acc, A, 16 * w, 0, B, 0, 0, D);
#pragma unroll
	for (int n = 0; n < NT; n++)
#pragma unroll
		for (int r = 0; r < 4; r++) {
			int i = 16 * w + acc_row(r), j = acc_col(n, r);
			bool keep = i >= j && ch.seg_at(ch.c + i) <= ch.c + j;
			store_split(P, i, j, keep ? acc[n][r] * ch.pw(i - j) : 0.f);
		}
}

/* Stage rows [r0, r0+64) x cols [c0, c0+64) of a [dk, dv] fp32 state into X. */
__device__ void stage_state(const op &X, const float *S, const dims &d, int r0, int c0)
{
	load_tile<float>(X, S + (long)r0 * d.dv + c0, d.dv, 64, 64, d.dk - r0, d.dv - c0, nullptr);
}

/* Store a warp's 16 x 64 result tile, rows scaled by rs (two rows per thread)
 * and added to `base` (intra part) when given. */
template <typename T>
__device__ void store_rows(T *dst, long ld, int r0, int nrows, int c0, int ncols,
			   const float (&acc)[8][4], const float (&inter)[8][4], const float rs[2])
{
#pragma unroll
	for (int n = 0; n < 8; n++)
#pragma unroll
		for (int r = 0; r < 4; r++) {
			int i = r0 + acc_row(r), j = acc_col(n, r);
			if (i < nrows && c0 + j < ncols)
				dst[i * ld + c0 + j] = from_f<T>(acc[n][r] + rs[r >> 1] * inter[n][r]);
		}
}

/* (1) Local state of each chunk, L = sum_j w_j x_j y_j^T ([dk] x [64-column
 * slice of dv]). Forward (REV = false): x = k, y = v, w_j = lambda^(m-1-j)
 * from the last document start in the chunk on. Backward (REV = true): x = q,
 * y = dout, w_t = lambda^(t-c) for the tokens of the chunk's first document. */
template <typename T, bool REV, int DKP>
__global__ void __launch_bounds__(NTHR) chunk_state(dims d, const T *x, const T *y,
						    const float *decay_s, const int *seg, float *L)
{
	extern __shared__ __align__(16) char smem[];
	constexpr bool SPLIT = sizeof(T) == 4;
	__shared__ float w[BC];
	chunk ch = chunk_of(d, decay_s, seg, blockIdx.x, blockIdx.y);
	int c0 = blockIdx.z * 64;
	smem_alloc al{smem};
	op X = al.take(BC, DKP, true), Y = al.take(BC, 64, SPLIT);
	int lp = ch.seg_at(ch.c + ch.m - 1);
	for (int j = threadIdx.x; j < BC; j += NTHR) {
		bool on = j < ch.m && (REV ? ch.seg_at(ch.c + j) <= ch.c : ch.c + j >= lp);
		w[j] = on ? ch.pw(REV ? j : ch.m - 1 - j) : 0.f;
	}
	__syncthreads();
	long row0 = (long)ch.bh * d.N + ch.c;
	load_tile<T>(X, x + row0 * d.dk, d.dk, BC, DKP, ch.m, d.dk, w);
	load_tile<T>(Y, y + row0 * d.dv + c0, d.dv, BC, 64, ch.m, d.dv - c0, nullptr);
	__syncthreads();
	float *out = L + ((long)ch.bh * d.T + blockIdx.x) * d.dk * d.dv;
	int wp = threadIdx.x >> 5;
	for (int f0 = 16 * wp; f0 < DKP; f0 += 16 * NWARP) {
		float acc[8][4];
		zero(acc);
		warp_mma<8, true, true>(acc, X, f0, 0, Y, 0, 0, BC);
#pragma unroll
		for (int n = 0; n < 8; n++)
#pragma unroll
			for (int r = 0; r < 4; r++) {
				int f = f0 + acc_row(r), col = c0 + acc_col(n, r);
				if (f < d.dk && col < d.dv)
					out[(long)f * d.dv + col] = acc[n][r];
			}
	}
}

/* (2) Scan over chunks, one thread per state element: the buffer's local
 * states become the state before each chunk (forward: S_{c-1}, from state_in)
 * or after it (backward: R at the chunk's end). */
template <bool REV>
__global__ void __launch_bounds__(SCAN_THR) scan_states(dims d, const float *decay_s,
							const int *seg, float *L,
							const float *state_in, float *state_out)
{
	long n = (long)d.dk * d.dv, e = (long)blockIdx.x * SCAN_THR + threadIdx.x;
	int bh = blockIdx.y;
	if (e >= n)
		return;
	float s = decay_s[bh % d.H];
	const int *sg = seg ? seg + (long)(bh / d.H) * d.N : nullptr;
	float *buf = L + (long)bh * d.T * n + e;
	float S = state_in ? state_in[bh * n + e] : 0.f;
	constexpr int U = 8; /* loads in flight */
	for (int i0 = 0; i0 < d.T; i0 += U) {
		float x[U];
#pragma unroll
		for (int u = 0; u < U; u++) {
			int tau = REV ? d.T - 1 - (i0 + u) : i0 + u;
			if (i0 + u < d.T)
				x[u] = buf[tau * n];
		}
#pragma unroll
		for (int u = 0; u < U; u++) {
			if (i0 + u >= d.T)
				break;
			int tau = REV ? d.T - 1 - (i0 + u) : i0 + u;
			int c = tau * BC, m = min(BC, d.N - c);
			buf[tau * n] = S;
			bool keep = REV ? c + m < d.N && (!sg || sg[c + m] <= c)
					: !(sg && sg[c + m - 1] >= c);
			S = keep ? expf(-s * (float)m) * S + x[u] : x[u];
		}
	}
	if (state_out)
		state_out[bh * n + e] = S;
}

/* (3) Forward outputs of one chunk and one 64-column slice of dv:
 * o = (Q K^T . D) V + diag(lambda^(i+1)) Q S_{c-1}. */
template <typename T, int DKP>
__global__ void __launch_bounds__(NTHR) chunk_forward(dims d, const T *q, const T *k, const T *v,
						      const float *decay_s, const int *seg,
						      const float *Sb, T *o)
{
	extern __shared__ __align__(16) char smem[];
	constexpr bool SPLIT = sizeof(T) == 4;
	chunk ch = chunk_of(d, decay_s, seg, blockIdx.x, blockIdx.y);
	int c0 = blockIdx.z * 64, w = threadIdx.x >> 5;
	smem_alloc al{smem};
	op Q = al.take(BC, DKP, SPLIT), K = al.take(BC, DKP, SPLIT), V = al.take(BC, 64, SPLIT);
	op X = al.take(64, 64, true), P = al.take(BC, BC, true);
	long row0 = (long)ch.bh * d.N + ch.c;
	load_tile<T>(Q, q + row0 * d.dk, d.dk, BC, DKP, ch.m, d.dk, nullptr);
	load_tile<T>(K, k + row0 * d.dk, d.dk, BC, DKP, ch.m, d.dk, nullptr);
	load_tile<T>(V, v + row0 * d.dv + c0, d.dv, BC, 64, ch.m, d.dv - c0, nullptr);
	__syncthreads();
	masked_scores(ch, Q, K, DKP, P);
	const float *S = Sb + ((long)ch.bh * d.T + blockIdx.x) * d.dk * d.dv;
	float inter[8][4], acc[8][4];
	zero(inter);
	for (int f0 = 0; f0 < DKP; f0 += 64) {
		__syncthreads();
		stage_state(X, S, d, f0, c0);
		__syncthreads();
		warp_mma<8, false, true>(inter, Q, 16 * w, f0, X, 0, 0, 64);
	}
	zero(acc);
	warp_mma<8, false, true>(acc, P, 16 * w, 0, V, 0, 0, BC);
	float rs[2];
	for (int h = 0; h < 2; h++) {
		int i = 16 * w + acc_row(2 * h);
		rs[h] = ch.seg_at(ch.c + i) < ch.c ? ch.pw(i + 1) : 0.f;
	}
	store_rows<T>(o + row0 * d.dv, d.dv, 16 * w, ch.m, c0, d.dv, acc, inter, rs);
}

/* Row factor of the later-chunks term of dk, dv for key row j of the chunk:
 * lambda^(m-j) if the token after the chunk is in j's document, else 0. */
__device__ float after_factor(const chunk &ch, const dims &d, int j)
{
	int e = ch.c + ch.m;
	return e < d.N && ch.seg_at(e) <= ch.c + j ? ch.pw(ch.m - j) : 0.f;
}

/* (4) dq and dk of one chunk, one 64-feature slice of dk:
 * G = (dO V^T . D), dq = G K + diag(lambda^(i+1)) dO S_{c-1}^T,
 * dk = G^T Q + diag(after) V R^T. */
template <typename T, int DVP>
__global__ void __launch_bounds__(NTHR) chunk_dqdk(dims d, const T *q, const T *k, const T *v,
						   const T *dout, const float *decay_s,
						   const int *seg, const float *Sb, const float *Ra,
						   T *dq, T *dk)
{
	extern __shared__ __align__(16) char smem[];
	constexpr bool SPLIT = sizeof(T) == 4;
	chunk ch = chunk_of(d, decay_s, seg, blockIdx.x, blockIdx.y);
	int f0 = blockIdx.z * 64, w = threadIdx.x >> 5;
	smem_alloc al{smem};
	op dO = al.take(BC, DVP, SPLIT), V = al.take(BC, DVP, SPLIT);
	op Ks = al.take(BC, 64, SPLIT), Qs = al.take(BC, 64, SPLIT);
	op X = al.take(64, 64, true), G = al.take(BC, BC, true);
	long row0 = (long)ch.bh * d.N + ch.c, st = ((long)ch.bh * d.T + blockIdx.x) * d.dk * d.dv;
	load_tile<T>(dO, dout + row0 * d.dv, d.dv, BC, DVP, ch.m, d.dv, nullptr);
	load_tile<T>(V, v + row0 * d.dv, d.dv, BC, DVP, ch.m, d.dv, nullptr);
	load_tile<T>(Ks, k + row0 * d.dk + f0, d.dk, BC, 64, ch.m, d.dk - f0, nullptr);
	load_tile<T>(Qs, q + row0 * d.dk + f0, d.dk, BC, 64, ch.m, d.dk - f0, nullptr);
	__syncthreads();
	masked_scores(ch, dO, V, DVP, G);
	float inter[8][4], acc[8][4], rs[2];
	/* dq: the state is read transposed, X[f][v] = S[f0+f][v0+v] as B(k=v, n=f) */
	zero(inter);
	for (int v0 = 0; v0 < DVP; v0 += 64) {
		__syncthreads();
		stage_state(X, Sb + st, d, f0, v0);
		__syncthreads();
		warp_mma<8, false, false>(inter, dO, 16 * w, v0, X, 0, 0, 64);
	}
	zero(acc);
	warp_mma<8, false, true>(acc, G, 16 * w, 0, Ks, 0, 0, BC);
	for (int h = 0; h < 2; h++) {
		int i = 16 * w + acc_row(2 * h);
		rs[h] = ch.seg_at(ch.c + i) < ch.c ? ch.pw(i + 1) : 0.f;
	}
	store_rows<T>(dq + row0 * d.dk, d.dk, 16 * w, ch.m, f0, d.dk, acc, inter, rs);
	zero(inter);
	for (int v0 = 0; v0 < DVP; v0 += 64) {
		__syncthreads();
		stage_state(X, Ra + st, d, f0, v0);
		__syncthreads();
		warp_mma<8, false, false>(inter, V, 16 * w, v0, X, 0, 0, 64);
	}
	zero(acc);
	warp_mma<8, true, true>(acc, G, 16 * w, 0, Qs, 0, 0, BC);
	for (int h = 0; h < 2; h++)
		rs[h] = after_factor(ch, d, 16 * w + acc_row(2 * h));
	store_rows<T>(dk + row0 * d.dk, d.dk, 16 * w, ch.m, f0, d.dk, acc, inter, rs);
}

/* (5) dv of one chunk, one 64-column slice: P = (Q K^T . D),
 * dv = P^T dO + diag(after) K R. */
template <typename T, int DKP>
__global__ void __launch_bounds__(NTHR) chunk_dv(dims d, const T *q, const T *k, const T *dout,
						 const float *decay_s, const int *seg,
						 const float *Ra, T *dv)
{
	extern __shared__ __align__(16) char smem[];
	constexpr bool SPLIT = sizeof(T) == 4;
	chunk ch = chunk_of(d, decay_s, seg, blockIdx.x, blockIdx.y);
	int c0 = blockIdx.z * 64, w = threadIdx.x >> 5;
	smem_alloc al{smem};
	op Q = al.take(BC, DKP, SPLIT), K = al.take(BC, DKP, SPLIT), dO = al.take(BC, 64, SPLIT);
	op X = al.take(64, 64, true), P = al.take(BC, BC, true);
	long row0 = (long)ch.bh * d.N + ch.c;
	load_tile<T>(Q, q + row0 * d.dk, d.dk, BC, DKP, ch.m, d.dk, nullptr);
	load_tile<T>(K, k + row0 * d.dk, d.dk, BC, DKP, ch.m, d.dk, nullptr);
	load_tile<T>(dO, dout + row0 * d.dv + c0, d.dv, BC, 64, ch.m, d.dv - c0, nullptr);
	__syncthreads();
	masked_scores(ch, Q, K, DKP, P);
	const float *R = Ra + ((long)ch.bh * d.T + blockIdx.x) * d.dk * d.dv;
	float inter[8][4], acc[8][4], rs[2];
	zero(inter);
	for (int f0 = 0; f0 < DKP; f0 += 64) {
		__syncthreads();
		stage_state(X, R, d, f0, c0);
		__syncthreads();
		warp_mma<8, false, true>(inter, K, 16 * w, f0, X, 0, 0, 64);
	}
	zero(acc);
	warp_mma<8, true, true>(acc, P, 16 * w, 0, dO, 0, 0, BC);
	for (int h = 0; h < 2; h++)
		rs[h] = after_factor(ch, d, 16 * w + acc_row(2 * h));
	store_rows<T>(dv + row0 * d.dv, d.dv, 16 * w, ch.m, c0, d.dv, acc, inter, rs);
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

/* Decode: one block per (b, h); thread (y, r) owns column y of the state and
 * the rows x = r (mod 2), so each state element is read and written once. */
template <typename T>
__global__ void __launch_bounds__(256) decode_step(int H, int dk, int dv, const T *q, const T *k,
						   const T *v, const float *decay_s, float *state,
						   T *o)
{
	__shared__ float qs[256], ks[256], part[128];
	int bh = blockIdx.x, y = threadIdx.x & 127, r = threadIdx.x >> 7;
	for (int x = threadIdx.x; x < dk; x += 256) {
		qs[x] = to_f(q[(long)bh * dk + x]);
		ks[x] = to_f(k[(long)bh * dk + x]);
	}
	__syncthreads();
	float lambda = expf(-decay_s[bh % H]), acc = 0.f;
	if (y < dv) {
		float vy = to_f(v[(long)bh * dv + y]);
		float *S = state + (long)bh * dk * dv + y;
#pragma unroll 8
		for (int x = r; x < dk; x += 2) {
			float s = lambda * S[(long)x * dv] + ks[x] * vy;
			S[(long)x * dv] = s;
			acc += qs[x] * s;
		}
	}
	if (r == 1)
		part[y] = acc;
	__syncthreads();
	if (r == 0 && y < dv)
		o[(long)bh * dv + y] = from_f<T>(acc + part[y]);
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
	if (sh->dk > 256 || sh->dv > 128)
		return tn_fail(TN_EDATA, "lightning_attn_cuda: dk=%d dv=%d: the kernels take "
					 "dk <= 256 and dv <= 128", sh->dk, sh->dv);
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

template <typename T, bool REV> struct state_pass {
	template <int DKP>
	static cudaError_t run(const dims &d, const T *x, const T *y, const float *s, const int *seg,
			       float *L, cudaStream_t st)
	{
		int bytes = tile_bytes(BC, DKP, true) + tile_bytes(BC, 64, sizeof(T) == 4);
		return launch(chunk_state<T, REV, DKP>, dim3(d.T, d.B * d.H, (d.dv + 63) / 64), NTHR,
			      bytes, st, d, x, y, s, seg, L);
	}
};

/* Local states into L, then the scan over chunks. */
template <typename T, bool REV>
cudaError_t states(const dims &d, const T *x, const T *y, const float *s, const int *seg,
		   float *L, const float *state_in, float *state_out, cudaStream_t st)
{
	int P = pad64(d.dk);
	cudaError_t e = P <= 64    ? state_pass<T, REV>::template run<64>(d, x, y, s, seg, L, st)
			: P <= 128 ? state_pass<T, REV>::template run<128>(d, x, y, s, seg, L, st)
				   : state_pass<T, REV>::template run<256>(d, x, y, s, seg, L, st);
	if (e != cudaSuccess)
		return e;
	long n = (long)d.dk * d.dv;
	scan_states<REV><<<dim3((unsigned)((n + SCAN_THR - 1) / SCAN_THR), d.B * d.H), SCAN_THR, 0,
			   st>>>(d, s, seg, L, state_in, state_out);
	return cudaGetLastError();
}

template <typename T, int DKP>
cudaError_t forward_out(const dims &d, const T *q, const T *k, const T *v, const float *s,
			const int *seg, const float *Sb, T *o, cudaStream_t st)
{
	constexpr bool SP = sizeof(T) == 4;
	int bytes = 2 * tile_bytes(BC, DKP, SP) + tile_bytes(BC, 64, SP) + tile_bytes(64, 64, true) +
		    tile_bytes(BC, BC, true);
	return launch(chunk_forward<T, DKP>, dim3(d.T, d.B * d.H, (d.dv + 63) / 64), NTHR, bytes,
		      st, d, q, k, v, s, seg, Sb, o);
}

template <typename T, int DVP>
cudaError_t backward_dqdk(const dims &d, const T *q, const T *k, const T *v, const T *g,
			  const float *s, const int *seg, const float *Sb, const float *Ra, T *dq,
			  T *dk, cudaStream_t st)
{
	constexpr bool SP = sizeof(T) == 4;
	int bytes = 2 * tile_bytes(BC, DVP, SP) + 2 * tile_bytes(BC, 64, SP) +
		    tile_bytes(64, 64, true) + tile_bytes(BC, BC, true);
	return launch(chunk_dqdk<T, DVP>, dim3(d.T, d.B * d.H, (d.dk + 63) / 64), NTHR, bytes, st,
		      d, q, k, v, g, s, seg, Sb, Ra, dq, dk);
}

template <typename T, int DKP>
cudaError_t backward_dv(const dims &d, const T *q, const T *k, const T *g, const float *s,
			const int *seg, const float *Ra, T *dv, cudaStream_t st)
{
	constexpr bool SP = sizeof(T) == 4;
	int bytes = 2 * tile_bytes(BC, DKP, SP) + tile_bytes(BC, 64, SP) + tile_bytes(64, 64, true) +
		    tile_bytes(BC, BC, true);
	return launch(chunk_dv<T, DKP>, dim3(d.T, d.B * d.H, (d.dv + 63) / 64), NTHR, bytes, st, d,
		      q, k, g, s, seg, Ra, dv);
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
 * state buffers of [B,H,T,dk,dv] fp32. */
struct workspace {
	int *seg = nullptr;
	float *L[2] = {nullptr, nullptr};
	cudaStream_t st;
	cudaError_t get(const dims &d, const struct tn_attn_docs *docs, int n_states)
	{
		cudaError_t e = keep_pool();
		size_t n = (size_t)d.B * d.H * d.T * d.dk * d.dv * sizeof(float);
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

dims dims_of(const struct tn_attn_shape *sh)
{
	return dims{sh->B, sh->H, sh->N, sh->dk, sh->dv, (sh->N + BC - 1) / BC};
}

template <typename T>
cudaError_t forward_t(const dims &d, const struct tn_attn_docs *docs, const T *q, const T *k,
		      const T *v, const float *s, const float *state_in, T *o, float *state_out,
		      cudaStream_t st)
{
	workspace ws;
	ws.st = st;
	cudaError_t e = ws.get(d, docs, 1);
	if (e == cudaSuccess)
		e = states<T, false>(d, k, v, s, ws.seg, ws.L[0], state_in, state_out, st);
	if (e == cudaSuccess)
		e = pad64(d.dk) <= 64    ? forward_out<T, 64>(d, q, k, v, s, ws.seg, ws.L[0], o, st)
		    : pad64(d.dk) <= 128 ? forward_out<T, 128>(d, q, k, v, s, ws.seg, ws.L[0], o, st)
					 : forward_out<T, 256>(d, q, k, v, s, ws.seg, ws.L[0], o, st);
	return e;
}

template <typename T>
cudaError_t backward_t(const dims &d, const struct tn_attn_docs *docs, const T *q, const T *k,
		       const T *v, const float *s, const T *g, T *dq, T *dk, T *dv,
		       cudaStream_t st)
{
	workspace ws;
	ws.st = st;
	cudaError_t e = ws.get(d, docs, 2);
	if (e == cudaSuccess)
		e = states<T, false>(d, k, v, s, ws.seg, ws.L[0], nullptr, nullptr, st);
	if (e == cudaSuccess)
		e = states<T, true>(d, q, g, s, ws.seg, ws.L[1], nullptr, nullptr, st);
	if (e == cudaSuccess)
		e = pad64(d.dv) <= 64 ? backward_dqdk<T, 64>(d, q, k, v, g, s, ws.seg, ws.L[0], ws.L[1],
							    dq, dk, st)
				      : backward_dqdk<T, 128>(d, q, k, v, g, s, ws.seg, ws.L[0],
							     ws.L[1], dq, dk, st);
	if (e == cudaSuccess)
		e = pad64(d.dk) <= 64    ? backward_dv<T, 64>(d, q, k, g, s, ws.seg, ws.L[1], dv, st)
		    : pad64(d.dk) <= 128 ? backward_dv<T, 128>(d, q, k, g, s, ws.seg, ws.L[1], dv, st)
					 : backward_dv<T, 256>(d, q, k, g, s, ws.seg, ws.L[1], dv, st);
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
	dims d = dims_of(sh);
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
	dims d = dims_of(sh);
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
