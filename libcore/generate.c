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

/* One sequence in a slot of the batch. */
struct slot {
	size_t idx;      /* its prompt's index; SIZE_MAX: the slot is free */
	size_t n;        /* prompt tokens */
	int32_t *hist;   /* prompt + continuation (the repetition penalty's view) */
	int32_t last;    /* the token the next step feeds */
	struct gen_text g;
	struct tn_rng rng;
	struct tn_gen_result res;
	double t0;
};

/* The batch: B slots over one inference state, the prompts still to
 * start, and finished results waiting for those before them. */
struct engine {
	struct tn_model *m;
	const struct tn_tokenizer *tok;
	const struct tn_gen_opts *o;
	const struct tn_gen_prompt *p;
	size_t np, next_in, next_out;
	struct tn_infer *st, *one; /* one: where a new prompt is prefilled */
	int B;
	struct slot *slot;
	struct tn_gen_result *out;
	char *ready;
	tn_gen_emit emit;
	void *emit_ctx;
	tn_gen_done done;
	void *ctx;
};

static void slot_clear(struct slot *s)
{
	free(s->hist);
	free(s->g.buf);
	tn_gen_result_free(&s->res);
	memset(s, 0, sizeof(*s));
	s->idx = SIZE_MAX;
}

/* Hand on the finished results that are next in input order. */
static int deliver(struct engine *e)
{
	int rc = TN_OK;
	while (!rc && e->next_out < e->np && e->ready[e->next_out]) {
		struct tn_gen_result *r = &e->out[e->next_out++];
		rc = e->done(e->ctx, e->next_out - 1, r);
		tn_gen_result_free(r);
	}
	return rc;
}

static int slot_finish(struct engine *e, struct slot *s)
{
	s->res.decode_s = now() - s->t0;
	s->res.text = (char *)s->g.buf;
	s->res.len = s->g.len;
	s->g.buf = NULL;
	e->out[s->idx] = s->res;
	e->ready[s->idx] = 1;
	memset(&s->res, 0, sizeof(s->res));
	slot_clear(s);
	return deliver(e);
}

/* The next prompt into slot b: its state prefilled with all but the last
 * token (which the next step feeds), in a batch of one and copied in. */
static int slot_start(struct engine *e, int b)
{
	struct slot *s = &e->slot[b];
	const struct tn_gen_opts *o = e->o;
	while (s->idx == SIZE_MAX && e->next_in < e->np) {
		size_t i = e->next_in++, n = e->p[i].n;
		const int32_t *prompt = e->p[i].ids;
		int rc = check_prompt(e->m, o, prompt, n);
		if (rc)
			return rc;
		s->idx = i;
		s->n = n;
		s->res.ids = tn_malloc(((size_t)o->max_tokens + 1) * sizeof(int32_t));
		if (!s->res.ids || (rc = history(o, prompt, n, &s->hist)))
			return rc ? rc : TN_ENOMEM;
		if (e->tok)
			tn_detok_begin(&s->g.dt, e->tok);
		tn_rng_seed(&s->rng, o->seed);
		s->res.reason = "length";
		double t0 = now();
		if (n > 1) {
			if ((rc = tn_infer_reset(e->one, 0)) ||
			    (rc = tn_model_prefill(e->m, e->one, prompt, (int)(n - 1), NULL)) ||
			    (rc = tn_infer_copy(e->st, b, e->one, 0)))
				return rc;
		} else if ((rc = tn_infer_reset(e->st, b))) {
			return rc;
		}
		s->last = prompt[n - 1];
		s->t0 = now();
		s->res.prefill_s = s->t0 - t0;
		if (o->max_tokens == 0 && (rc = slot_finish(e, s)))
			return rc;
	}
	return TN_OK;
}

/* Slot s made id: record, decode text, emit; *fin when it is finished. */
static int slot_take(struct engine *e, struct slot *s, int32_t id, int *fin)
{
	const struct tn_gen_opts *o = e->o;
	s->hist[s->n + s->res.n] = id;
	s->res.ids[s->res.n++] = id;
	int stopped = 0, last = id == o->eos || s->res.n == (size_t)o->max_tokens;
	int rc = e->tok ? text_step(o, &s->g, id, e->emit, e->emit_ctx, last, &stopped)
		 : e->emit ? e->emit(e->emit_ctx, id, NULL, 0) : TN_OK;
	*fin = rc || stopped || last;
	if (!rc)
		s->res.reason = stopped ? "stop" : id == o->eos ? "eos" : "length";
	s->last = id;
	return rc;
}

/* One decode step of every busy slot; finished ones take the next prompt. */
static int engine_step(struct engine *e, int32_t *tok, int32_t *next, float *logits)
{
	int B = e->B, V = e->m->cfg.vocab_size, greedy = tn_sample_is_argmax(&e->o->sample);
	for (int b = 0; b < B; b++)
		tok[b] = e->slot[b].idx == SIZE_MAX ? 0 : e->slot[b].last;
	int rc = greedy ? tn_model_decode_greedy(e->m, e->st, tok, next)
			: tn_model_decode(e->m, e->st, tok, logits);
	for (int b = 0; b < B && !rc; b++) {
		struct slot *s = &e->slot[b];
		int fin = 0;
		if (s->idx == SIZE_MAX)
			continue;
		if (!greedy)
			rc = tn_sample(&e->o->sample, &s->rng, logits + (size_t)b * V, V, s->hist,
				       s->n + s->res.n, &next[b]);
		if (!rc)
			rc = slot_take(e, s, next[b], &fin);
		if (!rc && fin && !(rc = slot_finish(e, s)))
			rc = slot_start(e, b);
	}
	return rc;
}

static int engine_run(struct engine *e, int B)
{
	int V = e->m->cfg.vocab_size, rc = tn_sample_check(&e->o->sample);
	if (!rc && e->o->n_stop && !e->tok)
		rc = tn_fail(TN_EUSAGE, "stop strings need a tokenizer");
	if (rc)
		return rc;
	e->B = B;
	e->slot = tn_calloc((size_t)B, sizeof(*e->slot));
	e->out = tn_calloc(e->np + 1, sizeof(*e->out));
	e->ready = tn_calloc(e->np + 1, 1);
	int32_t *tok = tn_malloc((size_t)B * sizeof(int32_t));
	int32_t *next = tn_malloc((size_t)B * sizeof(int32_t));
	float *logits = tn_sample_is_argmax(&e->o->sample) ? NULL
		: tn_malloc((size_t)B * V * sizeof(float));
	rc = e->slot && e->out && e->ready && tok && next &&
		(logits || tn_sample_is_argmax(&e->o->sample)) ? TN_OK : TN_ENOMEM;
	if (!rc && !(rc = tn_infer_new(&e->st, e->m, B)))
		rc = tn_infer_new(&e->one, e->m, 1);
	for (int b = 0; e->slot && b < B; b++)
		e->slot[b].idx = SIZE_MAX;
	for (int b = 0; !rc && b < B; b++)
		rc = slot_start(e, b);
	while (!rc && e->next_out < e->np)
		rc = engine_step(e, tok, next, logits);
	for (int b = 0; e->slot && b < B; b++)
		slot_clear(&e->slot[b]);
	for (size_t i = 0; e->out && i < e->np; i++)
		tn_gen_result_free(&e->out[i]);
	free(e->slot);
	free(e->out);
	free(e->ready);
	free(tok);
	free(next);
	free(logits);
	tn_infer_free(e->st);
	tn_infer_free(e->one);
	return rc;
}

int tn_generate_batch(struct tn_model *m, const struct tn_tokenizer *tok,
		      const struct tn_gen_opts *o, int B, const struct tn_gen_prompt *p, size_t np,
		      tn_gen_done done, void *ctx)
{
	if (B < 1)
		return tn_fail(TN_EUSAGE, "batch size %d: must be at least 1", B);
	struct engine e = {.m = m, .tok = tok, .o = o, .p = p, .np = np, .done = done, .ctx = ctx};
	return engine_run(&e, (int)TN_MIN((size_t)B, TN_MAX(np, 1)));
}

/* tn_generate's result: taken from the engine. */
static int take_result(void *ctx, size_t i, struct tn_gen_result *r)
{
	(void)i;
	*(struct tn_gen_result *)ctx = *r;
	memset(r, 0, sizeof(*r));
	return TN_OK;
}

int tn_generate(struct tn_model *m, const struct tn_tokenizer *tok, const struct tn_gen_opts *o,
		const int32_t *prompt, size_t n, tn_gen_emit emit, void *ctx,
		struct tn_gen_result *res)
{
	memset(res, 0, sizeof(*res));
	struct tn_gen_prompt p = {prompt, n};
	struct engine e = {.m = m, .tok = tok, .o = o, .p = &p, .np = 1, .emit = emit,
			   .emit_ctx = ctx, .done = take_result, .ctx = res};
	return engine_run(&e, 1);
}

void tn_gen_result_free(struct tn_gen_result *r)
{
	free(r->ids);
	free(r->text);
	memset(r, 0, sizeof(*r));
}
