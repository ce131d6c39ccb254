/* ops_embed.cu - embedding lookup and its gradient, deterministic: the
 * backward sorts the positions by token id (CUB's stable radix sort), then
 * one block per distinct id and 256 channels adds that id's rows in
 * ascending position order, one rounded multiply and add at a time (no
 * atomics, no FMA), which is the CPU reference's order: the gradient equals
 * embedding_backward's bit for bit, run after run. */
#include <cub/device/device_radix_sort.cuh>

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

__global__ static void iota(int32_t *pos, int BT)
{
	int i = blockIdx.x * blockDim.x + threadIdx.x;
	if (i < BT)
		pos[i] = i;
}

#define ROWS_TILE 256 /* = blockDim.x of embed_bwd */

/* Block (i, y): if sorted position i starts a run of one id, channels
 * [256 y, 256 y + 256) of that id's gradient += scale x its rows, in order.
 * The run's positions come through shared memory a tile at a time. */
__global__ static void embed_bwd(float *demb, const float *dout, const int32_t *key,
				 const int32_t *pos, int BT, int C, float scale, int pad)
{
	__shared__ int32_t rows[ROWS_TILE];
	int i = blockIdx.x, id = key[i];
	if (id == pad || (i > 0 && key[i - 1] == id))
		return; /* the whole block: not the start of a run */
	int j = blockIdx.y * blockDim.x + threadIdx.x;
	float acc = j < C ? demb[(size_t)id * C + j] : 0.0f;
	for (int base = i;; base += ROWS_TILE) {
		int r = base + threadIdx.x, in_run = r < BT && key[r] == id;
		__syncthreads(); /* the last tile has been read */
		rows[threadIdx.x] = in_run ? pos[r] : 0;
		int n = __syncthreads_count(in_run); /* sorted: the run is a prefix of the tile */
		if (j < C) {
#pragma unroll 4
			for (int k = 0; k < n; k++)
				acc = __fadd_rn(acc, __fmul_rn(scale, dout[(size_t)rows[k] * C + j]));
		}
		if (n < ROWS_TILE)
			break;
	}
	if (j < C)
		demb[(size_t)id * C + j] = acc;
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

/* Staging layout: sorted ids, positions, sorted positions (BT each, padded
 * to 256 bytes), then CUB's temporary storage. */
static size_t pad256(size_t b) { return (b + 255) & ~(size_t)255; }

void embedding_backward_cuda(float *demb, const float *dout, const int32_t *tok, int BT, int C,
			     float scale, int pad)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu || BT * C == 0)
		return;
	size_t part = pad256((size_t)BT * sizeof(int32_t)), temp = 0;
	cudaError_t e = cub::DeviceRadixSort::SortPairs(NULL, temp, tok, (int32_t *)NULL,
							(const int32_t *)NULL, (int32_t *)NULL, BT,
							0, 32, cu->stream);
	char *stage = e == cudaSuccess ? (char *)tn_cuda_stage(TN_STAGE_EMBED, 3 * part + temp)
				       : NULL;
	if (!stage) {
		tn_cuda_note(e == cudaSuccess ? cudaErrorMemoryAllocation : e, "embedding_backward");
		return;
	}
	int32_t *key = (int32_t *)stage, *pos = (int32_t *)(stage + part);
	int32_t *sorted = (int32_t *)(stage + 2 * part);
	iota<<<TN_CUDA_BLOCKS(BT), 256, 0, cu->stream>>>(pos, BT);
	TN_CUDA_CHECK_LAUNCH("embedding_backward positions");
	e = cub::DeviceRadixSort::SortPairs(stage + 3 * part, temp, tok, key, pos, sorted, BT, 0, 32,
					    cu->stream);
	tn_cuda_note(e, "embedding_backward sort");
	dim3 grid((unsigned)BT, (unsigned)((C + ROWS_TILE - 1) / ROWS_TILE));
	embed_bwd<<<grid, ROWS_TILE, 0, cu->stream>>>(demb, dout, key, sorted, BT, C, scale, pad);
	TN_CUDA_CHECK_LAUNCH("embedding_backward");
}
