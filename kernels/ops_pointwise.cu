/* ops_pointwise.cu - the elementwise ops: the q/k feature map, the gate
 * product (output gate and SGLU) and the residual add; the mixed-precision
 * forms also write bf16 twins of the outputs that feed a product. */
#include "cuda_common.h"
#include "ops_bf16.h"
#include "ops_cuda.h"

__global__ static void act_fwd(float *out, const float *inp, size_t n, int act)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= n)
		return;
	out[i] = act_value(inp[i], act);
}

__global__ static void act_bwd(float *dinp, bf16 *dinp16, const float *dout, const float *inp,
			       size_t n, int act)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= n)
		return;
	put(dinp, dinp16, i, dout[i] * act_slope(inp[i], act));
}

__global__ static void gate_fwd(float *out, bf16 *out16, const float *a, const float *b,
				size_t n)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= n)
		return;
	put(out, out16, i, a[i] * b[i]);
}

__global__ static void gate_bwd(float *da, bf16 *da16, float *db, bf16 *db16, const float *dout,
				const float *a, const float *b, size_t n)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= n)
		return;
	float g = dout[i], x = a[i], y = b[i];
	put(da, da16, i, g * y);
	put(db, db16, i, g * x);
}

__global__ static void add(float *out, const float *a, const float *b, size_t n)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n)
		out[i] = a[i] + b[i];
}

void act_forward_cuda(float *out, const float *inp, size_t n, enum tn_act act)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu || n == 0)
		return;
	act_fwd<<<TN_CUDA_BLOCKS(n), 256, 0, cu->stream>>>(out, inp, n, act);
	TN_CUDA_CHECK_LAUNCH("act_forward");
}

void act_backward_cuda(float *dinp, const float *dout, const float *inp, size_t n,
		       enum tn_act act)
{
	act_backward_twin(dinp, NULL, dout, inp, n, act);
}

void act_backward_twin(float *dinp, bf16 *dinp16, const float *dout, const float *inp, size_t n,
		       int act)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu || n == 0)
		return;
	act_bwd<<<TN_CUDA_BLOCKS(n), 256, 0, cu->stream>>>(dinp, dinp16, dout, inp, n, act);
	TN_CUDA_CHECK_LAUNCH("act_backward");
}

void gate_forward_cuda(float *out, const float *a, const float *b, size_t n)
{
	gate_forward_twin(out, NULL, a, b, n);
}

void gate_forward_twin(float *out, bf16 *out16, const float *a, const float *b, size_t n)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu || n == 0)
		return;
	gate_fwd<<<TN_CUDA_BLOCKS(n), 256, 0, cu->stream>>>(out, out16, a, b, n);
	TN_CUDA_CHECK_LAUNCH("gate_forward");
}

void gate_backward_cuda(float *da, float *db, const float *dout, const float *a,
			const float *b, size_t n)
{
	gate_backward_twin(da, NULL, db, NULL, dout, a, b, n);
}

void gate_backward_twin(float *da, bf16 *da16, float *db, bf16 *db16, const float *dout,
			const float *a, const float *b, size_t n)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu || n == 0)
		return;
	gate_bwd<<<TN_CUDA_BLOCKS(n), 256, 0, cu->stream>>>(da, da16, db, db16, dout, a, b, n);
	TN_CUDA_CHECK_LAUNCH("gate_backward");
}

void residual_forward_cuda(float *out, const float *a, const float *b, size_t n)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu || n == 0)
		return;
	add<<<TN_CUDA_BLOCKS(n), 256, 0, cu->stream>>>(out, a, b, n);
	TN_CUDA_CHECK_LAUNCH("residual_forward");
}
