/* train.c - the training loop of tn-train (see train.h). The metrics log
 * lives in memory and is rewritten atomically with every checkpoint, so
 * metrics.jsonl and loss.svg always describe exactly the steps that the
 * latest checkpoint holds; a resume keeps the lines up to its step. */
#include "train.h"
#include "checkpoint.h"
#include "eval.h"
#include "io.h"
#include "loader.h"
#include "manifest.h"
#include "model.h"
#include "util.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum point_kind { PT_LOSS, PT_VAL, PT_SKIPPED };

struct point {
	int64_t step;
	double loss; /* PT_SKIPPED: unused */
	enum point_kind kind;
};

struct run {
	const struct tn_train_opts *o;
	struct tn_model *m;
	struct tn_optim *opt;
	struct tn_loader *train, *val;
	struct tn_train_state ts;
	struct tn_batches *batches;      /* the train loader's micro-batches, made ahead */
	struct tn_loader_cursor cursor;  /* the loader's, after the batches taken */
	struct point *pts;
	size_t n_pts, cap_pts;
	char ckpt[64]; /* name of the newest checkpoint, "" if none */
	/* The 2-D rank grid: a TP group of consecutive ranks shares one model
	 * (NULL without TP); the DP group holds the ranks of the same TP rank
	 * in each TP group (o->comm itself without TP). */
	struct tn_comm *tp, *dp;
	int stop; /* the ranks agreed to stop after this step */
	int skips; /* steps skipped in a row (non-finite loss or gradient norm) */
};

/* Data parallel: the DP ranks share one global batch of batch x ranks
 * windows; the trainer state records the global batch and the global
 * loader position, so a run resumes on any number of ranks. The ranks of a
 * TP group read the same windows. */
static uint32_t ranks(const struct run *r) { return r->dp ? (uint32_t)tn_comm_size(r->dp) : 1; }
static uint32_t rank(const struct run *r) { return r->dp ? (uint32_t)tn_comm_rank(r->dp) : 0; }
static int world_rank(const struct run *r) { return r->o->comm ? tn_comm_rank(r->o->comm) : 0; }

/* Split the ranks into TP groups of o->tp consecutive ranks and DP groups. */
static int setup_grid(struct run *r)
{
	struct tn_comm *c = r->o->comm;
	int T = r->o->tp > 1 ? r->o->tp : 1;
	r->dp = c;
	if (T == 1)
		return TN_OK;
	int w = c ? tn_comm_size(c) : 1, me = c ? tn_comm_rank(c) : 0;
	if (!c || w % T)
		return tn_fail(TN_EUSAGE, "tensor parallelism over %d ranks needs a multiple of %d "
			       "ranks, not %d", T, T, w);
	int rc = tn_comm_split(c, me / T, me, &r->tp);
	r->dp = NULL;
	if (!rc)
		rc = tn_comm_split(c, me % T, me, &r->dp);
	return rc;
}

/* The whole model (weights, and moments when wopt) made into this rank's
 * TP part, r->m and r->opt (teardown frees what was made). */
static int split_model(struct run *r, struct tn_model *whole, struct tn_optim *wopt,
		       const struct tn_backend *be, const struct tn_optim_opts *oo)
{
	int rc = tn_model_tp_split(&r->m, whole, be, r->tp);
	if (!rc)
		rc = tn_optim_new(&r->opt, r->m, oo);
	if (!rc && wopt) {
		rc = tn_model_tp_slice(r->m, wopt->m, r->opt->m);
		if (!rc)
			rc = tn_model_tp_slice(r->m, wopt->v, r->opt->v);
		r->opt->step = wopt->step;
	}
	return rc;
}

void tn_train_defaults(struct tn_train_opts *o)
{
	memset(o, 0, sizeof(*o));
	tn_optim_defaults(&o->optim);
	o->steps = 100;
	o->seq_len = 64;
	o->batch = 8;
	o->accum = 1;
	o->seed = 1;
	o->log_every = 10;
	o->keep = 3;
	o->save_dtype = TN_F32;
	o->max_skips = 10;
}

static int add_point(struct run *r, int64_t step, double loss, enum point_kind kind)
{
	if (r->n_pts == r->cap_pts) {
		size_t cap = r->cap_pts ? 2 * r->cap_pts : 256;
		struct point *p = tn_realloc(r->pts, cap * sizeof(*p));
		if (!p)
			return TN_ENOMEM;
		r->pts = p;
		r->cap_pts = cap;
	}
	r->pts[r->n_pts++] = (struct point){step, loss, kind};
	return TN_OK;
}

/* ---- metrics.jsonl and loss.svg ---- */

static int write_metrics(const struct run *r)
{
	char *path = tn_path_join(r->o->out, "metrics.jsonl");
	struct tn_out out;
	int rc = path ? tn_out_open(&out, path) : TN_ENOMEM;
	for (size_t i = 0; !rc && i < r->n_pts; i++) {
		const struct point *p = &r->pts[i];
		char line[160], num[32] = "null"; /* JSON has no NaN */
		if (isfinite(p->loss))
			snprintf(num, sizeof(num), "%.9g", p->loss);
		int n = p->kind == PT_SKIPPED
			? snprintf(line, sizeof(line), "{\"step\":%lld,\"skipped\":true}\n",
				   (long long)p->step)
			: snprintf(line, sizeof(line), "{\"step\":%lld,\"%s\":%s}\n", (long long)p->step,
				   p->kind == PT_VAL ? "val_loss" : "loss", num);
		rc = tn_out_write(&out, line, (size_t)n);
	}
	if (!rc)
		rc = tn_out_commit(&out);
	if (path)
		tn_out_abort(&out);
	free(path);
	return rc;
}

/* Keep the lines of an earlier run's metrics.jsonl up to step `upto`. */
static int read_metrics(struct run *r, int64_t upto)
{
	char *path = tn_path_join(r->o->out, "metrics.jsonl");
	if (!path)
		return TN_ENOMEM;
	FILE *f = fopen(path, "r");
	free(path);
	if (!f)
		return TN_OK;
	char line[512];
	int rc = TN_OK;
	while (!rc && fgets(line, sizeof(line), f)) {
		json_t *o = json_loads(line, 0, NULL), *s = json_object_get(o, "step");
		json_t *l = json_object_get(o, "loss"), *v = json_object_get(o, "val_loss");
		enum point_kind k = l ? PT_LOSS : v ? PT_VAL : PT_SKIPPED;
		if (json_is_integer(s) && json_integer_value(s) <= upto &&
		    (l || v || json_is_true(json_object_get(o, "skipped"))))
			rc = add_point(r, json_integer_value(s),
				       json_is_number(l ? l : v) ? json_number_value(l ? l : v) : NAN, k);
		json_decref(o);
	}
	fclose(f);
	return rc;
}

static int svg_printf(struct tn_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int svg_printf(struct tn_out *o, const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return tn_out_write(o, buf, (size_t)TN_MIN(n, (int)sizeof(buf) - 1));
}

/* The loss curve: training loss as a line, validation loss as dots. */
static int write_plot(const struct run *r)
{
	const double W = 640, H = 400, X0 = 60, Y0 = 20, PW = 560, PH = 340;
	double lo = INFINITY, hi = -INFINITY, smax = 1;
	for (size_t i = 0; i < r->n_pts; i++) {
		if (r->pts[i].kind != PT_SKIPPED && isfinite(r->pts[i].loss)) {
			lo = fmin(lo, r->pts[i].loss);
			hi = fmax(hi, r->pts[i].loss);
		}
		smax = fmax(smax, (double)r->pts[i].step);
	}
	if (!(hi > lo)) {
		lo = isfinite(lo) ? lo - 1 : 0;
		hi = lo + 2;
	}
	char *path = tn_path_join(r->o->out, "loss.svg");
	struct tn_out o;
	int rc = path ? tn_out_open(&o, path) : TN_ENOMEM;
	if (!rc)
		rc = svg_printf(&o, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%g\" height=\"%g\""
				" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%%\" "
				"height=\"100%%\" fill=\"white\"/>\n<rect x=\"%g\" y=\"%g\" width=\"%g\" "
				"height=\"%g\" fill=\"none\" stroke=\"black\"/>\n", W, H, X0, Y0, PW, PH);
	if (!rc)
		rc = svg_printf(&o, "<text x=\"%g\" y=\"%g\">%.3f</text><text x=\"%g\" y=\"%g\">%.3f"
				"</text><text x=\"%g\" y=\"%g\">step %.0f</text>\n<polyline fill=\"none\" "
				"stroke=\"steelblue\" points=\"", 4.0, Y0 + 10, hi, 4.0, Y0 + PH, lo,
				X0 + PW - 80, H - 8, smax);
#define PX(p) (X0 + PW * (double)(p).step / smax)
#define PY(p) (Y0 + PH * (hi - (p).loss) / (hi - lo))
	for (size_t i = 0; !rc && i < r->n_pts; i++)
		if (r->pts[i].kind == PT_LOSS && isfinite(r->pts[i].loss))
			rc = svg_printf(&o, "%.1f,%.1f ", PX(r->pts[i]), PY(r->pts[i]));
	if (!rc)
		rc = svg_printf(&o, "\"/>\n");
	for (size_t i = 0; !rc && i < r->n_pts; i++)
		if (r->pts[i].kind == PT_VAL && isfinite(r->pts[i].loss))
			rc = svg_printf(&o, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"darkorange\"/>\n",
					PX(r->pts[i]), PY(r->pts[i]));
#undef PX
#undef PY
	if (!rc)
		rc = svg_printf(&o, "<text x=\"%g\" y=\"%g\" fill=\"steelblue\">train loss</text>"
				"<text x=\"%g\" y=\"%g\" fill=\"darkorange\">val loss</text>\n</svg>\n",
				X0 + 10, H - 8, X0 + 110, H - 8);
	if (!rc)
		rc = tn_out_commit(&o);
	if (path)
		tn_out_abort(&o);
	free(path);
	return rc;
}

/* ---- setup ---- */

static int check_resume(const struct tn_train_opts *o, const struct tn_train_state *ts,
			const char *dir, const char *tokenizer, uint32_t world)
{
	if (strcmp(ts->tokenizer, tokenizer))
		return tn_fail(TN_EDATA, "%s: tokenizer fingerprint %s differs from the checkpoint's "
			       "%s (%s)", o->data, tokenizer, ts->tokenizer, dir);
	if (ts->seq_len != o->seq_len || ts->batch != o->batch * world || ts->accum != o->accum ||
	    ts->seed != o->seed)
		return tn_fail(TN_EUSAGE, "%s: trained with seq-len %u, global batch %u, accum %u, "
			       "seed %llu; a resume must keep them (given %u, %u x %u ranks, %u, %llu)",
			       dir, ts->seq_len, ts->batch, ts->accum, (unsigned long long)ts->seed,
			       o->seq_len, o->batch, world, o->accum, (unsigned long long)o->seed);
	if (ts->cursor.position % world)
		return tn_fail(TN_EUSAGE, "%s: the data position %llu does not divide among %u ranks",
			       dir, (unsigned long long)ts->cursor.position, world);
	if (ts->step > o->steps)
		return tn_fail(TN_EUSAGE, "%s: already at step %lld, past --steps %lld", dir,
			       (long long)ts->step, (long long)o->steps);
	return TN_OK;
}

/* The fingerprint of the data's tokenizer, from its manifest. */
static int data_tokenizer(const char *dir, char hex[33])
{
	struct tn_manifest man = {0};
	int rc = tn_manifest_read(dir, &man);
	if (!rc)
		tn_fingerprint_hex(man.info.fingerprint, hex);
	tn_manifest_free(&man);
	return rc;
}

static int setup_model(struct run *r, uint32_t data_vocab)
{
	char tokenizer[33];
	int rc = data_tokenizer(r->o->data, tokenizer);
	if (rc)
		return rc;
	const struct tn_train_opts *o = r->o;
	const struct tn_backend *be = o->be ? o->be : &tn_backend_cpu;
	/* with TP, the whole model is made in host memory, then split */
	const struct tn_backend *whole_be = r->tp ? &tn_backend_cpu : be;
	struct tn_optim_opts oo = o->optim;
	oo.steps = o->steps;
	if (o->resume) {
		char *dir;
		if ((rc = tn_ckpt_resolve(o->resume, &dir)))
			return rc;
		rc = tn_model_load(&r->m, dir, whole_be);
		if (!rc)
			rc = tn_optim_new(&r->opt, r->m, &oo);
		if (!rc)
			rc = tn_ckpt_load_state(dir, r->m, r->opt, &r->ts);
		if (!rc)
			rc = check_resume(o, &r->ts, dir, tokenizer, ranks(r));
		free(dir);
	} else {
		struct tn_config cfg = o->cfg;
		if (!cfg.vocab_size)
			cfg.vocab_size = (int)data_vocab;
		rc = tn_model_new(&r->m, &cfg, whole_be);
		if (!rc)
			rc = tn_model_init(r->m, o->seed);
		if (!rc && !r->tp) /* with TP, the part gets its own (zero) moments */
			rc = tn_optim_new(&r->opt, r->m, &oo);
		r->ts = (struct tn_train_state){.seq_len = o->seq_len, .batch = o->batch * ranks(r),
						.accum = o->accum, .seed = o->seed};
		tn_rng_seed(&r->ts.rng, o->seed);
		memcpy(r->ts.tokenizer, tokenizer, sizeof(tokenizer));
	}
	if (!rc && r->tp) {
		struct tn_model *whole = r->m;
		struct tn_optim *wopt = r->opt;
		r->m = NULL;
		r->opt = NULL;
		rc = split_model(r, whole, wopt, be, &oo);
		tn_optim_free(wopt, whole);
		tn_model_free(whole);
	}
	if (!rc && data_vocab > (uint32_t)r->m->cfg.vocab_size)
		rc = tn_fail(TN_EDATA, "%s: the data's vocabulary of %u is larger than the model's %d",
			     o->data, data_vocab, r->m->cfg.vocab_size);
	if (!rc && r->dp)
		rc = tn_optim_distribute(r->opt, r->m, r->dp, o->zero);
	if (!rc)
		tn_model_set_recompute(r->m, o->recompute);
	return rc;
}

static int setup(struct run *r)
{
	const struct tn_train_opts *o = r->o;
	int rc = setup_grid(r);
	struct tn_loader_opts lo = {o->data, "train", o->seq_len, o->seed, 1, rank(r), ranks(r)};
	if (!rc)
		rc = tn_loader_open(&r->train, &lo);
	if (!rc)
		rc = setup_model(r, tn_loader_vocab_size(r->train));
	if (!rc && o->resume)
		rc = tn_loader_set_cursor(r->train, (struct tn_loader_cursor){
			r->ts.cursor.epoch, r->ts.cursor.position / ranks(r)});
	if (!rc && o->eval_every > 0) {
		struct tn_loader_opts vo = {o->data, "val", o->seq_len, o->seed, 0, 0, 1};
		rc = tn_loader_open(&r->val, &vo);
	}
	if (!rc && world_rank(r) == 0 && mkdir(o->out, 0777) != 0 && errno != EEXIST)
		rc = tn_fail_errno("%s: cannot create", o->out);
	if (!rc && o->resume)
		rc = read_metrics(r, r->ts.step);
	if (!rc) { /* in pinned memory on a GPU: the uploads do not wait */
		r->cursor = tn_loader_get_cursor(r->train);
		rc = tn_batches_open(&r->batches, r->train, o->batch, 1, r->m->be->host_alloc,
				     r->m->be->host_free);
	}
	return rc;
}

static void teardown(struct run *r)
{
	tn_batches_close(r->batches); /* first: its thread reads the loader */
	tn_optim_free(r->opt, r->m);
	tn_model_free(r->m);
	if (r->tp) {
		tn_comm_close(r->tp);
		tn_comm_close(r->dp);
	}
	tn_loader_free(r->train);
	if (r->val)
		tn_loader_free(r->val);
	free(r->pts);
}

/* ---- the loop ---- */

static void emit(const struct run *r, struct tn_train_log *l)
{
	l->step = r->ts.step + (l->skips > 0);
	l->steps = r->o->steps;
	l->tokens = r->ts.tokens;
	if (r->o->log && world_rank(r) == 0)
		r->o->log(r->o->log_ctx, l);
}

/* On world rank 0 only: a whole model on the CPU and host buffers for
 * whole moments, as a checkpoint is written from (*wm NULL elsewhere). */
static int host_whole(const struct run *r, const struct tn_optim *like, struct tn_model **wm,
		      struct tn_optim *wopt)
{
	*wopt = *like;
	wopt->m = wopt->v = NULL;
	if (world_rank(r) != 0)
		return TN_OK;
	int rc = tn_model_new(wm, &r->m->cfg, &tn_backend_cpu);
	size_t n = rc ? 0 : (*wm)->n_floats;
	wopt->m = rc ? NULL : tn_malloc(n * sizeof(float));
	wopt->v = wopt->m ? tn_malloc(n * sizeof(float)) : NULL;
	if (!rc && !wopt->v)
		rc = TN_ENOMEM;
	wopt->lo = 0;
	wopt->hi = n;
	return rc;
}

/* With TP: the whole model and moments gathered from the parts (collective
 * over the TP group) into wm (host memory) and wopt, on world rank 0 only. */
static int gather_whole(const struct run *r, const struct tn_optim *mine, struct tn_model **wm,
			struct tn_optim *wopt)
{
	int rc = host_whole(r, mine, wm, wopt), root = world_rank(r) == 0;
	if (!rc) /* a failed root leaves the others waiting; the caller aborts them */
		rc = tn_model_tp_gather(r->m, r->m->params, root ? (*wm)->params : NULL);
	if (!rc)
		rc = tn_model_tp_gather(r->m, mine->m, wopt->m);
	if (!rc)
		rc = tn_model_tp_gather(r->m, mine->v, wopt->v);
	return rc;
}

/* ZeRO without TP: the moments' shards gathered in rounds into host memory
 * on world rank 0 (collective over the DP ranks), beside a host copy of
 * the weights: the device never holds the whole moments. */
static int gather_zero(const struct run *r, struct tn_model **wm, struct tn_optim *wopt)
{
	int rc = host_whole(r, r->opt, wm, wopt);
	if (!rc)
		rc = tn_optim_gather_host(r->opt, r->m, wopt->m, wopt->v, 0);
	if (!rc && *wm)
		r->m->be->download((*wm)->params, r->m->params, r->m->n_floats * sizeof(float));
	return rc;
}

/* Never a checkpoint with a non-finite weight or moment (the moments are
 * whole here): the first such tensor named. */
static int check_finite(const struct tn_model *m, const struct tn_optim *opt, const char *dir)
{
	static const char *const what[3] = {"weights", "first moments", "second moments"};
	const float *buf[3] = {m->params, opt->m, opt->v};
	for (size_t i = 0; i < m->n_param; i++)
		for (int k = 0; k < 3; k++)
			if (!isfinite(m->be->sumsq_forward(buf[k] + m->param[i].offset,
							   m->param[i].numel)))
				return tn_fail(TN_EDATA, "%s: not written: the %s of %s hold a "
					       "non-finite value", dir, what[k], m->param[i].name);
	return TN_OK;
}

/* The checkpoint of the whole model: the moments gathered over the DP
 * group (ZeRO without TP: into world rank 0's host memory, in rounds),
 * then (TP, in the first TP group) the parts over the TP group; world
 * rank 0 writes. */
static int write_ckpt(struct run *r, const char *dir)
{
	struct tn_optim whole = *r->opt, wopt = {0};
	struct tn_model *wm = NULL;
	int zero_host = r->opt->zero && !r->tp, rc;
	if (zero_host) {
		rc = gather_zero(r, &wm, &wopt);
	} else {
		if ((rc = tn_optim_whole(r->opt, r->m, &whole)))
			return rc;
		if (r->tp && rank(r) == 0)
			rc = gather_whole(r, &whole, &wm, &wopt);
	}
	if (!rc && world_rank(r) == 0)
		rc = check_finite(wm ? wm : r->m, wm ? &wopt : &whole, dir);
	if (!rc && world_rank(r) == 0)
		rc = tn_ckpt_save(dir, wm ? wm : r->m, wm ? &wopt : &whole, &r->ts,
				  r->o->save_dtype);
	free(wopt.m);
	free(wopt.v);
	tn_model_free(wm);
	if (!zero_host) /* whole is r->opt itself there */
		tn_optim_release_whole(r->opt, r->m, &whole);
	return rc;
}

/* Every rank takes part (the moments are gathered); rank 0 writes. */
static int save(struct run *r)
{
	snprintf(r->ckpt, sizeof(r->ckpt), "step-%08lld", (long long)r->ts.step);
	char *dir = tn_path_join(r->o->out, r->ckpt);
	if (!dir)
		return TN_ENOMEM;
	r->ts.cursor = r->cursor;
	r->ts.cursor.position *= ranks(r);
	int rc = r->o->no_checkpoint ? TN_OK : write_ckpt(r, dir);
	if (rc || world_rank(r) != 0) {
		free(dir);
		return rc;
	}
	if (!rc)
		rc = write_metrics(r);
	if (!rc)
		rc = write_plot(r);
	if (!rc && !r->o->no_checkpoint)
		rc = tn_ckpt_publish(r->o->out, r->ckpt, r->o->keep);
	if (!rc && !r->o->no_checkpoint) {
		struct tn_train_log l = {.event = "checkpoint", .path = dir};
		emit(r, &l);
	}
	free(dir);
	return rc;
}

/* One micro-batch: batch windows forward and backward; its mean loss.
 * The last of an update sums its gradients over the ranks as they finish. */
static int micro_step(struct run *r, int last, double *loss)
{
	const struct tn_train_opts *o = r->o;
	const struct tn_batch *b;
	int rc = tn_batches_next(r->batches, &b);
	if (rc)
		return rc;
	r->cursor = b->after;
	rc = tn_model_forward(r->m, b->in, b->tgt, (int)o->batch, (int)o->seq_len, loss);
	if (!rc) /* the device has read the batch (free: the forward waited for its loss) */
		rc = r->m->be->status();
	if (!rc && last && !o->no_overlap)
		tn_optim_overlap(r->opt, r->m);
	if (!rc) /* the optimizer sums over ranks: each contributes its mean / ranks */
		rc = tn_model_backward(r->m, 1.0f / (float)(o->accum * ranks(r)));
	return rc;
}

static int evaluate(struct run *r, double *val)
{
	int rc = tn_loader_set_cursor(r->val, (struct tn_loader_cursor){0, 0});
	struct tn_ppl p = {0};
	if (!rc)
		rc = tn_eval_loader(r->m, r->val, (int)r->o->batch, r->o->seq_len,
				    r->o->eval_windows, &p);
	*val = tn_ppl_nll(&p);
	if (!rc)
		rc = add_point(r, r->ts.step, *val, PT_VAL);
	if (!rc) {
		struct tn_train_log l = {.event = "eval", .val_loss = *val};
		emit(r, &l);
	}
	return rc;
}

/* A run ended by non-finite steps: why, and where to resume from. */
static int stopped(const struct run *r, const char *why)
{
	char msg[512];
	snprintf(msg, sizeof(msg), "%s", why); /* why may be tn_errmsg() itself */
	return tn_fail(TN_EDATA, "%s; stopped (the last good checkpoint is %s/%s)", msg, r->o->out,
		       r->ckpt[0] ? r->ckpt : "(none yet)");
}

/* A step left out (--on-nan skip): logged, and the run stopped after
 * max_skips of them in a row, its metrics.jsonl then showing them. */
static int skip_step(struct run *r, double loss, double gnorm)
{
	int rc = add_point(r, r->ts.step + 1, NAN, PT_SKIPPED);
	struct tn_train_log l = {.event = "skipped", .loss = loss, .grad_norm = gnorm,
				 .skips = ++r->skips};
	emit(r, &l);
	if (rc || r->skips < r->o->max_skips)
		return rc;
	if (world_rank(r) == 0 && (rc = write_metrics(r)))
		return rc;
	char why[200];
	snprintf(why, sizeof(why), "step %lld: %d steps in a row skipped (the loss is %g, the "
		 "gradient norm %g)", (long long)l.step, r->skips, loss, gnorm);
	return stopped(r, why);
}

/* One update: its micro-batches, then AdamW unless the loss or the
 * gradient norm is not finite (*skipped; the same on every rank). */
static int train_step(struct run *r, double *loss, double *lr, double *gnorm, int *skipped)
{
	int rc = tn_model_zero_grad(r->m);
	*loss = 0;
	*skipped = 0;
	for (uint32_t a = 0; a < r->o->accum && !rc; a++) {
		double l;
		rc = micro_step(r, a + 1 == r->o->accum, &l);
		*loss += l / r->o->accum;
	}
	if (!rc && r->o->comm) { /* one reduction: the loss and whether to stop */
		double v[2] = {*loss, r->o->stop && *r->o->stop};
		rc = tn_comm_allreduce_f64(r->o->comm, v, 2);
		*loss = v[0] / tn_comm_size(r->o->comm); /* TP ranks hold the same loss */
		r->stop = v[1] > 0;
	}
	if (isnan(*loss))
		*loss = NAN; /* "nan" when printed, whatever its sign */
	if (!rc)
		rc = tn_optim_step_checked(r->opt, r->m, *loss, r->o->on_nan, gnorm, lr, skipped);
	if (rc)
		return rc == TN_EDATA && *skipped ? stopped(r, tn_errmsg()) : rc;
	r->ts.tokens += (uint64_t)r->o->batch * r->o->seq_len * r->o->accum * ranks(r);
	if (*skipped)
		return skip_step(r, *loss, *gnorm);
	r->skips = 0;
	r->ts.step = r->opt->step;
	return add_point(r, r->ts.step, *loss, PT_LOSS);
}

/* After update s: progress line, validation and checkpoint as due. */
static int after_update(struct run *r, struct tn_train_result *res, struct tn_train_log *l,
			double *t0, uint64_t *tok0, int *saved)
{
	const struct tn_train_opts *o = r->o;
	int64_t s = r->ts.step;
	int rc = TN_OK;
	res->loss = l->loss;
	*saved = 0;
	if (o->log_every > 0 && (s % o->log_every == 0 || s == o->steps)) {
		double now = tn_now();
		l->tokens_per_s = (double)(r->ts.tokens - *tok0) / fmax(now - *t0, 1e-9);
		emit(r, l);
		*t0 = now;
		*tok0 = r->ts.tokens;
	}
	if (o->eval_every > 0 && (s % o->eval_every == 0 || s == o->steps))
		rc = evaluate(r, &res->val_loss);
	if (!rc && o->save_every > 0 && s % o->save_every == 0) {
		rc = save(r);
		*saved = 1;
	}
	return rc;
}

static int loop(struct run *r, struct tn_train_result *res)
{
	const struct tn_train_opts *o = r->o;
	double t0 = tn_now(), rate_t = t0;
	uint64_t tok0 = r->ts.tokens, rate_tok = tok0;
	int rc = TN_OK, saved = 0;
	for (int64_t first = r->ts.step; !rc && r->ts.step < o->steps;) {
		if (r->ts.step == first + 1) { /* the rate leaves the first update out */
			rate_t = tn_now();
			rate_tok = r->ts.tokens;
		}
		struct tn_train_log l = {.event = "step"};
		int skipped;
		if ((rc = train_step(r, &l.loss, &l.lr, &l.grad_norm, &skipped)))
			break;
		if (o->heartbeat)
			o->heartbeat(o->log_ctx);
		if (!skipped)
			rc = after_update(r, res, &l, &t0, &tok0, &saved);
		/* all ranks stop at the same step, as agreed with the loss */
		if (!rc && (o->comm ? r->stop : o->stop && *o->stop)) {
			if (!saved)
				rc = save(r);
			saved = 1;
			res->interrupted = 1;
			break;
		}
	}
	res->tokens_per_s = (double)(r->ts.tokens - rate_tok) / fmax(tn_now() - rate_t, 1e-9);
	res->device_bytes = r->m->be->device_bytes ? r->m->be->device_bytes() : 0;
	if (!rc && !saved)
		rc = save(r);
	res->step = r->ts.step;
	return rc;
}

int tn_train_run(const struct tn_train_opts *o, struct tn_train_result *res)
{
	struct run r = {.o = o};
	*res = (struct tn_train_result){.val_loss = NAN};
	int rc = setup(&r);
	if (!rc)
		rc = loop(&r, res);
	teardown(&r);
	return rc;
}
