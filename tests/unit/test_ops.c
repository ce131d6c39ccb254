/* test_ops.c - the fused CPU ops of issue 8 against the ops they compose
 * (residual + norm; feature map + LRPE both ways; merge + norm + gate and
 * its backward through gate, norm and head split), on an odd shape. The
 * arithmetic is the same, so the results agree to the last bit or two. */
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

static void near(const float *got, const float *want, size_t n)
{
	for (size_t i = 0; i < n; i++)
		assert_true(fabsf(got[i] - want[i]) <= 1e-6f * (1.0f + fabsf(want[i])));
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(residual_norm),
		cmocka_unit_test(act_lrpe),
		cmocka_unit_test(merge_norm_gate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
