/* test_decode_cuda.c - the fused decode ops (kernels/ops_decode.cu) through
 * both CUDA backend tables against their CPU references (ops_decode.c), on
 * fresh random inputs: decode_matmul with every prologue and epilogue, on
 * row counts of the streaming kernel and of the tensor-core path, column
 * counts with and without 16-byte loads, rows past the 8 of one launch,
 * output counts for every block width, and its argmax (against the argmax
 * of the output it wrote; with all weight rows equal, every row's is 0);
 * mixer_decode with and without LRPE, head dims with and without 16-byte
 * columns, over 128 columns, state rows past one register load, few and
 * many blocks (16 or 128 columns a block). fp32 within 1e-5 relative (norm of the difference over the norm of
 * the reference); bf16 against the CPU on the bf16-rounded weights, within
 * 1e-5 where the inputs stay fp32 (streaming) and 1e-2 where they are
 * rounded too (tensor cores). Outputs are poisoned (NaN) first, so an
 * unwritten element fails. `--small`: small shapes only (compute-sanitizer).
 * Prints one line per check; exit 1 on failure. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "ops_decode.h"
#include "ops_decode_cuda.h"
#include "util.h"

static int failures;
static uint64_t rng = 2026;

static double uniform(void)
{
	rng = rng * 6364136223846793005ull + 1442695040888963407ull;
	return (double)(rng >> 11) / 9007199254740992.0;
}

static float randn(void)
{
	double u = 0;
	for (int i = 0; i < 4; i++)
		u += uniform();
	return (float)((u - 2.0) * 1.7320508);
}

static float *host(size_t n, float scale)
{
	float *x = malloc(n * sizeof(float));
	if (!x) {
		fprintf(stderr, "test_decode_cuda: out of memory\n");
		exit(1);
	}
	for (size_t i = 0; i < n; i++)
		x[i] = scale * randn();
	return x;
}

static float bf16_round(float x)
{
	uint32_t u;
	memcpy(&u, &x, 4);
	u += 0x7fff + ((u >> 16) & 1);
	u &= 0xffff0000u;
	memcpy(&x, &u, 4);
	return x;
}

/* Device copy of n host floats (NULL stays NULL). */
static float *dev(const struct tn_backend *be, const float *h, size_t n)
{
	if (!h)
		return NULL;
	float *d = be->alloc(n * sizeof(float));
	if (!d) {
		fprintf(stderr, "test_decode_cuda: %s\n", tn_errmsg());
		exit(1);
	}
	be->upload(d, h, n * sizeof(float));
	return d;
}

static float *poisoned(const struct tn_backend *be, size_t n)
{
	float *h = malloc(n * sizeof(float)), *d;
	for (size_t i = 0; i < n; i++)
		h[i] = NAN;
	d = dev(be, h, n);
	free(h);
	return d;
}

/* ||got - ref|| / ||ref||; NaN when got has one. */
static double rel_err(const float *got, const float *ref, size_t n)
{
	double num = 0, den = 0;
	for (size_t i = 0; i < n; i++) {
		double d = (double)got[i] - ref[i];
		num += d * d;
		den += (double)ref[i] * ref[i];
	}
	return sqrt(num / (den > 0 ? den : 1));
}

static void check(const char *be, const char *what, double err, double tol)
{
	int ok = err <= tol; /* false for NaN */
	printf("%s %s: %s: rel err %.2e (<= %.0e)\n", ok ? "ok  " : "FAIL", be, what, err, tol);
	failures += !ok;
}

struct mm_case {
	int BT, C, OC, norm, gate, res, w2, amax, same;
};

static void test_matmul(const struct tn_backend *be, const struct mm_case *k)
{
	int bf16 = !strcmp(be->name, "cuda-bf16"), ldg = k->gate ? 3 * k->C + 4 : 0;
	size_t nx = (size_t)k->BT * k->C, nw = (size_t)k->OC * k->C, no = (size_t)k->BT * k->OC;
	float *x = host(nx, 1.5f), *w = host(nw, 1.0f / sqrtf((float)k->C));
	float *w2 = k->w2 ? host(nw, 1.0f / sqrtf((float)k->C)) : NULL;
	for (size_t i = k->C; k->same && i < nw; i++)
		w[i] = w[i % k->C];
	float *g = k->gate ? host((size_t)k->BT * ldg, 1.0f) : NULL;
	float *res = k->res ? host(no, 1.0f) : NULL, *ref = host(no, 0), *got = host(no, 0);
	float *dx = dev(be, x, nx), *dw = dev(be, w, nw), *dw2 = dev(be, w2, nw);
	float *dg = dev(be, g, k->BT * (size_t)ldg), *dres = dev(be, res, no);
	float *dout = poisoned(be, no);
	int32_t ids[64], want[64], *dids = k->amax ? be->alloc(sizeof ids) : NULL;
	struct tn_dmm a = {dx, dw, dw2, dg, dres, dids, k->norm, ldg, k->BT, k->C, k->OC};
	int rc = be->decode_matmul(dout, &a);
	if (!rc)
		rc = be->status();
	be->download(got, dout, no * sizeof(float));
	if (dids)
		be->download(ids, dids, k->BT * sizeof(int32_t));
	for (size_t i = 0; bf16 && i < nw; i++) { /* the reference of the bf16 weights */
		w[i] = bf16_round(w[i]);
		if (w2)
			w2[i] = bf16_round(w2[i]);
	}
	struct tn_dmm h = {x, w, w2, g, res, NULL, k->norm, ldg, k->BT, k->C, k->OC};
	if (!rc)
		rc = decode_matmul(ref, &h);
	char what[160];
	snprintf(what, sizeof what, "decode_matmul rows %d, %d -> %d%s%s%s%s%s%s", k->BT, k->C,
		 k->OC, k->norm ? ", norm" : "", k->gate ? ", gate" : "", k->w2 ? ", sglu" : "",
		 k->res ? ", residual" : "", k->amax ? ", argmax" : "", k->same ? " (rows equal)" : "");
	check(be->name, what, rc ? NAN : rel_err(got, ref, no), bf16 && k->BT > TN_DMM_ROWS ? 1e-2 : 1e-5);
	if (k->amax) {
		tn_backend_cpu.argmax_rows(want, got, k->BT, k->OC);
		int ok = !rc;
		for (int r = 0; ok && r < k->BT; r++)
			ok = ids[r] == want[r] && (!k->same || ids[r] == 0);
		printf("%s %s:   its argmax\n", ok ? "ok  " : "FAIL", be->name);
		failures += !ok;
	}
	float *dv[] = {dx, dw, dw2, dg, dres, dout, (float *)dids};
	for (size_t i = 0; i < sizeof dv / sizeof *dv; i++)
		if (dv[i])
			be->free(dv[i]);
	free(x), free(w), free(w2), free(g), free(res), free(ref), free(got);
}

struct mix_case {
	int B, H, hd, lrpe;
	enum tn_act act;
};

static void test_mixer(const struct tn_backend *be, const struct mix_case *k)
{
	int E = k->H * k->hd, dk = (k->lrpe ? 2 : 1) * k->hd;
	size_t np = (size_t)k->B * 4 * E, ns = (size_t)k->B * k->H * dk * k->hd;
	size_t no = (size_t)k->B * E;
	float *p = host(np, 1.0f), *s = host(ns, 0.3f), *o = host(no, 0), *got = host(no, 0);
	float *sgot = host(ns, 0), *theta = k->lrpe ? host(E, 0) : NULL, *decay = host(k->H, 0);
	int32_t pos[64], *dpos;
	for (int b = 0; b < k->B; b++)
		pos[b] = (int32_t)(uniform() * 100000);
	for (int i = 0; theta && i < E; i++)
		theta[i] = (float)uniform();
	for (int h = 0; h < k->H; h++)
		decay[h] = (float)(0.01 + uniform());
	float *dp = dev(be, p, np), *ds = dev(be, s, ns), *dth = dev(be, theta, E);
	float *ddec = dev(be, decay, k->H), *dout = poisoned(be, no);
	dpos = be->alloc(sizeof pos);
	be->upload(dpos, pos, sizeof pos);
	int rc = be->mixer_decode(dout, dp, dpos, dth, ddec, ds, k->B, k->H, k->hd, k->act);
	if (!rc)
		rc = be->status();
	be->download(got, dout, no * sizeof(float));
	be->download(sgot, ds, ns * sizeof(float));
	if (!rc)
		rc = mixer_decode(o, p, pos, theta, decay, s, k->B, k->H, k->hd, k->act);
	char what[160];
	snprintf(what, sizeof what, "mixer_decode B %d, H %d, hd %d%s, act %d", k->B, k->H, k->hd,
		 k->lrpe ? ", lrpe" : "", (int)k->act);
	check(be->name, what, rc ? NAN : rel_err(got, o, no), 1e-5);
	check(be->name, "  its state", rc ? NAN : rel_err(sgot, s, ns), 1e-5);
	float *dv[] = {dp, ds, dth, ddec, dout, (float *)dpos};
	for (size_t i = 0; i < sizeof dv / sizeof *dv; i++)
		if (dv[i])
			be->free(dv[i]);
	free(p), free(s), free(o), free(got), free(sgot), free(theta), free(decay);
}

int main(int argc, char **argv)
{
	int small = argc > 1 && !strcmp(argv[1], "--small");
	static const struct mm_case mm_small[] = {
		{1, 256, 384, 1, 0, 0, 0, 0, 0},   {1, 256, 200, 1, 1, 1, 0, 0, 0},
		{3, 264, 130, 0, 0, 1, 0, 0, 0},   {5, 100, 70, 1, 0, 0, 1, 0, 0},
		{2, 98, 33, 1, 1, 0, 0, 0, 0},     {8, 64, 40, 0, 1, 1, 1, 0, 0},
		{12, 256, 96, 1, 1, 1, 0, 0, 0},   {20, 512, 300, 1, 0, 0, 1, 0, 0},
		{6, 2000, 50, 1, 1, 1, 0, 0, 0},   {7, 1602, 20, 1, 0, 0, 1, 0, 0},
		{1, 256, 4103, 1, 0, 0, 1, 0, 0},  {1, 2056, 8203, 0, 1, 1, 0, 0, 0},
		{1, 256, 3001, 1, 0, 1, 0, 1, 0},  {3, 64, 1000, 1, 0, 0, 0, 1, 1},
		{10, 100, 777, 1, 0, 0, 0, 1, 0},  {1, 40, 2500, 0, 0, 0, 0, 1, 1},
		{1, 98, 300, 1, 1, 0, 0, 0, 0},    {1, 1602, 50, 1, 0, 1, 1, 0, 0},
	};
	static const struct mm_case mm_big[] = {
		{1, 2048, 8192, 1, 0, 0, 0, 0, 0},  {1, 2048, 2048, 1, 1, 1, 0, 0, 0},
		{4, 2048, 5632, 1, 0, 0, 1, 0, 0},  {1, 5632, 2048, 0, 0, 1, 0, 0, 0},
		{1, 2048, 5632, 1, 0, 0, 1, 0, 0},  {8, 2048, 5632, 1, 0, 0, 1, 0, 0},
		{8, 5632, 2048, 0, 0, 1, 0, 0, 0},  {64, 2048, 2048, 1, 1, 1, 0, 0, 0},
		{64, 2048, 5632, 1, 0, 0, 1, 0, 0}, {1, 2048, 32000, 1, 0, 0, 0, 1, 0},
		{4, 2048, 32000, 1, 0, 0, 0, 1, 0},
	};
	static const struct mix_case mix_small[] = {
		{1, 4, 64, 1, TN_ACT_SILU}, {3, 2, 48, 0, TN_ACT_RELU}, {2, 3, 40, 1, TN_ACT_NONE},
		{2, 3, 42, 1, TN_ACT_SILU}, {1, 2, 96, 1, TN_ACT_SILU}, {2, 2, 160, 0, TN_ACT_RELU},
	};
	static const struct mix_case mix_big[] = {
		{1, 16, 128, 1, TN_ACT_SILU},  {8, 16, 128, 0, TN_ACT_SILU}, {64, 8, 128, 1, TN_ACT_SILU},
		{64, 16, 128, 1, TN_ACT_SILU}, {40, 16, 42, 1, TN_ACT_RELU},
	};
	const struct tn_backend *bes[] = {tn_backend_find("cuda"), tn_backend_find("cuda-bf16")};
	for (int i = 0; i < 2; i++) {
		const struct tn_backend *be = bes[i];
		for (size_t c = 0; c < TN_ARRAY_LEN(mm_small); c++)
			test_matmul(be, &mm_small[c]);
		for (size_t c = 0; c < TN_ARRAY_LEN(mix_small); c++)
			test_mixer(be, &mix_small[c]);
		for (size_t c = 0; !small && c < TN_ARRAY_LEN(mm_big); c++)
			test_matmul(be, &mm_big[c]);
		for (size_t c = 0; !small && c < TN_ARRAY_LEN(mix_big); c++)
			test_mixer(be, &mix_big[c]);
	}
	printf("test_decode_cuda: %s\n", failures ? "FAILED" : "all passed");
	return failures != 0;
}
