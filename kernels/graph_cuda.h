/* graph_cuda.h - what the decode step needs beyond the model's ops on the
 * CUDA backend: device copies, a row argmax (greedy ids without bringing
 * the logits to the host) and CUDA graphs of the tn stream (backend.h's
 * copy, argmax_rows and graph_* entries). */
#ifndef TN_GRAPH_CUDA_H
#define TN_GRAPH_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void tn_cuda_copy(void *dst, const void *src, size_t bytes);
void tn_cuda_argmax_rows(int32_t *out, const float *x, int R, int C);
int tn_cuda_graph_begin(void);
int tn_cuda_graph_end(void **graph);
int tn_cuda_graph_launch(void *graph);
void tn_cuda_graph_free(void *graph);
/* Counted up by tn_cuda_stage each time it moves a staging buffer. */
extern size_t tn_cuda_stage_epoch;
size_t tn_cuda_graph_epoch(void);

#ifdef __cplusplus
}
#endif

#endif
