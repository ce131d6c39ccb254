/* sample.c - next-token choice (see sample.h). The filters work on a list
 * of candidate ids sorted once by logit; softmax is in double so that the
 * cumulative sums of top-p do not depend on the order of float rounding. */
#include "sample.h"

#include <math.h>
#include <stdlib.h>

#include "util.h"

void tn_sample_defaults(struct tn_sample_opts *o)
{
	o->temperature = 0;
	o->top_k = 0;
	o->top_p = 1;
	o->min_p = 0;
	o->rep_penalty = 1;
}

int tn_sample_check(const struct tn_sample_opts *o)
{
	if (!(o->temperature >= 0) || !isfinite(o->temperature))
		return tn_fail(TN_EUSAGE, "temperature %g: must be finite and >= 0", o->temperature);
	if (o->top_k < 0)
		return tn_fail(TN_EUSAGE, "top-k %d: must be >= 0", o->top_k);
	if (!(o->top_p > 0 && o->top_p <= 1))
		return tn_fail(TN_EUSAGE, "top-p %g: must be in (0, 1]", o->top_p);
	if (!(o->min_p >= 0 && o->min_p <= 1))
		return tn_fail(TN_EUSAGE, "min-p %g: must be in [0, 1]", o->min_p);
	if (!(o->rep_penalty > 0) || !isfinite(o->rep_penalty))
		return tn_fail(TN_EUSAGE, "repetition penalty %g: must be finite and > 0",
			       o->rep_penalty);
	return TN_OK;
}

int tn_sample_is_argmax(const struct tn_sample_opts *o)
{
	return (o->temperature <= 0 || o->top_k == 1) && o->rep_penalty == 1;
}

static int by_logit(const void *a, const void *b, void *logits)
{
	int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
	float x = ((const float *)logits)[i], y = ((const float *)logits)[j];
	if (x != y)
		return x > y ? -1 : 1;
	return (i > j) - (i < j);
}

static int32_t argmax(const float *x, int V)
{
	int32_t best = 0;
	for (int i = 1; i < V; i++)
		if (x[i] > x[best])
			best = i;
	return best;
}

/* Each seen id is penalised once, however often it occurs (as HF's gather). */
static int penalise(float *logits, int V, float p, const int32_t *seen, size_t n)
{
	if (p == 1)
		return TN_OK;
	uint8_t *done = tn_calloc((size_t)V / 8 + 1, 1);
	if (!done)
		return TN_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		int32_t t = seen[i];
		if (t < 0 || t >= V || (done[t >> 3] >> (t & 7) & 1))
			continue;
		done[t >> 3] |= (uint8_t)(1u << (t & 7));
		logits[t] = logits[t] > 0 ? logits[t] / p : logits[t] * p;
	}
	free(done);
	return TN_OK;
}

int tn_sample(const struct tn_sample_opts *o, struct tn_rng *rng, float *logits, int V,
	      const int32_t *seen, size_t n_seen, int32_t *out)
{
	int rc = penalise(logits, V, o->rep_penalty, seen, n_seen);
	if (rc)
		return rc;
	if (o->temperature <= 0 || o->top_k == 1) {
		*out = argmax(logits, V);
		return TN_OK;
	}
	int32_t *id = tn_malloc((size_t)V * sizeof(int32_t));
	double *p = tn_malloc((size_t)V * sizeof(double));
	if (!id || !p) {
		free(id);
		free(p);
		return TN_ENOMEM;
	}
	for (int i = 0; i < V; i++)
		id[i] = i;
	qsort_r(id, (size_t)V, sizeof(int32_t), by_logit, logits);
	int n = o->top_k > 0 && o->top_k < V ? o->top_k : V;
	double sum = 0, top = logits[id[0]] / o->temperature;
	for (int i = 0; i < n; i++)
		sum += p[i] = exp(logits[id[i]] / o->temperature - top);
	double cum = 0;
	for (int i = 0; i < n; i++) { /* top-p: keep the smallest head reaching top_p */
		p[i] /= sum;
		cum += p[i];
		if (cum >= o->top_p) {
			n = i + 1;
			break;
		}
	}
	int keep = 1; /* min-p relative to the best token; the best always stays */
	while (keep < n && p[keep] >= o->min_p * p[0])
		keep++;
	n = keep;
	sum = 0;
	for (int i = 0; i < n; i++)
		sum += p[i];
	double u = tn_rng_uniform(rng) * sum, acc = 0;
	int pick = n - 1;
	for (int i = 0; i < n; i++) {
		acc += p[i];
		if (u < acc) {
			pick = i;
			break;
		}
	}
	*out = id[pick];
	free(id);
	free(p);
	return TN_OK;
}
