/* ops_embed.c - token embedding lookup (scaled by sqrt(d) unless the config
 * says no_scale_embedding) and its gradient. The backward is one sequential
 * pass over the tokens: cheap, and the order of the += never changes. */
#include "ops.h"

#include <string.h>

void embedding_forward(float *out, const int32_t *tok, const float *emb, int BT, int C,
		       float scale)
{
#pragma omp parallel for schedule(static) if ((size_t)BT * C > TN_OMP_MIN)
	for (int t = 0; t < BT; t++)
		for (int j = 0; j < C; j++)
			out[(size_t)t * C + j] = scale * emb[(size_t)tok[t] * C + j];
}

void embedding_backward(float *demb, const float *dout, const int32_t *tok, int BT, int C,
			float scale, int pad)
{
	for (int t = 0; t < BT; t++) {
		if (tok[t] == pad)
			continue;
		float *g = demb + (size_t)tok[t] * C;
		for (int j = 0; j < C; j++)
			g[j] += scale * dout[(size_t)t * C + j];
	}
}
