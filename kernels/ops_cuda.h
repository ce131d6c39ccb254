/* ops_cuda.h - the CUDA ops: each the GPU form of the CPU op of the same
 * name in libcore/ops.h (same arguments, layouts and accumulation rules;
 * pointers are device memory), launched on the tn stream. */
#ifndef TN_OPS_CUDA_H
#define TN_OPS_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

#ifdef __cplusplus
extern "C" {
#endif

struct tn_adamw_seg;
struct tn_adamw_args;

void matmul_forward_cuda(float *out, const float *inp, const float *w, int BT, int C, int OC,
			 int accumulate);
void matmul_backward_cuda(float *dinp, float *dw, const float *dout, const float *inp,
			  const float *w, int BT, int C, int OC, int accumulate);
void embedding_forward_cuda(float *out, const int32_t *tok, const float *emb, int BT, int C,
			    float scale);
void embedding_backward_cuda(float *demb, const float *dout, const int32_t *tok, int BT, int C,
			     float scale, int pad);
void srmsnorm_forward_cuda(float *out, float *rstd, const float *inp, int N, int C);
void srmsnorm_backward_cuda(float *dinp, const float *dout, const float *out,
			    const float *rstd, int N, int C);
void act_forward_cuda(float *out, const float *inp, size_t n, enum tn_act act);
void act_backward_cuda(float *dinp, const float *dout, const float *inp, size_t n,
		       enum tn_act act);
void gate_forward_cuda(float *out, const float *a, const float *b, size_t n);
void gate_backward_cuda(float *da, float *db, const float *dout, const float *a,
			const float *b, size_t n);
void residual_forward_cuda(float *out, const float *a, const float *b, size_t n);
void lrpe_forward_cuda(float *out, const float *inp, const float *theta, const int32_t *pos,
		       int B, int n, int H, int hd);
void lrpe_backward_cuda(float *dinp, float *dtheta, const float *dout, const float *inp,
			const float *theta, const int32_t *pos, int B, int n, int H, int hd);
void act_lrpe_forward_cuda(float *out, const float *inp, const float *theta, const int32_t *pos,
			   int B, int n, int H, int hd, enum tn_act act);
void act_lrpe_backward_cuda(float *dinp, float *dtheta, const float *dout, const float *inp,
			    const float *theta, const int32_t *pos, int B, int n, int H, int hd,
			    enum tn_act act);
void residual_norm_forward_cuda(float *sum, float *out, float *rstd, const float *a,
				const float *b, int N, int C);
void merge_norm_gate_forward_cuda(float *on, float *rstd, float *z, const float *oh,
				  const float *u, int B, int n, int H, int hd);
void gate_norm_split_backward_cuda(float *du, float *doh, const float *dz, const float *u,
				   const float *on, const float *rstd, int B, int n, int H, int hd);
void heads_merge_cuda(float *out, const float *inp, int B, int n, int H, int hd);
size_t xent_scratch_cuda(int R, int V);
void crossentropy_forward_cuda(float *loss, const float *x, const float *emb,
			       const int32_t *target, int R, int C, int V, float *scratch);
void crossentropy_backward_cuda(float *dx, float *demb, const float *x, const float *emb,
				float scale, int R, int C, int V, const float *scratch);
double sumsq_forward_cuda(const float *x, size_t n);
int attn_decode_cuda(int B, int H, int dk, int dv, const float *q, const float *k,
		     const float *v, const float *decay_s, float *state, float *o);
void adamw_update_cuda(float *p, const float *g, float *m, float *v, size_t n, float lr,
		       float beta1, float beta2, float eps, float wd, float gscale, float bc1,
		       float bc2);
void adamw_fused_cuda(float *p, const float *g, float *m, float *v, size_t lo, size_t hi,
		      const struct tn_adamw_seg *seg, size_t n_seg, const struct tn_adamw_args *a);

#ifdef __cplusplus
}
#endif

#endif
