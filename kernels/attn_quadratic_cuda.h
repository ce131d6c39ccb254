/* attn_quadratic_cuda.h - the quadratic baseline that tn-bench attn times beside
 * Lightning Attention: O = ((Q K^T) . M) V with the decay mask M[t][j] =
 * lambda^(t-j) for j <= t, else 0, the NormAttention form the paper compares
 * against, with cuBLAS bf16 GEMMs (fp32 accumulation) and one mask kernel.
 * The masked scores S [B,H,N,N] bf16 are kept from the forward for the
 * backward, which also needs dS [B,H,N,N]: memory grows as N^2. Device
 * pointers, [B,H,N,d] row-major bf16 (d = dk = dv); asynchronous on the
 * handle's stream; TN_OK, or TN_EIO with the message set. */
#ifndef TN_ATTN_QUADRATIC_CUDA_H
#define TN_ATTN_QUADRATIC_CUDA_H

#include <cublas_v2.h>

#ifdef __cplusplus
extern "C" {
#endif

int attn_quadratic_forward(cublasHandle_t h, int B, int H, int N, int d, const void *q,
			   const void *k, const void *v, const float *decay_s, void *S, void *o);

int attn_quadratic_backward(cublasHandle_t h, int B, int H, int N, int d, const void *q,
			    const void *k, const void *v, const float *decay_s, const void *S,
			    const void *dout, void *dS, void *dq, void *dk, void *dv);

#ifdef __cplusplus
}
#endif

#endif
