/* tiny_model.h - small random models of odd sizes for the generation and
 * evaluation tests (header-only: each test is its own program). Weights are
 * the HF initialisation at a large std, so that logits are far from ties.
 * tiny_model_on makes the same model on another backend (the weights are
 * drawn on the host), so GPU results can be checked against the CPU's. */
#ifndef TN_TEST_TINY_MODEL_H
#define TN_TEST_TINY_MODEL_H

#include "config.h"
#include "model.h"

#include <stdlib.h>

/* The backend under test: TN_BACKEND (cpu or cuda), cpu by default. */
static inline const struct tn_backend *test_backend(void)
{
	const char *name = getenv("TN_BACKEND");
	const struct tn_backend *be = tn_backend_find(name ? name : "cpu");
	if (!be)
		fail_msg("%s", tn_errmsg());
	return be;
}

static inline struct tn_model *tiny_model_on(const struct tn_backend *be, int V, int d, int H,
					     int L, double std, uint64_t seed)
{
	struct tn_config c;
	assert_int_equal(tn_config_preset(&c, "tiny"), TN_OK);
	c.vocab_size = V;
	c.d = c.hidden_dim = d;
	c.heads = H;
	c.layers = L;
	c.glu_dim = d + 6;
	c.init_std = std;
	struct tn_model *m;
	assert_int_equal(tn_model_new(&m, &c, be), TN_OK);
	assert_int_equal(tn_model_init(m, seed), TN_OK);
	return m;
}

static inline struct tn_model *tiny_model(int V, int d, int H, int L, double std, uint64_t seed)
{
	return tiny_model_on(&tn_backend_cpu, V, d, H, L, std, seed);
}

#endif
