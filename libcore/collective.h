/* collective.h - the collectives that distributed training needs, over one
 * process, MPI (host buffers; the CPU backend) or NCCL (device buffers; the
 * CUDA backend). Every rank calls the same collectives in the same order.
 * Reductions are sums; buffers are fp32 and live where the backend keeps its
 * memory, except that the f64 all-reduce always takes host memory. The
 * in-place reduce-scatters and all-gather let ZeRO shard a padded buffer
 * without a staging copy of it. */
#ifndef TN_COLLECTIVE_H
#define TN_COLLECTIVE_H

#include <stddef.h>

enum tn_comm_kind {
	TN_COMM_SINGLE, /* one process: every collective is a copy or nothing */
	TN_COMM_MPI,    /* ranks started by mpirun (Open MPI) */
	TN_COMM_NCCL,   /* NCCL over the GPUs; MPI (if any) only starts it */
};

struct tn_comm;

/* The communicator this process was started into: with device_buffers
 * (the CUDA backend) NCCL when there are several ranks, else MPI when
 * launched by mpirun (OMPI_COMM_WORLD_SIZE is set), else a single process.
 * TN_COMM=nccl in the environment asks for NCCL even for one rank (a check
 * of the NCCL path). NCCL ranks pick GPU (local rank mod GPUs); rank 0's
 * unique id reaches the others through MPI. */
int tn_comm_open(struct tn_comm **c, int device_buffers);
int tn_comm_rank(const struct tn_comm *c);
int tn_comm_size(const struct tn_comm *c);
enum tn_comm_kind tn_comm_kind(const struct tn_comm *c);
/* The ranks of c with the same color, ranked by key (MPI_Comm_split,
 * ncclCommSplit): the tensor- and data-parallel groups of a 2-D rank grid.
 * Collective over c; close the result before c. */
int tn_comm_split(struct tn_comm *c, int color, int key, struct tn_comm **sub);

/* buf[0..n) = the sum over ranks, in place. */
int tn_comm_allreduce(struct tn_comm *c, float *buf, size_t n);
int tn_comm_allreduce_f64(struct tn_comm *c, double *buf, size_t n);
/* The same sum, started (MPI_Iallreduce; NCCL on a side stream after the
 * compute issued so far) and finished by tn_comm_wait, which waits for
 * every one started since the last wait (NCCL: and orders later compute
 * after them); buf must stay untouched until then. One process: done at
 * once. */
int tn_comm_iallreduce(struct tn_comm *c, float *buf, size_t n);
/* Started like it, in place: buf holds counts[0] + ... + counts[size - 1]
 * floats, rank q's block after those of ranks before it; once waited for,
 * this rank's block holds its sum over ranks, where it was (the rest of
 * buf is then undefined). */
int tn_comm_ireduce_scatterv_inplace(struct tn_comm *c, float *buf, const size_t *counts);
int tn_comm_wait(struct tn_comm *c);
/* In place: buf[size * n] summed over ranks, this rank's block (buf +
 * rank * n) getting its sum; the other blocks are then undefined. */
int tn_comm_reduce_scatter_inplace(struct tn_comm *c, float *buf, size_t n);
/* Every rank's send[n] into recv[size * n], in rank order. */
int tn_comm_allgather(struct tn_comm *c, const float *send, float *recv, size_t n);
/* The same in place: every rank's block buf[rank * n, (rank + 1) * n) to
 * all ranks. */
int tn_comm_allgather_inplace(struct tn_comm *c, float *buf, size_t n);
int tn_comm_broadcast(struct tn_comm *c, void *buf, size_t bytes, int root);
int tn_comm_barrier(struct tn_comm *c);
/* Stop every rank (after a failure on this one); does not return under MPI. */
void tn_comm_abort(struct tn_comm *c, int status);
void tn_comm_close(struct tn_comm *c);

#endif
