/* ops_decode.c - CPU references of the fused decode ops (ops_decode.h):
 * each runs the ops.h ops it stands for, in order, over scratch memory,
 * so the fused decode step is the training layer's arithmetic by
 * construction and the CUDA kernels have one plain definition to meet. */
#include "ops_decode.h"
#include "lightning_attn.h"
#include "ops.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

int decode_matmul(float *out, const struct tn_dmm *a)
{
	size_t n = (size_t)a->BT * a->C, no = (size_t)a->BT * a->OC;
	float *x = tn_malloc((n + (size_t)a->BT + (a->w2 ? no : 0)) * sizeof(float));
	if (!x)
		return TN_ENOMEM;
	float *rstd = x + n, *y2 = rstd + a->BT;
	if (a->norm)
		srmsnorm_forward(x, rstd, a->inp, a->BT, a->C);
	else
		memcpy(x, a->inp, n * sizeof(float));
	for (int r = 0; a->gate && r < a->BT; r++)
		gate_forward(x + (size_t)r * a->C, a->gate + (size_t)r * a->ldg,
			     x + (size_t)r * a->C, (size_t)a->C);
	matmul_forward(out, x, a->w, a->BT, a->C, a->OC, 0);
	if (a->w2) {
		matmul_forward(y2, x, a->w2, a->BT, a->C, a->OC, 0);
		gate_forward(out, out, y2, no);
	}
	if (a->res)
		residual_forward(out, out, a->res, no);
	for (int r = 0; a->amax && r < a->BT; r++) {
		const float *y = out + (size_t)r * a->OC;
		int best = 0;
		for (int o = 1; o < a->OC; o++)
			if (y[o] > y[best])
				best = o;
		a->amax[r] = best;
	}
	free(x);
	return TN_OK;
}

int mixer_decode(float *o, const float *p, const int32_t *pos, const float *theta,
		 const float *decay_s, float *state, int B, int H, int hd, enum tn_act act)
{
	size_t E = (size_t)H * hd, dk = theta ? 2 * (size_t)hd : (size_t)hd, hk = H * dk;
	float *qa = tn_malloc((2 * E + 2 * hk) * sizeof(float));
	if (!qa)
		return TN_ENOMEM;
	float *ka = qa + E, *qh = ka + E, *kh = qh + hk;
	int rc = TN_OK;
	for (int b = 0; b < B && !rc; b++) {
		const float *row = p + (size_t)b * 4 * E;
		act_forward(qa, row, E, act);
		act_forward(ka, row + E, E, act);
		lrpe_forward(qh, qa, theta, pos + b, 1, 1, H, hd);
		lrpe_forward(kh, ka, theta, pos + b, 1, 1, H, hd);
		/* with one position, v's head split and o's merge are the identity */
		rc = lightning_attn_decode(1, H, (int)dk, hd, qh, kh, row + 2 * E, decay_s,
					   state + (size_t)b * hk * hd, o + (size_t)b * E);
	}
	free(qa);
	return rc;
}
