/* ops_lrpe.c - head split with LRPE (MODEL.md 1.3 step 4), its backward,
 * and the head merge. The angle theta * t is formed and its cos/sin taken
 * in double, then rounded to fp32 (the clean choice of MODEL.md 6.6, not
 * the bf16 rounding of the HF eval path). */
#include "ops.h"

#include <math.h>

/* Index of head h, position t of sequence b in a [B, H, n, dk] tensor. */
static size_t head_row(int b, int h, int t, int H, int n, int dk)
{
	return (((size_t)b * H + h) * n + t) * dk;
}

void lrpe_forward(float *out, const float *inp, const float *theta, const int32_t *pos,
		  int B, int n, int H, int hd)
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
					float v = x[h * hd + c];
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

void lrpe_backward(float *dinp, float *dtheta, const float *dout, const float *inp,
		   const float *theta, const int32_t *pos, int B, int n, int H, int hd)
{
	int dk = theta ? 2 * hd : hd, E = H * hd;
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * n * E > TN_OMP_MIN)
	for (int b = 0; b < B; b++)
		for (int t = 0; t < n; t++) {
			float *dx = dinp + ((size_t)b * n + t) * E;
			double p = pos ? pos[(size_t)b * n + t] : t;
			for (int h = 0; h < H; h++) {
				const float *g = dout + head_row(b, h, t, H, n, dk);
				for (int c = 0; c < hd; c++) {
					if (!theta) {
						dx[h * hd + c] = g[c];
						continue;
					}
					double a = (double)theta[h * hd + c] * p;
					float cs = (float)cos(a), sn = (float)sin(a);
					dx[h * hd + c] = g[c] * cs + g[hd + c] * sn;
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
					dtheta[h * hd + c] += (float)(p * x[h * hd + c] *
						(-sin(a) * g[c] + cos(a) * g[hd + c]));
				}
			}
		}
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
