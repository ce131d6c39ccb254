/* model.h - THE TransNormerLLM definition (MODEL.md 1): parameters, the
 * parallel (training) forward and backward, and blocked prefill + recurrent
 * decode with per-sequence state and position counter.
 * Decision (after llm.c): a table lists every parameter once with its HF
 * name and shape; parameters and gradients are each one flat allocation
 * carved in table order, so the loader, the saver and the optimizer all
 * walk the same table and whole-state operations are one loop. All memory
 * and every op go through a backend (backend.h). Tokens are int32. */
#ifndef TN_MODEL_H
#define TN_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "config.h"
#include "tensor.h"

enum tn_param_role { TN_P_EMB, TN_P_QKVU, TN_P_THETA, TN_P_OUT, TN_P_L1, TN_P_L2, TN_P_L3 };

struct tn_param {
	char name[64];      /* HF state-dict key */
	int ndim;
	int64_t shape[3];   /* as stored in the HF file */
	size_t offset, numel; /* in floats, inside the flat parameter buffer */
	int layer;          /* -1 for the embedding */
	enum tn_param_role role;
	int decay;          /* 1: a matrix that weight decay applies to */
};

struct tn_layer_w {
	float *qkvu, *theta, *out, *l1, *l2, *l3; /* theta is NULL without LRPE */
};

struct tn_acts;

struct tn_model {
	struct tn_config cfg;
	const struct tn_backend *be;
	struct tn_param *param;
	size_t n_param, n_floats;
	float *params, *grads;     /* grads is NULL until tn_model_zero_grad */
	float *emb, *gemb;
	struct tn_layer_w *w, *g;  /* [layers] */
	float *decay;              /* s[l, h], [layers * heads] */
	struct tn_acts *acts;
};

/* A model of this config with zero weights (no gradients yet). */
int tn_model_new(struct tn_model **m, const struct tn_config *cfg, const struct tn_backend *be);
void tn_model_free(struct tn_model *m);
/* The HF initialisation (MODEL.md 3.2): N(0, init_std^2) matrices and
 * embedding, padding row zero, LRPE theta from its formula. */
int tn_model_init(struct tn_model *m, uint64_t seed);
/* Weights from a safetensors file with HF names; every tensor of the table
 * must be there with its shape (theta may be absent: its formula is used),
 * and no other tensor but lm_head.weight (the tied head, ignored). */
int tn_model_load_weights(struct tn_model *m, const char *path);
/* config.json + model.safetensors (or the shards named by
 * model.safetensors.index.json) of an HF-layout directory. */
int tn_model_load(struct tn_model **m, const char *dir, const struct tn_backend *be);
int tn_model_save_weights(const struct tn_model *m, const char *path, enum tn_dtype dtype);

/* Parallel form over B sequences of n tokens (tok[b * n + t], positions
 * 0..n-1). With targets (tgt < 0 = ignored), *loss is the mean
 * cross-entropy over the targeted positions and the step can be followed
 * by tn_model_backward; without, only the hidden states are computed. */
int tn_model_forward(struct tn_model *m, const int32_t *tok, const int32_t *tgt, int B, int n,
		     double *loss);
/* Per-position losses of the last forward with targets, [B * n] (host). */
int tn_model_losses(const struct tn_model *m, float *out);
/* Logits of every position of the last forward, [B * n, V] (host). */
int tn_model_logits(const struct tn_model *m, float *out);
/* Allocate (first call) and zero the gradients. */
int tn_model_zero_grad(struct tn_model *m);
/* grads += d(scale * mean loss)/d params for the last forward. */
int tn_model_backward(struct tn_model *m, float scale);

/* Inference state of B sequences: per layer S [B, H, dk, dv] (fp32, the
 * inclusive state of MODEL.md 5.6) and one position counter per sequence. */
struct tn_infer;
int tn_infer_new(struct tn_infer **st, const struct tn_model *m, int B);
void tn_infer_free(struct tn_infer *st);
/* Host copy of layer l's state and the positions. */
int tn_infer_state(const struct tn_infer *st, int layer, float *out);
/* Bytes of inference state per sequence, all layers (fixed: no context term). */
size_t tn_infer_bytes_per_sequence(const struct tn_model *m);
int64_t tn_infer_pos(const struct tn_infer *st, int b);
/* Sequence sb of src (state and position) into slot db of dst, both of the
 * same model: a shared prefix is computed once and continued many ways. */
int tn_infer_copy(struct tn_infer *dst, int db, const struct tn_infer *src, int sb);
/* Sequence b back to the start: zero state, position 0 (a slot for a new
 * sequence in a batch). */
int tn_infer_reset(struct tn_infer *st, int b);

#define TN_PREFILL_BLOCK 256
/* n more tokens of each sequence (tok[b * n + t]), in blocks of
 * TN_PREFILL_BLOCK, continuing from the state; logits [B, n, V] if wanted. */
int tn_model_prefill(struct tn_model *m, struct tn_infer *st, const int32_t *tok, int n,
		     float *logits);
/* One token per sequence by the recurrence; logits [B, V] if wanted. On a
 * backend with graphs the step is captured once per state and replayed
 * (unless the environment has TN_GRAPHS=0). */
int tn_model_decode(struct tn_model *m, struct tn_infer *st, const int32_t *tok, float *logits);
/* The same step, next[b] = the argmax of sequence b's logits (lowest id on
 * ties), found on the backend: only B ids come back to the host. */
int tn_model_decode_greedy(struct tn_model *m, struct tn_infer *st, const int32_t *tok,
			   int32_t *next);

#endif
