/* bench_attn.c - tn-bench attn: GPU time and peak memory of Lightning
 * Attention forward, forward+backward, prefill (forward returning the state)
 * and decode, and of the quadratic cuBLAS baseline ((Q K^T . M) V), against
 * the two floors of the op: FLOPs (chunked model, 4BHN d(C+d) forward, 3.5x
 * that forward+backward, C = 64, as the peers' bench_attn.py counts) over the
 * tensor-core rate, and the bytes that must move (each input read once, each
 * output written once) over the memory bandwidth. The shapes keep B*N fixed
 * (--tokens), so the same buffers serve every N. Peak memory = the tensors a
 * mode touches + the high-water mark of the kernels' temporary pool (+ the
 * baseline's N x N buffers). Measuring needs a CUDA build; --plot --from
 * redraws the figures of an earlier --json run anywhere. */
#include "bench.h"
#include "cli.h"
#include "util.h"

#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *prog = "tn-bench attn";

struct attn_opts {
	uint64_t tokens, heads, reps, quad_max;
	int ns[16], n_ns, dk[8], dv[8], n_dims, bf16, json, csv;
	double tflops, tbps;
	const char *plot; /* --plot PREFIX, or NULL */
	const char *from; /* --from FILE: plot its figures instead of measuring */
};

/* "128,64,256x128": head dims, d alone meaning dk = dv = d. */
static int parse_dims(const char *s, struct attn_opts *o)
{
	o->n_dims = 0;
	while (*s && o->n_dims < 8) {
		char *end;
		long a = strtol(s, &end, 10), b = a;
		if (*end == 'x')
			b = strtol(end + 1, &end, 10);
		if (a < 1 || a > 256 || b < 1 || b > 128 || (*end && *end != ','))
			return tn_cli_usage_error(prog, "--dims: a list of d or dkxdv, dk <= 256, dv <= 128");
		o->dk[o->n_dims] = (int)a;
		o->dv[o->n_dims++] = (int)b;
		s = *end ? end + 1 : end;
	}
	return TN_OK;
}

static int parse_ns(const char *s, struct attn_opts *o)
{
	o->n_ns = 0;
	while (*s && o->n_ns < 16) {
		char *end;
		long n = strtol(s, &end, 10);
		if (*end == 'k' || *end == 'K')
			n *= 1024, end++;
		if (n < 1 || n > (1 << 24) || (*end && *end != ','))
			return tn_cli_usage_error(prog, "--n: a list of sequence lengths (1k = 1024)");
		o->ns[o->n_ns++] = (int)n;
		s = *end ? end + 1 : end;
	}
	return TN_OK;
}

static void usage(void)
{
	printf("Usage: tn-bench attn [OPTION]...\n"
	       "Time Lightning Attention on the GPU: forward, forward+backward, prefill, decode.\n\n"
	       "  --dims LIST         head dims, d or DKxDV (default 128,64)\n"
	       "  --n LIST            sequence lengths (default 1k,2k,4k,8k,16k,32k)\n"
	       "  --tokens N          B*N, B = max(1, N/tokens) (default 32768)\n"
	       "  --heads N           heads (default 16)\n"
	       "  --dtype bf16|f32    input dtype (default bf16)\n"
	       "  --reps N            timed runs per figure, median reported (default 20)\n"
	       "  --peak-tflops X     tensor-core rate for the floor (default 790)\n"
	       "  --peak-tbps X       memory bandwidth for the floor (default 4.3)\n"
	       "  --quadratic-max N   time the quadratic cuBLAS baseline up to N (default 8k;\n"
	       "                      0: never; bf16, dk = dv only)\n"
	       "  --csv, --json       one CSV row / JSON object per figure instead of the table\n"
	       "  --plot PREFIX       also PREFIX-time.svg and PREFIX-memory.svg (gnuplot)\n"
	       "  --from FILE         with --plot: plot the --json figures in FILE, measure nothing\n"
	       "  -h, --help          this help\n");
}

static int parse(int argc, char **argv, struct attn_opts *o)
{
	static const struct option opts[] = {
		{"dims", required_argument, NULL, 'd'},	  {"n", required_argument, NULL, 'n'},
		{"tokens", required_argument, NULL, 't'}, {"heads", required_argument, NULL, 'H'},
		{"dtype", required_argument, NULL, 'y'},  {"reps", required_argument, NULL, 'r'},
		{"peak-tflops", required_argument, NULL, 'F'},
		{"peak-tbps", required_argument, NULL, 'B'},
		{"quadratic-max", required_argument, NULL, 'Q'},
		{"plot", required_argument, NULL, 'P'},
		{"from", required_argument, NULL, 'f'},
		{"csv", no_argument, NULL, 'c'},	  {"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},	  {NULL, 0, NULL, 0}};
	int c, rc = TN_OK;
	while (!rc && (c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': rc = parse_dims(optarg, o); break;
		case 'n': rc = parse_ns(optarg, o); break;
		case 't': rc = tn_cli_u64(prog, "--tokens", optarg, &o->tokens, 1); break;
		case 'H': rc = tn_cli_u64(prog, "--heads", optarg, &o->heads, 0); break;
		case 'r': rc = tn_cli_u64(prog, "--reps", optarg, &o->reps, 0); break;
		case 'y':
			if (strcmp(optarg, "bf16") && strcmp(optarg, "f32"))
				return tn_cli_usage_error(prog, "--dtype: bf16 or f32");
			o->bf16 = !strcmp(optarg, "bf16");
			break;
		case 'F': o->tflops = atof(optarg); break;
		case 'Q': rc = tn_cli_u64(prog, "--quadratic-max", optarg, &o->quad_max, 1); break;
		case 'B': o->tbps = atof(optarg); break;
		case 'c': o->csv = 1; break;
		case 'P': o->plot = optarg; break;
		case 'f': o->from = optarg; break;
		case 'j': o->json = 1; break;
		case 'h': usage(); exit(0);
		default: return tn_cli_usage_error(prog, "unknown option");
		}
	}
	if (!rc && (!o->tokens || !o->heads || o->heads > 1024 || !o->reps || o->tflops <= 0 ||
		    o->tbps <= 0))
		return tn_cli_usage_error(prog, "--tokens, --heads, --reps and the peaks must be positive");
	if (!rc && o->from && !o->plot)
		return tn_cli_usage_error(prog, "--from needs --plot");
	return rc;
}

/* What --plot draws: the figures of this run, or of an earlier --json run
 * (--from). */
struct row {
	char mode[16];
	int dk, dv, H, BN, bf16, N;
	double ms, mib;
};
struct rows {
	struct row r[1024];
	int n;
};

static int plotted(const char *mode)
{
	return !strcmp(mode, "fwd") || !strcmp(mode, "fwd+bwd") || !strcmp(mode, "quad-fwd") ||
	       !strcmp(mode, "quad-f+b");
}

/* The index of the first row of row i's series (mode, dk, dv). */
static int series_head(const struct rows *r, int i)
{
	int j = 0;
	while (strcmp(r->r[j].mode, r->r[i].mode) || r->r[j].dk != r->r[i].dk ||
	       r->r[j].dv != r->r[i].dv)
		j++;
	return j;
}

/* PREFIX-time.svg and PREFIX-memory.svg: ms and peak MiB against N, one
 * line per mode and head dim (prefill and decode left out). */
static int plot(const struct rows *r, const char *prefix)
{
	struct tn_bench_point p[TN_ARRAY_LEN(r->r)];
	char names[TN_ARRAY_LEN(r->r)][48];
	const char *label[TN_ARRAY_LEN(r->r)];
	int n = 0, head[TN_ARRAY_LEN(r->r)], n_series = 0;
	for (int i = 0; i < r->n; i++) {
		if (!plotted(r->r[i].mode))
			continue;
		int h = series_head(r, i);
		if (h == i) {
			snprintf(names[n_series], sizeof names[0], "%s %dx%d", r->r[i].mode, r->r[i].dk,
				 r->r[i].dv);
			label[n_series] = names[n_series];
			head[i] = n_series++;
		}
		p[n++] = (struct tn_bench_point){head[h], r->r[i].N, {r->r[i].ms, r->r[i].mib}};
	}
	char setup[2][512], empty[4200];
	for (int k = 0; k < 2; k++)
		snprintf(setup[k], sizeof setup[k],
			 "set logscale xy 2\nset key outside right\nset grid\n"
			 "set title 'Lightning Attention, H = %d, B*N = %d, %s'\n"
			 "set xlabel 'N'\nset ylabel '%s'\n",
			 r->n ? r->r[0].H : 0, r->n ? r->r[0].BN : 0,
			 r->n && !r->r[0].bf16 ? "fp32" : "bf16", k ? "peak memory (MiB)" : "time (ms)");
	snprintf(empty, sizeof empty, "%s-time.svg: nothing to plot (no fwd or fwd+bwd figure)",
		 prefix);
	struct tn_bench_plot pl = {prog, prefix, {"time", "memory"}, {setup[0], setup[1]}, empty,
				   p, n, label};
	return tn_bench_plot_series(&pl);
}

/* One figure of an earlier `tn-bench attn --json` run. */
static int read_row(json_t *j, const char *path, long line, void *ctx)
{
	struct rows *r = ctx;
	const char *mode = NULL, *dt = NULL;
	struct row x = {0};
	int B = 0;
	if (json_unpack(j, "{s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:F, s:F}", "mode", &mode,
			"dtype", &dt, "B", &B, "H", &x.H, "N", &x.N, "dk", &x.dk, "dv", &x.dv,
			"ms", &x.ms, "peak_mib", &x.mib) != 0)
		return tn_fail(TN_EDATA, "%s:%ld: not a tn-bench attn --json figure", path, line);
	if (r->n == (int)TN_ARRAY_LEN(r->r))
		return tn_fail(TN_EDATA, "%s:%ld: more than %zu figures", path, line,
			       TN_ARRAY_LEN(r->r));
	snprintf(x.mode, sizeof x.mode, "%s", mode);
	x.bf16 = !strcmp(dt, "bf16");
	x.BN = B * x.N;
	r->r[r->n++] = x;
	return TN_OK;
}

#ifdef TN_CUDA
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "../kernels/attn_quadratic_cuda.h"
#include "../kernels/lightning_attn_cuda.h"

static int cuda_check(cudaError_t e, const char *what)
{
	return e == cudaSuccess ? TN_OK : tn_fail(TN_EIO, "%s: %s", what, cudaGetErrorString(e));
}

/* Device buffers for tokens x heads x 256 elements of q, k, v, dout, o and
 * the gradients, filled once with pseudo-random values. */
struct bufs {
	void *q, *k, *v, *g, *o, *dq, *dk, *dv;
	float *s, *state;
	void *S, *dS; /* the quadratic baseline's [B,H,N,N], per shape */
	cublasHandle_t blas;
};

static int fill(void *d, size_t n, int bf16, uint64_t seed)
{
	size_t es = bf16 ? 2 : 4;
	unsigned char *h = tn_malloc(n * es);
	if (!h)
		return TN_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		float x = (float)((double)(seed >> 40) / (double)(1 << 24) - 0.5) * 2.0f;
		uint32_t u;
		memcpy(&u, &x, 4);
		if (bf16) {
			uint16_t b = (uint16_t)(u >> 16);
			memcpy(h + i * 2, &b, 2);
		} else {
			memcpy(h + i * 4, &x, 4);
		}
	}
	int rc = cuda_check(cudaMemcpy(d, h, n * es, cudaMemcpyHostToDevice), "upload");
	free(h);
	return rc;
}

static int bufs_new(struct bufs *b, const struct attn_opts *o)
{
	size_t n = o->tokens * o->heads * 256, es = o->bf16 ? 2 : 4;
	void **all[] = {&b->q, &b->k, &b->v, &b->g, &b->o, &b->dq, &b->dk, &b->dv};
	memset(b, 0, sizeof *b);
	for (size_t i = 0; i < TN_ARRAY_LEN(all); i++) {
		int rc = cuda_check(cudaMalloc(all[i], n * es), "cudaMalloc");
		if (!rc && i < 4)
			rc = fill(*all[i], n, o->bf16, 1000 + i);
		if (rc)
			return rc;
	}
	float s[1024];
	for (uint64_t h = 0; h < o->heads; h++) /* ALiBi slopes at the middle layer of 24 */
		s[h] = (float)(pow(2.0, -8.0 * (double)(h + 1) / (double)o->heads) * (1 - 12.0 / 23 + 1e-5));
	int rc = cuda_check(cudaMalloc((void **)&b->s, o->heads * 4), "cudaMalloc");
	if (!rc)
		rc = cuda_check(cudaMemcpy(b->s, s, o->heads * 4, cudaMemcpyHostToDevice), "upload");
	if (!rc)
		rc = cuda_check(cudaMalloc((void **)&b->state, 64 * o->heads * 256 * 128 * 4), "cudaMalloc");
	if (!rc && cublasCreate(&b->blas) != CUBLAS_STATUS_SUCCESS)
		rc = tn_fail(TN_EIO, "cublasCreate failed");
	return rc;
}

static void bufs_free(struct bufs *b)
{
	void *all[] = {b->q, b->k, b->v, b->g, b->o, b->dq, b->dk, b->dv, b->s, b->state};
	for (size_t i = 0; i < TN_ARRAY_LEN(all); i++)
		cudaFree(all[i]);
	if (b->blas)
		cublasDestroy(b->blas);
}

enum mode { FWD, FWDBWD, PREFILL, DECODE, QFWD, QFWDBWD };

static int run_once(enum mode m, const struct tn_attn_shape *sh, const struct bufs *b, int dt)
{
	switch (m) {
	case QFWDBWD:
		if (attn_quadratic_forward(b->blas, sh->B, sh->H, sh->N, sh->dk, b->q, b->k, b->v,
					   b->s, b->S, b->o))
			return TN_EIO;
		return attn_quadratic_backward(b->blas, sh->B, sh->H, sh->N, sh->dk, b->q, b->k, b->v,
					       b->s, b->S, b->g, b->dS, b->dq, b->dk, b->dv);
	case QFWD:
		return attn_quadratic_forward(b->blas, sh->B, sh->H, sh->N, sh->dk, b->q, b->k, b->v,
					      b->s, b->S, b->o);
	case DECODE:
		return lightning_attn_decode_cuda(sh->B, sh->H, sh->dk, sh->dv, dt, b->q, b->k, b->v,
						  b->s, b->state, b->o, 0);
	case FWDBWD:
		if (lightning_attn_forward_cuda(sh, NULL, dt, b->q, b->k, b->v, b->s, NULL, b->o, NULL, 0))
			return TN_EIO;
		return lightning_attn_backward_cuda(sh, NULL, dt, b->q, b->k, b->v, b->s, b->g, b->dq,
						    b->dk, b->dv, 0);
	default:
		return lightning_attn_forward_cuda(sh, NULL, dt, b->q, b->k, b->v, b->s, NULL, b->o,
						   m == PREFILL ? b->state : NULL, 0);
	}
}

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}

/* Median milliseconds of reps runs after three warm-up runs. */
static int time_ms(enum mode m, const struct tn_attn_shape *sh, const struct bufs *b, int dt,
		   int reps, double *ms)
{
	cudaEvent_t e0, e1;
	float t[256];
	int rc = cuda_check(cudaEventCreate(&e0), "event");
	if (!rc)
		rc = cuda_check(cudaEventCreate(&e1), "event");
	for (int i = 0; !rc && i < 3; i++)
		rc = run_once(m, sh, b, dt);
	reps = TN_MIN(reps, 256);
	for (int i = 0; !rc && i < reps; i++) {
		cudaEventRecord(e0, 0);
		rc = run_once(m, sh, b, dt);
		cudaEventRecord(e1, 0);
		if (!rc)
			rc = cuda_check(cudaEventSynchronize(e1), "run");
		if (!rc)
			cudaEventElapsedTime(&t[i], e0, e1);
	}
	cudaEventDestroy(e0);
	cudaEventDestroy(e1);
	if (rc)
		return rc;
	qsort(t, (size_t)reps, sizeof t[0], cmp_float);
	*ms = t[reps / 2];
	return TN_OK;
}

struct figure {
	const char *mode;
	double ms, flops, bytes, bound_ms, fixed, mib; /* fixed: bytes of the tensors touched */
};

/* Peak device memory of one run, in MiB: the tensors it touches plus the
 * high-water mark of the default pool (the kernels' temporaries) during it. */
static int peak_mib(enum mode m, const struct tn_attn_shape *sh, const struct bufs *b, int dt,
		    double fixed, double *mib)
{
	int dev;
	cudaMemPool_t pool;
	uint64_t zero = 0, high = 0;
	int rc = cuda_check(cudaGetDevice(&dev), "cudaGetDevice");
	if (!rc)
		rc = cuda_check(cudaDeviceGetDefaultMemPool(&pool, dev), "memory pool");
	if (!rc)
		rc = cuda_check(cudaDeviceSynchronize(), "run");
	if (!rc)
		rc = cuda_check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &zero),
				"memory pool");
	if (!rc)
		rc = run_once(m, sh, b, dt);
	if (!rc)
		rc = cuda_check(cudaDeviceSynchronize(), "run");
	if (!rc)
		rc = cuda_check(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &high),
				"memory pool");
	*mib = (fixed + (double)high) / 1048576.0;
	return rc;
}

static void report(const struct attn_opts *o, const struct tn_attn_shape *sh, const struct figure *f,
		   struct rows *rows)
{
	const char *dt = o->bf16 ? "bf16" : "f32";
	double tf = f->flops / (f->ms * 1e-3) / 1e12, pct = 100 * f->bound_ms / f->ms;
	if (rows->n < (int)TN_ARRAY_LEN(rows->r)) {
		struct row *r = &rows->r[rows->n++];
		*r = (struct row){.dk = sh->dk, .dv = sh->dv, .H = sh->H, .BN = sh->B * sh->N, .bf16 = o->bf16,
				  .N = sh->N, .ms = f->ms, .mib = f->mib};
		snprintf(r->mode, sizeof r->mode, "%s", f->mode);
	}
	if (o->json)
		printf("{\"op\":\"attn\",\"mode\":\"%s\",\"dtype\":\"%s\",\"B\":%d,\"H\":%d,\"N\":%d,"
		       "\"dk\":%d,\"dv\":%d,\"ms\":%.4f,\"tflops\":%.2f,\"gbps\":%.0f,\"bound_ms\":%.4f,"
		       "\"pct_of_bound\":%.1f,\"peak_mib\":%.1f}\n",
		       f->mode, dt, sh->B, sh->H, sh->N, sh->dk, sh->dv, f->ms, tf,
		       f->bytes / (f->ms * 1e-3) / 1e9, f->bound_ms, pct, f->mib);
	else if (o->csv)
		printf("%s,%s,%d,%d,%d,%d,%d,%.4f,%.2f,%.4f,%.1f,%.1f\n", f->mode, dt, sh->B, sh->H,
		       sh->N, sh->dk, sh->dv, f->ms, tf, f->bound_ms, pct, f->mib);
	else
		printf("%-8s %4d %4d %6d %4d %4d %9.3f %8.1f %9.3f %6.1f%% %10.1f\n", f->mode, sh->dk,
		       sh->dv, sh->N, sh->B, sh->H, f->ms, tf, f->bound_ms, pct, f->mib);
}

/* Time (median of reps) and peak memory of mode m, then print the figure. */
static int measure(const struct attn_opts *o, const struct tn_attn_shape *sh, const struct bufs *b,
		   enum mode m, struct figure *f, struct rows *rows)
{
	int rc = time_ms(m, sh, b, o->bf16, (int)o->reps, &f->ms);
	if (!rc)
		rc = peak_mib(m, sh, b, o->bf16, f->fixed, &f->mib);
	if (rc)
		return rc;
	f->bound_ms = 1e3 * TN_MAX(f->flops / (o->tflops * 1e12), f->bytes / (o->tbps * 1e12));
	report(o, sh, f, rows);
	return TN_OK;
}

/* The quadratic baseline at one shape (bf16, dk = dv, N % 8 == 0): its
 * [B,H,N,N] scores and their gradient are allocated for the shape. */
static int bench_quadratic(const struct attn_opts *o, struct bufs *b,
			   const struct tn_attn_shape *sh, struct rows *rows)
{
	double bhn = (double)sh->B * sh->H * sh->N, d = sh->dk, nn = bhn * sh->N * 2;
	double fl = 4.0 * bhn * sh->N * d, io = bhn * 4 * d * 2;
	struct figure f[2] = {
		{"quad-fwd", 0, fl, io + 2 * nn, 0, io + nn, 0},
		{"quad-f+b", 0, 3 * fl, io + 4 * d * bhn * 2 + 6 * nn, 0, 2 * io + 2 * nn, 0},
	};
	int rc = cuda_check(cudaMalloc(&b->S, (size_t)nn), "cudaMalloc (quadratic scores)");
	if (!rc)
		rc = cuda_check(cudaMalloc(&b->dS, (size_t)nn), "cudaMalloc (quadratic scores)");
	for (int i = 0; !rc && i < 2; i++)
		rc = measure(o, sh, b, i ? QFWDBWD : QFWD, &f[i], rows);
	cudaFree(b->S);
	cudaFree(b->dS);
	b->S = b->dS = NULL;
	return rc;
}

static int bench_shape(const struct attn_opts *o, struct bufs *b, int dk, int dv, int N,
		       struct rows *rows)
{
	int B = (int)TN_MAX(1, o->tokens / (uint64_t)N), H = (int)o->heads;
	struct tn_attn_shape sh = {B, H, N, dk, dv};
	double es = o->bf16 ? 2 : 4, bhn = (double)B * H * N, d = (dk + dv) / 2.0;
	double fl = 4.0 * bhn * d * (64 + d), io = bhn * (dk + dk + dv + dv) * es;
	double state = (double)B * H * dk * dv * 4;
	struct figure f[3] = {
		{"fwd", 0, fl, io, 0, io, 0},
		{"fwd+bwd", 0, 3.5 * fl, io + bhn * (2 * dk + 2 * dv + 2 * dk + dv) * es, 0,
		 2 * io, 0},
		{"prefill", 0, fl, io + state, 0, io + state, 0},
	};
	for (int i = 0; i < 3; i++) {
		int rc = measure(o, &sh, b, i == 0 ? FWD : i == 1 ? FWDBWD : PREFILL, &f[i], rows);
		if (rc)
			return rc;
	}
	if (o->bf16 && dk == dv && N % 8 == 0 && (uint64_t)N <= o->quad_max)
		return bench_quadratic(o, b, &sh, rows);
	return TN_OK;
}

/* One decode step of 64 sequences: reads and writes the fp32 state. */
static int bench_decode(const struct attn_opts *o, const struct bufs *b, int dk, int dv,
			struct rows *rows)
{
	struct tn_attn_shape sh = {64, (int)o->heads, 1, dk, dv};
	double state = 64.0 * o->heads * dk * dv * 4;
	int rc = cuda_check(cudaMemset(b->state, 0, (size_t)state), "memset");
	struct figure f = {"decode", 0, 4.0 * 64 * o->heads * dk * dv, 2 * state, 0, state, 0};
	return rc ? rc : measure(o, &sh, b, DECODE, &f, rows);
}

static int run(const struct attn_opts *o)
{
	struct bufs b;
	struct rows *rows = tn_calloc(1, sizeof *rows);
	if (!rows)
		return TN_ENOMEM;
	int rc = bufs_new(&b, o);
	if (!rc && !o->json && !o->csv)
		printf("%-8s %4s %4s %6s %4s %4s %9s %8s %9s %7s %10s\n", "mode", "dk", "dv", "N",
		       "B", "H", "ms", "TFLOP/s", "bound ms", "bound%", "peak MiB");
	else if (!rc && o->csv)
		printf("mode,dtype,B,H,N,dk,dv,ms,tflops,bound_ms,pct_of_bound,peak_mib\n");
	for (int i = 0; !rc && i < o->n_dims; i++) {
		for (int j = 0; !rc && j < o->n_ns; j++)
			rc = bench_shape(o, &b, o->dk[i], o->dv[i], o->ns[j], rows);
		if (!rc)
			rc = bench_decode(o, &b, o->dk[i], o->dv[i], rows);
	}
	bufs_free(&b);
	fflush(stdout);
	if (!rc && o->plot)
		rc = plot(rows, o->plot);
	free(rows);
	return rc;
}
#else
static int run(const struct attn_opts *o)
{
	(void)o;
	return tn_fail(TN_EUSAGE, "built without CUDA (nvcc was not found at build time)");
}
#endif

int tn_bench_attn(int argc, char **argv)
{
	struct attn_opts o = {.tokens = 32768, .heads = 16, .reps = 20, .quad_max = 8192, .bf16 = 1,
			      .tflops = 790, .tbps = 4.3};
	int rc = parse_dims("128,64", &o);
	if (!rc)
		rc = parse_ns("1k,2k,4k,8k,16k,32k", &o);
	if (!rc)
		rc = parse(argc, argv, &o);
	if (rc)
		return rc;
	if (o.from) {
		struct rows *rows = tn_calloc(1, sizeof *rows);
		rc = rows ? tn_bench_json_lines(o.from, read_row, rows) : TN_ENOMEM;
		if (!rc)
			rc = plot(rows, o.plot);
		free(rows);
	} else {
		rc = run(&o);
	}
	return rc ? tn_cli_report(prog, rc) : 0;
}
