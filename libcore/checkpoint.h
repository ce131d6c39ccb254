/* checkpoint.h - checkpoints (man 5 tn-checkpoint): a directory in the
 * Hugging Face layout (config.json, model.safetensors with the HF key
 * names, tied head not stored) that the official code loads, plus, for
 * training, optimizer.safetensors (AdamW moments) and trainer_state.json
 * (step, tokens, RNG state, data cursor, tokenizer fingerprint, the options
 * a resume must keep).
 * Decision: a checkpoint is written whole into DIR.tmp, every file fsynced,
 * then renamed to DIR, so DIR is either the old checkpoint or the new one. */
#ifndef TN_CHECKPOINT_H
#define TN_CHECKPOINT_H

#include <stdint.h>

#include "loader.h"
#include "model.h"
#include "optim.h"
#include "rng.h"

struct tn_train_state {
	int64_t step;      /* optimizer updates done */
	uint64_t tokens;   /* training tokens consumed */
	struct tn_rng rng;
	struct tn_loader_cursor cursor;
	/* what a resume must not change */
	uint32_t seq_len;
	uint32_t batch, accum;
	uint64_t seed;
	char tokenizer[33]; /* fingerprint of the data's tokenizer, hex ("0"s = none) */
};

/* Write dir (replacing an old checkpoint there). opt and ts may be NULL
 * (an inference-only checkpoint). Weights are stored as `dtype`. */
int tn_ckpt_save(const char *dir, const struct tn_model *m, const struct tn_optim *opt,
		 const struct tn_train_state *ts, enum tn_dtype dtype);
/* Optimizer moments and trainer state of dir into opt and ts (the weights
 * come with tn_model_load). Every tensor is checked against the model. */
int tn_ckpt_load_state(const char *dir, const struct tn_model *m, struct tn_optim *opt,
		       struct tn_train_state *ts);
/* The checkpoint a path names: the path itself when it holds config.json,
 * else its "latest" link (a tn-train output directory). Caller frees. */
int tn_ckpt_resolve(const char *path, char **dir);
/* In a tn-train output directory: point "latest" at name, then remove the
 * oldest step-* checkpoints beyond the newest `keep` (0 = keep all). */
int tn_ckpt_publish(const char *out_dir, const char *name, int keep);

#endif
