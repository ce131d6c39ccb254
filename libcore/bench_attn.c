/* bench_attn.c - tn-bench attn: GPU time of Lightning Attention forward,
 * forward+backward, prefill (forward returning the state) and decode, against
 * the two floors of the op: FLOPs (chunked model, 4BHN d(C+d) forward, 3.5x
 * that forward+backward, C = 64, as the peers' bench_attn.py counts) over the
 * tensor-core rate, and the bytes that must move (each input read once, each
 * output written once) over the memory bandwidth. The shapes keep B*N fixed
 * (--tokens), so the same buffers serve every N. Needs a CUDA build. */
#include "bench.h"
#include "cli.h"
#include "util.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *prog = "tn-bench attn";

struct attn_opts {
	uint64_t tokens, heads, reps;
	int ns[16], n_ns, dk[8], dv[8], n_dims, bf16, json, csv;
	double tflops, tbps;
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
	       "  --csv, --json       one CSV row / JSON object per shape instead of the table\n"
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
		case 'B': o->tbps = atof(optarg); break;
		case 'c': o->csv = 1; break;
		case 'j': o->json = 1; break;
		case 'h': usage(); exit(0);
		default: return tn_cli_usage_error(prog, "unknown option");
		}
	}
	if (!rc && (!o->tokens || !o->heads || o->heads > 1024 || !o->reps || o->tflops <= 0 ||
		    o->tbps <= 0))
		return tn_cli_usage_error(prog, "--tokens, --heads, --reps and the peaks must be positive");
	return rc;
}

#ifdef TN_CUDA
#include <cuda_runtime.h>

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
	return rc;
}

static void bufs_free(struct bufs *b)
{
	void *all[] = {b->q, b->k, b->v, b->g, b->o, b->dq, b->dk, b->dv, b->s, b->state};
	for (size_t i = 0; i < TN_ARRAY_LEN(all); i++)
		cudaFree(all[i]);
}

enum mode { FWD, FWDBWD, PREFILL, DECODE };

static int run_once(enum mode m, const struct tn_attn_shape *sh, const struct bufs *b, int dt)
{
	switch (m) {
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
	double ms, flops, bytes, bound_ms;
};

static void report(const struct attn_opts *o, const struct tn_attn_shape *sh, const struct figure *f)
{
	const char *dt = o->bf16 ? "bf16" : "f32";
	double tf = f->flops / (f->ms * 1e-3) / 1e12, pct = 100 * f->bound_ms / f->ms;
	if (o->json)
		printf("{\"op\":\"attn\",\"mode\":\"%s\",\"dtype\":\"%s\",\"B\":%d,\"H\":%d,\"N\":%d,"
		       "\"dk\":%d,\"dv\":%d,\"ms\":%.4f,\"tflops\":%.2f,\"gbps\":%.0f,\"bound_ms\":%.4f,"
		       "\"pct_of_bound\":%.1f}\n",
		       f->mode, dt, sh->B, sh->H, sh->N, sh->dk, sh->dv, f->ms, tf,
		       f->bytes / (f->ms * 1e-3) / 1e9, f->bound_ms, pct);
	else if (o->csv)
		printf("%s,%s,%d,%d,%d,%d,%d,%.4f,%.2f,%.4f,%.1f\n", f->mode, dt, sh->B, sh->H, sh->N,
		       sh->dk, sh->dv, f->ms, tf, f->bound_ms, pct);
	else
		printf("%-8s %4d %4d %6d %4d %4d %9.3f %8.1f %9.3f %6.1f%%\n", f->mode, sh->dk, sh->dv,
		       sh->N, sh->B, sh->H, f->ms, tf, f->bound_ms, pct);
}

static int bench_shape(const struct attn_opts *o, const struct bufs *b, int dk, int dv, int N)
{
	int B = (int)TN_MAX(1, o->tokens / (uint64_t)N), H = (int)o->heads, dt = o->bf16;
	struct tn_attn_shape sh = {B, H, N, dk, dv};
	double es = o->bf16 ? 2 : 4, bhn = (double)B * H * N, d = (dk + dv) / 2.0;
	double fl = 4.0 * bhn * d * (64 + d), io = bhn * (dk + dk + dv + dv) * es;
	struct figure f[3] = {
		{"fwd", 0, fl, io, 0},
		{"fwd+bwd", 0, 3.5 * fl, io + bhn * (2 * dk + 2 * dv + 2 * dk + dv) * es, 0},
		{"prefill", 0, fl, io + (double)B * H * dk * dv * 4, 0},
	};
	for (int i = 0; i < 3; i++) {
		int rc = time_ms(i == 0 ? FWD : i == 1 ? FWDBWD : PREFILL, &sh, b, dt, (int)o->reps,
				 &f[i].ms);
		if (rc)
			return rc;
		f[i].bound_ms = 1e3 * TN_MAX(f[i].flops / (o->tflops * 1e12), f[i].bytes / (o->tbps * 1e12));
		report(o, &sh, &f[i]);
	}
	return TN_OK;
}

/* One decode step of 64 sequences: reads and writes the fp32 state. */
static int bench_decode(const struct attn_opts *o, const struct bufs *b, int dk, int dv)
{
	struct tn_attn_shape sh = {64, (int)o->heads, 1, dk, dv};
	int rc = cuda_check(cudaMemset(b->state, 0, (size_t)64 * o->heads * dk * dv * 4), "memset");
	struct figure f = {"decode", 0, 4.0 * 64 * o->heads * dk * dv,
			   2.0 * 64 * o->heads * dk * dv * 4, 0};
	if (!rc)
		rc = time_ms(DECODE, &sh, b, o->bf16, (int)o->reps, &f.ms);
	if (rc)
		return rc;
	f.bound_ms = 1e3 * f.bytes / (o->tbps * 1e12);
	report(o, &sh, &f);
	return TN_OK;
}

static int run(const struct attn_opts *o)
{
	struct bufs b;
	int rc = bufs_new(&b, o);
	if (!rc && !o->json && !o->csv)
		printf("%-8s %4s %4s %6s %4s %4s %9s %8s %9s %7s\n", "mode", "dk", "dv", "N", "B", "H",
		       "ms", "TFLOP/s", "bound ms", "bound%");
	else if (!rc && o->csv)
		printf("mode,dtype,B,H,N,dk,dv,ms,tflops,bound_ms,pct_of_bound\n");
	for (int i = 0; !rc && i < o->n_dims; i++) {
		for (int j = 0; !rc && j < o->n_ns; j++)
			rc = bench_shape(o, &b, o->dk[i], o->dv[i], o->ns[j]);
		if (!rc)
			rc = bench_decode(o, &b, o->dk[i], o->dv[i]);
	}
	bufs_free(&b);
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
	struct attn_opts o = {.tokens = 32768, .heads = 16, .reps = 20, .bf16 = 1,
			      .tflops = 790, .tbps = 4.3};
	int rc = parse_dims("128,64", &o);
	if (!rc)
		rc = parse_ns("1k,2k,4k,8k,16k,32k", &o);
	if (!rc)
		rc = parse(argc, argv, &o);
	if (rc)
		return rc;
	rc = run(&o);
	return rc ? tn_cli_report(prog, rc) : 0;
}
