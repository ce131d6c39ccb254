/* model.h - THE TransNormerLLM definition (MODEL.md 1): parameters, the
 * parallel (training) forward and backward, and blocked prefill + recurrent
 * decode with per-sequence state and position counter.
 * Decision (after llm.c): a table lists every parameter once with its HF
 * name and shape; parameters and gradients are each one flat allocation
 * carved in table order, so the loader, the saver and the optimizer all
 * walk the same table and whole-state operations are one loop. All memory
 * and every op go through a backend (backend.h). Tokens are int32.
 * Tensor parallelism (Megatron style): a model split over the ranks of a
 * TP group holds only its heads' columns of qkvu, l1, l2 (split by rows of
 * the [out, in] weights) and rows of out, l3 (split by columns), and the
 * whole embedding; the table then lists this rank's parts, each with the
 * whole tensor's shape and offset, so a whole model is sliced into parts
 * and the parts gathered back into a whole by one walk of the table. */
#ifndef TN_MODEL_H
#define TN_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "collective.h"
#include "config.h"
#include "tensor.h"

enum tn_param_role { TN_P_EMB, TN_P_QKVU, TN_P_THETA, TN_P_OUT, TN_P_L1, TN_P_L2, TN_P_L3 };
/* How a tensor is split over TP ranks: not (replicated), by rows (its first
 * dimension, within each of `blocks` equal row blocks: q, k, v, u) or by
 * columns (its last dimension). */
enum tn_tp_split { TN_TP_WHOLE, TN_TP_ROWS, TN_TP_COLS };

struct tn_param {
	char name[64];      /* HF state-dict key */
	int ndim;
	int64_t shape[3];   /* as stored in the HF file; this rank's part with TP */
	size_t offset, numel; /* in floats, inside the flat parameter buffer */
	int64_t whole[3];   /* the whole tensor's shape (= shape without TP) */
	size_t whole_offset; /* inside the flat buffer of the whole model */
	enum tn_tp_split split;
	int blocks;
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
	size_t n_alloc;            /* floats in params and grads: n_floats, then zeros */
	float *emb, *gemb;
	struct tn_layer_w *w, *g;  /* [layers] */
	float *decay;              /* s[l, h], [layers * heads] (all heads) */
	struct tn_acts *acts;
	/* Tensor parallelism: this is part tp_rank of tp_size, with heads
	 * [tp_rank * heads, (tp_rank + 1) * heads); tp is NULL when whole. */
	struct tn_comm *tp;
	int tp_rank, tp_size;
	int heads, hidden, glu;    /* this rank's share of H, E and g */
	size_t whole_floats;       /* parameters of the whole model */
	float *ones;               /* [hidden] ones: row sums and broadcasts (TP) */
	/* If set, tn_model_backward calls this as soon as a bucket of gradients
	 * is final: grads[offset, offset + n), each layer's from the last layer
	 * down, then the embedding's (gradient reduction overlapped with the
	 * rest of the backward). A failure stops the backward. */
	int (*grad_ready)(void *ctx, size_t offset, size_t n);
	void *grad_ctx;
	int recompute;             /* layers checkpointed: see tn_model_set_recompute */
};

/* A model of this config with zero weights (no gradients yet). */
int tn_model_new(struct tn_model **m, const struct tn_config *cfg, const struct tn_backend *be);
void tn_model_free(struct tn_model *m);
/* Room for `floats` in params and grads, the floats past n_floats zero:
 * collectives then run in place on shards of them (ZeRO). Moves both
 * buffers (and the pointers into them) when they grow. */
int tn_model_pad_to(struct tn_model *m, size_t floats);
/* Part tp_rank of whole (weights copied) for the ranks of the TP group tp
 * (several ranks): heads and the SGLU width must divide among them. */
int tn_model_tp_split(struct tn_model **part, const struct tn_model *whole,
		      const struct tn_backend *be, struct tn_comm *tp);
/* This rank's part (backend memory, laid out by m's table) of a flat host
 * buffer laid out like the whole model's table: weights or moments. */
int tn_model_tp_slice(const struct tn_model *m, const float *whole, float *part);
/* The inverse, collective over m's TP group: every part into the whole
 * (host, whole_floats), or only taking part where whole is NULL; a model
 * without TP just downloads. */
int tn_model_tp_gather(const struct tn_model *m, const float *part, float *whole);
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
 * by tn_model_backward; without, only the hidden states are computed, in
 * the activations of one layer shared by all (as for prefill). */
int tn_model_forward(struct tn_model *m, const int32_t *tok, const int32_t *tgt, int B, int n,
		     double *loss);
/* The same losses with no backward to follow (evaluation): the activations
 * of inference plus the logits' gradient of 512 rows at a time, where a
 * training forward keeps every layer's and every row's (vocabulary x 2 or
 * 4 bytes a row). After a training forward on the same model it reuses
 * that allocation. */
int tn_model_score(struct tn_model *m, const int32_t *tok, const int32_t *tgt, int B, int n,
		   double *loss);
/* Activation checkpointing: a forward with targets keeps only the input
 * of layers 0..layers-1 (negative or more than the model has: all; 0:
 * none, the default); the backward makes each one's other activations
 * again, into one work set they share, before its gradients. Activation
 * memory falls from a whole layer's per layer to one row of d floats per
 * layer plus one layer's; the gradients stay the same bit for bit; the
 * cost is a forward of every checkpointed layer but the last. */
void tn_model_set_recompute(struct tn_model *m, int layers);
/* The option's value: "all" (-1), "none" (0) or a number of layers. */
int tn_model_parse_recompute(const char *s, int *layers);
/* Bytes of activations, per-position results and backward scratch that a
 * forward with targets of B x n rows allocates (backend memory). */
int tn_model_activation_bytes(const struct tn_model *m, int B, int n, size_t *bytes);
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

/* Prefill runs blocks of tn_prefill_block(B) tokens of each sequence:
 * about TN_PREFILL_TOKENS rows over the batch, so that one long prompt
 * makes products as large as training's, but at least TN_PREFILL_BLOCK a
 * sequence. Inference keeps one layer's activations, shared by all layers
 * (about 0.2 MB a row for the 1B preset: ~1.7 GB for a block of 8192). */
#define TN_PREFILL_BLOCK 256
#define TN_PREFILL_TOKENS 8192
int tn_prefill_block(int B);
/* n more tokens of each sequence (tok[b * n + t]), in those blocks,
 * continuing from the state; logits [B, n, V] if wanted. */
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
