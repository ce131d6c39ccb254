/* attn_quadratic.cu - the quadratic baseline of tn-bench attn (see
 * attn_quadratic_cuda.h): five strided-batched cuBLAS GEMMs and a mask.
 * cuBLAS is column-major, so a row-major [rows, cols] matrix is handed over as
 * its transpose: the row-major C = A B is computed as C^T = B^T A^T. */
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "attn_quadratic_cuda.h"

extern "C" {
#include "util.h"
}

namespace {

/* S[bh][t][j] *= lambda^(t-j) for j <= t, else 0; eight elements a thread. */
__global__ void decay_mask(long total, int H, int N, const float *decay_s, __nv_bfloat16 *S)
{
	long e = 8 * ((long)blockIdx.x * blockDim.x + threadIdx.x);
	if (e >= total)
		return;
	long nn = (long)N * N;
	int h = (int)(e / nn % H), t = (int)(e % nn / N), j0 = (int)(e % N);
	float s = decay_s[h];
	uint4 x = *(uint4 *)(S + e);
	__nv_bfloat16 *p = (__nv_bfloat16 *)&x;
	for (int u = 0; u < 8; u++) {
		int j = j0 + u;
		p[u] = __float2bfloat16_rn(j <= t ? __bfloat162float(p[u]) * expf(-s * (float)(t - j))
						  : 0.f);
	}
	*(uint4 *)(S + e) = x;
}

int mask(int B, int H, int N, const float *decay_s, void *S, cudaStream_t st)
{
	long total = (long)B * H * N * N; /* N % 8 == 0: checked by qdims_of */
	long threads = total / 8;
	decay_mask<<<(unsigned)((threads + 255) / 256), 256, 0, st>>>(total, H, N, decay_s,
								       (__nv_bfloat16 *)S);
	cudaError_t e = cudaGetLastError();
	return e == cudaSuccess ? TN_OK
				: tn_fail(TN_EIO, "attn_quadratic: mask: %s", cudaGetErrorString(e));
}

/* Column-major C[m,n] = op(A) op(B), batched over B*H with the given strides. */
int gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
	 const void *A, int lda, long sa, const void *Bm, int ldb, long sb, void *C, int ldc,
	 long sc, int batch)
{
	float one = 1.f, zero = 0.f;
	cublasStatus_t s = cublasGemmStridedBatchedEx(
		h, ta, tb, m, n, k, &one, A, CUDA_R_16BF, lda, sa, Bm, CUDA_R_16BF, ldb, sb, &zero,
		C, CUDA_R_16BF, ldc, sc, batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
	return s == CUBLAS_STATUS_SUCCESS
		       ? TN_OK
		       : tn_fail(TN_EIO, "attn_quadratic: cuBLAS: %s", cublasGetStatusString(s));
}

constexpr cublasOperation_t T = CUBLAS_OP_T, NT = CUBLAS_OP_N;

/* Strides of one call and the handle's stream, once the shape is checked. */
struct qdims {
	long nd, nn; /* elements of one (b, h) of q and of S */
	int bh;
	cudaStream_t st;
};

int qdims_of(cublasHandle_t h, int B, int H, int N, int d, qdims *q)
{
	*q = qdims{(long)N * d, (long)N * N, B * H, nullptr};
	if (N % 8 || d % 8)
		return tn_fail(TN_EDATA, "attn_quadratic: N=%d d=%d: both must be multiples of 8",
			       N, d);
	if (cublasGetStream(h, &q->st) != CUBLAS_STATUS_SUCCESS)
		return tn_fail(TN_EIO, "attn_quadratic: cublasGetStream failed");
	return TN_OK;
}

} /* namespace */

/* S = Q K^T masked, O = S V. */
extern "C" int attn_quadratic_forward(cublasHandle_t h, int B, int H, int N, int d,
				      const void *q, const void *k, const void *v,
				      const float *decay_s, void *S, void *o)
{
	qdims z;
	int rc = qdims_of(h, B, H, N, d, &z);
	if (!rc)
		rc = gemm(h, T, NT, N, N, d, k, d, z.nd, q, d, z.nd, S, N, z.nn, z.bh);
	if (!rc)
		rc = mask(B, H, N, decay_s, S, z.st);
	if (!rc)
		rc = gemm(h, NT, NT, d, N, N, v, d, z.nd, S, N, z.nn, o, d, z.nd, z.bh);
	return rc;
}

/* dS = (dO V^T) masked, dQ = dS K, dK = dS^T Q, dV = S^T dO. */
extern "C" int attn_quadratic_backward(cublasHandle_t h, int B, int H, int N, int d,
				       const void *q, const void *k, const void *v,
				       const float *decay_s, const void *S, const void *dout,
				       void *dS, void *dq, void *dk, void *dv)
{
	qdims z;
	int rc = qdims_of(h, B, H, N, d, &z);
	if (!rc)
		rc = gemm(h, T, NT, N, N, d, v, d, z.nd, dout, d, z.nd, dS, N, z.nn, z.bh);
	if (!rc)
		rc = mask(B, H, N, decay_s, dS, z.st);
	if (!rc)
		rc = gemm(h, NT, NT, d, N, N, k, d, z.nd, dS, N, z.nn, dq, d, z.nd, z.bh);
	if (!rc)
		rc = gemm(h, NT, T, d, N, N, q, d, z.nd, dS, N, z.nn, dk, d, z.nd, z.bh);
	if (!rc)
		rc = gemm(h, NT, T, d, N, N, dout, d, z.nd, S, N, z.nn, dv, d, z.nd, z.bh);
	return rc;
}
