/* extsort.h - external merge sort of fixed-size records between two file
 * descriptors, in bounded memory: sorted runs of what fits, then k-way
 * merges (several passes when there are more runs than the memory allows
 * to merge at once). Scratch files are unlinked, so nothing is left over. */
#ifndef TN_EXTSORT_H
#define TN_EXTSORT_H

#include <stddef.h>
#include <stdint.h>

struct tn_extsort {
	size_t rec;       /* record size in bytes */
	int (*cmp)(const void *a, const void *b, void *ctx);
	void *ctx;
	size_t memory;    /* bytes for records in memory */
	const char *tmpdir;
};

/* Sort the n records at the start of in_fd into out_fd (from its offset 0).
 * name is used in messages. */
int tn_extsort(const struct tn_extsort *o, int in_fd, uint64_t n, int out_fd,
	       const char *name);

#endif
