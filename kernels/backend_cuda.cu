/* backend_cuda.cu - the CUDA backend: device memory, the stream and cuBLAS
 * handle, the sticky error, and the op table over the ops_*.cu kernels and
 * the Lightning Attention kernels. It implements libcore/backend.h, so the
 * one model definition runs on the GPU unchanged. fp32 throughout (the
 * check mode); every op is asynchronous on one stream. Deterministic: no
 * op adds with atomics, every reduction has a fixed order and cuBLAS
 * repeats itself on one stream, so a run repeats bit for bit on one GPU. */
#include <stdio.h>
#include <string.h>

#include "cuda_common.h"
#include "lightning_attn_cuda.h"
#include "graph_cuda.h"
#include "ops_cuda.h"
#include "ops_decode_cuda.h"

extern "C" {
#include "backend.h"
#include "util.h"
}

static struct tn_cuda ctx;
static int ready, failed;
static char first_error[256];

extern "C" void tn_cuda_note(cudaError_t e, const char *what)
{
	if (e == cudaSuccess || failed)
		return;
	failed = 1;
	snprintf(first_error, sizeof first_error, "CUDA: %s: %s", what, cudaGetErrorString(e));
}

extern "C" void tn_cuda_note_blas(cublasStatus_t s, const char *what)
{
	if (s == CUBLAS_STATUS_SUCCESS || failed)
		return;
	failed = 1;
	snprintf(first_error, sizeof first_error, "cuBLAS: %s: %s", what, cublasGetStatusString(s));
}

extern "C" struct tn_cuda *tn_cuda_get(void)
{
	if (ready)
		return failed ? NULL : &ctx;
	ready = 1;
	cudaError_t e = cudaStreamCreateWithFlags(&ctx.stream, cudaStreamNonBlocking);
	tn_cuda_note(e, "creating the stream");
	if (e != cudaSuccess)
		return NULL;
	cublasStatus_t s = cublasCreate(&ctx.blas);
	if (s == CUBLAS_STATUS_SUCCESS)
		s = cublasSetStream(ctx.blas, ctx.stream);
	if (s == CUBLAS_STATUS_SUCCESS) /* fp32 means fp32: no TF32 */
		s = cublasSetMathMode(ctx.blas, CUBLAS_PEDANTIC_MATH);
	if (s == CUBLAS_STATUS_SUCCESS)
		s = cublasCreate(&ctx.blas16);
	if (s == CUBLAS_STATUS_SUCCESS)
		s = cublasSetStream(ctx.blas16, ctx.stream);
	tn_cuda_note_blas(s, "creating the cuBLAS handle");
	return failed ? NULL : &ctx;
}

extern "C" int tn_cuda_status(void)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (cu)
		tn_cuda_note(cudaStreamSynchronize(cu->stream), "synchronising");
	return failed ? tn_fail(TN_EIO, "%s", first_error) : TN_OK;
}

static struct {
	void *p;
	size_t bytes;
} stage[TN_STAGE_COUNT];

extern "C" void *tn_cuda_stage(enum tn_stage which, size_t bytes)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu)
		return NULL;
	if (stage[which].bytes >= bytes)
		return stage[which].p;
	if (stage[which].p) { /* kernels in flight may still read it */
		tn_cuda_note(cudaStreamSynchronize(cu->stream), "staging");
		cudaFree(stage[which].p);
	}
	stage[which].bytes = 0;
	tn_cuda_stage_epoch++; /* graphs that recorded the old buffer are stale */
	cudaError_t e = cudaMalloc(&stage[which].p, bytes);
	tn_cuda_note(e, "allocating a staging buffer");
	if (e != cudaSuccess)
		return stage[which].p = NULL;
	stage[which].bytes = bytes;
	return stage[which].p;
}

extern "C" size_t tn_cuda_device_bytes(void)
{
	size_t free_b = 0, total = 0;
	if (!tn_cuda_get() || cudaMemGetInfo(&free_b, &total) != cudaSuccess)
		return 0;
	return total - free_b;
}

extern "C" void *tn_cuda_alloc(size_t bytes)
{
	void *p = NULL;
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu) {
		tn_cuda_status(); /* the message of the failure that stopped us */
		return NULL;
	}
	cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
	if (e == cudaSuccess)
		e = cudaMemsetAsync(p, 0, bytes, cu->stream);
	if (e != cudaSuccess) {
		tn_fail(TN_ENOMEM, "CUDA: cannot allocate %zu bytes: %s", bytes, cudaGetErrorString(e));
		if (p)
			cudaFree(p);
		return NULL;
	}
	return p;
}

extern "C" void tn_cuda_free(void *p)
{
	if (!p)
		return;
	if (ready && !failed)
		cudaStreamSynchronize(ctx.stream);
	cudaFree(p);
}

/* The pinned blocks handed out by host_alloc (a few: the trainer's batches). */
#define MAX_PINNED 64
static struct {
	const char *p;
	size_t bytes;
} pinned[MAX_PINNED];

static int is_pinned(const void *host, size_t bytes)
{
	const char *a = (const char *)host;
	for (int i = 0; i < MAX_PINNED; i++)
		if (pinned[i].p && a >= pinned[i].p && a + bytes <= pinned[i].p + pinned[i].bytes)
			return 1;
	return 0;
}

extern "C" void *tn_cuda_host_alloc(size_t bytes)
{
	int slot = 0;
	while (slot < MAX_PINNED && pinned[slot].p)
		slot++;
	void *p = NULL;
	cudaError_t e = slot < MAX_PINNED ? cudaHostAlloc(&p, bytes ? bytes : 1, cudaHostAllocDefault)
					  : cudaErrorMemoryAllocation;
	if (e != cudaSuccess) {
		tn_fail(TN_ENOMEM, "CUDA: cannot allocate %zu bytes of pinned host memory%s: %s", bytes,
			slot < MAX_PINNED ? "" : " (all slots taken)", cudaGetErrorString(e));
		return NULL;
	}
	memset(p, 0, bytes);
	pinned[slot].p = (const char *)p;
	pinned[slot].bytes = bytes;
	return p;
}

extern "C" void tn_cuda_host_free(void *p)
{
	if (!p)
		return;
	for (int i = 0; i < MAX_PINNED; i++)
		if (pinned[i].p == p)
			pinned[i].p = NULL;
	if (ready && !failed) /* a queued upload may still read it */
		cudaStreamSynchronize(ctx.stream);
	cudaFreeHost(p);
}

extern "C" void tn_cuda_upload(void *dst, const void *host, size_t bytes)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu || !bytes)
		return;
	/* synchronous from pageable memory: the caller may reuse it right away;
	 * from pinned memory queued, the caller keeping it until the next sync */
	cudaError_t e = cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, cu->stream);
	if (e == cudaSuccess && !is_pinned(host, bytes))
		e = cudaStreamSynchronize(cu->stream);
	tn_cuda_note(e, "upload");
}

extern "C" void tn_cuda_download(void *host, const void *src, size_t bytes)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (cu && bytes) {
		cudaError_t e = cudaMemcpyAsync(host, src, bytes, cudaMemcpyDeviceToHost, cu->stream);
		tn_cuda_note(e == cudaSuccess ? cudaStreamSynchronize(cu->stream) : e, "download");
	}
	if (!cu || failed)
		memset(host, 0, bytes); /* never hand back uninitialised memory */
}

extern "C" void tn_cuda_zero(void *p, size_t bytes)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (cu && bytes)
		tn_cuda_note(cudaMemsetAsync(p, 0, bytes, cu->stream), "zero");
}

static int attn_forward(const struct tn_attn_shape *sh, const float *q, const float *k,
			const float *v, const float *decay_s, const float *state_in, float *o,
			float *state_out)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu)
		return tn_cuda_status();
	return lightning_attn_forward_cuda(sh, NULL, TN_ATTN_F32, q, k, v, decay_s, state_in, o,
					   state_out, cu->stream);
}

static int attn_backward(const struct tn_attn_shape *sh, const float *q, const float *k,
			 const float *v, const float *decay_s, const float *dout, float *dq,
			 float *dk, float *dv)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu)
		return tn_cuda_status();
	return lightning_attn_backward_cuda(sh, NULL, TN_ATTN_F32, q, k, v, decay_s, dout, dq, dk,
					    dv, cu->stream);
}

extern "C" int attn_decode_cuda(int B, int H, int dk, int dv, const float *q, const float *k,
		       const float *v, const float *decay_s, float *state, float *o)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu)
		return tn_cuda_status();
	return lightning_attn_decode_cuda(B, H, dk, dv, TN_ATTN_F32, q, k, v, decay_s, state, o,
					  cu->stream);
}

extern "C" const struct tn_backend tn_backend_cuda = {
	.name = "cuda",
	.alloc = tn_cuda_alloc,
	.free = tn_cuda_free,
	.upload = tn_cuda_upload,
	.download = tn_cuda_download,
	.zero = tn_cuda_zero,
	.matmul_forward = matmul_forward_cuda,
	.matmul_backward = matmul_backward_cuda,
	.embedding_forward = embedding_forward_cuda,
	.embedding_backward = embedding_backward_cuda,
	.srmsnorm_forward = srmsnorm_forward_cuda,
	.srmsnorm_backward = srmsnorm_backward_cuda,
	.act_forward = act_forward_cuda,
	.act_backward = act_backward_cuda,
	.gate_forward = gate_forward_cuda,
	.gate_backward = gate_backward_cuda,
	.residual_forward = residual_forward_cuda,
	.lrpe_forward = lrpe_forward_cuda,
	.lrpe_backward = lrpe_backward_cuda,
	.heads_merge = heads_merge_cuda,
	.xent_scratch = xent_scratch_cuda,
	.crossentropy_forward = crossentropy_forward_cuda,
	.crossentropy_backward = crossentropy_backward_cuda,
	.sumsq_forward = sumsq_forward_cuda,
	.adamw_update = adamw_update_cuda,
	.attn_forward = attn_forward,
	.attn_backward = attn_backward,
	.attn_decode = attn_decode_cuda,
	.residual_norm_forward = residual_norm_forward_cuda,
	.act_lrpe_forward = act_lrpe_forward_cuda,
	.act_lrpe_backward = act_lrpe_backward_cuda,
	.merge_norm_gate_forward = merge_norm_gate_forward_cuda,
	.gate_norm_split_backward = gate_norm_split_backward_cuda,
	.operand = NULL,
	.copy = tn_cuda_copy,
	.argmax_rows = tn_cuda_argmax_rows,
	.graph_begin = tn_cuda_graph_begin,
	.graph_end = tn_cuda_graph_end,
	.graph_launch = tn_cuda_graph_launch,
	.graph_free = tn_cuda_graph_free,
	.graph_epoch = tn_cuda_graph_epoch,
	.status = tn_cuda_status,
	.device_bytes = tn_cuda_device_bytes,
	.profile = NULL,
	.profile_read = NULL,
	.adamw_fused = adamw_fused_cuda,
	.host_alloc = tn_cuda_host_alloc,
	.host_free = tn_cuda_host_free,
	.decode_matmul = decode_matmul_cuda,
	.mixer_decode = mixer_decode_cuda,
};
