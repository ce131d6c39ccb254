/* model.c - the one TransNormerLLM definition over a backend (MODEL.md 1).
 * Layout: rows are positions (row b * n + t), heads are split into
 * head-major [B, H, n, dk] tensors only around the attention core; the
 * fused qkvu projection is run as four matmuls over row slices of its
 * weight so q, k, v, u each come out contiguous [B * n, E].
 * Gradients: parameter gradients accumulate (+=), activation gradients are
 * assigned, except the residual stream's, which accumulates across the two
 * branches of every layer.
 * Tensor parallelism: each rank runs its heads and its share of the SGLU
 * width; the partial sums of the two row-split projections (out, l3) are
 * all-reduced forward, those of the input gradients of the column-split
 * ones (qkvu, l1 + l2) backward, and the in-mixer norm over all heads sums
 * its per-row statistics over the ranks. Without TP no collective runs and
 * the ops are exactly those of the one-process model.
 * Activation checkpointing: a checkpointed layer keeps only its input; its
 * other activations live in one work set shared by all such layers and are
 * made again, by the same forward, just before the layer's backward.
 * Inference (no targets: prefill, decode, logits) keeps no layer's: all
 * layers work in that one set, so its blocks can be as long as training's. */
#include "model.h"
#include "ops_decode.h"
#include "rng.h"
#include "safetensors.h"
#include "util.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Activations of one layer for B x n rows (kept for the backward). */
struct layer_acts {
	float *x, *xn1, *rstd1, *p, *qh, *kh, *vh, *oh, *on, *rstd2, *z, *a, *xn2, *rstd3, *h1,
		*h2, *hm;
};

/* Activations, per-position results and backward scratch, one allocation. */
struct tn_acts {
	int B, n, train, n_valid;
	int backward_ok; /* the last forward kept the logits' gradient of every row */
	int recompute; /* layers 0..recompute-1 keep only their input (training layout) */
	size_t cap; /* floats allocated */
	float *mem;
	int32_t *tok, *tgt, *pos;
	int32_t *pos_host; /* host_alloc'd positions of pos_rows rows for sequences of pos_n */
	int pos_rows, pos_n;
	struct layer_acts *l;
	float *xL, *hf, *rstdf, *loss, *xent;
	float *dx, *dxn, *dh1, *dh2, *dhm, *dz, *doh, *dqh, *dkh, *dvh, *dp;
	float *tp1, *tp2, *rows; /* TP: [B * n, hidden] scratch and one float per row */
	float *o, *don, *dob;   /* TP: the merged, unnormalised attention output and its gradients */
};

/* ---- parameter table ---- */

/* A tensor of whole shape [s0, s1, s2]; this rank's part by `split`. */
static void add_param(struct tn_model *m, const char *name, int layer, enum tn_param_role role,
		      int ndim, int64_t s0, int64_t s1, int64_t s2, int decay,
		      enum tn_tp_split split, int blocks)
{
	struct tn_param *p = &m->param[m->n_param++];
	snprintf(p->name, sizeof(p->name), "%s", name);
	p->ndim = ndim;
	p->whole[0] = p->shape[0] = s0;
	p->whole[1] = p->shape[1] = s1;
	p->whole[2] = p->shape[2] = s2;
	if (split == TN_TP_ROWS)
		p->shape[0] /= m->tp_size;
	else if (split == TN_TP_COLS)
		p->shape[ndim - 1] /= m->tp_size;
	p->split = split;
	p->blocks = blocks;
	p->numel = tn_numel(p->shape, ndim);
	p->offset = m->n_floats;
	p->whole_offset = m->whole_floats;
	p->layer = layer;
	p->role = role;
	p->decay = decay;
	m->n_floats += p->numel;
	m->whole_floats += tn_numel(p->whole, ndim);
}

static void build_table(struct tn_model *m)
{
	const struct tn_config *c = &m->cfg;
	int64_t d = c->d, E = c->hidden_dim, g = c->glu_dim, H = c->heads, hd = E / H;
	char name[64];
	add_param(m, "model.embed_tokens.weight", -1, TN_P_EMB, 2, c->vocab_size, d, 0, 0,
		  TN_TP_WHOLE, 1);
	for (int l = 0; l < c->layers; l++) {
#define LAYER_PARAM(suffix, role, nd, a, b, cc, dec, split, blocks)                          \
	snprintf(name, sizeof(name), "model.layers.%d.%s", l, suffix);                       \
	add_param(m, name, l, role, nd, a, b, cc, dec, split, blocks)
		LAYER_PARAM("token_mixer.qkvu_proj.weight", TN_P_QKVU, 2, 4 * E, d, 0, 1,
			    TN_TP_ROWS, 4);
		if (c->lrpe[l]) {
			LAYER_PARAM("token_mixer.lrpe.theta", TN_P_THETA, 3, H, 1, hd, 0,
				    TN_TP_ROWS, 1);
		}
		LAYER_PARAM("token_mixer.out_proj.weight", TN_P_OUT, 2, d, E, 0, 1, TN_TP_COLS, 1);
		LAYER_PARAM("channel_mixer.l1.weight", TN_P_L1, 2, g, d, 0, 1, TN_TP_ROWS, 1);
		LAYER_PARAM("channel_mixer.l2.weight", TN_P_L2, 2, g, d, 0, 1, TN_TP_ROWS, 1);
		LAYER_PARAM("channel_mixer.l3.weight", TN_P_L3, 2, d, g, 0, 1, TN_TP_COLS, 1);
#undef LAYER_PARAM
	}
}

/* Point emb and the per-layer structs into a flat buffer laid out by the table. */
static void point(const struct tn_model *m, float *base, float **emb, struct tn_layer_w *w)
{
	for (size_t i = 0; i < m->n_param; i++) {
		const struct tn_param *p = &m->param[i];
		float *x = base + p->offset;
		if (p->role == TN_P_EMB) {
			*emb = x;
			continue;
		}
		struct tn_layer_w *lw = &w[p->layer];
		switch (p->role) {
		case TN_P_QKVU: lw->qkvu = x; break;
		case TN_P_THETA: lw->theta = x; break;
		case TN_P_OUT: lw->out = x; break;
		case TN_P_L1: lw->l1 = x; break;
		case TN_P_L2: lw->l2 = x; break;
		default: lw->l3 = x; break;
		}
	}
}

/* The TP share of heads and SGLU width (tp NULL: the whole model). */
static int set_part(struct tn_model *m, struct tn_comm *tp)
{
	const struct tn_config *c = &m->cfg;
	int T = tp ? tn_comm_size(tp) : 1;
	if (c->heads % T || c->glu_dim % T)
		return tn_fail(TN_EUSAGE, "tensor parallelism over %d ranks needs heads (%d) and "
			       "glu_dim (%d) divisible by %d", T, c->heads, c->glu_dim, T);
	m->tp = T > 1 ? tp : NULL;
	m->tp_size = T;
	m->tp_rank = T > 1 ? tn_comm_rank(tp) : 0;
	m->heads = c->heads / T;
	m->hidden = c->hidden_dim / T;
	m->glu = c->glu_dim / T;
	return TN_OK;
}

/* Ones for the TP row sums and broadcasts. */
static int make_ones(struct tn_model *m)
{
	float *h = tn_malloc((size_t)m->hidden * sizeof(float));
	m->ones = h ? m->be->alloc((size_t)m->hidden * sizeof(float)) : NULL;
	if (m->ones) {
		for (int i = 0; i < m->hidden; i++)
			h[i] = 1.0f;
		m->be->upload(m->ones, h, (size_t)m->hidden * sizeof(float));
	}
	free(h);
	return m->ones ? TN_OK : TN_ENOMEM;
}

static int model_new(struct tn_model **out, const struct tn_config *cfg,
		     const struct tn_backend *be, struct tn_comm *tp)
{
	*out = NULL;
	int rc = tn_config_check(cfg, "model config");
	if (rc)
		return rc;
	if (cfg->vocab_size <= 0)
		return tn_fail(TN_EDATA, "model config: vocab_size is not set");
	struct tn_model *m = tn_calloc(1, sizeof(*m));
	if (!m)
		return TN_ENOMEM;
	m->cfg = *cfg;
	m->be = be;
	if ((rc = set_part(m, tp)) || (m->tp && (rc = make_ones(m)))) {
		tn_model_free(m);
		return rc;
	}
	m->param = tn_calloc((size_t)cfg->layers * 6 + 1, sizeof(*m->param));
	m->w = tn_calloc((size_t)cfg->layers, sizeof(*m->w));
	m->g = tn_calloc((size_t)cfg->layers, sizeof(*m->g));
	if (!m->param || !m->w || !m->g) {
		tn_model_free(m);
		return TN_ENOMEM;
	}
	build_table(m);
	m->n_alloc = m->n_floats;
	m->params = be->alloc(m->n_alloc * sizeof(float));
	m->decay = be->alloc((size_t)cfg->layers * cfg->heads * sizeof(float));
	if (!m->params || !m->decay) {
		tn_model_free(m);
		return TN_ENOMEM;
	}
	point(m, m->params, &m->emb, m->w);
	float *s = tn_malloc((size_t)cfg->layers * cfg->heads * sizeof(float));
	if (!s) {
		tn_model_free(m);
		return TN_ENOMEM;
	}
	for (int l = 0; l < cfg->layers; l++)
		for (int h = 0; h < cfg->heads; h++)
			s[l * cfg->heads + h] = tn_config_decay(cfg, l, h);
	be->upload(m->decay, s, (size_t)cfg->layers * cfg->heads * sizeof(float));
	free(s);
	*out = m;
	return TN_OK;
}

int tn_model_new(struct tn_model **out, const struct tn_config *cfg, const struct tn_backend *be)
{
	return model_new(out, cfg, be, NULL);
}

/* *buf moved into a zeroed buffer of `floats`, keeping its n_floats. */
static int grow(const struct tn_model *m, float **buf, size_t floats)
{
	float *b = m->be->alloc(floats * sizeof(float));
	if (!b)
		return TN_ENOMEM;
	m->be->copy(b, *buf, m->n_floats * sizeof(float));
	m->be->free(*buf);
	*buf = b;
	return TN_OK;
}

int tn_model_pad_to(struct tn_model *m, size_t floats)
{
	if (floats <= m->n_alloc)
		return TN_OK;
	int rc = grow(m, &m->params, floats);
	if (!rc && m->grads)
		rc = grow(m, &m->grads, floats);
	if (rc) /* params may have grown already: n_alloc stays what both hold */
		floats = m->n_alloc;
	point(m, m->params, &m->emb, m->w);
	if (m->grads)
		point(m, m->grads, &m->gemb, m->g);
	m->n_alloc = floats;
	return rc;
}

/* Copy between a whole tensor (HF layout) and rank r's part of it (to_part:
 * which way), seen as a [rows, columns] matrix. */
static void part_copy(const struct tn_param *p, int T, int r, float *whole, float *part,
		      int to_part)
{
	size_t R = (size_t)p->whole[0], C = tn_numel(p->whole, p->ndim) / R;
	size_t blocks = 1, rb = R, rows = R, r0 = 0, cols = C, c0 = 0;
	if (p->split == TN_TP_ROWS) {
		blocks = (size_t)p->blocks;
		rb = R / blocks;
		rows = rb / (size_t)T;
		r0 = (size_t)r * rows;
	} else if (p->split == TN_TP_COLS) {
		cols = C / (size_t)T;
		c0 = (size_t)r * cols;
	}
	for (size_t b = 0; b < blocks; b++)
		for (size_t i = 0; i < rows; i++) {
			float *w = whole + (b * rb + r0 + i) * C + c0, *q = part + (b * rows + i) * cols;
			memcpy(to_part ? q : w, to_part ? w : q, cols * sizeof(float));
		}
}

int tn_model_tp_slice(const struct tn_model *m, const float *whole, float *part)
{
	float *host = tn_malloc(m->n_floats * sizeof(float));
	if (!host)
		return TN_ENOMEM;
	for (size_t i = 0; i < m->n_param; i++) {
		const struct tn_param *p = &m->param[i];
		part_copy(p, m->tp_size, m->tp_rank, (float *)whole + p->whole_offset,
			  host + p->offset, 1);
	}
	m->be->upload(part, host, m->n_floats * sizeof(float));
	free(host);
	return TN_OK;
}

/* Tensor by tensor, so that only the ranks that want the whole hold it. */
int tn_model_tp_gather(const struct tn_model *m, const float *part, float *whole)
{
	size_t T = (size_t)m->tp_size, most = 0;
	if (!m->tp) {
		if (whole)
			m->be->download(whole, part, m->n_floats * sizeof(float));
		return TN_OK;
	}
	for (size_t i = 0; i < m->n_param; i++)
		most = TN_MAX(most, m->param[i].numel);
	float *all = m->be->alloc(T * most * sizeof(float));
	float *host = all ? tn_malloc(T * most * sizeof(float)) : NULL;
	int rc = host ? TN_OK : TN_ENOMEM;
	for (size_t i = 0; !rc && i < m->n_param; i++) {
		const struct tn_param *p = &m->param[i];
		if ((rc = tn_comm_allgather(m->tp, part + p->offset, all, p->numel)) || !whole)
			continue;
		m->be->download(host, all, T * p->numel * sizeof(float));
		for (size_t q = 0; q < T; q++) /* replicated: rank 0's copy */
			if (p->split != TN_TP_WHOLE || q == 0)
				part_copy(p, (int)T, (int)q, whole + p->whole_offset,
					  host + q * p->numel, 0);
	}
	free(host);
	if (all)
		m->be->free(all);
	return rc;
}

int tn_model_tp_split(struct tn_model **out, const struct tn_model *whole,
		      const struct tn_backend *be, struct tn_comm *tp)
{
	struct tn_model *m;
	*out = NULL;
	int rc = model_new(&m, &whole->cfg, be, tp);
	if (rc)
		return rc;
	float *host = tn_malloc(whole->n_floats * sizeof(float));
	if (!host)
		rc = TN_ENOMEM;
	if (!rc) {
		whole->be->download(host, whole->params, whole->n_floats * sizeof(float));
		rc = tn_model_tp_slice(m, host, m->params);
	}
	free(host);
	if (rc) {
		tn_model_free(m);
		return rc;
	}
	*out = m;
	return TN_OK;
}

static void acts_free(struct tn_model *m)
{
	if (!m->acts)
		return;
	m->be->free(m->acts->mem);
	if (m->acts->pos_host)
		m->be->host_free(m->acts->pos_host);
	free(m->acts->l);
	free(m->acts);
	m->acts = NULL;
}

void tn_model_free(struct tn_model *m)
{
	if (!m)
		return;
	acts_free(m);
	if (m->params)
		m->be->free(m->params);
	if (m->grads)
		m->be->free(m->grads);
	if (m->decay)
		m->be->free(m->decay);
	if (m->ones)
		m->be->free(m->ones);
	free(m->param);
	free(m->w);
	free(m->g);
	free(m);
}

/* theta[h, c] = 10000^(-2 (h hd + c) / (H hd)), MODEL.md 1.3 step 4. */
static void theta_formula(float *theta, int H, int hd)
{
	for (int i = 0; i < H * hd; i++)
		theta[i] = (float)pow(10000.0, -2.0 * i / (double)(H * hd));
}

/* Whole-model operations: a TP part goes through tn_model_tp_split/gather. */
static int check_whole(const struct tn_model *m, const char *what)
{
	if (m->tp)
		return tn_fail(TN_EUSAGE, "%s needs the whole model, not a tensor-parallel part", what);
	return TN_OK;
}

/* Initial weights come in chunks of INIT_CHUNK values, each drawn from its
 * own generator seeded by (seed, tensor, chunk): the same weights on any
 * number of threads, and a 7B model drawn in seconds rather than minutes. */
#define INIT_CHUNK ((size_t)1 << 16)

static void init_chunk(const struct tn_model *m, float *host, uint64_t seed, size_t i, size_t c)
{
	const struct tn_param *p = &m->param[i];
	struct tn_rng r;
	tn_rng_seed(&r, seed ^ (((uint64_t)i << 40) + (uint64_t)c) * 0x9e3779b97f4a7c15ull);
	size_t lo = c * INIT_CHUNK, hi = TN_MIN(lo + INIT_CHUNK, p->numel);
	for (size_t j = lo; j < hi; j++)
		host[p->offset + j] = (float)(m->cfg.init_std * tn_rng_normal(&r));
}

int tn_model_init(struct tn_model *m, uint64_t seed)
{
	if (check_whole(m, "initialisation"))
		return TN_EUSAGE;
	float *host = tn_malloc(m->n_floats * sizeof(float));
	size_t n_chunks = 0, *first = tn_malloc((m->n_param + 1) * sizeof(*first));
	if (!host || !first) {
		free(host);
		free(first);
		return TN_ENOMEM;
	}
	for (size_t i = 0; i < m->n_param; i++) { /* chunk k of the model is tensor i's k - first[i] */
		first[i] = n_chunks;
		if (m->param[i].role != TN_P_THETA)
			n_chunks += (m->param[i].numel + INIT_CHUNK - 1) / INIT_CHUNK;
	}
	first[m->n_param] = n_chunks;
#pragma omp parallel for schedule(dynamic, 16)
	for (size_t k = 0; k < n_chunks; k++) {
		size_t i = 0;
		while (first[i + 1] <= k)
			i++;
		init_chunk(m, host, seed, i, k - first[i]);
	}
	int hd = tn_config_head_dim(&m->cfg);
	for (size_t i = 0; i < m->n_param; i++) {
		const struct tn_param *p = &m->param[i];
		if (p->role == TN_P_THETA)
			theta_formula(host + p->offset, m->cfg.heads, hd);
		if (p->role == TN_P_EMB)
			memset(host + p->offset + (size_t)m->cfg.pad_id * m->cfg.d, 0,
			       (size_t)m->cfg.d * sizeof(float));
	}
	m->be->upload(m->params, host, m->n_floats * sizeof(float));
	free(first);
	free(host);
	return TN_OK;
}

/* ---- loading and saving ---- */

static int check_extra(const struct tn_model *m, const struct tn_st *st)
{
	for (size_t i = 0; i < st->n; i++) {
		const char *name = st->t[i].name;
		int known = !strcmp(name, "lm_head.weight");
		for (size_t j = 0; !known && j < m->n_param; j++)
			known = !strcmp(name, m->param[j].name);
		if (!known)
			return tn_fail(TN_EDATA, "%s: tensor '%s' is not part of this model (%d layers, "
				       "LRPE flags as configured)", st->path, name, m->cfg.layers);
	}
	return TN_OK;
}

/* The file among st[0..n) holding tensor name (NULL: none); two is an error. */
static int find_file(const struct tn_st *st, size_t n, const char *name,
		     const struct tn_st **at)
{
	*at = NULL;
	for (size_t i = 0; i < n; i++) {
		if (!tn_st_find(&st[i], name))
			continue;
		if (*at)
			return tn_fail(TN_EDATA, "%s: tensor '%s' is also in %s", st[i].path, name,
				       (*at)->path);
		*at = &st[i];
	}
	return TN_OK;
}

/* Every parameter from the files (one checkpoint split over n files). */
static int load_files(struct tn_model *m, struct tn_st *st, size_t n)
{
	float *host = tn_malloc(m->n_floats * sizeof(float));
	int rc = host ? TN_OK : TN_ENOMEM;
	for (size_t i = 0; i < n && !rc; i++)
		rc = check_extra(m, &st[i]);
	for (size_t i = 0; i < m->n_param && !rc; i++) {
		const struct tn_param *p = &m->param[i];
		const struct tn_st *at;
		if ((rc = find_file(st, n, p->name, &at)))
			break;
		if (!at && p->role == TN_P_THETA)
			theta_formula(host + p->offset, m->cfg.heads, tn_config_head_dim(&m->cfg));
		else
			rc = tn_st_read_f32(at ? at : &st[0], p->name, p->shape, p->ndim,
					    host + p->offset);
	}
	if (!rc)
		m->be->upload(m->params, host, m->n_floats * sizeof(float));
	free(host);
	return rc;
}

int tn_model_load_weights(struct tn_model *m, const char *path)
{
	struct tn_st st;
	int rc = check_whole(m, "loading weights");
	if (!rc)
		rc = tn_st_open(&st, path);
	if (rc)
		return rc;
	rc = load_files(m, &st, 1);
	tn_st_close(&st);
	return rc;
}

/* The shard files an HF index names (weight_map values, each once). */
static int index_files(const char *index, json_t **files)
{
	json_error_t err;
	json_t *o = json_load_file(index, 0, &err), *map = json_object_get(o, "weight_map");
	if (!o)
		return tn_fail(TN_EDATA, "%s: line %d: %s", index, err.line, err.text);
	*files = json_array();
	const char *key;
	json_t *v;
	int rc = json_is_object(map) ? TN_OK : tn_fail(TN_EDATA, "%s: no weight_map object", index);
	json_object_foreach(map, key, v) {
		int seen = 0;
		for (size_t i = 0; !rc && i < json_array_size(*files); i++)
			seen |= json_equal(json_array_get(*files, i), v);
		if (!rc && !json_is_string(v))
			rc = tn_fail(TN_EDATA, "%s: weight_map['%s'] is not a file name", index, key);
		else if (!rc && !seen)
			json_array_append(*files, v);
	}
	json_decref(o);
	return rc;
}

/* Weights of an HF directory: model.safetensors, or the shards listed in
 * model.safetensors.index.json (the layout of large checkpoints). */
static int load_dir_weights(struct tn_model *m, const char *dir)
{
	size_t n = strlen(dir) + 64;
	char *path = tn_malloc(n);
	if (!path)
		return TN_ENOMEM;
	snprintf(path, n, "%s/model.safetensors", dir);
	int rc;
	if (access(path, F_OK) == 0 || errno != ENOENT) {
		rc = tn_model_load_weights(m, path);
		free(path);
		return rc;
	}
	snprintf(path, n, "%s/model.safetensors.index.json", dir);
	json_t *files = NULL;
	rc = access(path, F_OK) == 0 ? index_files(path, &files)
		: tn_fail(TN_EDATA, "%s: no model.safetensors and no model.safetensors.index.json", dir);
	size_t nf = files ? json_array_size(files) : 0, opened = 0;
	struct tn_st *st = rc ? NULL : tn_calloc(nf + 1, sizeof(*st));
	if (!rc && !st)
		rc = TN_ENOMEM;
	for (; !rc && opened < nf; opened++) {
		char *f = tn_malloc(strlen(dir) + strlen(json_string_value(json_array_get(files, opened))) + 2);
		if (!f) {
			rc = TN_ENOMEM;
			break;
		}
		sprintf(f, "%s/%s", dir, json_string_value(json_array_get(files, opened)));
		rc = tn_st_open(&st[opened], f);
		free(f);
		if (rc)
			break;
	}
	if (!rc)
		rc = nf ? load_files(m, st, nf) : tn_fail(TN_EDATA, "%s: weight_map is empty", path);
	for (size_t i = 0; i < opened; i++)
		tn_st_close(&st[i]);
	free(st);
	json_decref(files);
	free(path);
	return rc;
}

int tn_model_load(struct tn_model **out, const char *dir, const struct tn_backend *be)
{
	*out = NULL;
	size_t n = strlen(dir) + 32;
	char *path = tn_malloc(n);
	if (!path)
		return TN_ENOMEM;
	struct tn_config cfg;
	snprintf(path, n, "%s/config.json", dir);
	int rc = tn_config_load(&cfg, path);
	if (!rc && cfg.vocab_size <= 0)
		rc = tn_fail(TN_EDATA, "%s: vocab_size must be positive", path);
	if (!rc)
		rc = tn_model_new(out, &cfg, be);
	if (!rc)
		rc = load_dir_weights(*out, dir);
	if (rc) {
		tn_model_free(*out);
		*out = NULL;
	}
	free(path);
	return rc;
}

int tn_model_save_weights(const struct tn_model *m, const char *path, enum tn_dtype dtype)
{
	if (check_whole(m, "saving weights"))
		return TN_EUSAGE;
	float *host = tn_malloc(m->n_floats * sizeof(float));
	struct tn_st_entry *e = tn_calloc(m->n_param, sizeof(*e));
	int rc = host && e ? TN_OK : TN_ENOMEM;
	if (!rc) {
		m->be->download(host, m->params, m->n_floats * sizeof(float));
		for (size_t i = 0; i < m->n_param; i++) {
			const struct tn_param *p = &m->param[i];
			e[i].name = p->name;
			e[i].dtype = dtype;
			e[i].ndim = p->ndim;
			memcpy(e[i].shape, p->shape, sizeof(p->shape));
			e[i].data = host + p->offset;
		}
		rc = tn_st_write(path, e, m->n_param);
	}
	free(host);
	free(e);
	return rc;
}

/* ---- activations ---- */

static int layer_dk(const struct tn_model *m, int l)
{
	return (m->cfg.lrpe[l] ? 2 : 1) * tn_config_head_dim(&m->cfg);
}

/* Place `count` floats at base + used (base NULL: only count them), each
 * tensor 16-float aligned; `base` and `used` are the caller's. */
#define TAKE(ptr, count)                                                                     \
	do {                                                                                 \
		if (base)                                                                    \
			(ptr) = (void *)(base + used);                                       \
		used += ((count) + 15) & ~(size_t)15;                                        \
	} while (0)

/* A layer's activations but its input x, for BT rows and a q/k head dim
 * of dk, from base + used; returns the new used. */
static size_t layer_layout(const struct tn_model *m, struct layer_acts *x, size_t BT, int dk,
			   float *base, size_t used)
{
	size_t d = (size_t)m->cfg.d, E = (size_t)m->hidden, g = (size_t)m->glu,
	       qk = BT * (size_t)m->heads * (size_t)dk;
	TAKE(x->xn1, BT * d);
	TAKE(x->rstd1, BT);
	TAKE(x->p, 4 * BT * E);
	TAKE(x->qh, qk);
	TAKE(x->kh, qk);
	TAKE(x->vh, BT * E);
	TAKE(x->oh, BT * E);
	TAKE(x->on, BT * E);
	TAKE(x->rstd2, BT);
	TAKE(x->z, BT * E);
	TAKE(x->a, BT * d);
	TAKE(x->xn2, BT * d);
	TAKE(x->rstd3, BT);
	TAKE(x->h1, BT * g);
	TAKE(x->h2, BT * g);
	TAKE(x->hm, BT * g);
	return used;
}

/* The layers that keep no activations for a backward (checkpointed ones,
 * or all of them for inference) share one work set, sized for the widest
 * of them (LRPE doubles dk), which each overwrites in turn. */
static size_t work_layout(const struct tn_model *m, struct tn_acts *a, int shared, size_t BT,
			  float *base, size_t used)
{
	struct layer_acts w = {0};
	int dk = 0;
	for (int l = 0; l < shared; l++)
		dk = TN_MAX(dk, layer_dk(m, l));
	used = layer_layout(m, &w, BT, dk, base, used);
	for (int l = 0; l < shared; l++) {
		float *x = a->l[l].x;
		a->l[l] = w;
		a->l[l].x = x;
	}
	return used;
}

/* Every layer's activations. Training keeps each layer's input and, but
 * for the first a->recompute layers (checkpointed), the rest of its set.
 * Inference keeps nothing for a backward: all layers share the work set
 * and their inputs alternate between two buffers (layer l reads its own
 * while writing layer l + 1's), so a row costs about one layer's set. */
static size_t layers_layout(const struct tn_model *m, struct tn_acts *a, size_t BT, int train,
			    float *base, size_t used)
{
	int L = m->cfg.layers, shared = train ? a->recompute : L;
	for (int l = 0; l < L; l++) {
		if (train || l < 2)
			TAKE(a->l[l].x, BT * (size_t)m->cfg.d);
		else if (base)
			a->l[l].x = a->l[l - 2].x;
		if (l >= shared)
			used = layer_layout(m, &a->l[l], BT, layer_dk(m, l), base, used);
	}
	return shared ? work_layout(m, a, shared, BT, base, used) : used;
}

/* What a forward's activations are for: the hidden states only (prefill,
 * decode, logits), per-position losses with no backward to follow (the
 * cross-entropy in blocks of SCORE_ROWS rows, with one block's logit
 * gradients), or a training step. */
enum acts_use { ACTS_INFER, ACTS_SCORE, ACTS_TRAIN };
#define SCORE_ROWS 512

/* Lay the activations of B x n rows out from base (or only count them when
 * base is NULL); returns the number of floats. */
static size_t acts_layout(const struct tn_model *m, struct tn_acts *a, int B, int n,
			  enum acts_use use, float *base)
{
	const struct tn_config *c = &m->cfg;
	int train = use == ACTS_TRAIN;
	size_t BT = (size_t)B * n, d = (size_t)c->d, E = (size_t)m->hidden,
	       g = (size_t)m->glu, used = 0, dkmax = 2 * (size_t)tn_config_head_dim(c);
	a->recompute = train ? m->recompute : 0;
	TAKE(a->tok, BT);
	TAKE(a->tgt, BT);
	TAKE(a->pos, BT);
	used = layers_layout(m, a, BT, train, base, used);
	TAKE(a->xL, BT * d);
	TAKE(a->hf, BT * d);
	TAKE(a->rstdf, BT);
	TAKE(a->loss, BT);
	if (m->tp) {
		TAKE(a->tp1, BT * E);
		TAKE(a->tp2, BT * E);
		TAKE(a->rows, BT);
		TAKE(a->o, BT * E);
		TAKE(a->don, BT * E);
		TAKE(a->dob, BT * E);
	}
	if (train) {
		TAKE(a->xent, m->be->xent_scratch((int)BT, c->vocab_size));
		TAKE(a->dx, BT * d);
		TAKE(a->dxn, BT * d);
		TAKE(a->dh1, BT * g);
		TAKE(a->dh2, BT * g);
		TAKE(a->dhm, BT * g);
		TAKE(a->dz, BT * E);
		TAKE(a->doh, BT * E);
		TAKE(a->dqh, BT * (size_t)m->heads * dkmax);
		TAKE(a->dkh, BT * (size_t)m->heads * dkmax);
		TAKE(a->dvh, BT * E);
		TAKE(a->dp, 4 * BT * E);
	} else if (use == ACTS_SCORE) {
		TAKE(a->xent, m->be->xent_scratch((int)TN_MIN(BT, SCORE_ROWS), c->vocab_size));
	}
	return used;
}
#undef TAKE

/* Floats that B x n rows take, with or without the backward's scratch. */
static int acts_need(const struct tn_model *m, int B, int n, enum acts_use use, size_t *need)
{
	struct tn_acts probe = {0};
	probe.l = tn_calloc((size_t)m->cfg.layers, sizeof(*probe.l));
	if (!probe.l)
		return TN_ENOMEM;
	*need = acts_layout(m, &probe, B, n, use, NULL);
	free(probe.l);
	return TN_OK;
}

/* Tell the backend which activations only products read (backend.h's
 * operand): for a forward over blocks of rows (training, prefill), not for
 * a decode step, whose ops read q, k, v and the mixer's rows themselves.
 * Backward scratch is marked only where the layout has it. */
static void mark_operands(const struct tn_model *m, struct tn_acts *a, size_t BT, int products)
{
	void (*mark)(float *, size_t) = m->be->operand;
	if (!mark)
		return;
	mark(NULL, 0);
	if (!products)
		return;
	size_t d = (size_t)m->cfg.d, E = (size_t)m->hidden, g = (size_t)m->glu;
	for (int l = 0; l < m->cfg.layers; l++) {
		struct layer_acts *x = &a->l[l];
		size_t qk = BT * (size_t)m->heads * (size_t)layer_dk(m, l);
		mark(x->xn1, BT * d);
		mark(x->qh, qk);
		mark(x->kh, qk);
		mark(x->vh, BT * E);
		mark(x->z, BT * E);
		mark(x->xn2, BT * d);
		mark(x->hm, BT * g);
		if (!m->tp) /* under TP the merged output goes through the ranks' norm */
			mark(x->oh, BT * E);
	}
	if (!a->train)
		return;
	mark(a->dh1, BT * g);
	mark(a->dh2, BT * g);
	mark(a->doh, BT * E);
	mark(a->dp, 4 * BT * E);
	size_t dkmax = BT * (size_t)m->heads * 2 * (size_t)tn_config_head_dim(&m->cfg);
	mark(a->dqh, dkmax);
	mark(a->dkh, dkmax);
	mark(a->dvh, BT * E);
}

/* Make m->acts hold B x n rows, reusing the allocation when it is big
 * enough (an allocation with backward scratch keeps its layout). */
static int acts_ensure(struct tn_model *m, int B, int n, enum acts_use use)
{
	struct tn_acts *a = m->acts;
	int train = use == ACTS_TRAIN;
	size_t need;
	int rc = acts_need(m, B, n, a && a->train ? ACTS_TRAIN : use, &need);
	if (rc)
		return rc;
	if (!a || a->cap < need || (train && !a->train)) {
		if ((rc = acts_need(m, B, n, use, &need)))
			return rc;
		acts_free(m);
		a = tn_calloc(1, sizeof(*a));
		if (!a)
			return TN_ENOMEM;
		a->l = tn_calloc((size_t)m->cfg.layers, sizeof(*a->l));
		a->mem = a->l ? m->be->alloc(need * sizeof(float)) : NULL;
		if (!a->mem) {
			free(a->l);
			free(a);
			return TN_ENOMEM;
		}
		a->cap = need;
		a->train = train;
		m->acts = a;
	}
	a->B = B;
	a->n = n;
	a->n_valid = -1; /* until a forward with targets: no losses, no backward */
	a->backward_ok = 0;
	acts_layout(m, a, B, n, a->train ? ACTS_TRAIN : use, a->mem);
	mark_operands(m, a, (size_t)B * n, train || n > 1);
	return TN_OK;
}

void tn_model_set_recompute(struct tn_model *m, int layers)
{
	int k = layers < 0 || layers > m->cfg.layers ? m->cfg.layers : layers;
	if (k != m->recompute)
		acts_free(m); /* the next forward lays the activations out anew */
	m->recompute = k;
}

int tn_model_parse_recompute(const char *s, int *layers)
{
	uint64_t v;
	if (!strcmp(s, "all"))
		*layers = -1;
	else if (!strcmp(s, "none"))
		*layers = 0;
	else if (!tn_parse_u64(s, &v, 0) && v <= 1u << 20)
		*layers = (int)v;
	else
		return tn_fail(TN_EUSAGE, "--recompute: all, none or a number of layers, not '%s'", s);
	return TN_OK;
}

int tn_model_activation_bytes(const struct tn_model *m, int B, int n, size_t *bytes)
{
	size_t floats;
	int rc = acts_need(m, B, n, ACTS_TRAIN, &floats);
	*bytes = rc ? 0 : floats * sizeof(float);
	return rc;
}

/* ---- tensor parallelism ---- */

/* Partial sums of a row-split product (or of a column-split one's input
 * gradient) summed over the TP ranks, in place. */
static int tp_sum(struct tn_model *m, float *buf, size_t n)
{
	return m->tp ? tn_comm_allreduce(m->tp, buf, n) : TN_OK;
}

/* host[r] = sum over all ranks' channels of a[r, :] * b[r, :] (rows of
 * this rank's `hidden` channels): a product, a matmul with ones, then one
 * all-reduce of a float per row. */
static int tp_rowdot(struct tn_model *m, const float *a, const float *b, int BT, float *host)
{
	struct tn_acts *x = m->acts;
	m->be->gate_forward(x->tp1, a, b, (size_t)BT * m->hidden);
	m->be->matmul_forward(x->rows, x->tp1, m->ones, BT, m->hidden, 1, 0);
	int rc = tn_comm_allreduce(m->tp, x->rows, (size_t)BT);
	if (!rc)
		m->be->download(host, x->rows, (size_t)BT * sizeof(float));
	return rc;
}

/* dst[r, :] = v[r] * x[r, :] on this rank's channels (v: one float per row,
 * backend memory), the very product the norm makes: srmsnorm_backward
 * with a zero output adds v[r] * x[r, j] to a zeroed dst. */
static void tp_rowscale(struct tn_model *m, float *dst, const float *x, const float *v, int BT)
{
	size_t bytes = (size_t)BT * m->hidden * sizeof(float);
	m->be->zero(dst, bytes);
	m->be->zero(m->acts->tp2, bytes);
	m->be->srmsnorm_backward(dst, x, m->acts->tp2, v, BT, m->hidden);
}

/* SRMSNorm over all heads (MODEL.md 1.3 step 8) of rows whose channels are
 * spread over the ranks: srmsnorm_forward with the sum of squares summed
 * over the ranks (in fp32, where the whole-row op sums in fp64). */
static int tp_norm_forward(struct tn_model *m, float *out, float *rstd, const float *inp, int BT)
{
	float *h = tn_malloc((size_t)BT * sizeof(float));
	int rc = h ? tp_rowdot(m, inp, inp, BT, h) : TN_ENOMEM;
	for (int r = 0; !rc && r < BT; r++)
		h[r] = (float)(1.0 / sqrt((double)h[r] / m->cfg.hidden_dim + 1e-6));
	if (!rc) {
		m->be->upload(rstd, h, (size_t)BT * sizeof(float));
		tp_rowscale(m, out, inp, rstd, BT);
	}
	free(h);
	return rc;
}

/* Its backward, assigning dinp = rstd (dout - out * mean(out dout)). */
static int tp_norm_backward(struct tn_model *m, float *dinp, const float *dout, const float *out,
			    const float *rstd, int BT)
{
	struct tn_acts *x = m->acts;
	float *h = tn_malloc((size_t)BT * sizeof(float));
	int rc = h ? tp_rowdot(m, out, dout, BT, h) : TN_ENOMEM;
	if (!rc) {
		for (int r = 0; r < BT; r++)
			h[r] = -(float)((double)h[r] / m->cfg.hidden_dim);
		m->be->upload(x->rows, h, (size_t)BT * sizeof(float));
		tp_rowscale(m, x->tp1, out, x->rows, BT);
		m->be->residual_forward(x->tp1, x->tp1, dout, (size_t)BT * m->hidden);
		tp_rowscale(m, dinp, x->tp1, rstd, BT);
	}
	free(h);
	return rc;
}

/* ---- forward ---- */

/* One layer over the rows of a; st_in/st_out: the attention state of this
 * layer (prefill/decode) or NULL (training, state zero). out: the output,
 * or NULL to stop once the activations the backward reads are made. */
static int layer_forward(struct tn_model *m, int l, const float *st_in, float *st_out,
			 float *out)
{
	const struct tn_backend *be = m->be;
	const struct tn_config *c = &m->cfg;
	struct tn_acts *a = m->acts;
	struct layer_acts *x = &a->l[l];
	const struct tn_layer_w *w = &m->w[l];
	int B = a->B, n = a->n, BT = B * n, d = c->d, E = m->hidden, g = m->glu;
	int H = m->heads, hd = tn_config_head_dim(c);
	size_t sz = (size_t)BT * E;
	const float *decay = m->decay + (size_t)l * c->heads + (size_t)m->tp_rank * H;

	be->srmsnorm_forward(x->xn1, x->rstd1, x->x, BT, d);
	for (int s = 0; s < 4; s++)
		be->matmul_forward(x->p + s * sz, x->xn1, w->qkvu + (size_t)s * E * d, BT, d, E, 0);
	be->act_lrpe_forward(x->qh, x->p, w->theta, a->pos, B, n, H, hd, c->act);
	be->act_lrpe_forward(x->kh, x->p + sz, w->theta, a->pos, B, n, H, hd, c->act);
	be->lrpe_forward(x->vh, x->p + 2 * sz, NULL, NULL, B, n, H, hd);
	struct tn_attn_shape sh = {B, H, n, layer_dk(m, l), hd};
	int rc = st_in && n == 1
		? be->attn_decode(B, H, sh.dk, hd, x->qh, x->kh, x->vh, decay, st_out, x->oh)
		: be->attn_forward(&sh, x->qh, x->kh, x->vh, decay, st_in, x->oh, st_out);
	if (rc)
		return rc;
	if (m->tp) { /* the norm's statistics span the ranks */
		be->heads_merge(a->o, x->oh, B, n, H, hd);
		rc = tp_norm_forward(m, x->on, x->rstd2, a->o, BT);
		be->gate_forward(x->z, x->p + 3 * sz, x->on, sz);
	} else {
		be->merge_norm_gate_forward(x->on, x->rstd2, x->z, x->oh, x->p + 3 * sz, B, n, H, hd);
	}
	be->matmul_forward(x->a, x->z, w->out, BT, E, d, 0);
	if (rc || (rc = tp_sum(m, x->a, (size_t)BT * d)))
		return rc;
	be->residual_norm_forward(x->a, x->xn2, x->rstd3, x->a, x->x, BT, d);
	be->matmul_forward(x->h1, x->xn2, w->l1, BT, d, g, 0);
	be->matmul_forward(x->h2, x->xn2, w->l2, BT, d, g, 0);
	be->gate_forward(x->hm, x->h1, x->h2, (size_t)BT * g);
	if (!out) /* recomputed for the backward, which needs no output */
		return TN_OK;
	be->matmul_forward(out, x->hm, w->l3, BT, g, d, 0);
	if ((rc = tp_sum(m, out, (size_t)BT * d)))
		return rc;
	be->residual_forward(out, out, x->a, (size_t)BT * d);
	return TN_OK;
}

/* Embedding, all layers, final norm over the rows already in m->acts
 * (tok, pos set). states: per-layer [in, out] pairs or NULL. */
static int stack_forward(struct tn_model *m, float *const *st_in, float *const *st_out)
{
	const struct tn_config *c = &m->cfg;
	struct tn_acts *a = m->acts;
	int BT = a->B * a->n;
	m->be->embedding_forward(a->l[0].x, a->tok, m->emb, BT, c->d,
				 (float)tn_config_embed_scale(c));
	for (int l = 0; l < c->layers; l++) {
		float *out = l + 1 < c->layers ? a->l[l + 1].x : a->xL;
		int rc = layer_forward(m, l, st_in ? st_in[l] : NULL, st_out ? st_out[l] : NULL, out);
		if (rc)
			return rc;
	}
	m->be->srmsnorm_forward(a->hf, a->rstdf, a->xL, BT, c->d);
	return TN_OK;
}

static int check_tokens(const struct tn_model *m, const int32_t *tok, size_t n, const char *what)
{
	for (size_t i = 0; i < n; i++)
		if (tok[i] < 0 || tok[i] >= m->cfg.vocab_size)
			return tn_fail(TN_EDATA, "%s %zu: token id %d is outside the model's vocabulary "
				       "of %d", what, i, tok[i], m->cfg.vocab_size);
	return TN_OK;
}

/* Upload the positions 0..n-1 of each of the B sequences from host memory
 * that stays put (pinned on the GPU: no wait), made again only for a new
 * shape, after the uploads of the old one have finished. */
static int positions(struct tn_model *m, struct tn_acts *a, int B, int n)
{
	int rows = B * n;
	if (!a->pos_host || a->pos_rows != rows || a->pos_n != n) {
		int rc = m->be->status();
		if (rc)
			return rc;
		if (a->pos_host)
			m->be->host_free(a->pos_host);
		a->pos_host = m->be->host_alloc((size_t)rows * sizeof(int32_t));
		if (!a->pos_host)
			return TN_ENOMEM;
		for (int i = 0; i < rows; i++)
			a->pos_host[i] = i % n;
		a->pos_rows = rows;
		a->pos_n = n;
	}
	m->be->upload(a->pos, a->pos_host, (size_t)rows * sizeof(int32_t));
	return TN_OK;
}

/* The cross-entropy of every row: at once where the layout keeps the
 * logits' gradient of every row for a backward, else in blocks of
 * SCORE_ROWS rows through one block's scratch. */
static void crossentropy_rows(struct tn_model *m, struct tn_acts *a, int BT)
{
	const struct tn_config *c = &m->cfg;
	int block = a->train ? BT : SCORE_ROWS;
	for (int r0 = 0; r0 < BT; r0 += block)
		m->be->crossentropy_forward(a->loss + r0, a->hf + (size_t)r0 * c->d, m->emb,
					    a->tgt + r0, TN_MIN(block, BT - r0), c->d,
					    c->vocab_size, a->xent);
	a->backward_ok = a->train;
}

static int forward(struct tn_model *m, const int32_t *tok, const int32_t *tgt, int B, int n,
		   double *loss, enum acts_use use)
{
	size_t BT = (size_t)B * n;
	int rc = check_tokens(m, tok, BT, "input position");
	if (!rc)
		rc = acts_ensure(m, B, n, use);
	if (rc)
		return rc;
	struct tn_acts *a = m->acts;
	if ((rc = positions(m, a, B, n)))
		return rc;
	m->be->upload(a->tok, tok, BT * sizeof(int32_t));
	if ((rc = stack_forward(m, NULL, NULL)) || !tgt)
		return rc;
	a->n_valid = 0;
	for (size_t i = 0; i < BT; i++) {
		if (tgt[i] >= m->cfg.vocab_size)
			return tn_fail(TN_EDATA, "target position %zu: token id %d is outside the "
				       "model's vocabulary of %d", i, tgt[i], m->cfg.vocab_size);
		a->n_valid += tgt[i] >= 0;
	}
	m->be->upload(a->tgt, tgt, BT * sizeof(int32_t));
	crossentropy_rows(m, a, (int)BT);
	float *host = tn_malloc(BT * sizeof(float));
	if (!host)
		return TN_ENOMEM;
	m->be->download(host, a->loss, BT * sizeof(float));
	double sum = 0;
	for (size_t i = 0; i < BT; i++)
		sum += host[i];
	free(host);
	*loss = a->n_valid ? sum / a->n_valid : 0.0;
	return TN_OK;
}

int tn_model_forward(struct tn_model *m, const int32_t *tok, const int32_t *tgt, int B, int n,
		     double *loss)
{
	return forward(m, tok, tgt, B, n, loss, tgt ? ACTS_TRAIN : ACTS_INFER);
}

int tn_model_score(struct tn_model *m, const int32_t *tok, const int32_t *tgt, int B, int n,
		   double *loss)
{
	return forward(m, tok, tgt, B, n, loss, ACTS_SCORE);
}

int tn_model_losses(const struct tn_model *m, float *out)
{
	const struct tn_acts *a = m->acts;
	if (!a || a->n_valid < 0)
		return tn_fail(TN_EUSAGE, "no forward pass with targets to take losses from");
	m->be->download(out, a->loss, (size_t)a->B * a->n * sizeof(float));
	return TN_OK;
}

/* Logits of rows [r0, r0 + rows) of the current hidden states into out (host). */
static int logits_rows(const struct tn_model *m, int r0, int rows, float *out)
{
	size_t bytes = (size_t)rows * m->cfg.vocab_size * sizeof(float);
	float *dev = m->be->alloc(bytes);
	if (!dev)
		return TN_ENOMEM;
	m->be->matmul_forward(dev, m->acts->hf + (size_t)r0 * m->cfg.d, m->emb, rows, m->cfg.d,
			      m->cfg.vocab_size, 0);
	m->be->download(out, dev, bytes);
	m->be->free(dev);
	return TN_OK;
}

int tn_model_logits(const struct tn_model *m, float *out)
{
	if (!m->acts)
		return tn_fail(TN_EUSAGE, "no forward pass to take logits from");
	return logits_rows(m, 0, m->acts->B * m->acts->n, out);
}

/* ---- backward ---- */

int tn_model_zero_grad(struct tn_model *m)
{
	if (!m->grads) {
		m->grads = m->be->alloc(m->n_alloc * sizeof(float));
		if (!m->grads)
			return TN_ENOMEM;
		point(m, m->grads, &m->gemb, m->g);
		return TN_OK;
	}
	m->be->zero(m->grads, m->n_alloc * sizeof(float));
	return TN_OK;
}

/* Channel mixer: a->dx holds d(out); afterwards d(A), the mixer's input. */
static int channel_backward(struct tn_model *m, int l)
{
	const struct tn_backend *be = m->be;
	struct tn_acts *a = m->acts;
	struct layer_acts *x = &a->l[l];
	const struct tn_layer_w *w = &m->w[l];
	struct tn_layer_w *gw = &m->g[l];
	int BT = a->B * a->n, d = m->cfg.d, g = m->glu;
	be->matmul_backward(a->dhm, gw->l3, a->dx, x->hm, w->l3, BT, g, d, 0);
	be->gate_backward(a->dh1, a->dh2, a->dhm, x->h1, x->h2, (size_t)BT * g);
	be->matmul_backward(a->dxn, gw->l1, a->dh1, x->xn2, w->l1, BT, d, g, 0);
	be->matmul_backward(a->dxn, gw->l2, a->dh2, x->xn2, w->l2, BT, d, g, 1);
	int rc = tp_sum(m, a->dxn, (size_t)BT * d);
	if (!rc)
		be->srmsnorm_backward(a->dx, a->dxn, x->xn2, x->rstd3, BT, d);
	return rc;
}

/* Token mixer: a->dx holds d(A); afterwards d(x), the layer's input. */
static int token_backward(struct tn_model *m, int l)
{
	const struct tn_backend *be = m->be;
	const struct tn_config *c = &m->cfg;
	struct tn_acts *a = m->acts;
	struct layer_acts *x = &a->l[l];
	const struct tn_layer_w *w = &m->w[l];
	struct tn_layer_w *gw = &m->g[l];
	int B = a->B, n = a->n, BT = B * n, d = c->d, E = m->hidden, H = m->heads,
	    hd = tn_config_head_dim(c);
	size_t sz = (size_t)BT * E;
	float *dp = a->dp;

	be->matmul_backward(a->dz, gw->out, a->dx, x->z, w->out, BT, E, d, 0);
	int rc = TN_OK;
	if (m->tp) {
		be->gate_backward(dp + 3 * sz, a->don, a->dz, x->p + 3 * sz, x->on, sz);
		rc = tp_norm_backward(m, a->dob, a->don, x->on, x->rstd2, BT);
		be->lrpe_forward(a->doh, a->dob, NULL, NULL, B, n, H, hd);
	} else {
		be->gate_norm_split_backward(dp + 3 * sz, a->doh, a->dz, x->p + 3 * sz, x->on,
					     x->rstd2, B, n, H, hd);
	}
	struct tn_attn_shape sh = {B, H, n, layer_dk(m, l), hd};
	if (!rc)
		rc = be->attn_backward(&sh, x->qh, x->kh, x->vh,
				       m->decay + (size_t)l * c->heads + (size_t)m->tp_rank * H,
				       a->doh, a->dqh, a->dkh, a->dvh);
	if (rc)
		return rc;
	be->act_lrpe_backward(dp, gw->theta, a->dqh, x->p, w->theta, a->pos, B, n, H, hd, c->act);
	be->act_lrpe_backward(dp + sz, gw->theta, a->dkh, x->p + sz, w->theta, a->pos, B, n, H, hd,
			      c->act);
	be->lrpe_backward(dp + 2 * sz, NULL, a->dvh, NULL, NULL, NULL, B, n, H, hd);
	for (int s = 0; s < 4; s++)
		be->matmul_backward(a->dxn, gw->qkvu + (size_t)s * E * d, dp + s * sz, x->xn1,
				    w->qkvu + (size_t)s * E * d, BT, d, E, s > 0);
	if ((rc = tp_sum(m, a->dxn, (size_t)BT * d)))
		return rc;
	be->srmsnorm_backward(a->dx, a->dxn, x->xn1, x->rstd1, BT, d);
	return TN_OK;
}

/* The gradients of layer l (or the embedding, l = -1): one range of the
 * table, handed to the grad_ready hook. */
static int bucket_ready(struct tn_model *m, int l)
{
	size_t lo = m->n_floats, hi = 0;
	for (size_t i = 0; i < m->n_param; i++)
		if (m->param[i].layer == l) {
			lo = TN_MIN(lo, m->param[i].offset);
			hi = TN_MAX(hi, m->param[i].offset + m->param[i].numel);
		}
	return m->grad_ready ? m->grad_ready(m->grad_ctx, lo, hi - lo) : TN_OK;
}

/* Activation checkpointing: a checkpointed layer's activations made again
 * from its kept input just before its backward, by the same ops (so the
 * gradients are those without checkpointing, bit for bit) and with the
 * same collectives on every TP rank, all of which recompute the same
 * layers. The work set still holds the last checkpointed layer's. */
static int recompute_layer(struct tn_model *m, int l)
{
	return l + 1 < m->acts->recompute ? layer_forward(m, l, NULL, NULL, NULL) : TN_OK;
}

int tn_model_backward(struct tn_model *m, float scale)
{
	struct tn_acts *a = m->acts;
	const struct tn_config *c = &m->cfg;
	if (!a || !a->backward_ok || !m->grads)
		return tn_fail(TN_EUSAGE, "backward needs a training forward (tn_model_forward with "
			       "targets) and zeroed gradients");
	int BT = a->B * a->n;
	float dscale = a->n_valid ? scale / (float)a->n_valid : 0.0f;
	m->be->crossentropy_backward(a->dxn, m->gemb, a->hf, m->emb, dscale, BT, c->d,
				     c->vocab_size, a->xent);
	m->be->zero(a->dx, (size_t)BT * c->d * sizeof(float));
	m->be->srmsnorm_backward(a->dx, a->dxn, a->hf, a->rstdf, BT, c->d);
	for (int l = c->layers - 1; l >= 0; l--) {
		int rc = recompute_layer(m, l);
		if (!rc)
			rc = channel_backward(m, l);
		if (!rc)
			rc = token_backward(m, l);
		if (!rc)
			rc = bucket_ready(m, l);
		if (rc)
			return rc;
	}
	m->be->embedding_backward(m->gemb, a->dx, a->tok, BT, c->d,
				  (float)tn_config_embed_scale(c), c->pad_id);
	return bucket_ready(m, -1);
}

/* ---- inference: blocked prefill and recurrent decode ---- */

struct tn_infer {
	const struct tn_model *m;
	int B;
	float **s, **t;  /* per layer: current state and the next one (swapped) */
	int64_t *pos;
	/* decode step: logits [B, V] and their argmax [B] (backend memory),
	 * and its graph with the buffers it was captured over */
	float *logits;
	int32_t *next;
	void *graph;
	struct graph_key {
		const void *acts, *state;
		size_t epoch;
	} key;
};

static size_t state_floats(const struct tn_model *m, int B, int l)
{
	int hd = tn_config_head_dim(&m->cfg);
	return (size_t)B * m->heads * layer_dk(m, l) * hd;
}

size_t tn_infer_bytes_per_sequence(const struct tn_model *m)
{
	size_t n = 0;
	for (int l = 0; l < m->cfg.layers; l++)
		n += state_floats(m, 1, l);
	return n * sizeof(float);
}

int tn_infer_new(struct tn_infer **out, const struct tn_model *m, int B)
{
	int L = m->cfg.layers;
	struct tn_infer *st = tn_calloc(1, sizeof(*st));
	*out = NULL;
	if (!st)
		return TN_ENOMEM;
	st->m = m;
	st->B = B;
	st->s = tn_calloc((size_t)L, sizeof(float *));
	st->t = tn_calloc((size_t)L, sizeof(float *));
	st->pos = tn_calloc((size_t)B, sizeof(int64_t));
	int ok = st->s && st->t && st->pos;
	for (int l = 0; ok && l < L; l++) {
		st->s[l] = m->be->alloc(state_floats(m, B, l) * sizeof(float));
		st->t[l] = m->be->alloc(state_floats(m, B, l) * sizeof(float));
		ok = st->s[l] && st->t[l];
	}
	if (!ok) {
		tn_infer_free(st);
		return TN_ENOMEM;
	}
	*out = st;
	return TN_OK;
}

void tn_infer_free(struct tn_infer *st)
{
	if (!st)
		return;
	for (int l = 0; l < st->m->cfg.layers; l++) {
		if (st->s && st->s[l])
			st->m->be->free(st->s[l]);
		if (st->t && st->t[l])
			st->m->be->free(st->t[l]);
	}
	if (st->graph)
		st->m->be->graph_free(st->graph);
	if (st->logits)
		st->m->be->free(st->logits);
	if (st->next)
		st->m->be->free(st->next);
	free(st->s);
	free(st->t);
	free(st->pos);
	free(st);
}

int tn_infer_state(const struct tn_infer *st, int layer, float *out)
{
	st->m->be->download(out, st->s[layer], state_floats(st->m, st->B, layer) * sizeof(float));
	return TN_OK;
}

int64_t tn_infer_pos(const struct tn_infer *st, int b) { return st->pos[b]; }

int tn_infer_copy(struct tn_infer *dst, int db, const struct tn_infer *src, int sb)
{
	const struct tn_model *m = src->m;
	for (int l = 0; l < m->cfg.layers; l++) {
		size_t n = state_floats(m, 1, l);
		m->be->copy(dst->s[l] + (size_t)db * n, src->s[l] + (size_t)sb * n, n * sizeof(float));
	}
	dst->pos[db] = src->pos[sb];
	return TN_OK;
}

int tn_infer_reset(struct tn_infer *st, int b)
{
	const struct tn_model *m = st->m;
	for (int l = 0; l < m->cfg.layers; l++) {
		size_t n = state_floats(m, 1, l);
		m->be->zero(st->s[l] + (size_t)b * n, n * sizeof(float));
	}
	st->pos[b] = 0;
	return TN_OK;
}

/* Tokens and positions of n rows per sequence into the activations. */
static int step_inputs(struct tn_model *m, struct tn_infer *st, const int32_t *tok, int n)
{
	int B = st->B, rc = check_tokens(m, tok, (size_t)B * n, "input position");
	if (!rc)
		rc = acts_ensure(m, B, n, ACTS_INFER);
	if (rc)
		return rc;
	int32_t *pos = tn_malloc((size_t)B * n * sizeof(int32_t));
	if (!pos)
		return TN_ENOMEM;
	for (int b = 0; b < B; b++)
		for (int t = 0; t < n; t++)
			pos[(size_t)b * n + t] = (int32_t)(st->pos[b] + t);
	m->be->upload(m->acts->tok, tok, (size_t)B * n * sizeof(int32_t));
	m->be->upload(m->acts->pos, pos, (size_t)B * n * sizeof(int32_t));
	free(pos);
	return TN_OK;
}

/* Rows of n tokens per sequence continuing each sequence's state; the
 * decode op (n = 1) updates the state in place, blocks go to the other
 * buffer and swap. Advances the position counters. */
static int infer_step(struct tn_model *m, struct tn_infer *st, const int32_t *tok, int n)
{
	int rc = step_inputs(m, st, tok, n);
	if (rc || (rc = stack_forward(m, st->s, n == 1 ? st->s : st->t)))
		return rc;
	if (n > 1) {
		float **tmp = st->s;
		st->s = st->t;
		st->t = tmp;
	}
	for (int b = 0; b < st->B; b++)
		st->pos[b] += n;
	return TN_OK;
}

int tn_prefill_block(int B) { return TN_MAX(TN_PREFILL_BLOCK, TN_PREFILL_TOKENS / TN_MAX(B, 1)); }

int tn_model_prefill(struct tn_model *m, struct tn_infer *st, const int32_t *tok, int n,
		     float *logits)
{
	int B = st->B, V = m->cfg.vocab_size, rc = TN_OK, block = TN_MIN(tn_prefill_block(B), n);
	int32_t *blk = tn_malloc((size_t)B * TN_MAX(block, 1) * sizeof(int32_t));
	if (!blk)
		return TN_ENOMEM;
	for (int t0 = 0; t0 < n && !rc; t0 += block) {
		int len = TN_MIN(block, n - t0);
		for (int b = 0; b < B; b++)
			memcpy(blk + (size_t)b * len, tok + (size_t)b * n + t0, len * sizeof(int32_t));
		rc = infer_step(m, st, blk, len);
		for (int b = 0; b < B && !rc && logits; b++)
			rc = logits_rows(m, b * len, len, logits + ((size_t)b * n + t0) * V);
	}
	free(blk);
	return rc;
}

/* Decoding through the fused ops of the backend (ops_decode.h), where it
 * has them and no tensor parallelism splits the layer: five ops a layer,
 * each the sequence of layer_forward's ops it names, so the arithmetic is
 * that of layer_forward with n = 1. Its own use of the layer activations:
 * p holds the rows [B, 4E] of q, k, v, u side by side (one product over
 * the whole qkvu weight), oh the mixer's output (for one position its
 * head-major layout is the rows [B, E]), a the residual stream after the
 * token mixer, hm the SGLU product; all fp32 (no operands are marked for
 * inference). */
static int fused_decode(const struct tn_model *m)
{
	return m->be->decode_matmul && m->be->mixer_decode && !m->tp;
}

static int layer_decode(struct tn_model *m, int l, float *state, float *out)
{
	const struct tn_backend *be = m->be;
	const struct tn_config *c = &m->cfg;
	struct layer_acts *x = &m->acts->l[l];
	const struct tn_layer_w *w = &m->w[l];
	int B = m->acts->B, d = c->d, E = m->hidden, g = m->glu;
	struct tn_dmm qkvu = {.inp = x->x, .w = w->qkvu, .norm = 1, .BT = B, .C = d, .OC = 4 * E};
	struct tn_dmm mix = {.inp = x->oh, .w = w->out, .gate = x->p + 3 * E, .res = x->x,
			     .norm = 1, .ldg = 4 * E, .BT = B, .C = E, .OC = d};
	struct tn_dmm sglu = {.inp = x->a, .w = w->l1, .w2 = w->l2, .norm = 1, .BT = B, .C = d,
			      .OC = g};
	struct tn_dmm down = {.inp = x->hm, .w = w->l3, .res = x->a, .BT = B, .C = g, .OC = d};
	int rc = be->decode_matmul(x->p, &qkvu);
	if (!rc)
		rc = be->mixer_decode(x->oh, x->p, m->acts->pos, w->theta,
				      m->decay + (size_t)l * c->heads, state, B, m->heads,
				      tn_config_head_dim(c), c->act);
	if (!rc)
		rc = be->decode_matmul(x->a, &mix);
	if (!rc)
		rc = be->decode_matmul(x->hm, &sglu);
	return rc ? rc : be->decode_matmul(out, &down);
}

/* The layers of one decode step over the states st->s, then, when logits
 * is non-NULL, the final norm and the tied head into it, and with next
 * the argmax of each row of logits (the fused head computes it in the same
 * pass over the embedding). */
static int decode_layers(struct tn_model *m, struct tn_infer *st, float *logits, int32_t *next)
{
	const struct tn_config *c = &m->cfg;
	struct tn_acts *a = m->acts;
	int B = st->B, V = c->vocab_size, rc;
	if (!fused_decode(m)) {
		if ((rc = stack_forward(m, st->s, st->s)) || !logits)
			return rc;
		m->be->matmul_forward(logits, a->hf, m->emb, B, c->d, V, 0);
		if (next)
			m->be->argmax_rows(next, logits, B, V);
		return TN_OK;
	}
	m->be->embedding_forward(a->l[0].x, a->tok, m->emb, B, c->d,
				 (float)tn_config_embed_scale(c));
	for (int l = 0; l < c->layers; l++)
		if ((rc = layer_decode(m, l, st->s[l], l + 1 < c->layers ? a->l[l + 1].x : a->xL)))
			return rc;
	struct tn_dmm head = {.inp = a->xL, .w = m->emb, .amax = next, .norm = 1, .BT = B,
			      .C = c->d, .OC = V};
	return logits ? m->be->decode_matmul(logits, &head) : TN_OK;
}

/* The decode step as a replayed graph. A graph holds the addresses it was
 * captured over (activations, states, the backend's staging buffers), so
 * it is captured again when they change, and only on the second step over
 * the same buffers: the first runs directly, so whatever an op makes on
 * first use exists before the capture. */
static int decode_graph(struct tn_model *m, struct tn_infer *st)
{
	const struct tn_backend *be = m->be;
	struct graph_key k = {m->acts->mem, st->s[0], be->graph_epoch()};
	if (k.acts != st->key.acts || k.state != st->key.state || k.epoch != st->key.epoch) {
		if (st->graph)
			be->graph_free(st->graph);
		st->graph = NULL;
		int rc = decode_layers(m, st, st->logits, st->next);
		st->key = (struct graph_key){m->acts->mem, st->s[0], be->graph_epoch()};
		return rc;
	}
	if (!st->graph) {
		int rc = be->graph_begin();
		if (rc)
			return rc;
		rc = decode_layers(m, st, st->logits, st->next);
		int end = be->graph_end(&st->graph);
		if (rc || end)
			return rc ? rc : end;
	}
	return be->graph_launch(st->graph);
}

/* One decode step; logits (host, [B, V]) and/or next (host, [B]) if wanted. */
static int decode(struct tn_model *m, struct tn_infer *st, const int32_t *tok, float *logits,
		  int32_t *next)
{
	const struct tn_backend *be = m->be;
	const char *env = getenv("TN_GRAPHS"); /* "0": no graphs, to measure what they save */
	int graphs = be->graph_begin && !m->tp && !(env && !strcmp(env, "0")); /* no collectives in graphs */
	int B = st->B, V = m->cfg.vocab_size, rc = step_inputs(m, st, tok, 1);
	if (rc)
		return rc;
	if (!st->logits && (logits || next || graphs)) {
		st->logits = be->alloc((size_t)B * V * sizeof(float));
		st->next = st->logits ? be->alloc((size_t)B * sizeof(int32_t)) : NULL;
		if (!st->next)
			return TN_ENOMEM;
	}
	if (graphs)
		rc = decode_graph(m, st);
	else if (logits || next)
		rc = decode_layers(m, st, st->logits, st->next);
	else
		rc = decode_layers(m, st, NULL, NULL);
	if (rc)
		return rc;
	for (int b = 0; b < B; b++)
		st->pos[b]++;
	if (logits)
		be->download(logits, st->logits, (size_t)B * V * sizeof(float));
	if (next)
		be->download(next, st->next, (size_t)B * sizeof(int32_t));
	return be->status();
}

int tn_model_decode(struct tn_model *m, struct tn_infer *st, const int32_t *tok, float *logits)
{
	return decode(m, st, tok, logits, NULL);
}

int tn_model_decode_greedy(struct tn_model *m, struct tn_infer *st, const int32_t *tok,
			   int32_t *next)
{
	return decode(m, st, tok, NULL, next);
}
