/* config.h - the model hyperparameters: read from and written to a Hugging
 * Face config.json with the released TransNormer field names, taken from a
 * named preset (the released sizes of MODEL.md 3.1 and small ones), and
 * changed one key at a time (--set key=value) with the same names.
 * Decision: one struct, checked by tn_config_check() after every change, is
 * the only description of a model's shape that the rest of tn sees. */
#ifndef TN_CONFIG_H
#define TN_CONFIG_H

#include <stdint.h>

#define TN_MAX_LAYERS 256

enum tn_act { TN_ACT_SILU, TN_ACT_RELU, TN_ACT_NONE };

struct tn_config {
	int vocab_size;     /* V; 0 in the small presets = take it from the data */
	int d;              /* decoder_embed_dim */
	int hidden_dim;     /* E (must equal d, MODEL.md 1.1) */
	int heads;          /* decoder_attention_heads */
	int layers;         /* decoder_layers (>= 2: the decay divides by L - 1) */
	int glu_dim;        /* g; -1 in a file means d */
	uint8_t lrpe[TN_MAX_LAYERS]; /* linear_use_lrpe_list */
	enum tn_act act;    /* linear_act_fun */
	char act_name[16];  /* as written in the file ("swish") */
	int no_scale_embedding;
	int pad_id, bos_id, eos_id;
	double init_std;
};

/* Names of the presets, NULL-terminated (for --help). */
extern const char *const tn_config_presets[];
int tn_config_preset(struct tn_config *c, const char *name);
int tn_config_load(struct tn_config *c, const char *path);
/* config.json (atomic); dtype_name goes to "torch_dtype". */
int tn_config_save(const struct tn_config *c, const char *path, const char *dtype_name);
/* "key=value" with a config.json key; lists as "1,0,0". */
int tn_config_set(struct tn_config *c, const char *assignment);
/* Write a JSON object (indented, key order kept, final newline) atomically;
 * shared by every JSON file of a checkpoint. */
struct json_t;
int tn_json_save(const char *path, struct json_t *o);
/* Sizes consistent and supported (else TN_EDATA saying which). */
int tn_config_check(const struct tn_config *c, const char *where);

int tn_config_head_dim(const struct tn_config *c);
double tn_config_embed_scale(const struct tn_config *c);
/* s[l,h] of MODEL.md 1.3 step 5 (fp32-rounded as the official code). */
float tn_config_decay(const struct tn_config *c, int layer, int head);
/* Parameter count with the tied head counted once. */
uint64_t tn_config_params(const struct tn_config *c);

#endif
