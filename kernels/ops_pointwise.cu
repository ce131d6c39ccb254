/* ops_pointwise.cu - the elementwise ops: the q/k feature map, the gate
 * product (output gate and SGLU) and the residual add; the mixed-precision
 * forms also write bf16 twins of the outputs that feed a product. Eight
 * elements a thread, moved as 16- and 32-byte vectors where aligned. */
#include "cuda_common.h"
#include "ops_bf16.h"
#include "ops_cuda.h"

/* Each thread takes the 8 elements from 8 x its index: op.at<8> on them at
 * once where vec (every pointer 16-byte aligned) and all 8 are there, else
 * op.at<1> on each. */
template <typename Op> __global__ static void each8(Op op, size_t n, int vec)
{
	size_t i = 8 * ((size_t)blockIdx.x * blockDim.x + threadIdx.x);
	if (i + 8 <= n && vec) {
		op.template at<8>(i);
		return;
	}
	for (size_t j = i; j < n && j < i + 8; j++)
		op.template at<1>(j);
}

template <typename Op> static void launch(const Op &op, size_t n, int vec, const char *what)
{
	struct tn_cuda *cu = tn_cuda_get();
	if (!cu || n == 0)
		return;
	each8<<<TN_CUDA_BLOCKS((n + 7) / 8), 256, 0, cu->stream>>>(op, n, vec);
	TN_CUDA_CHECK_LAUNCH(what);
}

struct act_fwd {
	float *out;
	const float *inp;
	int act;
	template <int W> __device__ void at(size_t i) const
	{
		float v[W];
		getw<W>(inp, NULL, i, v);
		for (int k = 0; k < W; k++)
			v[k] = act_value(v[k], act);
		putw<W>(out, NULL, i, v);
	}
};

/* out = a * b (the gate), a + b (the residual add) or a * act'(b) (the
 * feature map's backward) */
enum binary_op { MUL, ADD, SLOPE };
struct binary {
	float *out;
	bf16 *out16;
	const float *a, *b;
	enum binary_op op;
	int act;
	template <int W> __device__ void at(size_t i) const
	{
		float x[W], y[W];
		getw<W>(a, NULL, i, x);
		getw<W>(b, NULL, i, y);
		for (int k = 0; k < W; k++)
			x[k] = op == ADD ? x[k] + y[k]
			       : op == MUL ? x[k] * y[k] : x[k] * act_slope(y[k], act);
		putw<W>(out, out16, i, x);
	}
};

struct gate_bwd {
	float *da;
	bf16 *da16;
	float *db;
	bf16 *db16;
	const float *dout, *a, *b;
	template <int W> __device__ void at(size_t i) const
	{
		float g[W], x[W], y[W];
		getw<W>(dout, NULL, i, g);
		getw<W>(a, NULL, i, x);
		getw<W>(b, NULL, i, y);
		for (int k = 0; k < W; k++) {
			float gk = g[k];
			g[k] = gk * y[k];
			y[k] = gk * x[k];
		}
		putw<W>(da, da16, i, g);
		putw<W>(db, db16, i, y);
	}
};

void act_forward_cuda(float *out, const float *inp, size_t n, enum tn_act act)
{
	launch(act_fwd{out, inp, act}, n, tn_vec8(out) && tn_vec8(inp), "act_forward");
}

void act_backward_cuda(float *dinp, const float *dout, const float *inp, size_t n,
		       enum tn_act act)
{
	act_backward_twin(dinp, NULL, dout, inp, n, act);
}

void act_backward_twin(float *dinp, bf16 *dinp16, const float *dout, const float *inp, size_t n,
		       int act)
{
	int vec = tn_vec8(dinp) && tn_vec8(dinp16) && tn_vec8(dout) && tn_vec8(inp);
	launch(binary{dinp, dinp16, dout, inp, SLOPE, act}, n, vec, "act_backward");
}

void gate_forward_cuda(float *out, const float *a, const float *b, size_t n)
{
	gate_forward_twin(out, NULL, a, b, n);
}

void gate_forward_twin(float *out, bf16 *out16, const float *a, const float *b, size_t n)
{
	int vec = tn_vec8(out) && tn_vec8(out16) && tn_vec8(a) && tn_vec8(b);
	launch(binary{out, out16, a, b, MUL, 0}, n, vec, "gate_forward");
}

void gate_backward_cuda(float *da, float *db, const float *dout, const float *a,
			const float *b, size_t n)
{
	gate_backward_twin(da, NULL, db, NULL, dout, a, b, n);
}

void gate_backward_twin(float *da, bf16 *da16, float *db, bf16 *db16, const float *dout,
			const float *a, const float *b, size_t n)
{
	int vec = tn_vec8(da) && tn_vec8(da16) && tn_vec8(db) && tn_vec8(db16) && tn_vec8(dout) &&
		  tn_vec8(a) && tn_vec8(b);
	launch(gate_bwd{da, da16, db, db16, dout, a, b}, n, vec, "gate_backward");
}

void residual_forward_cuda(float *out, const float *a, const float *b, size_t n)
{
	launch(binary{out, NULL, a, b, ADD, 0}, n, tn_vec8(out) && tn_vec8(a) && tn_vec8(b),
	       "residual_forward");
}
