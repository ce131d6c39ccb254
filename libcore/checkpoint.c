/* checkpoint.c - checkpoint directories: atomic write, checked read,
 * "latest" link and rotation. Only files tn writes are ever removed (by
 * name), so a directory holding anything else is never deleted. */
#include "checkpoint.h"
#include "io.h"
#include "safetensors.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const ckpt_files[] = {"config.json", "model.safetensors",
					 "optimizer.safetensors", "trainer_state.json"};

/* Remove a checkpoint directory: its known files, then the (empty) directory. */
static int remove_ckpt(const char *dir)
{
	for (size_t i = 0; i < TN_ARRAY_LEN(ckpt_files); i++) {
		char *p = tn_path_join(dir, ckpt_files[i]);
		if (!p)
			return TN_ENOMEM;
		int bad = unlink(p) != 0 && errno != ENOENT;
		free(p);
		if (bad)
			return tn_fail_errno("%s: cannot remove %s", dir, ckpt_files[i]);
	}
	if (rmdir(dir) != 0 && errno != ENOENT)
		return tn_fail_errno("%s: cannot remove the directory", dir);
	return TN_OK;
}

static int save_moments(const char *path, const struct tn_model *m, const struct tn_optim *opt)
{
	size_t n = m->n_param;
	struct tn_st_entry *e = tn_calloc(2 * n, sizeof(*e));
	char (*names)[80] = tn_calloc(2 * n, sizeof(*names));
	float *host = tn_malloc(2 * m->n_floats * sizeof(float) + 1);
	int rc = e && names && host ? TN_OK : TN_ENOMEM;
	if (!rc) {
		m->be->download(host, opt->m, m->n_floats * sizeof(float));
		m->be->download(host + m->n_floats, opt->v, m->n_floats * sizeof(float));
		for (size_t k = 0; k < 2 * n; k++) {
			const struct tn_param *p = &m->param[k % n];
			snprintf(names[k], sizeof(names[k]), "%s.%s", k < n ? "exp_avg" : "exp_avg_sq",
				 p->name);
			e[k] = (struct tn_st_entry){names[k], TN_F32, p->ndim, {0}, NULL};
			memcpy(e[k].shape, p->shape, sizeof(p->shape));
			e[k].data = host + (k < n ? 0 : m->n_floats) + p->offset;
		}
		rc = tn_st_write(path, e, 2 * n);
	}
	free(e);
	free(names);
	free(host);
	return rc;
}

static json_t *state_json(const struct tn_train_state *ts)
{
	char rng[4][17];
	for (int i = 0; i < 4; i++)
		snprintf(rng[i], sizeof(rng[i]), "%016llx", (unsigned long long)ts->rng.s[i]);
	return json_pack("{s:s, s:i, s:I, s:I, s:[s,s,s,s], s:{s:I, s:I}, s:s, s:I, s:I, s:I, s:I}",
			 "format", "tn-trainer-state", "version", 1, "step", (json_int_t)ts->step,
			 "tokens", (json_int_t)ts->tokens, "rng", rng[0], rng[1], rng[2], rng[3],
			 "loader", "epoch", (json_int_t)ts->cursor.epoch, "position",
			 (json_int_t)ts->cursor.position, "tokenizer", ts->tokenizer,
			 "seq_len", (json_int_t)ts->seq_len,
			 "batch", (json_int_t)ts->batch, "accum", (json_int_t)ts->accum, "seed",
			 (json_int_t)ts->seed);
}


static int write_files(const char *tmp, const struct tn_model *m, const struct tn_optim *opt,
		       const struct tn_train_state *ts, enum tn_dtype dtype)
{
	char *p[4];
	for (int i = 0; i < 4; i++)
		p[i] = tn_path_join(tmp, ckpt_files[i]);
	int rc = p[0] && p[1] && p[2] && p[3] ? TN_OK : TN_ENOMEM;
	if (!rc)
		rc = tn_config_save(&m->cfg, p[0], dtype == TN_BF16 ? "bfloat16"
						  : dtype == TN_F16 ? "float16" : "float32");
	if (!rc)
		rc = tn_model_save_weights(m, p[1], dtype);
	if (!rc && opt)
		rc = save_moments(p[2], m, opt);
	if (!rc && ts)
		rc = tn_json_save(p[3], state_json(ts));
	for (int i = 0; i < 4; i++)
		free(p[i]);
	return rc;
}

int tn_ckpt_save(const char *dir, const struct tn_model *m, const struct tn_optim *opt,
		 const struct tn_train_state *ts, enum tn_dtype dtype)
{
	size_t n = strlen(dir) + 8;
	char *tmp = tn_malloc(n), *old = tn_malloc(n);
	int rc = tmp && old ? TN_OK : TN_ENOMEM;
	if (rc)
		goto out;
	snprintf(tmp, n, "%s.tmp", dir);
	snprintf(old, n, "%s.old", dir);
	if ((rc = remove_ckpt(tmp)) || (rc = remove_ckpt(old)))
		goto out;
	if (mkdir(tmp, 0777) != 0) {
		rc = tn_fail_errno("%s: cannot create", tmp);
		goto out;
	}
	rc = write_files(tmp, m, opt, ts, dtype);
	if (!rc && rename(dir, old) != 0 && errno != ENOENT)
		rc = tn_fail_errno("%s: cannot move the old checkpoint aside", dir);
	if (!rc && rename(tmp, dir) != 0)
		rc = tn_fail_errno("%s: cannot rename %s to it", dir, tmp);
	if (!rc)
		rc = tn_fsync_dir_of(dir);
	if (!rc)
		rc = remove_ckpt(old);
	else
		remove_ckpt(tmp);
out:
	free(tmp);
	free(old);
	return rc;
}

static int load_moments(const char *path, const struct tn_model *m, struct tn_optim *opt)
{
	struct tn_st st;
	int rc = tn_st_open(&st, path);
	if (rc)
		return rc;
	if (st.n != 2 * m->n_param)
		rc = tn_fail(TN_EDATA, "%s: %zu tensors, expected %zu (two moments per parameter)",
			     path, st.n, 2 * m->n_param);
	float *host = rc ? NULL : tn_malloc(2 * m->n_floats * sizeof(float) + 1);
	if (!rc && !host)
		rc = TN_ENOMEM;
	for (size_t k = 0; !rc && k < 2 * m->n_param; k++) {
		const struct tn_param *p = &m->param[k % m->n_param];
		char name[80];
		snprintf(name, sizeof(name), "%s.%s", k < m->n_param ? "exp_avg" : "exp_avg_sq",
			 p->name);
		rc = tn_st_read_f32(&st, name, p->shape, p->ndim,
				    host + (k < m->n_param ? 0 : m->n_floats) + p->offset);
	}
	if (!rc) {
		m->be->upload(opt->m, host, m->n_floats * sizeof(float));
		m->be->upload(opt->v, host + m->n_floats, m->n_floats * sizeof(float));
	}
	free(host);
	tn_st_close(&st);
	return rc;
}

static int get_u64(json_t *o, const char *key, uint64_t *dst, const char *path)
{
	json_t *v = json_object_get(o, key);
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return tn_fail(TN_EDATA, "%s: '%s' is missing or not a count", path, key);
	*dst = (uint64_t)json_integer_value(v);
	return TN_OK;
}

static int parse_state(json_t *o, struct tn_train_state *ts, const char *path)
{
	uint64_t step = 0, seq = 0, batch = 0, accum = 0;
	json_t *rng = json_object_get(o, "rng"), *ld = json_object_get(o, "loader");
	int rc = get_u64(o, "step", &step, path);
	if (!rc)
		rc = get_u64(o, "tokens", &ts->tokens, path);
	if (!rc)
		rc = get_u64(o, "seq_len", &seq, path);
	if (!rc)
		rc = get_u64(o, "batch", &batch, path);
	if (!rc)
		rc = get_u64(o, "accum", &accum, path);
	if (!rc)
		rc = get_u64(o, "seed", &ts->seed, path);
	if (!rc)
		rc = get_u64(ld, "epoch", &ts->cursor.epoch, path);
	if (!rc)
		rc = get_u64(ld, "position", &ts->cursor.position, path);
	if (rc)
		return rc;
	const char *tok = json_string_value(json_object_get(o, "tokenizer"));
	if (!tok || strlen(tok) != 32)
		return tn_fail(TN_EDATA, "%s: 'tokenizer' is missing or not 32 hex digits", path);
	memcpy(ts->tokenizer, tok, 33);
	ts->step = (int64_t)step;
	ts->seq_len = (uint32_t)seq;
	ts->batch = (uint32_t)batch;
	ts->accum = (uint32_t)accum;
	for (int i = 0; i < 4; i++) {
		const char *s = json_string_value(json_array_get(rng, (size_t)i));
		char *end;
		if (!s || strlen(s) != 16)
			return tn_fail(TN_EDATA, "%s: rng[%d] is not 16 hex digits", path, i);
		ts->rng.s[i] = strtoull(s, &end, 16);
		if (*end)
			return tn_fail(TN_EDATA, "%s: rng[%d] is not 16 hex digits", path, i);
	}
	return TN_OK;
}

int tn_ckpt_load_state(const char *dir, const struct tn_model *m, struct tn_optim *opt,
		       struct tn_train_state *ts)
{
	char *mp = tn_path_join(dir, "optimizer.safetensors"), *sp = tn_path_join(dir, "trainer_state.json");
	int rc = mp && sp ? TN_OK : TN_ENOMEM;
	json_error_t err;
	json_t *o = rc ? NULL : json_load_file(sp, 0, &err);
	if (!rc && !o)
		rc = tn_fail(TN_EDATA, "%s: line %d: %s", sp, err.line, err.text);
	const char *fmt = rc ? NULL : json_string_value(json_object_get(o, "format"));
	if (!rc && (!fmt || strcmp(fmt, "tn-trainer-state")))
		rc = tn_fail(TN_EDATA, "%s: not a tn trainer state (format)", sp);
	if (!rc)
		rc = parse_state(o, ts, sp);
	if (!rc)
		rc = load_moments(mp, m, opt);
	if (!rc)
		opt->step = ts->step;
	json_decref(o);
	free(mp);
	free(sp);
	return rc;
}

int tn_ckpt_resolve(const char *path, char **dir)
{
	char *cfg = tn_path_join(path, "config.json"), *latest = tn_path_join(path, "latest");
	int rc = cfg && latest ? TN_OK : TN_ENOMEM;
	*dir = NULL;
	if (!rc && access(cfg, F_OK) == 0)
		*dir = tn_strdup(path);
	else if (!rc && access(latest, F_OK) == 0)
		*dir = tn_strdup(latest);
	else if (!rc)
		rc = tn_fail(TN_EDATA, "%s: neither a checkpoint (no config.json) nor a training "
			     "directory (no 'latest')", path);
	if (!rc && !*dir)
		rc = TN_ENOMEM;
	free(cfg);
	free(latest);
	return rc;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Names of the step-* checkpoints in dir, sorted (zero-padded: oldest first). */
static int list_steps(const char *dir, char ***names, size_t *n)
{
	DIR *d = opendir(dir);
	if (!d)
		return tn_fail_errno("%s", dir);
	size_t cap = 0;
	int rc = TN_OK;
	*names = NULL;
	*n = 0;
	struct dirent *e;
	while (!rc && (e = readdir(d))) {
		size_t len = strlen(e->d_name);
		if (strncmp(e->d_name, "step-", 5) || strchr(e->d_name, '.') || len < 6)
			continue;
		if (*n == cap) {
			cap = cap ? 2 * cap : 16;
			char **g = tn_realloc(*names, cap * sizeof(char *));
			if (!g) {
				rc = TN_ENOMEM;
				break;
			}
			*names = g;
		}
		if (!((*names)[*n] = tn_strdup(e->d_name)))
			rc = TN_ENOMEM;
		else
			(*n)++;
	}
	closedir(d);
	if (*n)
		qsort(*names, *n, sizeof(char *), cmp_str);
	return rc;
}

static int link_latest(const char *out_dir, const char *name)
{
	char *link = tn_path_join(out_dir, "latest"), *tmp = tn_path_join(out_dir, "latest.tmp");
	int rc = link && tmp ? TN_OK : TN_ENOMEM;
	if (!rc) {
		unlink(tmp);
		if (symlink(name, tmp) != 0 || rename(tmp, link) != 0)
			rc = tn_fail_errno("%s: cannot point it at %s", link, name);
	}
	if (!rc)
		rc = tn_fsync_dir_of(link);
	free(link);
	free(tmp);
	return rc;
}

int tn_ckpt_publish(const char *out_dir, const char *name, int keep)
{
	int rc = link_latest(out_dir, name);
	char **names = NULL;
	size_t n = 0;
	if (!rc)
		rc = list_steps(out_dir, &names, &n);
	for (size_t i = 0; i < n; i++) {
		if (!rc && keep > 0 && i + (size_t)keep < n && strcmp(names[i], name)) {
			char *p = tn_path_join(out_dir, names[i]);
			rc = p ? remove_ckpt(p) : TN_ENOMEM;
			free(p);
		}
		free(names[i]);
	}
	free(names);
	return rc;
}
