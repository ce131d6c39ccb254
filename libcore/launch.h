/* launch.h - starting the ranks of a distributed run on this host: a
 * program given --nproc N re-executes itself under Open MPI's mpirun with N
 * ranks (one process per device); across hosts, users run mpirun (or their
 * scheduler) themselves and tn picks the ranks up from its environment. */
#ifndef TN_LAUNCH_H
#define TN_LAUNCH_H

/* Are we one of the ranks of an mpirun? */
int tn_launched_by_mpirun(void);
/* Replace this process by `mpirun -np nproc argv...` with every
 * "--nproc N" / "--nproc=N" removed from argv. Returns only on failure. */
int tn_launch_mpirun(int nproc, int argc, char **argv);

#endif
