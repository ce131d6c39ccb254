/* convert.h - checkpoints in and out of the released Hugging Face
 * TransNormerLLM layout (MODEL.md 4): config.json plus weights as one
 * model.safetensors, shards named by model.safetensors.index.json, or a
 * PyTorch pytorch_model.bin (shards: pytorch_model.bin.index.json).
 * Decision: every conversion goes through the model's parameter table in
 * fp32 (exact for fp32, bf16 and fp16 sources), so names, shapes, the tied
 * head and LRPE theta are checked in one place; the output directory is
 * written under DST.tmp and renamed, so it is whole or absent. */
#ifndef TN_CONVERT_H
#define TN_CONVERT_H

#include <stddef.h>
#include <stdint.h>

#include "io.h"
#include "tensor.h"

/* The tensors of a checkpoint directory, whatever its weight files (the
 * first of model.safetensors, model.safetensors.index.json,
 * pytorch_model.bin, pytorch_model.bin.index.json that exists). */
struct tn_src_tensor {
	const char *name;
	enum tn_dtype dtype;
	int ndim;
	int64_t shape[TN_MAX_DIMS];
	const uint8_t *data;
	size_t nbytes;
	const char *file;
};

struct tn_src {
	char *dir;
	struct tn_src_tensor *t;
	size_t n;
	struct tn_st *st;      /* opened safetensors files */
	size_t n_st;
	struct tn_torch **pt;  /* opened PyTorch files */
	size_t n_pt;
};

int tn_src_open(struct tn_src *s, const char *dir);
void tn_src_close(struct tn_src *s);
const struct tn_src_tensor *tn_src_find(const struct tn_src *s, const char *name);

/* One line per tensor: name, dtype, shape, bytes, XXH3-64 of the bytes. */
int tn_convert_info(const char *dir, struct tn_out *out);

struct tn_convert_opts {
	int dtype;             /* enum tn_dtype of the output, -1: the source's */
	uint64_t shard_bytes;  /* > 0: shards of at most this many bytes (one tensor may exceed) */
	int write_head;        /* store lm_head.weight (a copy of the embedding) */
};

struct tn_convert_report {
	enum tn_dtype dtype;   /* written */
	size_t tensors, shards;
	int theta_layers;      /* LRPE layers */
	int theta_computed;    /* of those, absent in the source: the formula was used */
	double theta_dev;      /* max |theta - formula| over the stored ones */
	int head_present;      /* the source had lm_head.weight (ignored: tied) */
	int head_differs;      /* ... and it was not the embedding */
};

int tn_convert(const char *src, const char *dst, const struct tn_convert_opts *o,
	       struct tn_convert_report *r);

#endif
