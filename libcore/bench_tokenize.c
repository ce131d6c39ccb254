/* bench_tokenize.c - tn-bench tokenize: encoding speed (MB/s of text and
 * tokens/s) of each tokenizer on one thread and on all, over the documents
 * of the given text held in memory, plus one long document on one thread
 * (SentencePiece-style encoders must stay linear there). Input reading is
 * not timed; output is not written, only counted. */
#include "bench.h"
#include "cli.h"
#include "input.h"
#include "tokenize.h"
#include "tokenizer.h"
#include "util.h"

#include <getopt.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *prog = "tn-bench tokenize";

static const char usage_text[] =
	"Usage: tn-bench tokenize [OPTION]... [FILE]...\n"
	"Encoding speed of tn-tokenize's tokenizers on the documents of FILEs\n"
	"(corpus files: documents separated by <|endoftext|> lines; default: the\n"
	"shared validation texts).\n"
	"\n"
	"  -t, --tokenizer PATH   a tokenizer to measure (repeatable; default: GPT-2,\n"
	"                         cl100k and spm8k from the shared data)\n"
	"  -j, --threads N        the many-thread run uses N threads (default: all)\n"
	"      --long-doc BYTES   also encode the first BYTES of text as one document\n"
	"                         on one thread (default 8M; 0: skip)\n"
	"      --json             one JSON object per result\n"
	"  -h, --help             show this help and exit\n";

struct docs {
	uint8_t *text;
	size_t len, cap, n, dcap;
	size_t *off, *dlen;
};

static int read_docs(char **paths, size_t n, struct docs *d)
{
	struct tn_input_opts io = { TN_CUT_EOT, NULL };
	struct tn_input *in;
	int rc = tn_input_open(&in, paths, n, &io);
	int eof = 0;
	while (!rc) {
		const uint8_t *p;
		size_t len;
		if ((rc = tn_input_next(in, &p, &len, &eof)) || eof)
			break;
		if (d->len + len > d->cap || d->n == d->dcap) {
			d->cap = (d->len + len) * 2;
			d->dcap = d->dcap ? 2 * d->dcap : 1024;
			uint8_t *t = tn_realloc(d->text, d->cap);
			size_t *o = t ? tn_realloc(d->off, d->dcap * sizeof *o) : NULL;
			size_t *l = o ? tn_realloc(d->dlen, d->dcap * sizeof *l) : NULL;
			if (t)
				d->text = t;
			if (o)
				d->off = o;
			if (!l) {
				rc = TN_ENOMEM;
				break;
			}
			d->dlen = l;
		}
		if (len > 0)
			memcpy(d->text + d->len, p, len);
		d->off[d->n] = d->len;
		d->dlen[d->n++] = len;
		d->len += len;
	}
	tn_input_free(in);
	return rc;
}

static void report(int json, const struct tn_tokenizer *t, const char *what, int threads,
		   uint64_t bytes, uint64_t tokens, double s)
{
	const char *name = strrchr(t->path, '/') ? strrchr(t->path, '/') + 1 : t->path;
	if (json)
		printf("{\"bench\":\"tokenize\",\"tokenizer\":\"%s\",\"kind\":\"%s\",\"run\":\"%s\","
		       "\"threads\":%d,\"bytes\":%llu,\"tokens\":%llu,\"seconds\":%.4f,"
		       "\"mb_per_s\":%.2f,\"mtokens_per_s\":%.3f}\n",
		       name, tn_tok_kind_name(t->kind), what, threads, (unsigned long long)bytes,
		       (unsigned long long)tokens, s, (double)bytes / s / 1e6,
		       (double)tokens / s / 1e6);
	else
		printf("%-22s %-9s %3d thr %9.1f MB %11llu tok %8.3f s %8.1f MB/s %7.2f Mtok/s\n",
		       name, what, threads, (double)bytes / 1e6, (unsigned long long)tokens, s,
		       (double)bytes / s / 1e6, (double)tokens / s / 1e6);
	fflush(stdout);
}

static int bench_one(const char *path, const struct docs *d, int threads, uint64_t long_doc,
		     int json)
{
	struct tn_tokenizer *t;
	int rc = tn_tokenizer_load(&t, path, TN_TOK_AUTO);
	if (rc)
		return rc;
	int runs[2] = { 1, threads };
	for (int k = 0; k < 2 && !rc; k++) {
		uint64_t tokens = 0;
		double t0 = tn_now();
		rc = tn_tokenize_count(t, d->text, d->off, d->dlen, d->n, runs[k], &tokens);
		if (!rc)
			report(json, t, "docs", runs[k], d->len, tokens, tn_now() - t0);
	}
	size_t n = (size_t)TN_MIN(long_doc, (uint64_t)d->len);
	if (!rc && n > 0) {
		size_t off = 0;
		uint64_t tokens = 0;
		double t0 = tn_now();
		rc = tn_tokenize_count(t, d->text, &off, &n, 1, 1, &tokens);
		if (!rc)
			report(json, t, "long-doc", 1, n, tokens, tn_now() - t0);
	}
	tn_tokenizer_free(t);
	return rc;
}

int tn_bench_tokenize(int argc, char **argv)
{
	static const struct option opts[] = {
		{"tokenizer", required_argument, NULL, 't'},
		{"threads", required_argument, NULL, 'j'},
		{"long-doc", required_argument, NULL, 'L'},
		{"json", no_argument, NULL, 'J'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *toks[16];
	size_t n_toks = 0;
	uint64_t threads = (uint64_t)omp_get_num_procs(), long_doc = 8u << 20;
	int json = 0, c, rc = TN_OK;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "t:j:h", opts, NULL)) != -1) {
		if (c == 't' && n_toks < TN_ARRAY_LEN(toks))
			toks[n_toks++] = optarg;
		else if (c == 'j')
			rc = tn_cli_u64(prog, "--threads", optarg, &threads, 0);
		else if (c == 'L')
			rc = tn_cli_u64(prog, "--long-doc", optarg, &long_doc, 1);
		else if (c == 'J')
			json = 1;
		else if (c == 'h') {
			fputs(usage_text, stdout);
			return 0;
		} else
			return tn_cli_usage_error(prog, "unknown or incomplete option '%s'", argv[optind - 1]);
		if (rc)
			return rc;
	}
	if (threads == 0 || threads > 4096)
		return tn_cli_usage_error(prog, "--threads must be 1..4096");
	const char *env = getenv("TN_SHARED");
	char dflt[5][512];
	const char *base = env ? env : "../shared";
	static const char *const rel[] = { "tokenizers/gpt2", "tokenizers/cl100k_base.tiktoken",
					   "tokenizers/spm8k/tokenizer.model",
					   "corpus/val_en.txt", "corpus/val_code.txt" };
	for (int i = 0; i < 5; i++)
		snprintf(dflt[i], sizeof dflt[i], "%s/data/%s", base, rel[i]);
	for (int i = 0; n_toks == 0 && i < 3; i++)
		toks[i] = dflt[i];
	n_toks = n_toks ? n_toks : 3;
	char *files[2] = { dflt[3], dflt[4] };
	struct docs d = { 0 };
	rc = optind < argc ? read_docs(argv + optind, (size_t)(argc - optind), &d)
			   : read_docs(files, 2, &d);
	for (size_t i = 0; i < n_toks && !rc; i++)
		rc = bench_one(toks[i], &d, (int)threads, long_doc, json);
	free(d.text);
	free(d.off);
	free(d.dlen);
	return rc ? tn_cli_report(prog, rc) : 0;
}
