/* eval_mc.h - multiple-choice and cloze evaluation as lm-evaluation-harness
 * scores it: the log-likelihood of each continuation " " + choice after the
 * context (tokens as lm-eval's _encode_pair: the whole string encoded, the
 * context's tokens cut off its front), acc = argmax, acc_norm = argmax of
 * log-likelihood per character of the choice, standard errors of the mean;
 * LAMBADA: perplexity exp(-mean ll) and greedy exact match.
 * Decision: the context's recurrent state is computed once and every choice
 * continues from a copy of it (tn_infer_copy), all choices of an item (or
 * of --batch items) in one batch; a softmax Transformer would recompute or cache the context's
 * keys and values, a linear-attention model carries one fixed-size state. */
#ifndef TN_EVAL_MC_H
#define TN_EVAL_MC_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "tasks.h"
#include "tokenizer.h"

/* Log-likelihood ll[c] of cont[c][0..ncont[c]) after ctx[0..nctx) (nctx >=
 * 1) and greedy[c] = 1 when every continuation token is the argmax. share:
 * one context prefill for all choices; else each choice from scratch. */
int tn_mc_loglik(struct tn_model *m, const int32_t *ctx, size_t nctx, int32_t *const *cont,
		 const size_t *ncont, int nc, int share, double *ll, int *greedy);

/* The same for k items at once: every choice of every item is one row of
 * one batch (share: each item's context prefilled once and copied to its
 * choices' rows; else prefilled again for each choice). */
struct tn_mc_item {
	const int32_t *ctx;
	size_t nctx;
	int32_t *const *cont;
	const size_t *ncont;
	int nc;
	double *ll;  /* out, [nc] */
	int *greedy; /* out, [nc] */
};
int tn_mc_loglik_items(struct tn_model *m, const struct tn_mc_item *it, int k, int share);

struct tn_mc_opts {
	int shots;
	size_t limit;        /* 0: all items */
	int share;           /* shared-prefix scoring (default on) */
	int batch;           /* items scored together (default 1) */
	const char *details; /* per-item JSON lines here, or NULL */
};

struct tn_mc_result {
	enum tn_task_kind kind;
	size_t n;             /* items scored */
	double acc, acc_se;   /* LAMBADA: greedy exact match */
	double acc_norm, acc_norm_se;
	double ppl;           /* LAMBADA only */
	uint64_t ctx_tokens, cont_tokens;
	double seconds;
};

int tn_eval_mc(struct tn_model *m, const struct tn_tokenizer *tok, const struct tn_task *t,
	       const struct tn_mc_opts *o, struct tn_mc_result *r);

/* `tn-eval mc` (argv[0] = "mc"): options, run, table or JSON on stdout;
 * returns the exit status. */
int tn_eval_mc_main(int argc, char **argv);

#endif
