/* ops_xent.cu - tied LM head + softmax + cross-entropy as on the CPU: the
 * forward keeps the logits' gradient softmax - onehot of every row, the
 * backward is two products with the scale as their alpha (three products
 * of [R, V] a step, none recomputed). Per row one kernel makes the loss
 * and the gradient from the row's logits: an online max and sum (in double
 * in the fp32 check mode), then a second pass that writes the gradient.
 * fp32: the gradient in place of the logits ([R, V] floats of scratch).
 * bf16: logits of XENT16_ROWS rows at a time in fp32 from the tensor
 * cores, the gradient of all rows kept in bf16 (R x V x 2 bytes: 4 GiB for
 * 32K rows of a 64K vocabulary), which the backward's products read. */
#include <limits.h>
#include <stdint.h>

#include "cuda_common.h"
#include "ops_bf16.h"
#include "ops_cuda.h"
#include "reduce.cuh"

#define XENT_THREADS 512

static const float zero = 0.0f, one = 1.0f;
#define XENT16_ROWS 2048

/* Rows per product, so that no operand passes 2^30 elements. */
static int rows_per_product(int V)
{
	int r = (1 << 30) / (V > 0 ? V : 1);
	return r > 0 ? r : 1;
}

template <typename Acc> __device__ inline Acc xexp(Acc x);
template <> __device__ inline double xexp<double>(double x) { return exp(x); }
template <> __device__ inline float xexp<float>(float x) { return __expf(x); }

/* Eight values of a row from j (vector loads when vec), or one. */
__device__ inline void load8(const float *l, int j, float v[8])
{
	float4 a = *(const float4 *)(l + j), b = *(const float4 *)(l + j + 4);
	v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w;
	v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}
__device__ inline void store8(float *g, int j, const float v[8])
{
	*(float4 *)(g + j) = make_float4(v[0], v[1], v[2], v[3]);
	*(float4 *)(g + j + 4) = make_float4(v[4], v[5], v[6], v[7]);
}
__device__ inline void store8(bf16 *g, int j, const float v[8])
{
	__nv_bfloat162 p[4];
	for (int k = 0; k < 4; k++)
		p[k] = __floats2bfloat162_rn(v[2 * k], v[2 * k + 1]);
	*(uint4 *)(g + j) = *(const uint4 *)p;
}
__device__ inline void store1(float *g, int j, float v) { g[j] = v; }
__device__ inline void store1(bf16 *g, int j, float v) { g[j] = __float2bfloat16_rn(v); }

/* Fold values v[0, n) into the running max m and sum s of exp(v - m). */
template <typename Acc> __device__ inline void fold(const float *v, int n, Acc &m, Acc &s)
{
	float mx = v[0];
	for (int k = 1; k < n; k++)
		mx = fmaxf(mx, v[k]);
	if ((Acc)mx > m) {
		s *= xexp<Acc>(m - (Acc)mx);
		m = (Acc)mx;
	}
	for (int k = 0; k < n; k++)
		s += xexp<Acc>((Acc)v[k] - m);
}

/* One block per row i of lg [rows, V]: loss[i], and g[i] = softmax -
 * onehot (0 for an ignored row); g may be lg itself (each thread rewrites
 * only what it read, after the whole block has read the row). vec: V is a
 * multiple of 8 and both rows are 32-byte aligned. */
template <typename Acc, typename Out>
__global__ static void __launch_bounds__(XENT_THREADS)
	softmax_grad(const float *lg, Out *g, int V, const int32_t *target, float *loss, int vec)
{
	int i = blockIdx.x, t = target[i];
	const float *l = lg + (size_t)i * V;
	Out *o = g + (size_t)i * V;
	int step = vec ? 8 * blockDim.x : blockDim.x, width = vec ? 8 : 1;
	float lt = threadIdx.x == 0 && t >= 0 ? l[t] : 0.0f, v[8];
	Acc m = -INFINITY, s = 0;
	for (int j = threadIdx.x * width; j < V && t >= 0; j += step) {
		if (vec)
			load8(l, j, v);
		else
			v[0] = l[j];
		fold<Acc>(v, width, m, s);
	}
	Acc top = block_max(m);
	s = block_sum(m == -INFINITY ? (Acc)0 : s * xexp<Acc>(m - top));
	Acc lse = top + log(s);
	if (threadIdx.x == 0)
		loss[i] = t >= 0 ? (float)(lse - (Acc)lt) : 0.0f;
	for (int j = threadIdx.x * width; j < V; j += step) {
		if (vec)
			load8(l, j, v);
		else
			v[0] = l[j];
		for (int k = 0; k < width; k++)
			v[k] = t < 0 ? 0.0f : (float)xexp<Acc>((Acc)v[k] - lse) - (float)(j + k == t);
		if (vec)
			store8(o, j, v);
		else
			store1(o, j, v[0]);
	}
}

static int aligned8(const void *a, const void *b, int V)
{
	return V % 8 == 0 && (uintptr_t)a % 32 == 0 && (uintptr_t)b % 32 == 0;
}

template <typename Acc, typename Out>
static void launch(const float *lg, Out *g, int rows, int V, const int32_t *target, float *loss,
		   cudaStream_t st)
{
	softmax_grad<Acc, Out><<<rows, XENT_THREADS, 0, st>>>(lg, g, V, target, loss,
							      aligned8(lg, g, V));
	TN_CUDA_CHECK_LAUNCH("crossentropy softmax gradient");
}

/* ---- fp32 (check mode): scratch is the gradient [R, V], in place of the logits ---- */

size_t xent_scratch_cuda(int R, int V)
{
	return (size_t)R * (size_t)V;
}

void crossentropy_forward_cuda(float *loss, const float *x, const float *emb,
			       const int32_t *target, int R, int C, int V, float *scratch)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu)
		return;
	int step = rows_per_product(V);
	for (int r0 = 0; r0 < R; r0 += step) {
		int rows = R - r0 < step ? R - r0 : step;
		float *lg = scratch + (size_t)r0 * V;
		matmul_forward_cuda(lg, x + (size_t)r0 * C, emb, rows, C, V, 0);
		launch<double, float>(lg, lg, rows, V, target + r0, loss + r0, cu->stream);
	}
}

void crossentropy_backward_cuda(float *dx, float *demb, const float *x, const float *emb,
				float scale, int R, int C, int V, const float *scratch)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu)
		return;
	int step = rows_per_product(V);
	for (int r0 = 0; r0 < R; r0 += step) {
		int rows = R - r0 < step ? R - r0 : step;
		const float *g = scratch + (size_t)r0 * V;
		/* dx[rows, C] = scale G E; demb[V, C] += scale G^T x */
		tn_cuda_note_blas(cublasSgemm(cu->blas, CUBLAS_OP_N, CUBLAS_OP_N, C, rows, V, &scale,
					      emb, C, g, V, &zero, dx + (size_t)r0 * C, C),
				  "crossentropy_backward dx");
		tn_cuda_note_blas(cublasSgemm(cu->blas, CUBLAS_OP_N, CUBLAS_OP_T, C, V, rows, &scale,
					      x + (size_t)r0 * C, C, g, V, &one, demb, C),
				  "crossentropy_backward demb");
	}
}

/* Column-major C[m,n] = alpha A.B (+ C when accumulate), bf16 A and B:
 * tn_gemm_bf16 with an alpha, which only these products need. */
static void gemm16(int ta, int tb, int m, int n, int k, float alpha, const bf16 *A, int lda,
		   const bf16 *B, int ldb, int accumulate, float *C, int ldc, const char *what)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu)
		return;
	tn_cuda_note_blas(cublasGemmEx(cu->blas16, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
				       tb ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k, &alpha, A,
				       CUDA_R_16BF, lda, B, CUDA_R_16BF, ldb,
				       accumulate ? &one : &zero, C, CUDA_R_32F, ldc,
				       CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
			  what);
}

/* ---- mixed precision: scratch = the bf16 gradient [R, V], then the fp32
 * logits of one block of rows ---- */

static size_t grad16_floats(int R, int V)
{
	return ((size_t)R * V / 2 + 16) & ~(size_t)15; /* keeps the logits 64-byte aligned */
}

size_t xent_scratch_bf16(int R, int V)
{
	return grad16_floats(R, V) + (size_t)(R < XENT16_ROWS ? R : XENT16_ROWS) * V;
}

void crossentropy_forward_bf16(float *loss, const bf16 *x16, const float *emb,
			       const int32_t *target, int R, int C, int V, float *scratch)
{
	struct tn_cuda *cu = tn_cuda_get();
	const bf16 *e16 = tn_bf16_weight(emb, (size_t)V * C);
	if (!cu || !x16 || !e16)
		return;
	bf16 *g16 = (bf16 *)scratch;
	float *lg = scratch + grad16_floats(R, V);
	for (int r0 = 0; r0 < R; r0 += XENT16_ROWS) {
		int rows = R - r0 < XENT16_ROWS ? R - r0 : XENT16_ROWS;
		tn_gemm_bf16(1, 0, V, rows, C, e16, C, x16 + (size_t)r0 * C, C, 0, lg, V,
			     "crossentropy logits bf16");
		launch<float, bf16>(lg, g16 + (size_t)r0 * V, rows, V, target + r0, loss + r0,
				    cu->stream);
	}
}

void crossentropy_backward_bf16(float *dx, float *demb, const bf16 *x16, const float *emb,
				float scale, int R, int C, int V, const float *scratch)
{
	const bf16 *e16 = tn_bf16_weight(emb, (size_t)V * C), *g16 = (const bf16 *)scratch;
	if (!x16 || !e16)
		return;
	int step = rows_per_product(V);
	for (int r0 = 0; r0 < R; r0 += step) {
		int rows = R - r0 < step ? R - r0 : step;
		const bf16 *g = g16 + (size_t)r0 * V;
		gemm16(0, 0, C, rows, V, scale, e16, C, g, V, 0, dx + (size_t)r0 * C, C,
			     "crossentropy dx bf16");
		gemm16(0, 1, C, V, rows, scale, x16 + (size_t)r0 * C, C, g, V, 1, demb, C,
			     "crossentropy demb bf16");
	}
}
