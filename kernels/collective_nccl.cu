/* collective_nccl.cu - NCCL collectives on the tn stream, each followed by a
 * stream synchronisation so that a failed or stuck peer surfaces here (the
 * trainer's watchdog bounds how long we wait). */
#include <nccl.h>
#include <stdio.h>
#include <time.h>

#include "collective_nccl.h"
#include "cuda_common.h"

extern "C" {
#include "util.h"
}

struct tn_nccl {
	ncclComm_t comm;
};

static int nccl_check(ncclResult_t r, const char *what)
{
	if (r == ncclSuccess)
		return TN_OK;
	return tn_fail(TN_EIO, "NCCL %s failed: %s", what, ncclGetErrorString(r));
}

/* Wait for the collective, watching NCCL's asynchronous error state while
 * the stream runs: a peer that died or broke the connection makes NCCL fail
 * here, and the communicator is aborted so that nothing waits on it (a
 * peer that is merely stuck is left to the trainer's watchdog). */
static int finish(struct tn_nccl *c, const char *what)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu)
		return tn_cuda_status();
	cudaError_t e;
	while ((e = cudaStreamQuery(cu->stream)) == cudaErrorNotReady) {
		ncclResult_t async = ncclSuccess;
		ncclCommGetAsyncError(c->comm, &async);
		if (async != ncclSuccess && async != ncclInProgress) {
			ncclCommAbort(c->comm);
			c->comm = NULL;
			return tn_fail(TN_EIO, "NCCL %s: a peer failed: %s", what,
				       ncclGetErrorString(async));
		}
		struct timespec pause = {0, 20 * 1000};
		nanosleep(&pause, NULL);
	}
	if (e != cudaSuccess)
		return tn_fail(TN_EIO, "NCCL %s: %s", what, cudaGetErrorString(e));
	return TN_OK;
}

extern "C" int tn_nccl_select_device(int local_rank)
{
	int n = 0;
	cudaError_t e = cudaGetDeviceCount(&n);
	if (e == cudaSuccess && n > 0)
		e = cudaSetDevice(local_rank % n);
	if (e != cudaSuccess || n == 0)
		return tn_fail(TN_EIO, "CUDA: no device for local rank %d (%s)", local_rank,
			       e != cudaSuccess ? cudaGetErrorString(e) : "no GPU");
	return TN_OK;
}

extern "C" int tn_nccl_make_id(unsigned char id[TN_NCCL_ID_BYTES])
{
	ncclUniqueId u;
	int rc = nccl_check(ncclGetUniqueId(&u), "unique id");
	if (!rc)
		memcpy(id, u.internal, TN_NCCL_ID_BYTES);
	return rc;
}

extern "C" int tn_nccl_open(struct tn_nccl **cp, int rank, int size,
			    const unsigned char id[TN_NCCL_ID_BYTES])
{
	struct tn_nccl *c = (struct tn_nccl *)tn_calloc(1, sizeof *c);
	if (!c)
		return TN_ENOMEM;
	ncclUniqueId u;
	memcpy(u.internal, id, TN_NCCL_ID_BYTES);
	int rc = tn_cuda_get() ? TN_OK : tn_cuda_status();
	if (!rc)
		rc = nccl_check(ncclCommInitRank(&c->comm, size, u, rank), "init");
	if (rc) {
		free(c);
		return rc;
	}
	*cp = c;
	return TN_OK;
}

extern "C" int tn_nccl_split(struct tn_nccl *c, int color, int key, struct tn_nccl **sub)
{
	struct tn_nccl *s = (struct tn_nccl *)tn_calloc(1, sizeof *s);
	if (!s)
		return TN_ENOMEM;
	int rc = nccl_check(ncclCommSplit(c->comm, color, key, &s->comm, NULL), "split");
	if (rc) {
		free(s);
		return rc;
	}
	*sub = s;
	return TN_OK;
}

extern "C" int tn_nccl_allreduce(struct tn_nccl *c, float *dev, size_t n)
{
	int rc = nccl_check(ncclAllReduce(dev, dev, n, ncclFloat, ncclSum, c->comm,
					  tn_cuda_get()->stream), "all-reduce");
	return rc ? rc : finish(c, "all-reduce");
}

extern "C" int tn_nccl_allreduce_host_f64(struct tn_nccl *c, double *host, size_t n)
{
	struct tn_cuda *cu = tn_cuda_get();
	double *dev = NULL;
	cudaError_t e = cudaMallocAsync((void **)&dev, n * sizeof *dev, cu->stream);
	if (e == cudaSuccess)
		e = cudaMemcpyAsync(dev, host, n * sizeof *dev, cudaMemcpyHostToDevice, cu->stream);
	int rc = e == cudaSuccess ? nccl_check(ncclAllReduce(dev, dev, n, ncclDouble, ncclSum,
							     c->comm, cu->stream), "all-reduce")
				  : tn_fail(TN_EIO, "CUDA: %s", cudaGetErrorString(e));
	if (!rc) {
		e = cudaMemcpyAsync(host, dev, n * sizeof *dev, cudaMemcpyDeviceToHost, cu->stream);
		rc = e == cudaSuccess ? finish(c, "all-reduce") : tn_fail(TN_EIO, "CUDA: %s",
								     cudaGetErrorString(e));
	}
	if (dev)
		cudaFreeAsync(dev, cu->stream);
	return rc;
}

extern "C" int tn_nccl_reduce_scatter(struct tn_nccl *c, const float *send, float *recv, size_t n)
{
	int rc = nccl_check(ncclReduceScatter(send, recv, n, ncclFloat, ncclSum, c->comm,
					      tn_cuda_get()->stream), "reduce-scatter");
	return rc ? rc : finish(c, "reduce-scatter");
}

extern "C" int tn_nccl_allgather(struct tn_nccl *c, const float *send, float *recv, size_t n)
{
	int rc = nccl_check(ncclAllGather(send, recv, n, ncclFloat, c->comm, tn_cuda_get()->stream),
			    "all-gather");
	return rc ? rc : finish(c, "all-gather");
}

extern "C" int tn_nccl_broadcast(struct tn_nccl *c, void *dev, size_t bytes, int root)
{
	int rc = nccl_check(ncclBroadcast(dev, dev, bytes, ncclChar, root, c->comm,
					  tn_cuda_get()->stream), "broadcast");
	return rc ? rc : finish(c, "broadcast");
}

extern "C" void tn_nccl_close(struct tn_nccl *c)
{
	if (!c)
		return;
	if (c->comm) /* NULL once aborted */
		ncclCommDestroy(c->comm);
	free(c);
}
