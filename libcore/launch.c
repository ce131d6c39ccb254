/* launch.c - starting the ranks of one host: under mpirun (CPU ranks, whose
 * collectives are MPI's), or as child processes that meet through the
 * environment's rendezvous (GPU ranks: NCCL needs no mpirun). Open MPI
 * refuses to run as root and to put more ranks than cores on a host unless
 * told; tn tells it, since a user who asks for N ranks means it. */
#include "launch.h"
#include "rendezvous.h"
#include "util.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int tn_launched_as_rank(void)
{
	return getenv("OMPI_COMM_WORLD_SIZE") || getenv("TN_WORLD_SIZE");
}

/* argv without its "--nproc N" / "--nproc=N", into av (room for argc + 1). */
static int without_nproc(int argc, char **argv, char **av)
{
	int n = 0;
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--nproc") && i + 1 < argc) {
			i++;
			continue;
		}
		if (strncmp(argv[i], "--nproc=", 8))
			av[n++] = argv[i];
	}
	av[n] = NULL;
	return n;
}

int tn_launch_mpirun(int nproc, int argc, char **argv)
{
	char np[16];
	snprintf(np, sizeof np, "%d", nproc);
	char **av = tn_calloc((size_t)argc + 8, sizeof *av);
	if (!av)
		return TN_ENOMEM;
	int n = 0;
	av[n++] = "mpirun";
	av[n++] = "-np";
	av[n++] = np;
	av[n++] = "--oversubscribe";
	if (geteuid() == 0)
		av[n++] = "--allow-run-as-root";
	without_nproc(argc, argv, av + n);
	execvp("mpirun", av);
	int rc = tn_fail_errno("cannot run mpirun for --nproc %d (is Open MPI installed?)", nproc);
	free(av);
	return rc;
}

/* The running ranks, for the signal handler that passes SIGINT and SIGTERM
 * on (a sliced run stops all its ranks at one step and saves). */
static pid_t *live;
static int n_live;

static void pass_on(int sig)
{
	for (int i = 0; i < n_live; i++)
		if (live[i] > 0)
			kill(live[i], sig);
}

static void start_rank(int rank, int nproc, const char *addr, char **av)
{
	char r[16], w[16];
	snprintf(r, sizeof r, "%d", rank);
	snprintf(w, sizeof w, "%d", nproc);
	if (setenv("TN_RANK", r, 1) || setenv("TN_LOCAL_RANK", r, 1) ||
	    setenv("TN_WORLD_SIZE", w, 1) || setenv("TN_MASTER_ADDR", addr, 1))
		_exit(127);
	execvp(av[0], av);
	fprintf(stderr, "%s: rank %d: cannot run: %s\n", av[0], rank, strerror(errno));
	_exit(127);
}

/* The exit status a shell would give for a child's wait status. */
static int shell_status(int st)
{
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Wait for every rank; after the first that fails, stop the others
 * (mpirun does the same): *status is that rank's, or 0. */
static int wait_ranks(int nproc, int *status)
{
	int left = nproc, failed = -1;
	*status = 0;
	while (left > 0) {
		int st;
		pid_t p = waitpid(-1, &st, 0);
		if (p < 0 && errno == EINTR)
			continue;
		if (p < 0)
			return tn_fail_errno("waiting for the ranks");
		int rank = 0;
		while (rank < nproc && live[rank] != p)
			rank++;
		if (rank == nproc)
			continue;
		live[rank] = 0;
		left--;
		if (shell_status(st) && failed < 0) {
			failed = rank;
			*status = shell_status(st);
			pass_on(SIGKILL);
		}
	}
	if (failed >= 0)
		tn_fail(TN_EIO, "rank %d of %d exited with status %d; the other ranks were stopped",
			failed, nproc, *status);
	return TN_OK;
}

int tn_launch_local(int nproc, int argc, char **argv, int *status)
{
	char addr[32];
	char **av = tn_calloc((size_t)argc + 1, sizeof *av);
	live = av ? tn_calloc((size_t)nproc, sizeof *live) : NULL;
	int rc = live ? tn_rendezvous_free_address(addr, sizeof addr) : TN_ENOMEM;
	if (!rc) {
		without_nproc(argc, argv, av);
		fflush(NULL);
	}
	struct sigaction sa = {.sa_handler = pass_on}, old_int, old_term;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	for (int i = 0; !rc && i < nproc; i++) {
		pid_t p = fork();
		if (p == 0)
			start_rank(i, nproc, addr, av);
		if (p < 0) {
			rc = tn_fail_errno("cannot start rank %d", i);
			pass_on(SIGKILL);
			nproc = i;
		}
		live[n_live++] = p > 0 ? p : 0;
	}
	int wrc = live ? wait_ranks(nproc, status) : TN_OK;
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	free(live);
	live = NULL;
	n_live = 0;
	free(av);
	return rc ? rc : wrc;
}
