/* lightning_attn_cuda.h - CUDA Lightning Attention (kernels/lightning_attn.cu),
 * the GPU form of libcore/lightning_attn.h with the same layouts and meaning.
 *
 * All tensor pointers are device pointers; q, k, v, o, dout, dq, dk, dv are in
 * `dtype` (fp32 or bf16), decay_s [H] and the states are fp32, arithmetic
 * accumulates in fp32 (bf16 inputs on the tensor cores, bf16 outputs within
 * 1.5x the error of rounding the exact result to bf16; fp32 inputs, the
 * checking mode, on the CUDA cores in fp32: ~1e-6 relative). dk <= 256,
 * dv <= 128 and a multiple of 4, any B, H, N >= 1; states 16-byte aligned.
 * Temporary memory (when B*H is too small to fill the GPU, the states of the
 * spans each sequence is cut into: B*H*spans*dk*dv floats, B*H*spans a few
 * times the multiprocessors, two of them in the backward) comes from
 * cudaMallocAsync on `stream`; the first call makes the device's default pool
 * keep freed memory instead of returning it.
 * The calls are asynchronous and return TN_OK, TN_EDATA (bad shape) or TN_EIO
 * (a CUDA error, message set). For packed documents the offsets (struct
 * tn_attn_docs) are device pointers too, and are trusted: check them with
 * lightning_attn_check() on the host. Tuning and measuring knobs (environment):
 * TN_ATTN_SUB (1 to 4096 chunks of 64 rows per segment; default: chosen from
 * B*H and the GPU's multiprocessors), TN_ATTN_WG (at dk = dv = 128, bf16:
 * 0 every walk on mma.sync, 1 the forward's on wgmma, 2 (default) all on
 * wgmma), TN_ATTN_DKV=0 (with the mma.sync walks at dk = dv = 128, dk and dv
 * in two backward walks instead of one). */
#ifndef TN_LIGHTNING_ATTN_CUDA_H
#define TN_LIGHTNING_ATTN_CUDA_H

#include <cuda_runtime.h>

#include "lightning_attn.h"

#ifdef __cplusplus
extern "C" {
#endif

enum tn_attn_dtype { TN_ATTN_F32 = 0, TN_ATTN_BF16 = 1 };

int lightning_attn_forward_cuda(const struct tn_attn_shape *sh, const struct tn_attn_docs *docs,
				int dtype, const void *q, const void *k, const void *v,
				const float *decay_s, const float *state_in, void *o,
				float *state_out, cudaStream_t stream);

int lightning_attn_backward_cuda(const struct tn_attn_shape *sh, const struct tn_attn_docs *docs,
				 int dtype, const void *q, const void *k, const void *v,
				 const float *decay_s, const void *dout, void *dq, void *dk,
				 void *dv, cudaStream_t stream);

/* One token per sequence: q, k [B,H,dk], v, o [B,H,dv], state [B,H,dk,dv]. */
int lightning_attn_decode_cuda(int B, int H, int dk, int dv, int dtype, const void *q,
			       const void *k, const void *v, const float *decay_s, float *state,
			       void *o, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
