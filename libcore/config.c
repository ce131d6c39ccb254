/* config.c - TransNormer config.json, presets and --set.
 * Field names, defaults and the decay formula follow the official
 * configuration_transnormer.py and modeling_transnormer.py (MODEL.md 1, 3);
 * keys tn does not use are ignored on read. */
#include "config.h"
#include "io.h"
#include "util.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct preset {
	const char *name;
	int V, d, H, L, g, no_scale;
};

/* Released sizes (MODEL.md 3.1) and small ones for tests and demos; the
 * small ones leave the vocabulary to the training data. */
static const struct preset presets[] = {
	{"tnl-385m", 64000, 1024, 8, 24, 2816, 0},
	{"tnl-1b", 64000, 2048, 16, 16, 5632, 0},
	{"tnl-7b", 64000, 4096, 32, 30, 11008, 1},
	{"tnl2-1b", 64000, 2048, 16, 16, 5632, 1},
	{"tnl2-3b", 64000, 2560, 20, 32, 6912, 1},
	{"tiny", 0, 64, 2, 2, 128, 0},
	{"small", 0, 128, 4, 4, 352, 0},
	{"medium", 0, 384, 6, 6, 1024, 0},
};

const char *const tn_config_presets[] = {"tnl-385m", "tnl-1b", "tnl-7b", "tnl2-1b", "tnl2-3b",
					 "tiny", "small", "medium", NULL};

static void defaults(struct tn_config *c)
{
	memset(c, 0, sizeof(*c));
	c->glu_dim = -1;
	c->hidden_dim = -1;
	c->lrpe[0] = 1;
	c->act = TN_ACT_SILU;
	strcpy(c->act_name, "swish");
	c->pad_id = 0;
	c->bos_id = 1;
	c->eos_id = 2;
	c->init_std = 0.02;
}

/* -1 (meaning "d") resolved, so the rest of tn sees real sizes. */
static void resolve(struct tn_config *c)
{
	if (c->glu_dim == -1)
		c->glu_dim = c->d;
	if (c->hidden_dim == -1)
		c->hidden_dim = c->d;
}

int tn_config_preset(struct tn_config *c, const char *name)
{
	for (size_t i = 0; i < TN_ARRAY_LEN(presets); i++) {
		const struct preset *p = &presets[i];
		if (strcmp(p->name, name))
			continue;
		defaults(c);
		c->vocab_size = p->V;
		c->d = p->d;
		c->heads = p->H;
		c->layers = p->L;
		c->glu_dim = p->g;
		c->no_scale_embedding = p->no_scale;
		resolve(c);
		return TN_OK;
	}
	return tn_fail(TN_EUSAGE, "unknown preset '%s'", name);
}

static int set_act(struct tn_config *c, const char *name, const char *where)
{
	static const struct {
		const char *name;
		enum tn_act act;
	} acts[] = {{"swish", TN_ACT_SILU}, {"silu", TN_ACT_SILU}, {"relu", TN_ACT_RELU},
		    {"none", TN_ACT_NONE}, {"identity", TN_ACT_NONE}};
	for (size_t i = 0; i < TN_ARRAY_LEN(acts); i++)
		if (!strcmp(acts[i].name, name) && strlen(name) < sizeof(c->act_name)) {
			c->act = acts[i].act;
			strcpy(c->act_name, name);
			return TN_OK;
		}
	return tn_fail(TN_EDATA, "%s: linear_act_fun '%s' is not supported (swish, silu, relu, none)",
		       where, name);
}

static int set_lrpe_list(struct tn_config *c, json_t *v, const char *where)
{
	if (!json_is_array(v) || json_array_size(v) > TN_MAX_LAYERS)
		return tn_fail(TN_EDATA, "%s: linear_use_lrpe_list: not a list of at most %d flags",
			       where, TN_MAX_LAYERS);
	memset(c->lrpe, 0, sizeof(c->lrpe));
	for (size_t i = 0; i < json_array_size(v); i++) {
		json_t *x = json_array_get(v, i);
		if (!json_is_integer(x) && !json_is_boolean(x))
			return tn_fail(TN_EDATA, "%s: linear_use_lrpe_list[%zu]: not 0 or 1", where, i);
		c->lrpe[i] = json_is_true(x) || (json_is_integer(x) && json_integer_value(x));
	}
	return TN_OK;
}

static int get_int(json_t *o, const char *key, int *dst, int required, const char *where)
{
	json_t *v = json_object_get(o, key);
	if (!v)
		return required ? tn_fail(TN_EDATA, "%s: key '%s' is missing", where, key) : TN_OK;
	if (!json_is_integer(v) || json_integer_value(v) < -1 || json_integer_value(v) > INT32_MAX)
		return tn_fail(TN_EDATA, "%s: key '%s' is not an integer >= -1", where, key);
	*dst = (int)json_integer_value(v);
	return TN_OK;
}

/* One config.json key into c; unknown keys are not an error. */
static int set_key(struct tn_config *c, const char *key, json_t *v, const char *where)
{
	static const struct {
		const char *key;
		size_t off;
	} ints[] = {
		{"vocab_size", offsetof(struct tn_config, vocab_size)},
		{"decoder_embed_dim", offsetof(struct tn_config, d)},
		{"hidden_dim", offsetof(struct tn_config, hidden_dim)},
		{"decoder_attention_heads", offsetof(struct tn_config, heads)},
		{"decoder_layers", offsetof(struct tn_config, layers)},
		{"glu_dim", offsetof(struct tn_config, glu_dim)},
		{"pad_token_id", offsetof(struct tn_config, pad_id)},
		{"bos_token_id", offsetof(struct tn_config, bos_id)},
		{"eos_token_id", offsetof(struct tn_config, eos_id)},
	};
	for (size_t i = 0; i < TN_ARRAY_LEN(ints); i++)
		if (!strcmp(key, ints[i].key)) {
			json_t *o = json_pack("{s:O}", key, v);
			int rc = get_int(o, key, (int *)((char *)c + ints[i].off), 1, where);
			json_decref(o);
			return rc;
		}
	if (!strcmp(key, "linear_use_lrpe_list"))
		return set_lrpe_list(c, v, where);
	if (!strcmp(key, "linear_act_fun"))
		return json_is_string(v) ? set_act(c, json_string_value(v), where)
					 : tn_fail(TN_EDATA, "%s: linear_act_fun is not a string", where);
	if (!strcmp(key, "no_scale_embedding")) {
		if (!json_is_boolean(v))
			return tn_fail(TN_EDATA, "%s: no_scale_embedding is not true/false", where);
		c->no_scale_embedding = json_is_true(v);
	} else if (!strcmp(key, "init_std")) {
		if (!json_is_number(v))
			return tn_fail(TN_EDATA, "%s: init_std is not a number", where);
		c->init_std = json_number_value(v);
	} else if (!strcmp(key, "norm_type")) {
		if (!json_is_string(v) || strcmp(json_string_value(v), "simplermsnorm"))
			return tn_fail(TN_EDATA, "%s: norm_type must be \"simplermsnorm\"", where);
	} else if (!strcmp(key, "bias")) {
		if (json_is_true(v))
			return tn_fail(TN_EDATA, "%s: bias = true is not supported", where);
	}
	return TN_OK;
}

int tn_config_load(struct tn_config *c, const char *path)
{
	defaults(c);
	json_error_t err;
	json_t *o = json_load_file(path, 0, &err);
	if (!o)
		return tn_fail(TN_EDATA, "%s: line %d: %s", path, err.line, err.text);
	int rc = json_is_object(o) ? TN_OK : tn_fail(TN_EDATA, "%s: not a JSON object", path);
	static const char *const required[] = {"vocab_size", "decoder_embed_dim",
					       "decoder_attention_heads", "decoder_layers"};
	for (size_t i = 0; !rc && i < TN_ARRAY_LEN(required); i++)
		if (!json_object_get(o, required[i]))
			rc = tn_fail(TN_EDATA, "%s: key '%s' is missing", path, required[i]);
	const char *key;
	json_t *v;
	json_object_foreach(o, key, v) {
		if (!rc)
			rc = set_key(c, key, v, path);
	}
	json_decref(o);
	resolve(c);
	return rc ? rc : tn_config_check(c, path);
}

int tn_config_set(struct tn_config *c, const char *assignment)
{
	const char *eq = strchr(assignment, '=');
	if (!eq || eq == assignment)
		return tn_fail(TN_EUSAGE, "--set '%s': expected key=value", assignment);
	char key[66];
	size_t kl = (size_t)(eq - assignment);
	if (kl > 63)
		return tn_fail(TN_EUSAGE, "--set '%s': key too long", assignment);
	key[0] = ',';
	memcpy(key + 1, assignment, kl);
	memcpy(key + 1 + kl, ",", 2); /* ",key," to look up in the list below */
	if (!strstr(",vocab_size,decoder_embed_dim,hidden_dim,decoder_attention_heads,"
		    "decoder_layers,glu_dim,pad_token_id,bos_token_id,eos_token_id,"
		    "linear_use_lrpe_list,linear_act_fun,no_scale_embedding,init_std,", key))
		return tn_fail(TN_EUSAGE, "--set: unknown key '%.*s'", (int)kl, assignment);
	key[kl + 1] = 0;
	const char *name = key + 1, *val = eq + 1;
	json_t *v;
	if (!strcmp(name, "linear_use_lrpe_list")) {
		v = json_array();
		for (const char *p = val; *p; p++)
			if (*p == '0' || *p == '1')
				json_array_append_new(v, json_integer(*p - '0'));
	} else {
		json_error_t err;
		v = json_loads(val, JSON_DECODE_ANY, &err);
		if (!v)
			v = json_string(val);
	}
	int rc = set_key(c, name, v, "--set");
	json_decref(v);
	resolve(c);
	return rc;
}

int tn_config_check(const struct tn_config *c, const char *where)
{
	if (c->d <= 0 || c->heads <= 0 || c->d % c->heads)
		return tn_fail(TN_EDATA, "%s: decoder_embed_dim %d is not a positive multiple of "
			       "decoder_attention_heads %d", where, c->d, c->heads);
	if (c->hidden_dim != c->d)
		return tn_fail(TN_EDATA, "%s: hidden_dim %d differs from decoder_embed_dim %d "
			       "(unsupported, MODEL.md 1.1)", where, c->hidden_dim, c->d);
	if (c->layers < 2 || c->layers > TN_MAX_LAYERS)
		return tn_fail(TN_EDATA, "%s: decoder_layers %d: must be in [2, %d] (the decay "
			       "formula divides by L - 1)", where, c->layers, TN_MAX_LAYERS);
	if (c->glu_dim <= 0)
		return tn_fail(TN_EDATA, "%s: glu_dim %d must be positive (or -1 for d)", where,
			       c->glu_dim);
	if (c->vocab_size < 0)
		return tn_fail(TN_EDATA, "%s: vocab_size %d is negative", where, c->vocab_size);
	if (c->vocab_size && (c->pad_id >= c->vocab_size || c->pad_id < 0))
		return tn_fail(TN_EDATA, "%s: pad_token_id %d is outside the vocabulary of %d",
			       where, c->pad_id, c->vocab_size);
	for (int l = c->layers; l < TN_MAX_LAYERS; l++)
		if (c->lrpe[l])
			return tn_fail(TN_EDATA, "%s: linear_use_lrpe_list has a flag for layer %d of %d",
				       where, l, c->layers);
	return TN_OK;
}

int tn_config_head_dim(const struct tn_config *c) { return c->d / c->heads; }

double tn_config_embed_scale(const struct tn_config *c)
{
	return c->no_scale_embedding ? 1.0 : sqrt((double)c->d);
}

/* ALiBi slopes (MODEL.md 1.3 step 5), computed like the official
 * get_slopes: for a power of two n, start = 2^(-8/n), slope_i = start^(i+1). */
static double slope_pow2(int n, int i)
{
	double start = pow(2.0, -pow(2.0, -(log2((double)n) - 3)));
	return pow(start, i + 1);
}

static double slope(int H, int h)
{
	int p = 1;
	while (p * 2 <= H)
		p *= 2;
	if (p == H || h < p)
		return slope_pow2(p, h);
	return slope_pow2(2 * p, 2 * (h - p));
}

float tn_config_decay(const struct tn_config *c, int layer, int head)
{
	/* fp32 slope times the fp32-rounded python-float layer factor, in fp32 */
	float s = (float)slope(c->heads, head);
	float f = (float)(1.0 - (double)layer / (double)(c->layers - 1) + 1e-5);
	return s * f;
}

uint64_t tn_config_params(const struct tn_config *c)
{
	uint64_t d = (uint64_t)c->d, E = (uint64_t)c->hidden_dim, g = (uint64_t)c->glu_dim;
	uint64_t n = (uint64_t)c->vocab_size * d;
	for (int l = 0; l < c->layers; l++)
		n += 4 * d * E + E * d + 3 * d * g + (c->lrpe[l] ? E : 0);
	return n;
}

static json_t *config_json(const struct tn_config *c, const char *dtype_name)
{
	json_t *lr = json_array();
	for (int l = 0; l < c->layers; l++)
		json_array_append_new(lr, json_integer(c->lrpe[l]));
	return json_pack(
		"{s:[s], s:{s:s, s:s}, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:o, s:s, s:b, s:s, s:b,"
		" s:f, s:i, s:i, s:i, s:b, s:b, s:s}",
		"architectures", "TransnormerForCausalLM", "auto_map", "AutoConfig",
		"configuration_transnormer.TransnormerConfig", "AutoModelForCausalLM",
		"modeling_transnormer.TransnormerForCausalLM", "model_type", "transnormer",
		"vocab_size", c->vocab_size, "decoder_embed_dim", c->d, "hidden_dim", c->hidden_dim,
		"decoder_attention_heads", c->heads, "decoder_layers", c->layers, "glu_dim", c->glu_dim,
		"linear_use_lrpe_list", lr, "linear_act_fun", c->act_name, "no_scale_embedding",
		c->no_scale_embedding, "norm_type", "simplermsnorm", "bias", 0, "init_std", c->init_std,
		"pad_token_id", c->pad_id, "bos_token_id", c->bos_id, "eos_token_id", c->eos_id,
		"add_bos_token", 0, "tie_word_embeddings", 1, "torch_dtype", dtype_name);
}

int tn_json_save(const char *path, json_t *o)
{
	char *s = o ? json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
	json_decref(o);
	if (!s)
		return tn_fail(TN_ENOMEM, "%s: out of memory", path);
	size_t n = strlen(s);
	s[n] = '\n';
	int rc = tn_write_file_atomic(path, s, n + 1);
	free(s);
	return rc;
}

int tn_config_save(const struct tn_config *c, const char *path, const char *dtype_name)
{
	return tn_json_save(path, config_json(c, dtype_name));
}
