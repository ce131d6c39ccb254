/* backend_bf16.cu - the CUDA backend in mixed precision ("cuda-bf16"): the
 * memory, stream and fp32 ops of "cuda", but every matmul (the tied head of
 * the cross-entropy too) on the tensor cores with bf16 operands and fp32
 * accumulation, and the attention core through its bf16 path.
 * Decision: parameters, gradients and optimizer state stay fp32 (master
 * weights), and so do the activations the model keeps; what the products
 * read is bf16. Weights: a bf16 shadow of each allocation a matmul uses as
 * weights, made on first use and kept current by upload, zero, copy and
 * AdamW (the only ops that write parameters). Activations: the op that produces
 * a product's input also writes a bf16 twin of it (norms, gates, feature
 * map and head split, and their backwards), kept in a few recycled slots;
 * every op here first marks what it writes, which retires stale twins, so
 * a product finds a current twin or rounds its input itself. Activations
 * the model declares operands (backend.h) have no fp32 form at all: the
 * ops that write them write bf16 in place, the products read that. Either
 * way the one model definition runs unchanged. */
#include <stdlib.h>
#include <string.h>

#include "cuda_common.h"
#include "graph_cuda.h"
#include "lightning_attn_cuda.h"
#include "ops_bf16.h"
#include "ops_cuda.h"
#include "ops_decode_cuda.h"

extern "C" {
#include "backend.h"
#include "util.h"
}

/* ---- profiling: device time per kind of op, from events around each op ---- */

enum prof_op {
	P_MATMUL_F, P_MATMUL_B, P_ATTN_F, P_ATTN_B, P_XENT_F, P_XENT_B, P_NORM_F, P_NORM_B,
	P_ACT_F, P_ACT_B, P_GATE_F, P_GATE_B, P_RESID, P_LRPE_F, P_LRPE_B, P_MERGE, P_EMBED_F,
	P_EMBED_B, P_ADAMW, P_SUMSQ, P_MEMORY, P_RESNORM, P_MNG_F, P_GNS_B, P_COUNT
};
static const char *const prof_name[P_COUNT] = {
	"matmul forward", "matmul backward", "attention forward", "attention backward",
	"cross-entropy forward", "cross-entropy backward", "srmsnorm forward", "srmsnorm backward",
	"feature map forward", "feature map backward", "gate forward", "gate backward",
	"residual add", "head split / lrpe forward", "head split / lrpe backward", "head merge",
	"embedding forward", "embedding backward", "adamw", "gradient norm", "upload / zero",
	"residual + srmsnorm", "merge + norm + gate forward", "gate + norm + split backward"};

#define PROF_MAX 4096
static int prof_on, n_rec, rec_op[PROF_MAX];
static cudaEvent_t rec_ev[2 * PROF_MAX];
static double prof_ms[P_COUNT];

static void prof_drain(void)
{
	for (int i = 0; i < n_rec; i++) {
		float ms = 0;
		cudaEventSynchronize(rec_ev[2 * i + 1]);
		if (cudaEventElapsedTime(&ms, rec_ev[2 * i], rec_ev[2 * i + 1]) == cudaSuccess)
			prof_ms[rec_op[i]] += ms;
	}
	n_rec = 0;
}

/* Times the op it lives in (events on the stream at entry and exit). */
struct prof_scope {
	int i;
	explicit prof_scope(int op) : i(-1)
	{
		struct tn_cuda *cu = tn_cuda_get();
		if (!prof_on || !cu)
			return;
		if (n_rec == PROF_MAX)
			prof_drain();
		i = n_rec++;
		rec_op[i] = op;
		cudaEventRecord(rec_ev[2 * i], cu->stream);
	}
	~prof_scope()
	{
		struct tn_cuda *cu = tn_cuda_get();
		if (i >= 0 && cu)
			cudaEventRecord(rec_ev[2 * i + 1], cu->stream);
	}
};

static void bf16_profile(int on)
{
	static int made;
	if (on && !made) {
		for (int i = 0; i < 2 * PROF_MAX; i++)
			tn_cuda_note(cudaEventCreate(&rec_ev[i]), "creating profiling events");
		made = 1;
	}
	if (!on)
		prof_drain();
	memset(prof_ms, 0, sizeof(prof_ms));
	prof_on = on && made;
}

static int bf16_profile_read(const char **names, double *ms, int max)
{
	prof_drain();
	int n = 0;
	for (int op = 0; op < P_COUNT && n < max; op++, n++) {
		names[n] = prof_name[op];
		ms[n] = prof_ms[op];
	}
	return n;
}

/* ---- memory, with the bf16 shadows of weights ---- */

struct region {
	char *base;
	size_t bytes;
	bf16 *shadow;
};
static struct region *regions;
static size_t n_regions, cap_regions;

static struct region *region_of(const void *p)
{
	for (size_t i = 0; i < n_regions; i++)
		if ((const char *)p >= regions[i].base &&
		    (const char *)p < regions[i].base + regions[i].bytes)
			return &regions[i];
	return NULL;
}

/* ---- twins: bf16 copies of activations for the products that read them ---- */

#define N_TWINS 16
struct twin {
	const char *src;
	size_t n;      /* floats at src */
	bf16 *buf;
	size_t cap;    /* elements of buf */
	unsigned long used;
	int valid;
};
static struct twin twins[N_TWINS];
static unsigned long twin_clock;

/* An op is about to write [p, p + bytes): twins of anything there retire. */
static void written(const void *p, size_t bytes)
{
	const char *a = (const char *)p, *b = a + bytes;
	for (int i = 0; i < N_TWINS; i++) {
		struct twin *t = &twins[i];
		if (t->valid && t->src < b && a < t->src + t->n * sizeof(float))
			t->valid = 0;
	}
}

/* CUDA graphs (decode) hold the slots' addresses: while one is being
 * captured nothing may allocate or synchronise, and while any exists a
 * slot that grows keeps its old buffer alive (retired) until the last
 * graph is freed. */
static int capturing, graphs_alive;
static void **retired;
static size_t n_retired;

static void retire(void *p)
{
	void **r = (void **)realloc(retired, (n_retired + 1) * sizeof(*r));
	if (!r) { /* leak it rather than free memory a graph may write */
		tn_cuda_note(cudaErrorMemoryAllocation, "retiring a bf16 slot");
		return;
	}
	retired = r;
	retired[n_retired++] = p;
}

/* Slots grow (after a synchronisation) and are never shrunk, so steady
 * steps allocate nothing; a free slot that fits comes first, then one that
 * would grow, then the least recently used current twin gives way (inside
 * a capture: only slots that fit). */
static struct twin *slot_for(size_t n)
{
	struct twin *fit = NULL, *free_slot = NULL, *lru = NULL, *lru_fit = NULL;
	for (int i = 0; i < N_TWINS; i++) {
		struct twin *t = &twins[i];
		if (!t->valid && t->cap >= n && !fit)
			fit = t;
		if (!t->valid && !free_slot)
			free_slot = t;
		if (t->valid && (!lru || t->used < lru->used))
			lru = t;
		if (t->valid && t->cap >= n && (!lru_fit || t->used < lru_fit->used))
			lru_fit = t;
	}
	struct twin *best = fit ? fit : capturing ? lru_fit : free_slot ? free_slot : lru;
	if (!best) {
		tn_cuda_note(cudaErrorNotPermitted, "a bf16 slot would grow inside a CUDA graph capture");
		return NULL;
	}
	if (best->cap < n) {
		struct tn_cuda *cu = tn_cuda_get();
		if (best->buf && graphs_alive) {
			retire(best->buf);
		} else if (best->buf) {
			if (cu)
				tn_cuda_note(cudaStreamSynchronize(cu->stream), "bf16 slots");
			cudaFree(best->buf);
		}
		best->cap = 0;
		cudaError_t e = cudaMalloc(&best->buf, n * sizeof(bf16) + 16);
		tn_cuda_note(e, "allocating a bf16 slot");
		if (e != cudaSuccess) {
			best->buf = NULL;
			best->valid = 0;
			return NULL;
		}
		best->cap = n;
	}
	return best;
}

/* A slot for the twin of [src, src + n) that the caller's kernel writes;
 * it also retires the older twins there. NULL: no memory (noted). */
static bf16 *twin_new(const float *src, size_t n)
{
	written(src, n * sizeof(float));
	struct twin *t = slot_for(n);
	if (!t)
		return NULL;
	t->src = (const char *)src;
	t->n = n;
	t->used = ++twin_clock;
	t->valid = 1;
	return t->buf;
}

/* ---- operands: activations kept in bf16 only (backend.h's operand) ---- */

struct operand_range {
	const char *base;
	size_t n; /* floats; element i in bf16 at ((bf16 *)base)[i] */
};
static struct operand_range *operands;
static size_t n_operands, cap_operands;

static void bf16_operand(float *p, size_t n)
{
	if (!p) {
		n_operands = 0;
		return;
	}
	written(p, n * sizeof(float)); /* its fp32 twins, if any, are void */
	for (size_t i = 0; i < n_operands; i++)
		if (operands[i].base == (const char *)p) { /* a shared work set: once */
			operands[i].n = TN_MAX(operands[i].n, n);
			return;
		}
	if (n_operands == cap_operands) {
		size_t cap = cap_operands ? 2 * cap_operands : 64;
		struct operand_range *r =
			(struct operand_range *)realloc(operands, cap * sizeof(*r));
		if (!r) /* then it stays fp32, which is always right */
			return;
		operands = r;
		cap_operands = cap;
	}
	operands[n_operands++] = operand_range{(const char *)p, n};
}

/* The bf16 storage of the n floats at p when they lie in an operand, else NULL. */
static bf16 *operand_of(const float *p, size_t n)
{
	const char *a = (const char *)p;
	for (size_t i = 0; i < n_operands; i++) {
		const struct operand_range *r = &operands[i];
		if (a >= r->base && a + n * sizeof(float) <= r->base + r->n * sizeof(float))
			return (bf16 *)r->base + (a - r->base) / sizeof(float);
	}
	return NULL;
}

/* Where an op puts n values at p: bf16 only in an operand; else fp32 and,
 * when a product reads them next (twin), a new twin. */
struct dest {
	float *f;
	bf16 *h;
};
static struct dest dest_of(float *p, size_t n, int twin)
{
	bf16 *h = operand_of(p, n);
	if (h)
		return dest{NULL, h};
	if (twin)
		return dest{p, twin_new(p, n)};
	written(p, n * sizeof(float));
	return dest{p, NULL};
}

const bf16 *tn_bf16_twin(const float *src, size_t n)
{
	const bf16 *own = operand_of(src, n);
	if (own)
		return own;
	const char *a = (const char *)src;
	for (int i = 0; i < N_TWINS; i++) {
		struct twin *t = &twins[i];
		if (t->valid && a >= t->src && a + n * sizeof(float) <= t->src + t->n * sizeof(float)) {
			t->used = ++twin_clock;
			return t->buf + (a - t->src) / sizeof(float);
		}
	}
	bf16 *b = twin_new(src, n);
	if (b)
		tn_bf16_round(b, src, n);
	return b;
}

static void *bf16_alloc(size_t bytes)
{
	if (n_regions == cap_regions) {
		size_t cap = cap_regions ? 2 * cap_regions : 16;
		struct region *r = (struct region *)realloc(regions, cap * sizeof(*r));
		if (!r) {
			tn_fail(TN_ENOMEM, "out of memory for the allocation table");
			return NULL;
		}
		regions = r;
		cap_regions = cap;
	}
	void *p = tn_cuda_alloc(bytes);
	if (p)
		regions[n_regions++] = region{(char *)p, bytes ? bytes : 1, NULL};
	return p;
}

static void bf16_free(void *p)
{
	struct region *r = p ? region_of(p) : NULL;
	tn_cuda_free(p); /* synchronises first */
	if (!r)
		return;
	written(r->base, r->bytes); /* the next allocation may reuse the memory */
	for (size_t i = 0; i < n_operands;)
		if (operands[i].base >= r->base && operands[i].base < r->base + r->bytes)
			operands[i] = operands[--n_operands];
		else
			i++;
	if (r->shadow)
		cudaFree(r->shadow);
	*r = regions[--n_regions];
}

/* After fp32 bytes [at, at + bytes) were written: re-round their shadow
 * elements, if their allocation has a shadow. */
static void refresh(const void *at, size_t bytes)
{
	struct region *r = region_of(at);
	if (!r || !r->shadow)
		return;
	size_t i = (size_t)((const char *)at - r->base) / sizeof(float);
	tn_bf16_round(r->shadow + i, (const float *)at, bytes / sizeof(float));
}

static void bf16_upload(void *dst, const void *host, size_t bytes)
{
	prof_scope ps(P_MEMORY);
	written(dst, bytes);
	tn_cuda_upload(dst, host, bytes);
	refresh(dst, bytes);
}

static void bf16_zero(void *p, size_t bytes)
{
	prof_scope ps(P_MEMORY);
	written(p, bytes);
	tn_cuda_zero(p, bytes);
	refresh(p, bytes);
}

const bf16 *tn_bf16_weight(const float *w, size_t n)
{
	struct region *r = region_of(w);
	if (!r) { /* not ours (a caller's buffer): round it for this use only */
		bf16 *s = (bf16 *)tn_cuda_stage(TN_STAGE_W, n * sizeof(bf16));
		if (s)
			tn_bf16_round(s, w, n);
		return s;
	}
	if (!r->shadow) {
		size_t floats = r->bytes / sizeof(float);
		cudaError_t e = cudaMalloc(&r->shadow, floats * sizeof(bf16) + 16);
		tn_cuda_note(e, "allocating a bf16 shadow");
		if (e != cudaSuccess)
			return r->shadow = NULL;
		tn_bf16_round(r->shadow, (const float *)r->base, floats);
	}
	return r->shadow + ((const char *)w - r->base) / sizeof(float);
}

bf16 *tn_bf16_shadow_of(const float *p)
{
	struct region *r = region_of(p);
	return r && r->shadow ? r->shadow + ((const char *)p - r->base) / sizeof(float) : NULL;
}

/* ---- the ops: mark what they write, then run (writing twins where a
 * product reads the output next) ---- */

static void mm_forward(float *out, const float *inp, const float *w, int BT, int C, int OC,
		       int accumulate)
{
	prof_scope ps(P_MATMUL_F);
	const bf16 *x16 = tn_bf16_twin(inp, (size_t)BT * C);
	const bf16 *w16 = tn_bf16_weight(w, (size_t)OC * C);
	written(out, (size_t)BT * OC * sizeof(float));
	matmul_forward_bf16(out, x16, w16, BT, C, OC, accumulate);
}

static void mm_backward(float *dinp, float *dw, const float *dout, const float *inp,
			const float *w, int BT, int C, int OC, int accumulate)
{
	prof_scope ps(P_MATMUL_B);
	const bf16 *g16 = tn_bf16_twin(dout, (size_t)BT * OC);
	const bf16 *x16 = tn_bf16_twin(inp, (size_t)BT * C);
	const bf16 *w16 = tn_bf16_weight(w, (size_t)OC * C);
	if (dinp)
		written(dinp, (size_t)BT * C * sizeof(float));
	written(dw, (size_t)OC * C * sizeof(float));
	matmul_backward_bf16(dinp, dw, g16, x16, w16, BT, C, OC, accumulate);
}

static void emb_forward(float *out, const int32_t *tok, const float *emb, int BT, int C,
			float scale)
{
	prof_scope ps(P_EMBED_F);
	written(out, (size_t)BT * C * sizeof(float));
	embedding_forward_cuda(out, tok, emb, BT, C, scale);
}

static void emb_backward(float *demb, const float *dout, const int32_t *tok, int BT, int C,
			 float scale, int pad)
{
	prof_scope ps(P_EMBED_B);
	embedding_backward_cuda(demb, dout, tok, BT, C, scale, pad);
}

static void norm_forward(float *out, float *rstd, const float *inp, int N, int C)
{
	prof_scope ps(P_NORM_F);
	written(rstd, (size_t)N * sizeof(float));
	struct dest o = dest_of(out, (size_t)N * C, 1);
	srmsnorm_forward_twin(o.f, o.h, rstd, inp, N, C);
}

static void norm_backward(float *dinp, const float *dout, const float *out, const float *rstd,
			  int N, int C)
{
	prof_scope ps(P_NORM_B);
	const bf16 *out16 = operand_of(out, (size_t)N * C);
	srmsnorm_backward_twin(dinp, twin_new(dinp, (size_t)N * C), dout, out16 ? NULL : out, out16,
			       rstd, N, C);
}

static void act_forward(float *out, const float *inp, size_t n, enum tn_act act)
{
	prof_scope ps(P_ACT_F);
	written(out, n * sizeof(float));
	act_forward_cuda(out, inp, n, act);
}

static void act_backward(float *dinp, const float *dout, const float *inp, size_t n,
			 enum tn_act act)
{
	prof_scope ps(P_ACT_B);
	struct dest d = dest_of(dinp, n, 1);
	act_backward_twin(d.f, d.h, dout, inp, n, act);
}

static void gate_forward(float *out, const float *a, const float *b, size_t n)
{
	prof_scope ps(P_GATE_F);
	struct dest o = dest_of(out, n, 1);
	gate_forward_twin(o.f, o.h, a, b, n);
}

static void gate_backward(float *da, float *db, const float *dout, const float *a,
			  const float *b, size_t n)
{
	prof_scope ps(P_GATE_B);
	struct dest x = dest_of(da, n, 1), y = dest_of(db, n, 1);
	gate_backward_twin(x.f, x.h, y.f, y.h, dout, a, b, n);
}

static void residual(float *out, const float *a, const float *b, size_t n)
{
	prof_scope ps(P_RESID);
	written(out, n * sizeof(float));
	residual_forward_cuda(out, a, b, n);
}

static void residual_norm(float *sum, float *out, float *rstd, const float *a, const float *b,
			  int N, int C)
{
	prof_scope ps(P_RESNORM);
	written(sum, (size_t)N * C * sizeof(float));
	written(rstd, (size_t)N * sizeof(float));
	struct dest o = dest_of(out, (size_t)N * C, 1);
	residual_norm_forward_twin(sum, o.f, o.h, rstd, a, b, N, C);
}

static void act_lrpe_forward(float *out, const float *inp, const float *theta,
			     const int32_t *pos, int B, int n, int H, int hd, enum tn_act act)
{
	prof_scope ps(P_LRPE_F);
	struct dest o = dest_of(out, (size_t)B * n * H * hd * (theta ? 2 : 1), 1);
	act_lrpe_forward_twin(o.f, o.h, inp, theta, pos, B, n, H, hd, act);
}

static void lrpe_forward(float *out, const float *inp, const float *theta, const int32_t *pos,
			 int B, int n, int H, int hd)
{
	act_lrpe_forward(out, inp, theta, pos, B, n, H, hd, TN_ACT_NONE);
}

static void act_lrpe_backward(float *dinp, float *dtheta, const float *dout, const float *inp,
			      const float *theta, const int32_t *pos, int B, int n, int H, int hd,
			      enum tn_act act)
{
	prof_scope ps(P_LRPE_B);
	if (dtheta)
		written(dtheta, (size_t)H * hd * sizeof(float));
	struct dest d = dest_of(dinp, (size_t)B * n * H * hd, 1);
	const bf16 *g16 = operand_of(dout, (size_t)B * n * H * hd * (theta ? 2 : 1));
	act_lrpe_backward_twin(d.f, d.h, dtheta, g16 ? NULL : dout, g16, inp, theta, pos, B, n, H,
			       hd, act);
}

static void lrpe_backward(float *dinp, float *dtheta, const float *dout, const float *inp,
			  const float *theta, const int32_t *pos, int B, int n, int H, int hd)
{
	act_lrpe_backward(dinp, dtheta, dout, inp, theta, pos, B, n, H, hd, TN_ACT_NONE);
}

static void merge_norm_gate(float *on, float *rstd, float *z, const float *oh, const float *u,
			    int B, int n, int H, int hd)
{
	prof_scope ps(P_MNG_F);
	size_t rows = (size_t)B * n, E = (size_t)H * hd;
	written(on, rows * E * sizeof(float));
	written(rstd, rows * sizeof(float));
	struct dest o = dest_of(z, rows * E, 1);
	const bf16 *oh16 = operand_of(oh, rows * E);
	merge_norm_gate_twin(on, rstd, o.f, o.h, oh16 ? NULL : oh, oh16, u, B, n, H, hd);
}

static void gate_norm_split(float *du, float *doh, const float *dz, const float *u,
			    const float *on, const float *rstd, int B, int n, int H, int hd)
{
	prof_scope ps(P_GNS_B);
	size_t total = (size_t)B * n * H * hd;
	struct dest x = dest_of(du, total, 1), y = dest_of(doh, total, 1);
	gate_norm_split_twin(x.f, x.h, y.f, y.h, dz, u, on, rstd, B, n, H, hd);
}

static void merge(float *out, const float *inp, int B, int n, int H, int hd)
{
	prof_scope ps(P_MERGE);
	written(out, (size_t)B * n * H * hd * sizeof(float));
	heads_merge_cuda(out, inp, B, n, H, hd);
}

static void xent_forward(float *loss, const float *x, const float *emb, const int32_t *target,
			 int R, int C, int V, float *scratch)
{
	prof_scope ps(P_XENT_F);
	const bf16 *x16 = tn_bf16_twin(x, (size_t)R * C);
	written(loss, (size_t)R * sizeof(float));
	written(scratch, xent_scratch_bf16(R, V) * sizeof(float));
	crossentropy_forward_bf16(loss, x16, emb, target, R, C, V, scratch);
}

static void xent_backward(float *dx, float *demb, const float *x, const float *emb, float scale,
			  int R, int C, int V, const float *scratch)
{
	prof_scope ps(P_XENT_B);
	const bf16 *x16 = tn_bf16_twin(x, (size_t)R * C);
	written(dx, (size_t)R * C * sizeof(float));
	crossentropy_backward_bf16(dx, demb, x16, emb, scale, R, C, V, scratch);
}

static double sumsq(const float *x, size_t n)
{
	prof_scope ps(P_SUMSQ);
	return sumsq_forward_cuda(x, n);
}

static void adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1,
		  float beta2, float eps, float wd, float gscale, float bc1, float bc2)
{
	prof_scope ps(P_ADAMW);
	written(p, n * sizeof(float));
	adamw_update_bf16(p, g, m, v, n, lr, beta1, beta2, eps, wd, gscale, bc1, bc2);
}

static void adamw_all(float *p, const float *g, float *m, float *v, size_t lo, size_t hi,
		      const struct tn_adamw_seg *seg, size_t n_seg, const struct tn_adamw_args *a)
{
	prof_scope ps(P_ADAMW);
	written(p + lo, (hi - lo) * sizeof(float));
	adamw_fused_launch(p, tn_bf16_shadow_of(p), g, m, v, lo, hi, seg, n_seg, a);
}

/* bf16 output staging buffer `which`, widened into the fp32 output after. */
static bf16 *out16(int which, size_t n)
{
	return (bf16 *)tn_cuda_stage((enum tn_stage)which, n * sizeof(bf16));
}

static int attn_forward(const struct tn_attn_shape *sh, const float *q, const float *k,
			const float *v, const float *decay_s, const float *state_in, float *o,
			float *state_out)
{
	prof_scope ps(P_ATTN_F);
	struct tn_cuda *cu = tn_cuda_get();
	size_t rows = (size_t)sh->B * sh->H * sh->N, nq = rows * sh->dk, nv = rows * sh->dv;
	const bf16 *q16 = tn_bf16_twin(q, nq), *k16 = tn_bf16_twin(k, nq), *v16 = tn_bf16_twin(v, nv);
	bf16 *own = operand_of(o, nv), *o16 = own ? own : out16(TN_STAGE_O, nv);
	if (!cu || !q16 || !k16 || !v16 || !o16)
		return tn_cuda_status();
	written(o, nv * sizeof(float));
	if (state_out)
		written(state_out, (size_t)sh->B * sh->H * sh->dk * sh->dv * sizeof(float));
	int rc = lightning_attn_forward_cuda(sh, NULL, TN_ATTN_BF16, q16, k16, v16, decay_s,
					     state_in, o16, state_out, cu->stream);
	if (!rc && !own)
		tn_bf16_widen(o, o16, nv);
	return rc;
}

static int attn_backward(const struct tn_attn_shape *sh, const float *q, const float *k,
			 const float *v, const float *decay_s, const float *dout, float *dq,
			 float *dk, float *dv)
{
	prof_scope ps(P_ATTN_B);
	struct tn_cuda *cu = tn_cuda_get();
	size_t rows = (size_t)sh->B * sh->H * sh->N, nq = rows * sh->dk, nv = rows * sh->dv;
	const bf16 *q16 = tn_bf16_twin(q, nq), *k16 = tn_bf16_twin(k, nq), *v16 = tn_bf16_twin(v, nv);
	const bf16 *do16 = tn_bf16_twin(dout, nv);
	bf16 *dq16 = operand_of(dq, nq), *dk16 = operand_of(dk, nq), *dv16 = operand_of(dv, nv);
	int widen = !dq16 || !dk16 || !dv16; /* operands all three, or none */
	if (widen) {
		dq16 = out16(TN_STAGE_DQ, nq);
		dk16 = out16(TN_STAGE_DK, nq);
		dv16 = out16(TN_STAGE_DV, nv);
	}
	if (!cu || !q16 || !k16 || !v16 || !do16 || !dq16 || !dk16 || !dv16)
		return tn_cuda_status();
	written(dq, nq * sizeof(float));
	written(dk, nq * sizeof(float));
	written(dv, nv * sizeof(float));
	int rc = lightning_attn_backward_cuda(sh, NULL, TN_ATTN_BF16, q16, k16, v16, decay_s, do16,
					      dq16, dk16, dv16, cu->stream);
	if (!rc && widen) {
		tn_bf16_widen(dq, dq16, nq);
		tn_bf16_widen(dk, dk16, nq);
		tn_bf16_widen(dv, dv16, nv);
	}
	return rc;
}

/* Decoding is one token at a time (no training): the fp32 kernel. */
static int attn_decode(int B, int H, int dk, int dv, const float *q, const float *k,
		       const float *v, const float *decay_s, float *state, float *o)
{
	written(state, (size_t)B * H * dk * dv * sizeof(float));
	written(o, (size_t)B * H * dv * sizeof(float));
	return attn_decode_cuda(B, H, dk, dv, q, k, v, decay_s, state, o);
}

static void copy(void *dst, const void *src, size_t bytes)
{
	prof_scope ps(P_MEMORY);
	written(dst, bytes);
	tn_cuda_copy(dst, src, bytes);
	refresh(dst, bytes);
}

static void argmax_rows(int32_t *out, const float *x, int R, int C)
{
	written(out, (size_t)R * sizeof(int32_t));
	tn_cuda_argmax_rows(out, x, R, C);
}

/* What a capture records of the twins is not computed, and a replay
 * rewrites slots and activations behind the host's back: both forget
 * every twin. */
static void forget_twins(void)
{
	for (int i = 0; i < N_TWINS; i++)
		twins[i].valid = 0;
}

static int graph_begin(void)
{
	forget_twins();
	int rc = tn_cuda_graph_begin();
	capturing = !rc;
	return rc;
}

static int graph_end(void **graph)
{
	capturing = 0;
	forget_twins();
	int rc = tn_cuda_graph_end(graph);
	graphs_alive += !rc;
	return rc;
}

static int graph_launch(void *graph)
{
	forget_twins();
	return tn_cuda_graph_launch(graph);
}

static void graph_free(void *graph)
{
	tn_cuda_graph_free(graph);
	if (!graph || !graphs_alive || --graphs_alive)
		return;
	struct tn_cuda *cu = tn_cuda_get();
	if (cu && n_retired)
		tn_cuda_note(cudaStreamSynchronize(cu->stream), "freeing retired bf16 slots");
	for (size_t i = 0; i < n_retired; i++)
		cudaFree(retired[i]);
	n_retired = 0;
}

/* Decoding (issue 10): bf16 weight shadows, fp32 inputs, outputs, state. */
static int decode_mm(float *out, const struct tn_dmm *a)
{
	const bf16 *w16 = tn_bf16_weight(a->w, (size_t)a->OC * a->C);
	const bf16 *w2_16 = a->w2 ? tn_bf16_weight(a->w2, (size_t)a->OC * a->C) : NULL;
	if (!w16 || (a->w2 && !w2_16))
		return tn_cuda_status();
	written(out, (size_t)a->BT * a->OC * sizeof(float));
	return decode_matmul_bf16(out, a, w16, w2_16);
}

static int mixer(float *o, const float *p, const int32_t *pos, const float *theta,
		 const float *decay_s, float *state, int B, int H, int hd, enum tn_act act)
{
	written(o, (size_t)B * H * hd * sizeof(float));
	written(state, (size_t)B * H * (theta ? 2 : 1) * hd * hd * sizeof(float));
	return mixer_decode_cuda(o, p, pos, theta, decay_s, state, B, H, hd, act);
}

extern "C" const struct tn_backend tn_backend_cuda_bf16 = {
	.name = "cuda-bf16",
	.alloc = bf16_alloc,
	.free = bf16_free,
	.upload = bf16_upload,
	.download = tn_cuda_download,
	.zero = bf16_zero,
	.matmul_forward = mm_forward,
	.matmul_backward = mm_backward,
	.embedding_forward = emb_forward,
	.embedding_backward = emb_backward,
	.srmsnorm_forward = norm_forward,
	.srmsnorm_backward = norm_backward,
	.act_forward = act_forward,
	.act_backward = act_backward,
	.gate_forward = gate_forward,
	.gate_backward = gate_backward,
	.residual_forward = residual,
	.lrpe_forward = lrpe_forward,
	.lrpe_backward = lrpe_backward,
	.heads_merge = merge,
	.xent_scratch = xent_scratch_bf16,
	.crossentropy_forward = xent_forward,
	.crossentropy_backward = xent_backward,
	.sumsq_forward = sumsq,
	.adamw_update = adamw,
	.attn_forward = attn_forward,
	.attn_backward = attn_backward,
	.attn_decode = attn_decode,
	.residual_norm_forward = residual_norm,
	.act_lrpe_forward = act_lrpe_forward,
	.act_lrpe_backward = act_lrpe_backward,
	.merge_norm_gate_forward = merge_norm_gate,
	.gate_norm_split_backward = gate_norm_split,
	.operand = bf16_operand,
	.copy = copy,
	.argmax_rows = argmax_rows,
	.graph_begin = graph_begin,
	.graph_end = graph_end,
	.graph_launch = graph_launch,
	.graph_free = graph_free,
	.graph_epoch = tn_cuda_graph_epoch,
	.status = tn_cuda_status,
	.device_bytes = tn_cuda_device_bytes,
	.profile = bf16_profile,
	.profile_read = bf16_profile_read,
	.adamw_fused = adamw_all,
	.host_alloc = tn_cuda_host_alloc,
	.host_free = tn_cuda_host_free,
	.decode_matmul = decode_mm,
	.mixer_decode = mixer,
};
