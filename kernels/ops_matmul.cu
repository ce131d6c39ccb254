/* ops_matmul.cu - the linear maps through cuBLAS, in fp32 with the default
 * math mode (no TF32), so results match the CPU reference to rounding.
 * Row-major A[m,k] is column-major A^T: every call below is the CPU
 * formula read in column-major terms (as llm.c does). */
#include "cuda_common.h"
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
