/* test_lightning_attn.c - unit tests of the CPU Lightning Attention: against
 * the official implementation's outputs (../shared/golden/attn), against a
 * dense fp64 evaluation of the definition (odd N, state_in, packed documents,
 * gradients), and the identities the model relies on: forward-then-decode and
 * chunked prefill equal one long forward; packed documents equal separate runs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn_golden.h"
#include "lightning_attn.h"
#include "util.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float randn(void)
{
	double u = 0, x;
	for (int i = 0; i < 4; i++) {
		rng = rng * 6364136223846793005ull + 1442695040888963407ull;
		u += (double)(rng >> 11) / 9007199254740992.0;
	}
	x = (u - 2.0) * 1.7320508; /* sum of 4 uniforms: mean 2, variance 1/3 */
	return (float)x;
}

static float *rand_array(size_t n)
{
	float *a = malloc(n * sizeof *a);
	assert_non_null(a);
	for (size_t i = 0; i < n; i++)
		a[i] = randn();
	return a;
}

/* max |a - b| / max |b|: the relative error the issue bounds. */
static double rel_err(const float *a, const float *b, size_t n)
{
	double e = 0, m = 0;
	for (size_t i = 0; i < n; i++) {
		e = fmax(e, fabs((double)a[i] - b[i]));
		m = fmax(m, fabs((double)b[i]));
	}
	return m > 0 ? e / m : e;
}

static double rel_err_d(const float *a, const double *b, size_t n)
{
	double e = 0, m = 0;
	for (size_t i = 0; i < n; i++) {
		e = fmax(e, fabs((double)a[i] - b[i]));
		m = fmax(m, fabs(b[i]));
	}
	return m > 0 ? e / m : e;
}

static void test_golden(void **st)
{
	(void)st;
	struct golden g;
	assert_int_equal(golden_open(&g), 0);
	size_t ns = 0;
	const double *s64 = golden_get(&g, "s", 1, &ns);
	assert_non_null(s64);
	float s[8];
	for (size_t i = 0; i < ns; i++)
		s[i] = (float)s64[i];
	static const struct { int n, dk, dv; } cases[] = {
		{1, 8, 64}, {1, 256, 128}, {63, 64, 64}, {64, 128, 128}, {65, 256, 128},
		{65, 8, 64}, {257, 64, 128}, {1000, 8, 64}, {1000, 64, 64},
	};
	for (size_t c = 0; c < TN_ARRAY_LEN(cases); c++) {
		char name[64], key[80];
		snprintf(name, sizeof name, "n%d_dk%d_dv%d", cases[c].n, cases[c].dk, cases[c].dv);
		const float *t[9];
		static const char *fields[] = {"q", "k", "v", "o", "S", "do", "dq", "dk", "dv"};
		size_t cnt;
		for (int f = 0; f < 9; f++) {
			snprintf(key, sizeof key, "%s.%s", name, fields[f]);
			t[f] = golden_get(&g, key, 0, &cnt);
		}
		assert_non_null(t[0]);
		struct tn_attn_shape sh = {1, (int)ns, cases[c].n, cases[c].dk, cases[c].dv};
		size_t nq = (size_t)sh.H * sh.N * sh.dk, nv = (size_t)sh.H * sh.N * sh.dv;
		size_t nS = (size_t)sh.H * sh.dk * sh.dv;
		float *o = malloc(nv * 4), *S = malloc(nS * 4), *dq = malloc(nq * 4),
		      *dk = malloc(nq * 4), *dv = malloc(nv * 4);
		assert_int_equal(lightning_attn_forward(&sh, t[0], t[1], t[2], s, NULL, o, S), TN_OK);
		double eo = rel_err(o, t[3], nv), eS = rel_err(S, t[4], nS);
		printf("# golden %-16s o %.2e  S %.2e", name, eo, eS);
		assert_true(eo <= 1e-4 && eS <= 1e-4);
		if (t[5]) {
			assert_int_equal(lightning_attn_backward(&sh, t[0], t[1], t[2], s, t[5], dq, dk,
								 dv), TN_OK);
			double e1 = rel_err(dq, t[6], nq), e2 = rel_err(dk, t[7], nq),
			       e3 = rel_err(dv, t[8], nv);
			printf("  dq %.2e dk %.2e dv %.2e", e1, e2, e3);
			assert_true(e1 <= 1e-4 && e2 <= 1e-4 && e3 <= 1e-4);
		}
		printf("\n");
		free(o), free(S), free(dq), free(dk), free(dv);
	}
	golden_close(&g);
}

/* The definition in fp64, one (b, h) at a time, with documents as seg[t]
 * (last start <= t, -1 none): o, the final state and the gradients. */
struct dense {
	const struct tn_attn_shape *sh;
	const float *q, *k, *v, *s, *S0, *dout;
	const int *seg; /* [B, N] */
};

static double wgt(const struct dense *d, int b, int h, int t, int j)
{
	const int *seg = d->seg + (size_t)b * d->sh->N;
	if (j > t || seg[t] > j)
		return 0;
	return exp(-(double)d->s[h] * (t - j));
}

static double qk(const float *a, const float *b, int n)
{
	double s = 0;
	for (int i = 0; i < n; i++)
		s += (double)a[i] * b[i];
	return s;
}

static void dense_run(const struct dense *d, double *o, double *S, double *dq, double *dk,
		      double *dv)
{
	const struct tn_attn_shape *sh = d->sh;
	int N = sh->N, DK = sh->dk, DV = sh->dv;
	for (int b = 0; b < sh->B; b++)
		for (int h = 0; h < sh->H; h++) {
			size_t bh = (size_t)b * sh->H + h;
			const float *q = d->q + bh * N * DK, *k = d->k + bh * N * DK;
			const float *v = d->v + bh * N * DV;
			const float *g = d->dout ? d->dout + bh * N * DV : NULL;
			const int *seg = d->seg + (size_t)b * N;
			for (int t = 0; t < N; t++)
				for (int j = 0; j <= t; j++) {
					double w = wgt(d, b, h, t, j);
					if (!w)
						continue;
					double a = w * qk(q + t * DK, k + j * DK, DK);
					for (int y = 0; y < DV; y++)
						o[(bh * N + t) * DV + y] += a * v[j * DV + y];
					if (!g)
						continue;
					double gv = w * qk(g + t * DV, v + j * DV, DV);
					for (int x = 0; x < DK; x++) {
						dq[(bh * N + t) * DK + x] += gv * k[j * DK + x];
						dk[(bh * N + j) * DK + x] += gv * q[t * DK + x];
					}
					for (int y = 0; y < DV; y++)
						dv[(bh * N + j) * DV + y] += a * g[t * DV + y];
				}
			for (int t = 0; t < N && d->S0 && seg[t] < 0; t++)
				for (int x = 0; x < DK; x++)
					for (int y = 0; y < DV; y++)
						o[(bh * N + t) * DV + y] +=
							exp(-(double)d->s[h] * (t + 1)) * q[t * DK + x] *
							d->S0[(bh * DK + x) * DV + y];
			for (int x = 0; x < DK; x++)
				for (int y = 0; y < DV; y++) {
					double acc = 0;
					for (int j = 0; j < N; j++)
						acc += wgt(d, b, h, N - 1, j) * k[j * DK + x] * v[j * DV + y];
					if (d->S0 && seg[N - 1] < 0)
						acc += exp(-(double)d->s[h] * N) *
						       d->S0[(bh * DK + x) * DV + y];
					S[(bh * DK + x) * DV + y] = acc;
				}
		}
}

/* Blocked CPU op vs the dense definition for one shape; docs may be NULL. */
static void check_dense(int B, int H, int N, int DK, int DV, const struct tn_attn_docs *docs,
			int with_state)
{
	struct tn_attn_shape sh = {B, H, N, DK, DV};
	size_t nq = (size_t)B * H * N * DK, nv = (size_t)B * H * N * DV, nS = (size_t)B * H * DK * DV;
	float *q = rand_array(nq), *k = rand_array(nq), *v = rand_array(nv), *g = rand_array(nv);
	float *S0 = with_state ? rand_array(nS) : NULL, s[32];
	for (int h = 0; h < H; h++)
		s[h] = h % 3 == 0 ? 0.9f : h % 3 == 1 ? 0.01f : 1e-8f;
	int *seg = malloc((size_t)B * N * sizeof *seg);
	for (int b = 0; b < B; b++)
		for (int t = 0, last = -1, i = docs ? docs->ptr[b] : 0; t < N; t++) {
			if (docs && i < docs->ptr[b + 1] && docs->start[i] == t)
				last = t, i++;
			seg[b * N + t] = last;
		}
	struct dense d = {&sh, q, k, v, s, S0, g, seg};
	double *ro = calloc(nv, 8), *rS = calloc(nS, 8), *rq = calloc(nq, 8), *rk = calloc(nq, 8),
	       *rv = calloc(nv, 8);
	dense_run(&d, ro, rS, rq, rk, rv);
	float *o = malloc(nv * 4), *S = malloc(nS * 4), *dq = malloc(nq * 4), *dk = malloc(nq * 4),
	      *dv = malloc(nv * 4);
	assert_int_equal(lightning_attn_forward_docs(&sh, docs, q, k, v, s, S0, o, S), TN_OK);
	assert_int_equal(lightning_attn_backward_docs(&sh, docs, q, k, v, s, g, dq, dk, dv), TN_OK);
	/* backward is that of state_in = NULL, and dense_run leaves S0 out of
	 * the gradients: its term depends on q only through the forward */
	double e[5] = {rel_err_d(o, ro, nv), rel_err_d(S, rS, nS), rel_err_d(dq, rq, nq),
		       rel_err_d(dk, rk, nq), rel_err_d(dv, rv, nv)};
	for (int i = 0; i < 5; i++)
		if (e[i] > 2e-5)
			fail_msg("B%d H%d N%d dk%d dv%d docs %d state %d: output %d rel err %.2e", B, H,
				 N, DK, DV, docs != NULL, with_state, i, e[i]);
	free(q), free(k), free(v), free(g), free(S0), free(seg);
	free(ro), free(rS), free(rq), free(rk), free(rv);
	free(o), free(S), free(dq), free(dk), free(dv);
}

static void test_dense_odd_n(void **st)
{
	(void)st;
	static const int ns[] = {1, 2, 63, 64, 65, 129, 200};
	for (size_t i = 0; i < TN_ARRAY_LEN(ns); i++)
		check_dense(2, 3, ns[i], 16, 8, NULL, 0);
	check_dense(1, 3, 130, 32, 16, NULL, 1);
	check_dense(1, 2, 70, 256, 4, NULL, 1);
}

static void test_dense_docs(void **st)
{
	(void)st;
	/* sequence 0: starts inside blocks, at a block edge, at the last token;
	 * sequence 1: a start at 0 (state_in ignored); sequence 2: none */
	static const int ptr[] = {0, 5, 7, 7};
	static const int start[] = {3, 64, 65, 100, 199, 0, 128};
	struct tn_attn_docs docs = {ptr, start};
	check_dense(3, 2, 200, 8, 8, &docs, 1);
	check_dense(3, 2, 200, 8, 8, &docs, 0);
}

/* Packed documents give the same outputs as separate sequences. */
static void test_docs_separate(void **st)
{
	(void)st;
	int H = 2, DK = 16, DV = 8, N = 150, cut = 77;
	struct tn_attn_shape sh = {1, H, N, DK, DV};
	float s[2] = {0.3f, 0.001f};
	float *q = rand_array((size_t)H * N * DK), *k = rand_array((size_t)H * N * DK),
	      *v = rand_array((size_t)H * N * DV), *o = malloc((size_t)H * N * DV * 4);
	int ptr[] = {0, 1}, start[] = {cut};
	struct tn_attn_docs docs = {ptr, start};
	assert_int_equal(lightning_attn_forward_docs(&sh, &docs, q, k, v, s, NULL, o, NULL), TN_OK);
	for (int part = 0; part < 2; part++) {
		int t0 = part ? cut : 0, n = part ? N - cut : cut;
		struct tn_attn_shape p = {1, 1, n, DK, DV};
		float *op = malloc((size_t)n * DV * 4);
		for (int h = 0; h < H; h++) {
			size_t a = (size_t)h * N + t0;
			assert_int_equal(lightning_attn_forward(&p, q + a * DK, k + a * DK, v + a * DV,
								s + h, NULL, op, NULL), TN_OK);
			assert_true(rel_err(op, o + a * DV, (size_t)n * DV) < 1e-6);
		}
		free(op);
	}
	free(q), free(k), free(v), free(o);
}

/* Forward of n1 tokens, then (a) decode token by token, (b) a second forward
 * from the state: both equal one forward of n1 + n2 tokens. */
static void test_prefill_decode(void **st)
{
	(void)st;
	int B = 2, H = 3, DK = 32, DV = 16, n1 = 70, n2 = 61, N = n1 + n2;
	struct tn_attn_shape all = {B, H, N, DK, DV}, first = {B, H, n1, DK, DV},
			     second = {B, H, n2, DK, DV};
	float s[3] = {0.9f, 0.05f, 1e-6f};
	size_t nq = (size_t)B * H * N * DK, nv = (size_t)B * H * N * DV, nS = (size_t)B * H * DK * DV;
	float *q = rand_array(nq), *k = rand_array(nq), *v = rand_array(nv);
	float *o = malloc(nv * 4), *S = malloc(nS * 4), *S1 = malloc(nS * 4), *S2 = malloc(nS * 4);
	float *o1 = malloc(nv * 4), *o2 = malloc(nv * 4), *qt = malloc(nq * 4), *kt = malloc(nq * 4),
	      *vt = malloc(nv * 4), *ot = malloc((size_t)B * H * DV * 4);
	assert_int_equal(lightning_attn_forward(&all, q, k, v, s, NULL, o, S), TN_OK);
	/* split [B,H,N,d] into the first n1 and the last n2 positions */
	for (int bh = 0; bh < B * H; bh++) {
		memcpy(qt + (size_t)bh * n1 * DK, q + (size_t)bh * N * DK, (size_t)n1 * DK * 4);
		memcpy(kt + (size_t)bh * n1 * DK, k + (size_t)bh * N * DK, (size_t)n1 * DK * 4);
		memcpy(vt + (size_t)bh * n1 * DV, v + (size_t)bh * N * DV, (size_t)n1 * DV * 4);
	}
	assert_int_equal(lightning_attn_forward(&first, qt, kt, vt, s, NULL, o1, S1), TN_OK);
	memcpy(S2, S1, nS * 4);
	for (int t = n1; t < N; t++) {
		float tq[6 * 32], tk[6 * 32], tv[6 * 16];
		for (int bh = 0; bh < B * H; bh++) {
			memcpy(tq + bh * DK, q + ((size_t)bh * N + t) * DK, DK * 4);
			memcpy(tk + bh * DK, k + ((size_t)bh * N + t) * DK, DK * 4);
			memcpy(tv + bh * DV, v + ((size_t)bh * N + t) * DV, DV * 4);
		}
		assert_int_equal(lightning_attn_decode(B, H, DK, DV, tq, tk, tv, s, S2, ot), TN_OK);
		for (int bh = 0; bh < B * H; bh++)
			assert_true(rel_err(ot + bh * DV, o + ((size_t)bh * N + t) * DV, DV) < 1e-4);
	}
	assert_true(rel_err(S2, S, nS) < 1e-5);
	for (int bh = 0; bh < B * H; bh++) {
		memcpy(qt + (size_t)bh * n2 * DK, q + ((size_t)bh * N + n1) * DK, (size_t)n2 * DK * 4);
		memcpy(kt + (size_t)bh * n2 * DK, k + ((size_t)bh * N + n1) * DK, (size_t)n2 * DK * 4);
		memcpy(vt + (size_t)bh * n2 * DV, v + ((size_t)bh * N + n1) * DV, (size_t)n2 * DV * 4);
	}
	assert_int_equal(lightning_attn_forward(&second, qt, kt, vt, s, S1, o2, S1), TN_OK);
	assert_true(rel_err(S1, S, nS) < 1e-5);
	for (int bh = 0; bh < B * H; bh++) {
		assert_true(rel_err(o1 + (size_t)bh * n1 * DV, o + (size_t)bh * N * DV,
				    (size_t)n1 * DV) < 1e-6);
		assert_true(rel_err(o2 + (size_t)bh * n2 * DV, o + ((size_t)bh * N + n1) * DV,
				    (size_t)n2 * DV) < 1e-5);
	}
	free(q), free(k), free(v), free(o), free(S), free(S1), free(S2), free(o1), free(o2);
	free(qt), free(kt), free(vt), free(ot);
}

static void test_bad_input(void **st)
{
	(void)st;
	float x[64] = {0}, s[1] = {0.5f};
	struct tn_attn_shape bad = {1, 1, 0, 4, 4}, sh = {1, 1, 4, 4, 4};
	assert_int_equal(lightning_attn_forward(&bad, x, x, x, s, NULL, x, NULL), TN_EDATA);
	assert_non_null(strstr(tn_errmsg(), "N=0"));
	int ptr[] = {0, 2}, start[] = {2, 1}, far[] = {4};
	struct tn_attn_docs d1 = {ptr, start}, d2 = {(int[]){0, 1}, far};
	assert_int_equal(lightning_attn_forward_docs(&sh, &d1, x, x, x, s, NULL, x, NULL), TN_EDATA);
	assert_int_equal(lightning_attn_backward_docs(&sh, &d2, x, x, x, s, x, x, x, x), TN_EDATA);
	assert_int_equal(lightning_attn_decode(1, 1, 0, 4, x, x, x, s, x, x), TN_EDATA);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_golden),	      cmocka_unit_test(test_dense_odd_n),
		cmocka_unit_test(test_dense_docs),    cmocka_unit_test(test_docs_separate),
		cmocka_unit_test(test_prefill_decode), cmocka_unit_test(test_bad_input),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
