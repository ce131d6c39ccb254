/* test_ops.c - the fused CPU ops of issue 8 against the ops they compose
 * (residual + norm; feature map + LRPE both ways; merge + norm + gate and
 * its backward through gate, norm and head split), on an odd shape. The
 * arithmetic is the same, so the results agree to the last bit or two.
 * And the cross-entropy (its gradient kept by the forward) against the
 * formulas in double, with an ignored row and a scale. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

enum { B = 2, N_SEQ = 5, H = 3, HD = 6, E = H * HD, ROWS = B * N_SEQ, NE = ROWS * E };

static uint64_t rng = 7;

static void fill(float *x, size_t n, float lo, float hi)
{
	for (size_t i = 0; i < n; i++) {
		rng = rng * 6364136223846793005ull + 1442695040888963407ull;
		x[i] = lo + (hi - lo) * (float)((rng >> 40) & 0xffffff) / (float)0xffffff;
	}
}

static void near_tol(const float *got, const float *want, size_t n, float tol)
{
	for (size_t i = 0; i < n; i++)
		assert_true(fabsf(got[i] - want[i]) <= tol * (1.0f + fabsf(want[i])));
}

static void near(const float *got, const float *want, size_t n)
{
	near_tol(got, want, n, 1e-6f);
}

static void residual_norm(void **s)
{
	(void)s;
	float a[NE], b[NE], sum[NE], out[NE], rstd[ROWS], sum2[NE], out2[NE], rstd2[ROWS];
	fill(a, NE, -2, 2);
	fill(b, NE, -2, 2);
	residual_norm_forward(sum, out, rstd, a, b, ROWS, E);
	residual_forward(sum2, a, b, NE);
	srmsnorm_forward(out2, rstd2, sum2, ROWS, E);
	near(sum, sum2, NE);
	near(out, out2, NE);
	near(rstd, rstd2, ROWS);
	residual_norm_forward(a, out, rstd, a, b, ROWS, E); /* in place */
	near(a, sum2, NE);
}

static void act_lrpe(void **s)
{
	(void)s;
	float inp[NE], theta[E], x[NE], out[2 * NE], out2[2 * NE], g[2 * NE], dx[NE], dinp[NE],
	      dinp2[NE], dth[E], dth2[E];
	int32_t pos[ROWS];
	for (int i = 0; i < ROWS; i++)
		pos[i] = 2 * i;
	fill(inp, NE, -3, 3);
	fill(theta, E, 0, 1);
	fill(g, 2 * NE, -1, 1);
	fill(dth, E, -1, 1);
	memcpy(dth2, dth, sizeof(dth));
	act_lrpe_forward(out, inp, theta, pos, B, N_SEQ, H, HD, TN_ACT_SILU);
	act_forward(x, inp, NE, TN_ACT_SILU);
	lrpe_forward(out2, x, theta, pos, B, N_SEQ, H, HD);
	near(out, out2, 2 * NE);
	act_lrpe_backward(dinp, dth, g, inp, theta, pos, B, N_SEQ, H, HD, TN_ACT_SILU);
	lrpe_backward(dx, dth2, g, x, theta, pos, B, N_SEQ, H, HD);
	act_backward(dinp2, dx, inp, NE, TN_ACT_SILU);
	near(dinp, dinp2, NE);
	near(dth, dth2, E);
}

static void merge_norm_gate(void **s)
{
	(void)s;
	float oh[NE], u[NE], on[NE], z[NE], rstd[ROWS], o[NE], on2[NE], z2[NE], rstd2[ROWS];
	float dz[NE], du[NE], doh[NE], du2[NE], don[NE], dob[NE], doh2[NE];
	fill(oh, NE, -2, 2);
	fill(u, NE, -2, 2);
	fill(dz, NE, -1, 1);
	merge_norm_gate_forward(on, rstd, z, oh, u, B, N_SEQ, H, HD);
	heads_merge(o, oh, B, N_SEQ, H, HD);
	srmsnorm_forward(on2, rstd2, o, ROWS, E);
	gate_forward(z2, u, on2, NE);
	near(on, on2, NE);
	near(z, z2, NE);
	near(rstd, rstd2, ROWS);
	gate_norm_split_backward(du, doh, dz, u, on, rstd, B, N_SEQ, H, HD);
	gate_backward(du2, don, dz, u, on, NE);
	memset(dob, 0, sizeof(dob));
	srmsnorm_backward(dob, don, on, rstd, ROWS, E);
	lrpe_forward(doh2, dob, NULL, NULL, B, N_SEQ, H, HD);
	near(du, du2, NE);
	near(doh, doh2, NE);
}

/* loss = lse - logit[target]; d(scale * sum loss)/dlogits = scale (softmax
 * - onehot); dx = that E, demb += that^T x; an ignored row gives nothing. */
static void crossentropy(void **s)
{
	(void)s;
	enum { V = 37, C = E };
	float x[ROWS * C], emb[V * C], loss[ROWS], dx[ROWS * C], demb[V * C], scratch[ROWS * V];
	float want_loss[ROWS], want_dx[ROWS * C], want_demb[V * C];
	int32_t tgt[ROWS];
	const float scale = 0.25f;
	fill(x, ROWS * C, -1, 1);
	fill(emb, V * C, -1, 1);
	fill(demb, V * C, -1, 1);
	memcpy(want_demb, demb, sizeof(demb));
	memset(want_dx, 0, sizeof(want_dx));
	for (int i = 0; i < ROWS; i++)
		tgt[i] = i == 3 ? -1 : (7 * i + 2) % V;
	for (int i = 0; i < ROWS; i++) {
		double lg[V], top = -INFINITY, sum = 0;
		for (int v = 0; v < V; v++) {
			lg[v] = 0;
			for (int c = 0; c < C; c++)
				lg[v] += (double)x[i * C + c] * emb[v * C + c];
			top = fmax(top, lg[v]);
		}
		for (int v = 0; v < V; v++)
			sum += exp(lg[v] - top);
		want_loss[i] = tgt[i] < 0 ? 0.0f : (float)(top + log(sum) - lg[tgt[i]]);
		for (int v = 0; v < V && tgt[i] >= 0; v++) {
			double g = scale * (exp(lg[v] - top) / sum - (v == tgt[i]));
			for (int c = 0; c < C; c++) {
				want_dx[i * C + c] += (float)(g * emb[v * C + c]);
				want_demb[v * C + c] += (float)(g * x[i * C + c]);
			}
		}
	}
	crossentropy_forward(loss, x, emb, tgt, ROWS, C, V, scratch);
	crossentropy_backward(dx, demb, x, emb, scale, ROWS, C, V, scratch);
	near_tol(loss, want_loss, ROWS, 1e-5f);
	near_tol(dx, want_dx, ROWS * C, 1e-5f);
	near_tol(demb, want_demb, V * C, 1e-5f);
	assert_int_equal(tn_xent_scratch(ROWS, V), ROWS * V);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(residual_norm),
		cmocka_unit_test(act_lrpe),
		cmocka_unit_test(merge_norm_gate),
		cmocka_unit_test(crossentropy),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
