/* ops_embed.cu - embedding lookup and its gradient. The gradient adds with
 * atomics, so the order of additions (and the last bits) may vary between
 * runs; the CPU reference is the fixed-order one. */
#include "cuda_common.h"
#include "ops_cuda.h"

__global__ static void embed_fwd(float *out, const int32_t *tok, const float *emb, int BT, int C,
				 float scale)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= (size_t)BT * C)
		return;
	size_t t = i / C, j = i % C;
	out[i] = scale * emb[(size_t)tok[t] * C + j];
}

__global__ static void embed_bwd(float *demb, const float *dout, const int32_t *tok, int BT,
				 int C, float scale, int pad)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= (size_t)BT * C)
		return;
	size_t t = i / C, j = i % C;
	if (tok[t] != pad)
		atomicAdd(&demb[(size_t)tok[t] * C + j], scale * dout[i]);
}

void embedding_forward_cuda(float *out, const int32_t *tok, const float *emb, int BT, int C,
			    float scale)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu || BT * C == 0)
		return;
	embed_fwd<<<TN_CUDA_BLOCKS((size_t)BT * C), 256, 0, cu->stream>>>(out, tok, emb, BT, C,
									  scale);
	TN_CUDA_CHECK_LAUNCH("embedding_forward");
}

void embedding_backward_cuda(float *demb, const float *dout, const int32_t *tok, int BT, int C,
			     float scale, int pad)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu || BT * C == 0)
		return;
	embed_bwd<<<TN_CUDA_BLOCKS((size_t)BT * C), 256, 0, cu->stream>>>(demb, dout, tok, BT, C,
									  scale, pad);
	TN_CUDA_CHECK_LAUNCH("embedding_backward");
}
