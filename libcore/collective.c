/* collective.c - tn_comm over MPI or a single process. MPI is initialised
 * only when mpirun started us, so the single-process tools never pay for
 * it. Errors are returned (MPI_ERRORS_RETURN), not fatal inside MPI; a rank
 * that dies makes mpirun stop the others. */
#include "collective.h"
#include "util.h"

#include <mpi.h>
#include <stdlib.h>
#include <string.h>

struct tn_comm {
	enum tn_comm_kind kind;
	int rank, size;
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

int tn_comm_open(struct tn_comm **cp)
{
	struct tn_comm *c = tn_calloc(1, sizeof *c);
	if (!c)
		return TN_ENOMEM;
	c->kind = TN_COMM_SINGLE;
	c->size = 1;
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
	}
	*cp = c;
	return TN_OK;
}

int tn_comm_rank(const struct tn_comm *c) { return c->rank; }
int tn_comm_size(const struct tn_comm *c) { return c->size; }
enum tn_comm_kind tn_comm_kind(const struct tn_comm *c) { return c->kind; }

/* MPI counts are ints: large buffers go in pieces. */
#define PIECE ((size_t)1 << 30)

int tn_comm_allreduce(struct tn_comm *c, float *buf, size_t n)
{
	for (size_t at = 0; c->kind == TN_COMM_MPI && at < n; at += PIECE) {
		int rc = mpi_check(MPI_Allreduce(MPI_IN_PLACE, buf + at, (int)TN_MIN(PIECE, n - at),
						 MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD), "allreduce");
		if (rc)
			return rc;
	}
	return TN_OK;
}

int tn_comm_allreduce_f64(struct tn_comm *c, double *buf, size_t n)
{
	if (c->kind != TN_COMM_MPI || n == 0)
		return TN_OK;
	return mpi_check(MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_DOUBLE, MPI_SUM,
				       MPI_COMM_WORLD), "allreduce");
}

int tn_comm_reduce_scatter(struct tn_comm *c, const float *send, float *recv, size_t n)
{
	if (c->kind != TN_COMM_MPI) {
		memmove(recv, send, n * sizeof *recv);
		return TN_OK;
	}
	if (n > INT32_MAX)
		return tn_fail(TN_EUSAGE, "reduce-scatter of %zu floats per rank is too large", n);
	return mpi_check(MPI_Reduce_scatter_block(send, recv, (int)n, MPI_FLOAT, MPI_SUM,
						  MPI_COMM_WORLD), "reduce-scatter");
}

int tn_comm_allgather(struct tn_comm *c, const float *send, float *recv, size_t n)
{
	if (c->kind != TN_COMM_MPI) {
		memmove(recv, send, n * sizeof *recv);
		return TN_OK;
	}
	if (n > INT32_MAX)
		return tn_fail(TN_EUSAGE, "all-gather of %zu floats per rank is too large", n);
	return mpi_check(MPI_Allgather(send, (int)n, MPI_FLOAT, recv, (int)n, MPI_FLOAT,
				       MPI_COMM_WORLD), "all-gather");
}

int tn_comm_broadcast(struct tn_comm *c, void *buf, size_t bytes, int root)
{
	for (size_t at = 0; c->kind == TN_COMM_MPI && at < bytes; at += PIECE) {
		int rc = mpi_check(MPI_Bcast((char *)buf + at, (int)TN_MIN(PIECE, bytes - at), MPI_BYTE,
					     root, MPI_COMM_WORLD), "broadcast");
		if (rc)
			return rc;
	}
	return TN_OK;
}

int tn_comm_barrier(struct tn_comm *c)
{
	return c->kind == TN_COMM_MPI ? mpi_check(MPI_Barrier(MPI_COMM_WORLD), "barrier") : TN_OK;
}

void tn_comm_abort(struct tn_comm *c, int status)
{
	if (c && c->kind == TN_COMM_MPI)
		MPI_Abort(MPI_COMM_WORLD, status);
}

void tn_comm_close(struct tn_comm *c)
{
	if (!c)
		return;
	if (c->kind == TN_COMM_MPI)
		MPI_Finalize();
	free(c);
}
