/* safetensors.h - read and write the safetensors format (an 8-byte header
 * length, a JSON header naming each tensor's dtype, shape and byte range,
 * then the raw little-endian data), the file format of HF checkpoints.
 * Decision: a reader maps the file and checks every header entry (dtype
 * known, byte range inside the file and matching the shape) when it opens,
 * so later lookups cannot fail on a corrupt file; tensors are converted to
 * fp32 on request, never kept twice. */
#ifndef TN_SAFETENSORS_H
#define TN_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "tensor.h"

struct tn_st_tensor {
	char *name;
	enum tn_dtype dtype;
	int ndim;
	int64_t shape[TN_MAX_DIMS];
	const uint8_t *data; /* inside the mapping */
	size_t nbytes;
};

struct tn_st {
	char *path;
	uint8_t *map;
	size_t map_len;
	struct tn_st_tensor *t;
	size_t n;
};

int tn_st_open(struct tn_st *st, const char *path);
void tn_st_close(struct tn_st *st);
/* The tensor called name, or NULL. */
const struct tn_st_tensor *tn_st_find(const struct tn_st *st, const char *name);
/* Read tensor `name` into dst as fp32, checking that its element count is
 * numel (and its shape equal to shape[0..ndim) when shape is not NULL).
 * A missing tensor, an integer dtype or another shape is TN_EDATA with a
 * message naming the file, the tensor and both shapes. */
int tn_st_read_f32(const struct tn_st *st, const char *name, const int64_t *shape,
		   int ndim, float *dst);

/* Writer: collect entries, then write once. Data pointers must stay valid
 * until tn_st_write returns. fp32 sources are converted to `dtype`. */
struct tn_st_entry {
	const char *name;
	enum tn_dtype dtype; /* storage type in the file */
	int ndim;
	int64_t shape[TN_MAX_DIMS];
	const void *data;    /* fp32 when dtype is a float type, else raw */
};

/* Write entries (in the order given) to path through tn_out (atomic). */
int tn_st_write(const char *path, const struct tn_st_entry *e, size_t n);

#endif
