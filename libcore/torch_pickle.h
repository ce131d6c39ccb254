/* torch_pickle.h - PyTorch checkpoints (torch.save's zip layout: a pickle
 * archive/data.pkl plus one raw little-endian file archive/data/<key> per
 * storage) read without Python: the zip through libarchive, the pickle by
 * a small strict interpreter.
 * Decision: nothing is ever called. The interpreter knows the opcodes of
 * protocols 2-4 that state dicts use, and only three kinds of global:
 * collections.OrderedDict, torch._utils._rebuild_tensor_v2 and the typed
 * storage classes (torch.FloatStorage, ...), each of which it builds
 * itself; any other opcode or global is an error naming its byte offset. */
#ifndef TN_TORCH_PICKLE_H
#define TN_TORCH_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "tensor.h"

struct tn_torch_tensor {
	char *name;
	enum tn_dtype dtype;
	int ndim;
	int64_t shape[TN_MAX_DIMS];
	const uint8_t *data; /* inside its storage */
	size_t nbytes;
};

struct tn_torch_blob;

struct tn_torch {
	char *path;
	struct tn_torch_tensor *t; /* in the state dict's order */
	size_t n;
	struct tn_torch_blob *blob; /* the archive's files */
	size_t n_blob;
};

/* Read path (a state dict of tensors, contiguous, row-major). */
int tn_torch_open(struct tn_torch **out, const char *path);
void tn_torch_free(struct tn_torch *t);

#endif
