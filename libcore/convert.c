/* convert.c - tn-convert's work (see convert.h): open the source's weight
 * files as one list of tensors, fill the parameter table from it, write the
 * HF layout. Shards follow HF's names (model-00001-of-00003.safetensors). */
#include "convert.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "checkpoint.h"
#include "config.h"
#include "model.h"
#include "safetensors.h"
#include "torch_pickle.h"
#include "util.h"

static int exists(const char *path)
{
	return access(path, F_OK) == 0;
}

/* The files of an index's weight_map, each once, in first-use order. */
static int index_files(const char *index, json_t **files)
{
	json_error_t err;
	json_t *j = json_load_file(index, 0, &err), *map = json_object_get(j, "weight_map");
	if (!json_is_object(map)) {
		json_decref(j);
		return tn_fail(TN_EDATA, "%s: line %d: %s", index, err.line,
			       j ? "no weight_map object" : err.text);
	}
	json_t *out = json_array();
	const char *k;
	json_t *v;
	int rc = TN_OK;
	json_object_foreach(map, k, v) {
		const char *f = json_string_value(v);
		if (!f || strchr(f, '/')) {
			rc = tn_fail(TN_EDATA, "%s: weight_map[%s] is not a file name", index, k);
			break;
		}
		size_t i;
		json_t *e;
		int seen = 0;
		json_array_foreach(out, i, e) seen |= !strcmp(json_string_value(e), f);
		if (!seen)
			json_array_append_new(out, json_string(f));
	}
	json_decref(j);
	if (rc)
		json_decref(out);
	else
		*files = out;
	return rc;
}

/* One more tensor of file; names must be unique across the files. */
static int add_tensor(struct tn_src *s, const char *file, const char *name, enum tn_dtype dt,
		      int ndim, const int64_t *shape, const uint8_t *data, size_t nbytes)
{
	if (tn_src_find(s, name))
		return tn_fail(TN_EDATA, "%s: tensor %s is also in an earlier file", file, name);
	struct tn_src_tensor *t = tn_realloc(s->t, (s->n + 1) * sizeof(*t));
	if (!t)
		return TN_ENOMEM;
	s->t = t;
	t = &s->t[s->n++];
	t->name = name;
	t->dtype = dt;
	t->ndim = ndim;
	memcpy(t->shape, shape, sizeof(t->shape));
	t->data = data;
	t->nbytes = nbytes;
	t->file = file;
	return TN_OK;
}

static int add_file(struct tn_src *s, const char *file, int torch)
{
	char *path = tn_path_join(s->dir, file);
	if (!path)
		return TN_ENOMEM;
	int rc = exists(path) ? TN_OK
			      : tn_fail(TN_EDATA, "%s: missing shard (named by the index)", path);
	if (!rc && torch && !(rc = tn_torch_open(&s->pt[s->n_pt], path))) {
		const struct tn_torch *pt = s->pt[s->n_pt++];
		for (size_t i = 0; !rc && i < pt->n; i++)
			rc = add_tensor(s, pt->path, pt->t[i].name, pt->t[i].dtype, pt->t[i].ndim,
					pt->t[i].shape, pt->t[i].data, pt->t[i].nbytes);
	} else if (!rc && !torch && !(rc = tn_st_open(&s->st[s->n_st], path))) {
		const struct tn_st *st = &s->st[s->n_st++];
		for (size_t i = 0; !rc && i < st->n; i++)
			rc = add_tensor(s, st->path, st->t[i].name, st->t[i].dtype, st->t[i].ndim,
					st->t[i].shape, st->t[i].data, st->t[i].nbytes);
	}
	free(path);
	return rc;
}

/* The weight files of dir: one file, or those an index names; *torch when .bin. */
static int weight_files(const char *dir, json_t **files, int *torch)
{
	static const char *const single[] = {"model.safetensors", "pytorch_model.bin"};
	int rc = TN_OK;
	*files = NULL;
	for (int k = 0; k < 2 && !*files && !rc; k++) {
		char *one = tn_path_join(dir, single[k]), *idx = NULL;
		if (one && asprintf(&idx, "%s.index.json", one) < 0)
			idx = NULL;
		if (!one || !idx)
			rc = tn_fail(TN_ENOMEM, "out of memory");
		else if (exists(one))
			*files = json_pack("[s]", single[k]);
		else if (exists(idx))
			rc = index_files(idx, files);
		*torch = k == 1;
		free(one);
		free(idx);
	}
	if (!rc && !*files)
		rc = tn_fail(TN_EDATA, "%s: no model.safetensors, pytorch_model.bin or their "
			     ".index.json", dir);
	return rc;
}

int tn_src_open(struct tn_src *s, const char *dir)
{
	memset(s, 0, sizeof(*s));
	if (!(s->dir = strdup(dir)))
		return tn_fail(TN_ENOMEM, "out of memory");
	json_t *files = NULL;
	int torch = 0, rc = weight_files(dir, &files, &torch);
	size_t nf = files ? json_array_size(files) : 0;
	if (!rc && !(torch ? (void *)(s->pt = tn_calloc(nf + 1, sizeof(*s->pt)))
			   : (void *)(s->st = tn_calloc(nf + 1, sizeof(*s->st)))))
		rc = TN_ENOMEM;
	for (size_t i = 0; !rc && i < nf; i++)
		rc = add_file(s, json_string_value(json_array_get(files, i)), torch);
	json_decref(files);
	if (rc)
		tn_src_close(s);
	return rc;
}

void tn_src_close(struct tn_src *s)
{
	for (size_t i = 0; i < s->n_st; i++)
		tn_st_close(&s->st[i]);
	for (size_t i = 0; i < s->n_pt; i++)
		tn_torch_free(s->pt[i]);
	free(s->st);
	free(s->pt);
	free(s->t);
	free(s->dir);
	memset(s, 0, sizeof(*s));
}

const struct tn_src_tensor *tn_src_find(const struct tn_src *s, const char *name)
{
	for (size_t i = 0; i < s->n; i++)
		if (!strcmp(s->t[i].name, name))
			return &s->t[i];
	return NULL;
}

static void shape_str(const int64_t *shape, int ndim, char *buf, size_t cap)
{
	size_t at = (size_t)snprintf(buf, cap, "[");
	for (int d = 0; d < ndim && at < cap; d++)
		at += (size_t)snprintf(buf + at, cap - at, "%s%lld", d ? ", " : "",
				       (long long)shape[d]);
	if (at < cap)
		snprintf(buf + at, cap - at, "]");
}

int tn_convert_info(const char *dir, struct tn_out *out)
{
	char *d = NULL;
	struct tn_src s;
	int rc = tn_ckpt_resolve(dir, &d);
	if (rc || (rc = tn_src_open(&s, d))) {
		free(d);
		return rc;
	}
	uint64_t total = 0;
	for (size_t i = 0; !rc && i < s.n; i++) {
		const struct tn_src_tensor *t = &s.t[i];
		char shape[128], line[512];
		shape_str(t->shape, t->ndim, shape, sizeof(shape));
		int n = snprintf(line, sizeof(line), "%s\t%s\t%s\t%zu\t%016llx\n", t->name,
				 tn_dtype_name(t->dtype), shape, t->nbytes,
				 (unsigned long long)XXH3_64bits(t->data, t->nbytes));
		rc = tn_out_write(out, line, (size_t)n);
		total += t->nbytes;
	}
	char line[128];
	int n = snprintf(line, sizeof(line), "total\t%zu tensors\t%llu bytes\n", s.n,
			 (unsigned long long)total);
	if (!rc)
		rc = tn_out_write(out, line, (size_t)n);
	tn_src_close(&s);
	free(d);
	return rc;
}

/* One parameter from the source into the fp32 table (host memory of the CPU backend). */
static int fill_param(struct tn_model *m, const struct tn_param *p, const struct tn_src *s,
		      struct tn_convert_report *r)
{
	const struct tn_src_tensor *t = tn_src_find(s, p->name);
	float *dst = m->params + p->offset;
	if (!t && p->role == TN_P_THETA) {
		r->theta_computed++; /* tn_model_init put the formula there */
		return TN_OK;
	}
	if (!t)
		return tn_fail(TN_EDATA, "%s: tensor %s is missing", s->dir, p->name);
	char want[128], got[128];
	shape_str(p->shape, p->ndim, want, sizeof(want));
	shape_str(t->shape, t->ndim, got, sizeof(got));
	if (strcmp(want, got))
		return tn_fail(TN_EDATA, "%s: %s has shape %s, the config says %s", t->file, p->name,
			       got, want);
	if (!tn_dtype_is_float(t->dtype))
		return tn_fail(TN_EDATA, "%s: %s is %s, which cannot be converted to a float type",
			       t->file, p->name, tn_dtype_name(t->dtype));
	float *formula = NULL;
	if (p->role == TN_P_THETA && !(formula = tn_malloc(p->numel * sizeof(float))))
		return TN_ENOMEM;
	if (formula)
		memcpy(formula, dst, p->numel * sizeof(float));
	tn_to_f32(dst, t->data, t->dtype, p->numel);
	for (size_t i = 0; formula && i < p->numel; i++)
		r->theta_dev = fmax(r->theta_dev, fabs((double)dst[i] - formula[i]));
	free(formula);
	return TN_OK;
}

/* Every source tensor must be a parameter or the tied head. */
static int check_extra(const struct tn_model *m, const struct tn_src *s,
		       struct tn_convert_report *r)
{
	for (size_t i = 0; i < s->n; i++) {
		const struct tn_src_tensor *t = &s->t[i];
		int known = 0;
		for (size_t j = 0; j < m->n_param && !known; j++)
			known = !strcmp(m->param[j].name, t->name);
		if (known)
			continue;
		if (strcmp(t->name, "lm_head.weight"))
			return tn_fail(TN_EDATA, "%s: unexpected tensor %s", t->file, t->name);
		const struct tn_src_tensor *e = tn_src_find(s, "model.embed_tokens.weight");
		r->head_present = 1;
		r->head_differs = !e || e->nbytes != t->nbytes || e->dtype != t->dtype ||
				  memcmp(e->data, t->data, t->nbytes);
	}
	return TN_OK;
}

static const char *torch_dtype(enum tn_dtype t)
{
	return t == TN_BF16 ? "bfloat16" : t == TN_F16 ? "float16" : "float32";
}

/* The entries to write, the head copy last when asked for. */
static struct tn_st_entry *entries(const struct tn_model *m, const struct tn_convert_opts *o,
				   enum tn_dtype dt, size_t *n)
{
	*n = m->n_param + (o->write_head != 0);
	struct tn_st_entry *e = tn_calloc(*n, sizeof(*e));
	for (size_t i = 0; e && i < *n; i++) {
		const struct tn_param *p = &m->param[i < m->n_param ? i : 0];
		e[i].name = i < m->n_param ? p->name : "lm_head.weight";
		e[i].dtype = dt;
		e[i].ndim = p->ndim;
		memcpy(e[i].shape, p->shape, sizeof(p->shape));
		e[i].data = m->params + p->offset;
	}
	return e;
}

static int write_shards(const char *tmp, struct tn_st_entry *e, size_t n, uint64_t limit,
			size_t *shards)
{
	size_t *first = tn_calloc(n + 1, sizeof(size_t)), k = 0; /* shard i = e[first[i]..first[i+1]) */
	if (!first)
		return TN_ENOMEM;
	uint64_t fill = 0, total = 0;
	for (size_t i = 0; i < n; i++) {
		uint64_t b = tn_numel(e[i].shape, e[i].ndim) * tn_dtype_size(e[i].dtype);
		if (i && fill + b > limit) {
			first[++k] = i;
			fill = 0;
		}
		fill += b;
		total += b;
	}
	first[++k] = n;
	*shards = k;
	json_t *map = json_object(), *idx = json_pack("{s{sI}so}", "metadata", "total_size",
						      (json_int_t)total, "weight_map", map);
	int rc = idx ? TN_OK : tn_fail(TN_ENOMEM, "out of memory");
	for (size_t s = 0; !rc && s < k; s++) {
		char name[64], *path;
		snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", s + 1, k);
		if (!(path = tn_path_join(tmp, name)))
			rc = TN_ENOMEM;
		if (!rc)
			rc = tn_st_write(path, e + first[s], first[s + 1] - first[s]);
		for (size_t i = first[s]; !rc && i < first[s + 1]; i++)
			json_object_set_new(map, e[i].name, json_string(name));
		free(path);
	}
	char *path = rc ? NULL : tn_path_join(tmp, "model.safetensors.index.json");
	if (!rc)
		rc = path ? tn_json_save(path, idx) : TN_ENOMEM;
	else
		json_decref(idx);
	free(path);
	free(first);
	return rc;
}

static int write_dir(const struct tn_model *m, const char *tmp, const struct tn_convert_opts *o,
		     struct tn_convert_report *r)
{
	if (mkdir(tmp, 0755))
		return tn_fail_errno("%s", tmp);
	char *cfg = tn_path_join(tmp, "config.json"), *one = tn_path_join(tmp, "model.safetensors");
	size_t n;
	struct tn_st_entry *e = entries(m, o, r->dtype, &n);
	int rc = cfg && one && e ? TN_OK : TN_ENOMEM;
	if (!rc)
		rc = tn_config_save(&m->cfg, cfg, torch_dtype(r->dtype));
	r->tensors = n;
	r->shards = 1;
	if (!rc && o->shard_bytes)
		rc = write_shards(tmp, e, n, o->shard_bytes, &r->shards);
	else if (!rc)
		rc = tn_st_write(one, e, n);
	free(cfg);
	free(one);
	free(e);
	return rc;
}

/* Remove a half-written DST.tmp (only the files this code writes there). */
static void remove_tmp(const char *tmp, size_t shards)
{
	const char *names[] = {"config.json", "model.safetensors", "model.safetensors.index.json"};
	for (size_t i = 0; i < TN_ARRAY_LEN(names); i++) {
		char *p = tn_path_join(tmp, names[i]);
		if (p)
			unlink(p);
		free(p);
	}
	for (size_t s = 0; s < shards; s++) {
		char name[64], *p;
		snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", s + 1, shards);
		if ((p = tn_path_join(tmp, name)))
			unlink(p);
		free(p);
	}
	rmdir(tmp);
}

static int load_source(struct tn_model **m, const struct tn_src *s, const char *dir,
		       struct tn_convert_report *r)
{
	struct tn_config cfg;
	char *path = tn_path_join(dir, "config.json");
	int rc = path ? tn_config_load(&cfg, path) : TN_ENOMEM;
	free(path);
	if (!rc)
		rc = tn_model_new(m, &cfg, &tn_backend_cpu);
	if (!rc)
		rc = tn_model_init(*m, 0); /* theta by its formula; the rest is overwritten */
	for (size_t i = 0; !rc && i < (*m)->n_param; i++) {
		r->theta_layers += (*m)->param[i].role == TN_P_THETA;
		rc = fill_param(*m, &(*m)->param[i], s, r);
	}
	return rc ? rc : check_extra(*m, s, r);
}

int tn_convert(const char *src, const char *dst, const struct tn_convert_opts *o,
	       struct tn_convert_report *r)
{
	memset(r, 0, sizeof(*r));
	if (o->dtype >= 0 && !tn_dtype_is_float((enum tn_dtype)o->dtype))
		return tn_fail(TN_EUSAGE, "output dtype %s: only F32, BF16 and F16",
			       tn_dtype_name((enum tn_dtype)o->dtype));
	if (exists(dst))
		return tn_fail(TN_EUSAGE, "%s exists: the output must be a new directory", dst);
	char *dir = NULL, *tmp = NULL;
	struct tn_src s = {0};
	struct tn_model *m = NULL;
	int rc = tn_ckpt_resolve(src, &dir);
	if (!rc)
		rc = tn_src_open(&s, dir);
	if (!rc)
		rc = load_source(&m, &s, dir, r);
	if (!rc) {
		const struct tn_src_tensor *e = tn_src_find(&s, "model.embed_tokens.weight");
		r->dtype = o->dtype >= 0 ? (enum tn_dtype)o->dtype : e->dtype;
		if (!tn_dtype_is_float(r->dtype) || r->dtype == TN_F64)
			r->dtype = TN_F32;
		if (asprintf(&tmp, "%s.tmp", dst) < 0) {
			tmp = NULL;
			rc = tn_fail(TN_ENOMEM, "out of memory");
		}
	}
	if (!rc && exists(tmp))
		rc = tn_fail(TN_EUSAGE, "%s exists (left by an interrupted run?): remove it", tmp);
	if (!rc && (rc = write_dir(m, tmp, o, r)))
		remove_tmp(tmp, r->shards);
	if (!rc && rename(tmp, dst)) {
		rc = tn_fail_errno("%s -> %s", tmp, dst);
		remove_tmp(tmp, r->shards);
	}
	if (!rc)
		rc = tn_fsync_dir_of(dst);
	tn_model_free(m);
	tn_src_close(&s);
	free(dir);
	free(tmp);
	return rc;
}
