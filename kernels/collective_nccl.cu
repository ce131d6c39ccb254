/* collective_nccl.cu - NCCL collectives. The blocking ones run on the tn
 * stream and end in a synchronisation, so that a failed or stuck peer
 * surfaces here (the trainer's watchdog bounds how long we wait); the
 * started ones (gradient buckets during the backward pass) run on a stream
 * of their own, ordered after the compute issued before them by an event,
 * and tn_nccl_wait orders the compute stream after all of them. */
#include <nccl.h>
#include <stdio.h>
#include <time.h>

#include "collective_nccl.h"
#include "cuda_common.h"
#include "ops_bf16.h"

extern "C" {
#include "util.h"
}

struct tn_nccl {
	ncclComm_t comm;
	cudaStream_t side;        /* the started collectives; made on first use */
	cudaEvent_t ready, done;  /* compute -> side, side -> compute */
	int pending;              /* started since the last wait */
};

static int nccl_check(ncclResult_t r, const char *what)
{
	if (r == ncclSuccess)
		return TN_OK;
	return tn_fail(TN_EIO, "NCCL %s failed: %s", what, ncclGetErrorString(r));
}

/* Wait for the collective, watching NCCL's asynchronous error state while
 * the stream runs: a broken connection to a peer makes NCCL fail here, and
 * the communicator is aborted so that nothing waits on it. A peer that is
 * stuck, or one that died on this host (NVLink/P2P: NCCL reports nothing,
 * measured on two H200s), is left to the trainer's watchdog. */
static int finish_on(struct tn_nccl *c, cudaStream_t stream, const char *what)
{
	cudaError_t e;
	while ((e = cudaStreamQuery(stream)) == cudaErrorNotReady) {
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

static int finish(struct tn_nccl *c, const char *what)
{
	struct tn_cuda *cu = tn_cuda_get();
	return cu ? finish_on(c, cu->stream, what) : tn_cuda_status();
}

static int cuda_check(cudaError_t e, const char *what)
{
	return e == cudaSuccess ? TN_OK : tn_fail(TN_EIO, "CUDA %s: %s", what, cudaGetErrorString(e));
}

/* The compute stream ordered after the collectives started on the side
 * stream: a blocking collective that follows on this communicator then
 * runs after them, not beside them (NCCL does not promise progress to two
 * of one communicator's collectives running at once on two streams). */
static int compute_after_side(struct tn_nccl *c)
{
	if (!c->pending)
		return TN_OK;
	struct tn_cuda *cu = tn_cuda_get();
	int rc = cu ? cuda_check(cudaEventRecord(c->done, c->side), "event record")
		    : tn_cuda_status();
	return rc ? rc : cuda_check(cudaStreamWaitEvent(cu->stream, c->done, 0), "stream wait");
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
	ncclResult_t r = rc ? ncclSuccess : ncclCommInitRank(&c->comm, size, u, rank);
	if (r == ncclInvalidUsage) /* what NCCL says of two ranks on one device */
		rc = tn_fail(TN_EIO, "NCCL init failed: invalid usage (rank %d of %d: NCCL needs "
			     "a GPU of its own for each rank on a host)", rank, size);
	else if (!rc)
		rc = nccl_check(r, "init");
	if (rc) {
		free(c);
		return rc;
	}
	*cp = c;
	return TN_OK;
}

extern "C" int tn_nccl_split(struct tn_nccl *c, int color, int key, struct tn_nccl **sub,
			     int *rank, int *size)
{
	struct tn_nccl *s = (struct tn_nccl *)tn_calloc(1, sizeof *s);
	if (!s)
		return TN_ENOMEM;
	int rc = nccl_check(ncclCommSplit(c->comm, color, key, &s->comm, NULL), "split");
	if (!rc)
		rc = nccl_check(ncclCommUserRank(s->comm, rank), "rank of a split");
	if (!rc)
		rc = nccl_check(ncclCommCount(s->comm, size), "size of a split");
	if (rc) {
		if (s->comm)
			ncclCommDestroy(s->comm);
		free(s);
		return rc;
	}
	*sub = s;
	return TN_OK;
}

extern "C" int tn_nccl_allreduce(struct tn_nccl *c, float *dev, size_t n)
{
	int rc = compute_after_side(c);
	if (!rc)
		rc = nccl_check(ncclAllReduce(dev, dev, n, ncclFloat, ncclSum, c->comm,
					      tn_cuda_get()->stream), "all-reduce");
	return rc ? rc : finish(c, "all-reduce");
}

extern "C" int tn_nccl_allreduce_host_f64(struct tn_nccl *c, double *host, size_t n)
{
	int rc = compute_after_side(c);
	if (rc)
		return rc;
	struct tn_cuda *cu = tn_cuda_get();
	double *dev = NULL;
	cudaError_t e = cudaMallocAsync((void **)&dev, n * sizeof *dev, cu->stream);
	if (e == cudaSuccess)
		e = cudaMemcpyAsync(dev, host, n * sizeof *dev, cudaMemcpyHostToDevice, cu->stream);
	rc = e == cudaSuccess ? nccl_check(ncclAllReduce(dev, dev, n, ncclDouble, ncclSum, c->comm,
							 cu->stream), "all-reduce")
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
	int rc = compute_after_side(c);
	if (!rc)
		rc = nccl_check(ncclReduceScatter(send, recv, n, ncclFloat, ncclSum, c->comm,
						  tn_cuda_get()->stream), "reduce-scatter");
	return rc ? rc : finish(c, "reduce-scatter");
}

/* The bf16 backend keeps a bf16 shadow of the weights current through
 * every op that writes them; an all-gather into the parameters (ZeRO, in
 * place) writes them too, so it rounds what it wrote into the shadow. */
extern "C" int tn_nccl_allgather(struct tn_nccl *c, const float *send, float *recv, size_t n)
{
	int rc = compute_after_side(c);
	if (!rc)
		rc = nccl_check(ncclAllGather(send, recv, n, ncclFloat, c->comm,
					      tn_cuda_get()->stream), "all-gather");
	int size = 0;
	bf16 *shadow = rc ? NULL : tn_bf16_shadow_of(recv);
	if (shadow)
		rc = nccl_check(ncclCommCount(c->comm, &size), "rank count");
	if (shadow && !rc)
		tn_bf16_round(shadow, recv, (size_t)size * n);
	return rc ? rc : finish(c, "all-gather");
}

extern "C" int tn_nccl_broadcast(struct tn_nccl *c, void *dev, size_t bytes, int root)
{
	int rc = compute_after_side(c);
	if (!rc)
		rc = nccl_check(ncclBroadcast(dev, dev, bytes, ncclChar, root, c->comm,
					      tn_cuda_get()->stream), "broadcast");
	return rc ? rc : finish(c, "broadcast");
}

/* The side stream, ordered after everything issued on the compute stream
 * so far (the gradients about to be summed). */
static int side_after_compute(struct tn_nccl *c)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu)
		return tn_cuda_status();
	int rc = TN_OK;
	if (!c->side) {
		rc = cuda_check(cudaStreamCreateWithFlags(&c->side, cudaStreamNonBlocking), "stream");
		if (!rc)
			rc = cuda_check(cudaEventCreateWithFlags(&c->ready, cudaEventDisableTiming),
					"event");
		if (!rc)
			rc = cuda_check(cudaEventCreateWithFlags(&c->done, cudaEventDisableTiming),
					"event");
	}
	if (!rc)
		rc = cuda_check(cudaEventRecord(c->ready, cu->stream), "event record");
	if (!rc)
		rc = cuda_check(cudaStreamWaitEvent(c->side, c->ready, 0), "stream wait");
	c->pending = c->pending || !rc;
	return rc;
}

extern "C" int tn_nccl_iallreduce(struct tn_nccl *c, float *dev, size_t n)
{
	int rc = side_after_compute(c);
	return rc ? rc : nccl_check(ncclAllReduce(dev, dev, n, ncclFloat, ncclSum, c->comm, c->side),
				    "all-reduce");
}

/* NCCL has no reduce-scatter with uneven counts: one reduce per rank, to
 * that rank, in one group; each in place (send == recv), so the root's sum
 * lands where its block was. */
extern "C" int tn_nccl_ireduce_scatterv_inplace(struct tn_nccl *c, float *buf,
						const size_t *counts, int size)
{
	int rc = side_after_compute(c);
	if (rc)
		return rc;
	rc = nccl_check(ncclGroupStart(), "group start");
	size_t at = 0;
	for (int q = 0; q < size && !rc; q++) {
		if (counts[q])
			rc = nccl_check(ncclReduce(buf + at, buf + at, counts[q], ncclFloat, ncclSum,
						   q, c->comm, c->side), "reduce");
		at += counts[q];
	}
	int end = nccl_check(ncclGroupEnd(), "group end");
	return rc ? rc : end;
}

extern "C" int tn_nccl_wait(struct tn_nccl *c)
{
	if (!c->pending)
		return TN_OK;
	int rc = compute_after_side(c);
	c->pending = 0;
	return rc ? rc : finish_on(c, c->side, "gradient sums");
}

extern "C" void tn_nccl_close(struct tn_nccl *c)
{
	if (!c)
		return;
	if (c->side) {
		cudaStreamSynchronize(c->side);
		cudaStreamDestroy(c->side);
		cudaEventDestroy(c->ready);
		cudaEventDestroy(c->done);
	}
	if (c->comm) /* NULL once aborted */
		ncclCommDestroy(c->comm);
	free(c);
}
