/* launch.h - starting the ranks of a distributed run on this host: a
 * program given --nproc N re-executes itself under Open MPI's mpirun with N
 * ranks (CPU ranks), or starts N copies of itself that meet through the
 * launch environment (GPU ranks, one per device); across hosts, users run
 * mpirun (or their scheduler) themselves and tn picks the ranks up from its
 * environment. */
#ifndef TN_LAUNCH_H
#define TN_LAUNCH_H

/* Are we one of several ranks, started by mpirun or from the environment? */
int tn_launched_as_rank(void);
/* Replace this process by `mpirun -np nproc argv...` with every
 * "--nproc N" / "--nproc=N" removed from argv. Returns only on failure. */
int tn_launch_mpirun(int nproc, int argc, char **argv);
/* Run nproc copies of argv (without its --nproc) as child processes with
 * TN_RANK = TN_LOCAL_RANK = 0 .. nproc - 1, TN_WORLD_SIZE = nproc and
 * TN_MASTER_ADDR = a free port of 127.0.0.1, passing SIGINT and SIGTERM on
 * to them, and wait for them. The first rank that fails makes the others
 * stop (SIGKILL); *status is then its exit status (128 + signal if killed)
 * with a message naming it, else 0. Returns non-zero only if the ranks
 * could not be started or waited for. */
int tn_launch_local(int nproc, int argc, char **argv, int *status);

#endif
