/* ops_decode.h - the ops the decode step fuses (issue 10): a product of few
 * rows with its input norm, output gate, residual or SGLU product folded in,
 * and the whole token mixer of one position. CPU references in ops_decode.c
 * (plain loops over the ops.h ops), CUDA forms in kernels/ops_decode.cu.
 * Decision: each is exactly a sequence of ops.h ops (named in its comment),
 * so the fused decode layer computes what the training layer computes. */
#ifndef TN_OPS_DECODE_H
#define TN_OPS_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* One small product out[BT, OC] = res + f(pro(inp) W^T), W [OC, C]:
 * pro(x) = x, or srmsnorm(x) when norm, then times gate (row stride ldg)
 * when gate is non-NULL (the token mixer's u * norm(o)); f(y) = y, or with
 * w2 the SGLU product (x W^T) * (x w2^T); res (NULL: none) is added last;
 * amax (NULL: none) gets each row's argmax of out, the lowest index on
 * ties (greedy decoding's next tokens from the head). ops.h:
 * srmsnorm_forward, gate_forward, matmul_forward, gate_forward,
 * residual_forward, in that order. TN_OK or TN_ENOMEM (scratch). */
struct tn_dmm {
	const float *inp, *w, *w2, *gate, *res;
	int32_t *amax;
	int norm, ldg, BT, C, OC;
};
int decode_matmul(float *out, const struct tn_dmm *a);

/* The token mixer of one position for B sequences (n = 1): from the rows
 * p [B, 4E] (q, k, v, u side by side, E = H * hd), the feature map on q and
 * k, the head split with LRPE at position pos[b] (theta NULL: none, dk = hd;
 * else dk = 2 hd), the decay step S = lambda S + k^T v and o = q S of every
 * head (state [B, H, dk, hd]), written as rows o [B, E]. ops.h: act_forward,
 * lrpe_forward, lightning_attn_decode, heads_merge. TN_OK or TN_ENOMEM. */
int mixer_decode(float *o, const float *p, const int32_t *pos, const float *theta,
		 const float *decay_s, float *state, int B, int H, int hd, enum tn_act act);

#endif
