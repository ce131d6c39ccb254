/* ops_bf16.h - the mixed-precision ops of the cuda-bf16 backend: the same
 * arguments as their fp32 forms in ops_cuda.h (fp32 tensors in and out),
 * but the products run on the tensor cores with bf16 operands and fp32
 * accumulation. Weights come from the backend's bf16 shadows, activations
 * are rounded to bf16 in staging buffers (cuda_common.h). C++ only. */
#ifndef TN_OPS_BF16_H
#define TN_OPS_BF16_H

#include <cuda_bf16.h>
#include <stddef.h>
#include <stdint.h>

#include <type_traits>

#include "config.h"

typedef __nv_bfloat16 bf16;

/* Ops that also write a bf16 twin of their output (for the product that
 * reads it next) take it as an extra pointer; NULL: no twin. The fp32
 * output of the ops that can write operands (backend.h) may be NULL too:
 * then only the bf16 form is written. */
static __device__ inline void put16(bf16 *twin, size_t i, float v)
{
	if (twin)
		twin[i] = __float2bfloat16_rn(v);
}
static __device__ inline void put(float *out, bf16 *out16, size_t i, float v)
{
	if (out)
		out[i] = v;
	put16(out16, i, v);
}
/* An input that may be an operand: fp32, or its bf16 form where x is NULL. */
static __device__ inline float get(const float *x, const bf16 *x16, size_t i)
{
	return x ? x[i] : __bfloat162float(x16[i]);
}

/* The same for W (8, 4 or 1) consecutive values at i; 8 and 4 with 8-,
 * 16- and 32-byte accesses, so the pointers and i must allow them (tn_vec8).
 * Elementwise kernels take 8 values a thread so that they run at copy
 * bandwidth; W is a constant so that the values stay in registers. */
template <int W>
static __device__ inline void getw(const float *x, const bf16 *x16, size_t i, float *v)
{
	if constexpr (W == 1) {
		v[0] = get(x, x16, i);
	} else if (x) {
#pragma unroll
		for (int k = 0; k < W; k += 4) {
			float4 a = *(const float4 *)(x + i + k);
			v[k] = a.x, v[k + 1] = a.y, v[k + 2] = a.z, v[k + 3] = a.w;
		}
	} else {
		using vec = typename std::conditional<W == 8, uint4, uint2>::type;
		vec q = *(const vec *)(x16 + i);
		const __nv_bfloat162 *p = (const __nv_bfloat162 *)&q;
#pragma unroll
		for (int k = 0; k < W / 2; k++) {
			float2 f = __bfloat1622float2(p[k]);
			v[2 * k] = f.x, v[2 * k + 1] = f.y;
		}
	}
}
template <int W>
static __device__ inline void putw(float *out, bf16 *out16, size_t i, const float *v)
{
	if constexpr (W == 1) {
		put(out, out16, i, v[0]);
	} else {
		using vec = typename std::conditional<W == 8, uint4, uint2>::type;
		__nv_bfloat162 p[W / 2];
#pragma unroll
		for (int k = 0; k < W && out; k += 4)
			*(float4 *)(out + i + k) = make_float4(v[k], v[k + 1], v[k + 2], v[k + 3]);
#pragma unroll
		for (int k = 0; k < W / 2; k++)
			p[k] = __floats2bfloat162_rn(v[2 * k], v[2 * k + 1]);
		if (out16)
			*(vec *)(out16 + i) = *(const vec *)p;
	}
}
/* Whether 8 values at an index that is a multiple of 8 can be moved as
 * vectors at p (NULL: no access, so yes). */
static inline int tn_vec8(const void *p)
{
	return (uintptr_t)p % 16 == 0;
}

/* The feature map (enum tn_act) and its slope, as ops.h's tn_act_value and
 * tn_act_slope. */
static __device__ inline float act_value(float x, int act)
{
	return act == TN_ACT_SILU ? x / (1.0f + expf(-x)) : act == TN_ACT_RELU ? fmaxf(x, 0.0f) : x;
}
static __device__ inline float act_slope(float x, int act)
{
	if (act != TN_ACT_SILU)
		return act == TN_ACT_RELU ? (float)(x > 0) : 1.0f;
	float sg = 1.0f / (1.0f + expf(-x));
	return sg * (1.0f + x * (1.0f - sg));
}

/* The bf16 shadow of n weights at w (kernels/backend_bf16.cu), current with
 * the fp32 values; NULL on failure (noted). */
const bf16 *tn_bf16_weight(const float *w, size_t n);
/* The shadow of the parameter at p, or NULL when its memory has none. */
bf16 *tn_bf16_shadow_of(const float *p);
/* dst[0, n) = bf16(src[0, n)), on the stream. */
void tn_bf16_round(bf16 *dst, const float *src, size_t n);
void tn_bf16_widen(float *dst, const bf16 *src, size_t n);
/* The bf16 twin of the activations [src, src + n): the one an op made
 * with them, or else rounded now (and kept); NULL on failure (noted). */
const bf16 *tn_bf16_twin(const float *src, size_t n);
/* Column-major C[m,n] = A.B (+ C when accumulate), bf16 A and B, fp32 C. */
void tn_gemm_bf16(int ta, int tb, int m, int n, int k, const bf16 *A, int lda, const bf16 *B,
		  int ldb, int accumulate, float *C, int ldc, const char *what);

/* The fp32 forms' products with bf16 operands: inp and dout as twins, w as
 * the weights' shadow. */
void matmul_forward_bf16(float *out, const bf16 *inp, const bf16 *w, int BT, int C, int OC,
			 int accumulate);
void matmul_backward_bf16(float *dinp, float *dw, const bf16 *dout, const bf16 *inp,
			  const bf16 *w, int BT, int C, int OC, int accumulate);
void srmsnorm_forward_twin(float *out, bf16 *out16, float *rstd, const float *inp, int N, int C);
/* out: fp32, or NULL and out16 its bf16 form (an operand). */
void srmsnorm_backward_twin(float *dinp, bf16 *dinp16, const float *dout, const float *out,
			    const bf16 *out16, const float *rstd, int N, int C);
void act_backward_twin(float *dinp, bf16 *dinp16, const float *dout, const float *inp, size_t n,
		       int act);
void gate_forward_twin(float *out, bf16 *out16, const float *a, const float *b, size_t n);
void gate_backward_twin(float *da, bf16 *da16, float *db, bf16 *db16, const float *dout,
			const float *a, const float *b, size_t n);
/* The fused ops of ops.h (lrpe_forward/backward: act TN_ACT_NONE); dout
 * and oh may be operands (NULL, and the bf16 form given). */
void act_lrpe_forward_twin(float *out, bf16 *out16, const float *inp, const float *theta,
			   const int32_t *pos, int B, int n, int H, int hd, int act);
void act_lrpe_backward_twin(float *dinp, bf16 *dinp16, float *dtheta, const float *dout,
			    const bf16 *dout16, const float *inp, const float *theta, const int32_t *pos, int B,
			    int n, int H, int hd, int act);
void residual_norm_forward_twin(float *sum, float *out, bf16 *out16, float *rstd,
				const float *a, const float *b, int N, int C);
void merge_norm_gate_twin(float *on, float *rstd, float *z, bf16 *z16, const float *oh,
			  const bf16 *oh16, const float *u, int B, int n, int H, int hd);
void gate_norm_split_twin(float *du, bf16 *du16, float *doh, bf16 *doh16, const float *dz,
			  const float *u, const float *on, const float *rstd, int B, int n, int H,
			  int hd);
size_t xent_scratch_bf16(int R, int V);
/* The fp32 forms' arguments, with x (the final hidden states) in bf16. */
void crossentropy_forward_bf16(float *loss, const bf16 *x16, const float *emb,
			       const int32_t *target, int R, int C, int V, float *scratch);
void crossentropy_backward_bf16(float *dx, float *demb, const bf16 *x16, const float *emb,
				float scale, int R, int C, int V, const float *scratch);
void adamw_update_bf16(float *p, const float *g, float *m, float *v, size_t n, float lr,
		       float beta1, float beta2, float eps, float wd, float gscale, float bc1,
		       float bc2);
struct tn_adamw_seg;
struct tn_adamw_args;
/* adamw_fused_cuda, also writing the shadow (NULL: none) of p[0..]. */
void adamw_fused_launch(float *p, bf16 *shadow, const float *g, float *m, float *v, size_t lo,
			size_t hi, const struct tn_adamw_seg *seg, size_t n_seg,
			const struct tn_adamw_args *a);

#endif
