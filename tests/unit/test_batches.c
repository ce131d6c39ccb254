/* test_batches.c - training without waits, on the CPU: micro-batches made
 * ahead on a thread equal the loader's windows taken in turn (across
 * epochs and a resume, cursors included); a tn_train_run (which uses them)
 * gives the loss sequence of the plain loop it replaced, bit for bit; and
 * the fused AdamW over a tensor table and a ZeRO shard equals the
 * per-tensor update bit for bit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loader.h"
#include "model.h"
#include "ops.h"
#include "optim.h"
#include "pack.h"
#include "source.h"
#include "train.h"
#include "util.h"

static char tmpdir[] = "/tmp/tn-batches-XXXXXX";
static char datadir[300];

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)rng;
}

/* 300 documents of a vocabulary of 40, packed into shards of 500 tokens. */
static int make_data(void **state)
{
	(void)state;
	char ids[300];
	snprintf(ids, sizeof ids, "%s/in.ids", tmpdir);
	snprintf(datadir, sizeof datadir, "%s/data", tmpdir);
	FILE *f = fopen(ids, "w");
	if (!f)
		return 1;
	for (int d = 0; d < 300; d++) {
		int len = 1 + (int)(next_rand() % 12);
		for (int i = 0; i < len; i++)
			fprintf(f, "%s%u", i ? " " : "", (unsigned)(next_rand() % 40));
		fputc('\n', f);
	}
	fclose(f);
	char *paths[] = {ids};
	struct tn_source_opts so = {TN_SOURCE_IDS, 40, -1};
	struct tn_source *src;
	if (tn_source_open(&src, paths, 1, &so))
		return 1;
	struct tn_pack_opts po = {.out_dir = datadir, .shard_tokens = 500, .memory = 1 << 20};
	struct tn_pack_stats st;
	struct tn_progress pr = {0};
	int rc = tn_pack(src, &po, &st, &pr);
	tn_source_free(src);
	return rc;
}

static struct tn_loader *open_train(uint32_t n)
{
	struct tn_loader_opts o = {datadir, "train", n, 5, 1, 0, 1};
	struct tn_loader *l;
	assert_int_equal(tn_loader_open(&l, &o), TN_OK);
	return l;
}

/* The plain loop's batch: B windows of the loader, shifted by one. */
static void plain_batch(struct tn_loader *l, uint32_t B, uint32_t n, int32_t *in, int32_t *tgt)
{
	uint32_t *w = malloc((n + 1) * sizeof(uint32_t));
	for (uint32_t b = 0; b < B; b++) {
		assert_int_equal(tn_loader_next(l, w, NULL, NULL), TN_OK);
		for (uint32_t t = 0; t < n; t++) {
			in[b * n + t] = (int32_t)w[t];
			tgt[b * n + t] = (int32_t)w[t + 1];
		}
	}
	free(w);
}

static void *alloc_zeroed(size_t bytes) { return calloc(1, bytes); }

/* 100 batches of 6 windows of 8 cross epochs; made ahead or when
 * asked, from the start or resumed at batch 23, they are the plain ones. */
static void batches_are_the_loaders(void **state)
{
	(void)state;
	const uint32_t B = 6, n = 8, count = 100, resume_at = 23;
	struct tn_loader *ref = open_train(n);
	assert_true(tn_loader_windows_per_epoch(ref) * 2 < (uint64_t)B * count);
	int32_t *in = malloc((size_t)count * B * n * 4), *tgt = malloc((size_t)count * B * n * 4);
	struct tn_loader_cursor *after = malloc(count * sizeof(*after));
	for (uint32_t k = 0; k < count; k++) {
		plain_batch(ref, B, n, in + (size_t)k * B * n, tgt + (size_t)k * B * n);
		after[k] = tn_loader_get_cursor(ref);
	}
	for (int ahead = 0; ahead < 2; ahead++)
		for (uint32_t from = 0; from <= resume_at; from += resume_at) {
			struct tn_loader *l = open_train(n);
			if (from)
				assert_int_equal(tn_loader_set_cursor(l, after[from - 1]), TN_OK);
			struct tn_batches *bs;
			assert_int_equal(tn_batches_open(&bs, l, B, ahead, alloc_zeroed, free), TN_OK);
			for (uint32_t k = from; k < count; k++) {
				const struct tn_batch *b;
				assert_int_equal(tn_batches_next(bs, &b), TN_OK);
				assert_memory_equal(b->in, in + (size_t)k * B * n, B * n * 4);
				assert_memory_equal(b->tgt, tgt + (size_t)k * B * n, B * n * 4);
				assert_true(b->after.epoch == after[k].epoch &&
					    b->after.position == after[k].position);
			}
			tn_batches_close(bs);
			tn_loader_free(l);
		}
	free(in);
	free(tgt);
	free(after);
	tn_loader_free(ref);
}

static void tiny_config(struct tn_config *c)
{
	assert_int_equal(tn_config_preset(c, "tiny"), TN_OK);
	c->vocab_size = 40;
	c->d = c->hidden_dim = 8;
	c->glu_dim = 6;
}

struct losses {
	double v[16];
	int n;
};

static void record(void *ctx, const struct tn_train_log *l)
{
	struct losses *ls = ctx;
	if (!strcmp(l->event, "step") && ls->n < 16)
		ls->v[ls->n++] = l->loss;
}

/* tn_train_run (batches made ahead) against the loop it replaced: the
 * loader's windows taken in turn, forward, backward, AdamW. */
static void train_run_is_the_plain_loop(void **state)
{
	(void)state;
	const int steps = 9;
	const uint32_t B = 3, n = 16, accum = 2;
	struct tn_train_opts o;
	tn_train_defaults(&o);
	tiny_config(&o.cfg);
	char out[320];
	snprintf(out, sizeof out, "%s/run", tmpdir);
	o.data = datadir;
	o.out = out;
	o.steps = steps;
	o.seq_len = n;
	o.batch = B;
	o.accum = accum;
	o.seed = 5;
	o.log_every = 1;
	struct losses got = {0};
	o.log = record;
	o.log_ctx = &got;
	struct tn_train_result res;
	assert_int_equal(tn_train_run(&o, &res), TN_OK);
	assert_int_equal(got.n, steps);

	struct tn_model *m;
	assert_int_equal(tn_model_new(&m, &o.cfg, &tn_backend_cpu), TN_OK);
	assert_int_equal(tn_model_init(m, o.seed), TN_OK);
	struct tn_optim_opts oo = o.optim;
	oo.steps = steps;
	struct tn_optim *opt;
	assert_int_equal(tn_optim_new(&opt, m, &oo), TN_OK);
	struct tn_loader *l = open_train(n);
	int32_t in[B * n], tgt[B * n];
	for (int s = 0; s < steps; s++) {
		double loss = 0, l1, gn, lr;
		assert_int_equal(tn_model_zero_grad(m), TN_OK);
		for (uint32_t a = 0; a < accum; a++) {
			plain_batch(l, B, n, in, tgt);
			assert_int_equal(tn_model_forward(m, in, tgt, (int)B, (int)n, &l1), TN_OK);
			assert_int_equal(tn_model_backward(m, 1.0f / (float)accum), TN_OK);
			loss += l1 / accum;
		}
		assert_int_equal(tn_optim_step(opt, m, &gn, &lr), TN_OK);
		assert_memory_equal(&loss, &got.v[s], sizeof loss);
	}
	tn_loader_free(l);
	tn_optim_free(opt, m);
	tn_model_free(m);
}

/* The fused update over a table with gaps, decayed and undecayed tensors
 * and a shard that cuts two of them, against adamw_update per tensor. */
static void fused_adamw_is_per_tensor(void **state)
{
	(void)state;
	enum { N = 5000 };
	const struct tn_adamw_seg seg[] = {
		{3000, 1200, 0.0f}, {10, 900, 0.1f}, {950, 2000, 0.0f}, {4300, 700, 0.05f},
	};
	const size_t lo = 400, hi = 4500, n_seg = sizeof seg / sizeof seg[0];
	const struct tn_adamw_args a = {1e-2f, 0.9f, 0.95f, 1e-8f, 0.7f, 0.271f, 0.0975f};
	float *p[2], *g = malloc(N * 4), *mm[2], *vv[2], *p0 = malloc(N * 4);
	for (int k = 0; k < 2; k++) {
		p[k] = malloc(N * 4);
		mm[k] = malloc((hi - lo) * 4);
		vv[k] = malloc((hi - lo) * 4);
	}
	for (size_t i = 0; i < N; i++) {
		p0[i] = p[0][i] = p[1][i] = (float)((int)(next_rand() % 2001) - 1000) / 777.0f;
		g[i] = (float)((int)(next_rand() % 2001) - 1000) / 3333.0f;
	}
	for (size_t i = 0; i < hi - lo; i++) {
		mm[0][i] = mm[1][i] = g[i] / 10;
		vv[0][i] = vv[1][i] = g[i] * g[i] / 20;
	}
	for (int step = 0; step < 3; step++) {
		tn_backend_cpu.adamw_fused(p[0], g, mm[0], vv[0], lo, hi, seg, n_seg, &a);
		for (size_t i = 0; i < n_seg; i++) {
			size_t x = TN_MAX(seg[i].offset, lo), y = TN_MIN(seg[i].offset + seg[i].numel, hi);
			if (x < y)
				adamw_update(p[1] + x, g + x, mm[1] + (x - lo), vv[1] + (x - lo), y - x,
					     a.lr, a.beta1, a.beta2, a.eps, seg[i].wd, a.gscale, a.bc1,
					     a.bc2);
		}
	}
	assert_memory_equal(p[0], p[1], N * 4);
	assert_memory_equal(mm[0], mm[1], (hi - lo) * 4);
	assert_memory_equal(vv[0], vv[1], (hi - lo) * 4);
	/* the gap between tensors and what lies outside the shard stay as they were */
	assert_true(p[0][920] == p0[920] && p[0][500] != p0[500]);
	assert_true(p[0][4600] == p0[4600] && p[0][4400] != p0[4400]);
	for (int k = 0; k < 2; k++) {
		free(p[k]);
		free(mm[k]);
		free(vv[k]);
	}
	free(g);
	free(p0);
}

int main(void)
{
	if (!mkdtemp(tmpdir))
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(batches_are_the_loaders),
		cmocka_unit_test(train_run_is_the_plain_loop),
		cmocka_unit_test(fused_adamw_is_per_tensor),
	};
	int failed = cmocka_run_group_tests_name("batches", tests, make_data, NULL);
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
	if (system(cmd) != 0)
		return 1;
	return failed;
}
