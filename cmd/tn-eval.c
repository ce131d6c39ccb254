/* tn-eval - evaluate a model (see tn-eval(1)): `ppl`, the perplexity of
 * text, token streams, decimal-id lines or shard directories, and `mc`,
 * multiple-choice and cloze tasks (libcore/eval_mc.c).
 * Options and plumbing only; the scoring is libcore/eval.c. */
#include "checkpoint.h"
#include "backend.h"
#include "cli.h"
#include "eval.h"
#include "eval_mc.h"
#include "loader.h"
#include "model.h"
#include "source.h"
#include "tokenizer.h"
#include "util.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *prog = "tn-eval";

static const char usage_text[] =
	"Usage: tn-eval ppl -m MODEL [OPTION]... [FILE|DIR|-]...\n"
	"       tn-eval mc -m MODEL -t TOK --task FILE.jsonl [OPTION]...  (tn-eval mc --help)\n"
	"Score data with a model: tokens scored, mean negative log-likelihood,\n"
	"perplexity, bits per token and, for text, bits per byte.\n"
	"\n"
	"Commands:\n"
	"  ppl                       perplexity (the options below)\n"
	"  mc                        multiple-choice and cloze tasks in lm-evaluation-harness layouts\n"
	"\n"
	"Inputs: token streams (tn-tokens(5)), or with --ids decimal ids (one sequence per\n"
	"line), each sequence scored at every position after its first; with -t, text\n"
	"files, each document starting after the tokenizer's end-of-text id so that every\n"
	"token is scored; a shard directory is scored in windows of --ctx tokens. No input\n"
	"or '-' reads standard input.\n"
	"\n"
	"Options:\n"
	"  -m, --model DIR           checkpoint directory (config.json + model.safetensors),\n"
	"                            or a tn-train output directory (its latest checkpoint)\n"
	"      --ids                 inputs are decimal ids, one sequence per line\n"
	"  -t, --tokenizer TOK       inputs are text, encoded with TOK (see tn-tokenize(1))\n"
	"      --split-docs          with -t: documents are separated by <|endoftext|> lines\n"
	"      --ctx N               windows of at most N tokens of context (default: whole\n"
	"                            sequences; 512 for shard directories)\n"
	"      --stride S            start a window every S tokens (default: --ctx)\n"
	"      --split train|val     which split of a shard directory (default val)\n"
	"      --batch N             windows per forward pass in shard directories (default 8)\n"
	"      --json                one JSON line: tokens, nll, ppl, bits (and bytes, bpb)\n"
	"      --backend NAME        cpu (default) or, where built, cuda (fp32)\n"
	"                            or cuda-bf16 (bf16 products, fp32 master weights)\n"
	"  -h, --help                show this help and exit\n"
	"  -V, --version             show the version and exit\n"
	"\n"
	"Exit status: 0 success, 1 invalid data, 2 usage error, 3 system error.\n"
	"See tn-eval(1) and tn-checkpoint(5).\n";

enum { OPT_IDS = 256, OPT_CTX, OPT_STRIDE, OPT_SPLIT, OPT_BATCH, OPT_JSON, OPT_BACKEND,
       OPT_SPLIT_DOCS };

static const struct option long_opts[] = {
	{"model", required_argument, NULL, 'm'},
	{"ids", no_argument, NULL, OPT_IDS},
	{"tokenizer", required_argument, NULL, 't'},
	{"split-docs", no_argument, NULL, OPT_SPLIT_DOCS},
	{"ctx", required_argument, NULL, OPT_CTX},
	{"stride", required_argument, NULL, OPT_STRIDE},
	{"split", required_argument, NULL, OPT_SPLIT},
	{"batch", required_argument, NULL, OPT_BATCH},
	{"json", no_argument, NULL, OPT_JSON},
	{"backend", required_argument, NULL, OPT_BACKEND},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, 'V'},
	{NULL, 0, NULL, 0},
};

struct args {
	const char *model, *split, *tokenizer;
	const struct tn_backend *be;
	int ids, json, split_docs;
	uint64_t ctx, stride, batch;
	char **paths;
	int n_paths;
};

static int parse_args(struct args *a, int argc, char **argv)
{
	a->split = "val";
	a->batch = 8;
	a->be = &tn_backend_cpu;
	if (argc < 2 || argv[1][0] == '-') {
		if (argc >= 2 && !strcmp(argv[1], "--help")) {
			fputs(usage_text, stdout);
			exit(0);
		}
		if (argc >= 2 && !strcmp(argv[1], "--version")) {
			tn_cli_version(prog);
			exit(0);
		}
		return tn_cli_usage_error(prog, "missing command (ppl or mc)");
	}
	if (strcmp(argv[1], "ppl"))
		return tn_cli_usage_error(prog, "unknown command '%s' (ppl or mc)", argv[1]);
	int c, rc = TN_OK;
	opterr = 0;
	optind = 2;
	while (!rc && (c = getopt_long(argc, argv, "m:t:hV", long_opts, NULL)) != -1) {
		switch (c) {
		case 'm': a->model = optarg; break;
		case 't': a->tokenizer = optarg; break;
		case OPT_SPLIT_DOCS: a->split_docs = 1; break;
		case OPT_IDS: a->ids = 1; break;
		case OPT_JSON: a->json = 1; break;
		case OPT_SPLIT: a->split = optarg; break;
		case OPT_BACKEND:
			if (!(a->be = tn_backend_find(optarg)))
				return tn_cli_usage_error(prog, "--backend: %s", tn_errmsg());
			break;
		case OPT_CTX: rc = tn_cli_u64(prog, "--ctx", optarg, &a->ctx, 0); break;
		case OPT_STRIDE: rc = tn_cli_u64(prog, "--stride", optarg, &a->stride, 0); break;
		case OPT_BATCH: rc = tn_cli_u64(prog, "--batch", optarg, &a->batch, 0); break;
		case 'h': fputs(usage_text, stdout); exit(0);
		case 'V': tn_cli_version(prog); exit(0);
		default:
			return tn_cli_usage_error(prog, "unknown or incomplete option '%s'",
						  argv[optind - 1]);
		}
	}
	if (rc)
		return rc;
	if (!a->model)
		return tn_cli_usage_error(prog, "ppl needs -m MODEL");
	if (a->ctx > (1u << 24) || a->stride > a->ctx || !a->batch || a->batch > 4096)
		return tn_cli_usage_error(prog, "--ctx at most 16M, --stride at most --ctx, "
					  "--batch in 1..4096");
	if (strcmp(a->split, "train") && strcmp(a->split, "val"))
		return tn_cli_usage_error(prog, "--split must be train or val");
	if (a->tokenizer && a->ids)
		return tn_cli_usage_error(prog, "give -t (text) or --ids, not both");
	if (a->split_docs && !a->tokenizer)
		return tn_cli_usage_error(prog, "--split-docs goes with -t");
	a->paths = argv + optind;
	a->n_paths = argc - optind;
	return TN_OK;
}

static int is_dir(const char *p)
{
	struct stat sb;
	return strcmp(p, "-") && stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int score_dir(struct tn_model *m, const struct args *a, const char *dir,
		     struct tn_ppl *acc)
{
	uint32_t n = a->ctx ? (uint32_t)a->ctx : 512;
	struct tn_loader_opts lo = {dir, a->split, n, 1, 0, 0, 1};
	struct tn_loader *l;
	int rc = tn_loader_open(&l, &lo);
	if (rc)
		return rc;
	if (tn_loader_vocab_size(l) > (uint32_t)m->cfg.vocab_size)
		rc = tn_fail(TN_EDATA, "%s: the data's vocabulary of %u is larger than the model's %d",
			     dir, tn_loader_vocab_size(l), m->cfg.vocab_size);
	if (!rc)
		rc = tn_eval_loader(m, l, (int)a->batch, n, 0, acc);
	tn_loader_free(l);
	return rc;
}

/* Every document of the files, each scored as one sequence. */
static int score_files(struct tn_model *m, const struct args *a, char **paths, size_t n,
		       struct tn_ppl *acc)
{
	struct tn_source_opts so = {a->ids ? TN_SOURCE_IDS : TN_SOURCE_STREAM,
				    (uint32_t)m->cfg.vocab_size, -1};
	struct tn_source *s;
	int rc = tn_source_open(&s, paths, n, &so);
	if (rc)
		return rc;
	if (tn_source_info(s)->vocab_size > (uint32_t)m->cfg.vocab_size)
		rc = tn_fail(TN_EDATA, "%s: the data's vocabulary of %u is larger than the model's %d",
			     paths[0], tn_source_info(s)->vocab_size, m->cfg.vocab_size);
	size_t cap = 1 << 16, len = 0, got;
	uint32_t *doc = tn_malloc(cap * sizeof(uint32_t));
	int doc_end, eos = 0;
	if (!rc && !doc)
		rc = TN_ENOMEM;
	while (!rc && !eos) {
		if (len == cap) {
			uint32_t *d = tn_realloc(doc, 2 * cap * sizeof(uint32_t));
			if (!d) {
				rc = TN_ENOMEM;
				break;
			}
			doc = d;
			cap *= 2;
		}
		rc = tn_source_read(s, doc + len, cap - len, &got, &doc_end, &eos);
		len += got;
		if (!rc && (doc_end || eos)) {
			rc = tn_eval_sequence(m, doc, len, (int)a->ctx, (int)a->stride, acc);
			len = 0;
		}
	}
	free(doc);
	tn_source_free(s);
	return rc;
}

static int run(const struct args *a, struct tn_ppl *acc)
{
	char *dir = NULL, *stdin_path[] = {"-"};
	int rc = tn_ckpt_resolve(a->model, &dir);
	struct tn_model *m = NULL;
	if (!rc)
		rc = tn_model_load(&m, dir, a->be);
	free(dir);
	char **files = tn_calloc((size_t)a->n_paths + 1, sizeof(char *));
	size_t nf = 0;
	if (!rc && !files)
		rc = TN_ENOMEM;
	for (int i = 0; !rc && i < a->n_paths; i++) {
		if (is_dir(a->paths[i]))
			rc = score_dir(m, a, a->paths[i], acc);
		else
			files[nf++] = a->paths[i];
	}
	char **inputs = nf ? files : stdin_path;
	size_t n_inputs = nf ? nf : 1;
	if (!rc && (nf || !a->n_paths) && a->tokenizer) {
		struct tn_tokenizer *t;
		rc = tn_tokenizer_load(&t, a->tokenizer, TN_TOK_AUTO);
		if (!rc) {
			rc = tn_eval_text(m, t, inputs, n_inputs, a->split_docs ? TN_CUT_EOT : TN_CUT_FILE,
					  (int)a->ctx, (int)a->stride, acc);
			tn_tokenizer_free(t);
		}
	} else if (!rc && (nf || !a->n_paths)) {
		rc = score_files(m, a, inputs, n_inputs, acc);
	}
	free(files);
	tn_model_free(m);
	return rc;
}

int main(int argc, char **argv)
{
	tn_cpu_passive_wait(argv);
	if (argc >= 2 && !strcmp(argv[1], "mc"))
		return tn_eval_mc_main(argc - 1, argv + 1);
	struct args a = {0};
	int rc = parse_args(&a, argc, argv);
	if (rc)
		return rc;
	struct tn_ppl acc = {0};
	if ((rc = run(&a, &acc)))
		return tn_cli_report(prog, rc);
	if (!acc.tokens) {
		fprintf(stderr, "%s: no position to score (every sequence is shorter than 2)\n", prog);
		return TN_EDATA;
	}
	char text_part[96] = "", json_part[96] = "";
	if (acc.bytes) {
		snprintf(text_part, sizeof text_part, "  bytes %llu  bits/byte %.4f",
			 (unsigned long long)acc.bytes, tn_ppl_bits_per_byte(&acc));
		snprintf(json_part, sizeof json_part, ",\"bytes\":%llu,\"bpb\":%.9g",
			 (unsigned long long)acc.bytes, tn_ppl_bits_per_byte(&acc));
	}
	if (a.json)
		printf("{\"tokens\":%llu,\"nll\":%.9g,\"ppl\":%.9g,\"bits\":%.9g%s}\n",
		       (unsigned long long)acc.tokens, tn_ppl_nll(&acc), tn_ppl_ppl(&acc),
		       tn_ppl_bits(&acc), json_part);
	else
		printf("tokens %llu  nll %.6f  ppl %.4f  bits/token %.4f%s\n",
		       (unsigned long long)acc.tokens, tn_ppl_nll(&acc), tn_ppl_ppl(&acc),
		       tn_ppl_bits(&acc), text_part);
	return 0;
}
