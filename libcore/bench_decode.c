/* bench_decode.c - tn-bench decode and prefill: generation speed of the
 * recurrent form.
 * For each context length and batch size, B sequences are prefilled with
 * that many random tokens, then one token per sequence is decoded per step
 * as greedy generation runs it (logits and their argmax on the backend,
 * B ids back to the host; on a backend with graphs, replayed);
 * reports decode tokens/s (all sequences), milliseconds per step, the
 * prefill rate (after one untimed block), the inference state's bytes per
 * sequence, which do not depend on the context (the point of linear
 * attention), and the fraction of the memory-bandwidth bound achieved: a
 * step must read every weight once (bf16 on cuda-bf16, else fp32) and
 * read and write every state.
 * tn-bench prefill times only the prefill, repeated on fresh states.
 * --plot draws tokens/s and device memory against the context, from this
 * run or (--from) from the --json lines of earlier ones. */
#include "backend.h"
#include "bench.h"
#include "cli.h"
#include "config.h"
#include "model.h"
#include "util.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *prog; /* "tn-bench decode" or "tn-bench prefill" */

/* What --plot draws: one figure per (preset, batch, context). */
struct fig {
	char preset[32];
	int batch, ctx;
	double tps, mib;
};
struct figs {
	struct fig f[512];
	int n;
};

struct decode_bench {
	struct tn_bench_model m;
	const char *ctx_list, *batch_list;
	uint64_t steps, peak_gbps;
	const char *plot, *from; /* --plot PREFIX, --from FILE (or NULL) */
	struct figs *figs;       /* this run's, when plotting */
	int prefill_only;        /* tn-bench prefill */
};

static void usage(const struct decode_bench *o)
{
	if (o->prefill_only)
		printf("Usage: tn-bench prefill [OPTION]...\n"
		       "Time the prefill of random prompts (the inference state of each sequence\n"
		       "after its prompt), per prompt length and batch size.\n\n"
		       "  --ctx LIST          prompt lengths (default 512,4k)\n"
		       "  --batch LIST        prompts prefilled together (default 1,8)\n"
		       "  --steps N           timed prefills after one untimed block (default 3)\n");
	else
		printf("Usage: tn-bench decode [OPTION]...\n"
		       "Time prefill and token-by-token decoding of random tokens, per context\n"
		       "length and batch size.\n\n"
		       "  --ctx LIST          context lengths before decoding (default 512,4k)\n"
		       "  --batch LIST        sequences decoded together (default 1,8)\n"
		       "  --steps N           timed decode steps after one warm-up step (default 32)\n"
		       "  --peak-gbps N       memory bandwidth for the bound, GB/s (default 4800, H200)\n");
	printf("  --preset NAME       model size (default small)\n"
	       "  --vocab-size N      vocabulary of presets without one (default 8000)\n"
	       "  --backend NAME      cpu (default) or, where built, cuda or cuda-bf16\n"
	       "  --json              one JSON object per result instead of the table\n"
	       "  --plot PREFIX       also PREFIX-speed.svg and PREFIX-memory.svg (gnuplot)\n"
	       "  --from FILE         with --plot: plot the --json figures in FILE, measure nothing\n"
	       "On cuda each step replays a CUDA graph (environment TN_GRAPHS=0: launched op by op).\n"
	       "  -h, --help          this help\n");
}

static int parse(int argc, char **argv, struct decode_bench *o)
{
	static const struct option opts[] = {
		TN_BENCH_MODEL_OPTIONS,
		{"ctx", required_argument, NULL, 'c'},   {"batch", required_argument, NULL, 'b'},
		{"steps", required_argument, NULL, 's'}, {"peak-gbps", required_argument, NULL, 'g'},
		{"plot", required_argument, NULL, 'P'},  {"from", required_argument, NULL, 'F'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}};
	int c, rc = TN_OK;
	opterr = 0; /* one error line, ours */
	while (!rc && (c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': o->ctx_list = optarg; break;
		case 'b': o->batch_list = optarg; break;
		case 's': rc = tn_cli_u64(prog, "--steps", optarg, &o->steps, 0); break;
		case 'g': rc = tn_cli_u64(prog, "--peak-gbps", optarg, &o->peak_gbps, 0); break;
		case 'P': o->plot = optarg; break;
		case 'F': o->from = optarg; break;
		case 'h': usage(o); exit(0);
		default:
			if ((rc = tn_bench_model_option(prog, &o->m, c, optarg)) == 1)
				return tn_cli_usage_error(prog, "unknown option");
		}
	}
	if (!rc && (!o->steps || !o->peak_gbps))
		return tn_cli_usage_error(prog, "--steps and --peak-gbps must be positive");
	if (!rc && o->from && !o->plot)
		return tn_cli_usage_error(prog, "--from needs --plot");
	return rc;
}

static int add_fig(struct figs *f, const struct fig *x)
{
	if (f->n == (int)TN_ARRAY_LEN(f->f))
		return tn_fail(TN_EDATA, "more than %zu figures to plot", TN_ARRAY_LEN(f->f));
	f->f[f->n++] = *x;
	return TN_OK;
}

/* The JSON key of the rate that --plot draws. */
static const char *rate_key(const struct decode_bench *o)
{
	return o->prefill_only ? "prefill_tok_per_s" : "decode_tok_per_s";
}

/* One figure of an earlier --json run of the same command. */
static int read_fig(json_t *j, const char *path, long line, void *ctx)
{
	const struct decode_bench *o = ctx;
	const char *bench = NULL, *preset = NULL;
	struct fig x = {0};
	if (json_unpack(j, "{s:s, s:s, s:i, s:i, s:F, s:F}", "bench", &bench, "preset", &preset,
			"batch", &x.batch, "ctx", &x.ctx, rate_key(o), &x.tps, "device_mib",
			&x.mib) != 0 ||
	    strcmp(bench, o->prefill_only ? "prefill" : "decode"))
		return tn_fail(TN_EDATA, "%s:%ld: not a %s --json figure", path, line, prog);
	snprintf(x.preset, sizeof x.preset, "%s", preset);
	return add_fig(o->figs, &x);
}

/* The index of the first figure of figure i's series (preset, batch). */
static int series_head(const struct figs *f, int i)
{
	int j = 0;
	while (strcmp(f->f[j].preset, f->f[i].preset) || f->f[j].batch != f->f[i].batch)
		j++;
	return j;
}

/* PREFIX-speed.svg and PREFIX-memory.svg: tokens/s and device MiB against
 * the context, one line per preset and batch size. */
static int plot(const struct figs *f, const char *prefix, int prefill_only)
{
	struct tn_bench_point p[TN_ARRAY_LEN(f->f)];
	char names[TN_ARRAY_LEN(f->f)][48];
	const char *label[TN_ARRAY_LEN(f->f)];
	int head[TN_ARRAY_LEN(f->f)], n_series = 0;
	for (int i = 0; i < f->n; i++) {
		int h = series_head(f, i);
		if (h == i) {
			snprintf(names[n_series], sizeof names[0], "%s batch %d", f->f[i].preset,
				 f->f[i].batch);
			label[n_series] = names[n_series];
			head[i] = n_series++;
		}
		p[i] = (struct tn_bench_point){head[h], f->f[i].ctx, {f->f[i].tps, f->f[i].mib}};
	}
	char empty[4200];
	snprintf(empty, sizeof empty, "%s: no figure to plot", prefix);
	const char *axes = "set logscale x 2\nset yrange [0:*]\nset key outside right\nset grid\n";
	const char *title = prefill_only ? "set title 'Prefill of the prompts'\n"
					   "set xlabel 'prompt (tokens)'\n"
					 : "set title 'Decode, one token per sequence per step'\n"
					   "set xlabel 'context (tokens)'\n";
	char setup[2][512];
	/* decode rates of batch 1 and 256 differ 100-fold: a log axis shows both */
	snprintf(setup[0], sizeof setup[0], "%s%s%sset ylabel 'tokens/s (all sequences)'\n", axes,
		 title, prefill_only ? "" : "set logscale y\nset yrange [*:*]\n");
	snprintf(setup[1], sizeof setup[1], "%s%sset ylabel 'device memory (MiB)'\n", axes, title);
	struct tn_bench_plot pl = {prog, prefix, {"speed", "memory"}, {setup[0], setup[1]}, empty,
				   p, f->n, label};
	return tn_bench_plot_series(&pl);
}

/* The next count of a comma-separated list ("512,4k"); 0 at its end. */
static int next_count(const char **list, uint64_t *v)
{
	char item[32];
	size_t len = strcspn(*list, ",");
	if (len == 0 || len >= sizeof item)
		return -1;
	memcpy(item, *list, len);
	item[len] = 0;
	*list += len + ((*list)[len] == ',');
	return tn_parse_u64(item, v, 0) || *v == 0 ? -1 : 0;
}

static void random_tokens(int32_t *t, size_t n, int V, uint64_t *x)
{
	for (size_t i = 0; i < n; i++) {
		*x = *x * 6364136223846793005ull + 1442695040888963407ull;
		t[i] = (int32_t)((*x >> 33) % (uint64_t)V);
	}
}

/* Sequences prefilled PREFILL_GROUP at a time and copied into st: so many
 * that their blocks of the least length a sequence make the prefill's
 * block of TN_PREFILL_TOKENS rows (~0.2 MB a row for the 1B model), where
 * 256 sequences at once would take eight times that. */
#define PREFILL_GROUP (TN_PREFILL_TOKENS / TN_PREFILL_BLOCK)
static int prefill_groups(struct tn_model *m, struct tn_infer *st, int B, const int32_t *tok,
			  int ctx)
{
	int G = TN_MIN(B, PREFILL_GROUP);
	if (G == B)
		return tn_model_prefill(m, st, tok, ctx, NULL);
	struct tn_infer *g = NULL;
	int rc = tn_infer_new(&g, m, G);
	for (int b0 = 0; !rc && b0 < B; b0 += G) {
		for (int i = 0; !rc && i < G; i++)
			rc = tn_infer_reset(g, i);
		int n = TN_MIN(G, B - b0); /* tok has G spare rows for the last group */
		if (!rc)
			rc = tn_model_prefill(m, g, tok + (size_t)b0 * ctx, ctx, NULL);
		for (int i = 0; !rc && i < n; i++)
			rc = tn_infer_copy(st, b0 + i, g, i);
	}
	tn_infer_free(g);
	return rc;
}

/* One untimed prefill block of the shape the timed prefill starts with, so
 * that it does not pay the first uses of a run (the activations' allocation,
 * the library's handles and kernels, the bf16 weight shadows: two thirds of
 * the time of the 1B model's one 8K block). Any tokens will do. */
static int prefill_warmup(struct tn_model *m, int B, const int32_t *tok, int ctx)
{
	int G = TN_MIN(B, PREFILL_GROUP);
	struct tn_infer *w = NULL;
	int rc = tn_infer_new(&w, m, G);
	if (!rc)
		rc = tn_model_prefill(m, w, tok, TN_MIN(ctx, tn_prefill_block(G)), NULL);
	tn_infer_free(w);
	return rc ? rc : m->be->status();
}

/* The fraction of the bandwidth bound that a step of `sec` seconds reaches. */
static double bound_fraction(const struct tn_model *m, const struct decode_bench *o, int B,
			     double sec)
{
	double wbytes = strcmp(m->be->name, "cuda-bf16") ? 4 : 2;
	double bytes = wbytes * (double)m->n_floats +
		       2.0 * B * (double)tn_infer_bytes_per_sequence(m);
	return bytes / (1e9 * (double)o->peak_gbps) / sec;
}

/* Seconds per prefill of B prompts of ctx tokens: the mean of reps
 * prefills on fresh states, after one untimed block. */
static int time_prefill(struct tn_model *m, struct tn_infer *st, int B, const int32_t *tok,
			int ctx, uint64_t reps, double *sec)
{
	int rc = prefill_warmup(m, B, tok, ctx);
	double t0 = tn_now();
	for (uint64_t r = 0; !rc && r < reps; r++) {
		for (int b = 0; !rc && r && b < B; b++)
			rc = tn_infer_reset(st, b);
		if (!rc)
			rc = prefill_groups(m, st, B, tok, ctx);
	}
	if (!rc)
		rc = m->be->status();
	*sec = (tn_now() - t0) / (double)reps;
	return rc;
}

/* Seconds per greedy decode step of st's B sequences: the mean of steps
 * steps after one warm-up step. */
static int time_decode(struct tn_model *m, struct tn_infer *st, int B, uint64_t steps,
		       int32_t *tok, int32_t *next, uint64_t *x, double *sec)
{
	double t0 = tn_now();
	int rc = TN_OK;
	for (uint64_t s = 0; !rc && s <= steps; s++) {
		random_tokens(tok, (size_t)B, m->cfg.vocab_size, x);
		if (s == 1)
			t0 = tn_now();
		rc = tn_model_decode_greedy(m, st, tok, next);
	}
	*sec = (tn_now() - t0) / (double)steps;
	return rc;
}

/* One line of figures: prefill seconds per batch of prompts, and (decode)
 * seconds per step. */
static void print_figures(const struct tn_model *m, const struct decode_bench *o, int B, int ctx,
			  double prefill, double step, double mib)
{
	double ptps = (double)B * ctx / prefill;
	double state_mib = (double)tn_infer_bytes_per_sequence(m) / (1 << 20);
	if (o->prefill_only && o->m.json)
		printf("{\"bench\":\"prefill\",\"preset\":\"%s\",\"backend\":\"%s\",\"batch\":%d,"
		       "\"ctx\":%d,\"prefill_tok_per_s\":%.1f,\"ms_per_prefill\":%.3f,"
		       "\"state_bytes_per_seq\":%llu,\"device_mib\":%.1f}\n",
		       o->m.preset, m->be->name, B, ctx, ptps, 1e3 * prefill,
		       (unsigned long long)tn_infer_bytes_per_sequence(m), mib);
	else if (o->prefill_only)
		printf("prefill %-9s %-4s batch %4d  prompt %7d  %10.1f tok/s  %9.2f ms  "
		       "state %.2f MiB/seq  device %.0f MiB\n",
		       o->m.preset, m->be->name, B, ctx, ptps, 1e3 * prefill, state_mib, mib);
	else if (o->m.json)
		printf("{\"bench\":\"decode\",\"preset\":\"%s\",\"backend\":\"%s\",\"batch\":%d,"
		       "\"ctx\":%d,\"decode_tok_per_s\":%.1f,\"ms_per_step\":%.4f,"
		       "\"prefill_tok_per_s\":%.1f,\"state_bytes_per_seq\":%llu,"
		       "\"bound_fraction\":%.4f,\"device_mib\":%.1f}\n",
		       o->m.preset, m->be->name, B, ctx, B / step, 1e3 * step, ptps,
		       (unsigned long long)tn_infer_bytes_per_sequence(m),
		       bound_fraction(m, o, B, step), mib);
	else
		printf("decode %-9s %-4s batch %4d  ctx %7d  %10.1f tok/s  %8.3f ms/step  "
		       "%5.1f%% of bound  prefill %10.1f tok/s  state %.2f MiB/seq  "
		       "device %.0f MiB\n",
		       o->m.preset, m->be->name, B, ctx, B / step, 1e3 * step,
		       100 * bound_fraction(m, o, B, step), ptps, state_mib, mib);
	fflush(stdout);
}

static int measure(struct tn_model *m, const struct decode_bench *o, int B, int ctx)
{
	const struct tn_config *c = &m->cfg;
	struct tn_infer *st = NULL;
	int32_t *tok = tn_malloc((size_t)(B + PREFILL_GROUP) * ctx * sizeof(int32_t));
	int32_t *next = tn_malloc((size_t)B * sizeof(int32_t));
	uint64_t x = 0x2545F4914F6CDD1Dull;
	double prefill = 0, step = 0;
	int rc = tok && next ? tn_infer_new(&st, m, B) : TN_ENOMEM;
	if (!rc) {
		random_tokens(tok, (size_t)(B + PREFILL_GROUP) * ctx, c->vocab_size, &x);
		rc = time_prefill(m, st, B, tok, ctx, o->prefill_only ? o->steps : 1, &prefill);
	}
	if (!rc && !o->prefill_only)
		rc = time_decode(m, st, B, o->steps, tok, next, &x, &step);
	if (!rc) {
		double mib = m->be->device_bytes ? (double)m->be->device_bytes() / (1 << 20) : 0;
		struct fig f = {"", B, ctx, o->prefill_only ? B * ctx / prefill : B / step, mib};
		snprintf(f.preset, sizeof f.preset, "%s", o->m.preset);
		if (o->figs)
			rc = add_fig(o->figs, &f);
		print_figures(m, o, B, ctx, prefill, step, mib);
	}
	tn_infer_free(st);
	free(tok);
	free(next);
	return rc;
}

/* Every (batch, context) of the lists, on one model. */
static int measure_all(struct decode_bench *o)
{
	struct tn_config c;
	int rc = tn_config_preset(&c, o->m.preset);
	if (rc)
		return tn_cli_report(prog, rc);
	if (!c.vocab_size)
		c.vocab_size = (int)o->m.vocab;
	struct tn_model *m = NULL;
	if ((rc = tn_model_new(&m, &c, o->m.be)))
		return tn_cli_report(prog, rc);
	tn_model_init(m, 1);
	for (const char *bl = o->batch_list; !rc && *bl;) {
		uint64_t B;
		if (next_count(&bl, &B) || B > 65536) {
			rc = tn_cli_usage_error(prog, "--batch: a list of counts, e.g. 1,8,64");
			break;
		}
		for (const char *cl = o->ctx_list; !rc && *cl;) {
			uint64_t ctx;
			if (next_count(&cl, &ctx) || ctx > (1u << 24) || B * ctx > (1u << 26)) {
				rc = tn_cli_usage_error(prog, "--ctx: a list of lengths (batch x ctx at most 64M)");
				break;
			}
			if ((rc = measure(m, o, (int)B, (int)ctx)))
				rc = tn_cli_report(prog, rc);
		}
	}
	tn_model_free(m);
	return rc;
}

static int run(struct decode_bench *o, int argc, char **argv)
{
	int rc = parse(argc, argv, o);
	if (rc)
		return rc;
	if (o->plot && !(o->figs = tn_calloc(1, sizeof(*o->figs))))
		return tn_cli_report(prog, TN_ENOMEM);
	if (o->from)
		rc = tn_bench_json_lines(o->from, read_fig, o);
	else
		rc = measure_all(o);
	if (!rc && o->plot && (rc = plot(o->figs, o->plot, o->prefill_only)))
		rc = tn_cli_report(prog, rc);
	else if (o->from && rc)
		rc = tn_cli_report(prog, rc);
	free(o->figs);
	return rc;
}

int tn_bench_decode(int argc, char **argv)
{
	struct decode_bench o = {{"small", &tn_backend_cpu, 8000, 0}, "512,4k", "1,8", 32, 4800,
				 NULL, NULL, NULL, 0};
	prog = "tn-bench decode";
	return run(&o, argc, argv);
}

int tn_bench_prefill(int argc, char **argv)
{
	struct decode_bench o = {{"small", &tn_backend_cpu, 8000, 0}, "512,4k", "1,8", 3, 4800,
				 NULL, NULL, NULL, 1};
	prog = "tn-bench prefill";
	return run(&o, argc, argv);
}
