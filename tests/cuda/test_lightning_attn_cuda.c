/* test_lightning_attn_cuda.c - GPU tests of kernels/lightning_attn.cu against
 * the CPU reference (libcore/lightning_attn.c) and ../shared/golden/attn:
 * fp32 within 1e-5 relative; bf16 within 1.5x the error of rounding the fp32
 * reference of the same (bf16) inputs to bf16. Every output is poisoned before
 * each run, so an unwritten element fails. `--small` runs only a few small
 * cases (for compute-sanitizer). Prints one line per check; exit 1 on failure. */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/attn_golden.h"
#include "lightning_attn.h"
#include "lightning_attn_cuda.h"
#include "util.h"

static int failures;
static double worst[2][2]; /* [dtype][0: outputs, 1: states] max rel err seen */
static double worst_ratio;  /* bf16 outputs: max of error / bound */

#define CK(x)                                                                                   \
	do {                                                                                    \
		cudaError_t e_ = (x);                                                           \
		if (e_ != cudaSuccess) {                                                        \
			fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(e_)); \
			exit(1);                                                                \
		}                                                                               \
	} while (0)

static uint64_t rng = 12345;
static float randn(void)
{
	double u = 0;
	for (int i = 0; i < 4; i++) {
		rng = rng * 6364136223846793005ull + 1442695040888963407ull;
		u += (double)(rng >> 11) / 9007199254740992.0;
	}
	return (float)((u - 2.0) * 1.7320508);
}

static uint16_t bf16_bits(float x)
{
	uint32_t u;
	memcpy(&u, &x, 4);
	u += 0x7fff + ((u >> 16) & 1); /* round to nearest even */
	return (uint16_t)(u >> 16);
}

static float bf16_round(float x)
{
	uint32_t u = (uint32_t)bf16_bits(x) << 16;
	float y;
	memcpy(&y, &u, 4);
	return y;
}

/* A host tensor and its device copy in the tested dtype. */
struct buf {
	size_t n;
	float *h;
	void *d;
	int dtype;
};

static void buf_new(struct buf *b, size_t n, int dtype)
{
	b->n = n;
	b->dtype = dtype;
	b->h = calloc(n, sizeof(float));
	CK(cudaMalloc(&b->d, n * (dtype == TN_ATTN_BF16 ? 2 : 4)));
}

static void buf_free(struct buf *b)
{
	free(b->h);
	cudaFree(b->d);
}

/* Fill with N(0,1) (silu'd when `act`, like real q and k), rounded to the
 * dtype so that the CPU reference sees exactly the GPU's inputs; upload. */
static void buf_rand(struct buf *b, int act)
{
	for (size_t i = 0; i < b->n; i++) {
		float x = randn();
		if (act)
			x = x / (1.0f + expf(-x));
		b->h[i] = b->dtype == TN_ATTN_BF16 ? bf16_round(x) : x;
	}
}

static void buf_upload(struct buf *b)
{
	if (b->dtype == TN_ATTN_BF16) {
		uint16_t *t = malloc(b->n * 2);
		for (size_t i = 0; i < b->n; i++)
			t[i] = bf16_bits(b->h[i]);
		CK(cudaMemcpy(b->d, t, b->n * 2, cudaMemcpyHostToDevice));
		free(t);
	} else {
		CK(cudaMemcpy(b->d, b->h, b->n * 4, cudaMemcpyHostToDevice));
	}
}

static void buf_poison(struct buf *b)
{
	CK(cudaMemset(b->d, 0xff, b->n * (b->dtype == TN_ATTN_BF16 ? 2 : 4))); /* NaN */
}

static void buf_download(struct buf *b)
{
	if (b->dtype == TN_ATTN_BF16) {
		uint16_t *t = malloc(b->n * 2);
		CK(cudaMemcpy(t, b->d, b->n * 2, cudaMemcpyDeviceToHost));
		for (size_t i = 0; i < b->n; i++) {
			uint32_t u = (uint32_t)t[i] << 16;
			memcpy(&b->h[i], &u, 4);
		}
		free(t);
	} else {
		CK(cudaMemcpy(b->h, b->d, b->n * 4, cudaMemcpyDeviceToHost));
	}
}

/* max |a - b| / max |b|; NaN anywhere gives infinity. */
static double rel_err(const float *a, const float *b, size_t n)
{
	double e = 0, m = 0;
	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)a[i] - b[i]);
		if (!(d == d))
			return INFINITY;
		e = fmax(e, d);
		m = fmax(m, fabs((double)b[i]));
	}
	return m > 0 ? e / m : e;
}

/* Check GPU output `got` (dtype of the test) against the fp32 reference. */
static void check(const char *what, const char *name, int dtype, int state, const float *got,
		  const float *ref, size_t n)
{
	double e = rel_err(got, ref, n), bound = 1e-5;
	if (dtype == TN_ATTN_BF16 && !state) {
		float *r = malloc(n * 4);
		for (size_t i = 0; i < n; i++)
			r[i] = bf16_round(ref[i]);
		bound = 1.5 * rel_err(r, ref, n);
		free(r);
	}
	int ok = e <= bound;
	worst[dtype][state] = fmax(worst[dtype][state], e);
	if (dtype == TN_ATTN_BF16 && !state)
		worst_ratio = fmax(worst_ratio, e / bound);
	printf("%s %-4s %-28s %-9s rel %.2e (bound %.2e)\n", ok ? "ok  " : "FAIL",
	       dtype == TN_ATTN_BF16 ? "bf16" : "f32", name, what, e, bound);
	failures += !ok;
}

/* Documents for a test: a few starts per sequence, some on chunk edges. */
struct docs_h {
	int *ptr, *start, n;
	int *dptr, *dstart;
	struct tn_attn_docs host, dev;
};

static void docs_make(struct docs_h *dh, int B, int N)
{
	dh->ptr = calloc((size_t)B + 1, sizeof(int));
	dh->start = calloc((size_t)B * 4, sizeof(int));
	int n = 0;
	for (int b = 0; b < B; b++) {
		int cand[4] = {b % 2 ? 0 : N / 3, N / 2 / 64 * 64, N / 2 + 1, N - 1};
		for (int i = 0; i < 4; i++)
			if (cand[i] > 0 || b % 2)
				if (n == dh->ptr[b] || cand[i] > dh->start[n - 1])
					dh->start[n++] = cand[i];
		dh->ptr[b + 1] = n;
	}
	dh->n = n;
	CK(cudaMalloc((void **)&dh->dptr, ((size_t)B + 1) * sizeof(int)));
	CK(cudaMalloc((void **)&dh->dstart, ((size_t)n + 1) * sizeof(int)));
	CK(cudaMemcpy(dh->dptr, dh->ptr, ((size_t)B + 1) * sizeof(int), cudaMemcpyHostToDevice));
	CK(cudaMemcpy(dh->dstart, dh->start, (size_t)n * sizeof(int), cudaMemcpyHostToDevice));
	dh->host = (struct tn_attn_docs){dh->ptr, dh->start};
	dh->dev = (struct tn_attn_docs){dh->dptr, dh->dstart};
}

static void docs_free(struct docs_h *dh)
{
	free(dh->ptr), free(dh->start);
	cudaFree(dh->dptr), cudaFree(dh->dstart);
}

/* Forward (with state_in when `with_state`, state_out always) and backward of
 * one random shape on the GPU vs the CPU reference; documents optional. */
static void run_case(int B, int H, int N, int DK, int DV, int dtype, int with_docs,
		     int with_state)
{
	struct tn_attn_shape sh = {B, H, N, DK, DV};
	size_t nq = (size_t)B * H * N * DK, nv = (size_t)B * H * N * DV, nS = (size_t)B * H * DK * DV;
	char name[96];
	snprintf(name, sizeof name, "B%d H%d N%d dk%d dv%d%s%s", B, H, N, DK, DV,
		 with_docs ? " docs" : "", with_state ? " S0" : "");
	struct buf q, k, v, g, o, dq, dk, dv, S0, S;
	buf_new(&q, nq, dtype), buf_new(&k, nq, dtype), buf_new(&v, nv, dtype);
	buf_new(&g, nv, dtype), buf_new(&o, nv, dtype), buf_new(&dq, nq, dtype);
	buf_new(&dk, nq, dtype), buf_new(&dv, nv, dtype);
	buf_new(&S0, nS, TN_ATTN_F32), buf_new(&S, nS, TN_ATTN_F32);
	buf_rand(&q, 1), buf_rand(&k, 1), buf_rand(&v, 0), buf_rand(&g, 0), buf_rand(&S0, 0);
	buf_upload(&q), buf_upload(&k), buf_upload(&v), buf_upload(&g), buf_upload(&S0);
	float s[64], *ds;
	for (int h = 0; h < H; h++)
		s[h] = h % 4 == 0 ? 0.9f : h % 4 == 1 ? 0.05f : h % 4 == 2 ? 1e-3f : 1e-8f;
	CK(cudaMalloc((void **)&ds, (size_t)H * 4));
	CK(cudaMemcpy(ds, s, (size_t)H * 4, cudaMemcpyHostToDevice));
	struct docs_h dh = {0};
	if (with_docs)
		docs_make(&dh, B, N);
	const struct tn_attn_docs *hd = with_docs ? &dh.host : NULL, *dd = with_docs ? &dh.dev : NULL;
	float *ro = malloc(nv * 4), *rS = malloc(nS * 4), *rq = malloc(nq * 4), *rk = malloc(nq * 4),
	      *rv = malloc(nv * 4);
	if (lightning_attn_forward_docs(&sh, hd, q.h, k.h, v.h, s, with_state ? S0.h : NULL, ro, rS) ||
	    lightning_attn_backward_docs(&sh, hd, q.h, k.h, v.h, s, g.h, rq, rk, rv)) {
		fprintf(stderr, "cpu reference: %s\n", tn_errmsg());
		exit(1);
	}
	buf_poison(&o), buf_poison(&S), buf_poison(&dq), buf_poison(&dk), buf_poison(&dv);
	int rc = lightning_attn_forward_cuda(&sh, dd, dtype, q.d, k.d, v.d, ds,
					     with_state ? S0.d : NULL, o.d, S.d, 0);
	if (!rc)
		rc = lightning_attn_backward_cuda(&sh, dd, dtype, q.d, k.d, v.d, ds, g.d, dq.d, dk.d,
						  dv.d, 0);
	if (rc) {
		fprintf(stderr, "%s: %s\n", name, tn_errmsg());
		exit(1);
	}
	CK(cudaDeviceSynchronize());
	buf_download(&o), buf_download(&S), buf_download(&dq), buf_download(&dk), buf_download(&dv);
	check("o", name, dtype, 0, o.h, ro, nv);
	check("state", name, dtype, 1, S.h, rS, nS);
	check("dq", name, dtype, 0, dq.h, rq, nq);
	check("dk", name, dtype, 0, dk.h, rk, nq);
	check("dv", name, dtype, 0, dv.h, rv, nv);
	free(ro), free(rS), free(rq), free(rk), free(rv);
	buf_free(&q), buf_free(&k), buf_free(&v), buf_free(&g), buf_free(&o), buf_free(&dq);
	buf_free(&dk), buf_free(&dv), buf_free(&S0), buf_free(&S);
	if (with_docs)
		docs_free(&dh);
	cudaFree(ds);
}

/* Prefill n1 tokens on the GPU, decode n2 more one at a time (GPU decode),
 * compare each step's output and the final state with the CPU forward of all
 * n1 + n2 tokens. */
static void run_decode(int B, int H, int DK, int DV, int n1, int n2, int dtype)
{
	int N = n1 + n2;
	struct tn_attn_shape all = {B, H, N, DK, DV}, pre = {B, H, n1, DK, DV};
	size_t nS = (size_t)B * H * DK * DV;
	char name[96];
	snprintf(name, sizeof name, "decode B%d H%d dk%d dv%d %d+%d", B, H, DK, DV, n1, n2);
	struct buf q, k, v, S, o1, qt, kt, vt, ot;
	buf_new(&q, (size_t)B * H * N * DK, dtype), buf_new(&k, (size_t)B * H * N * DK, dtype);
	buf_new(&v, (size_t)B * H * N * DV, dtype), buf_new(&S, nS, TN_ATTN_F32);
	buf_new(&o1, (size_t)B * H * n1 * DV, dtype);
	buf_new(&qt, (size_t)B * H * n1 * DK, dtype), buf_new(&kt, (size_t)B * H * n1 * DK, dtype);
	buf_new(&vt, (size_t)B * H * n1 * DV, dtype), buf_new(&ot, (size_t)B * H * DV, dtype);
	buf_rand(&q, 1), buf_rand(&k, 1), buf_rand(&v, 0);
	float s[64], *ds, *ro = malloc((size_t)B * H * N * DV * 4), *rS = malloc(nS * 4);
	for (int h = 0; h < H; h++)
		s[h] = h % 2 ? 0.7f : 1e-4f;
	CK(cudaMalloc((void **)&ds, (size_t)H * 4));
	CK(cudaMemcpy(ds, s, (size_t)H * 4, cudaMemcpyHostToDevice));
	if (lightning_attn_forward(&all, q.h, k.h, v.h, s, NULL, ro, rS))
		exit(1);
	/* the first n1 positions, packed [B,H,n1,d] */
	for (int bh = 0; bh < B * H; bh++) {
		memcpy(qt.h + (size_t)bh * n1 * DK, q.h + (size_t)bh * N * DK, (size_t)n1 * DK * 4);
		memcpy(kt.h + (size_t)bh * n1 * DK, k.h + (size_t)bh * N * DK, (size_t)n1 * DK * 4);
		memcpy(vt.h + (size_t)bh * n1 * DV, v.h + (size_t)bh * N * DV, (size_t)n1 * DV * 4);
	}
	buf_upload(&qt), buf_upload(&kt), buf_upload(&vt);
	if (lightning_attn_forward_cuda(&pre, NULL, dtype, qt.d, kt.d, vt.d, ds, NULL, o1.d, S.d, 0))
		exit(1);
	double e = 0;
	float *ref = malloc((size_t)B * H * DV * 4);
	for (int t = n1; t < N; t++) {
		for (int bh = 0; bh < B * H; bh++) {
			memcpy(qt.h + (size_t)bh * DK, q.h + ((size_t)bh * N + t) * DK, (size_t)DK * 4);
			memcpy(kt.h + (size_t)bh * DK, k.h + ((size_t)bh * N + t) * DK, (size_t)DK * 4);
			memcpy(vt.h + (size_t)bh * DV, v.h + ((size_t)bh * N + t) * DV, (size_t)DV * 4);
			memcpy(ref + (size_t)bh * DV, ro + ((size_t)bh * N + t) * DV, (size_t)DV * 4);
		}
		buf_upload(&qt), buf_upload(&kt), buf_upload(&vt), buf_poison(&ot);
		if (lightning_attn_decode_cuda(B, H, DK, DV, dtype, qt.d, kt.d, vt.d, ds, S.d, ot.d, 0))
			exit(1);
		buf_download(&ot);
		double et = rel_err(ot.h, ref, (size_t)B * H * DV);
		if (et > e) {
			e = et;
			if (t == N - 1 || e > 1e-2)
				check("o(step)", name, dtype, 0, ot.h, ref, (size_t)B * H * DV);
		}
	}
	check("o(last)", name, dtype, 0, ot.h, ref, (size_t)B * H * DV);
	buf_download(&S);
	check("state", name, dtype, 1, S.h, rS, nS);
	free(ro), free(rS), free(ref);
	buf_free(&q), buf_free(&k), buf_free(&v), buf_free(&S), buf_free(&o1);
	buf_free(&qt), buf_free(&kt), buf_free(&vt), buf_free(&ot);
	cudaFree(ds);
}

/* The official implementation's outputs, fp32 on the GPU. */
static void run_golden(void)
{
	struct golden gd;
	if (golden_open(&gd)) {
		failures++;
		return;
	}
	size_t ns = 0, cnt;
	const double *s64 = golden_get(&gd, "s", 1, &ns);
	float s[8], *ds;
	for (size_t i = 0; i < ns; i++)
		s[i] = (float)s64[i];
	CK(cudaMalloc((void **)&ds, ns * 4));
	CK(cudaMemcpy(ds, s, ns * 4, cudaMemcpyHostToDevice));
	static const struct { int n, dk, dv; } cases[] = {
		{1, 8, 64}, {1, 256, 128}, {63, 64, 64}, {64, 128, 128}, {65, 256, 128},
		{65, 8, 64}, {257, 64, 128}, {1000, 8, 64}, {1000, 64, 64},
	};
	static const char *fields[] = {"q", "k", "v", "do", "o", "S", "dq", "dk", "dv"};
	for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
		char name[64], key[96];
		snprintf(name, sizeof name, "golden n%d_dk%d_dv%d", cases[c].n, cases[c].dk, cases[c].dv);
		const float *t[9];
		for (int f = 0; f < 9; f++) {
			snprintf(key, sizeof key, "%s.%s", name + 7, fields[f]);
			t[f] = golden_get(&gd, key, 0, &cnt);
		}
		struct tn_attn_shape sh = {1, (int)ns, cases[c].n, cases[c].dk, cases[c].dv};
		size_t nq = ns * sh.N * sh.dk, nv = ns * sh.N * sh.dv, nS = ns * sh.dk * sh.dv;
		struct buf in[4], out[5];
		size_t sizes[9] = {nq, nq, nv, nv, nv, nS, nq, nq, nv};
		for (int f = 0; f < 4; f++) {
			buf_new(&in[f], sizes[f], TN_ATTN_F32);
			if (t[f])
				memcpy(in[f].h, t[f], sizes[f] * 4);
			buf_upload(&in[f]);
		}
		for (int f = 0; f < 5; f++) {
			buf_new(&out[f], sizes[4 + f], TN_ATTN_F32);
			buf_poison(&out[f]);
		}
		if (lightning_attn_forward_cuda(&sh, NULL, TN_ATTN_F32, in[0].d, in[1].d, in[2].d, ds,
						NULL, out[0].d, out[1].d, 0) ||
		    (t[3] && lightning_attn_backward_cuda(&sh, NULL, TN_ATTN_F32, in[0].d, in[1].d,
							  in[2].d, ds, in[3].d, out[2].d, out[3].d,
							  out[4].d, 0))) {
			fprintf(stderr, "%s: %s\n", name, tn_errmsg());
			exit(1);
		}
		for (int f = 0; f < 5; f++) {
			if (!t[4 + f])
				continue;
			buf_download(&out[f]);
			check(fields[4 + f], name, TN_ATTN_F32, f == 1, out[f].h, t[4 + f], sizes[4 + f]);
		}
		for (int f = 0; f < 4; f++)
			buf_free(&in[f]);
		for (int f = 0; f < 5; f++)
			buf_free(&out[f]);
	}
	cudaFree(ds);
	golden_close(&gd);
}

int main(int argc, char **argv)
{
	int small = argc > 1 && !strcmp(argv[1], "--small");
	for (int dt = 0; dt < 2; dt++) {
		run_case(1, 2, 65, 64, 64, dt, 0, 1);
		run_case(2, 2, 70, 128, 128, dt, 1, 1);
		run_decode(2, 2, 64, 64, 33, 3, dt);
		if (small)
			continue;
		run_case(1, 3, 1, 64, 64, dt, 0, 0);
		run_case(2, 3, 1, 256, 128, dt, 0, 1);
		run_case(1, 2, 64, 128, 128, dt, 0, 0);
		run_case(2, 3, 257, 256, 128, dt, 0, 1);
		run_case(1, 4, 1000, 128, 64, dt, 0, 0);
		run_case(3, 2, 333, 64, 128, dt, 1, 1);
		run_case(2, 2, 200, 8, 64, dt, 1, 0);
		run_case(1, 1, 4099, 128, 128, dt, 1, 0);
		run_case(1, 2, 300, 100, 96, dt, 0, 1);
		/* B*H enough to fill the GPU: one segment of several chunks a block */
		run_case(17, 16, 130, 64, 64, dt, 1, 1);
		run_case(4, 40, 200, 128, 128, dt, 0, 1);
		/* segments whose states come from several spans each (fine(d).ratio > 1) */
		run_case(2, 8, 1280, 64, 64, dt, 1, 1);
		run_case(2, 8, 1100, 128, 128, dt, 1, 0);
		/* on 132 multiprocessors, wgmma's state-only walk (wg_ratio): segments
		 * of 5 chunks rounded up to 6, each from 3 spans of 2 */
		run_case(2, 17, 792, 128, 128, dt, 1, 1);
		run_decode(4, 4, 128, 128, 130, 5, dt);
		run_decode(1, 2, 256, 128, 64, 3, dt);
	}
	if (!small)
		run_golden();
	printf("worst rel err: fp32 outputs %.2e states %.2e | bf16 outputs %.2e (%.2f of the "
	       "bound) states %.2e\n",
	       worst[0][0], worst[0][1], worst[1][0], worst_ratio, worst[1][1]);
	printf("%s: %d failure(s)\n", failures ? "FAIL" : "PASS", failures);
	return failures ? 1 : 0;
}
