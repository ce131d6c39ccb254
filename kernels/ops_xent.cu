/* ops_xent.cu - tied LM head + softmax + cross-entropy as on the CPU: the
 * forward keeps the logits' gradient softmax - onehot of every row, the
 * backward is two products with the scale as their alpha (three products
 * of [R, V] a step, none recomputed). Per row one kernel makes the loss
 * and the gradient from the row's logits, in place: an online max and sum
 * (in double in the fp32 check mode), then a second pass (mostly from L2)
 * that writes the gradient. fp32: [R, V] floats of scratch. bf16: the
 * tensor cores write the logits in bf16 (as PyTorch's bf16 head does), the
 * kernel turns them into the gradient in bf16 (R x V x 2 bytes: 4 GiB for
 * 32K rows of a 64K vocabulary), which the backward's products read; no
 * fp32 pass over [R, V] at all. */
#include <stdint.h>

#include "cuda_common.h"
#include "ops_bf16.h"
#include "ops_cuda.h"
#include "reduce.cuh"

#define XENT_THREADS 1024

static const float zero = 0.0f, one = 1.0f;

/* Rows per product, so that no operand passes 2^30 elements. */
static int rows_per_product(int V)
{
	int r = (1 << 30) / (V > 0 ? V : 1);
	return r > 0 ? r : 1;
}

template <typename Acc> __device__ inline Acc xexp(Acc x);
template <> __device__ inline double xexp<double>(double x) { return exp(x); }
template <> __device__ inline float xexp<float>(float x) { return __expf(x); }

/* Fold values v[0, W) into the running max m and sum s of exp(v - m). */
template <typename Acc, int W> __device__ inline void fold(const float *v, Acc &m, Acc &s)
{
	float mx = v[0];
	for (int k = 1; k < W; k++)
		mx = fmaxf(mx, v[k]);
	if ((Acc)mx > m) {
		s *= xexp<Acc>(m - (Acc)mx);
		m = (Acc)mx;
	}
	for (int k = 0; k < W; k++)
		s += xexp<Acc>((Acc)v[k] - m);
}

/* One block per row i of the logits g [rows, V] (fp32, or bf16 in g16
 * where g is NULL): loss[i], and the row turned in place into softmax -
 * onehot (0 for an ignored row); each thread rewrites only what it read,
 * after the whole block has read the row. W values a thread at a time: 8
 * as vectors (V a multiple of 8, the rows aligned), or 1. */
template <typename Acc, int W>
__global__ static void __launch_bounds__(XENT_THREADS)
	softmax_grad(float *g, bf16 *g16, int V, const int32_t *target, float *loss)
{
	int i = blockIdx.x, t = target[i];
	float *o = g ? g + (size_t)i * V : NULL;
	bf16 *o16 = g ? NULL : g16 + (size_t)i * V;
	float lt = threadIdx.x == 0 && t >= 0 ? get(o, o16, t) : 0.0f, v[W];
	Acc m = -INFINITY, s = 0;
	for (int j = threadIdx.x * W; j < V && t >= 0; j += W * blockDim.x) {
		getw<W>(o, o16, j, v);
		fold<Acc, W>(v, m, s);
	}
	Acc top = block_max(m);
	s = block_sum(m == -INFINITY ? (Acc)0 : s * xexp<Acc>(m - top));
	Acc lse = top + log(s);
	if (threadIdx.x == 0)
		loss[i] = t >= 0 ? (float)(lse - (Acc)lt) : 0.0f;
	for (int j = threadIdx.x * W; j < V; j += W * blockDim.x) {
		getw<W>(o, o16, j, v);
		for (int k = 0; k < W; k++)
			v[k] = t < 0 ? 0.0f : (float)xexp<Acc>((Acc)v[k] - lse) - (float)(j + k == t);
		putw<W>(o, o16, j, v);
	}
}

/* The logits of rows in g or g16 (the other NULL) into their gradient and loss. */
template <typename Acc>
static void launch(float *g, bf16 *g16, int rows, int V, const int32_t *target, float *loss,
		   cudaStream_t st)
{
	if (V % 8 == 0 && tn_vec8(g) && tn_vec8(g16))
		softmax_grad<Acc, 8><<<rows, XENT_THREADS, 0, st>>>(g, g16, V, target, loss);
	else
		softmax_grad<Acc, 1><<<rows, XENT_THREADS, 0, st>>>(g, g16, V, target, loss);
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
		launch<double>(lg, NULL, rows, V, target + r0, loss + r0, cu->stream);
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

/* Column-major C[m,n] = alpha A.B (+ C when accumulate), bf16 A and B, C
 * of type ct: tn_gemm_bf16 with an alpha and a bf16 output, which only
 * these products need. */
static void gemm16(int ta, int tb, int m, int n, int k, float alpha, const bf16 *A, int lda,
		   const bf16 *B, int ldb, int accumulate, void *C, cudaDataType ct, int ldc,
		   const char *what)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu)
		return;
	tn_cuda_note_blas(cublasGemmEx(cu->blas16, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
				       tb ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k, &alpha, A,
				       CUDA_R_16BF, lda, B, CUDA_R_16BF, ldb,
				       accumulate ? &one : &zero, C, ct, ldc,
				       CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
			  what);
}

/* ---- mixed precision: scratch = the logits, then their gradient, [R, V] in bf16 ---- */

size_t xent_scratch_bf16(int R, int V)
{
	return ((size_t)R * V + 1) / 2;
}

void crossentropy_forward_bf16(float *loss, const bf16 *x16, const float *emb,
			       const int32_t *target, int R, int C, int V, float *scratch)
{
	struct tn_cuda *cu = tn_cuda_get();
	const bf16 *e16 = tn_bf16_weight(emb, (size_t)V * C);
	if (!cu || !x16 || !e16)
		return;
	int step = rows_per_product(V);
	for (int r0 = 0; r0 < R; r0 += step) {
		int rows = R - r0 < step ? R - r0 : step;
		bf16 *g = (bf16 *)scratch + (size_t)r0 * V;
		gemm16(1, 0, V, rows, C, 1.0f, e16, C, x16 + (size_t)r0 * C, C, 0, g, CUDA_R_16BF, V,
		       "crossentropy logits bf16");
		launch<float>(NULL, g, rows, V, target + r0, loss + r0, cu->stream);
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
		gemm16(0, 0, C, rows, V, scale, e16, C, g, V, 0, dx + (size_t)r0 * C, CUDA_R_32F, C,
		       "crossentropy dx bf16");
		gemm16(0, 1, C, V, rows, scale, x16 + (size_t)r0 * C, C, g, V, 1, demb, CUDA_R_32F, C,
		       "crossentropy demb bf16");
	}
}
