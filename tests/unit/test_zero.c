/* test_zero.c - ZeRO-1 and ZeRO-2 against plain data parallelism, one
 * rank under make check, 2 and 3 under mpirun (tests/cli/collective.bats):
 * the same update and the same whole moments, with the optimizer holding
 * only this rank's shard of the moments and the step allocating nothing.
 * Decision: the model runs on the CPU backend with its allocations
 * counted, so a staging buffer of the whole size would show in the count. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "collective.h"
#include "optim.h"
#include "util.h"
#include "tiny_model.h"

enum { B = 2, N = 7, V = 30 };
static struct tn_comm *comm;

/* Backend memory live now and its peak, in bytes (a size header before each block). */
static size_t live, peak;
static void *counted_alloc(size_t bytes)
{
	size_t *p = tn_backend_cpu.alloc(bytes + sizeof(max_align_t));
	if (!p)
		return NULL;
	*p = bytes;
	live += bytes;
	peak = TN_MAX(peak, live);
	return (char *)p + sizeof(max_align_t);
}
static void counted_free(void *q)
{
	size_t *p = (size_t *)((char *)q - sizeof(max_align_t));
	live -= *p;
	tn_backend_cpu.free(p);
}
static struct tn_backend counted;

/* A model (odd sizes: its float count does not divide among 2 or 3 ranks)
 * and its optimizer, spread over comm with the ZeRO stage given; *grew:
 * the bytes that this added to the model's memory. */
static struct tn_model *model(struct tn_optim **opt, int zero, size_t *grew)
{
	struct tn_model *m = tiny_model_on(&counted, V, 25, 5, 2, 0.3, 5);
	struct tn_optim_opts o;
	tn_optim_defaults(&o);
	o.lr = 1e-2;
	o.steps = 3;
	assert_int_equal(tn_model_zero_grad(m), TN_OK);
	size_t before = live;
	assert_int_equal(tn_optim_new(opt, m, &o), TN_OK);
	assert_int_equal(tn_optim_distribute(*opt, m, comm, zero), TN_OK);
	*grew = live - before;
	return m;
}

/* One update from this rank's tokens (another window on each rank). */
static void step(struct tn_model *m, struct tn_optim *opt, int s)
{
	int r = tn_comm_rank(comm);
	int32_t tok[B * N], tgt[B * N];
	for (int i = 0; i < B * N; i++) {
		tok[i] = (i * 7 + 3 * r + s) % V;
		tgt[i] = (i * 11 + 5 * r + 2 * s) % V;
	}
	double loss, norm, lr;
	assert_int_equal(tn_model_zero_grad(m), TN_OK);
	assert_int_equal(tn_model_forward(m, tok, tgt, B, N, &loss), TN_OK);
	tn_optim_overlap(opt, m);
	assert_int_equal(tn_model_backward(m, 1.0f), TN_OK);
	size_t before = live;
	peak = live;
	assert_int_equal(tn_optim_step(opt, m, &norm, &lr), TN_OK);
	assert_int_equal(peak, before); /* the step stages nothing */
}

static void same_floats(const float *a, const float *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (a[i] != b[i])
			fail_msg("float %zu of %zu: %.9g, not %.9g", i, n, b[i], a[i]);
}

/* Sums of two floats are the same in any order: on 1 and 2 ranks ZeRO
 * equals DP bit for bit; with 3 the reduce-scatter may add in another
 * order than the all-reduce, so its weights agree to rounding. */
static void zero_stage(int zero)
{
	int w = tn_comm_size(comm);
	struct tn_optim *dp_opt, *opt;
	size_t grew;
	struct tn_model *dp = model(&dp_opt, 0, &grew);
	struct tn_model *m = model(&opt, zero, &grew);
	size_t n = m->n_floats, shard = (n + (size_t)w - 1) / (size_t)w;
	/* two moment shards, and params and grads padded to w shards: no staging buffer */
	assert_int_equal(m->n_alloc, (size_t)w * shard);
	assert_true(n % (size_t)w != 0 || w == 1);
	size_t moments = 2 * (w > 1 ? (opt->hi - opt->lo) * sizeof(float) + 1 : n * sizeof(float));
	assert_int_equal(grew, moments + 2 * (m->n_alloc - n) * sizeof(float));
	for (int s = 0; s < 3; s++) {
		step(dp, dp_opt, s);
		step(m, opt, s);
	}
	for (size_t i = n; i < m->n_alloc; i++)
		assert_true(m->params[i] == 0.0f); /* the padding stays zero */
	struct tn_optim full;
	size_t held = live;
	assert_int_equal(tn_optim_whole(opt, m, &full), TN_OK);
	if (w <= 2) {
		same_floats(dp->params, m->params, n);
		same_floats(dp_opt->m, full.m, n);
		same_floats(dp_opt->v, full.v, n);
	} else {
		for (size_t i = 0; i < n; i++)
			assert_float_equal(m->params[i], dp->params[i], 1e-6);
		for (size_t i = 0; i < n; i++)
			assert_float_equal(full.m[i], dp_opt->m[i], 1e-6);
	}
	/* the same moments gathered into rank 0's host memory in rounds of 11 floats a rank
	 * (no shard of 1, 2 or 3 ranks is a multiple of 11: the last round is short) */
	int root = tn_comm_rank(comm) == 0;
	float *hm = root ? malloc(n * sizeof(float)) : NULL, *hv = root ? malloc(n * sizeof(float)) : NULL;
	assert_int_equal(tn_optim_gather_host(opt, m, hm, hv, 11), TN_OK);
	if (root) {
		same_floats(full.m, hm, n);
		same_floats(full.v, hv, n);
	}
	free(hm);
	free(hv);
	tn_optim_release_whole(opt, m, &full);
	assert_int_equal(live, held); /* the whole moments only while saving */
	tn_optim_free(opt, m);
	tn_model_free(m);
	tn_optim_free(dp_opt, dp);
	tn_model_free(dp);
}

static void zero1_equals_dp(void **state)
{
	(void)state;
	zero_stage(1);
}

static void zero2_equals_dp(void **state)
{
	(void)state;
	zero_stage(2);
}

int main(void)
{
	counted = tn_backend_cpu;
	counted.alloc = counted_alloc;
	counted.free = counted_free;
	if (tn_comm_open(&comm, 0)) {
		fprintf(stderr, "%s\n", tn_errmsg());
		return 1;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(zero1_equals_dp),
		cmocka_unit_test(zero2_equals_dp),
	};
	int failed = cmocka_run_group_tests_name("zero", tests, NULL, NULL);
	tn_comm_close(comm);
	return failed;
}
