/* test_infer_bf16.c - inference on the mixed-precision backend (cuda-bf16)
 * against the fp32 one (cuda) on the same weights: prefill blocks keep the
 * products' inputs in bf16 only (operands of the one layer work set that
 * all layers share), decode steps keep them fp32. Checked, as the relative
 * L2 norm of the difference: the parallel form's logits without targets,
 * the logits of a prefill crossing blocks (one long sequence; many at the
 * least block length a sequence), the states it leaves and the decode
 * steps after it. `--small`: one block of a tiny model (for
 * compute-sanitizer). Prints one line per check; exit 1 on failure. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "config.h"
#include "model.h"
#include "util.h"

#define TOL 5e-2 /* bf16 products, as test_train_bf16 allows its gradients */
#define STEPS 4

static int failures;

static void die(int rc)
{
	fprintf(stderr, "test_infer_bf16: %s (rc %d)\n", tn_errmsg(), rc);
	exit(1);
}

static void *alloc(size_t bytes)
{
	void *p = tn_malloc(bytes);
	if (!p)
		die(TN_ENOMEM);
	return p;
}

/* Both CUDA backends' models of a preset (vocabulary V) with the same
 * random weights: drawn on the fp32 one, uploaded to the bf16 one (whose
 * shadows follow uploads). */
static void models(const char *preset, int V, struct tn_model **m32, struct tn_model **m16)
{
	const struct tn_backend *b32 = tn_backend_find("cuda"), *b16 = tn_backend_find("cuda-bf16");
	struct tn_config c;
	int rc = b32 && b16 ? tn_config_preset(&c, preset) : TN_EUSAGE;
	c.vocab_size = V;
	if (!rc)
		rc = tn_model_new(m32, &c, b32);
	if (!rc && !(rc = tn_model_new(m16, &c, b16)))
		rc = tn_model_init(*m32, 7);
	if (rc)
		die(rc);
	size_t bytes = (*m32)->n_floats * sizeof(float);
	float *w = alloc(bytes);
	b32->download(w, (*m32)->params, bytes);
	b16->upload((*m16)->params, w, bytes);
	free(w);
}

static void check(const char *what, int B, int n, const float *got, const float *want,
		  size_t count)
{
	double d = 0, r = 0;
	for (size_t i = 0; i < count; i++) {
		d += ((double)got[i] - want[i]) * ((double)got[i] - want[i]);
		r += (double)want[i] * want[i];
	}
	double rel = sqrt(d / (r > 0 ? r : 1e-30));
	int ok = rel <= TOL; /* NaN fails */
	printf("%s %s, batch %d x %d: %.3g (limit %.3g)\n", ok ? "ok  " : "FAIL", what, B, n, rel,
	       TOL);
	failures += !ok;
}

/* What one backend makes of B sequences of n tokens: the parallel form's
 * logits, the prefill's logits and last layer's state, then STEPS decode
 * steps' logits. */
struct run {
	float *parallel, *prefill, *state, *decode;
};

static void infer(struct tn_model *m, const int32_t *tok, int B, int n, struct run *r)
{
	int V = m->cfg.vocab_size, L = m->cfg.layers;
	size_t rows = (size_t)B * n, sfl = tn_infer_bytes_per_sequence(m) / sizeof(float);
	r->parallel = alloc(rows * V * sizeof(float));
	r->prefill = alloc(rows * V * sizeof(float));
	r->state = alloc((size_t)B * sfl * sizeof(float));
	r->decode = alloc((size_t)STEPS * B * V * sizeof(float));
	struct tn_infer *st;
	int rc = tn_model_forward(m, tok, NULL, B, n, NULL);
	if (!rc)
		rc = tn_model_logits(m, r->parallel);
	if (!rc)
		rc = tn_infer_new(&st, m, B);
	if (!rc)
		rc = tn_model_prefill(m, st, tok, n, r->prefill);
	if (!rc)
		rc = tn_infer_state(st, L - 1, r->state);
	for (int s = 0; !rc && s < STEPS; s++)
		rc = tn_model_decode(m, st, tok + (size_t)s * B, r->decode + (size_t)s * B * V);
	if (rc || (rc = m->be->status()))
		die(rc);
	tn_infer_free(st);
}

static void run_free(struct run *r)
{
	free(r->parallel);
	free(r->prefill);
	free(r->state);
	free(r->decode);
}

static void compare(struct tn_model *m32, struct tn_model *m16, int B, int n)
{
	int V = m32->cfg.vocab_size, L = m32->cfg.layers;
	int32_t *tok = alloc((size_t)B * n * sizeof(int32_t));
	uint64_t x = (uint64_t)B * 1000003u + (uint64_t)n;
	for (size_t i = 0; i < (size_t)B * n; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		tok[i] = (int32_t)((x >> 33) % (uint64_t)V);
	}
	struct run a, b;
	infer(m32, tok, B, n, &a);
	infer(m16, tok, B, n, &b);
	size_t rows = (size_t)B * n, sfl = (size_t)B * m32->heads *
					   (m32->cfg.lrpe[L - 1] ? 2 : 1) *
					   tn_config_head_dim(&m32->cfg) * tn_config_head_dim(&m32->cfg);
	check("parallel form logits", B, n, b.parallel, a.parallel, rows * V);
	check("prefill logits", B, n, b.prefill, a.prefill, rows * V);
	check("last layer's state after the prefill", B, n, b.state, a.state, sfl);
	check("decode logits after the prefill", B, n, b.decode, a.decode, (size_t)STEPS * B * V);
	run_free(&a);
	run_free(&b);
	free(tok);
}

int main(int argc, char **argv)
{
	struct tn_model *m32, *m16;
	if (argc > 1 && !strcmp(argv[1], "--small")) {
		models("tiny", 64, &m32, &m16);
		compare(m32, m16, 2, 40);
	} else {
		models("small", 512, &m32, &m16);
		compare(m32, m16, 1, TN_PREFILL_TOKENS + 300);
		compare(m32, m16, TN_PREFILL_TOKENS / TN_PREFILL_BLOCK + 1, TN_PREFILL_BLOCK + 40);
	}
	tn_model_free(m32);
	tn_model_free(m16);
	printf("test_infer_bf16: %s\n", failures ? "FAILED" : "all passed");
	return failures ? 1 : 0;
}
