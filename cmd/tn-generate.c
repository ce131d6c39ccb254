/* tn-generate - generate text or ids with a model (see tn-generate(1)).
 * Options and plumbing only; the loop and the sampler are libcore/generate.c
 * and libcore/sample.c. One prompt streams to stdout as it is made; a file
 * of prompts (one per line) gives one JSON line each; with --batch all
 * prompts are read first and generated together, output in prompt order. */
#include "backend.h"
#include "checkpoint.h"
#include "cli.h"
#include "generate.h"
#include "ids.h"
#include "io.h"
#include "model.h"
#include "tokenizer.h"
#include "util.h"

#include <getopt.h>
#include <jansson.h>
#include <utf8proc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *prog = "tn-generate";

static const char usage_text[] =
	"Usage: tn-generate -m MODEL [-t TOKENIZER] [-p TEXT | --prompt-file FILE |\n"
	"                   --prompts FILE | --ids] [OPTION]...\n"
	"Continue a prompt with a model, streaming the new text to standard output.\n"
	"\n"
	"Prompts: -p TEXT, the whole of --prompt-file FILE, one per line of --prompts FILE\n"
	"(one JSON line out per prompt), or standard input. With --ids, prompts are decimal\n"
	"ids, one prompt per line (of --prompts FILE or standard input), and each\n"
	"continuation is printed as one line of decimal ids.\n"
	"\n"
	"Options:\n"
	"  -m, --model DIR              checkpoint directory (config.json + weights)\n"
	"  -t, --tokenizer PATH         tokenizer (tokenizer.model, tokenizer.json, ...)\n"
	"  -p, --prompt TEXT            the prompt\n"
	"      --prompt-file FILE       the whole file is the prompt\n"
	"      --prompts FILE           one prompt per line; JSON lines out. FILE.jsonl:\n"
	"                               {\"prompt\": TEXT} or {\"ids\": [ID, ...]} per line\n"
	"      --json                   JSON lines out for any prompts (not streamed)\n"
	"      --ids                    prompts and continuations as decimal ids\n"
	"  -n, --max-tokens N           generate at most N tokens (default 128)\n"
	"      --greedy                 always the most likely token (the default)\n"
	"      --temperature T          sample at temperature T (0 = greedy)\n"
	"      --top-k K                sample among the K most likely tokens\n"
	"      --top-p P                ... the smallest set of probability >= P\n"
	"      --min-p P                ... tokens at least P times as likely as the best\n"
	"      --repetition-penalty R   divide seen tokens' logits by R (HF rule)\n"
	"      --seed S                 random seed (default 0)\n"
	"      --stop TEXT              stop before TEXT (repeatable; needs a tokenizer)\n"
	"      --eos ID                 stop after id ID (default: the tokenizer's end of\n"
	"                               text; none with --ids)\n"
	"      --ignore-eos             never stop at an end-of-text id\n"
	"      --max-prompt N           refuse prompts longer than N tokens\n"
	"  -o, --output FILE            write here instead of standard output\n"
	"  -b, --batch N                decode up to N prompts together; a finished one's\n"
	"                               place goes to the next prompt (default 1); output\n"
	"                               as without it, in prompt order, not streamed\n"
	"      --timing                 prefill and decode times on standard error\n"
	"      --backend NAME           cpu (default) or, where built, cuda (fp32)\n"
	"                               or cuda-bf16 (bf16 products)\n"
	"  -h, --help                   show this help and exit\n"
	"  -V, --version                show the version and exit\n"
	"\n"
	"Exit status: 0 success, 1 invalid data, 2 usage error, 3 system error.\n"
	"See tn-generate(1).\n";

enum { OPT_PROMPT_FILE = 256, OPT_PROMPTS, OPT_IDS, OPT_GREEDY, OPT_TEMP, OPT_TOPK, OPT_TOPP,
       OPT_MINP, OPT_REP, OPT_SEED, OPT_STOP, OPT_EOS, OPT_NOEOS, OPT_MAXPROMPT, OPT_TIMING,
       OPT_BACKEND, OPT_JSON };

static const struct option long_opts[] = {
	{"model", required_argument, NULL, 'm'},
	{"tokenizer", required_argument, NULL, 't'},
	{"prompt", required_argument, NULL, 'p'},
	{"prompt-file", required_argument, NULL, OPT_PROMPT_FILE},
	{"prompts", required_argument, NULL, OPT_PROMPTS},
	{"ids", no_argument, NULL, OPT_IDS},
	{"max-tokens", required_argument, NULL, 'n'},
	{"greedy", no_argument, NULL, OPT_GREEDY},
	{"temperature", required_argument, NULL, OPT_TEMP},
	{"top-k", required_argument, NULL, OPT_TOPK},
	{"top-p", required_argument, NULL, OPT_TOPP},
	{"min-p", required_argument, NULL, OPT_MINP},
	{"repetition-penalty", required_argument, NULL, OPT_REP},
	{"seed", required_argument, NULL, OPT_SEED},
	{"stop", required_argument, NULL, OPT_STOP},
	{"eos", required_argument, NULL, OPT_EOS},
	{"ignore-eos", no_argument, NULL, OPT_NOEOS},
	{"max-prompt", required_argument, NULL, OPT_MAXPROMPT},
	{"output", required_argument, NULL, 'o'},
	{"batch", required_argument, NULL, 'b'},
	{"timing", no_argument, NULL, OPT_TIMING},
	{"backend", required_argument, NULL, OPT_BACKEND},
	{"json", no_argument, NULL, OPT_JSON},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, 'V'},
	{NULL, 0, NULL, 0},
};

struct args {
	const char *model, *tok, *prompt, *prompt_file, *prompts, *output;
	const struct tn_backend *be;
	int ids, timing, ignore_eos, have_eos, batch, json;
	struct tn_gen_opts g;
	const char *stop[64];
};

static int parse_float(const char *opt, const char *arg, float *out)
{
	char *end;
	double v = strtod(arg, &end);
	if (end == arg || *end)
		return tn_cli_usage_error(prog, "%s: '%s' is not a number", opt, arg);
	*out = (float)v;
	return TN_OK;
}

static int parse_int(const char *opt, const char *arg, int *out, uint64_t max)
{
	uint64_t v;
	int rc = tn_cli_u64(prog, opt, arg, &v, 0);
	if (!rc && v > max)
		return tn_cli_usage_error(prog, "%s: at most %llu", opt, (unsigned long long)max);
	*out = (int)v;
	return rc;
}

static int parse_opt(struct args *a, int c, const char *arg)
{
	uint64_t u;
	int rc;
	switch (c) {
	case 'm': a->model = arg; return TN_OK;
	case 't': a->tok = arg; return TN_OK;
	case 'p': a->prompt = arg; return TN_OK;
	case 'o': a->output = arg; return TN_OK;
	case OPT_PROMPT_FILE: a->prompt_file = arg; return TN_OK;
	case OPT_PROMPTS: a->prompts = arg; return TN_OK;
	case OPT_IDS: a->ids = 1; return TN_OK;
	case OPT_JSON: a->json = 1; return TN_OK;
	case OPT_GREEDY: a->g.sample.temperature = 0; return TN_OK;
	case OPT_NOEOS: a->ignore_eos = 1; return TN_OK;
	case OPT_TIMING: a->timing = 1; return TN_OK;
	case 'n': return parse_int("--max-tokens", arg, &a->g.max_tokens, 1u << 24);
	case 'b':
		if ((rc = parse_int("--batch", arg, &a->batch, 1u << 16)) || a->batch < 1)
			return rc ? rc : tn_cli_usage_error(prog, "--batch: at least 1");
		return TN_OK;
	case OPT_MAXPROMPT: return parse_int("--max-prompt", arg, &a->g.max_prompt, 1u << 30);
	case OPT_TOPK: return parse_int("--top-k", arg, &a->g.sample.top_k, 1u << 30);
	case OPT_EOS:
		a->have_eos = 1;
		return parse_int("--eos", arg, &a->g.eos, 1u << 30);
	case OPT_TEMP: return parse_float("--temperature", arg, &a->g.sample.temperature);
	case OPT_TOPP: return parse_float("--top-p", arg, &a->g.sample.top_p);
	case OPT_MINP: return parse_float("--min-p", arg, &a->g.sample.min_p);
	case OPT_REP: return parse_float("--repetition-penalty", arg, &a->g.sample.rep_penalty);
	case OPT_SEED:
		rc = tn_cli_u64(prog, "--seed", arg, &u, 0);
		a->g.seed = u;
		return rc;
	case OPT_STOP:
		if (!*arg || a->g.n_stop == (int)TN_ARRAY_LEN(a->stop))
			return tn_cli_usage_error(prog, "--stop: empty, or more than 64");
		a->stop[a->g.n_stop++] = arg;
		return TN_OK;
	case OPT_BACKEND:
		if (!(a->be = tn_backend_find(arg)))
			return tn_cli_usage_error(prog, "--backend: %s", tn_errmsg());
		return TN_OK;
	case 'h': fputs(usage_text, stdout); exit(0);
	case 'V': tn_cli_version(prog); exit(0);
	default: return tn_cli_usage_error(prog, "unknown or incomplete option");
	}
}

static int parse_args(struct args *a, int argc, char **argv)
{
	tn_gen_defaults(&a->g);
	a->g.stop = a->stop;
	a->be = &tn_backend_cpu;
	a->batch = 1;
	int c, rc = TN_OK;
	opterr = 0;
	while (!rc && (c = getopt_long(argc, argv, "m:t:p:n:o:b:hV", long_opts, NULL)) != -1)
		rc = parse_opt(a, c, optarg);
	if (rc)
		return rc;
	if (optind < argc)
		return tn_cli_usage_error(prog, "unexpected argument '%s'", argv[optind]);
	if (!a->model)
		return tn_cli_usage_error(prog, "needs -m MODEL");
	if (!a->ids && !a->tok)
		return tn_cli_usage_error(prog, "needs -t TOKENIZER (or --ids)");
	if ((a->prompt != NULL) + (a->prompt_file != NULL) + (a->prompts != NULL) > 1)
		return tn_cli_usage_error(prog, "give one of -p, --prompt-file, --prompts");
	if (a->ids && (a->prompt || a->prompt_file))
		return tn_cli_usage_error(prog, "--ids reads prompts from --prompts FILE or stdin");
	if (a->g.n_stop && !a->tok)
		return tn_cli_usage_error(prog, "--stop needs a tokenizer");
	return tn_sample_check(&a->g.sample) ? tn_cli_report(prog, TN_EUSAGE) : TN_OK;
}

struct run {
	const struct args *a;
	struct tn_model *m;
	struct tn_tokenizer *tok;
	struct tn_tok_state *ts;
	struct tn_out out;
	int stream;  /* text as it is made (one prompt, no JSON) */
	size_t made; /* ids printed for the current prompt */
	/* --batch: the prompts, kept until all are read */
	struct tn_gen_prompt *bp;
	char **btext;
	size_t *blen, nb, capb;
};

static int emit_text(void *ctx, int32_t id, const char *text, size_t len)
{
	struct run *r = ctx;
	(void)id;
	int rc = tn_out_write(&r->out, text, len);
	return rc ? rc : tn_out_flush(&r->out);
}

static int emit_id(void *ctx, int32_t id, const char *text, size_t len)
{
	struct run *r = ctx;
	char buf[16];
	(void)text;
	(void)len;
	int n = snprintf(buf, sizeof(buf), "%s%d", r->made++ ? " " : "", id);
	int rc = tn_out_write(&r->out, buf, (size_t)n);
	return rc ? rc : tn_out_flush(&r->out);
}

/* A JSON string of s, invalid UTF-8 (a continuation cut mid-character)
 * replaced by U+FFFD, as JSON must be valid UTF-8. */
static json_t *json_text(const char *s, size_t len)
{
	json_t *j = json_stringn(s, len);
	char *fixed = j ? NULL : tn_malloc(3 * len + 1);
	size_t n = 0;
	for (size_t at = 0; fixed && at < len;) {
		utf8proc_int32_t cp;
		utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + at,
						      (utf8proc_ssize_t)(len - at), &cp);
		if (k < 1) {
			cp = 0xFFFD;
			k = 1;
		}
		n += (size_t)utf8proc_encode_char(cp, (utf8proc_uint8_t *)fixed + n);
		at += (size_t)k;
	}
	if (fixed)
		j = json_stringn(fixed, n);
	free(fixed);
	return j;
}

static int json_line(struct run *r, const char *prompt, size_t plen, size_t np,
		     const struct tn_gen_result *g)
{
	json_t *o = json_object(), *ids = json_array();
	for (size_t i = 0; o && ids && i < g->n; i++)
		json_array_append_new(ids, json_integer(g->ids[i]));
	json_object_set_new(o, "prompt_tokens", json_integer((json_int_t)np));
	if (prompt)
		json_object_set_new(o, "prompt", json_text(prompt, plen));
	if (g->text)
		json_object_set_new(o, "text", json_text(g->text, g->len));
	json_object_set_new(o, "ids", ids);
	json_object_set_new(o, "reason", json_string(g->reason));
	char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
	json_decref(o);
	if (!s)
		return tn_fail(TN_ENOMEM, "out of memory");
	int rc = tn_out_write(&r->out, s, strlen(s));
	free(s);
	return rc ? rc : tn_out_write(&r->out, "\n", 1);
}

/* What one prompt's generation leaves on the output after the stream. */
static int finish(struct run *r, const char *text, size_t len, size_t n,
		  const struct tn_gen_result *g)
{
	int rc = TN_OK;
	if (r->stream && r->a->batch > 1 && !r->a->ids) /* not streamed: all of it now */
		rc = tn_out_write(&r->out, g->text, g->len);
	for (size_t i = 0; r->stream && r->a->batch > 1 && r->a->ids && !rc && i < g->n; i++)
		rc = emit_id(r, g->ids[i], NULL, 0);
	if (rc)
		return rc;
	if (r->stream)
		rc = r->a->ids ? tn_out_write(&r->out, "\n", 1) : TN_OK;
	else
		rc = json_line(r, text, len, n, g);
	if (!rc && r->a->timing)
		fprintf(stderr, "%s: prompt %zu tokens, prefill %.3f s; %zu tokens, %.3f ms/token\n",
			prog, n, g->prefill_s, g->n, g->n ? 1e3 * g->decode_s / (double)g->n : 0.0);
	return rc;
}

/* Keep a prompt for the batch (text and ids copied). */
static int keep(struct run *r, const char *text, size_t len, const int32_t *ids, size_t n)
{
	if (r->nb == r->capb) {
		size_t cap = r->capb ? 2 * r->capb : 64;
		void *p = tn_realloc(r->bp, cap * sizeof(*r->bp)), *t, *l;
		if (p)
			r->bp = p;
		t = p ? tn_realloc(r->btext, cap * sizeof(*r->btext)) : NULL;
		if (t)
			r->btext = t;
		l = t ? tn_realloc(r->blen, cap * sizeof(*r->blen)) : NULL;
		if (!l)
			return TN_ENOMEM;
		r->blen = l;
		r->capb = cap;
	}
	int32_t *v = tn_malloc((n ? n : 1) * sizeof(int32_t));
	char *t = text ? tn_malloc(len + 1) : NULL;
	if (!v || (text && !t)) {
		free(v);
		free(t);
		return TN_ENOMEM;
	}
	memcpy(v, ids, n * sizeof(int32_t));
	if (t)
		memcpy(t, text, len);
	r->bp[r->nb] = (struct tn_gen_prompt){v, n};
	r->btext[r->nb] = t;
	r->blen[r->nb++] = len;
	return TN_OK;
}

static int batch_done(void *ctx, size_t i, struct tn_gen_result *g)
{
	struct run *r = ctx;
	r->made = 0;
	return finish(r, r->btext[i], r->blen[i], r->bp[i].n, g);
}

static int one(struct run *r, const char *text, size_t len, const int32_t *ids, size_t n)
{
	if (r->a->batch > 1)
		return keep(r, text, len, ids, n);
	struct tn_gen_result g;
	r->made = 0;
	int rc = tn_generate(r->m, r->tok, &r->a->g, ids, n,
			     r->stream ? (r->a->ids ? emit_id : emit_text) : NULL, r, &g);
	if (rc)
		return rc;
	rc = finish(r, text, len, n, &g);
	tn_gen_result_free(&g);
	return rc;
}

static int text_prompt(struct run *r, const char *text, size_t len)
{
	struct tn_idvec v = {0};
	int rc = tn_tokenizer_encode(r->ts, (const uint8_t *)text, len, &v);
	if (!rc) /* ids are below 2^31: the same bits as int32 */
		rc = one(r, text, len, (const int32_t *)v.v, v.n);
	tn_idvec_free(&v);
	return rc;
}

static int is_jsonl(const char *path)
{
	size_t n = path ? strlen(path) : 0;
	return n > 6 && !strcmp(path + n - 6, ".jsonl");
}

/* A line of a .jsonl prompt file: {"prompt": TEXT} or {"ids": [ID, ...]}. */
static int json_prompt(struct run *r, const char *path, size_t line, const char *s, size_t len)
{
	json_error_t err;
	json_t *o = json_loadb(s, len, 0, &err), *p = json_object_get(o, "prompt"),
	       *ids = json_object_get(o, "ids");
	size_t n = json_array_size(ids), i = 0;
	int32_t *v = json_is_array(ids) ? tn_malloc((n ? n : 1) * sizeof(int32_t)) : NULL;
	int rc = TN_OK;
	if (!json_is_string(p) && !json_is_array(ids))
		rc = tn_fail(TN_EDATA, "%s:%zu: not a JSON object with \"prompt\" (text) or "
			     "\"ids\" (an array of ids)", path, line);
	else if (json_is_string(p) && !r->ts)
		rc = tn_fail(TN_EUSAGE, "%s:%zu: a text prompt needs -t TOKENIZER", path, line);
	else if (json_is_string(p))
		rc = text_prompt(r, json_string_value(p), json_string_length(p));
	else if (!v)
		rc = TN_ENOMEM;
	for (; !rc && v && i < n; i++) {
		json_t *x = json_array_get(ids, i);
		if (!json_is_integer(x) || json_integer_value(x) < 0 ||
		    json_integer_value(x) >= r->m->cfg.vocab_size)
			rc = tn_fail(TN_EDATA, "%s:%zu: ids[%zu] is not an id of the model's "
				     "vocabulary of %d", path, line, i, r->m->cfg.vocab_size);
		else
			v[i] = (int32_t)json_integer_value(x);
	}
	if (!rc && v)
		rc = one(r, NULL, 0, v, n);
	free(v);
	json_decref(o);
	return rc;
}

/* Text prompts: one per line of the file, or its whole content. */
static int text_prompts(struct run *r, const char *path, int per_line)
{
	uint8_t *data;
	size_t len;
	int rc = tn_read_file(path, &data, &len);
	for (size_t at = 0, line = 1; !rc && at < len; line++) {
		const uint8_t *nl = per_line ? memchr(data + at, '\n', len - at) : NULL;
		size_t end = nl ? (size_t)(nl - data) : len;
		if (per_line && is_jsonl(path))
			rc = end > at ? json_prompt(r, path, line, (const char *)data + at, end - at)
				      : TN_OK;
		else
			rc = text_prompt(r, (const char *)data + at, end - at);
		at = end + 1;
	}
	free(data);
	return rc;
}

static int id_prompts(struct run *r, const char *path)
{
	struct tn_in in;
	int rc = tn_in_open(&in, path);
	if (rc)
		return rc;
	struct tn_ids_reader rd;
	tn_ids_reader_init(&rd, &in, (uint32_t)r->m->cfg.vocab_size);
	size_t cap = 4096, n = 0, got;
	int32_t *ids = tn_malloc(cap * sizeof(int32_t));
	int doc_end = 0, eos = 0;
	rc = ids ? TN_OK : TN_ENOMEM;
	while (!rc && !eos) {
		if (n == cap) {
			int32_t *p = tn_realloc(ids, 2 * cap * sizeof(int32_t));
			if (!p) {
				rc = TN_ENOMEM;
				break;
			}
			ids = p;
			cap *= 2;
		}
		rc = tn_ids_read(&rd, (uint32_t *)ids + n, cap - n, &got, &doc_end, &eos);
		n += got;
		if (!rc && (doc_end || (eos && n))) {
			rc = one(r, NULL, 0, ids, n);
			n = 0;
		}
	}
	free(ids);
	tn_in_close(&in);
	return rc;
}

static int load(struct run *r)
{
	const struct args *a = r->a;
	char *dir = NULL;
	int rc = tn_ckpt_resolve(a->model, &dir);
	if (!rc)
		rc = tn_model_load(&r->m, dir, a->be);
	free(dir);
	if (!rc && a->tok && !(rc = tn_tokenizer_load(&r->tok, a->tok, TN_TOK_AUTO)))
		rc = tn_tok_state_new(&r->ts, r->tok);
	return rc;
}

static int run(struct args *a)
{
	struct run r = {.a = a};
	int rc = load(&r);
	if (!rc && !a->have_eos)
		a->g.eos = r.tok && r.tok->eot_id != TN_BPE_NONE ? (int32_t)r.tok->eot_id : -1;
	if (a->ignore_eos)
		a->g.eos = -1;
	r.stream = !a->prompts && !a->json;
	if (!rc)
		rc = tn_out_open(&r.out, a->output ? a->output : "-");
	if (!rc && a->ids && !is_jsonl(a->prompts))
		rc = id_prompts(&r, a->prompts ? a->prompts : "-");
	else if (!rc && a->prompt)
		rc = text_prompt(&r, a->prompt, strlen(a->prompt));
	else if (!rc)
		rc = text_prompts(&r, a->prompts ? a->prompts : a->prompt_file ? a->prompt_file : "-",
				  a->prompts != NULL || (a->json && !a->prompt_file));
	if (!rc && a->batch > 1)
		rc = tn_generate_batch(r.m, r.tok, &a->g, a->batch, r.bp, r.nb, batch_done, &r);
	if (!rc && r.stream && !a->ids)
		rc = tn_out_write(&r.out, "\n", 1);
	if (!rc)
		rc = tn_out_commit(&r.out);
	tn_out_abort(&r.out);
	for (size_t i = 0; i < r.nb; i++) {
		free((void *)r.bp[i].ids);
		free(r.btext[i]);
	}
	free(r.bp);
	free(r.btext);
	free(r.blen);
	tn_tok_state_free(r.ts);
	tn_tokenizer_free(r.tok);
	tn_model_free(r.m);
	return rc;
}

int main(int argc, char **argv)
{
	tn_cpu_passive_wait(argv);
	struct args a = {0};
	int rc = parse_args(&a, argc, argv);
	if (rc)
		return rc;
	return (rc = run(&a)) ? tn_cli_report(prog, rc) : 0;
}
