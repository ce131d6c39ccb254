/* attn_golden.h - test-only access to ../shared/golden/attn/golden.safetensors
 * (official-implementation outputs, fp64 computed, stored fp32) through
 * libcore's safetensors reader, shared by the CPU unit test and the GPU
 * test: a tensor is looked up by name and returned in place. */
#ifndef TN_ATTN_GOLDEN_H
#define TN_ATTN_GOLDEN_H

#include <stdio.h>
#include <stdlib.h>

#include "safetensors.h"
#include "util.h"

struct golden {
	struct tn_st st;
};

/* The shared folder: $TN_SHARED, else ../shared (tests run from the repo root). */
static inline const char *golden_shared(void)
{
	const char *s = getenv("TN_SHARED");
	return s && *s ? s : "../shared";
}

static inline int golden_open(struct golden *g)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/golden/attn/golden.safetensors", golden_shared());
	if (tn_st_open(&g->st, path) != TN_OK) {
		fprintf(stderr, "%s (set TN_SHARED)\n", tn_errmsg());
		return -1;
	}
	return 0;
}

static inline void golden_close(struct golden *g)
{
	tn_st_close(&g->st);
}

/* Tensor `name` (F32 or F64, per `f64`), its element count in *count; NULL if
 * absent or of another dtype. */
static inline const void *golden_get(const struct golden *g, const char *name, int f64,
				     size_t *count)
{
	const struct tn_st_tensor *t = tn_st_find(&g->st, name);
	if (!t || t->dtype != (f64 ? TN_F64 : TN_F32))
		return NULL;
	*count = tn_numel(t->shape, t->ndim);
	return t->data;
}

#endif
