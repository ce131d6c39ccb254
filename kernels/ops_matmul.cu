/* ops_matmul.cu - the linear maps through cuBLAS: in fp32 with pedantic
 * math (no TF32), so results match the CPU reference to rounding; and in
 * mixed precision (bf16 operands, fp32 accumulation and output) with the
 * bf16 rounding and widening kernels that feed it.
 * Row-major A[m,k] is column-major A^T: every call below is the CPU
 * formula read in column-major terms (as llm.c does). */
#include <stdint.h>

#include "cuda_common.h"
#include "ops_bf16.h"
#include "ops_cuda.h"

static const float one = 1.0f, zero = 0.0f;

/* out[BT,OC] (= or +=) inp[BT,C] W[OC,C]^T  <=>  out^T = W^T^T inp^T */
void matmul_forward_cuda(float *out, const float *inp, const float *w, int BT, int C, int OC,
			 int accumulate)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu)
		return;
	tn_cuda_note_blas(cublasSgemm(cu->blas, CUBLAS_OP_T, CUBLAS_OP_N, OC, BT, C, &one, w, C,
				      inp, C, accumulate ? &one : &zero, out, OC),
			  "matmul_forward");
}

void matmul_backward_cuda(float *dinp, float *dw, const float *dout, const float *inp,
			  const float *w, int BT, int C, int OC, int accumulate)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu)
		return;
	if (dinp) /* dinp[BT,C] = dout[BT,OC] W[OC,C] */
		tn_cuda_note_blas(cublasSgemm(cu->blas, CUBLAS_OP_N, CUBLAS_OP_N, C, BT, OC, &one, w,
					      C, dout, OC, accumulate ? &one : &zero, dinp, C),
				  "matmul_backward dinp");
	/* dw[OC,C] += dout^T inp */
	tn_cuda_note_blas(cublasSgemm(cu->blas, CUBLAS_OP_N, CUBLAS_OP_T, C, OC, BT, &one, inp, C,
				      dout, OC, &one, dw, C),
			  "matmul_backward dw");
}

/* ---- mixed precision (ops_bf16.h) ---- */

/* Four elements per thread when both pointers allow vector access. */
__global__ static void round_bf16(bf16 *dst, const float *src, size_t n, int vec)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (!vec) {
		if (i < n)
			dst[i] = __float2bfloat16_rn(src[i]);
		return;
	}
	i *= 4;
	if (i + 3 < n) {
		float4 x = *(const float4 *)(src + i);
		__nv_bfloat162 lo = __floats2bfloat162_rn(x.x, x.y), hi = __floats2bfloat162_rn(x.z, x.w);
		uint2 both = {*(uint32_t *)&lo, *(uint32_t *)&hi};
		*(uint2 *)(dst + i) = both;
		return;
	}
	for (; i < n; i++)
		dst[i] = __float2bfloat16_rn(src[i]);
}

__global__ static void widen_bf16(float *dst, const bf16 *src, size_t n)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n)
		dst[i] = __bfloat162float(src[i]);
}

void tn_bf16_round(bf16 *dst, const float *src, size_t n)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu || n == 0)
		return;
	int vec = (uintptr_t)src % 16 == 0 && (uintptr_t)dst % 8 == 0;
	round_bf16<<<TN_CUDA_BLOCKS(vec ? (n + 3) / 4 : n), 256, 0, cu->stream>>>(dst, src, n, vec);
	TN_CUDA_CHECK_LAUNCH("bf16 rounding");
}

void tn_bf16_widen(float *dst, const bf16 *src, size_t n)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu || n == 0)
		return;
	widen_bf16<<<TN_CUDA_BLOCKS(n), 256, 0, cu->stream>>>(dst, src, n);
	TN_CUDA_CHECK_LAUNCH("bf16 widening");
}

void tn_gemm_bf16(int ta, int tb, int m, int n, int k, const bf16 *A, int lda, const bf16 *B,
		  int ldb, int accumulate, float *C, int ldc, const char *what)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu || !A || !B)
		return;
	tn_cuda_note_blas(cublasGemmEx(cu->blas16, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
				       tb ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k, &one, A, CUDA_R_16BF,
				       lda, B, CUDA_R_16BF, ldb, accumulate ? &one : &zero, C,
				       CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
			  what);
}

/* The same products as the fp32 forms above, operands in bf16. */
void matmul_forward_bf16(float *out, const bf16 *inp, const bf16 *w, int BT, int C, int OC,
			 int accumulate)
{
	tn_gemm_bf16(1, 0, OC, BT, C, w, C, inp, C, accumulate, out, OC, "matmul_forward bf16");
}

void matmul_backward_bf16(float *dinp, float *dw, const bf16 *dout, const bf16 *inp,
			  const bf16 *w, int BT, int C, int OC, int accumulate)
{
	if (dinp)
		tn_gemm_bf16(0, 0, C, BT, OC, w, C, dout, OC, accumulate, dinp, C,
			     "matmul_backward bf16 dinp");
	tn_gemm_bf16(0, 1, C, OC, BT, inp, C, dout, OC, 1, dw, C, "matmul_backward bf16 dw");
}
