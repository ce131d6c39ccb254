/* safetensors.c - the safetensors reader (mmap + jansson) and writer.
 * The header is checked as a whole on open: tensors must tile the data
 * area without gaps or overlap, as the format requires, so truncated or
 * spliced files are caught before any weight is used. */
#include "safetensors.h"
#include "io.h"
#include "util.h"

#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int map_file(struct tn_st *st, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return tn_fail_errno("%s", path);
	struct stat sb;
	if (fstat(fd, &sb) != 0) {
		close(fd);
		return tn_fail_errno("%s", path);
	}
	st->map_len = (size_t)sb.st_size;
	if (st->map_len < 8) {
		close(fd);
		return tn_fail(TN_EDATA, "%s: %zu bytes: too short for a safetensors file",
			       path, st->map_len);
	}
	st->map = mmap(NULL, st->map_len, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (st->map == MAP_FAILED) {
		st->map = NULL;
		return tn_fail_errno("%s: mmap", path);
	}
	return TN_OK;
}

static int cmp_offset(const void *a, const void *b)
{
	const struct tn_st_tensor *x = a, *y = b;
	return x->data < y->data ? -1 : x->data > y->data;
}

static int parse_entry(struct tn_st *st, const char *name, json_t *v, const uint8_t *base,
		       size_t data_len, struct tn_st_tensor *t)
{
	json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape");
	json_t *off = json_object_get(v, "data_offsets");
	int d = json_is_string(dt) ? tn_dtype_parse(json_string_value(dt)) : -1;
	if (d < 0)
		return tn_fail(TN_EDATA, "%s: tensor '%s': missing or unsupported dtype %s",
			       st->path, name, json_is_string(dt) ? json_string_value(dt) : "");
	if (!json_is_array(sh) || json_array_size(sh) > TN_MAX_DIMS || !json_is_array(off) ||
	    json_array_size(off) != 2)
		return tn_fail(TN_EDATA, "%s: tensor '%s': bad shape or data_offsets", st->path, name);
	t->dtype = (enum tn_dtype)d;
	t->ndim = (int)json_array_size(sh);
	for (int i = 0; i < t->ndim; i++) {
		json_t *x = json_array_get(sh, (size_t)i);
		if (!json_is_integer(x) || json_integer_value(x) < 0)
			return tn_fail(TN_EDATA, "%s: tensor '%s': bad shape", st->path, name);
		t->shape[i] = json_integer_value(x);
	}
	json_t *b = json_array_get(off, 0), *e = json_array_get(off, 1);
	if (!json_is_integer(b) || !json_is_integer(e) || json_integer_value(b) < 0 ||
	    json_integer_value(e) < json_integer_value(b) ||
	    (uint64_t)json_integer_value(e) > data_len)
		return tn_fail(TN_EDATA, "%s: tensor '%s': data_offsets outside the file's %zu data bytes",
			       st->path, name, data_len);
	t->data = base + json_integer_value(b);
	t->nbytes = (size_t)(json_integer_value(e) - json_integer_value(b));
	if (t->nbytes != tn_numel(t->shape, t->ndim) * tn_dtype_size(t->dtype))
		return tn_fail(TN_EDATA, "%s: tensor '%s': %zu bytes do not hold its shape and dtype",
			       st->path, name, t->nbytes);
	t->name = tn_strdup(name); /* last: a failed entry owns nothing */
	return t->name ? TN_OK : TN_ENOMEM;
}

static int check_tiling(const struct tn_st *st, const uint8_t *base, size_t data_len)
{
	struct tn_st_tensor *sorted = tn_malloc(st->n * sizeof(*sorted) + 1);
	if (!sorted)
		return TN_ENOMEM;
	memcpy(sorted, st->t, st->n * sizeof(*sorted));
	qsort(sorted, st->n, sizeof(*sorted), cmp_offset);
	const uint8_t *at = base;
	int rc = TN_OK;
	for (size_t i = 0; i < st->n && !rc; i++) {
		if (sorted[i].data != at)
			rc = tn_fail(TN_EDATA, "%s: tensor '%s' at data byte %td: expected %td (gap or overlap)",
				     st->path, sorted[i].name, sorted[i].data - base, at - base);
		at += sorted[i].nbytes;
	}
	if (!rc && at != base + data_len)
		rc = tn_fail(TN_EDATA, "%s: %td data bytes after the last tensor", st->path,
			     base + data_len - at);
	free(sorted);
	return rc;
}

static int parse_header(struct tn_st *st)
{
	uint64_t hlen = tn_le64(st->map);
	if (hlen > st->map_len - 8)
		return tn_fail(TN_EDATA, "%s: header length %llu exceeds the file (%zu bytes)", st->path,
			       (unsigned long long)hlen, st->map_len);
	json_error_t err;
	json_t *h = json_loadb((const char *)st->map + 8, (size_t)hlen, 0, &err);
	if (!json_is_object(h)) {
		json_decref(h);
		return tn_fail(TN_EDATA, "%s: header byte %d: %s", st->path, err.position + 8, err.text);
	}
	st->t = tn_calloc(json_object_size(h) + 1, sizeof(*st->t));
	int rc = st->t ? TN_OK : TN_ENOMEM;
	const uint8_t *base = st->map + 8 + hlen;
	size_t data_len = st->map_len - 8 - (size_t)hlen;
	const char *key;
	json_t *v;
	json_object_foreach(h, key, v) {
		if (rc || !strcmp(key, "__metadata__"))
			continue;
		if (!json_is_object(v))
			rc = tn_fail(TN_EDATA, "%s: tensor '%s': entry is not an object", st->path, key);
		else if (!(rc = parse_entry(st, key, v, base, data_len, &st->t[st->n])))
			st->n++;
	}
	json_decref(h);
	return rc ? rc : check_tiling(st, base, data_len);
}

int tn_st_open(struct tn_st *st, const char *path)
{
	memset(st, 0, sizeof(*st));
	if (!(st->path = tn_strdup(path)))
		return TN_ENOMEM;
	int rc = map_file(st, path);
	if (!rc)
		rc = parse_header(st);
	if (rc)
		tn_st_close(st);
	return rc;
}

void tn_st_close(struct tn_st *st)
{
	for (size_t i = 0; st->t && i < st->n; i++)
		free(st->t[i].name);
	free(st->t);
	if (st->map)
		munmap(st->map, st->map_len);
	free(st->path);
	memset(st, 0, sizeof(*st));
}

const struct tn_st_tensor *tn_st_find(const struct tn_st *st, const char *name)
{
	for (size_t i = 0; i < st->n; i++)
		if (!strcmp(st->t[i].name, name))
			return &st->t[i];
	return NULL;
}

int tn_st_read_f32(const struct tn_st *st, const char *name, const int64_t *shape,
		   int ndim, float *dst)
{
	const struct tn_st_tensor *t = tn_st_find(st, name);
	char want[96], got[96];
	if (!t)
		return tn_fail(TN_EDATA, "%s: tensor '%s' is missing", st->path, name);
	if (!tn_dtype_is_float(t->dtype))
		return tn_fail(TN_EDATA, "%s: tensor '%s' has dtype %s, expected a float type",
			       st->path, name, tn_dtype_name(t->dtype));
	int same = t->ndim == ndim;
	for (int i = 0; same && i < ndim; i++)
		same = t->shape[i] == shape[i];
	if (!same)
		return tn_fail(TN_EDATA, "%s: tensor '%s' has shape %s, expected %s", st->path, name,
			       tn_shape_str(got, sizeof(got), t->shape, t->ndim),
			       tn_shape_str(want, sizeof(want), shape, ndim));
	tn_to_f32(dst, t->data, t->dtype, tn_numel(t->shape, t->ndim));
	return TN_OK;
}

static json_t *entry_json(const struct tn_st_entry *e, size_t begin, size_t end)
{
	json_t *sh = json_array();
	for (int i = 0; i < e->ndim; i++)
		json_array_append_new(sh, json_integer(e->shape[i]));
	return json_pack("{s:s, s:o, s:[I,I]}", "dtype", tn_dtype_name(e->dtype), "shape", sh,
			 "data_offsets", (json_int_t)begin, (json_int_t)end);
}

/* The header JSON, padded with spaces to a multiple of 8 bytes as the
 * reference writer does, so the data area stays aligned. */
static char *header_text(const struct tn_st_entry *e, size_t n, size_t *len)
{
	json_t *h = json_object();
	size_t off = 0;
	json_object_set_new(h, "__metadata__", json_pack("{s:s}", "format", "pt"));
	for (size_t i = 0; i < n; i++) {
		size_t bytes = tn_numel(e[i].shape, e[i].ndim) * tn_dtype_size(e[i].dtype);
		json_object_set_new(h, e[i].name, entry_json(&e[i], off, off + bytes));
		off += bytes;
	}
	char *s = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(h);
	if (!s) {
		tn_fail(TN_ENOMEM, "out of memory");
		return NULL;
	}
	size_t l = strlen(s), padded = (l + 7) & ~(size_t)7;
	char *p = tn_realloc(s, padded + 1);
	if (!p) {
		free(s);
		return NULL;
	}
	memset(p + l, ' ', padded - l);
	*len = padded;
	return p;
}

static int write_data(struct tn_out *o, const struct tn_st_entry *e)
{
	enum { CHUNK = 1 << 16 };
	size_t n = tn_numel(e->shape, e->ndim), es = tn_dtype_size(e->dtype);
	if (!tn_dtype_is_float(e->dtype))
		return tn_out_write(o, e->data, n * es);
	uint8_t *buf = tn_malloc(CHUNK * 8);
	if (!buf)
		return TN_ENOMEM;
	const float *src = e->data;
	int rc = TN_OK;
	for (size_t i = 0; i < n && !rc; i += CHUNK) {
		size_t m = TN_MIN((size_t)CHUNK, n - i);
		tn_from_f32(buf, src + i, e->dtype, m);
		rc = tn_out_write(o, buf, m * es);
	}
	free(buf);
	return rc;
}

int tn_st_write(const char *path, const struct tn_st_entry *e, size_t n)
{
	size_t hlen;
	char *h = header_text(e, n, &hlen);
	if (!h)
		return TN_ENOMEM;
	struct tn_out o;
	int rc = tn_out_open(&o, path);
	uint8_t len8[8];
	tn_put64(len8, hlen);
	if (!rc)
		rc = tn_out_write(&o, len8, 8);
	if (!rc)
		rc = tn_out_write(&o, h, hlen);
	for (size_t i = 0; i < n && !rc; i++)
		rc = write_data(&o, &e[i]);
	if (!rc)
		rc = tn_out_commit(&o);
	tn_out_abort(&o);
	free(h);
	return rc;
}
