/* test_model.c - the model against the golden vectors of the official
 * implementation (../shared/golden/{tvb,A,B,C}): parallel-form logits and
 * loss, the gradient of every weight, blocked-prefill logits and states,
 * prefill + decode logits and states; all at <= 1e-4 relative (max abs
 * difference over max abs reference). Activation checkpointing changes no
 * gradient bit and shrinks the activations by what it should. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* The backend under test: TN_BACKEND (cpu or cuda), cpu by default, so the
 * same golden checks run on the GPU (tests/run-cuda.sh). */
static const struct tn_backend *backend(void)
{
	const char *name = getenv("TN_BACKEND");
	const struct tn_backend *be = tn_backend_find(name ? name : "cpu");
	if (!be)
		fail_msg("%s", tn_errmsg());
	return be;
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
	int rc = tn_model_load(&x->m, x->dir, backend());
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
	assert_int_equal(x.m->be->status(), TN_OK);
	float *grads = malloc(x.m->n_floats * sizeof(float)); /* the backend's memory, on the host */
	x.m->be->download(grads, x.m->grads, x.m->n_floats * sizeof(float));
	for (size_t i = 0; i < x.m->n_param; i++) {
		char key[96];
		snprintf(key, sizeof(key), "grad.%s", x.m->param[i].name);
		expect_close(&x, key, grads + x.m->param[i].offset, x.m->param[i].numel);
	}
	free(grads);
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

/* A random model of odd sizes: 3 heads (non-power-of-two slopes), head
 * dim 4, LRPE in layer 0, g not a multiple of anything. */
static struct tn_model *odd_model(int layers, enum tn_act act, uint64_t seed)
{
	struct tn_config c;
	assert_int_equal(tn_config_preset(&c, "tiny"), TN_OK);
	c.vocab_size = 13;
	c.d = c.hidden_dim = 12;
	c.heads = 3;
	c.layers = layers;
	c.glu_dim = 10;
	c.act = act;
	c.init_std = 0.5;
	struct tn_model *m;
	assert_int_equal(tn_model_new(&m, &c, backend()), TN_OK);
	assert_int_equal(tn_model_init(m, seed), TN_OK);
	return m;
}

static void random_tokens(int32_t *t, size_t n, int V, uint64_t seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		t[i] = (int32_t)((seed >> 33) % (uint64_t)V);
	}
}

static double loss_at(struct tn_model *m, const int32_t *tok, const int32_t *tgt, int B, int n)
{
	double l;
	assert_int_equal(tn_model_forward(m, tok, tgt, B, n, &l), TN_OK);
	return l;
}

/* Central differences of the loss against the backward, at a few entries
 * of every parameter tensor (fp32 forward: a loose but telling bound). */
static void check_finite_differences(enum tn_act act)
{
	struct tn_model *m = odd_model(2, act, 7);
	int B = 2, n = 5;
	int32_t tok[10], tgt[10];
	random_tokens(tok, 10, 13, 1);
	random_tokens(tgt, 10, 13, 2);
	tgt[3] = -1;
	loss_at(m, tok, tgt, B, n);
	assert_int_equal(tn_model_zero_grad(m), TN_OK);
	assert_int_equal(tn_model_backward(m, 1.0f), TN_OK);
	for (size_t i = 0; i < m->n_param; i++) {
		const struct tn_param *p = &m->param[i];
		for (size_t k = 0; k < 5; k++) {
			size_t j = p->offset + (k * 7919) % p->numel;
			float keep, h = 1e-2f, an;
			m->be->download(&keep, m->params + j, sizeof keep);
			m->be->download(&an, m->grads + j, sizeof an);
			float moved = keep + h;
			m->be->upload(m->params + j, &moved, sizeof moved);
			double up = loss_at(m, tok, tgt, B, n);
			moved = keep - h;
			m->be->upload(m->params + j, &moved, sizeof moved);
			double down = loss_at(m, tok, tgt, B, n);
			m->be->upload(m->params + j, &keep, sizeof keep);
			double fd = (up - down) / (2.0 * h);
			if (fabs(fd - an) > 2e-2 * fmax(fabs(fd), 1e-1))
				fail_msg("%s[%zu]: backward %g, finite difference %g", p->name,
					 j - p->offset, an, fd);
		}
	}
	tn_model_free(m);
}

static void fd_silu(void **s) { (void)s; check_finite_differences(TN_ACT_SILU); }
static void fd_identity(void **s) { (void)s; check_finite_differences(TN_ACT_NONE); }

/* Prefill of n1 tokens of B sequences then decode of the rest gives the
 * parallel form's logits, for n crossing the prefill block and for n = 1. */
static void check_decode_equals_parallel(int B, int n, int n1)
{
	struct tn_model *m = odd_model(3, TN_ACT_SILU, 11);
	int V = 13;
	int32_t *tok = malloc((size_t)B * n * sizeof(int32_t));
	random_tokens(tok, (size_t)B * n, V, (uint64_t)n);
	float *want = malloc((size_t)B * n * V * sizeof(float));
	float *got = malloc((size_t)B * n * V * sizeof(float));
	assert_int_equal(tn_model_forward(m, tok, NULL, B, n, NULL), TN_OK);
	assert_int_equal(tn_model_logits(m, want), TN_OK);
	struct tn_infer *st;
	assert_int_equal(tn_infer_new(&st, m, B), TN_OK);
	int32_t *part = malloc((size_t)B * (n1 ? n1 : 1) * sizeof(int32_t));
	float *lg = malloc((size_t)B * (n1 ? n1 : 1) * V * sizeof(float));
	for (int b = 0; b < B; b++)
		memcpy(part + b * n1, tok + b * n, n1 * sizeof(int32_t));
	if (n1) {
		assert_int_equal(tn_model_prefill(m, st, part, n1, lg), TN_OK);
		for (int b = 0; b < B; b++)
			memcpy(got + (size_t)b * n * V, lg + (size_t)b * n1 * V,
			       (size_t)n1 * V * sizeof(float));
	}
	for (int t = n1; t < n; t++) {
		for (int b = 0; b < B; b++)
			part[b] = tok[b * n + t];
		assert_int_equal(tn_model_decode(m, st, part, lg), TN_OK);
		for (int b = 0; b < B; b++)
			memcpy(got + ((size_t)b * n + t) * V, lg + (size_t)b * V, V * sizeof(float));
	}
	double maxref = 0, maxdiff = 0;
	for (size_t i = 0; i < (size_t)B * n * V; i++) {
		maxref = fmax(maxref, fabs(want[i]));
		maxdiff = fmax(maxdiff, fabs((double)got[i] - want[i]));
	}
	if (maxdiff > TOL * maxref)
		fail_msg("n %d, prefill %d: decode differs from the parallel form by %g (max %g)", n,
			 n1, maxdiff, maxref);
	free(tok);
	free(want);
	free(got);
	free(part);
	free(lg);
	tn_infer_free(st);
	tn_model_free(m);
}

/* Activations allocated for a backward, then reused for inference of a
 * shape that needs less without the backward's scratch but more with it. */
static void reuse_activations(void **s)
{
	(void)s;
	struct tn_model *m = odd_model(2, TN_ACT_SILU, 5);
	int32_t tok[18];
	random_tokens(tok, 18, 13, 9);
	loss_at(m, tok, tok, 2, 7);
	struct tn_infer *st;
	assert_int_equal(tn_infer_new(&st, m, 2), TN_OK);
	float *lg = malloc(18 * 13 * sizeof(float));
	assert_int_equal(tn_model_prefill(m, st, tok, 8, lg), TN_OK);
	assert_int_equal(tn_model_zero_grad(m), TN_OK);
	assert_int_equal(tn_model_backward(m, 1.0f), TN_EUSAGE);
	free(lg);
	tn_infer_free(st);
	tn_model_free(m);
}

static void decode_parallel(void **s)
{
	(void)s;
	check_decode_equals_parallel(2, 1, 0);
	check_decode_equals_parallel(2, 1, 1);
	check_decode_equals_parallel(2, 7, 0);
	check_decode_equals_parallel(2, 7, 3);
	check_decode_equals_parallel(2, 260, 258); /* one block */
	/* blocks of TN_PREFILL_TOKENS / B rows, and of the minimum a sequence */
	int b3 = tn_prefill_block(3), big = TN_PREFILL_TOKENS / TN_PREFILL_BLOCK + 1;
	assert_int_equal(b3, TN_PREFILL_TOKENS / 3);
	check_decode_equals_parallel(3, b3 + 4, b3 + 2);
	assert_int_equal(tn_prefill_block(big), TN_PREFILL_BLOCK);
	check_decode_equals_parallel(big, TN_PREFILL_BLOCK + 4, TN_PREFILL_BLOCK + 2);
}

/* Scoring (no backward) gives a training forward's losses, with the
 * cross-entropy in blocks (900 rows: two), refuses a backward, and a
 * training step on the same model afterwards works. */
static void score_equals_forward(void **s)
{
	(void)s;
	int B = 3, n = 300, BT = B * n;
	int32_t *tok = malloc(BT * sizeof(int32_t)), *tgt = malloc(BT * sizeof(int32_t));
	float *scored = malloc(BT * sizeof(float)), *trained = malloc(BT * sizeof(float));
	random_tokens(tok, BT, 13, 3);
	random_tokens(tgt, BT, 13, 4);
	for (int i = 0; i < BT; i += 7)
		tgt[i] = -1;
	struct tn_model *a = odd_model(2, TN_ACT_SILU, 4), *b = odd_model(2, TN_ACT_SILU, 4);
	double la, lb;
	assert_int_equal(tn_model_score(a, tok, tgt, B, n, &la), TN_OK);
	assert_int_equal(tn_model_losses(a, scored), TN_OK);
	assert_int_equal(tn_model_zero_grad(a), TN_OK);
	assert_int_equal(tn_model_backward(a, 1.0f), TN_EUSAGE);
	assert_int_equal(tn_model_forward(b, tok, tgt, B, n, &lb), TN_OK);
	assert_int_equal(tn_model_losses(b, trained), TN_OK);
	assert_true(fabs(la - lb) <= 1e-6 * fabs(lb));
	for (int i = 0; i < BT; i++)
		assert_true(fabsf(scored[i] - trained[i]) <= 1e-5f * (1 + fabsf(trained[i])));
	assert_int_equal(tn_model_forward(a, tok, tgt, B, n, &la), TN_OK);
	assert_int_equal(tn_model_backward(a, 1.0f), TN_OK);
	tn_model_free(a);
	tn_model_free(b);
	free(tok);
	free(tgt);
	free(scored);
	free(trained);
}

/* Bad input: a token outside the vocabulary, a checkpoint with a
 * misshaped, a missing and an extra tensor. */
static void bad_input(void **s)
{
	(void)s;
	struct tn_model *m = odd_model(2, TN_ACT_SILU, 3);
	int32_t tok[2] = {1, 13};
	assert_int_equal(tn_model_forward(m, tok, NULL, 1, 2, NULL), TN_EDATA);
	assert_non_null(strstr(tn_errmsg(), "token id 13 is outside"));
	tok[1] = 12;
	assert_int_equal(tn_model_forward(m, tok, NULL, 1, 2, NULL), TN_OK);
	assert_int_equal(tn_model_zero_grad(m), TN_OK);
	assert_int_equal(tn_model_backward(m, 1.0f), TN_EUSAGE); /* no targets, no backward */
	char path[64];
	snprintf(path, sizeof(path), "/tmp/tn-test-model-%d.safetensors", (int)getpid());
	assert_int_equal(tn_model_save_weights(m, path, TN_BF16), TN_OK);
	struct tn_config c = m->cfg;
	c.glu_dim = 11;
	struct tn_model *other;
	assert_int_equal(tn_model_new(&other, &c, backend()), TN_OK);
	assert_int_equal(tn_model_load_weights(other, path), TN_EDATA);
	assert_non_null(strstr(tn_errmsg(), "'model.layers.0.channel_mixer.l1.weight' has shape "
					   "[10, 12], expected [11, 12]"));
	tn_model_free(other);
	c = m->cfg;
	c.layers = 3;
	assert_int_equal(tn_model_new(&other, &c, backend()), TN_OK);
	assert_int_equal(tn_model_load_weights(other, path), TN_EDATA);
	assert_non_null(strstr(tn_errmsg(), "'model.layers.2.token_mixer.qkvu_proj.weight' is missing"));
	tn_model_free(other);
	c = m->cfg;
	c.lrpe[0] = 0;
	assert_int_equal(tn_model_new(&other, &c, backend()), TN_OK);
	assert_int_equal(tn_model_load_weights(other, path), TN_EDATA);
	assert_non_null(strstr(tn_errmsg(), "'model.layers.0.token_mixer.lrpe.theta' is not part"));
	tn_model_free(other);
	unlink(path);
	tn_model_free(m);
}

/* Loss and gradients (host copy) of one forward + backward. */
static float *grads_of(struct tn_model *m, const int32_t *tok, const int32_t *tgt, int B, int n,
		       double *loss)
{
	assert_int_equal(tn_model_forward(m, tok, tgt, B, n, loss), TN_OK);
	assert_int_equal(tn_model_zero_grad(m), TN_OK);
	assert_int_equal(tn_model_backward(m, 1.0f), TN_OK);
	assert_int_equal(m->be->status(), TN_OK);
	float *g = malloc(m->n_floats * sizeof(float));
	m->be->download(g, m->grads, m->n_floats * sizeof(float));
	return g;
}

/* Activation checkpointing of 1, 2, ..., all layers gives the loss and the
 * gradients of the plain backward, bit for bit. */
static void check_recompute(struct tn_model *m, const int32_t *tok, const int32_t *tgt, int B,
			    int n)
{
	double want, got;
	float *ref = grads_of(m, tok, tgt, B, n, &want);
	for (int k = 1; k <= m->cfg.layers + 1; k++) {
		tn_model_set_recompute(m, k);
		float *g = grads_of(m, tok, tgt, B, n, &got);
		if (got != want || memcmp(g, ref, m->n_floats * sizeof(float)))
			fail_msg("recompute %d of %d layers: loss %.9g (plain %.9g) or gradients differ",
				 k, m->cfg.layers, got, want);
		free(g);
	}
	tn_model_set_recompute(m, 0);
	free(ref);
}

static void recompute_golden(void **s)
{
	(void)s;
	static const char *const names[] = {"tvb", "A", "B", "C"};
	for (size_t i = 0; i < 4; i++) {
		struct golden x;
		golden_open(&x, names[i]);
		int32_t *tgt = shifted_targets(&x);
		check_recompute(x.m, x.tok, tgt, x.B, x.n);
		free(tgt);
		golden_close(&x);
	}
}

/* Odd shapes (3 heads, LRPE in layer 0, odd g and n, ignored targets). */
static void recompute_odd(void **s)
{
	(void)s;
	for (int act = 0; act < 2; act++) {
		struct tn_model *m = odd_model(4, act ? TN_ACT_NONE : TN_ACT_SILU, 13);
		int B = 3, n = 11;
		int32_t tok[33], tgt[33];
		random_tokens(tok, 33, 13, 4);
		random_tokens(tgt, 33, 13, 5);
		tgt[7] = tgt[20] = -1;
		check_recompute(m, tok, tgt, B, n);
		tn_model_free(m);
	}
}

/* Inference over the activations of a training forward that checkpoints
 * every layer (the shared work set) gives the logits of a plain model. */
static void recompute_then_infer(void **s)
{
	(void)s;
	struct tn_model *m = odd_model(3, TN_ACT_SILU, 17);
	enum { B = 2, N = 9, V = 13 };
	int32_t tok[B * N];
	random_tokens(tok, B * N, V, 6);
	float want[B * N * V], got[B * N * V], pre0[B * N * V], pre1[B * N * V];
	struct tn_infer *st;
	assert_int_equal(tn_model_forward(m, tok, NULL, B, N, NULL), TN_OK);
	assert_int_equal(tn_model_logits(m, want), TN_OK);
	assert_int_equal(tn_infer_new(&st, m, B), TN_OK);
	assert_int_equal(tn_model_prefill(m, st, tok, N, pre0), TN_OK);
	tn_infer_free(st);
	tn_model_set_recompute(m, -1);
	loss_at(m, tok, tok, B, N);
	assert_int_equal(tn_model_forward(m, tok, NULL, B, N, NULL), TN_OK);
	assert_int_equal(tn_model_logits(m, got), TN_OK);
	assert_memory_equal(got, want, sizeof(want));
	assert_int_equal(tn_infer_new(&st, m, B), TN_OK);
	assert_int_equal(tn_model_prefill(m, st, tok, N, pre1), TN_OK);
	assert_memory_equal(pre1, pre0, sizeof(pre0));
	tn_infer_free(st);
	tn_model_free(m);
}

/* The activation bytes fall by one layer's set per checkpointed layer but
 * the first, whose set (LRPE: the widest) becomes the shared work set. */
static void recompute_memory(void **s)
{
	(void)s;
	struct tn_model *m = odd_model(4, TN_ACT_SILU, 2);
	const struct tn_config *c = &m->cfg;
	int B = 2, n = 8; /* BT = 16: no alignment padding */
	size_t BT = 16, hd = (size_t)tn_config_head_dim(c), H = (size_t)c->heads;
	size_t set = BT * (3 * (size_t)c->d + 8 * (size_t)c->hidden_dim + 3 * (size_t)c->glu_dim + 3);
	size_t plain = (set + 2 * BT * H * hd) * sizeof(float); /* a layer without LRPE */
	size_t bytes[5];
	for (int k = 0; k <= 4; k++) {
		tn_model_set_recompute(m, k);
		assert_int_equal(tn_model_activation_bytes(m, B, n, &bytes[k]), TN_OK);
	}
	assert_int_equal(bytes[1], bytes[0]);
	for (int k = 2; k <= 4; k++)
		assert_int_equal(bytes[k - 1] - bytes[k], plain);
	tn_model_set_recompute(m, -1);
	size_t all;
	assert_int_equal(tn_model_activation_bytes(m, B, n, &all), TN_OK);
	assert_int_equal(all, bytes[4]);
	assert_int_equal(bytes[0] - all, 3 * plain);
	tn_model_free(m);
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
		cmocka_unit_test(fd_silu),   cmocka_unit_test(fd_identity),
		cmocka_unit_test(decode_parallel), cmocka_unit_test(reuse_activations),
		cmocka_unit_test(bad_input), cmocka_unit_test(recompute_golden),
		cmocka_unit_test(recompute_odd), cmocka_unit_test(recompute_memory),
		cmocka_unit_test(recompute_then_infer), cmocka_unit_test(score_equals_forward),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
