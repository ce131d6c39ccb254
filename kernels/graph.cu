/* graph.cu - CUDA graphs of the tn stream, device-to-device copies and the
 * row argmax of greedy decoding (graph_cuda.h). A decode step issues some
 * 20 small kernels per layer; recorded once into a graph and replayed, it
 * costs one launch. Decision: capture is thread-local, so a capture fails
 * (rather than silently syncing) if an op inside it allocates or waits,
 * and a failed capture leaves the stream usable and the error reported. */
#include <float.h>

#include "cuda_common.h"
#include "graph_cuda.h"

extern "C" {
#include "util.h"
}

void tn_cuda_copy(void *dst, const void *src, size_t bytes)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (cu && bytes)
		tn_cuda_note(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cu->stream),
			     "copy");
}

/* One block per row; ties go to the lower index, as the CPU loop does. */
__global__ void argmax_rows_kernel(int32_t *out, const float *x, int C)
{
	__shared__ float bv[1024];
	__shared__ int bi[1024];
	const float *row = x + (size_t)blockIdx.x * C;
	float best = -FLT_MAX;
	int at = C; /* none yet: loses every tie */
	for (int c = threadIdx.x; c < C; c += blockDim.x)
		if (row[c] > best || at == C) {
			best = row[c];
			at = c;
		}
	bv[threadIdx.x] = best;
	bi[threadIdx.x] = at;
	__syncthreads();
	for (int half = blockDim.x / 2; half > 0; half /= 2) {
		if ((int)threadIdx.x < half) {
			float v = bv[threadIdx.x + half];
			int i = bi[threadIdx.x + half];
			if (i < C && (bi[threadIdx.x] == C || v > bv[threadIdx.x] ||
				      (v == bv[threadIdx.x] && i < bi[threadIdx.x]))) {
				bv[threadIdx.x] = v;
				bi[threadIdx.x] = i;
			}
		}
		__syncthreads();
	}
	if (threadIdx.x == 0)
		out[blockIdx.x] = bi[0] == C ? 0 : bi[0];
}

void tn_cuda_argmax_rows(int32_t *out, const float *x, int R, int C)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu || R <= 0)
		return;
	argmax_rows_kernel<<<R, 1024, 0, cu->stream>>>(out, x, C);
	TN_CUDA_CHECK_LAUNCH("argmax_rows");
}

static int graph_fail(cudaError_t e, const char *what)
{
	return tn_fail(TN_EIO, "CUDA graph: %s: %s", what, cudaGetErrorString(e));
}

int tn_cuda_graph_begin(void)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu)
		return tn_cuda_status();
	cudaError_t e = cudaStreamBeginCapture(cu->stream, cudaStreamCaptureModeThreadLocal);
	return e == cudaSuccess ? TN_OK : graph_fail(e, "beginning the capture");
}

int tn_cuda_graph_end(void **graph)
{
	*graph = NULL;
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu)
		return tn_cuda_status();
	cudaGraph_t g = NULL;
	cudaGraphExec_t x = NULL;
	cudaError_t e = cudaStreamEndCapture(cu->stream, &g);
	if (e != cudaSuccess)
		return graph_fail(e, "ending the capture (an op inside it allocated or synchronised)");
	e = cudaGraphInstantiate(&x, g, 0);
	cudaGraphDestroy(g);
	if (e != cudaSuccess)
		return graph_fail(e, "instantiating");
	*graph = (void *)x;
	return TN_OK;
}

int tn_cuda_graph_launch(void *graph)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu)
		return tn_cuda_status();
	cudaError_t e = cudaGraphLaunch((cudaGraphExec_t)graph, cu->stream);
	return e == cudaSuccess ? TN_OK : graph_fail(e, "launching");
}

void tn_cuda_graph_free(void *graph)
{
	if (graph)
		cudaGraphExecDestroy((cudaGraphExec_t)graph);
}

size_t tn_cuda_stage_epoch;

size_t tn_cuda_graph_epoch(void) { return tn_cuda_stage_epoch; }
