/* generate.c - the generation loop (see generate.h). Stop strings are
 * searched in the decoded continuation; what is streamed lags behind by the
 * longest tail that could still grow into a stop string, so nothing past a
 * stop string is ever emitted. */
#include "generate.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

void tn_gen_defaults(struct tn_gen_opts *o)
{
	memset(o, 0, sizeof(*o));
	tn_sample_defaults(&o->sample);
	o->max_tokens = 128;
	o->eos = -1;
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Text state of one generation: decoded bytes and how much was emitted. */
struct gen_text {
	struct tn_detok dt;
	uint8_t *buf;
	size_t len, cap, emitted;
};

/* Length of the longest tail of s[0..n) that is a proper prefix of a stop string. */
static size_t stop_tail(const struct tn_gen_opts *o, const uint8_t *s, size_t n)
{
	size_t best = 0;
	for (int i = 0; i < o->n_stop; i++) {
		size_t k = strlen(o->stop[i]);
		for (size_t t = TN_MIN(n, k - 1); t > best; t--)
			if (!memcmp(s + n - t, o->stop[i], t)) {
				best = t;
				break;
			}
	}
	return best;
}

/* Position of the first stop string in s[from..n), or n if none. */
static size_t find_stop(const struct tn_gen_opts *o, const uint8_t *s, size_t n, size_t from)
{
	size_t at = n;
	for (int i = 0; i < o->n_stop; i++) {
		size_t k = strlen(o->stop[i]);
		for (size_t p = from; p + k <= n && p < at; p++)
			if (!memcmp(s + p, o->stop[i], k)) {
				at = p;
				break;
			}
	}
	return at;
}

/* Decode id, emit what is final; *stopped when a stop string appeared. */
static int text_step(const struct tn_gen_opts *o, struct gen_text *g, int32_t id, tn_gen_emit emit,
		     void *ctx, int last, int *stopped)
{
	uint32_t u = (uint32_t)id;
	int rc = tn_detok_run(&g->dt, &u, 1, &g->buf, &g->len, &g->cap);
	if (rc)
		return rc;
	size_t from = g->emitted, end = find_stop(o, g->buf, g->len, from);
	*stopped = end < g->len;
	if (!*stopped && !last)
		end = g->len - stop_tail(o, g->buf, g->len);
	if (*stopped)
		g->len = end;
	g->emitted = TN_MAX(end, from);
	return emit ? emit(ctx, id, (const char *)g->buf + from, g->emitted - from) : TN_OK;
}

static int check_prompt(const struct tn_model *m, const struct tn_gen_opts *o,
			const int32_t *prompt, size_t n)
{
	if (n == 0)
		return tn_fail(TN_EDATA, "empty prompt: generation needs at least one token");
	if (o->max_prompt > 0 && n > (size_t)o->max_prompt)
		return tn_fail(TN_EDATA, "prompt of %zu tokens is longer than the limit of %d", n,
			       o->max_prompt);
	if (n > INT32_MAX / 2)
		return tn_fail(TN_EDATA, "prompt of %zu tokens is too long", n);
	for (size_t i = 0; i < n; i++)
		if (prompt[i] < 0 || prompt[i] >= m->cfg.vocab_size)
			return tn_fail(TN_EDATA, "prompt token %zu: id %d outside the vocabulary of %d",
				       i, prompt[i], m->cfg.vocab_size);
	return TN_OK;
}

/* Room for the prompt and the continuation, for the repetition penalty. */
static int history(const struct tn_gen_opts *o, const int32_t *prompt, size_t n, int32_t **hist)
{
	int32_t *h = tn_malloc((n + (size_t)o->max_tokens + 1) * sizeof(int32_t));
	if (!h)
		return TN_ENOMEM;
	memcpy(h, prompt, n * sizeof(int32_t));
	*hist = h;
	return TN_OK;
}

int tn_generate(struct tn_model *m, const struct tn_tokenizer *tok, const struct tn_gen_opts *o,
		const int32_t *prompt, size_t n, tn_gen_emit emit, void *ctx,
		struct tn_gen_result *res)
{
	memset(res, 0, sizeof(*res));
	if (o->n_stop && !tok)
		return tn_fail(TN_EUSAGE, "stop strings need a tokenizer");
	int V = m->cfg.vocab_size, rc = check_prompt(m, o, prompt, n);
	if (rc || (rc = tn_sample_check(&o->sample)))
		return rc;
	struct tn_infer *st = NULL;
	float *logits = tn_malloc((size_t)V * sizeof(float));
	res->ids = tn_malloc(((size_t)o->max_tokens + 1) * sizeof(int32_t));
	int32_t *hist = NULL;
	if (!logits || !res->ids || (rc = history(o, prompt, n, &hist)) ||
	    (rc = tn_infer_new(&st, m, 1)))
		goto out;
	struct gen_text g = {0};
	if (tok)
		tn_detok_begin(&g.dt, tok);
	struct tn_rng rng;
	tn_rng_seed(&rng, o->seed);
	double t0 = now();
	if ((n > 1 && (rc = tn_model_prefill(m, st, prompt, (int)(n - 1), NULL))) ||
	    (rc = tn_model_decode(m, st, prompt + n - 1, logits)))
		goto out;
	res->prefill_s = now() - t0;
	res->reason = "length";
	t0 = now();
	for (int i = 0; i < o->max_tokens; i++) {
		int32_t id;
		if ((rc = tn_sample(&o->sample, &rng, logits, V, hist, n + res->n, &id)))
			break;
		hist[n + res->n] = id;
		res->ids[res->n++] = id;
		int stopped = 0, last = id == o->eos || i + 1 == o->max_tokens;
		rc = tok ? text_step(o, &g, id, emit, ctx, last, &stopped)
			 : emit ? emit(ctx, id, NULL, 0) : TN_OK;
		if (rc || stopped || id == o->eos) {
			res->reason = rc ? NULL : stopped ? "stop" : "eos";
			break;
		}
		if (i + 1 < o->max_tokens && (rc = tn_model_decode(m, st, &id, logits)))
			break;
	}
	res->decode_s = now() - t0;
	res->text = (char *)g.buf;
	res->len = g.len;
out:
	tn_infer_free(st);
	free(logits);
	free(hist);
	if (rc)
		tn_gen_result_free(res);
	return rc;
}

void tn_gen_result_free(struct tn_gen_result *r)
{
	free(r->ids);
	free(r->text);
	memset(r, 0, sizeof(*r));
}
