/* attn_golden.h - test-only reader of ../shared/golden/attn/golden.safetensors
 * (official-implementation outputs, fp64 computed, stored fp32), shared by the
 * CPU unit test and the GPU test. The whole file is read into memory; a
 * tensor is looked up by name and returned as a pointer into that buffer. */
#ifndef TN_ATTN_GOLDEN_H
#define TN_ATTN_GOLDEN_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct golden {
	char *buf;        /* the whole file */
	size_t size;
	json_t *header;   /* name -> {dtype, shape, data_offsets} */
	const char *data; /* start of the tensor data */
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
	memset(g, 0, sizeof *g);
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "%s: cannot open (set TN_SHARED)\n", path);
		return -1;
	}
	fseek(f, 0, SEEK_END);
	g->size = (size_t)ftell(f);
	rewind(f);
	g->buf = malloc(g->size);
	int ok = g->buf && fread(g->buf, 1, g->size, f) == g->size && g->size > 8;
	fclose(f);
	if (!ok)
		return -1;
	uint64_t n = 0;
	memcpy(&n, g->buf, 8);
	if (n > g->size - 8)
		return -1;
	g->header = json_loadb(g->buf + 8, n, 0, NULL);
	g->data = g->buf + 8 + n;
	return g->header ? 0 : -1;
}

static inline void golden_close(struct golden *g)
{
	json_decref(g->header);
	free(g->buf);
}

/* Tensor `name` (F32 or F64, per `f64`), its element count in *count; NULL if
 * absent or of another dtype. */
static inline const void *golden_get(const struct golden *g, const char *name, int f64,
				     size_t *count)
{
	json_t *t = json_object_get(g->header, name);
	if (!t || strcmp(json_string_value(json_object_get(t, "dtype")), f64 ? "F64" : "F32"))
		return NULL;
	size_t c = 1, i;
	json_t *d;
	json_array_foreach(json_object_get(t, "shape"), i, d)
		c *= (size_t)json_integer_value(d);
	json_t *off = json_object_get(t, "data_offsets");
	*count = c;
	return g->data + json_integer_value(json_array_get(off, 0));
}

#endif
