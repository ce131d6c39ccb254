/* tn-train - train a TransNormerLLM on a shard directory (see tn-train(1)).
 * Options and plumbing only; the loop is libcore/train.c. SIGINT and
 * SIGTERM only set a flag: the loop finishes its step, writes a checkpoint
 * and returns, so an interrupted run resumes exactly. */
#include "backend.h"
#include "cli.h"
#include "collective.h"
#include "config.h"
#include "launch.h"
#include "model.h"
#include "train.h"
#include "util.h"

#include <cblas.h>
#include <getopt.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *prog = "tn-train";
static volatile sig_atomic_t stop_flag;

static const char usage_text[] =
	"Usage: tn-train (--preset NAME | --config FILE | --resume DIR) --data DIR -o DIR [OPTION]...\n"
	"Train a TransNormerLLM on the train shards of DIR (CPU), evaluating on its val shards.\n"
	"\n"
	"Model:\n"
	"      --preset NAME         tiny, small, medium (vocabulary from the data), or a released\n"
	"                            size: tnl-385m, tnl-1b, tnl-7b, tnl2-1b, tnl2-3b\n"
	"      --config FILE         a Hugging Face config.json (TransNormer field names)\n"
	"      --set KEY=VALUE       change one config.json key (repeatable), e.g. decoder_layers=4\n"
	"      --resume DIR          continue from a checkpoint (or an output directory's latest);\n"
	"                            --seq-len, --batch, --accum and --seed must stay as they were\n"
	"Data and output:\n"
	"      --data DIR            shard directory (tn-shard pack)\n"
	"  -o, --output DIR          where checkpoints (step-N/, latest), metrics.jsonl and loss.svg go\n"
	"Length and batch:\n"
	"      --steps N             optimizer updates in all (default 100)\n"
	"      --tokens N            or: train on about N tokens (k, M, G suffixes)\n"
	"      --seq-len N           tokens per training window (default 64)\n"
	"      --batch N             windows per micro-batch (default 8)\n"
	"      --batch-tokens N      or: tokens per micro-batch (batch = N / seq-len)\n"
	"      --accum N             micro-batches per update (default 1)\n"
	"Optimizer (AdamW):\n"
	"      --lr X                peak learning rate (default 3e-3)\n"
	"      --min-lr X            final learning rate of the decay (default 3e-4)\n"
	"      --warmup N            linear warm-up steps (default 0)\n"
	"      --schedule NAME       cosine (default), linear or constant\n"
	"      --weight-decay X      decoupled weight decay of the matrices (default 0.1)\n"
	"      --decay-embedding     also decay the embedding\n"
	"      --beta1 X, --beta2 X  moment decay rates (default 0.9, 0.95)\n"
	"      --clip X              global gradient-norm limit, 0 = none (default 1.0)\n"
	"      --on-nan stop|skip    a step whose loss or gradient norm is not finite: stop\n"
	"                            (default), or skip it (no update) and go on\n"
	"      --max-skips K         with skip: stop after K steps in a row skipped (default 10)\n"
	"      --seed N              initialisation and data order (default 1)\n"
	"Reporting and checkpoints:\n"
	"      --log-every N         progress line every N steps (default 10)\n"
	"      --eval-every N        validation loss every N steps (default 0 = never)\n"
	"      --eval-windows N      validation windows per evaluation (default 0 = all)\n"
	"      --save-every N        checkpoint every N steps (default 0: only at the end)\n"
	"      --keep K              step checkpoints kept, 0 = all (default 3)\n"
	"      --save-dtype T        weights as f32 (default, exact resume), bf16 or f16\n"
	"      --no-checkpoint       write metrics.jsonl and loss.svg at the end but no\n"
	"                            checkpoint (benchmark runs)\n"
	"      --threads N           CPU threads (default: all)\n"
	"      --recompute N         activation checkpointing: the first N layers keep only\n"
	"                            their input and are recomputed in the backward; all or\n"
	"                            none (default)\n"
	"      --backend NAME        cpu (default) or, where built, cuda (fp32)\n"
	"                            or cuda-bf16 (bf16 products, fp32 master weights)\n"
	"Several ranks (data and tensor parallel):\n"
	"      --nproc N             start N ranks on this host (CPU: under Open MPI's\n"
	"                            mpirun; GPU: one process per GPU, no mpirun needed);\n"
	"                            --batch is per data-parallel rank: the global batch is\n"
	"                            N / tp x batch\n"
	"      --tp T                tensor parallel: groups of T consecutive ranks split the\n"
	"                            heads and the SGLU width of one model (default 1)\n"
	"      --zero 0|1|2          shard optimizer moments over the data-parallel ranks,\n"
	"                            reduce-scattering gradients after (1) or during (2)\n"
	"                            the backward pass (default 0)\n"
	"      --no-overlap          sum gradients after the backward pass, not layer by\n"
	"                            layer during it\n"
	"      --timeout SECONDS     stop all ranks if a step takes longer (default 600)\n"
	"      --json                print a summary as one JSON line on stdout\n"
	"  -q, --quiet               no progress lines\n"
	"  -h, --help                show this help and exit\n"
	"  -V, --version             show the version and exit\n"
	"\n"
	"SIGINT or SIGTERM: finish the step, write a checkpoint, exit 0.\n"
	"Exit status: 0 success, 1 invalid data (or non-finite steps), 2 usage error, 3 system error.\n"
	"See tn-train(1) and tn-checkpoint(5).\n";

enum {
	OPT_PRESET = 256, OPT_CONFIG, OPT_SET, OPT_RESUME, OPT_DATA, OPT_STEPS, OPT_TOKENS,
	OPT_SEQ_LEN, OPT_BATCH, OPT_BATCH_TOKENS, OPT_ACCUM, OPT_LR, OPT_MIN_LR, OPT_WARMUP,
	OPT_SCHEDULE, OPT_WD, OPT_DECAY_EMB, OPT_BETA1, OPT_BETA2, OPT_CLIP, OPT_SEED,
	OPT_LOG_EVERY, OPT_EVAL_EVERY, OPT_EVAL_WINDOWS, OPT_SAVE_EVERY, OPT_KEEP, OPT_SAVE_DTYPE,
	OPT_THREADS, OPT_JSON, OPT_BACKEND, OPT_NPROC, OPT_TP, OPT_ZERO, OPT_NO_OVERLAP, OPT_TIMEOUT,
	OPT_RECOMPUTE, OPT_ON_NAN, OPT_MAX_SKIPS, OPT_NO_CHECKPOINT,
};

static const struct option long_opts[] = {
	{"preset", required_argument, NULL, OPT_PRESET},
	{"config", required_argument, NULL, OPT_CONFIG},
	{"set", required_argument, NULL, OPT_SET},
	{"resume", required_argument, NULL, OPT_RESUME},
	{"data", required_argument, NULL, OPT_DATA},
	{"output", required_argument, NULL, 'o'},
	{"steps", required_argument, NULL, OPT_STEPS},
	{"tokens", required_argument, NULL, OPT_TOKENS},
	{"seq-len", required_argument, NULL, OPT_SEQ_LEN},
	{"batch", required_argument, NULL, OPT_BATCH},
	{"batch-tokens", required_argument, NULL, OPT_BATCH_TOKENS},
	{"accum", required_argument, NULL, OPT_ACCUM},
	{"lr", required_argument, NULL, OPT_LR},
	{"min-lr", required_argument, NULL, OPT_MIN_LR},
	{"warmup", required_argument, NULL, OPT_WARMUP},
	{"schedule", required_argument, NULL, OPT_SCHEDULE},
	{"weight-decay", required_argument, NULL, OPT_WD},
	{"decay-embedding", no_argument, NULL, OPT_DECAY_EMB},
	{"beta1", required_argument, NULL, OPT_BETA1},
	{"beta2", required_argument, NULL, OPT_BETA2},
	{"clip", required_argument, NULL, OPT_CLIP},
	{"seed", required_argument, NULL, OPT_SEED},
	{"log-every", required_argument, NULL, OPT_LOG_EVERY},
	{"eval-every", required_argument, NULL, OPT_EVAL_EVERY},
	{"eval-windows", required_argument, NULL, OPT_EVAL_WINDOWS},
	{"save-every", required_argument, NULL, OPT_SAVE_EVERY},
	{"keep", required_argument, NULL, OPT_KEEP},
	{"save-dtype", required_argument, NULL, OPT_SAVE_DTYPE},
	{"no-checkpoint", no_argument, NULL, OPT_NO_CHECKPOINT},
	{"threads", required_argument, NULL, OPT_THREADS},
	{"backend", required_argument, NULL, OPT_BACKEND},
	{"nproc", required_argument, NULL, OPT_NPROC},
	{"tp", required_argument, NULL, OPT_TP},
	{"zero", required_argument, NULL, OPT_ZERO},
	{"no-overlap", no_argument, NULL, OPT_NO_OVERLAP},
	{"timeout", required_argument, NULL, OPT_TIMEOUT},
	{"recompute", required_argument, NULL, OPT_RECOMPUTE},
	{"on-nan", required_argument, NULL, OPT_ON_NAN},
	{"max-skips", required_argument, NULL, OPT_MAX_SKIPS},
	{"json", no_argument, NULL, OPT_JSON},
	{"quiet", no_argument, NULL, 'q'},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, 'V'},
	{NULL, 0, NULL, 0},
};

struct args {
	struct tn_train_opts t;
	const char *preset, *config;
	const char **sets;
	int n_sets, quiet, json, have_model;
	uint64_t tokens, batch_tokens, threads, nproc, tp, zero, timeout;
};

static int parse_real(const char *opt, const char *s, double lo, double *out)
{
	char *end;
	*out = strtod(s, &end);
	if (end == s || *end || !isfinite(*out) || *out < lo)
		return tn_cli_usage_error(prog, "%s: not a number >= %g: '%s'", opt, lo, s);
	return TN_OK;
}

static int parse_count(const char *opt, const char *s, uint64_t max, uint64_t *v)
{
	int rc = tn_cli_u64(prog, opt, s, v, 0);
	if (!rc && *v > max)
		return tn_cli_usage_error(prog, "%s: %s is too large (at most %llu)", opt, s,
					  (unsigned long long)max);
	return rc;
}

static int parse_enum(const char *opt, const char *s, const char *const *names, int *out)
{
	for (int i = 0; names[i]; i++)
		if (!strcmp(s, names[i])) {
			*out = i;
			return TN_OK;
		}
	return tn_cli_usage_error(prog, "%s: unknown value '%s'", opt, s);
}

static int parse_number_option(struct args *a, int c, const char *arg)
{
	struct tn_train_opts *t = &a->t;
	uint64_t v = 0;
	int rc;
	switch (c) {
	case OPT_LR: return parse_real("--lr", arg, 0, &t->optim.lr);
	case OPT_MIN_LR: return parse_real("--min-lr", arg, 0, &t->optim.min_lr);
	case OPT_WD: return parse_real("--weight-decay", arg, 0, &t->optim.weight_decay);
	case OPT_BETA1: return parse_real("--beta1", arg, 0, &t->optim.beta1);
	case OPT_BETA2: return parse_real("--beta2", arg, 0, &t->optim.beta2);
	case OPT_CLIP: return parse_real("--clip", arg, 0, &t->optim.clip);
	case OPT_TOKENS: return parse_count("--tokens", arg, UINT64_MAX, &a->tokens);
	case OPT_BATCH_TOKENS: return parse_count("--batch-tokens", arg, 1u << 30, &a->batch_tokens);
	case OPT_THREADS: return parse_count("--threads", arg, 4096, &a->threads);
	case OPT_SEED: return parse_count("--seed", arg, UINT64_MAX, &t->seed);
	case OPT_EVAL_WINDOWS: return parse_count("--eval-windows", arg, UINT64_MAX, &t->eval_windows);
	}
	static const struct {
		int c;
		const char *name;
	} names[] = {{OPT_STEPS, "--steps"}, {OPT_SEQ_LEN, "--seq-len"}, {OPT_BATCH, "--batch"},
		     {OPT_ACCUM, "--accum"}, {OPT_WARMUP, "--warmup"}, {OPT_LOG_EVERY, "--log-every"},
		     {OPT_EVAL_EVERY, "--eval-every"}, {OPT_SAVE_EVERY, "--save-every"},
		     {OPT_KEEP, "--keep"}, {OPT_MAX_SKIPS, "--max-skips"}};
	const char *name = "option";
	for (size_t i = 0; i < TN_ARRAY_LEN(names); i++)
		if (names[i].c == c)
			name = names[i].name;
	if ((rc = parse_count(name, arg, 1u << 30, &v)))
		return rc;
	switch (c) {
	case OPT_STEPS: t->steps = (int64_t)v; break;
	case OPT_SEQ_LEN: t->seq_len = (uint32_t)v; break;
	case OPT_BATCH: t->batch = (uint32_t)v; break;
	case OPT_ACCUM: t->accum = (uint32_t)v; break;
	case OPT_WARMUP: t->optim.warmup = (int64_t)v; break;
	case OPT_LOG_EVERY: t->log_every = (int64_t)v; break;
	case OPT_EVAL_EVERY: t->eval_every = (int64_t)v; break;
	case OPT_SAVE_EVERY: t->save_every = (int64_t)v; break;
	case OPT_MAX_SKIPS:
		if (!v)
			return tn_cli_usage_error(prog, "--max-skips must be positive");
		t->max_skips = (int)v;
		break;
	default: t->keep = (int)v; break;
	}
	return TN_OK;
}

static int parse_option(struct args *a, int c, const char *arg)
{
	static const char *const schedules[] = {"cosine", "linear", "constant", NULL};
	static const char *const dtypes[] = {"f32", "bf16", "f16", NULL};
	static const char *const on_nan[] = {"stop", "skip", NULL};
	int v = 0;
	switch (c) {
	case OPT_PRESET: a->preset = arg; return TN_OK;
	case OPT_CONFIG: a->config = arg; return TN_OK;
	case OPT_SET: a->sets[a->n_sets++] = arg; return TN_OK;
	case OPT_RESUME: a->t.resume = arg; return TN_OK;
	case OPT_DATA: a->t.data = arg; return TN_OK;
	case 'o': a->t.out = arg; return TN_OK;
	case OPT_DECAY_EMB: a->t.optim.decay_embedding = 1; return TN_OK;
	case OPT_NO_OVERLAP: a->t.no_overlap = 1; return TN_OK;
	case OPT_NO_CHECKPOINT: a->t.no_checkpoint = 1; return TN_OK;
	case OPT_JSON: a->json = 1; return TN_OK;
	case 'q': a->quiet = 1; return TN_OK;
	case OPT_NPROC:
		if (tn_cli_u64(prog, "--nproc", arg, &a->nproc, 0) || a->nproc == 0 || a->nproc > 4096)
			return tn_cli_usage_error(prog, "--nproc: 1 to 4096");
		return TN_OK;
	case OPT_TP:
		if (tn_cli_u64(prog, "--tp", arg, &a->tp, 0) || a->tp == 0 || a->tp > 4096)
			return tn_cli_usage_error(prog, "--tp: 1 to 4096");
		a->t.tp = (int)a->tp;
		return TN_OK;
	case OPT_ZERO:
		if (tn_parse_u64(arg, &a->zero, 0) || a->zero > 2)
			return tn_cli_usage_error(prog, "--zero must be 0, 1 or 2");
		a->t.zero = (int)a->zero;
		return TN_OK;
	case OPT_TIMEOUT:
		if (tn_cli_u64(prog, "--timeout", arg, &a->timeout, 0) || a->timeout == 0)
			return tn_cli_usage_error(prog, "--timeout: a positive number of seconds");
		return TN_OK;
	case OPT_BACKEND:
		if (!(a->t.be = tn_backend_find(arg)))
			return tn_cli_usage_error(prog, "--backend: %s", tn_errmsg());
		return TN_OK;
	case OPT_SCHEDULE:
		if (parse_enum("--schedule", arg, schedules, &v))
			return TN_EUSAGE;
		a->t.optim.schedule = (enum tn_schedule)v;
		return TN_OK;
	case OPT_RECOMPUTE:
		if (tn_model_parse_recompute(arg, &a->t.recompute))
			return tn_cli_usage_error(prog, "%s", tn_errmsg());
		return TN_OK;
	case OPT_ON_NAN:
		if (parse_enum("--on-nan", arg, on_nan, &v))
			return TN_EUSAGE;
		a->t.on_nan = v ? TN_NAN_SKIP : TN_NAN_STOP;
		return TN_OK;
	case OPT_SAVE_DTYPE:
		if (parse_enum("--save-dtype", arg, dtypes, &v))
			return TN_EUSAGE;
		a->t.save_dtype = v == 0 ? TN_F32 : v == 1 ? TN_BF16 : TN_F16;
		return TN_OK;
	case 'h':
		fputs(usage_text, stdout);
		exit(0);
	case 'V':
		tn_cli_version(prog);
		exit(0);
	default:
		return parse_number_option(a, c, arg);
	}
}

/* The model config from --preset / --config and --set. */
static int build_config(struct args *a)
{
	if (a->t.resume) {
		if (a->preset || a->config || a->n_sets)
			return tn_cli_usage_error(prog, "--resume takes the model from the checkpoint; "
						  "drop --preset, --config and --set");
		return TN_OK;
	}
	if (!a->preset == !a->config)
		return tn_cli_usage_error(prog, "give one of --preset, --config or --resume");
	int rc = a->preset ? tn_config_preset(&a->t.cfg, a->preset)
			   : tn_config_load(&a->t.cfg, a->config);
	for (int i = 0; !rc && i < a->n_sets; i++)
		rc = tn_config_set(&a->t.cfg, a->sets[i]);
	if (!rc)
		rc = tn_config_check(&a->t.cfg, a->preset ? a->preset : a->config);
	if (!rc && a->tp > 1 && (a->t.cfg.heads % (int)a->tp || a->t.cfg.glu_dim % (int)a->tp))
		return tn_cli_usage_error(prog, "--tp %d needs heads (%d) and glu_dim (%d) divisible "
					  "by it", (int)a->tp, a->t.cfg.heads, a->t.cfg.glu_dim);
	if (rc == TN_EUSAGE)
		return tn_cli_usage_error(prog, "%s", tn_errmsg());
	return rc ? tn_cli_report(prog, rc) : TN_OK;
}

static int finish_args(struct args *a)
{
	struct tn_train_opts *t = &a->t;
	if (!t->data || !t->out)
		return tn_cli_usage_error(prog, "--data DIR and -o DIR are required");
	if (a->batch_tokens)
		t->batch = (uint32_t)(a->batch_tokens / t->seq_len);
	if (!t->seq_len || !t->batch || !t->accum)
		return tn_cli_usage_error(prog, "--seq-len, --batch and --accum must be positive "
					  "(and --batch-tokens at least --seq-len)");
	if (a->tokens) {
		uint64_t per = (uint64_t)t->seq_len * t->batch * t->accum;
		t->steps = (int64_t)((a->tokens + per - 1) / per);
	}
	if (t->steps <= 0)
		return tn_cli_usage_error(prog, "--steps must be positive");
	if (t->no_checkpoint && t->save_every)
		return tn_cli_usage_error(prog, "--no-checkpoint and --save-every exclude each other");
	if (a->tp > 1 && (a->nproc ? a->nproc : 1) % a->tp && !tn_launched_as_rank())
		return tn_cli_usage_error(prog, "--tp %llu needs --nproc a multiple of it",
					  (unsigned long long)a->tp);
	if (a->threads) {
		omp_set_num_threads((int)a->threads);
		openblas_set_num_threads((int)a->threads);
	}
	return build_config(a);
}

static int parse_args(struct args *a, int argc, char **argv)
{
	tn_train_defaults(&a->t);
	a->sets = calloc((size_t)argc, sizeof(char *));
	if (!a->sets)
		return tn_cli_report(prog, TN_ENOMEM);
	int c, rc;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "o:qhV", long_opts, NULL)) != -1) {
		if (c == '?')
			return tn_cli_usage_error(prog, "unknown or incomplete option '%s'",
						  argv[optind - 1]);
		if ((rc = parse_option(a, c, optarg)))
			return rc;
	}
	if (optind < argc)
		return tn_cli_usage_error(prog, "unexpected argument '%s'", argv[optind]);
	return finish_args(a);
}

static void log_line(void *ctx, const struct tn_train_log *r)
{
	const struct args *a = ctx;
	if (!strcmp(r->event, "skipped")) /* a warning, not progress: even with -q */
		fprintf(stderr, "%s: step %lld skipped: loss %g, grad norm %g (%d in a row)\n", prog,
			(long long)r->step, r->loss, r->grad_norm, r->skips);
	if (a->quiet || !strcmp(r->event, "skipped"))
		return;
	if (!strcmp(r->event, "step"))
		fprintf(stderr, "step %lld/%lld  loss %.4f  lr %.3e  grad norm %.3f  %.0f tok/s\n",
			(long long)r->step, (long long)r->steps, r->loss, r->lr, r->grad_norm,
			r->tokens_per_s);
	else if (!strcmp(r->event, "eval"))
		fprintf(stderr, "step %lld  val loss %.4f  ppl %.2f\n", (long long)r->step,
			r->val_loss, exp(r->val_loss));
	else
		fprintf(stderr, "step %lld  checkpoint %s\n", (long long)r->step, r->path);
}

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

/* The watchdog: a rank whose step has not finished within --timeout (a
 * peer died or hangs inside a collective) exits, and mpirun then stops the
 * whole job. */
static unsigned watchdog_seconds;

static void on_alarm(int sig)
{
	(void)sig;
	static const char msg[] = "tn-train: a step took longer than --timeout (a rank died or "
				  "hangs); stopping this rank\n";
	if (write(STDERR_FILENO, msg, sizeof msg - 1) < 0)
		_exit(TN_EIO);
	_exit(TN_EIO);
}

static void heartbeat(void *ctx)
{
	(void)ctx;
	alarm(watchdog_seconds);
}

int main(int argc, char **argv)
{
	tn_cpu_passive_wait(argv);
	struct args a = {0};
	int rc = parse_args(&a, argc, argv);
	if (rc) {
		free(a.sets);
		return rc;
	}
	int on_gpu = a.t.be && strcmp(a.t.be->name, "cpu") != 0;
	if (a.nproc > 1 && !tn_launched_as_rank()) {
		free(a.sets);
		if (!on_gpu)
			return tn_cli_report(prog, tn_launch_mpirun((int)a.nproc, argc, argv));
		int status;
		rc = tn_launch_local((int)a.nproc, argc, argv, &status);
		return rc || status ? tn_cli_report(prog, rc ? rc : status) : 0;
	}
	struct tn_comm *comm;
	if ((rc = tn_comm_open(&comm, on_gpu))) {
		free(a.sets);
		return tn_cli_report(prog, rc);
	}
	int rank = tn_comm_rank(comm);
	if (tn_comm_kind(comm) != TN_COMM_SINGLE)
		a.t.comm = comm;
	if (tn_comm_size(comm) > 1) {
		a.t.heartbeat = heartbeat;
		watchdog_seconds = a.timeout ? (unsigned)a.timeout : 600;
		struct sigaction al = {0};
		al.sa_handler = on_alarm;
		sigaction(SIGALRM, &al, NULL);
		alarm(watchdog_seconds);
		a.quiet |= rank != 0;
	}
	struct sigaction sa = {0};
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	a.t.stop = &stop_flag;
	a.t.log = log_line;
	a.t.log_ctx = &a;
	struct tn_train_result res;
	rc = tn_train_run(&a.t, &res);
	alarm(0);
	free(a.sets);
	if (rc) {
		tn_cli_report(prog, rc);
		tn_comm_abort(comm, rc); /* the other ranks may wait in a collective */
		tn_comm_close(comm);
		return rc;
	}
	tn_comm_close(comm);
	if (res.interrupted && !a.quiet)
		fprintf(stderr, "%s: interrupted at step %lld; resume with --resume %s\n", prog,
			(long long)res.step, a.t.out);
	char val[32] = "null";
	if (!isnan(res.val_loss))
		snprintf(val, sizeof(val), "%.9g", res.val_loss);
	if (a.json && rank == 0)
		printf("{\"step\":%lld,\"loss\":%.9g,\"val_loss\":%s,\"interrupted\":%s,"
		       "\"tokens_per_s\":%.1f,\"device_bytes\":%zu}\n",
		       (long long)res.step, res.loss, val, res.interrupted ? "true" : "false",
		       res.tokens_per_s, res.device_bytes);
	return 0;
}
