/* ops_bf16.h - the mixed-precision ops of the cuda-bf16 backend: the same
 * arguments as their fp32 forms in ops_cuda.h (fp32 tensors in and out),
 * but the products run on the tensor cores with bf16 operands and fp32
 * accumulation. Weights come from the backend's bf16 shadows, activations
 * are rounded to bf16 in staging buffers (cuda_common.h). C++ only. */
#ifndef TN_OPS_BF16_H
#define TN_OPS_BF16_H

#include <cuda_bf16.h>
#include <stddef.h>
#include <stdint.h>

typedef __nv_bfloat16 bf16;

/* The bf16 shadow of n weights at w (kernels/backend_bf16.cu), current with
 * the fp32 values; NULL on failure (noted). */
const bf16 *tn_bf16_weight(const float *w, size_t n);
/* The shadow of the parameter at p, or NULL when its memory has none. */
bf16 *tn_bf16_shadow_of(const float *p);
/* dst[0, n) = bf16(src[0, n)), on the stream. */
void tn_bf16_round(bf16 *dst, const float *src, size_t n);
void tn_bf16_widen(float *dst, const bf16 *src, size_t n);
/* src rounded into staging buffer `which`; NULL on failure. */
const bf16 *tn_bf16_stage(int which, const float *src, size_t n);
/* Column-major C[m,n] = A.B (+ C when accumulate), bf16 A and B, fp32 C. */
void tn_gemm_bf16(int ta, int tb, int m, int n, int k, const bf16 *A, int lda, const bf16 *B,
		  int ldb, int accumulate, float *C, int ldc, const char *what);

void matmul_forward_bf16(float *out, const float *inp, const float *w, int BT, int C, int OC,
			 int accumulate);
void matmul_backward_bf16(float *dinp, float *dw, const float *dout, const float *inp,
			  const float *w, int BT, int C, int OC, int accumulate);
size_t xent_scratch_bf16(int V);
void crossentropy_forward_bf16(float *loss, float *lse, const float *x, const float *emb,
			       const int32_t *target, int R, int C, int V, float *scratch);
void crossentropy_backward_bf16(float *dx, float *demb, const float *x, const float *emb,
				const int32_t *target, const float *lse, float scale, int R,
				int C, int V, float *scratch);
void adamw_update_bf16(float *p, const float *g, float *m, float *v, size_t n, float lr,
		       float beta1, float beta2, float eps, float wd, float gscale, float bc1,
		       float bc2);

#endif
