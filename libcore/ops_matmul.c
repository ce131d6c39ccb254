/* ops_matmul.c - linear maps through OpenBLAS sgemm.
 * Weights are [out, in] row-major (PyTorch), so the forward is inp W^T;
 * the weight gradient always accumulates (gradient accumulation across
 * micro-batches and the split qkvu projection rely on it). */
#include "ops.h"

#include <cblas.h>

void matmul_forward(float *out, const float *inp, const float *w, int BT, int C, int OC,
		    int accumulate)
{
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, BT, OC, C, 1.0f, inp, C, w, C,
		    accumulate ? 1.0f : 0.0f, out, OC);
}

void matmul_backward(float *dinp, float *dw, const float *dout, const float *inp,
		     const float *w, int BT, int C, int OC, int accumulate)
{
	if (dinp)
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, BT, C, OC, 1.0f, dout, OC,
			    w, C, accumulate ? 1.0f : 0.0f, dinp, C);
	cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, BT, 1.0f, dout, OC, inp, C,
		    1.0f, dw, C);
}
