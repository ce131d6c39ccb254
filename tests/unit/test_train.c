/* test_train.c - the optimizer (schedule shape, one AdamW step by hand,
 * which tensors decay, clipping, a non-finite norm, skipped steps), checkpoints (round
 * trip of weights, moments and state; what a reader says about a damaged
 * one) and perplexity scoring in windows. */
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

#include "checkpoint.h"
#include "eval.h"
#include "model.h"
#include "optim.h"
#include "safetensors.h"
#include "util.h"

static struct tn_model *small_model(void)
{
	struct tn_config c;
	assert_int_equal(tn_config_preset(&c, "tiny"), TN_OK);
	c.vocab_size = 17;
	c.d = c.hidden_dim = 8;
	c.glu_dim = 6;
	struct tn_model *m;
	assert_int_equal(tn_model_new(&m, &c, &tn_backend_cpu), TN_OK);
	assert_int_equal(tn_model_init(m, 5), TN_OK);
	return m;
}

static void schedule(void **s)
{
	(void)s;
	struct tn_optim_opts o;
	tn_optim_defaults(&o);
	o.lr = 1.0;
	o.min_lr = 0.1;
	o.warmup = 4;
	o.steps = 14;
	assert_float_equal(tn_optim_lr(&o, 0), 0.25, 1e-12);
	assert_float_equal(tn_optim_lr(&o, 3), 1.0, 1e-12);
	assert_float_equal(tn_optim_lr(&o, 9), 0.55, 1e-12); /* cosine half way */
	assert_float_equal(tn_optim_lr(&o, 14), 0.1, 1e-12);
	assert_float_equal(tn_optim_lr(&o, 99), 0.1, 1e-12);
	o.schedule = TN_SCHED_LINEAR;
	assert_float_equal(tn_optim_lr(&o, 6), 1.0 - 0.9 * 0.2, 1e-12);
	o.schedule = TN_SCHED_CONSTANT;
	assert_float_equal(tn_optim_lr(&o, 13), 1.0, 1e-12);
}

/* One step with a constant gradient g: m = (1-b1) g, v = (1-b2) g^2, so
 * the bias-corrected update is lr * g / (|g| + eps) (+ lr wd p if decayed). */
static void adamw_step(void **s)
{
	(void)s;
	struct tn_model *m = small_model();
	struct tn_optim_opts o;
	tn_optim_defaults(&o);
	o.lr = 0.01;
	o.warmup = 0;
	o.schedule = TN_SCHED_CONSTANT;
	o.clip = 0;
	struct tn_optim *opt;
	assert_int_equal(tn_optim_new(&opt, m, &o), TN_OK);
	assert_int_equal(tn_model_zero_grad(m), TN_OK);
	float *before = malloc(m->n_floats * sizeof(float));
	memcpy(before, m->params, m->n_floats * sizeof(float));
	for (size_t i = 0; i < m->n_floats; i++)
		m->grads[i] = i % 2 ? 0.5f : -2.0f;
	double gn, lr;
	assert_int_equal(tn_optim_step(opt, m, &gn, &lr), TN_OK);
	for (size_t k = 0; k < m->n_param; k++) {
		const struct tn_param *p = &m->param[k];
		int decay = p->role != TN_P_EMB && p->role != TN_P_THETA;
		assert_int_equal(p->decay, decay);
		for (size_t j = p->offset; j < p->offset + p->numel; j++) {
			float g = m->grads[j];
			double want = before[j] - 0.01 * (g / (fabs(g) + 1e-8) + (decay ? 0.1 * before[j] : 0));
			assert_float_equal(m->params[j], want, 1e-6);
		}
	}
	/* the reported norm is the global norm of all gradients */
	assert_float_equal(gn, sqrt(m->n_floats / 2 * 4.0 + (m->n_floats - m->n_floats / 2) * 0.25),
			   1e-6 * gn);
	m->grads[3] = NAN;
	assert_int_equal(tn_optim_step(opt, m, &gn, &lr), TN_EDATA);
	assert_non_null(strstr(tn_errmsg(), "step 2: the gradient norm is nan"));
	free(before);
	tn_optim_free(opt, m);
	tn_model_free(m);
}

/* Loss of a forward + backward over fixed tokens (gradients zeroed first). */
static double fwd_bwd(struct tn_model *m)
{
	int32_t tok[12], tgt[12];
	for (int i = 0; i < 12; i++) {
		tok[i] = (i * 5 + 1) % 17;
		tgt[i] = (i * 3 + 2) % 17;
	}
	double loss;
	assert_int_equal(tn_model_zero_grad(m), TN_OK);
	assert_int_equal(tn_model_forward(m, tok, tgt, 2, 6, &loss), TN_OK);
	assert_int_equal(tn_model_backward(m, 1.0f), TN_OK);
	return loss;
}

/* A skipped step changes no bit of weights, moments or step. */
static void expect_skipped(struct tn_optim *opt, struct tn_model *m, double loss)
{
	size_t bytes = m->n_floats * sizeof(float);
	float *p = malloc(bytes), *mm = malloc(bytes), *v = malloc(bytes);
	memcpy(p, m->params, bytes);
	memcpy(mm, opt->m, bytes);
	memcpy(v, opt->v, bytes);
	int64_t step = opt->step;
	double gn, lr;
	int skipped = 0;
	assert_int_equal(tn_optim_step_checked(opt, m, loss, TN_NAN_SKIP, &gn, &lr, &skipped), TN_OK);
	assert_int_equal(skipped, 1);
	assert_memory_equal(m->params, p, bytes);
	assert_memory_equal(opt->m, mm, bytes);
	assert_memory_equal(opt->v, v, bytes);
	assert_int_equal(opt->step, step);
	free(p);
	free(mm);
	free(v);
}

/* --on-nan: an infinite weight (a NaN loss and gradients), a non-finite
 * gradient under a finite loss, and a non-finite loss (as all-reduced
 * over the ranks) under finite gradients each skip the update, or stop. */
static void nonfinite_steps(void **s)
{
	(void)s;
	struct tn_model *m = small_model();
	struct tn_optim_opts o;
	tn_optim_defaults(&o);
	struct tn_optim *opt;
	assert_int_equal(tn_optim_new(&opt, m, &o), TN_OK);
	double gn, lr;
	int skipped = 1;
	double loss = fwd_bwd(m);
	assert_int_equal(tn_optim_step_checked(opt, m, loss, TN_NAN_SKIP, &gn, &lr, &skipped), TN_OK);
	assert_int_equal(skipped, 0); /* a good step updates: the moments are now non-zero */
	const struct tn_param *w = &m->param[1];
	float keep, inf = INFINITY;
	m->be->download(&keep, m->params + w->offset + 3, sizeof keep);
	m->be->upload(m->params + w->offset + 3, &inf, sizeof inf);
	loss = fwd_bwd(m);
	assert_false(isfinite(loss));
	expect_skipped(opt, m, loss);
	assert_int_equal(tn_optim_step_checked(opt, m, loss, TN_NAN_STOP, &gn, &lr, &skipped),
			 TN_EDATA);
	assert_non_null(strstr(tn_errmsg(), "step 2: the loss is nan"));
	m->be->upload(m->params + w->offset + 3, &keep, sizeof keep);
	loss = fwd_bwd(m);
	assert_true(isfinite(loss));
	m->grads[w->offset] = -INFINITY;
	expect_skipped(opt, m, loss);
	assert_int_equal(tn_optim_step_checked(opt, m, loss, TN_NAN_STOP, &gn, &lr, &skipped),
			 TN_EDATA);
	assert_non_null(strstr(tn_errmsg(), "step 2: the gradient norm is inf"));
	loss = fwd_bwd(m);
	expect_skipped(opt, m, NAN);
	assert_int_equal(tn_optim_step_checked(opt, m, loss, TN_NAN_SKIP, &gn, &lr, &skipped), TN_OK);
	assert_int_equal(skipped, 0);
	assert_int_equal(opt->step, 2);
	tn_optim_free(opt, m);
	tn_model_free(m);
}

static void checkpoint_round_trip(void **s)
{
	(void)s;
	struct tn_model *m = small_model(), *back;
	struct tn_optim_opts o;
	tn_optim_defaults(&o);
	struct tn_optim *opt, *opt2;
	assert_int_equal(tn_optim_new(&opt, m, &o), TN_OK);
	assert_int_equal(tn_optim_new(&opt2, m, &o), TN_OK);
	for (size_t i = 0; i < m->n_floats; i++) {
		opt->m[i] = (float)i * 0.5f;
		opt->v[i] = (float)i;
	}
	opt->step = 12;
	struct tn_train_state ts = {.step = 12, .tokens = 999, .cursor = {2, 34}, .seq_len = 16,
				    .batch = 4, .accum = 2, .seed = 77,
				    .tokenizer = "0123456789abcdef0123456789abcdef"}, ts2;
	tn_rng_seed(&ts.rng, 123);
	char dir[64];
	snprintf(dir, sizeof(dir), "/tmp/tn-test-ckpt-%d", (int)getpid());
	assert_int_equal(tn_ckpt_save(dir, m, opt, &ts, TN_F32), TN_OK);
	assert_int_equal(tn_ckpt_save(dir, m, opt, &ts, TN_F32), TN_OK); /* replaces */
	assert_int_equal(tn_model_load(&back, dir, &tn_backend_cpu), TN_OK);
	assert_memory_equal(back->params, m->params, m->n_floats * sizeof(float));
	assert_int_equal(tn_ckpt_load_state(dir, back, opt2, &ts2), TN_OK);
	assert_memory_equal(opt2->m, opt->m, m->n_floats * sizeof(float));
	assert_memory_equal(opt2->v, opt->v, m->n_floats * sizeof(float));
	assert_int_equal(opt2->step, 12);
	assert_true(ts2.step == ts.step && ts2.tokens == ts.tokens && ts2.seq_len == ts.seq_len &&
		    ts2.batch == ts.batch && ts2.accum == ts.accum && ts2.seed == ts.seed);
	assert_true(ts2.cursor.epoch == 2 && ts2.cursor.position == 34);
	assert_string_equal(ts2.tokenizer, ts.tokenizer);
	assert_memory_equal(ts2.rng.s, ts.rng.s, sizeof(ts.rng.s));
	char *p = tn_path_join(dir, "model.safetensors");
	/* the tied head is not stored; a reader rejects a tensor it does not know */
	struct tn_st st;
	assert_int_equal(tn_st_open(&st, p), TN_OK);
	assert_null(tn_st_find(&st, "lm_head.weight"));
	tn_st_close(&st);
	struct tn_st_entry extra = {"model.layers.9.extra", TN_F32, 1, {2}, (float[]){1, 2}};
	assert_int_equal(tn_st_write(p, &extra, 1), TN_OK);
	assert_int_equal(tn_model_load_weights(back, p), TN_EDATA);
	assert_non_null(strstr(tn_errmsg(), "'model.layers.9.extra' is not part of this model"));
	free(p);
	p = tn_path_join(dir, "optimizer.safetensors");
	assert_int_equal(tn_st_write(p, &extra, 1), TN_OK);
	assert_int_equal(tn_ckpt_load_state(dir, back, opt2, &ts2), TN_EDATA);
	assert_non_null(strstr(tn_errmsg(), "1 tensors, expected"));
	free(p);
	char *resolved;
	assert_int_equal(tn_ckpt_resolve(dir, &resolved), TN_OK);
	assert_string_equal(resolved, dir);
	free(resolved);
	assert_int_equal(tn_ckpt_resolve("/nonexistent", &resolved), TN_EDATA);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -r %s", dir);
	assert_int_equal(system(cmd), 0);
	tn_optim_free(opt, m);
	tn_optim_free(opt2, m);
	tn_model_free(back);
	tn_model_free(m);
}

/* A checkpoint split over two files with an HF index loads like one file;
 * a tensor in two shards is an error. */
static void sharded_weights(void **s)
{
	(void)s;
	struct tn_model *m = small_model(), *back;
	char dir[64];
	snprintf(dir, sizeof(dir), "/tmp/tn-test-shards-%d", (int)getpid());
	assert_int_equal(tn_ckpt_save(dir, m, NULL, NULL, TN_F32), TN_OK);
	char *single = tn_path_join(dir, "model.safetensors");
	assert_int_equal(unlink(single), 0);
	struct tn_st_entry *e = calloc(m->n_param, sizeof(*e));
	for (size_t i = 0; i < m->n_param; i++) {
		const struct tn_param *p = &m->param[i];
		e[i] = (struct tn_st_entry){p->name, TN_BF16, p->ndim, {0}, m->params + p->offset};
		memcpy(e[i].shape, p->shape, sizeof(p->shape));
	}
	size_t half = m->n_param / 2;
	char *a = tn_path_join(dir, "model-00001-of-00002.safetensors");
	char *b = tn_path_join(dir, "model-00002-of-00002.safetensors");
	assert_int_equal(tn_st_write(a, e, half), TN_OK);
	assert_int_equal(tn_st_write(b, e + half, m->n_param - half), TN_OK);
	char *index = tn_path_join(dir, "model.safetensors.index.json");
	FILE *f = fopen(index, "w");
	fprintf(f, "{\"metadata\": {}, \"weight_map\": {");
	for (size_t i = 0; i < m->n_param; i++)
		fprintf(f, "%s\"%s\": \"model-0000%d-of-00002.safetensors\"", i ? ", " : "",
			m->param[i].name, i < half ? 1 : 2);
	fprintf(f, "}}\n");
	fclose(f);
	assert_int_equal(tn_model_load(&back, dir, &tn_backend_cpu), TN_OK);
	for (size_t i = 0; i < m->n_floats; i++)
		assert_float_equal(back->params[i], m->params[i], fabsf(m->params[i]) / 128);
	tn_model_free(back);
	assert_int_equal(tn_st_write(b, e + half - 1, m->n_param - half + 1), TN_OK);
	assert_int_equal(tn_model_load(&back, dir, &tn_backend_cpu), TN_EDATA);
	assert_non_null(strstr(tn_errmsg(), "is also in"));
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -r %s", dir);
	assert_int_equal(system(cmd), 0);
	free(single);
	free(a);
	free(b);
	free(index);
	free(e);
	tn_model_free(m);
}

/* Windows with a context at least the sequence's equal the whole pass;
 * smaller windows still score every position once. */
static void ppl_windows(void **s)
{
	(void)s;
	struct tn_model *m = small_model();
	uint32_t tok[40];
	for (int i = 0; i < 40; i++)
		tok[i] = (uint32_t)(i * 7 % 17);
	struct tn_ppl whole = {0}, big = {0}, w = {0}, ws = {0};
	assert_int_equal(tn_eval_sequence(m, tok, 40, 0, 0, &whole), TN_OK);
	assert_int_equal(tn_eval_sequence(m, tok, 40, 39, 0, &big), TN_OK);
	assert_int_equal(tn_eval_sequence(m, tok, 40, 8, 0, &w), TN_OK);
	assert_int_equal(tn_eval_sequence(m, tok, 40, 8, 3, &ws), TN_OK);
	assert_int_equal(whole.tokens, 39);
	assert_int_equal(big.tokens, 39);
	assert_int_equal(w.tokens, 39);
	assert_int_equal(ws.tokens, 39);
	assert_float_equal(big.nll_sum, whole.nll_sum, 1e-9);
	assert_true(fabs(w.nll_sum - whole.nll_sum) > 1e-6); /* shorter context: other values */
	assert_int_equal(tn_eval_sequence(m, tok, 40, 4, 5, &ws), TN_EUSAGE);
	tn_model_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(schedule),
		cmocka_unit_test(adamw_step),
		cmocka_unit_test(nonfinite_steps),
		cmocka_unit_test(checkpoint_round_trip),
		cmocka_unit_test(sharded_weights),
		cmocka_unit_test(ppl_windows),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
