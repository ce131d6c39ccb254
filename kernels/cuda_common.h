/* cuda_common.h - what every CUDA op of tn shares: one stream and one cuBLAS
 * handle per process, and a sticky error. Ops are asynchronous and return
 * nothing (as the CPU ops), so the first failure is recorded here and
 * reported by tn_cuda_status() at the backend's next synchronisation. */
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
	cublasHandle_t blas;
};

/* The process's stream and handle (created on first use); NULL on failure. */
struct tn_cuda *tn_cuda_get(void);
/* Record a failure of `what` (first one wins). */
void tn_cuda_note(cudaError_t e, const char *what);
void tn_cuda_note_blas(cublasStatus_t s, const char *what);
/* Synchronise; TN_OK, or TN_EIO with the first recorded failure as message. */
int tn_cuda_status(void);

#ifdef __cplusplus
}
#endif

/* Blocks of 256 threads covering n elements. */
#define TN_CUDA_BLOCKS(n) ((unsigned)(((n) + 255) / 256))
#define TN_CUDA_CHECK_LAUNCH(what) tn_cuda_note(cudaGetLastError(), what)

#endif
