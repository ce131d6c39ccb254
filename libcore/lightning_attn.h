/* lightning_attn.h - Lightning Attention, the causal linear attention core of
 * TransNormerLLM (MODEL.md §1.3 step 6, §5): fp32 CPU reference of the CUDA
 * kernels in kernels/lightning_attn.cu, and the op of the CPU model.
 *
 * Layout: fp32, head-major and contiguous: q, k [B,H,N,dk], v, o [B,H,N,dv],
 * states [B,H,dk,dv], decay_s[H] with lambda_h = exp(-s_h). States are the
 * inclusive S_t = sum_{j<=t} lambda^(t-j) k_j v_j^T of MODEL.md §5.6, the
 * state that the decode step consumes. Outputs are assigned, never
 * accumulated into. Every function returns TN_OK or TN_EDATA (bad shape or
 * document offsets, message set). */
#ifndef TN_LIGHTNING_ATTN_H
#define TN_LIGHTNING_ATTN_H

#ifdef __cplusplus
extern "C" {
#endif

struct tn_attn_shape {
	int B, H, N, dk, dv;
};

/* Documents packed in one sequence (CSR): sequence b's document starts are
 * start[ptr[b] .. ptr[b+1]), ascending positions in [0, N). The state is
 * reset at each start: no token attends across one. Position 0 needs no
 * entry; listing it makes the sequence ignore state_in. */
struct tn_attn_docs {
	const int *ptr;   /* [B+1], ptr[0] = 0 */
	const int *start; /* [ptr[B]] */
};

/* o[b,h,t] = sum_{j<=t} lambda^(t-j) (q_t.k_j) v_j + lambda^(t+1) state_in^T q_t.
 * state_in may be NULL (zero); state_out (may be NULL) receives S_{N-1}. */
int lightning_attn_forward(const struct tn_attn_shape *sh, const float *q, const float *k,
			   const float *v, const float *decay_s, const float *state_in, float *o,
			   float *state_out);

/* Gradients of sum(o * dout) for the forward above with state_in = NULL. */
int lightning_attn_backward(const struct tn_attn_shape *sh, const float *q, const float *k,
			    const float *v, const float *decay_s, const float *dout, float *dq,
			    float *dk, float *dv);

/* One token per sequence: S = lambda S + k v^T, o = S^T q. q, k [B,H,dk],
 * v, o [B,H,dv], state [B,H,dk,dv] updated in place. */
int lightning_attn_decode(int B, int H, int dk, int dv, const float *q, const float *k,
			  const float *v, const float *decay_s, float *state, float *o);

/* The packed-document forms of forward and backward: as above, with the
 * state reset at every start in docs (see struct tn_attn_docs). */
int lightning_attn_forward_docs(const struct tn_attn_shape *sh, const struct tn_attn_docs *docs,
				const float *q, const float *k, const float *v,
				const float *decay_s, const float *state_in, float *o,
				float *state_out);
int lightning_attn_backward_docs(const struct tn_attn_shape *sh, const struct tn_attn_docs *docs,
				 const float *q, const float *k, const float *v,
				 const float *decay_s, const float *dout, float *dq, float *dk,
				 float *dv);

/* Check a shape (all positive) and, when docs is not NULL, its offsets;
 * shared with the CUDA host code so both reject the same inputs. */
int lightning_attn_check(const struct tn_attn_shape *sh, const struct tn_attn_docs *docs);

#ifdef __cplusplus
}
#endif

#endif
