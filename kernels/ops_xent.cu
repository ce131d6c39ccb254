/* ops_xent.cu - tied LM head + softmax + cross-entropy, fused and chunked as
 * on the CPU: rows in blocks of XENT_ROWS, the vocabulary in chunks of
 * XENT_VCHUNK, logits of one block x chunk at a time from cuBLAS, an online
 * log-sum-exp (in double) across chunks; the backward recomputes them.
 * The bf16 forms do the same with larger blocks on the tensor cores (bf16
 * hidden states and embedding shadow, fp32 logits, float exponentials) and
 * hand the two gradient products a bf16 copy of the chunk's softmax grad. */
#include <stdint.h>

#include "cuda_common.h"
#include "ops_bf16.h"
#include "ops_cuda.h"
#include "reduce.cuh"

#define XENT_ROWS 2048
#define XENT_VCHUNK 8192

/* Scratch layout: logits [XENT_ROWS * vchunk] floats, then per row the
 * running max and sum (doubles) and the target's logit (float). */
static int vchunk(int V) { return V < XENT_VCHUNK ? V : XENT_VCHUNK; }

size_t xent_scratch_cuda(int V)
{
	return (size_t)XENT_ROWS * vchunk(V) + (size_t)XENT_ROWS * 5 + 2; /* + alignment slack */
}

/* The per-row doubles after the logits, 8-byte aligned whatever scratch is. */
static double *row_stats(float *scratch, int V)
{
	uintptr_t at = (uintptr_t)(scratch + (size_t)XENT_ROWS * vchunk(V));
	return (double *)((at + 7) & ~(uintptr_t)7);
}

/* Fold one chunk of logits into the rows' running max and sum; Acc is the
 * type the chunk's exponentials are summed in (double: the check mode). */
template <typename Acc>
__global__ static void fold(const float *lg, int vc, int v0, const int32_t *target, double *m,
			    double *s, float *tl, int first)
{
	int i = blockIdx.x;
	const float *l = lg + (size_t)i * vc;
	float cm = -INFINITY;
	for (int j = threadIdx.x; j < vc; j += blockDim.x)
		cm = fmaxf(cm, l[j]);
	cm = block_max(cm);
	double old_m = first ? -INFINITY : m[i], nm = fmax((double)cm, old_m);
	Acc acc = 0;
	for (int j = threadIdx.x; j < vc; j += blockDim.x)
		acc += sizeof(Acc) == sizeof(double) ? exp((double)l[j] - nm)
						     : __expf(l[j] - (float)nm);
	acc = block_sum(acc);
	if (threadIdx.x == 0) {
		s[i] = (first ? 0.0 : s[i] * exp(old_m - nm)) + acc;
		m[i] = nm;
		if (first)
			tl[i] = 0;
		if (target[i] >= v0 && target[i] < v0 + vc)
			tl[i] = l[target[i] - v0];
	}
}

__global__ static void finish(float *loss, float *lse, const int32_t *target, const double *m,
			      const double *s, const float *tl, int rows)
{
	int i = blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= rows)
		return;
	double l = m[i] + log(s[i]);
	lse[i] = (float)l;
	loss[i] = target[i] >= 0 ? (float)(l - tl[i]) : 0.0f;
}

void crossentropy_forward_cuda(float *loss, float *lse, const float *x, const float *emb,
			       const int32_t *target, int R, int C, int V, float *scratch)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu)
		return;
	double *m = row_stats(scratch, V), *s = m + XENT_ROWS;
	float *tl = (float *)(s + XENT_ROWS);
	for (int r0 = 0; r0 < R; r0 += XENT_ROWS) {
		int rows = R - r0 < XENT_ROWS ? R - r0 : XENT_ROWS;
		for (int v0 = 0; v0 < V; v0 += XENT_VCHUNK) {
			int vc = V - v0 < XENT_VCHUNK ? V - v0 : XENT_VCHUNK;
			matmul_forward_cuda(scratch, x + (size_t)r0 * C, emb + (size_t)v0 * C, rows, C,
					    vc, 0);
			fold<double><<<rows, 256, 0, cu->stream>>>(scratch, vc, v0, target + r0, m, s, tl,
							   v0 == 0);
			TN_CUDA_CHECK_LAUNCH("crossentropy_forward fold");
		}
		finish<<<TN_CUDA_BLOCKS(rows), 256, 0, cu->stream>>>(loss + r0, lse + r0, target + r0,
								     m, s, tl, rows);
		TN_CUDA_CHECK_LAUNCH("crossentropy_forward");
	}
}

__global__ static void chunk_grad(float *lg, int vc, int v0, const int32_t *target,
				  const float *lse, float scale, int rows)
{
	size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (k >= (size_t)rows * vc)
		return;
	int i = (int)(k / vc), j = (int)(k % vc);
	if (target[i] < 0) {
		lg[k] = 0;
		return;
	}
	float g = scale * expf(lg[k] - lse[i]);
	if (target[i] == v0 + j)
		g -= scale;
	lg[k] = g;
}

void crossentropy_backward_cuda(float *dx, float *demb, const float *x, const float *emb,
				const int32_t *target, const float *lse, float scale, int R,
				int C, int V, float *scratch)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu)
		return;
	tn_cuda_note(cudaMemsetAsync(dx, 0, (size_t)R * C * sizeof(float), cu->stream),
		     "crossentropy_backward");
	for (int r0 = 0; r0 < R; r0 += XENT_ROWS) {
		int rows = R - r0 < XENT_ROWS ? R - r0 : XENT_ROWS;
		const float *xr = x + (size_t)r0 * C;
		for (int v0 = 0; v0 < V; v0 += XENT_VCHUNK) {
			int vc = V - v0 < XENT_VCHUNK ? V - v0 : XENT_VCHUNK;
			const float *e = emb + (size_t)v0 * C;
			matmul_forward_cuda(scratch, xr, e, rows, C, vc, 0);
			chunk_grad<<<TN_CUDA_BLOCKS((size_t)rows * vc), 256, 0, cu->stream>>>(
				scratch, vc, v0, target + r0, lse + r0, scale, rows);
			TN_CUDA_CHECK_LAUNCH("crossentropy_backward");
			matmul_backward_cuda(dx + (size_t)r0 * C, demb + (size_t)v0 * C, scratch, xr, e,
					     rows, C, vc, 1);
		}
	}
}

/* ---- mixed precision ---- */

#define XENT16_ROWS 4096
#define XENT16_VCHUNK 16384

static int vchunk16(int V) { return V < XENT16_VCHUNK ? V : XENT16_VCHUNK; }

/* Scratch: fp32 logits and their bf16 gradient [XENT16_ROWS * vchunk], then
 * the row statistics as in the fp32 form. */
size_t xent_scratch_bf16(int V)
{
	size_t lg = (size_t)XENT16_ROWS * vchunk16(V);
	return lg + (lg + 1) / 2 + (size_t)XENT16_ROWS * 5 + 2;
}

static bf16 *grad16_at(float *scratch, int V)
{
	return (bf16 *)(scratch + (size_t)XENT16_ROWS * vchunk16(V));
}

static double *row_stats16(float *scratch, int V)
{
	size_t lg = (size_t)XENT16_ROWS * vchunk16(V);
	uintptr_t at = (uintptr_t)(scratch + lg + (lg + 1) / 2);
	return (double *)((at + 7) & ~(uintptr_t)7);
}

/* logits[rows, vc] of rows r0.. against vocabulary rows v0.. */
static void logits16(float *lg, const bf16 *x16, const bf16 *e16, int rows, int C, int vc)
{
	tn_gemm_bf16(1, 0, vc, rows, C, e16, C, x16, C, 0, lg, vc, "crossentropy logits bf16");
}

void crossentropy_forward_bf16(float *loss, float *lse, const bf16 *x16, const float *emb,
			       const int32_t *target, int R, int C, int V, float *scratch)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu)
		return;
	const bf16 *e16 = tn_bf16_weight(emb, (size_t)V * C);
	double *m = row_stats16(scratch, V), *s = m + XENT16_ROWS;
	float *tl = (float *)(s + XENT16_ROWS);
	for (int r0 = 0; r0 < R && x16 && e16; r0 += XENT16_ROWS) {
		int rows = R - r0 < XENT16_ROWS ? R - r0 : XENT16_ROWS;
		for (int v0 = 0; v0 < V; v0 += XENT16_VCHUNK) {
			int vc = V - v0 < XENT16_VCHUNK ? V - v0 : XENT16_VCHUNK;
			logits16(scratch, x16 + (size_t)r0 * C, e16 + (size_t)v0 * C, rows, C, vc);
			fold<float><<<rows, 256, 0, cu->stream>>>(scratch, vc, v0, target + r0, m, s,
								  tl, v0 == 0);
			TN_CUDA_CHECK_LAUNCH("crossentropy_forward bf16 fold");
		}
		finish<<<TN_CUDA_BLOCKS(rows), 256, 0, cu->stream>>>(loss + r0, lse + r0, target + r0,
								     m, s, tl, rows);
		TN_CUDA_CHECK_LAUNCH("crossentropy_forward bf16");
	}
}

/* g[i, j] = scale (softmax - onehot), in bf16; grid (vc / 256, rows). */
__global__ static void chunk_grad16(bf16 *g, const float *lg, int vc, int v0,
				    const int32_t *target, const float *lse, float scale)
{
	int i = blockIdx.y, j = blockIdx.x * blockDim.x + threadIdx.x;
	if (j >= vc)
		return;
	size_t k = (size_t)i * vc + j;
	int t = target[i];
	float v = t < 0 ? 0.0f : scale * __expf(lg[k] - lse[i]) - (t == v0 + j ? scale : 0.0f);
	g[k] = __float2bfloat16_rn(v);
}

void crossentropy_backward_bf16(float *dx, float *demb, const bf16 *x16, const float *emb,
				const int32_t *target, const float *lse, float scale, int R,
				int C, int V, float *scratch)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu)
		return;
	const bf16 *e16 = tn_bf16_weight(emb, (size_t)V * C);
	bf16 *g16 = grad16_at(scratch, V);
	for (int r0 = 0; r0 < R && x16 && e16; r0 += XENT16_ROWS) {
		int rows = R - r0 < XENT16_ROWS ? R - r0 : XENT16_ROWS;
		const bf16 *xr = x16 + (size_t)r0 * C;
		for (int v0 = 0; v0 < V; v0 += XENT16_VCHUNK) {
			int vc = V - v0 < XENT16_VCHUNK ? V - v0 : XENT16_VCHUNK;
			const bf16 *e = e16 + (size_t)v0 * C;
			logits16(scratch, xr, e, rows, C, vc);
			dim3 grid((unsigned)((vc + 255) / 256), (unsigned)rows);
			chunk_grad16<<<grid, 256, 0, cu->stream>>>(g16, scratch, vc, v0, target + r0,
								   lse + r0, scale);
			TN_CUDA_CHECK_LAUNCH("crossentropy_backward bf16");
			/* dx = g E (the first chunk assigns), dE += g^T x */
			tn_gemm_bf16(0, 0, C, rows, vc, e, C, g16, vc, v0 > 0, dx + (size_t)r0 * C, C,
				     "crossentropy dx bf16");
			tn_gemm_bf16(0, 1, C, vc, rows, xr, C, g16, vc, 1, demb + (size_t)v0 * C, C,
				     "crossentropy demb bf16");
		}
	}
}
