/* test_model.c - the model against the golden vectors of the official
 * implementation (../shared/golden/{tvb,A,B,C}): parallel-form logits and
 * loss, the gradient of every weight, blocked-prefill logits and states,
 * prefill + decode logits and states; all at <= 1e-4 relative (max abs
 * difference over max abs reference). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "safetensors.h"
#include "util.h"

#ifndef TOL
#define TOL 1e-4
#endif

static const char *shared_dir(void)
{
	const char *s = getenv("TN_SHARED");
	return s ? s : "../shared";
}

struct golden {
	char dir[512];
	struct tn_model *m;
	struct tn_st g;
	int B, n;
	int32_t *tok;
};

static void golden_open(struct golden *x, const char *name)
{
	snprintf(x->dir, sizeof(x->dir), "%s/golden/%s", shared_dir(), name);
	int rc = tn_model_load(&x->m, x->dir, &tn_backend_cpu);
	if (rc)
		fail_msg("%s", tn_errmsg());
	char path[600];
	snprintf(path, sizeof(path), "%s/golden.safetensors", x->dir);
	assert_int_equal(tn_st_open(&x->g, path), TN_OK);
	const struct tn_st_tensor *t = tn_st_find(&x->g, "tokens");
	assert_non_null(t);
	assert_int_equal(t->dtype, TN_I32);
	x->B = (int)t->shape[0];
	x->n = (int)t->shape[1];
	x->tok = malloc(t->nbytes);
	memcpy(x->tok, t->data, t->nbytes);
}

static void golden_close(struct golden *x)
{
	tn_model_free(x->m);
	tn_st_close(&x->g);
	free(x->tok);
}

/* Golden tensor `key` as fp32 (caller frees). */
static float *golden_f32(const struct golden *x, const char *key, size_t *n)
{
	const struct tn_st_tensor *t = tn_st_find(&x->g, key);
	if (!t)
		fail_msg("%s: golden tensor %s missing", x->dir, key);
	*n = tn_numel(t->shape, t->ndim);
	float *f = malloc(*n * sizeof(float));
	tn_to_f32(f, t->data, t->dtype, *n);
	return f;
}

static void expect_close(const struct golden *x, const char *key, const float *got, size_t n)
{
	size_t gn;
	float *want = golden_f32(x, key, &gn);
	assert_int_equal(gn, n);
	double maxref = 1e-30, maxdiff = 0;
	for (size_t i = 0; i < n; i++) {
		maxref = fmax(maxref, fabs(want[i]));
		maxdiff = fmax(maxdiff, fabs((double)got[i] - want[i]));
	}
	free(want);
	if (!(maxdiff / maxref <= TOL))
		fail_msg("%s %s: max diff %g, relative %g > %g", x->dir, key, maxdiff,
			 maxdiff / maxref, TOL);
}

/* Next-token targets: position t predicts token t + 1; the last is ignored. */
static int32_t *shifted_targets(const struct golden *x)
{
	int32_t *t = malloc((size_t)x->B * x->n * sizeof(int32_t));
	for (int b = 0; b < x->B; b++)
		for (int i = 0; i < x->n; i++)
			t[b * x->n + i] = i + 1 < x->n ? x->tok[b * x->n + i + 1] : -1;
	return t;
}

static void check_train(const char *name)
{
	struct golden x;
	golden_open(&x, name);
	int32_t *tgt = shifted_targets(&x);
	double loss;
	assert_int_equal(tn_model_forward(x.m, x.tok, tgt, x.B, x.n, &loss), TN_OK);
	size_t n;
	float *want = golden_f32(&x, "loss", &n);
	if (fabs(loss - want[0]) > TOL * fabs(want[0]))
		fail_msg("%s: loss %.9f, golden %.9f", name, loss, want[0]);
	free(want);
	size_t nl = (size_t)x.B * x.n * x.m->cfg.vocab_size;
	float *logits = malloc(nl * sizeof(float));
	assert_int_equal(tn_model_logits(x.m, logits), TN_OK);
	expect_close(&x, "logits_train", logits, nl);
	free(logits);

	assert_int_equal(tn_model_zero_grad(x.m), TN_OK);
	assert_int_equal(tn_model_backward(x.m, 1.0f), TN_OK);
	for (size_t i = 0; i < x.m->n_param; i++) {
		char key[96];
		snprintf(key, sizeof(key), "grad.%s", x.m->param[i].name);
		expect_close(&x, key, x.m->grads + x.m->param[i].offset, x.m->param[i].numel);
	}
	free(tgt);
	golden_close(&x);
}

/* States of every layer after an inference run against golden prefix.<l>. */
static void expect_states(const struct golden *x, const struct tn_infer *st, const char *prefix)
{
	for (int l = 0; l < x->m->cfg.layers; l++) {
		char key[96];
		snprintf(key, sizeof(key), "%s.%d", prefix, l);
		size_t n;
		free(golden_f32(x, key, &n));
		float *s = malloc(n * sizeof(float));
		assert_int_equal(tn_infer_state(st, l, s), TN_OK);
		expect_close(x, key, s, n);
		free(s);
	}
}

/* Prefill n1 tokens of each sequence, then decode the rest one at a time. */
static void check_decode(struct golden *x, int n1)
{
	int B = x->B, n = x->n, V = x->m->cfg.vocab_size;
	struct tn_infer *st;
	assert_int_equal(tn_infer_new(&st, x->m, B), TN_OK);
	float *logits = malloc((size_t)B * n * V * sizeof(float));
	float *part = malloc((size_t)B * (n1 > 1 ? n1 : 1) * V * sizeof(float));
	int32_t *tok = malloc((size_t)B * (n1 > 1 ? n1 : 1) * sizeof(int32_t));
	for (int b = 0; b < B; b++)
		memcpy(tok + b * n1, x->tok + b * n, n1 * sizeof(int32_t));
	assert_int_equal(tn_model_prefill(x->m, st, tok, n1, part), TN_OK);
	for (int b = 0; b < B; b++)
		memcpy(logits + (size_t)b * n * V, part + (size_t)b * n1 * V,
		       (size_t)n1 * V * sizeof(float));
	for (int t = n1; t < n; t++) {
		for (int b = 0; b < B; b++)
			tok[b] = x->tok[b * n + t];
		assert_int_equal(tn_model_decode(x->m, st, tok, part), TN_OK);
		for (int b = 0; b < B; b++)
			memcpy(logits + ((size_t)b * n + t) * V, part + (size_t)b * V,
			       V * sizeof(float));
	}
	assert_int_equal(tn_infer_pos(st, B - 1), n);
	char key[64];
	snprintf(key, sizeof(key), "logits_decode_n1_%d", n1);
	expect_close(x, key, logits, (size_t)B * n * V);
	snprintf(key, sizeof(key), "state_decode_n1_%d", n1);
	expect_states(x, st, key);
	free(logits);
	free(part);
	free(tok);
	tn_infer_free(st);
}

static void check_infer(const char *name)
{
	struct golden x;
	golden_open(&x, name);
	int B = x.B, n = x.n, V = x.m->cfg.vocab_size;
	struct tn_infer *st;
	assert_int_equal(tn_infer_new(&st, x.m, B), TN_OK);
	float *logits = malloc((size_t)B * n * V * sizeof(float));
	assert_int_equal(tn_model_prefill(x.m, st, x.tok, n, logits), TN_OK);
	expect_close(&x, "logits_eval_prefill", logits, (size_t)B * n * V);
	expect_states(&x, st, "state_prefill");
	free(logits);
	tn_infer_free(st);
	for (size_t i = 0; i < x.g.n; i++) {
		int n1;
		char rest;
		if (sscanf(x.g.t[i].name, "logits_decode_n1_%d%c", &n1, &rest) == 1)
			check_decode(&x, n1);
	}
	golden_close(&x);
}

static void train_tvb(void **s) { (void)s; check_train("tvb"); }
static void train_A(void **s) { (void)s; check_train("A"); }
static void train_B(void **s) { (void)s; check_train("B"); }
static void train_C(void **s) { (void)s; check_train("C"); }
static void infer_tvb(void **s) { (void)s; check_infer("tvb"); }
static void infer_A(void **s) { (void)s; check_infer("A"); }
static void infer_B(void **s) { (void)s; check_infer("B"); }
static void infer_C(void **s) { (void)s; check_infer("C"); }

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(train_tvb), cmocka_unit_test(train_A), cmocka_unit_test(train_B),
		cmocka_unit_test(train_C),   cmocka_unit_test(infer_tvb), cmocka_unit_test(infer_A),
		cmocka_unit_test(infer_B),   cmocka_unit_test(infer_C),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
