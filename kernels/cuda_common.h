/* cuda_common.h - what every CUDA op of tn shares: one stream, two cuBLAS
 * handles (pedantic fp32, and tensor-core bf16) per process, a sticky error,
 * the device memory calls and grow-only staging buffers. Ops are
 * asynchronous and return nothing (as the CPU ops), so the first failure is
 * recorded here and reported by tn_cuda_status() at the next synchronisation. */
#ifndef TN_CUDA_COMMON_H
#define TN_CUDA_COMMON_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct tn_cuda {
	cudaStream_t stream;
	cublasHandle_t blas;   /* fp32 in pedantic math: the check mode */
	cublasHandle_t blas16; /* default math: bf16 operands on the tensor cores */
};

/* Staging buffers, one per use, kept across calls: a buffer grows (after a
 * synchronisation) when a larger size is asked for and is never shrunk, so
 * the steps after the first allocate nothing. */
enum tn_stage {
	TN_STAGE_SUMSQ, TN_STAGE_W, TN_STAGE_O, TN_STAGE_DQ, TN_STAGE_DK, TN_STAGE_DV,
	TN_STAGE_EMBED, TN_STAGE_ADAMW, TN_STAGE_COUNT
};

/* The process's stream and handle (created on first use); NULL on failure. */
struct tn_cuda *tn_cuda_get(void);
/* Record a failure of `what` (first one wins). */
void tn_cuda_note(cudaError_t e, const char *what);
void tn_cuda_note_blas(cublasStatus_t s, const char *what);
/* Synchronise; TN_OK, or TN_EIO with the first recorded failure as message. */
int tn_cuda_status(void);
/* The staging buffer `which`, at least `bytes` long; NULL (failure noted). */
void *tn_cuda_stage(enum tn_stage which, size_t bytes);
/* The memory ops of the backend table (cuda and cuda-bf16). */
void *tn_cuda_alloc(size_t bytes);
void tn_cuda_free(void *p);
void tn_cuda_upload(void *dst, const void *host, size_t bytes);
void tn_cuda_download(void *host, const void *src, size_t bytes);
void tn_cuda_zero(void *p, size_t bytes);
size_t tn_cuda_device_bytes(void);
/* Pinned host memory (host_alloc / host_free of the table): an upload from
 * it is queued on the stream without waiting for it. */
void *tn_cuda_host_alloc(size_t bytes);
void tn_cuda_host_free(void *p);

#ifdef __cplusplus
}
#endif

/* Blocks of 256 threads covering n elements. */
#define TN_CUDA_BLOCKS(n) ((unsigned)(((n) + 255) / 256))
#define TN_CUDA_CHECK_LAUNCH(what) tn_cuda_note(cudaGetLastError(), what)

#endif
