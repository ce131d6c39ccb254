/* collective.c - tn_comm over MPI or a single process. MPI is initialised
 * only when mpirun started us, so the single-process tools never pay for
 * it. Errors are returned (MPI_ERRORS_RETURN), not fatal inside MPI; a rank
 * that dies makes mpirun stop the others. A split (the TP and DP groups of
 * training) is a tn_comm of its own over MPI_Comm_split / ncclCommSplit. */
#include "collective.h"
#include "rendezvous.h"
#include "util.h"

#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#ifdef TN_CUDA
#include "collective_nccl.h"
#endif

/* A started MPI collective: the counts array it reads (or NULL), and for
 * an in-place reduce-scatter, which leaves this rank's block at the start
 * of the buffer, the move of its n floats from there to their place. */
struct pending {
	int *counts;
	float *to;
	const float *from;
	size_t n;
};

struct tn_comm {
	enum tn_comm_kind kind;
	int rank, size;
	int mpi;              /* MPI is initialised */
	int sub;              /* made by tn_comm_split: frees its communicator, not MPI */
	MPI_Comm mc;          /* MPI_COMM_WORLD or a split of it */
	MPI_Request *req;     /* non-blocking collectives not yet waited for */
	struct pending *pend; /* per request: what it reads, and what to do after */
	int n_req, cap_req;
#ifdef TN_CUDA
	struct tn_nccl *nccl;
#endif
};

static int mpi_check(int err, const char *what)
{
	if (err == MPI_SUCCESS)
		return TN_OK;
	char msg[MPI_MAX_ERROR_STRING];
	int len = 0;
	MPI_Error_string(err, msg, &len);
	return tn_fail(TN_EIO, "MPI %s failed: %.*s", what, len, msg);
}

/* Rank 0's unique id reaches the others through MPI when mpirun started
 * the ranks, else through the TCP rendezvous of the launch environment. */
static int open_nccl(struct tn_comm *c, const struct tn_launch_env *env)
{
#ifdef TN_CUDA
	const char *local = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
	unsigned char id[TN_NCCL_ID_BYTES] = {0};
	int rc = tn_nccl_select_device(env ? env->local_rank : local ? atoi(local) : 0);
	if (!rc && c->rank == 0)
		rc = tn_nccl_make_id(id);
	if (!rc && c->mpi) /* every rank must call: a failed rank 0 aborts below */
		rc = mpi_check(MPI_Bcast(id, TN_NCCL_ID_BYTES, MPI_BYTE, 0, MPI_COMM_WORLD),
			       "broadcast of the NCCL id");
	else if (!rc && env)
		rc = tn_rendezvous_share(env, id, sizeof id);
	if (!rc)
		rc = tn_nccl_open(&c->nccl, c->rank, c->size, id);
	if (!rc)
		c->kind = TN_COMM_NCCL;
	return rc;
#else
	(void)c;
	(void)env;
	return tn_fail(TN_EUSAGE, "NCCL needs a build with CUDA (nvcc)");
#endif
}

int tn_comm_open(struct tn_comm **cp, int device_buffers)
{
	struct tn_comm *c = tn_calloc(1, sizeof *c);
	if (!c)
		return TN_ENOMEM;
	c->kind = TN_COMM_SINGLE;
	c->size = 1;
	const char *force = getenv("TN_COMM");
	if (getenv("OMPI_COMM_WORLD_SIZE")) {
		int provided, rc = mpi_check(MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided),
					     "init");
		if (!rc)
			rc = mpi_check(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN),
				       "errhandler");
		if (!rc)
			rc = mpi_check(MPI_Comm_rank(MPI_COMM_WORLD, &c->rank), "rank");
		if (!rc)
			rc = mpi_check(MPI_Comm_size(MPI_COMM_WORLD, &c->size), "size");
		if (rc) {
			free(c);
			return rc;
		}
		c->kind = TN_COMM_MPI;
		c->mpi = 1;
		c->mc = MPI_COMM_WORLD;
	}
	struct tn_launch_env env;
	int from_env = 0, rc = c->mpi ? TN_OK : tn_launch_env_read(&env, &from_env);
	if (!rc && from_env) {
		c->rank = env.rank;
		c->size = env.world;
		if (!device_buffers && env.world > 1)
			rc = tn_fail(TN_EUSAGE, "TN_WORLD_SIZE=%d: ranks started from the environment "
				     "talk through NCCL (the CUDA backend); CPU ranks start under mpirun",
				     env.world);
	}
	if (rc) {
		free(c);
		return rc;
	}
	if ((device_buffers && c->size > 1) || (force && !strcmp(force, "nccl"))) {
		rc = open_nccl(c, from_env ? &env : NULL);
		if (rc) {
			tn_comm_close(c);
			return rc;
		}
	}
	*cp = c;
	return TN_OK;
}

int tn_comm_rank(const struct tn_comm *c) { return c->rank; }
int tn_comm_size(const struct tn_comm *c) { return c->size; }
enum tn_comm_kind tn_comm_kind(const struct tn_comm *c) { return c->kind; }

int tn_comm_split(struct tn_comm *c, int color, int key, struct tn_comm **out)
{
	struct tn_comm *s = tn_calloc(1, sizeof *s);
	if (!s)
		return TN_ENOMEM;
	*s = (struct tn_comm){.kind = c->kind, .size = 1, .mpi = c->mpi, .sub = 1};
	int rc = TN_OK, split = 0;
	if (c->mpi) {
		rc = mpi_check(MPI_Comm_split(c->mc, color, key, &s->mc), "communicator split");
		split = !rc;
		if (!rc)
			rc = mpi_check(MPI_Comm_set_errhandler(s->mc, MPI_ERRORS_RETURN), "errhandler");
		if (!rc)
			rc = mpi_check(MPI_Comm_rank(s->mc, &s->rank), "rank");
		if (!rc)
			rc = mpi_check(MPI_Comm_size(s->mc, &s->size), "size");
	}
#ifdef TN_CUDA
	if (!rc && c->nccl) /* ranks launched without MPI learn their place here */
		rc = tn_nccl_split(c->nccl, color, key, &s->nccl, &s->rank, &s->size);
#endif
	if (rc) {
		if (split)
			MPI_Comm_free(&s->mc);
		free(s);
		return rc;
	}
	*out = s;
	return TN_OK;
}

/* MPI counts are ints: large buffers go in pieces. */
#define PIECE ((size_t)1 << 30)

int tn_comm_allreduce(struct tn_comm *c, float *buf, size_t n)
{
#ifdef TN_CUDA
	if (c->kind == TN_COMM_NCCL)
		return tn_nccl_allreduce(c->nccl, buf, n);
#endif
	for (size_t at = 0; c->kind == TN_COMM_MPI && at < n; at += PIECE) {
		int rc = mpi_check(MPI_Allreduce(MPI_IN_PLACE, buf + at, (int)TN_MIN(PIECE, n - at),
						 MPI_FLOAT, MPI_SUM, c->mc), "allreduce");
		if (rc)
			return rc;
	}
	return TN_OK;
}

/* Room for one more request (and what it keeps). */
static int more_requests(struct tn_comm *c)
{
	if (c->n_req < c->cap_req)
		return TN_OK;
	int cap = c->cap_req ? 2 * c->cap_req : 64;
	MPI_Request *r = tn_realloc(c->req, (size_t)cap * sizeof(*r));
	if (r)
		c->req = r;
	struct pending *p = r ? tn_realloc(c->pend, (size_t)cap * sizeof(*p)) : NULL;
	if (!p)
		return TN_ENOMEM;
	c->pend = p;
	c->cap_req = cap;
	return TN_OK;
}

/* The request just started is pending; poke the started ones (Open MPI
 * progresses non-blocking collectives only inside MPI calls). */
static int started(struct tn_comm *c, int err, struct pending p, const char *what)
{
	int rc = mpi_check(err, what), done;
	if (rc) {
		free(p.counts);
		return rc;
	}
	c->pend[c->n_req++] = p;
	return mpi_check(MPI_Testall(c->n_req, c->req, &done, MPI_STATUSES_IGNORE),
			 "test of non-blocking collectives");
}

int tn_comm_iallreduce(struct tn_comm *c, float *buf, size_t n)
{
#ifdef TN_CUDA
	if (c->kind == TN_COMM_NCCL)
		return tn_nccl_iallreduce(c->nccl, buf, n);
#endif
	if (c->kind != TN_COMM_MPI)
		return tn_comm_allreduce(c, buf, n);
	for (size_t at = 0; at < n; at += PIECE) {
		int rc = more_requests(c);
		if (!rc)
			rc = started(c, MPI_Iallreduce(MPI_IN_PLACE, buf + at, (int)TN_MIN(PIECE, n - at),
						       MPI_FLOAT, MPI_SUM, c->mc, &c->req[c->n_req]),
				     (struct pending){0}, "non-blocking allreduce");
		if (rc)
			return rc;
	}
	return TN_OK;
}

/* MPI's in-place reduce-scatter leaves this rank's block at the start of
 * buf; the wait moves it to its place. */
int tn_comm_ireduce_scatterv_inplace(struct tn_comm *c, float *buf, const size_t *counts)
{
	if (c->kind == TN_COMM_SINGLE)
		return TN_OK;
#ifdef TN_CUDA
	if (c->kind == TN_COMM_NCCL)
		return tn_nccl_ireduce_scatterv_inplace(c->nccl, buf, counts, c->size);
#endif
	int *k = tn_malloc((size_t)c->size * sizeof(*k)), rc = k ? more_requests(c) : TN_ENOMEM;
	size_t at = 0;
	for (int q = 0; !rc && q < c->size; q++)
		if (counts[q] > INT32_MAX)
			rc = tn_fail(TN_EUSAGE, "reduce-scatter of %zu floats to one rank is too large",
				     counts[q]);
		else
			k[q] = (int)counts[q];
	for (int q = 0; !rc && q < c->rank; q++)
		at += counts[q];
	if (rc) {
		free(k);
		return rc;
	}
	struct pending p = {k, buf + at, buf, counts[c->rank]};
	return started(c, MPI_Ireduce_scatter(MPI_IN_PLACE, buf, k, MPI_FLOAT, MPI_SUM, c->mc,
					      &c->req[c->n_req]), p, "non-blocking reduce-scatter");
}

int tn_comm_wait(struct tn_comm *c)
{
#ifdef TN_CUDA
	if (c->kind == TN_COMM_NCCL)
		return tn_nccl_wait(c->nccl);
#endif
	int n = c->n_req;
	c->n_req = 0;
	int rc = n ? mpi_check(MPI_Waitall(n, c->req, MPI_STATUSES_IGNORE),
			       "wait for non-blocking collectives") : TN_OK;
	for (int i = 0; i < n; i++) {
		struct pending *p = &c->pend[i];
		if (!rc && p->to != p->from)
			memmove(p->to, p->from, p->n * sizeof(float));
		free(p->counts);
	}
	return rc;
}

int tn_comm_allreduce_f64(struct tn_comm *c, double *buf, size_t n)
{
#ifdef TN_CUDA
	if (c->kind == TN_COMM_NCCL)
		return tn_nccl_allreduce_host_f64(c->nccl, buf, n);
#endif
	if (c->kind != TN_COMM_MPI || n == 0)
		return TN_OK;
	return mpi_check(MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_DOUBLE, MPI_SUM,
				       c->mc), "allreduce");
}

int tn_comm_reduce_scatter_inplace(struct tn_comm *c, float *buf, size_t n)
{
	float *mine = buf + (size_t)c->rank * n;
#ifdef TN_CUDA
	if (c->kind == TN_COMM_NCCL)
		return tn_nccl_reduce_scatter(c->nccl, buf, mine, n);
#endif
	if (c->kind != TN_COMM_MPI)
		return TN_OK;
	if (n > INT32_MAX)
		return tn_fail(TN_EUSAGE, "reduce-scatter of %zu floats per rank is too large", n);
	int rc = mpi_check(MPI_Reduce_scatter_block(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM,
						    c->mc), "reduce-scatter");
	if (!rc) /* MPI leaves this rank's block at the start of buf */
		memmove(mine, buf, n * sizeof(float));
	return rc;
}

int tn_comm_allgather(struct tn_comm *c, const float *send, float *recv, size_t n)
{
#ifdef TN_CUDA
	if (c->kind == TN_COMM_NCCL)
		return tn_nccl_allgather(c->nccl, send, recv, n);
#endif
	if (c->kind != TN_COMM_MPI) {
		memmove(recv, send, n * sizeof *recv);
		return TN_OK;
	}
	if (n > INT32_MAX)
		return tn_fail(TN_EUSAGE, "all-gather of %zu floats per rank is too large", n);
	return mpi_check(MPI_Allgather(send, (int)n, MPI_FLOAT, recv, (int)n, MPI_FLOAT,
				       c->mc), "all-gather");
}

int tn_comm_allgather_inplace(struct tn_comm *c, float *buf, size_t n)
{
#ifdef TN_CUDA
	if (c->kind == TN_COMM_NCCL)
		return tn_nccl_allgather(c->nccl, buf + (size_t)c->rank * n, buf, n);
#endif
	if (c->kind != TN_COMM_MPI)
		return TN_OK;
	if (n > INT32_MAX)
		return tn_fail(TN_EUSAGE, "all-gather of %zu floats per rank is too large", n);
	return mpi_check(MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, (int)n, MPI_FLOAT,
				       c->mc), "all-gather");
}

int tn_comm_broadcast(struct tn_comm *c, void *buf, size_t bytes, int root)
{
#ifdef TN_CUDA
	if (c->kind == TN_COMM_NCCL)
		return tn_nccl_broadcast(c->nccl, buf, bytes, root);
#endif
	for (size_t at = 0; c->kind == TN_COMM_MPI && at < bytes; at += PIECE) {
		int rc = mpi_check(MPI_Bcast((char *)buf + at, (int)TN_MIN(PIECE, bytes - at), MPI_BYTE,
					     root, c->mc), "broadcast");
		if (rc)
			return rc;
	}
	return TN_OK;
}

int tn_comm_barrier(struct tn_comm *c)
{
	return c->mpi ? mpi_check(MPI_Barrier(c->mc), "barrier") : TN_OK;
}

void tn_comm_abort(struct tn_comm *c, int status)
{
	if (c && c->mpi)
		MPI_Abort(MPI_COMM_WORLD, status);
}

void tn_comm_close(struct tn_comm *c)
{
	if (!c)
		return;
#ifdef TN_CUDA
	tn_nccl_close(c->nccl);
#endif
	for (int i = 0; i < c->n_req; i++)
		free(c->pend[i].counts);
	free(c->pend);
	free(c->req);
	if (c->sub && c->mpi)
		MPI_Comm_free(&c->mc);
	else if (c->mpi)
		MPI_Finalize();
	free(c);
}
