/* eval_mc.c - the `tn-eval mc` job (see eval_mc.h). Choices of one item
 * have different lengths: they are padded to the longest with id 0 at the
 * end, which cannot change the earlier positions of a causal model. */
#include "eval_mc.h"

#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checkpoint.h"
#include "cli.h"
#include "io.h"
#include "util.h"

/* ll of row x (V logits) at target y, and whether y is the argmax. */
static double token_ll(const float *x, int V, int32_t y, int *is_max)
{
	float mx = x[0];
	int arg = 0;
	for (int v = 1; v < V; v++)
		if (x[v] > mx) {
			mx = x[v];
			arg = v;
		}
	double s = 0;
	for (int v = 0; v < V; v++)
		s += exp((double)x[v] - mx);
	*is_max = arg == y;
	return (double)x[y] - mx - log(s);
}

/* Score the continuations cont[r] of the states st[0..R) (row r's last
 * context token is last[r]), all in one prefill of the longest. */
static int score_batch(struct tn_model *m, struct tn_infer *st, const int32_t *last,
		       int32_t *const *cont, const size_t *ncont, int R, double *ll, int *greedy)
{
	size_t n = 0;
	int V = m->cfg.vocab_size;
	for (int c = 0; c < R; c++) {
		n = TN_MAX(n, ncont[c]);
		ll[c] = 0;
		greedy[c] = 1;
	}
	if (!n)
		return TN_OK;
	int32_t *tok = tn_calloc((size_t)R * n, sizeof(int32_t));
	float *lg = tn_malloc((size_t)R * n * V * sizeof(float));
	int rc = tok && lg ? TN_OK : TN_ENOMEM;
	for (int c = 0; !rc && c < R; c++) {
		tok[(size_t)c * n] = last[c];
		for (size_t t = 1; t < ncont[c]; t++)
			tok[(size_t)c * n + t] = cont[c][t - 1];
	}
	if (!rc)
		rc = tn_model_prefill(m, st, tok, (int)n, lg);
	for (int c = 0; !rc && c < R; c++)
		for (size_t t = 0; t < ncont[c]; t++) {
			int is_max;
			ll[c] += token_ll(lg + ((size_t)c * n + t) * V, V, cont[c][t], &is_max);
			greedy[c] &= is_max;
		}
	free(tok);
	free(lg);
	return rc;
}

/* Rows of a group of items: one per choice, in item order. */
struct rows {
	int n;
	int32_t *last;
	int32_t **cont;
	size_t *ncont;
	double *ll;
	int *greedy;
};

static int rows_alloc(struct rows *r, int n)
{
	r->n = n;
	r->last = tn_calloc((size_t)n + 1, sizeof(int32_t));
	r->cont = tn_calloc((size_t)n + 1, sizeof(int32_t *));
	r->ncont = tn_calloc((size_t)n + 1, sizeof(size_t));
	r->ll = tn_calloc((size_t)n + 1, sizeof(double));
	r->greedy = tn_calloc((size_t)n + 1, sizeof(int));
	return r->last && r->cont && r->ncont && r->ll && r->greedy ? TN_OK : TN_ENOMEM;
}

static void rows_free(struct rows *r)
{
	free(r->last);
	free(r->cont);
	free(r->ncont);
	free(r->ll);
	free(r->greedy);
}

/* The context of it into one (a batch of one, from position 0). */
static int prefill_context(struct tn_model *m, struct tn_infer *one, const struct tn_mc_item *it)
{
	int rc = tn_infer_reset(one, 0);
	if (!rc && it->nctx > 1)
		rc = tn_model_prefill(m, one, it->ctx, (int)(it->nctx - 1), NULL);
	return rc;
}

int tn_mc_loglik_items(struct tn_model *m, const struct tn_mc_item *it, int k, int share)
{
	int R = 0, rc = TN_OK;
	for (int j = 0; j < k; j++) {
		if (!it[j].nctx)
			return tn_fail(TN_EDATA, "an empty context: nothing to condition on");
		R += it[j].nc;
	}
	struct rows r = {0};
	struct tn_infer *one = NULL, *many = NULL;
	if ((rc = rows_alloc(&r, R)) || (rc = tn_infer_new(&one, m, 1)) ||
	    (rc = tn_infer_new(&many, m, TN_MAX(R, 1))))
		goto out;
	for (int j = 0, at = 0; j < k && !rc; at += it[j].nc, j++)
		for (int c = 0; c < it[j].nc && !rc; c++) {
			/* share: the context once per item, else again for each choice */
			if ((c == 0 || !share) && (rc = prefill_context(m, one, &it[j])))
				break;
			rc = tn_infer_copy(many, at + c, one, 0);
			r.last[at + c] = it[j].ctx[it[j].nctx - 1];
			r.cont[at + c] = it[j].cont[c];
			r.ncont[at + c] = it[j].ncont[c];
		}
	if (!rc && R)
		rc = score_batch(m, many, r.last, r.cont, r.ncont, R, r.ll, r.greedy);
	for (int j = 0, at = 0; j < k && !rc; at += it[j].nc, j++) {
		memcpy(it[j].ll, r.ll + at, (size_t)it[j].nc * sizeof(double));
		memcpy(it[j].greedy, r.greedy + at, (size_t)it[j].nc * sizeof(int));
	}
out:
	rows_free(&r);
	tn_infer_free(one);
	tn_infer_free(many);
	return rc;
}

int tn_mc_loglik(struct tn_model *m, const int32_t *ctx, size_t nctx, int32_t *const *cont,
		 const size_t *ncont, int nc, int share, double *ll, int *greedy)
{
	struct tn_mc_item it = {ctx, nctx, cont, ncont, nc, ll, greedy};
	return tn_mc_loglik_items(m, &it, 1, share);
}

/* Characters (UTF-8 code points) of s: Python's len(), lm-eval's acc_norm. */
static size_t chars(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += ((unsigned char)*s & 0xC0) != 0x80;
	return n;
}

static int encode(struct tn_tok_state *ts, const char *s, size_t len, struct tn_idvec *v)
{
	v->n = 0;
	return tn_tokenizer_encode(ts, (const uint8_t *)s, len, v);
}

/* One item's tokens as lm-eval's _encode_pair: trailing whitespace of the
 * context moves into the continuation, the continuation's ids are those of
 * enc(context + continuation) after the first len(enc(context)). */
struct item_toks {
	struct tn_idvec ctx, whole;
	int32_t **cont;
	size_t *ncont;
	int nc;
};

static int item_tokens(struct tn_tok_state *ts, const char *context,
		       const struct tn_task_item *it, struct item_toks *x)
{
	size_t cl = strlen(context);
	while (cl && strchr(" \t\n\r\v\f", context[cl - 1]))
		cl--;
	int rc = encode(ts, context, cl, &x->ctx);
	for (int c = 0; !rc && c < it->n_choices; c++) {
		char *w = NULL;
		if (asprintf(&w, "%s %s", context, it->choices[c]) < 0)
			return tn_fail(TN_ENOMEM, "out of memory");
		struct tn_idvec v = {0};
		rc = encode(ts, w, strlen(w), &v);
		free(w);
		size_t keep = v.n > x->ctx.n ? v.n - x->ctx.n : 0;
		if (!rc)
			rc = tn_idvec_append(&x->whole, v.v + (v.n - keep), keep);
		tn_idvec_free(&v);
		x->ncont[c] = keep;
	}
	/* the continuations lie one after another in whole (ids < 2^31: int32 bits) */
	for (int c = 0, at = 0; !rc && c < it->n_choices; at += (int)x->ncont[c], c++)
		x->cont[c] = (int32_t *)x->whole.v + at;
	return rc;
}

static double mean_se(double p, size_t n)
{
	return n > 1 ? sqrt(p * (1 - p) / (double)(n - 1)) : NAN;
}

static int details_line(struct tn_out *out, size_t i, const struct tn_task_item *it,
			const double *ll, const int *greedy, int pred, int pred_norm)
{
	json_t *o = json_object(), *a = json_array(), *g = json_array();
	for (int c = 0; c < it->n_choices; c++) {
		json_array_append_new(a, json_real(ll[c]));
		json_array_append_new(g, json_boolean(greedy[c]));
	}
	json_object_set_new(o, "item", json_integer((json_int_t)i));
	json_object_set_new(o, "ll", a);
	json_object_set_new(o, "greedy", g);
	json_object_set_new(o, "gold", json_integer(it->gold));
	json_object_set_new(o, "pred", json_integer(pred));
	json_object_set_new(o, "pred_norm", json_integer(pred_norm));
	char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17));
	json_decref(o);
	if (!s)
		return tn_fail(TN_ENOMEM, "out of memory");
	int rc = tn_out_write(out, s, strlen(s));
	free(s);
	return rc ? rc : tn_out_write(out, "\n", 1);
}

struct tally {
	double acc, acc_norm, ll;
};

/* One item of a group: its tokens and, after scoring, its results. */
struct item_work {
	struct item_toks x;
	char *context;
	double *ll;
	int *greedy;
};

static int item_prepare(struct tn_tok_state *ts, const struct tn_task *t, size_t i, int shots,
			struct item_work *w, struct tn_mc_item *mi)
{
	const struct tn_task_item *it = &t->items[i];
	int nc = it->n_choices;
	w->x.nc = nc;
	w->ll = tn_calloc((size_t)nc, sizeof(double));
	w->greedy = tn_calloc((size_t)nc, sizeof(int));
	w->x.cont = tn_calloc((size_t)nc, sizeof(int32_t *));
	w->x.ncont = tn_calloc((size_t)nc, sizeof(size_t));
	int rc = w->ll && w->greedy && w->x.cont && w->x.ncont ? TN_OK : TN_ENOMEM;
	if (!rc)
		rc = tn_task_context(t, i, shots, &w->context);
	if (!rc)
		rc = item_tokens(ts, w->context, it, &w->x);
	if (!rc && !w->x.ctx.n)
		rc = tn_fail(TN_EDATA, "%s: item %zu: an empty context: nothing to condition on",
			     t->path, i + 1);
	*mi = (struct tn_mc_item){(const int32_t *)w->x.ctx.v, w->x.ctx.n, w->x.cont, w->x.ncont,
				  nc, w->ll, w->greedy};
	return rc;
}

static int item_finish(const struct tn_task *t, size_t i, const struct item_work *w,
		       struct tally *y, struct tn_out *det, struct tn_mc_result *r)
{
	const struct tn_task_item *it = &t->items[i];
	const double *ll = w->ll;
	int nc = it->n_choices, pred = 0, pred_norm = 0;
	for (int c = 1; c < nc; c++) { /* first of equal maxima, as np.argmax */
		if (ll[c] > ll[pred])
			pred = c;
		if (ll[c] / (double)chars(it->choices[c]) >
		    ll[pred_norm] / (double)chars(it->choices[pred_norm]))
			pred_norm = c;
	}
	int lam = t->kind == TN_TASK_LAMBADA;
	y->acc += lam ? w->greedy[0] : pred == it->gold;
	y->acc_norm += pred_norm == it->gold;
	y->ll += ll[0];
	r->ctx_tokens += w->x.ctx.n;
	for (int c = 0; c < nc; c++)
		r->cont_tokens += w->x.ncont[c];
	return det ? details_line(det, i, it, ll, w->greedy, pred, pred_norm) : TN_OK;
}

static void item_free(struct item_work *w)
{
	free(w->context);
	free(w->ll);
	free(w->greedy);
	free(w->x.cont);
	free(w->x.ncont);
	tn_idvec_free(&w->x.ctx);
	tn_idvec_free(&w->x.whole);
}

/* Items i0 .. i0 + k - 1 scored as one batch, tallied in order. */
static int score_group(struct tn_model *m, struct tn_tok_state *ts, const struct tn_task *t,
		       size_t i0, int k, const struct tn_mc_opts *o, struct tally *y,
		       struct tn_out *det, struct tn_mc_result *r)
{
	struct item_work *w = tn_calloc((size_t)k, sizeof(*w));
	struct tn_mc_item *mi = tn_calloc((size_t)k, sizeof(*mi));
	int rc = w && mi ? TN_OK : TN_ENOMEM;
	for (int j = 0; !rc && j < k; j++)
		rc = item_prepare(ts, t, i0 + (size_t)j, o->shots, &w[j], &mi[j]);
	if (!rc)
		rc = tn_mc_loglik_items(m, mi, k, o->share);
	if (rc == TN_EDATA && k == 1)
		rc = tn_fail(TN_EDATA, "%s: item %zu: %s", t->path, i0 + 1, tn_errmsg());
	else if (rc == TN_EDATA)
		rc = tn_fail(TN_EDATA, "%s: items %zu to %zu: %s", t->path, i0 + 1, i0 + (size_t)k,
			     tn_errmsg());
	for (int j = 0; !rc && j < k; j++)
		rc = item_finish(t, i0 + (size_t)j, &w[j], y, det, r);
	for (int j = 0; w && j < k; j++)
		item_free(&w[j]);
	free(w);
	free(mi);
	return rc;
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int tn_eval_mc(struct tn_model *m, const struct tn_tokenizer *tok, const struct tn_task *t,
	       const struct tn_mc_opts *o, struct tn_mc_result *r)
{
	memset(r, 0, sizeof(*r));
	r->kind = t->kind;
	size_t n = o->limit && o->limit < t->n ? o->limit : t->n;
	struct tn_tok_state *ts = NULL;
	struct tn_out det = {0};
	struct tally y = {0};
	int rc = tn_tok_state_new(&ts, tok);
	if (!rc && o->details)
		rc = tn_out_open(&det, o->details);
	double t0 = now();
	size_t k = o->batch > 1 ? (size_t)o->batch : 1;
	for (size_t i = 0; !rc && i < n; i += k)
		rc = score_group(m, ts, t, i, (int)TN_MIN(k, n - i), o, &y,
				 o->details ? &det : NULL, r);
	r->seconds = now() - t0;
	if (!rc && o->details)
		rc = tn_out_commit(&det);
	tn_out_abort(&det);
	tn_tok_state_free(ts);
	if (rc)
		return rc;
	r->n = n;
	r->acc = y.acc / (double)n;
	r->acc_se = mean_se(r->acc, n);
	r->acc_norm = y.acc_norm / (double)n;
	r->acc_norm_se = mean_se(r->acc_norm, n);
	r->ppl = exp(-y.ll / (double)n);
	return TN_OK;
}

/* ---- the command line: tn-eval mc ---- */

static const char mc_usage[] =
	"Usage: tn-eval mc -m MODEL -t TOKENIZER --task FILE.jsonl [OPTION]...\n"
	"Score a model on multiple-choice and cloze tasks in the JSON-lines layouts of\n"
	"lm-evaluation-harness (MMLU, BoolQ, HellaSwag-like, LAMBADA; see tn-eval(1)).\n"
	"\n"
	"Options:\n"
	"  -m, --model DIR        checkpoint directory (config.json + weights)\n"
	"  -t, --tokenizer PATH   tokenizer (tokenizer.model, tokenizer.json, ...)\n"
	"      --task FILE        a task file (repeatable)\n"
	"      --shots K          K solved examples before each item (default 0)\n"
	"      --limit N          only the first N items of each task\n"
	"      --details FILE     per-item log-likelihoods as JSON lines\n"
	"      --no-share         score each choice from scratch (no shared context)\n"
	"  -b, --batch N          score N items together, all their choices one batch\n"
	"                         (default 1)\n"
	"      --json             one JSON line per task\n"
	"      --backend NAME     cpu (default) or, where built, cuda or cuda-bf16\n"
	"  -h, --help             show this help and exit\n"
	"  -V, --version          show the version and exit\n"
	"\n"
	"Exit status: 0 success, 1 invalid data, 2 usage error, 3 system error.\n";

enum { MC_TASK = 256, MC_SHOTS, MC_LIMIT, MC_DETAILS, MC_NOSHARE, MC_JSON, MC_BACKEND };

static const struct option mc_opts[] = {
	{"model", required_argument, NULL, 'm'},
	{"tokenizer", required_argument, NULL, 't'},
	{"task", required_argument, NULL, MC_TASK},
	{"shots", required_argument, NULL, MC_SHOTS},
	{"limit", required_argument, NULL, MC_LIMIT},
	{"details", required_argument, NULL, MC_DETAILS},
	{"no-share", no_argument, NULL, MC_NOSHARE},
	{"batch", required_argument, NULL, 'b'},
	{"json", no_argument, NULL, MC_JSON},
	{"backend", required_argument, NULL, MC_BACKEND},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, 'V'},
	{NULL, 0, NULL, 0},
};

struct mc_args {
	const char *model, *tok;
	const char *tasks[64];
	int n_tasks, json, help;
	const struct tn_backend *be;
	struct tn_mc_opts o;
};

static const char *mc_prog = "tn-eval";

static int mc_opt(struct mc_args *a, int c, const char *arg)
{
	uint64_t v;
	int rc;
	switch (c) {
	case 'm': a->model = arg; return TN_OK;
	case 't': a->tok = arg; return TN_OK;
	case MC_TASK:
		if (a->n_tasks == (int)TN_ARRAY_LEN(a->tasks))
			return tn_cli_usage_error(mc_prog, "--task: at most 64");
		a->tasks[a->n_tasks++] = arg;
		return TN_OK;
	case MC_SHOTS:
		if ((rc = tn_cli_u64(mc_prog, "--shots", arg, &v, 0)) || v > 1024)
			return rc ? rc : tn_cli_usage_error(mc_prog, "--shots: at most 1024");
		a->o.shots = (int)v;
		return TN_OK;
	case MC_LIMIT:
		rc = tn_cli_u64(mc_prog, "--limit", arg, &v, 0);
		a->o.limit = (size_t)v;
		return rc;
	case MC_DETAILS: a->o.details = arg; return TN_OK;
	case 'b':
		if ((rc = tn_cli_u64(mc_prog, "--batch", arg, &v, 0)) || v < 1 || v > 4096)
			return rc ? rc : tn_cli_usage_error(mc_prog, "--batch: 1 to 4096");
		a->o.batch = (int)v;
		return TN_OK;
	case MC_NOSHARE: a->o.share = 0; return TN_OK;
	case MC_JSON: a->json = 1; return TN_OK;
	case MC_BACKEND:
		if (!(a->be = tn_backend_find(arg)))
			return tn_cli_usage_error(mc_prog, "--backend: %s", tn_errmsg());
		return TN_OK;
	case 'h': a->help = 1; fputs(mc_usage, stdout); return TN_OK;
	case 'V': a->help = 1; tn_cli_version(mc_prog); return TN_OK;
	default: return tn_cli_usage_error(mc_prog, "unknown or incomplete option");
	}
}

static int mc_parse(struct mc_args *a, int argc, char **argv)
{
	a->o.share = 1;
	a->o.batch = 1;
	a->be = &tn_backend_cpu;
	int c, rc = TN_OK;
	opterr = 0;
	optind = 1;
	while (!rc && !a->help && (c = getopt_long(argc, argv, "m:t:b:hV", mc_opts, NULL)) != -1)
		rc = mc_opt(a, c, optarg);
	if (rc || a->help)
		return rc;
	if (optind < argc)
		return tn_cli_usage_error(mc_prog, "unexpected argument '%s'", argv[optind]);
	if (!a->model || !a->tok || !a->n_tasks)
		return tn_cli_usage_error(mc_prog, "mc needs -m MODEL, -t TOKENIZER and --task FILE");
	if (a->o.details && a->n_tasks > 1)
		return tn_cli_usage_error(mc_prog, "--details takes one --task");
	return TN_OK;
}

/* Task name: the file's base name without .jsonl. */
static void task_name(const char *path, char *out, size_t cap)
{
	const char *b = strrchr(path, '/');
	b = b ? b + 1 : path;
	size_t n = strlen(b);
	if (n > 6 && !strcmp(b + n - 6, ".jsonl"))
		n -= 6;
	snprintf(out, cap, "%.*s", (int)n, b);
}

static void mc_print(const struct mc_args *a, const char *path, const struct tn_mc_result *r)
{
	char name[256];
	task_name(path, name, sizeof(name));
	int lam = r->kind == TN_TASK_LAMBADA;
	if (a->json) {
		printf("{\"task\":\"%s\",\"layout\":\"%s\",\"items\":%zu,\"shots\":%d,", name,
		       tn_task_kind_name(r->kind), r->n, a->o.shots);
		if (lam)
			printf("\"ppl\":%.9g,", r->ppl);
		printf("\"acc\":%.9g,\"acc_stderr\":%.9g", r->acc, r->acc_se);
		if (!lam)
			printf(",\"acc_norm\":%.9g,\"acc_norm_stderr\":%.9g", r->acc_norm,
			       r->acc_norm_se);
		printf(",\"ctx_tokens\":%llu,\"cont_tokens\":%llu,\"seconds\":%.3f,"
		       "\"items_per_s\":%.2f,\"share\":%s,\"batch\":%d,\"backend\":\"%s\"}\n",
		       (unsigned long long)r->ctx_tokens, (unsigned long long)r->cont_tokens,
		       r->seconds, r->seconds > 0 ? (double)r->n / r->seconds : 0.0,
		       a->o.share ? "true" : "false", a->o.batch, a->be->name);
		return;
	}
	printf("%-24s %-9s %6zu  %-8s %9.4f  ± %.4f\n", name, tn_task_kind_name(r->kind), r->n,
	       "acc", r->acc, r->acc_se);
	if (lam)
		printf("%-24s %-9s %6s  %-8s %9.4f\n", "", "", "", "ppl", r->ppl);
	else
		printf("%-24s %-9s %6s  %-8s %9.4f  ± %.4f\n", "", "", "", "acc_norm", r->acc_norm,
		       r->acc_norm_se);
}

static int mc_run(const struct mc_args *a)
{
	char *dir = NULL;
	struct tn_model *m = NULL;
	struct tn_tokenizer *tok = NULL;
	struct tn_task *t = tn_calloc((size_t)a->n_tasks, sizeof(*t));
	int rc = t ? TN_OK : TN_ENOMEM;
	for (int i = 0; !rc && i < a->n_tasks; i++) /* a bad task file fails before the model loads */
		rc = tn_task_load(&t[i], a->tasks[i]);
	if (!rc)
		rc = tn_ckpt_resolve(a->model, &dir);
	if (!rc)
		rc = tn_model_load(&m, dir, a->be);
	free(dir);
	if (!rc)
		rc = tn_tokenizer_load(&tok, a->tok, TN_TOK_AUTO);
	if (!rc && tok->vocab_size > (uint32_t)m->cfg.vocab_size)
		rc = tn_fail(TN_EDATA, "%s: the tokenizer's vocabulary of %u is larger than the "
			     "model's %d", a->tok, tok->vocab_size, m->cfg.vocab_size);
	if (!rc && !a->json)
		printf("%-24s %-9s %6s  %-8s %9s\n", "task", "layout", "items", "metric", "value");
	for (int i = 0; !rc && i < a->n_tasks; i++) {
		struct tn_mc_result r;
		if (!(rc = tn_eval_mc(m, tok, &t[i], &a->o, &r)))
			mc_print(a, a->tasks[i], &r);
	}
	for (int i = 0; t && i < a->n_tasks; i++)
		tn_task_free(&t[i]);
	free(t);
	tn_tokenizer_free(tok);
	tn_model_free(m);
	return rc;
}

int tn_eval_mc_main(int argc, char **argv)
{
	struct mc_args a = {0};
	int rc = mc_parse(&a, argc, argv);
	if (rc || a.help)
		return rc;
	rc = mc_run(&a);
	fflush(stdout);
	return rc ? tn_cli_report(mc_prog, rc) : 0;
}
