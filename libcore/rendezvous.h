/* rendezvous.h - ranks started without mpirun (by a cluster scheduler, a
 * container runtime or by hand) find each other from the environment
 * (TN_RANK, TN_WORLD_SIZE, TN_LOCAL_RANK, TN_MASTER_ADDR) and meet once over
 * TCP: rank 0 listens at TN_MASTER_ADDR and hands every other rank one blob
 * (the NCCL unique id). Decision: one short exchange at start-up and nothing
 * after it; the collectives themselves are NCCL's. */
#ifndef TN_RENDEZVOUS_H
#define TN_RENDEZVOUS_H

#include <stddef.h>

struct tn_launch_env {
	int rank, world, local_rank; /* local_rank: the GPU on this host */
	const char *master;          /* "host:port" or "[v6-address]:port" */
	double timeout;              /* seconds to wait for the others */
};

/* The launch environment: *found = 0 when TN_WORLD_SIZE is unset (the
 * other variables are then not read); TN_EUSAGE naming the variable when
 * one is malformed or missing. TN_LOCAL_RANK defaults to TN_RANK,
 * TN_RENDEZVOUS_TIMEOUT (seconds) to 600. */
int tn_launch_env_read(struct tn_launch_env *e, int *found);
/* Rank 0's blob[0..n) reaches every rank of e->world, through a TCP
 * exchange at e->master. Every rank checks that the others agree on the
 * world size and the blob size, and that no rank comes twice. */
int tn_rendezvous_share(const struct tn_launch_env *e, void *blob, size_t n);
/* A port of this host that nothing listens on now, as "127.0.0.1:PORT",
 * for ranks started on one host (rank 0 listens there a moment later; a
 * port taken in between makes the rendezvous fail with a message). */
int tn_rendezvous_free_address(char *addr, size_t n);

#endif
