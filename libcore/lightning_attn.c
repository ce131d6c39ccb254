/* lightning_attn.c - fp32 CPU reference of Lightning Attention, blocked as
 * Lightning Attention-2 (MODEL.md §5.3-5.6) with the inclusive state of §5.6.
 * Only non-negative powers lambda^p with p <= BK ever appear (MODEL.md §6.11):
 * every weight is a table entry pw[p], never lambda^t * lambda^-j. Plain loops,
 * OpenMP over (b, h); packed documents become a per-token seg[t] = the last
 * document start <= t (-1: none), and two tokens interact iff seg[t] <= j <= t. */
#include "lightning_attn.h"
#include "util.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define BK 64 /* block length: the blocks are the kernels' chunks */

/* One (batch, head) pair: its slices of the inputs and its decay table. */
struct head {
	int N, dk, dv;
	const float *q, *k, *v, *dout;
	const int *seg;
	float pw[BK + 2]; /* pw[p] = lambda^p */
};

static float dot(const float *a, const float *b, int n)
{
	float s = 0;
	for (int i = 0; i < n; i++)
		s += a[i] * b[i];
	return s;
}

static void axpy(float *y, float a, const float *x, int n)
{
	for (int i = 0; i < n; i++)
		y[i] += a * x[i];
}

static void head_init(struct head *h, const struct tn_attn_shape *sh, int bh, const float *q,
		      const float *k, const float *v, const float *dout, const float *decay_s,
		      const int *seg)
{
	size_t t0 = (size_t)bh * sh->N;
	h->N = sh->N;
	h->dk = sh->dk;
	h->dv = sh->dv;
	h->q = q + t0 * sh->dk;
	h->k = k + t0 * sh->dk;
	h->v = v + t0 * sh->dv;
	h->dout = dout ? dout + t0 * sh->dv : NULL;
	h->seg = seg + (size_t)(bh / sh->H) * sh->N;
	double s = decay_s[bh % sh->H];
	for (int p = 0; p <= BK + 1; p++)
		h->pw[p] = (float)exp(-s * p);
}

/* S_{c+m-1} from S_{c-1} (in place): decay by lambda^m and add the block's
 * k_j v_j^T, or restart from the last document start inside the block. */
static void state_step(const struct head *h, float *S, int c, int m)
{
	int e = c + m, j0 = c, n = h->dk * h->dv;
	if (h->seg[e - 1] >= c) {
		j0 = h->seg[e - 1];
		memset(S, 0, (size_t)n * sizeof *S);
	} else {
		for (int i = 0; i < n; i++)
			S[i] *= h->pw[m];
	}
	for (int j = j0; j < e; j++)
		for (int x = 0; x < h->dk; x++)
			axpy(S + (size_t)x * h->dv, h->pw[e - 1 - j] * h->k[(size_t)j * h->dk + x],
			     h->v + (size_t)j * h->dv, h->dv);
}

/* Output rows of one block: intra-block products, then lambda^(i+1) S^T q_t
 * when the token's document already had tokens before the block. */
static void block_forward(const struct head *h, const float *S, int c, int m, float *o)
{
	int dk = h->dk, dv = h->dv;
	for (int i = 0; i < m; i++) {
		int t = c + i;
		const float *qt = h->q + (size_t)t * dk;
		float *ot = o + (size_t)t * dv;
		memset(ot, 0, (size_t)dv * sizeof *ot);
		for (int j = TN_MAX(c, h->seg[t]); j <= t; j++)
			axpy(ot, h->pw[t - j] * dot(qt, h->k + (size_t)j * dk, dk),
			     h->v + (size_t)j * dv, dv);
		if (h->seg[t] < c)
			for (int x = 0; x < dk; x++)
				axpy(ot, h->pw[i + 1] * qt[x], S + (size_t)x * dv, dv);
	}
}

static void head_forward(const struct head *h, const float *state_in, float *S, float *o)
{
	size_t n = (size_t)h->dk * h->dv;
	if (state_in)
		memmove(S, state_in, n * sizeof *S); /* state_in may be state_out */
	else
		memset(S, 0, n * sizeof *S);
	for (int c = 0; c < h->N; c += BK) {
		int m = TN_MIN(BK, h->N - c);
		block_forward(h, S, c, m, o);
		state_step(h, S, c, m);
	}
}

/* dq_t = sum_{j<=t} lambda^(t-j) (do_t.v_j) k_j: the forward sweep with
 * (do, v, k) in place of (q, k, v), the state read as S do_t. */
static void head_dq(const struct head *h, float *S, float *dq)
{
	int dk = h->dk, dv = h->dv;
	memset(S, 0, (size_t)dk * dv * sizeof *S);
	for (int c = 0; c < h->N; c += BK) {
		int m = TN_MIN(BK, h->N - c);
		for (int i = 0; i < m; i++) {
			int t = c + i;
			const float *dot_ = h->dout + (size_t)t * dv;
			float *g = dq + (size_t)t * dk;
			memset(g, 0, (size_t)dk * sizeof *g);
			for (int j = TN_MAX(c, h->seg[t]); j <= t; j++)
				axpy(g, h->pw[t - j] * dot(dot_, h->v + (size_t)j * dv, dv),
				     h->k + (size_t)j * dk, dk);
			if (h->seg[t] < c)
				for (int x = 0; x < dk; x++)
					g[x] += h->pw[i + 1] * dot(S + (size_t)x * dv, dot_, dv);
		}
		state_step(h, S, c, m);
	}
}

/* dk_j and dv_j of one block [c, e): intra-block terms, then the later
 * blocks through R = sum_{t>=e, same document} lambda^(t-e) q_t do_t^T. */
static void block_dkdv(const struct head *h, const float *R, int c, int e, float *dk_,
		       float *dv_)
{
	int dk = h->dk, dv = h->dv;
	for (int j = c; j < e; j++) {
		const float *kj = h->k + (size_t)j * dk, *vj = h->v + (size_t)j * dv;
		float *gk = dk_ + (size_t)j * dk, *gv = dv_ + (size_t)j * dv;
		memset(gk, 0, (size_t)dk * sizeof *gk);
		memset(gv, 0, (size_t)dv * sizeof *gv);
		for (int t = j; t < e && h->seg[t] <= j; t++) {
			const float *qt = h->q + (size_t)t * dk, *dot_ = h->dout + (size_t)t * dv;
			axpy(gk, h->pw[t - j] * dot(dot_, vj, dv), qt, dk);
			axpy(gv, h->pw[t - j] * dot(qt, kj, dk), dot_, dv);
		}
		if (e < h->N && h->seg[e] <= j) {
			float w = h->pw[e - j];
			for (int x = 0; x < dk; x++) {
				gk[x] += w * dot(R + (size_t)x * dv, vj, dv);
				axpy(gv, w * kj[x], R + (size_t)x * dv, dv);
			}
		}
	}
}

/* The reverse sweep: R moves from the block's end e to its start c. */
static void head_dkdv(const struct head *h, float *R, float *dk_, float *dv_)
{
	int dk = h->dk, dv = h->dv;
	size_t n = (size_t)dk * dv;
	memset(R, 0, n * sizeof *R);
	for (int c = (h->N - 1) / BK * BK; c >= 0; c -= BK) {
		int m = TN_MIN(BK, h->N - c), e = c + m;
		block_dkdv(h, R, c, e, dk_, dv_);
		if (e < h->N && h->seg[e] <= c) {
			for (size_t i = 0; i < n; i++)
				R[i] *= h->pw[m];
		} else {
			memset(R, 0, n * sizeof *R);
		}
		for (int t = c; t < e && h->seg[t] <= c; t++)
			for (int x = 0; x < dk; x++)
				axpy(R + (size_t)x * dv, h->pw[t - c] * h->q[(size_t)t * dk + x],
				     h->dout + (size_t)t * dv, dv);
	}
}

int lightning_attn_check(const struct tn_attn_shape *sh, const struct tn_attn_docs *docs)
{
	if (sh->B < 1 || sh->H < 1 || sh->N < 1 || sh->dk < 1 || sh->dv < 1)
		return tn_fail(TN_EDATA, "lightning_attn: shape B=%d H=%d N=%d dk=%d dv=%d: "
					 "every size must be positive",
			       sh->B, sh->H, sh->N, sh->dk, sh->dv);
	if (!docs)
		return TN_OK;
	if (docs->ptr[0] != 0)
		return tn_fail(TN_EDATA, "lightning_attn: document offsets: ptr[0] = %d, not 0",
			       docs->ptr[0]);
	for (int b = 0; b < sh->B; b++) {
		if (docs->ptr[b + 1] < docs->ptr[b])
			return tn_fail(TN_EDATA, "lightning_attn: document offsets: ptr[%d] < ptr[%d]",
				       b + 1, b);
		for (int i = docs->ptr[b]; i < docs->ptr[b + 1]; i++) {
			int s = docs->start[i];
			if (s < 0 || s >= sh->N || (i > docs->ptr[b] && s <= docs->start[i - 1]))
				return tn_fail(TN_EDATA, "lightning_attn: sequence %d: document start "
							 "%d (entry %d) not ascending in [0, %d)",
					       b, s, i, sh->N);
		}
	}
	return TN_OK;
}

/* seg[b*N + t] = the last document start <= t in sequence b, or -1. */
static int *make_seg(const struct tn_attn_shape *sh, const struct tn_attn_docs *docs)
{
	int *seg = tn_malloc((size_t)sh->B * sh->N * sizeof *seg);
	if (!seg)
		return NULL;
	for (int b = 0; b < sh->B; b++) {
		int *sb = seg + (size_t)b * sh->N, last = -1, i = docs ? docs->ptr[b] : 0;
		for (int t = 0; t < sh->N; t++) {
			if (docs && i < docs->ptr[b + 1] && docs->start[i] == t) {
				last = t;
				i++;
			}
			sb[t] = last;
		}
	}
	return seg;
}

/* Check the inputs, then build seg and a per-thread state of dk x dv floats. */
static int prepare(const struct tn_attn_shape *sh, const struct tn_attn_docs *docs, int **seg,
		   float **work)
{
	int rc = lightning_attn_check(sh, docs);
	if (rc)
		return rc;
	*seg = make_seg(sh, docs);
	*work = *seg ? tn_malloc((size_t)omp_get_max_threads() * sh->dk * sh->dv * sizeof(float))
		     : NULL;
	if (!*work) {
		free(*seg);
		return TN_ENOMEM;
	}
	return TN_OK;
}

int lightning_attn_forward_docs(const struct tn_attn_shape *sh, const struct tn_attn_docs *docs,
				const float *q, const float *k, const float *v,
				const float *decay_s, const float *state_in, float *o,
				float *state_out)
{
	int *seg;
	float *work;
	int rc = prepare(sh, docs, &seg, &work);
	if (rc)
		return rc;
	size_t n = (size_t)sh->dk * sh->dv;
#pragma omp parallel for schedule(dynamic)
	for (int bh = 0; bh < sh->B * sh->H; bh++) {
		struct head h;
		head_init(&h, sh, bh, q, k, v, NULL, decay_s, seg);
		float *S = state_out ? state_out + bh * n : work + omp_get_thread_num() * n;
		head_forward(&h, state_in ? state_in + bh * n : NULL, S,
			     o + (size_t)bh * sh->N * sh->dv);
	}
	free(work);
	free(seg);
	return TN_OK;
}

int lightning_attn_forward(const struct tn_attn_shape *sh, const float *q, const float *k,
			   const float *v, const float *decay_s, const float *state_in, float *o,
			   float *state_out)
{
	return lightning_attn_forward_docs(sh, NULL, q, k, v, decay_s, state_in, o, state_out);
}

int lightning_attn_backward_docs(const struct tn_attn_shape *sh, const struct tn_attn_docs *docs,
				 const float *q, const float *k, const float *v,
				 const float *decay_s, const float *dout, float *dq, float *dk,
				 float *dv)
{
	int *seg;
	float *work;
	int rc = prepare(sh, docs, &seg, &work);
	if (rc)
		return rc;
	size_t n = (size_t)sh->dk * sh->dv;
#pragma omp parallel for schedule(dynamic)
	for (int bh = 0; bh < sh->B * sh->H; bh++) {
		struct head h;
		head_init(&h, sh, bh, q, k, v, dout, decay_s, seg);
		float *S = work + omp_get_thread_num() * n;
		size_t t0 = (size_t)bh * sh->N;
		head_dq(&h, S, dq + t0 * sh->dk);
		head_dkdv(&h, S, dk + t0 * sh->dk, dv + t0 * sh->dv);
	}
	free(work);
	free(seg);
	return TN_OK;
}

int lightning_attn_backward(const struct tn_attn_shape *sh, const float *q, const float *k,
			    const float *v, const float *decay_s, const float *dout, float *dq,
			    float *dk, float *dv)
{
	return lightning_attn_backward_docs(sh, NULL, q, k, v, decay_s, dout, dq, dk, dv);
}

int lightning_attn_decode(int B, int H, int dk, int dv, const float *q, const float *k,
			  const float *v, const float *decay_s, float *state, float *o)
{
	struct tn_attn_shape sh = {B, H, 1, dk, dv};
	int rc = lightning_attn_check(&sh, NULL);
	if (rc)
		return rc;
#pragma omp parallel for
	for (int bh = 0; bh < B * H; bh++) {
		float lambda = (float)exp(-(double)decay_s[bh % H]);
		float *S = state + (size_t)bh * dk * dv, *ob = o + (size_t)bh * dv;
		const float *qb = q + (size_t)bh * dk, *kb = k + (size_t)bh * dk;
		const float *vb = v + (size_t)bh * dv;
		memset(ob, 0, (size_t)dv * sizeof *ob);
		for (int x = 0; x < dk; x++) {
			float *Sx = S + (size_t)x * dv;
			for (int y = 0; y < dv; y++)
				Sx[y] = lambda * Sx[y] + kb[x] * vb[y];
			axpy(ob, qb[x], Sx, dv);
		}
	}
	return TN_OK;
}
