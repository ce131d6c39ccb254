/* bench_train.c - tn-bench train: training speed of the model (forward,
 * backward and AdamW on random tokens) in tokens/s and in achieved GFLOP/s,
 * against the machine's sgemm rate measured in the same run (CPU) or as MFU
 * against the GPU's dense bf16 peak (--peak-tflops, H200: 989), with the
 * step split into forward, backward and optimizer and the device memory.
 * Model FLOPs per token: 6 x the matmul weights (the tied head included)
 * plus 3 x the attention core's forward (MODEL.md 5.8, chunk 64).
 * The split synchronises after each phase, which costs the GPU a few
 * idle microseconds per step. --recompute checkpoints layers (model.h);
 * the activation bytes are the model's own count. */
#include "backend.h"
#include "bench.h"
#include "cli.h"
#include "config.h"
#include "model.h"
#include "optim.h"
#include "util.h"

#include <cblas.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *prog = "tn-bench train";

struct train_bench {
	struct tn_bench_model m;
	uint64_t seq_len, batch, steps;
	double peak_tflops;
	int profile, recompute;
};

/* Seconds spent in each phase of the timed steps. */
struct split {
	double fwd, bwd, opt;
};

static void usage(void)
{
	printf("Usage: tn-bench train [OPTION]...\n"
	       "Time training steps (forward, backward, AdamW) on random tokens.\n\n"
	       "  --preset NAME       model size (default small)\n"
	       "  --vocab-size N      vocabulary of presets without one (default 8000)\n"
	       "  --seq-len N         tokens per window (default 256)\n"
	       "  --batch N           windows per step (default 8)\n"
	       "  --steps N           timed steps after one warm-up step (default 3)\n"
	       "  --recompute N       activation checkpointing of the first N layers, all or\n"
	       "                      none (default)\n"
	       "  --cpu               the CPU backend (default)\n"
	       "  --backend NAME      cpu or, where built, cuda or cuda-bf16\n"
	       "  --peak-tflops X     the GPU's dense bf16 peak for MFU (default 989, H200)\n"
	       "  --profile           device time per kind of op (backends that offer it)\n"
	       "  --json              one JSON object instead of the table\n"
	       "  -h, --help          this help\n");
}

static int parse(int argc, char **argv, struct train_bench *o)
{
	static const struct option opts[] = {
		TN_BENCH_MODEL_OPTIONS,
		{"seq-len", required_argument, NULL, 'n'}, {"batch", required_argument, NULL, 'b'},
		{"steps", required_argument, NULL, 's'},   {"cpu", no_argument, NULL, 'c'},
		{"peak-tflops", required_argument, NULL, 'P'}, {"profile", no_argument, NULL, 'T'},
		{"recompute", required_argument, NULL, 'R'},
		{"help", no_argument, NULL, 'h'},	   {NULL, 0, NULL, 0}};
	int c, rc = TN_OK;
	opterr = 0; /* one error line, ours */
	while (!rc && (c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'n': rc = tn_cli_u64(prog, "--seq-len", optarg, &o->seq_len, 0); break;
		case 'b': rc = tn_cli_u64(prog, "--batch", optarg, &o->batch, 0); break;
		case 's': rc = tn_cli_u64(prog, "--steps", optarg, &o->steps, 0); break;
		case 'c': o->m.be = &tn_backend_cpu; break;
		case 'T': o->profile = 1; break;
		case 'R':
			if (tn_model_parse_recompute(optarg, &o->recompute))
				rc = tn_cli_usage_error(prog, "%s", tn_errmsg());
			break;
		case 'P':
			o->peak_tflops = atof(optarg);
			if (!(o->peak_tflops > 0))
				rc = tn_cli_usage_error(prog, "--peak-tflops: a positive number");
			break;
		case 'h': usage(); exit(0);
		default:
			if ((rc = tn_bench_model_option(prog, &o->m, c, optarg)) == 1)
				return tn_cli_usage_error(prog, "unknown option");
		}
	}
	if (!rc && o->profile && !o->m.be->profile)
		return tn_cli_usage_error(prog, "--profile: the %s backend does not offer it",
					  o->m.be->name);
	if (!rc && (!o->seq_len || !o->batch || !o->steps || o->seq_len * o->batch > (1u << 24)))
		return tn_cli_usage_error(prog, "--seq-len, --batch and --steps must be positive "
					  "(and seq-len x batch at most 16M)");
	return rc;
}

/* The machine's sgemm rate: best of five 1024^3 products, GFLOP/s. */
static double sgemm_peak(void)
{
	const int n = 1024;
	float *a = tn_calloc((size_t)3 * n * n, sizeof(float));
	if (!a)
		return 0;
	double best = 1e30;
	for (int r = 0; r < 5; r++) {
		double t0 = tn_now();
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a, n,
			    a + (size_t)n * n, n, 0.0f, a + 2 * (size_t)n * n, n);
		best = TN_MIN(best, tn_now() - t0);
	}
	free(a);
	return 2.0 * n * n * n / best / 1e9;
}

static double flops_per_token(const struct tn_config *c)
{
	double d = c->d, E = c->hidden_dim, g = c->glu_dim, hd = (double)c->d / c->heads;
	double mm = (double)c->vocab_size * d, attn = 0;
	for (int l = 0; l < c->layers; l++) {
		double dk = (c->lrpe[l] ? 2 : 1) * hd;
		mm += 4 * d * E + E * d + 3 * d * g;
		attn += c->heads * (2.0 * 64 * (dk + hd) + 4 * dk * hd);
	}
	return 6 * mm + 3 * attn;
}

/* Add the seconds since *t to *acc and restart *t, after the work is done. */
static int lap(const struct tn_model *m, double *t, double *acc)
{
	int rc = m->be->status();
	double now = tn_now();
	*acc += now - *t;
	*t = now;
	return rc;
}

static int one_step(struct tn_model *m, struct tn_optim *opt, const int32_t *tok,
		    const int32_t *tgt, int B, int n, struct split *sp)
{
	double loss, gn, lr, t = tn_now();
	int rc = tn_model_zero_grad(m);
	if (!rc)
		rc = tn_model_forward(m, tok, tgt, B, n, &loss);
	if (!rc)
		rc = lap(m, &t, &sp->fwd);
	if (!rc)
		rc = tn_model_backward(m, 1.0f);
	if (!rc)
		rc = lap(m, &t, &sp->bwd);
	if (!rc)
		rc = tn_optim_step(opt, m, &gn, &lr);
	if (!rc)
		rc = lap(m, &t, &sp->opt);
	return rc;
}

static void profile_row(int json, const char *name, double ms, double step)
{
	if (json)
		printf("{\"bench\":\"train-profile\",\"op\":\"%s\",\"ms\":%.3f}\n", name, ms);
	else
		printf("  %-28s %8.2f ms/step %5.1f%%\n", name, ms, 100 * ms / step);
}

/* The device time of each kind of op per step, largest first. */
static void report_profile(const struct train_bench *o, const struct split *sp)
{
	const char *name[64];
	double ms[64], step = (sp->fwd + sp->bwd + sp->opt) * 1e3 / (double)o->steps, sum = 0;
	int n = o->m.be->profile_read(name, ms, 64);
	for (int i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++)
			if (ms[j] > ms[i]) {
				double t = ms[i];
				const char *tn = name[i];
				ms[i] = ms[j], name[i] = name[j];
				ms[j] = t, name[j] = tn;
			}
	for (int i = 0; i < n && ms[i] > 0; i++) {
		sum += ms[i] / (double)o->steps;
		profile_row(o->m.json, name[i], ms[i] / (double)o->steps, step);
	}
	profile_row(o->m.json, "(device idle)", step - sum, step);
}

static void report(const struct train_bench *o, const struct tn_config *c, double tps,
		   const struct split *sp, size_t dev_bytes, size_t act_bytes)
{
	double gf = tps * flops_per_token(c) / 1e9, k = 1e3 / (double)o->steps;
	int gpu = o->m.be->device_bytes != NULL;
	double peak = gpu ? o->peak_tflops * 1e3 : sgemm_peak();
	if (o->m.json) {
		printf("{\"bench\":\"train\",\"backend\":\"%s\",\"preset\":\"%s\",\"params\":%llu,"
		       "\"seq_len\":%d,\"batch\":%d,\"tokens_per_s\":%.1f,\"gflops\":%.2f,"
		       "\"%s\":%.2f,\"fwd_ms\":%.2f,\"bwd_ms\":%.2f,\"opt_ms\":%.2f,"
		       "\"device_bytes\":%zu,\"recompute\":%d,\"activation_bytes\":%zu}\n",
		       o->m.be->name, o->m.preset,
		       (unsigned long long)tn_config_params(c), (int)o->seq_len, (int)o->batch, tps,
		       gf, gpu ? "peak_gflops" : "sgemm_gflops", peak, sp->fwd * k, sp->bwd * k,
		       sp->opt * k, dev_bytes,
		       o->recompute < 0 ? c->layers : TN_MIN(o->recompute, c->layers), act_bytes);
		return;
	}
	printf("train %-8s %6.2fM params  %s  seq %d x batch %d   %9.1f tok/s   %9.2f GFLOP/s   "
	       "%s %7.2f GFLOP/s (%.1f%%)\n", o->m.preset, tn_config_params(c) / 1e6,
	       o->m.be->name, (int)o->seq_len, (int)o->batch, tps, gf, gpu ? "MFU of" : "sgemm",
	       peak, 100 * gf / peak);
	printf("  step %.2f ms: forward %.2f, backward %.2f, optimizer %.2f", (sp->fwd + sp->bwd +
	       sp->opt) * k, sp->fwd * k, sp->bwd * k, sp->opt * k);
	printf("; activations %.1f MiB", act_bytes / 1048576.0);
	if (gpu)
		printf("; device memory %.2f GiB", dev_bytes / 1073741824.0);
	printf("\n");
}

static int run(const struct train_bench *o)
{
	struct tn_config c;
	int rc = tn_config_preset(&c, o->m.preset);
	if (rc)
		return rc;
	if (!c.vocab_size)
		c.vocab_size = (int)o->m.vocab;
	int B = (int)o->batch, n = (int)o->seq_len;
	struct tn_model *m = NULL;
	struct tn_optim *opt = NULL;
	struct tn_optim_opts oo;
	tn_optim_defaults(&oo);
	/* from host_alloc, as tn-train's batches: pinned on a GPU, no wait to upload */
	int32_t *tok = o->m.be->host_alloc((size_t)B * n * sizeof(int32_t) * 2);
	if (!tok)
		return TN_ENOMEM;
	for (size_t i = 0; i < (size_t)B * n * 2; i++)
		tok[i] = (int32_t)((i * 2654435761u) % (uint32_t)c.vocab_size);
	size_t act = 0;
	rc = tn_model_new(&m, &c, o->m.be);
	if (!rc) {
		tn_model_set_recompute(m, o->recompute);
		rc = tn_model_activation_bytes(m, B, n, &act);
	}
	if (!rc)
		rc = tn_model_init(m, 1);
	if (!rc)
		rc = tn_optim_new(&opt, m, &oo);
	struct split warm = {0}, sp = {0};
	if (!rc)
		rc = one_step(m, opt, tok, tok + (size_t)B * n, B, n, &warm);
	if (!rc && o->profile)
		o->m.be->profile(1);
	double t0 = tn_now();
	for (uint64_t s = 0; s < o->steps && !rc; s++)
		rc = one_step(m, opt, tok, tok + (size_t)B * n, B, n, &sp);
	double secs = tn_now() - t0;
	if (!rc)
		report(o, &c, (double)o->steps * B * n / secs, &sp,
		       o->m.be->device_bytes ? o->m.be->device_bytes() : 0, act);
	if (!rc && o->profile) {
		report_profile(o, &sp);
		o->m.be->profile(0);
	}
	tn_optim_free(opt, m);
	tn_model_free(m);
	o->m.be->host_free(tok);
	return rc;
}

int tn_bench_train(int argc, char **argv)
{
	struct train_bench o = {{"small", &tn_backend_cpu, 8000, 0}, 256, 8, 3, 989, 0, 0};
	int rc = parse(argc, argv, &o);
	if (rc)
		return rc;
	rc = run(&o);
	return rc ? tn_cli_report(prog, rc) : 0;
}
