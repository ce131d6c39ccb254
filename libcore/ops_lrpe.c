/* ops_lrpe.c - head split with LRPE (MODEL.md 1.3 step 4), its backward,
 * and the head merge; the fused forms apply the q/k feature map first (its
 * backward recomputes it from the map's input). The angle theta * t is formed and its cos/sin taken
 * in double, then rounded to fp32 (the clean choice of MODEL.md 6.6, not
 * the bf16 rounding of the HF eval path). */
#include "ops.h"

#include <math.h>

/* Index of head h, position t of sequence b in a [B, H, n, dk] tensor. */
static size_t head_row(int b, int h, int t, int H, int n, int dk)
{
	return (((size_t)b * H + h) * n + t) * dk;
}

/* lrpe_forward of act(inp) (TN_ACT_NONE: of inp). */
void act_lrpe_forward(float *out, const float *inp, const float *theta, const int32_t *pos,
		      int B, int n, int H, int hd, enum tn_act act)
{
	int dk = theta ? 2 * hd : hd, E = H * hd;
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * n * E > TN_OMP_MIN)
	for (int b = 0; b < B; b++)
		for (int t = 0; t < n; t++) {
			const float *x = inp + ((size_t)b * n + t) * E;
			double p = pos ? pos[(size_t)b * n + t] : t;
			for (int h = 0; h < H; h++) {
				float *o = out + head_row(b, h, t, H, n, dk);
				for (int c = 0; c < hd; c++) {
					float v = tn_act_value(x[h * hd + c], act);
					if (!theta) {
						o[c] = v;
						continue;
					}
					double a = (double)theta[h * hd + c] * p;
					o[c] = v * (float)cos(a);
					o[hd + c] = v * (float)sin(a);
				}
			}
		}
}

void lrpe_forward(float *out, const float *inp, const float *theta, const int32_t *pos,
		  int B, int n, int H, int hd)
{
	act_lrpe_forward(out, inp, theta, pos, B, n, H, hd, TN_ACT_NONE);
}

/* The gradient of act_lrpe_forward: the slope of act times lrpe's. */
void act_lrpe_backward(float *dinp, float *dtheta, const float *dout, const float *inp,
		       const float *theta, const int32_t *pos, int B, int n, int H, int hd,
		       enum tn_act act)
{
	int dk = theta ? 2 * hd : hd, E = H * hd;
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * n * E > TN_OMP_MIN)
	for (int b = 0; b < B; b++)
		for (int t = 0; t < n; t++) {
			float *dx = dinp + ((size_t)b * n + t) * E;
			const float *x = inp ? inp + ((size_t)b * n + t) * E : NULL;
			double p = pos ? pos[(size_t)b * n + t] : t;
			for (int h = 0; h < H; h++) {
				const float *g = dout + head_row(b, h, t, H, n, dk);
				for (int c = 0; c < hd; c++) {
					float v = g[c];
					if (theta) {
						double a = (double)theta[h * hd + c] * p;
						v = g[c] * (float)cos(a) + g[hd + c] * (float)sin(a);
					}
					dx[h * hd + c] = act == TN_ACT_NONE
						? v : v * tn_act_slope(x[h * hd + c], act);
				}
			}
		}
	if (!theta || !dtheta)
		return;
	/* d/dtheta of x cos(theta p), x sin(theta p): sequential over rows so
	 * the sum has one fixed order */
	for (int b = 0; b < B; b++)
		for (int t = 0; t < n; t++) {
			const float *x = inp + ((size_t)b * n + t) * E;
			double p = pos ? pos[(size_t)b * n + t] : t;
			for (int h = 0; h < H; h++) {
				const float *g = dout + head_row(b, h, t, H, n, dk);
				for (int c = 0; c < hd; c++) {
					double a = (double)theta[h * hd + c] * p;
					float v = tn_act_value(x[h * hd + c], act);
					dtheta[h * hd + c] += (float)(p * v *
						(-sin(a) * g[c] + cos(a) * g[hd + c]));
				}
			}
		}
}

void lrpe_backward(float *dinp, float *dtheta, const float *dout, const float *inp,
		   const float *theta, const int32_t *pos, int B, int n, int H, int hd)
{
	act_lrpe_backward(dinp, dtheta, dout, inp, theta, pos, B, n, H, hd, TN_ACT_NONE);
}

void heads_merge(float *out, const float *inp, int B, int n, int H, int hd)
{
	int E = H * hd;
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * n * E > TN_OMP_MIN)
	for (int b = 0; b < B; b++)
		for (int t = 0; t < n; t++)
			for (int h = 0; h < H; h++)
				for (int c = 0; c < hd; c++)
					out[((size_t)b * n + t) * E + h * hd + c] =
						inp[head_row(b, h, t, H, n, hd) + c];
}
