/* sample.h - choosing the next token from a row of logits: greedy,
 * temperature, top-k, top-p, min-p and repetition penalty, in the order
 * Hugging Face's generate applies them (penalty, temperature, top-k, top-p,
 * min-p). Decision: candidates are ranked by (logit, then lower id) and the
 * draw is one uniform from tn_rng, so a seed fixes the output exactly. */
#ifndef TN_SAMPLE_H
#define TN_SAMPLE_H

#include <stddef.h>
#include <stdint.h>

#include "rng.h"

struct tn_sample_opts {
	float temperature; /* <= 0: greedy (argmax, lowest id on ties) */
	int top_k;         /* 0: off */
	float top_p;       /* 1: off */
	float min_p;       /* 0: off; drop tokens below min_p * p(best) */
	float rep_penalty; /* 1: off; seen tokens' logits / p if > 0, * p if not */
};

void tn_sample_defaults(struct tn_sample_opts *o);
/* Check the options' ranges; TN_EUSAGE naming the bad one. */
int tn_sample_check(const struct tn_sample_opts *o);

/* Whether the choice is the plain argmax of the logits (no penalty), so a
 * backend can make it without the logits coming to the host. */
int tn_sample_is_argmax(const struct tn_sample_opts *o);

/* One token from logits[0..V) (changed in place by the penalty and the
 * temperature); seen[0..n_seen) are the ids the penalty applies to. */
int tn_sample(const struct tn_sample_opts *o, struct tn_rng *rng, float *logits, int V,
	      const int32_t *seen, size_t n_seen, int32_t *out);

#endif
