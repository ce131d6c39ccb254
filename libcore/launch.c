/* launch.c - re-execution under mpirun. Open MPI refuses to run as root and
 * to put more ranks than cores on a host unless told; tn tells it, since a
 * user who asks for N ranks means it. */
#include "launch.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int tn_launched_by_mpirun(void)
{
	return getenv("OMPI_COMM_WORLD_SIZE") != NULL;
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
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--nproc") && i + 1 < argc) {
			i++;
			continue;
		}
		if (!strncmp(argv[i], "--nproc=", 8))
			continue;
		av[n++] = argv[i];
	}
	av[n] = NULL;
	execvp("mpirun", av);
	int rc = tn_fail_errno("cannot run mpirun for --nproc %d (is Open MPI installed?)", nproc);
	free(av);
	return rc;
}
