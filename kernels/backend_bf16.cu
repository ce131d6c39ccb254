/* backend_bf16.cu - the CUDA backend in mixed precision ("cuda-bf16"): the
 * memory, stream and fp32 ops of "cuda", but every matmul (the tied head of
 * the cross-entropy too) on the tensor cores with bf16 operands and fp32
 * accumulation, and the attention core through its bf16 path.
 * Decision: parameters, gradients and optimizer state stay fp32 (master
 * weights). The backend keeps a bf16 shadow of each allocation the first
 * time a matmul uses it as weights; upload, zero, copy and AdamW, the only
 * ops that write parameters, keep the shadow current, so the one model
 * definition runs unchanged. Activations stay fp32 in the model's memory
 * and are rounded to bf16 in staging buffers where they enter a product. */
#include <stdlib.h>
#include <string.h>

#include "cuda_common.h"
#include "graph_cuda.h"
#include "lightning_attn_cuda.h"
#include "ops_bf16.h"
#include "ops_cuda.h"

extern "C" {
#include "backend.h"
#include "util.h"
}

/* Every allocation of this backend, with its bf16 shadow once it has one. */
struct region {
	char *base;
	size_t bytes;
	bf16 *shadow;
};
static struct region *regions;
static size_t n_regions, cap_regions;

static struct region *region_of(const void *p)
{
	for (size_t i = 0; i < n_regions; i++)
		if ((const char *)p >= regions[i].base &&
		    (const char *)p < regions[i].base + regions[i].bytes)
			return &regions[i];
	return NULL;
}

static void *bf16_alloc(size_t bytes)
{
	if (n_regions == cap_regions) {
		size_t cap = cap_regions ? 2 * cap_regions : 16;
		struct region *r = (struct region *)realloc(regions, cap * sizeof(*r));
		if (!r) {
			tn_fail(TN_ENOMEM, "out of memory for the allocation table");
			return NULL;
		}
		regions = r;
		cap_regions = cap;
	}
	void *p = tn_cuda_alloc(bytes);
	if (p)
		regions[n_regions++] = (struct region){(char *)p, bytes ? bytes : 1, NULL};
	return p;
}

static void bf16_free(void *p)
{
	struct region *r = p ? region_of(p) : NULL;
	tn_cuda_free(p); /* synchronises first */
	if (!r)
		return;
	if (r->shadow)
		cudaFree(r->shadow);
	*r = regions[--n_regions];
}

/* The shadow elements of fp32 bytes [at, at + bytes) of region r, re-rounded. */
static void refresh(struct region *r, const void *at, size_t bytes)
{
	size_t i = (size_t)((const char *)at - r->base) / sizeof(float);
	tn_bf16_round(r->shadow + i, (const float *)at, bytes / sizeof(float));
}

static void bf16_upload(void *dst, const void *host, size_t bytes)
{
	tn_cuda_upload(dst, host, bytes);
	struct region *r = region_of(dst);
	if (r && r->shadow)
		refresh(r, dst, bytes);
}

/* ZeRO gathers parameters updated on other ranks with a copy. */
static void bf16_copy(void *dst, const void *src, size_t bytes)
{
	tn_cuda_copy(dst, src, bytes);
	struct region *r = region_of(dst);
	if (r && r->shadow)
		refresh(r, dst, bytes);
}

static void bf16_zero(void *p, size_t bytes)
{
	tn_cuda_zero(p, bytes);
	struct region *r = region_of(p);
	if (r && r->shadow)
		refresh(r, p, bytes);
}

const bf16 *tn_bf16_weight(const float *w, size_t n)
{
	struct region *r = region_of(w);
	if (!r) /* not ours (a caller's buffer): round it for this use only */
		return tn_bf16_stage(TN_STAGE_W, w, n);
	if (!r->shadow) {
		size_t floats = r->bytes / sizeof(float);
		cudaError_t e = cudaMalloc(&r->shadow, floats * sizeof(bf16) + 16);
		tn_cuda_note(e, "allocating a bf16 shadow");
		if (e != cudaSuccess)
			return r->shadow = NULL;
		tn_bf16_round(r->shadow, (const float *)r->base, floats);
	}
	return r->shadow + ((const char *)w - r->base) / sizeof(float);
}

bf16 *tn_bf16_shadow_of(const float *p)
{
	struct region *r = region_of(p);
	return r && r->shadow ? r->shadow + ((const char *)p - r->base) / sizeof(float) : NULL;
}

/* bf16 output staging buffer `which`, widened into dst after the call. */
static bf16 *out16(int which, size_t n)
{
	return (bf16 *)tn_cuda_stage((enum tn_stage)which, n * sizeof(bf16));
}

static int attn_forward(const struct tn_attn_shape *sh, const float *q, const float *k,
			const float *v, const float *decay_s, const float *state_in, float *o,
			float *state_out)
{
	struct tn_cuda *cu = tn_cuda_get();
	size_t rows = (size_t)sh->B * sh->H * sh->N, nq = rows * sh->dk, nv = rows * sh->dv;
	const bf16 *q16 = tn_bf16_stage(TN_STAGE_Q, q, nq), *k16 = tn_bf16_stage(TN_STAGE_K, k, nq);
	const bf16 *v16 = tn_bf16_stage(TN_STAGE_V, v, nv);
	bf16 *o16 = out16(TN_STAGE_O, nv);
	if (!cu || !q16 || !k16 || !v16 || !o16)
		return tn_cuda_status();
	int rc = lightning_attn_forward_cuda(sh, NULL, TN_ATTN_BF16, q16, k16, v16, decay_s,
					     state_in, o16, state_out, cu->stream);
	if (!rc)
		tn_bf16_widen(o, o16, nv);
	return rc;
}

static int attn_backward(const struct tn_attn_shape *sh, const float *q, const float *k,
			 const float *v, const float *decay_s, const float *dout, float *dq,
			 float *dk, float *dv)
{
	struct tn_cuda *cu = tn_cuda_get();
	size_t rows = (size_t)sh->B * sh->H * sh->N, nq = rows * sh->dk, nv = rows * sh->dv;
	const bf16 *q16 = tn_bf16_stage(TN_STAGE_Q, q, nq), *k16 = tn_bf16_stage(TN_STAGE_K, k, nq);
	const bf16 *v16 = tn_bf16_stage(TN_STAGE_V, v, nv);
	const bf16 *do16 = tn_bf16_stage(TN_STAGE_O, dout, nv);
	bf16 *dq16 = out16(TN_STAGE_DQ, nq), *dk16 = out16(TN_STAGE_DK, nq);
	bf16 *dv16 = out16(TN_STAGE_DV, nv);
	if (!cu || !q16 || !k16 || !v16 || !do16 || !dq16 || !dk16 || !dv16)
		return tn_cuda_status();
	int rc = lightning_attn_backward_cuda(sh, NULL, TN_ATTN_BF16, q16, k16, v16, decay_s, do16,
					      dq16, dk16, dv16, cu->stream);
	if (!rc) {
		tn_bf16_widen(dq, dq16, nq);
		tn_bf16_widen(dk, dk16, nq);
		tn_bf16_widen(dv, dv16, nv);
	}
	return rc;
}

extern "C" const struct tn_backend tn_backend_cuda_bf16 = {
	.name = "cuda-bf16",
	.alloc = bf16_alloc,
	.free = bf16_free,
	.upload = bf16_upload,
	.download = tn_cuda_download,
	.zero = bf16_zero,
	.matmul_forward = matmul_forward_bf16,
	.matmul_backward = matmul_backward_bf16,
	TN_CUDA_FP32_OPS,
	.xent_scratch = xent_scratch_bf16,
	.crossentropy_forward = crossentropy_forward_bf16,
	.crossentropy_backward = crossentropy_backward_bf16,
	.sumsq_forward = sumsq_forward_cuda,
	.adamw_update = adamw_update_bf16,
	.attn_forward = attn_forward,
	.attn_backward = attn_backward,
	.attn_decode = attn_decode_cuda, /* one token at a time: fp32 */
	.copy = bf16_copy,
	.argmax_rows = tn_cuda_argmax_rows,
	.graph_begin = tn_cuda_graph_begin,
	.graph_end = tn_cuda_graph_end,
	.graph_launch = tn_cuda_graph_launch,
	.graph_free = tn_cuda_graph_free,
	.graph_epoch = tn_cuda_graph_epoch,
	.status = tn_cuda_status,
	.device_bytes = tn_cuda_device_bytes,
};
