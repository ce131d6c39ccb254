/* reduce.cuh - block-wide sums for the CUDA ops (warp shuffles, then one
 * value per warp through shared memory). Every thread gets the result. */
#ifndef TN_REDUCE_CUH
#define TN_REDUCE_CUH

template <typename T> __device__ inline T warp_sum(T v)
{
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}

template <typename T> __device__ inline T warp_max(T v)
{
	for (int o = 16; o > 0; o >>= 1) {
		T u = __shfl_xor_sync(0xffffffffu, v, o);
		v = u > v ? u : v;
	}
	return v;
}

/* blockDim.x must be a multiple of 32, at most 1024. */
template <typename T> __device__ inline T block_sum(T v)
{
	__shared__ T part[32];
	int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
	v = warp_sum(v);
	__syncthreads();
	if (lane == 0)
		part[warp] = v;
	__syncthreads();
	v = lane < warps ? part[lane] : (T)0;
	return warp_sum(v);
}

template <typename T> __device__ inline T block_max(T v)
{
	__shared__ T part[32];
	int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
	v = warp_max(v);
	__syncthreads();
	if (lane == 0)
		part[warp] = v;
	__syncthreads();
	v = lane < warps ? part[lane] : part[0];
	return warp_max(v);
}

#endif
