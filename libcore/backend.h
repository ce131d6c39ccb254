/* backend.h - the op table the model runs on. The model (model.c) calls
 * every op and every allocation of parameters, gradients and activations
 * through one of these tables, so a CUDA backend can implement the same
 * table over device memory without a second copy of the model.
 * Decision: the signatures are those of the CPU reference ops (ops.h) and
 * of the attention core (lightning_attn.h); pointers are the backend's
 * memory (host memory for the CPU backend). */
#ifndef TN_BACKEND_H
#define TN_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "lightning_attn.h"

struct tn_adamw_seg;
struct tn_adamw_args;
struct tn_dmm;

struct tn_backend {
	const char *name;
	/* memory: alloc returns zeroed memory or NULL (message set) */
	void *(*alloc)(size_t bytes);
	void (*free)(void *p);
	void (*upload)(void *dst, const void *host, size_t bytes);
	void (*download)(void *host, const void *src, size_t bytes);
	void (*zero)(void *p, size_t bytes);

	void (*matmul_forward)(float *out, const float *inp, const float *w, int BT, int C, int OC,
			       int accumulate);
	void (*matmul_backward)(float *dinp, float *dw, const float *dout, const float *inp,
				const float *w, int BT, int C, int OC, int accumulate);
	void (*embedding_forward)(float *out, const int32_t *tok, const float *emb, int BT, int C,
				  float scale);
	void (*embedding_backward)(float *demb, const float *dout, const int32_t *tok, int BT,
				   int C, float scale, int pad);
	void (*srmsnorm_forward)(float *out, float *rstd, const float *inp, int N, int C);
	void (*srmsnorm_backward)(float *dinp, const float *dout, const float *out,
				  const float *rstd, int N, int C);
	void (*act_forward)(float *out, const float *inp, size_t n, enum tn_act act);
	void (*act_backward)(float *dinp, const float *dout, const float *inp, size_t n,
			     enum tn_act act);
	void (*gate_forward)(float *out, const float *a, const float *b, size_t n);
	void (*gate_backward)(float *da, float *db, const float *dout, const float *a,
			      const float *b, size_t n);
	void (*residual_forward)(float *out, const float *a, const float *b, size_t n);
	void (*lrpe_forward)(float *out, const float *inp, const float *theta, const int32_t *pos,
			     int B, int n, int H, int hd);
	void (*lrpe_backward)(float *dinp, float *dtheta, const float *dout, const float *inp,
			      const float *theta, const int32_t *pos, int B, int n, int H, int hd);
	void (*heads_merge)(float *out, const float *inp, int B, int n, int H, int hd);
	/* ops.h's cross-entropy: the forward keeps the logits' gradient in
	 * scratch (xent_scratch floats, laid out as the backend likes) for
	 * the backward of the same R rows. */
	size_t (*xent_scratch)(int R, int V);
	void (*crossentropy_forward)(float *loss, const float *x, const float *emb,
				     const int32_t *target, int R, int C, int V, float *scratch);
	void (*crossentropy_backward)(float *dx, float *demb, const float *x, const float *emb,
				      float scale, int R, int C, int V, const float *scratch);
	double (*sumsq_forward)(const float *x, size_t n);
	void (*adamw_update)(float *p, const float *g, float *m, float *v, size_t n, float lr,
			     float beta1, float beta2, float eps, float wd, float gscale,
			     float bc1, float bc2);
	int (*attn_forward)(const struct tn_attn_shape *sh, const float *q, const float *k,
			    const float *v, const float *decay_s, const float *state_in, float *o,
			    float *state_out);
	int (*attn_backward)(const struct tn_attn_shape *sh, const float *q, const float *k,
			     const float *v, const float *decay_s, const float *dout, float *dq,
			     float *dk, float *dv);
	int (*attn_decode)(int B, int H, int dk, int dv, const float *q, const float *k,
			   const float *v, const float *decay_s, float *state, float *o);
	/* Ops added for fused training (issue 8): ops.h's fused ops, each one
	 * pass for what the ops it composes do in several. operand: the n
	 * floats at p (inside one allocation) are, until the next operand(NULL,
	 * 0), activations that only these read: products (matmul inputs and
	 * output gradients), the attention core (its inputs and outputs),
	 * srmsnorm_backward as its `out`, merge_norm_gate_forward as its `oh`
	 * and (act_)lrpe_backward as its `dout`. The backend may keep them in
	 * its product format (cuda-bf16: bf16, element i in the first half of
	 * the range's bytes). NULL: every activation stays fp32. */
	void (*residual_norm_forward)(float *sum, float *out, float *rstd, const float *a,
				      const float *b, int N, int C);
	void (*act_lrpe_forward)(float *out, const float *inp, const float *theta,
				 const int32_t *pos, int B, int n, int H, int hd, enum tn_act act);
	void (*act_lrpe_backward)(float *dinp, float *dtheta, const float *dout, const float *inp,
				  const float *theta, const int32_t *pos, int B, int n, int H,
				  int hd, enum tn_act act);
	void (*merge_norm_gate_forward)(float *on, float *rstd, float *z, const float *oh,
					const float *u, int B, int n, int H, int hd);
	void (*gate_norm_split_backward)(float *du, float *doh, const float *dz, const float *u,
					 const float *on, const float *rstd, int B, int n, int H,
					 int hd);
	void (*operand)(float *p, size_t n);

	/* Decoding. copy: memory to memory of this backend; argmax_rows:
	 * out[r] = the index of the largest of row r's C values (the lowest
	 * index on ties), out in this backend's memory. graph_*: NULL where the
	 * backend has no graphs; the ops issued between graph_begin and
	 * graph_end are recorded, not run, into a graph that graph_launch
	 * replays over the same memory, so nothing issued in between may
	 * allocate, copy to or from the host, or synchronise. graph_epoch
	 * changes whenever the backend moves memory of its own that a graph
	 * may have recorded (staging buffers): a graph from another epoch is
	 * captured again. */
	void (*copy)(void *dst, const void *src, size_t bytes);
	void (*argmax_rows)(int32_t *out, const float *x, int R, int C);
	int (*graph_begin)(void);
	int (*graph_end)(void **graph);
	int (*graph_launch)(void *graph);
	void (*graph_free)(void *graph);
	size_t (*graph_epoch)(void);
	/* Wait for the ops issued so far: TN_OK, or the first failure of an
	 * asynchronous op (message set). The CPU backend has none. */
	int (*status)(void);

	/* Ops added for GPU training (issue 8). */
	/* Device memory in use now, bytes (a peak proxy: the CUDA pools keep
	 * what they once took); NULL for a backend on host memory. */
	size_t (*device_bytes)(void);
	/* Device time per kind of op (NULL where not offered): profile(1)
	 * starts timing every op, profile(0) stops; profile_read waits for the
	 * device, then gives up to max (name, total ms since profile(1)) pairs
	 * and returns how many. */
	void (*profile)(int on);
	int (*profile_read)(const char **names, double *ms, int max);

	/* Training without waits (issue 8). adamw_fused: ops.h's adamw_fused,
	 * every tensor of the table in one pass (one launch on the GPU), bit
	 * for bit what adamw_update per tensor gives. host_alloc: host memory
	 * (zeroed; pinned on the GPU, so that upload from it is asynchronous:
	 * it must then stay unchanged until the next status or download), or
	 * NULL with a message; release it with host_free. */
	void (*adamw_fused)(float *p, const float *g, float *m, float *v, size_t lo, size_t hi,
			    const struct tn_adamw_seg *seg, size_t n_seg,
			    const struct tn_adamw_args *a);
	void *(*host_alloc)(size_t bytes);
	void (*host_free)(void *p);

	/* Ops added for decoding (issue 10): the fused ops of ops_decode.h, so
	 * a decode step runs a few kernels per layer. NULL where a backend
	 * lacks them: the decode step then runs the training layer's ops. */
	int (*decode_matmul)(float *out, const struct tn_dmm *a);
	int (*mixer_decode)(float *o, const float *p, const int32_t *pos, const float *theta,
			    const float *decay_s, float *state, int B, int H, int hd,
			    enum tn_act act);
};

/* The CPU reference backend: ops.h, OpenBLAS and the CPU attention core. */
extern const struct tn_backend tn_backend_cpu;
#ifdef TN_CUDA
/* The CUDA backend (kernels/backend_cuda.cu), fp32. */
extern const struct tn_backend tn_backend_cuda;
/* The same in mixed precision (kernels/backend_bf16.cu, "cuda-bf16"): fp32
 * master weights, gradients and optimizer state; matmuls and attention with
 * bf16 operands on the tensor cores, fp32 accumulation. */
extern const struct tn_backend tn_backend_cuda_bf16;
#endif
/* Spinning OpenMP workers take the cores from OpenBLAS's own threads (5x
 * slower training on two cores). libgomp reads OMP_WAIT_POLICY once, when
 * it loads, so a program asks for passive waiting before that: when the
 * variable is unset, this sets it and re-executes argv (it returns only if
 * the variable was set already or the exec failed). Call first in main. */
void tn_cpu_passive_wait(char **argv);
/* A backend by name ("cpu", "cuda", "cuda-bf16"); NULL with a message if not built in. */
const struct tn_backend *tn_backend_find(const char *name);

#endif
