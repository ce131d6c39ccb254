/* ops_decode_cuda.h - the fused decode ops of libcore/ops_decode.h on the
 * GPU (kernels/ops_decode.cu): same arguments and arithmetic, device
 * memory, launched on the tn stream; they return TN_OK or a failure to
 * launch (an asynchronous one is reported by the next tn_cuda_status). */
#ifndef TN_OPS_DECODE_CUDA_H
#define TN_OPS_DECODE_CUDA_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "ops_decode.h"

/* fp32 weights: the weight-streaming kernel for every row count, 8 rows a
 * launch (the check backend "cuda"). */
int decode_matmul_cuda(float *out, const struct tn_dmm *a);
int mixer_decode_cuda(float *o, const float *p, const int32_t *pos, const float *theta,
		      const float *decay_s, float *state, int B, int H, int hd, enum tn_act act);

/* Rows up to which the bf16 product streams its weights (fp32 inputs);
 * above, it runs on the tensor cores (bf16 inputs). One: on the H200 the
 * 1B decode step took 1.10 ms streaming 1 row, but 2.38 and 3.83 ms
 * streaming 4 and 8 rows, against 1.58 ms for 16 rows through cuBLAS. */
#define TN_DMM_ROWS 1

#ifdef __cplusplus
}

#include "ops_bf16.h"
/* bf16 weights w16, w2_16 (the shadows of a->w, a->w2): the streaming
 * kernel for up to TN_DMM_ROWS rows, above that the tensor-core product
 * between a prologue and an epilogue kernel. */
int decode_matmul_bf16(float *out, const struct tn_dmm *a, const bf16 *w16, const bf16 *w2_16);
#endif

#endif
