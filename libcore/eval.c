/* eval.c - perplexity over sequences (optionally in sliding windows) and
 * over loader windows, through tn_model_score's per-position losses. */
#include "eval.h"
#include "tokenize.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>

double tn_ppl_nll(const struct tn_ppl *p) { return p->tokens ? p->nll_sum / p->tokens : 0.0; }
double tn_ppl_ppl(const struct tn_ppl *p) { return exp(tn_ppl_nll(p)); }
double tn_ppl_bits(const struct tn_ppl *p) { return tn_ppl_nll(p) / M_LN2; }
double tn_ppl_bits_per_byte(const struct tn_ppl *p)
{
	return p->bytes ? p->nll_sum / M_LN2 / (double)p->bytes : 0.0;
}

/* Forward B rows of n inputs with targets; add the losses of targeted rows. */
static int score(struct tn_model *m, const int32_t *in, const int32_t *tgt, int B, int n,
		 struct tn_ppl *acc)
{
	double mean;
	int rc = tn_model_score(m, in, tgt, B, n, &mean);
	float *loss = rc ? NULL : tn_malloc((size_t)B * n * sizeof(float));
	if (!rc && !loss)
		rc = TN_ENOMEM;
	if (!rc)
		rc = tn_model_losses(m, loss);
	for (size_t i = 0; !rc && i < (size_t)B * n; i++)
		if (tgt[i] >= 0) {
			acc->nll_sum += loss[i];
			acc->tokens++;
		}
	free(loss);
	return rc;
}

int tn_eval_sequence(struct tn_model *m, const uint32_t *tok, size_t n, int ctx, int stride,
		     struct tn_ppl *acc)
{
	if (n < 2)
		return TN_OK;
	size_t w = ctx > 0 ? (size_t)ctx : n, step = stride > 0 ? (size_t)stride : w;
	if (ctx > 0 && step > w)
		return tn_fail(TN_EUSAGE, "stride %zu is larger than the context %zu", step, w);
	int32_t *in = tn_malloc(w * sizeof(int32_t)), *tgt = tn_malloc(w * sizeof(int32_t));
	int rc = in && tgt ? TN_OK : TN_ENOMEM;
	size_t scored = 0; /* targets 1 .. scored are done */
	for (size_t s = 0; !rc && scored < n - 1; s += step) {
		size_t len = TN_MIN(w + 1, n - s); /* tokens s .. s+len-1: len-1 inputs */
		size_t rows = len - 1;
		for (size_t i = 0; i < rows; i++) {
			in[i] = (int32_t)tok[s + i];
			/* target index s+i+1; score it only if no earlier window did */
			tgt[i] = s + i + 1 > scored ? (int32_t)tok[s + i + 1] : -1;
		}
		if (rows)
			rc = score(m, in, tgt, 1, (int)rows, acc);
		scored = s + len - 1;
		if (s + len >= n)
			break;
	}
	free(in);
	free(tgt);
	return rc;
}

int tn_eval_text(struct tn_model *m, const struct tn_tokenizer *t, char *const *paths, size_t n,
		 enum tn_input_cut cut, int ctx, int stride, struct tn_ppl *acc)
{
	if (t->eot_id == TN_BPE_NONE)
		return tn_fail(TN_EUSAGE, "%s: the tokenizer has no end-of-text token to start "
			       "documents with", t->path);
	if (t->vocab_size > (uint32_t)m->cfg.vocab_size)
		return tn_fail(TN_EDATA, "%s: the tokenizer's vocabulary of %u is larger than the "
			       "model's %d", t->path, t->vocab_size, m->cfg.vocab_size);
	struct tn_input_opts io = {cut, NULL};
	struct tn_input *in;
	int rc = tn_input_open(&in, paths, n, &io);
	if (rc)
		return rc;
	struct tn_idvec ids = {0};
	for (int eof = 0; !rc;) {
		const uint8_t *doc;
		size_t len;
		rc = tn_input_next(in, &doc, &len, &eof);
		if (rc || eof)
			break;
		ids.n = 0;
		rc = tn_idvec_push(&ids, t->eot_id);
		struct tn_idvec text = {0};
		if (!rc)
			rc = tn_tokenize_text(t, doc, len, 1, &text);
		if (!rc)
			rc = tn_idvec_append(&ids, text.v, text.n);
		tn_idvec_free(&text);
		if (!rc)
			rc = tn_eval_sequence(m, ids.v, ids.n, ctx, stride, acc);
		if (!rc && ids.n > 1)
			acc->bytes += len;
	}
	tn_idvec_free(&ids);
	tn_input_free(in);
	return rc;
}

int tn_eval_loader(struct tn_model *m, struct tn_loader *l, int B, uint32_t seq_len,
		   uint64_t max_windows, struct tn_ppl *acc)
{
	uint64_t left = tn_loader_windows_per_epoch(l);
	if (max_windows && max_windows < left)
		left = max_windows;
	size_t n = seq_len;
	uint32_t *w = tn_malloc((n + 1) * sizeof(uint32_t));
	int32_t *in = tn_malloc((size_t)B * n * sizeof(int32_t));
	int32_t *tgt = tn_malloc((size_t)B * n * sizeof(int32_t));
	int rc = w && in && tgt ? TN_OK : TN_ENOMEM;
	while (!rc && left) {
		int rows = (int)TN_MIN((uint64_t)B, left);
		for (int b = 0; b < rows && !rc; b++) {
			rc = tn_loader_next(l, w, NULL, NULL);
			for (size_t t = 0; t < n; t++) {
				in[(size_t)b * n + t] = (int32_t)w[t];
				tgt[(size_t)b * n + t] = (int32_t)w[t + 1];
			}
		}
		if (!rc)
			rc = score(m, in, tgt, rows, (int)n, acc);
		left -= (uint64_t)rows;
	}
	free(w);
	free(in);
	free(tgt);
	return rc;
}
