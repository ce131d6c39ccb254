/* test_generate.c - the sampler and the generation loop: greedy generation
 * equals repeated argmax over the parallel-form logits (random models of odd
 * sizes, a prompt crossing the prefill block, the golden models against
 * their stored logits), sampling is a function of the seed, stop strings cut
 * the text and the stream exactly, and batched generation on the backend
 * under test (TN_BACKEND) equals one prompt at a time on the CPU. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "generate.h"
#include "safetensors.h"
#include "util.h"
#include "tiny_model.h"

static const char *shared_dir(void)
{
	const char *s = getenv("TN_SHARED");
	return s ? s : "../shared";
}

/* argmax of the last row of the parallel form over tok[0..n). */
static int32_t parallel_next(struct tn_model *m, const int32_t *tok, int n)
{
	int V = m->cfg.vocab_size;
	float *lg = malloc((size_t)n * V * sizeof(float));
	assert_int_equal(tn_model_forward(m, tok, NULL, 1, n, NULL), TN_OK);
	assert_int_equal(tn_model_logits(m, lg), TN_OK);
	int32_t best = 0;
	for (int v = 1; v < V; v++)
		if (lg[(size_t)(n - 1) * V + v] > lg[(size_t)(n - 1) * V + best])
			best = v;
	free(lg);
	return best;
}

static void expect_greedy(struct tn_model *m, const int32_t *prompt, int n, int steps)
{
	struct tn_gen_opts o;
	tn_gen_defaults(&o);
	o.max_tokens = steps;
	struct tn_gen_result r;
	assert_int_equal(tn_generate(m, NULL, &o, prompt, (size_t)n, NULL, NULL, &r), TN_OK);
	assert_int_equal(r.n, steps);
	assert_string_equal(r.reason, "length");
	int32_t *seq = malloc((size_t)(n + steps) * sizeof(int32_t));
	memcpy(seq, prompt, (size_t)n * sizeof(int32_t));
	for (int i = 0; i < steps; i++) {
		seq[n + i] = parallel_next(m, seq, n + i);
		assert_int_equal(r.ids[i], seq[n + i]);
	}
	free(seq);
	tn_gen_result_free(&r);
}

/* n pseudo-random ids below 13 (the tiny models' vocabulary). */
static void ids13(int32_t *p, int n, uint64_t x)
{
	for (int i = 0; i < n; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		p[i] = (int32_t)((x >> 33) % 13);
	}
}

static void greedy_odd_models(void **s)
{
	(void)s;
	enum { LONG = TN_PREFILL_TOKENS + 300 };
	static int32_t p[LONG];
	ids13(p, LONG, 7);
	struct tn_model *m = tiny_model(13, 12, 3, 2, 0.5, 5);
	expect_greedy(m, p, 1, 6);
	expect_greedy(m, p, 5, 6);
	expect_greedy(m, p, LONG, 3); /* the prompt crosses a prefill block */
	tn_model_free(m);
	m = tiny_model(37, 20, 5, 3, 0.5, 9);
	expect_greedy(m, p, 17, 8);
	tn_model_free(m);
}

/* The first greedy token is the argmax of the stored official logits. */
static void greedy_golden(void **s)
{
	(void)s;
	const char *names[] = {"A", "B", "C"};
	for (size_t k = 0; k < 3; k++) {
		char dir[512], path[600];
		snprintf(dir, sizeof(dir), "%s/golden/%s", shared_dir(), names[k]);
		struct tn_model *m;
		if (tn_model_load(&m, dir, &tn_backend_cpu))
			fail_msg("%s", tn_errmsg());
		snprintf(path, sizeof(path), "%s/golden.safetensors", dir);
		struct tn_st g;
		assert_int_equal(tn_st_open(&g, path), TN_OK);
		const struct tn_st_tensor *t = tn_st_find(&g, "tokens"), *l = tn_st_find(&g, "logits_train");
		assert_non_null(t);
		assert_non_null(l);
		int n = (int)t->shape[1], V = m->cfg.vocab_size;
		const int32_t *tok = (const int32_t *)t->data;
		float *lg = malloc((size_t)n * V * sizeof(float));
		tn_to_f32(lg, l->data, l->dtype, (size_t)n * V); /* batch 0 */
		int32_t best = 0;
		for (int v = 1; v < V; v++)
			if (lg[(size_t)(n - 1) * V + v] > lg[(size_t)(n - 1) * V + best])
				best = v;
		struct tn_gen_opts o;
		tn_gen_defaults(&o);
		o.max_tokens = 1;
		struct tn_gen_result r;
		assert_int_equal(tn_generate(m, NULL, &o, tok, (size_t)n, NULL, NULL, &r), TN_OK);
		assert_int_equal(r.ids[0], best);
		tn_gen_result_free(&r);
		expect_greedy(m, tok, n, 5);
		free(lg);
		tn_st_close(&g);
		tn_model_free(m);
	}
}

static int32_t draw(const struct tn_sample_opts *o, struct tn_rng *rng, const float *row, int V,
		    const int32_t *seen, size_t ns)
{
	float x[16];
	memcpy(x, row, (size_t)V * sizeof(float));
	int32_t id;
	assert_int_equal(tn_sample(o, rng, x, V, seen, ns, &id), TN_OK);
	return id;
}

static void sampler(void **s)
{
	(void)s;
	const float row[4] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)};
	struct tn_sample_opts o;
	tn_sample_defaults(&o);
	struct tn_rng a, b;
	tn_rng_seed(&a, 1);
	assert_int_equal(draw(&o, &a, row, 4, NULL, 0), 0);
	o.temperature = 1;
	int count[4] = {0};
	for (int i = 0; i < 20000; i++)
		count[draw(&o, &a, row, 4, NULL, 0)]++;
	const double want[4] = {0.5, 0.3, 0.15, 0.05};
	for (int v = 0; v < 4; v++)
		assert_true(fabs(count[v] / 20000.0 - want[v]) < 0.015);
	tn_rng_seed(&a, 42); /* same seed, same draws */
	tn_rng_seed(&b, 42);
	for (int i = 0; i < 100; i++)
		assert_int_equal(draw(&o, &a, row, 4, NULL, 0), draw(&o, &b, row, 4, NULL, 0));
	o.top_k = 2; /* only the two best remain */
	for (int i = 0; i < 1000; i++)
		assert_true(draw(&o, &a, row, 4, NULL, 0) < 2);
	o.top_k = 0;
	o.top_p = 0.79f; /* 0.5 + 0.3 reaches it: two remain */
	for (int i = 0; i < 1000; i++)
		assert_true(draw(&o, &a, row, 4, NULL, 0) < 2);
	o.top_p = 1;
	o.min_p = 0.5f; /* 0.3 >= 0.25 stays, 0.15 goes */
	for (int i = 0; i < 1000; i++)
		assert_true(draw(&o, &a, row, 4, NULL, 0) < 2);
	tn_sample_defaults(&o);
	const float pos[3] = {2.0f, 1.5f, -1.0f};
	const int32_t seen[] = {0, 0, 0};
	o.rep_penalty = 1.5f; /* 2 / 1.5 < 1.5: the seen best drops, once however often seen */
	assert_int_equal(draw(&o, &a, pos, 3, seen, 3), 1);
	o.rep_penalty = 1.2f; /* 2 / 1.2 > 1.5 */
	assert_int_equal(draw(&o, &a, pos, 3, seen, 3), 0);
	o.temperature = -1;
	assert_int_equal(tn_sample_check(&o), TN_EUSAGE);
	tn_sample_defaults(&o);
	o.top_p = 0;
	assert_int_equal(tn_sample_check(&o), TN_EUSAGE);
}

struct sink {
	char buf[4096];
	size_t len;
	int calls;
};

static int collect(void *ctx, int32_t id, const char *text, size_t len)
{
	struct sink *k = ctx;
	(void)id;
	memcpy(k->buf + k->len, text, len);
	k->len += len;
	k->calls++;
	return TN_OK;
}

/* Stop strings with the spm8k tokenizer on a random vocab-8000 model. */
static void stop_strings(void **s)
{
	(void)s;
	char path[512];
	snprintf(path, sizeof(path), "%s/data/tokenizers/spm8k/tokenizer.model", shared_dir());
	struct tn_tokenizer *tok;
	if (tn_tokenizer_load(&tok, path, TN_TOK_AUTO))
		fail_msg("%s", tn_errmsg());
	struct tn_model *m = tiny_model(8000, 16, 2, 2, 0.5, 3);
	struct tn_gen_opts o;
	tn_gen_defaults(&o);
	o.max_tokens = 24;
	o.sample.temperature = 1; /* varied text, fixed by the seed */
	o.seed = 11;
	const int32_t prompt[] = {100, 200, 300};
	struct tn_gen_result full, cut;
	struct sink k = {0};
	assert_int_equal(tn_generate(m, tok, &o, prompt, 3, collect, &k, &full), TN_OK);
	assert_int_equal(k.len, full.len); /* the stream is the text */
	assert_memory_equal(k.buf, full.text, full.len);
	assert_true(full.len > 12);
	char stop[5];
	memcpy(stop, full.text + full.len / 2, 4);
	stop[4] = 0;
	const char *stops[] = {"\x01never", stop};
	o.stop = stops;
	o.n_stop = 2;
	memset(&k, 0, sizeof(k));
	assert_int_equal(tn_generate(m, tok, &o, prompt, 3, collect, &k, &cut), TN_OK);
	assert_string_equal(cut.reason, "stop");
	size_t at = (size_t)(strstr(full.text, stop) - full.text);
	assert_int_equal(cut.len, at);
	assert_memory_equal(cut.text, full.text, at);
	assert_int_equal(k.len, at);
	assert_true(cut.n < full.n);
	tn_gen_result_free(&full);
	tn_gen_result_free(&cut);
	o.max_prompt = 2; /* a prompt over the limit */
	assert_int_equal(tn_generate(m, tok, &o, prompt, 3, NULL, NULL, &cut), TN_EDATA);
	o.max_prompt = 0;
	assert_int_equal(tn_generate(m, NULL, &o, prompt, 3, NULL, NULL, &cut), TN_EUSAGE);
	tn_model_free(m);
	tn_tokenizer_free(tok);
}

struct collected {
	struct tn_gen_result r[8];
	size_t n;
};

static int collect_result(void *ctx, size_t i, struct tn_gen_result *r)
{
	struct collected *c = ctx;
	assert_int_equal(i, c->n); /* in prompt order */
	c->r[c->n++] = *r;
	memset(r, 0, sizeof(*r));
	return TN_OK;
}

/* Batches of 3 over 7 prompts (lengths 1 to 300, some ending at the EOS id
 * early, so slots are refilled mid-batch) give each prompt's tn_generate. */
static int expect_batch(struct tn_model *m, struct tn_model *ref, const struct tn_gen_opts *o,
			const int32_t *p)
{
	static const size_t len[7] = {1, 5, 300, 2, 17, 1, 40};
	struct tn_gen_prompt ps[7];
	for (int i = 0; i < 7; i++)
		ps[i] = (struct tn_gen_prompt){p + 3 * i, len[i]};
	struct collected c = {0};
	assert_int_equal(tn_generate_batch(m, NULL, o, 3, ps, 7, collect_result, &c), TN_OK);
	assert_int_equal(c.n, 7);
	int early = 0;
	for (int i = 0; i < 7; i++) {
		struct tn_gen_result one;
		assert_int_equal(tn_generate(ref, NULL, o, ps[i].ids, ps[i].n, NULL, NULL, &one),
				 TN_OK);
		assert_int_equal(c.r[i].n, one.n);
		assert_memory_equal(c.r[i].ids, one.ids, one.n * sizeof(int32_t));
		assert_string_equal(c.r[i].reason, one.reason);
		early += one.n < (size_t)o->max_tokens;
		tn_gen_result_free(&one);
		tn_gen_result_free(&c.r[i]);
	}
	return early;
}

static void batch_equals_single(void **s)
{
	(void)s;
	int32_t p[320];
	ids13(p, 320, 11);
	struct tn_model *m = tiny_model_on(test_backend(), 13, 12, 3, 2, 0.5, 5);
	struct tn_model *ref = tiny_model(13, 12, 3, 2, 0.5, 5);
	struct tn_gen_opts o;
	tn_gen_defaults(&o);
	o.max_tokens = 12;
	o.eos = 4;
	assert_true(expect_batch(m, ref, &o, p) > 0);
	o.sample.temperature = 1;
	o.sample.top_p = 0.9f;
	o.seed = 3;
	assert_true(expect_batch(m, ref, &o, p) > 0);
	o.sample.temperature = 0;
	o.sample.rep_penalty = 1.3f; /* greedy through the host's logits */
	assert_true(expect_batch(m, ref, &o, p) > 0);
	o.max_tokens = 0;
	expect_batch(m, ref, &o, p);
	tn_model_free(m);
	tn_model_free(ref);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(greedy_odd_models),
		cmocka_unit_test(greedy_golden),
		cmocka_unit_test(sampler),
		cmocka_unit_test(stop_strings),
		cmocka_unit_test(batch_equals_single),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
