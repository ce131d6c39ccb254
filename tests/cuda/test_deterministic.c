/* test_deterministic.c - bit-for-bit guarantees of the GPU training path,
 * on both CUDA backends (cuda, cuda-bf16): the embedding gradient equals the
 * CPU reference's (ids repeated, runs longer than a tile, padding); the
 * fused AdamW equals the per-tensor one and the CPU's (a table with gaps and
 * a ZeRO shard; on cuda-bf16 it keeps the weights' bf16 shadows current);
 * and two 20-step training runs from the same seed give the
 * same losses and weights. `--small`: small shapes and 3 steps (for
 * compute-sanitizer). Prints one line per check; exit 1 on failure. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "config.h"
#include "model.h"
#include "ops.h"
#include "optim.h"
#include "util.h"

static int failures;
static uint64_t rng = 12345;

static uint32_t next_rand(void)
{
	rng = rng * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)(rng >> 33);
}

static float rand_float(void) { return (float)((int)(next_rand() % 20001) - 10000) / 7777.0f; }

static void check(int ok, const char *be, const char *what)
{
	printf("%s %s: %s\n", ok ? "ok  " : "FAIL", be, what);
	failures += !ok;
}

static void die(int rc)
{
	fprintf(stderr, "test_deterministic: %s (rc %d)\n", tn_errmsg(), rc);
	exit(1);
}

static void *dev_copy(const struct tn_backend *be, const void *host, size_t bytes)
{
	void *d = be->alloc(bytes);
	if (!d)
		die(TN_ENOMEM);
	be->upload(d, host, bytes);
	return d;
}

static int same_on_device(const struct tn_backend *be, const void *dev, const void *host,
			  size_t bytes)
{
	void *h = malloc(bytes);
	if (!h)
		die(TN_ENOMEM);
	be->download(h, dev, bytes);
	int rc = be->status();
	if (rc)
		die(rc);
	int same = !memcmp(h, host, bytes);
	free(h);
	return same;
}

/* Token ids with one id taking 60 % of the positions (a run longer than a
 * tile of 256), the padding id among them, C not a multiple of 32. */
static void embedding(const struct tn_backend *be, int small)
{
	int BT = small ? 600 : 6000, C = small ? 70 : 300, V = small ? 11 : 97, pad = 4;
	int32_t *tok = malloc(BT * sizeof(int32_t));
	float *dout = malloc((size_t)BT * C * 4), *demb = malloc((size_t)V * C * 4);
	if (!tok || !dout || !demb)
		die(TN_ENOMEM);
	for (int t = 0; t < BT; t++)
		tok[t] = next_rand() % 10 < 6 ? 2 : (int32_t)(next_rand() % (uint32_t)V);
	for (size_t i = 0; i < (size_t)BT * C; i++)
		dout[i] = rand_float();
	for (size_t i = 0; i < (size_t)V * C; i++)
		demb[i] = rand_float();
	int32_t *dtok = dev_copy(be, tok, BT * sizeof(int32_t));
	float *ddout = dev_copy(be, dout, (size_t)BT * C * 4), *ddemb = dev_copy(be, demb, (size_t)V * C * 4);
	for (int rep = 0; rep < 2; rep++) {
		be->embedding_backward(ddemb, ddout, dtok, BT, C, 0.37f, pad);
		tn_backend_cpu.embedding_backward(demb, dout, tok, BT, C, 0.37f, pad);
	}
	check(same_on_device(be, ddemb, demb, (size_t)V * C * 4), be->name,
	      "embedding gradient (twice, accumulated) equals the CPU's bit for bit");
	be->free(dtok);
	be->free(ddout);
	be->free(ddemb);
	free(tok);
	free(dout);
	free(demb);
}

/* out = inp w^T through the backend, w [100, N / 100]: on cuda-bf16 it
 * reads w's bf16 shadow (made on the first use, then kept by AdamW). */
static float *product(const struct tn_backend *be, const float *w, const float *inp, size_t N)
{
	int C = (int)(N / 100);
	float *out = be->alloc(4 * 100 * sizeof(float));
	if (!out)
		die(TN_ENOMEM);
	be->matmul_forward(out, inp, w, 4, C, 100, 0);
	return out;
}

/* The fused update against adamw_update per tensor, on the device, and
 * against the CPU: three steps over a table with gaps and a shard; on
 * cuda-bf16 the weights' shadows after them are those of the result. */
static void adamw(const struct tn_backend *be, int small)
{
	size_t N = small ? 5000 : 3000000, lo = N / 10, hi = N - N / 7;
	const struct tn_adamw_seg seg[] = {
		{N / 2, N / 4, 0.0f}, {7, N / 5, 0.1f}, {N / 5 + 100, N / 2 - N / 5 - 150, 0.0f},
		{N / 2 + N / 4, N / 4, 0.05f},
	};
	size_t n_seg = sizeof seg / sizeof seg[0];
	const struct tn_adamw_args a = {1e-2f, 0.9f, 0.95f, 1e-8f, 0.7f, 0.271f, 0.0975f};
	float *p = malloc(N * 4), *g = malloc(N * 4), *m = calloc(hi - lo, 4), *v = calloc(hi - lo, 4);
	if (!p || !g || !m || !v)
		die(TN_ENOMEM);
	for (size_t i = 0; i < N; i++) {
		p[i] = rand_float();
		g[i] = rand_float() / 10;
	}
	float *dp[2], *dm[2], *dv[2], *dg = dev_copy(be, g, N * 4);
	for (int k = 0; k < 2; k++) {
		dp[k] = dev_copy(be, p, N * 4);
		dm[k] = dev_copy(be, m, (hi - lo) * 4);
		dv[k] = dev_copy(be, v, (hi - lo) * 4);
	}
	float *x = malloc(4 * (N / 100) * 4);
	if (!x)
		die(TN_ENOMEM);
	for (size_t i = 0; i < 4 * (N / 100); i++)
		x[i] = rand_float();
	float *dx = dev_copy(be, x, 4 * (N / 100) * 4);
	for (int k = 0; k < 2; k++) /* the shadows exist before the updates */
		be->free(product(be, dp[k], dx, N));
	for (int step = 0; step < 3; step++) {
		be->adamw_fused(dp[0], dg, dm[0], dv[0], lo, hi, seg, n_seg, &a);
		tn_backend_cpu.adamw_fused(p, g, m, v, lo, hi, seg, n_seg, &a);
		for (size_t i = 0; i < n_seg; i++) {
			size_t x = TN_MAX(seg[i].offset, lo), y = TN_MIN(seg[i].offset + seg[i].numel, hi);
			if (x < y)
				be->adamw_update(dp[1] + x, dg + x, dm[1] + (x - lo), dv[1] + (x - lo),
						 y - x, a.lr, a.beta1, a.beta2, a.eps, seg[i].wd,
						 a.gscale, a.bc1, a.bc2);
		}
	}
	int fused_cpu = same_on_device(be, dp[0], p, N * 4) &&
			same_on_device(be, dm[0], m, (hi - lo) * 4) &&
			same_on_device(be, dv[0], v, (hi - lo) * 4);
	float *back = malloc(N * 4);
	if (!back)
		die(TN_ENOMEM);
	be->download(back, dp[1], N * 4);
	int per_tensor_cpu = same_on_device(be, dp[0], back, N * 4);
	be->download(back, dm[1], (hi - lo) * 4);
	per_tensor_cpu = per_tensor_cpu && same_on_device(be, dm[0], back, (hi - lo) * 4);
	check(fused_cpu, be->name, "fused AdamW (3 steps, shard, gaps) equals the CPU's bit for bit");
	check(per_tensor_cpu, be->name, "fused AdamW equals the per-tensor launches bit for bit");
	/* the product through each updated buffer's shadow, against one through
	 * a new buffer holding the updated weights (its shadow made from them) */
	float *fresh = dev_copy(be, p, N * 4), *want = product(be, fresh, dx, N), *got[2];
	float *host = malloc(400 * sizeof(float));
	if (!host)
		die(TN_ENOMEM);
	be->download(host, want, 400 * sizeof(float));
	int shadows = 1;
	for (int k = 0; k < 2; k++) {
		got[k] = product(be, dp[k], dx, N);
		shadows = shadows && same_on_device(be, got[k], host, 400 * sizeof(float));
		be->free(got[k]);
	}
	check(shadows, be->name, "products after fused and per-tensor AdamW read current weights");
	be->free(fresh);
	be->free(want);
	be->free(dx);
	free(host);
	free(x);
	for (int k = 0; k < 2; k++) {
		be->free(dp[k]);
		be->free(dm[k]);
		be->free(dv[k]);
	}
	be->free(dg);
	free(back);
	free(p);
	free(g);
	free(m);
	free(v);
}

/* A run of `steps` AdamW steps from seed 7 on a stream with repeated
 * tokens; its losses and final weights (host copies, caller frees). */
static void run(const struct tn_backend *be, const struct tn_config *c, int steps, int B, int n,
		double *losses, float **weights, size_t *n_floats)
{
	struct tn_model *m;
	struct tn_optim *opt;
	struct tn_optim_opts oo;
	tn_optim_defaults(&oo);
	oo.steps = steps;
	int rc = tn_model_new(&m, c, be);
	if (!rc)
		rc = tn_model_init(m, 7);
	if (!rc)
		rc = tn_optim_new(&opt, m, &oo);
	if (rc)
		die(rc);
	int32_t *tok = malloc((size_t)B * n * 4), *tgt = malloc((size_t)B * n * 4);
	if (!tok || !tgt)
		die(TN_ENOMEM);
	uint64_t data = 99;
	for (int s = 0; s < steps && !rc; s++) {
		for (int i = 0; i < B * n; i++) {
			data = data * 6364136223846793005ull + 1442695040888963407ull;
			tok[i] = (int32_t)((data >> 33) % (uint64_t)c->vocab_size);
			tgt[i] = (int32_t)((7 * (int64_t)tok[i] + 3) % c->vocab_size);
		}
		double gn, lr;
		rc = tn_model_zero_grad(m);
		if (!rc)
			rc = tn_model_forward(m, tok, tgt, B, n, &losses[s]);
		if (!rc)
			rc = tn_model_backward(m, 1.0f);
		if (!rc)
			rc = tn_optim_step(opt, m, &gn, &lr);
	}
	*n_floats = m->n_floats;
	*weights = malloc(m->n_floats * 4);
	if (!*weights)
		die(TN_ENOMEM);
	be->download(*weights, m->params, m->n_floats * 4);
	if (!rc)
		rc = be->status();
	if (rc)
		die(rc);
	free(tok);
	free(tgt);
	tn_optim_free(opt, m);
	tn_model_free(m);
}

static void training(const struct tn_backend *be, int small)
{
	struct tn_config c;
	if (tn_config_preset(&c, small ? "tiny" : "small"))
		die(1);
	c.vocab_size = small ? 64 : 256;
	int steps = small ? 3 : 20, B = small ? 2 : 8, n = small ? 16 : 128;
	double l[2][20];
	float *w[2];
	size_t nf[2];
	for (int k = 0; k < 2; k++)
		run(be, &c, steps, B, n, l[k], &w[k], &nf[k]);
	char what[96];
	snprintf(what, sizeof what, "two %d-step runs: the same losses (last %.6f) and weights",
		 steps, l[0][steps - 1]);
	check(!memcmp(l[0], l[1], (size_t)steps * sizeof(double)) && nf[0] == nf[1] &&
		      !memcmp(w[0], w[1], nf[0] * 4), be->name, what);
	free(w[0]);
	free(w[1]);
}

int main(int argc, char **argv)
{
	int small = argc > 1 && !strcmp(argv[1], "--small");
	const char *names[] = {"cuda", "cuda-bf16"};
	for (int i = 0; i < 2; i++) {
		const struct tn_backend *be = tn_backend_find(names[i]);
		if (!be)
			die(TN_EUSAGE);
		embedding(be, small);
		adamw(be, small);
		training(be, small);
	}
	return failures ? 1 : 0;
}
