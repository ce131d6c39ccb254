/* collective_nccl.h - the NCCL side of libcore/collective.c: collectives
 * over device buffers on the tn CUDA stream. The caller supplies rank,
 * size and the unique id (rank 0 makes it, the launcher shares it). */
#ifndef TN_COLLECTIVE_NCCL_H
#define TN_COLLECTIVE_NCCL_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TN_NCCL_ID_BYTES 128

struct tn_nccl;
/* Pick this rank's GPU (local_rank modulo the devices), before any CUDA work. */
int tn_nccl_select_device(int local_rank);
int tn_nccl_make_id(unsigned char id[TN_NCCL_ID_BYTES]);
int tn_nccl_open(struct tn_nccl **c, int rank, int size, const unsigned char id[TN_NCCL_ID_BYTES]);
/* The ranks of c with the same color, ordered by key (ncclCommSplit), and
 * this rank's place in them; collective over c. */
int tn_nccl_split(struct tn_nccl *c, int color, int key, struct tn_nccl **sub, int *rank,
		  int *size);
int tn_nccl_allreduce(struct tn_nccl *c, float *dev, size_t n);
/* Started on a side stream after the compute issued so far; tn_nccl_wait
 * finishes them and orders later compute after them. The buffers must not
 * be touched by compute in between. reduce_scatterv_inplace: rank q gets
 * the sum of buf's q-th block (counts[q] floats, blocks in rank order)
 * where that block is. */
int tn_nccl_iallreduce(struct tn_nccl *c, float *dev, size_t n);
int tn_nccl_ireduce_scatterv_inplace(struct tn_nccl *c, float *buf, const size_t *counts,
				     int size);
int tn_nccl_wait(struct tn_nccl *c);
/* A host double array, summed through a device buffer. */
int tn_nccl_allreduce_host_f64(struct tn_nccl *c, double *host, size_t n);
/* In place when recv = send + rank * n (reduce-scatter) or send = recv +
 * rank * n (all-gather), as NCCL defines it. */
int tn_nccl_reduce_scatter(struct tn_nccl *c, const float *send, float *recv, size_t n);
int tn_nccl_allgather(struct tn_nccl *c, const float *send, float *recv, size_t n);
int tn_nccl_broadcast(struct tn_nccl *c, void *dev, size_t bytes, int root);
void tn_nccl_close(struct tn_nccl *c);

#ifdef __cplusplus
}
#endif

#endif
