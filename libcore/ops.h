/* ops.h - the CPU reference ops: each a forward/backward pair of plain loop
 * nests (matmuls through cblas_sgemm), one file per family (ops_*.c).
 * Conventions, as in llm.c: row-major fp32; a linear map stores W[out, in]
 * (PyTorch); activation outputs are assigned with =, parameter gradients
 * always accumulate with +=, and input gradients accumulate only where a
 * function says so (the residual stream). BT = rows (batch x time). */
#ifndef TN_OPS_H
#define TN_OPS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* Loops over fewer elements than this run on one thread: waking a team
 * costs more than the work, and idle OpenMP workers compete with
 * OpenBLAS's threads for the cores. */
#define TN_OMP_MIN 65536

/* out[BT,OC] (= or += when accumulate) inp[BT,C] W[OC,C]^T */
void matmul_forward(float *out, const float *inp, const float *w, int BT, int C, int OC,
		    int accumulate);
/* dinp[BT,C] (= or +=) dout W (skipped when dinp is NULL); dw += dout^T inp */
void matmul_backward(float *dinp, float *dw, const float *dout, const float *inp,
		     const float *w, int BT, int C, int OC, int accumulate);

/* out[t] = scale * emb[tok[t]] */
void embedding_forward(float *out, const int32_t *tok, const float *emb, int BT, int C,
		       float scale);
/* demb[tok[t]] += scale * dout[t], except for the padding id (no gradient,
 * as nn.Embedding(padding_idx)); pad < 0 means none. */
void embedding_backward(float *demb, const float *dout, const int32_t *tok, int BT, int C,
			float scale, int pad);

/* SRMSNorm (MODEL.md 2): out = x * rstd, rstd = 1/sqrt(mean(x^2) + 1e-6). */
void srmsnorm_forward(float *out, float *rstd, const float *inp, int N, int C);
/* dinp += rstd * (dout - out * mean(out * dout)); out is the forward output. */
void srmsnorm_backward(float *dinp, const float *dout, const float *out, const float *rstd,
		       int N, int C);

/* The feature map of q and k: SiLU (released), ReLU or identity. */
void act_forward(float *out, const float *inp, size_t n, enum tn_act act);
void act_backward(float *dinp, const float *dout, const float *inp, size_t n, enum tn_act act);

/* The feature map and its slope at one value: the elementwise core of
 * act_forward and act_backward, shared with the fused ops. */
static inline float tn_act_value(float x, enum tn_act act)
{
	return act == TN_ACT_SILU ? x / (1.0f + expf(-x)) : act == TN_ACT_RELU ? (x > 0 ? x : 0) : x;
}
static inline float tn_act_slope(float x, enum tn_act act)
{
	if (act != TN_ACT_SILU)
		return act == TN_ACT_RELU ? (float)(x > 0) : 1.0f;
	float sg = 1.0f / (1.0f + expf(-x));
	return sg * (1.0f + x * (1.0f - sg));
}

/* out = a * b elementwise: the output gate u * norm(o) of the token mixer
 * and the SGLU product (W1 x) * (W2 x) are this one op. */
void gate_forward(float *out, const float *a, const float *b, size_t n);
/* da = dout * b, db = dout * a (assigned) */
void gate_backward(float *da, float *db, const float *dout, const float *a, const float *b,
		   size_t n);
/* out = a + b */
void residual_forward(float *out, const float *a, const float *b, size_t n);

/* Rows [B*n, H*hd] (position t of sequence b in row b*n + t) to head-major
 * [B, H, n, dk]. With theta [H, hd], LRPE (MODEL.md 1.3 step 4): dk = 2hd,
 * out = [x cos(theta t), x sin(theta t)] with t = pos[row]; without, dk = hd. */
void lrpe_forward(float *out, const float *inp, const float *theta, const int32_t *pos,
		  int B, int n, int H, int hd);
/* dinp (assigned) and dtheta (+=, when theta is given) from dout [B,H,n,dk]. */
void lrpe_backward(float *dinp, float *dtheta, const float *dout, const float *inp,
		   const float *theta, const int32_t *pos, int B, int n, int H, int hd);
/* Head-major [B, H, n, hd] back to rows [B*n, H*hd]. */
void heads_merge(float *out, const float *inp, int B, int n, int H, int hd);

/* Fused training ops (issue 8): each is the composition of the ops it is
 * named after, in one pass over the rows, with the same arithmetic. */
/* sum = a + b, then out, rstd = srmsnorm(sum) (sum may be a or b). */
void residual_norm_forward(float *sum, float *out, float *rstd, const float *a, const float *b,
			   int N, int C);
/* lrpe_forward of act(inp): the feature map and the head split at once. */
void act_lrpe_forward(float *out, const float *inp, const float *theta, const int32_t *pos,
		      int B, int n, int H, int hd, enum tn_act act);
/* Its backward: dinp = act'(inp) * lrpe_backward(dout) (assigned), dtheta
 * += the theta gradient of lrpe at act(inp); inp is the feature map's input. */
void act_lrpe_backward(float *dinp, float *dtheta, const float *dout, const float *inp,
		       const float *theta, const int32_t *pos, int B, int n, int H, int hd,
		       enum tn_act act);
/* The tail of the token mixer: o = heads_merge(oh), on, rstd =
 * srmsnorm(o) over all H x hd channels, z = u * on (u rows [B*n, H*hd]). */
void merge_norm_gate_forward(float *on, float *rstd, float *z, const float *oh, const float *u,
			     int B, int n, int H, int hd);
/* Its backward from dz: du = dz * on, and doh (assigned, head-major
 * [B, H, n, hd]) = the head split of srmsnorm_backward(dz * u). */
void gate_norm_split_backward(float *du, float *doh, const float *dz, const float *u,
			      const float *on, const float *rstd, int B, int n, int H, int hd);

/* Tied head + softmax + cross-entropy over rows of x [R, C] against the
 * embedding [V, C]. The forward writes the per-row loss (target < 0 =
 * ignored row, loss 0) and keeps the gradient of the summed loss with
 * respect to the logits, softmax - onehot (0 for ignored rows), in scratch
 * (tn_xent_scratch() floats: [R, V] here, the backend's own layout
 * elsewhere); the backward reads it instead of recomputing the logits and
 * applies its scale in the two products. */
size_t tn_xent_scratch(int R, int V);
void crossentropy_forward(float *loss, const float *x, const float *emb, const int32_t *target,
			  int R, int C, int V, float *scratch);
/* Gradients of scale * sum_r loss[r]: dx (assigned; 0 for ignored rows)
 * and demb (+=, the tied head's part). */
void crossentropy_backward(float *dx, float *demb, const float *x, const float *emb, float scale,
			   int R, int C, int V, const float *scratch);

/* Sum of squares in double, in fixed blocks so it is the same bit for bit
 * for any thread count. */
double sumsq_forward(const float *x, size_t n);
/* One AdamW step on n parameters (decoupled weight decay wd * lr * p),
 * gradients multiplied by gscale first (clipping); bc1, bc2 = 1 - beta^t. */
void adamw_update(float *p, const float *g, float *m, float *v, size_t n, float lr,
		  float beta1, float beta2, float eps, float wd, float gscale, float bc1,
		  float bc2);

/* The fused update's table: one tensor of the flat parameters, elements
 * [offset, offset + numel), with its weight decay (0: none); and the step's
 * scalars, as adamw_update takes them. */
struct tn_adamw_seg {
	size_t offset, numel;
	float wd;
};
struct tn_adamw_args {
	float lr, beta1, beta2, eps, gscale, bc1, bc2;
};
/* adamw_update of every tensor of seg[0, n_seg) (disjoint) inside the range
 * [lo, hi) of the flat parameters p and gradients g, whose moments m and v
 * hold that range only (element i at m[i - lo]); elements outside every
 * tensor are left alone. Each element gets exactly adamw_update's arithmetic. */
void adamw_fused(float *p, const float *g, float *m, float *v, size_t lo, size_t hi,
		 const struct tn_adamw_seg *seg, size_t n_seg, const struct tn_adamw_args *a);

#endif
