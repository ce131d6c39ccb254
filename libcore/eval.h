/* eval.h - perplexity: mean next-token negative log-likelihood of a model
 * over token sequences or over the windows of a shard split.
 * Decision: every scored position is counted once and the sums are kept in
 * double, so a corpus scored in windows and the same corpus scored whole
 * differ only by the context each position saw. */
#ifndef TN_EVAL_H
#define TN_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "input.h"
#include "loader.h"
#include "model.h"
#include "tokenizer.h"

struct tn_ppl {
	double nll_sum;   /* sum of -log p over scored positions (nats) */
	uint64_t tokens;  /* positions scored */
	uint64_t bytes;   /* UTF-8 bytes of text whose every token was scored */
};

double tn_ppl_nll(const struct tn_ppl *p);  /* mean, nats per token */
double tn_ppl_ppl(const struct tn_ppl *p);  /* exp(mean) */
double tn_ppl_bits(const struct tn_ppl *p); /* mean / ln 2 */
double tn_ppl_bits_per_byte(const struct tn_ppl *p); /* nll_sum / ln 2 / bytes (0: no text) */

/* One sequence, every position after its first scored. ctx = 0: one pass
 * over the whole sequence; else windows of at most ctx inputs (ctx + 1
 * tokens, as the loader's) starting every stride tokens (0 = ctx), each
 * scoring only the targets no earlier window did. */
int tn_eval_sequence(struct tn_model *m, const uint32_t *tok, size_t n, int ctx, int stride,
		     struct tn_ppl *acc);
/* Text documents of the files (cut as `cut` says) through tokenizer t,
 * each scored as one sequence that starts with the tokenizer's end-of-text
 * id, so that every token of the text is predicted and bits per byte
 * cover the whole text. A tokenizer without one is refused. */
int tn_eval_text(struct tn_model *m, const struct tn_tokenizer *t, char *const *paths, size_t n,
		 enum tn_input_cut cut, int ctx, int stride, struct tn_ppl *acc);
/* Up to max_windows (0 = all) windows of the loader, B at a time, from its
 * current cursor; each window scores its n targets. */
int tn_eval_loader(struct tn_model *m, struct tn_loader *l, int B, uint32_t seq_len,
		   uint64_t max_windows, struct tn_ppl *acc);

#endif
