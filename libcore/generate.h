/* generate.h - text generation: prompt -> blocked prefill -> one recurrent
 * decode step per token, with sampling, stop strings, EOS and a streaming
 * callback; many prompts in a batch of B slots. Decision: the prompt's last token goes through the decode step,
 * so only one row of logits is ever made (no [n, V] buffer for long
 * prompts) and the memory per generated token is constant. */
#ifndef TN_GENERATE_H
#define TN_GENERATE_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "sample.h"
#include "tokenizer.h"

struct tn_gen_opts {
	struct tn_sample_opts sample;
	uint64_t seed;
	int max_tokens;      /* continuation length limit */
	int max_prompt;      /* prompts longer than this are refused (0: no limit) */
	int32_t eos;         /* stop after this id (< 0: never) */
	const char **stop;   /* stop strings (need a tokenizer) */
	int n_stop;
};

/* Streaming: called with each new id and the text that became final with
 * it (text withheld while it may still be the start of a stop string;
 * NULL without a tokenizer). Non-zero stops generation with that status. */
typedef int (*tn_gen_emit)(void *ctx, int32_t id, const char *text, size_t len);

struct tn_gen_result {
	int32_t *ids;        /* the continuation (the EOS included, a stop string's tokens too) */
	size_t n;
	char *text;          /* decoded continuation cut before a stop string (tokenizer only) */
	size_t len;
	const char *reason;  /* "eos", "stop" or "length" */
	double prefill_s, decode_s;
};

void tn_gen_defaults(struct tn_gen_opts *o);
/* tok may be NULL (ids only; then stop strings are refused). */
int tn_generate(struct tn_model *m, const struct tn_tokenizer *tok, const struct tn_gen_opts *o,
		const int32_t *prompt, size_t n, tn_gen_emit emit, void *ctx,
		struct tn_gen_result *res);
void tn_gen_result_free(struct tn_gen_result *r);

/* Many prompts, B sequences decoded together (continuous batching): when
 * one finishes, its slot's state is reset to the next prompt's (prefilled
 * alone, then copied in) and that prompt joins the batch. Each sequence
 * samples with its own generator seeded with o->seed, so every result is
 * the one tn_generate gives for that prompt (greedy: the same ids, up to
 * rounding differences between batched and single products). done is
 * called in prompt order; it may take r's memory (then zero *r). */
struct tn_gen_prompt {
	const int32_t *ids;
	size_t n;
};
typedef int (*tn_gen_done)(void *ctx, size_t i, struct tn_gen_result *r);
int tn_generate_batch(struct tn_model *m, const struct tn_tokenizer *tok,
		      const struct tn_gen_opts *o, int B, const struct tn_gen_prompt *p, size_t np,
		      tn_gen_done done, void *ctx);

#endif
