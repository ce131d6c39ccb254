/* ops_adamw.cu - AdamW per tensor and fused (every tensor of a table in
 * one launch, over a ZeRO shard [lo, hi) of the flat parameters), in
 * mixed precision also writing the parameters' bf16 shadow, so the shadows
 * never go stale; each element in the CPU's arithmetic (bit for bit). And
 * the sum of squares for global-norm clipping: fixed
 * 65536-element blocks summed in double into a staging buffer, the block
 * sums added on the host in block order, so the result does not depend on
 * scheduling. */
#include <stdlib.h>
#include <string.h>

#include "cuda_common.h"
#include "ops_bf16.h"
#include "ops_cuda.h"
#include "reduce.cuh"

extern "C" {
#include "ops.h"
}

#define SUMSQ_BLOCK 65536

__global__ static void sumsq_part(double *part, const float *x, size_t n)
{
	size_t lo = (size_t)blockIdx.x * SUMSQ_BLOCK, hi = lo + SUMSQ_BLOCK < n ? lo + SUMSQ_BLOCK : n;
	double s = 0;
	for (size_t i = lo + threadIdx.x; i < hi; i += blockDim.x)
		s += (double)x[i] * x[i];
	s = block_sum(s);
	if (threadIdx.x == 0)
		part[blockIdx.x] = s;
}

double sumsq_forward_cuda(const float *x, size_t n)
{
	struct tn_cuda *cu = tn_cuda_get();
	size_t nb = (n + SUMSQ_BLOCK - 1) / SUMSQ_BLOCK;
	if (!cu || nb == 0)
		return 0;
	double *host = (double *)malloc(nb * sizeof(double)), total = 0;
	double *dev = (double *)tn_cuda_stage(TN_STAGE_SUMSQ, nb * sizeof(double));
	cudaError_t e = host && dev ? cudaSuccess : cudaErrorMemoryAllocation;
	if (e == cudaSuccess) {
		sumsq_part<<<(unsigned)nb, 256, 0, cu->stream>>>(dev, x, n);
		e = cudaGetLastError();
	}
	if (e == cudaSuccess)
		e = cudaMemcpyAsync(host, dev, nb * sizeof(double), cudaMemcpyDeviceToHost, cu->stream);
	if (e == cudaSuccess)
		e = cudaStreamSynchronize(cu->stream);
	tn_cuda_note(e, "sumsq_forward");
	for (size_t b = 0; e == cudaSuccess && b < nb; b++)
		total += host[b];
	free(host);
	return total;
}

/* One element, each operation rounded on its own (no FMA contraction), in
 * the CPU reference's order: the GPU update equals adamw_update's bit for
 * bit, and the per-tensor and fused kernels equal each other. */
__device__ static inline void adamw_elem(float *p, bf16 *shadow, const float *g, float *m,
					 float *v, size_t i, size_t im, float wd,
					 const struct tn_adamw_args &a)
{
	float gi = __fmul_rn(g[i], a.gscale);
	float mi = __fadd_rn(__fmul_rn(a.beta1, m[im]), __fmul_rn(__fsub_rn(1.0f, a.beta1), gi));
	float vi = __fadd_rn(__fmul_rn(a.beta2, v[im]),
			     __fmul_rn(__fmul_rn(__fsub_rn(1.0f, a.beta2), gi), gi));
	m[im] = mi;
	v[im] = vi;
	float mh = __fdiv_rn(mi, a.bc1), vh = __fdiv_rn(vi, a.bc2);
	float step = __fadd_rn(__fdiv_rn(mh, __fadd_rn(__fsqrt_rn(vh), a.eps)), __fmul_rn(wd, p[i]));
	float pi = __fsub_rn(p[i], __fmul_rn(a.lr, step));
	p[i] = pi;
	if (shadow)
		shadow[i] = __float2bfloat16_rn(pi);
}

__global__ static void adamw(float *p, bf16 *shadow, const float *g, float *m, float *v,
			     size_t n, float wd, struct tn_adamw_args a)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n)
		adamw_elem(p, shadow, g, m, v, i, i, wd, a);
}

static void adamw_launch(float *p, bf16 *shadow, const float *g, float *m, float *v, size_t n,
			 float lr, float beta1, float beta2, float eps, float wd, float gscale,
			 float bc1, float bc2)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu || n == 0)
		return;
	struct tn_adamw_args a = {lr, beta1, beta2, eps, gscale, bc1, bc2};
	adamw<<<TN_CUDA_BLOCKS(n), 256, 0, cu->stream>>>(p, shadow, g, m, v, n, wd, a);
	TN_CUDA_CHECK_LAUNCH("adamw_update");
}

void adamw_update_cuda(float *p, const float *g, float *m, float *v, size_t n, float lr,
		       float beta1, float beta2, float eps, float wd, float gscale, float bc1,
		       float bc2)
{
	adamw_launch(p, NULL, g, m, v, n, lr, beta1, beta2, eps, wd, gscale, bc1, bc2);
}

void adamw_update_bf16(float *p, const float *g, float *m, float *v, size_t n, float lr,
		       float beta1, float beta2, float eps, float wd, float gscale, float bc1,
		       float bc2)
{
	adamw_launch(p, tn_bf16_shadow_of(p), g, m, v, n, lr, beta1, beta2, eps, wd, gscale, bc1,
		     bc2);
}

/* ---- fused: every tensor in one launch ---- */

#define FUSED_SPAN 65536 /* elements of [lo, hi) per block */

/* Block b updates what the tensors cover of [lo + b SPAN, lo + (b+1) SPAN);
 * seg: the tensors clipped to [lo, hi), sorted by offset, none empty. */
__global__ static void adamw_all(float *p, bf16 *shadow, const float *g, float *m, float *v,
				 size_t lo, size_t hi, const struct tn_adamw_seg *seg, int n_seg,
				 struct tn_adamw_args a)
{
	size_t x = lo + (size_t)blockIdx.x * FUSED_SPAN, y = min(x + FUSED_SPAN, hi);
	int s0 = 0, s1 = n_seg; /* the first tensor that ends after x */
	while (s0 < s1) {
		int mid = (s0 + s1) / 2;
		if (seg[mid].offset + seg[mid].numel <= x)
			s0 = mid + 1;
		else
			s1 = mid;
	}
	for (int s = s0; s < n_seg && seg[s].offset < y; s++) {
		size_t from = max(x, seg[s].offset), to = min(y, seg[s].offset + seg[s].numel);
		for (size_t i = from + threadIdx.x; i < to; i += blockDim.x)
			adamw_elem(p, shadow, g, m, v, i, i - lo, seg[s].wd, a);
	}
}

static int by_offset(const void *a, const void *b)
{
	size_t x = ((const struct tn_adamw_seg *)a)->offset, y = ((const struct tn_adamw_seg *)b)->offset;
	return (x > y) - (x < y);
}

/* The clipped, sorted table on the device: uploaded only when it differs
 * from the last one (it is the same every step). */
static struct tn_adamw_seg *table, *table_dev;
static size_t table_n;

static const struct tn_adamw_seg *device_table(size_t lo, size_t hi,
					       const struct tn_adamw_seg *seg, size_t n_seg,
					       size_t *n_out)
{
	/* zeroed, so that padding compares equal */
	struct tn_adamw_seg *t = (struct tn_adamw_seg *)calloc(n_seg + 1, sizeof(*t));
	size_t n = 0;
	for (size_t i = 0; t && i < n_seg; i++) {
		size_t x = seg[i].offset > lo ? seg[i].offset : lo;
		size_t y = seg[i].offset + seg[i].numel < hi ? seg[i].offset + seg[i].numel : hi;
		if (x >= y)
			continue;
		t[n].offset = x;
		t[n].numel = y - x;
		t[n++].wd = seg[i].wd;
	}
	*n_out = n;
	if (!t) {
		tn_cuda_note(cudaErrorMemoryAllocation, "adamw_fused table");
		return NULL;
	}
	qsort(t, n, sizeof(*t), by_offset);
	struct tn_adamw_seg *dev = (struct tn_adamw_seg *)tn_cuda_stage(TN_STAGE_ADAMW,
									(n + 1) * sizeof(*t));
	if (dev && dev == table_dev && n == table_n && !memcmp(t, table, n * sizeof(*t))) {
		free(t);
		return dev;
	}
	free(table);
	table = t;
	table_n = n;
	table_dev = dev;
	if (!dev)
		return NULL;
	struct tn_cuda *cu = tn_cuda_get();
	cudaError_t e = cudaMemcpyAsync(dev, t, n * sizeof(*t), cudaMemcpyHostToDevice, cu->stream);
	if (e == cudaSuccess) /* once per run: the host table may be freed before the copy runs */
		e = cudaStreamSynchronize(cu->stream);
	tn_cuda_note(e, "adamw_fused table");
	if (e != cudaSuccess)
		table_dev = NULL;
	return e == cudaSuccess ? dev : NULL;
}

void adamw_fused_launch(float *p, bf16 *shadow, const float *g, float *m, float *v, size_t lo,
			size_t hi, const struct tn_adamw_seg *seg, size_t n_seg,
			const struct tn_adamw_args *a)
{
	struct tn_cuda *cu = tn_cuda_get();
	size_t n = 0, blocks = hi > lo ? (hi - lo + FUSED_SPAN - 1) / FUSED_SPAN : 0;
	const struct tn_adamw_seg *dev = cu && blocks ? device_table(lo, hi, seg, n_seg, &n) : NULL;
	if (!dev || n == 0)
		return;
	adamw_all<<<(unsigned)blocks, 512, 0, cu->stream>>>(p, shadow, g, m, v, lo, hi, dev, (int)n,
							  *a);
	TN_CUDA_CHECK_LAUNCH("adamw_fused");
}

void adamw_fused_cuda(float *p, const float *g, float *m, float *v, size_t lo, size_t hi,
		      const struct tn_adamw_seg *seg, size_t n_seg, const struct tn_adamw_args *a)
{
	adamw_fused_launch(p, NULL, g, m, v, lo, hi, seg, n_seg, a);
}
