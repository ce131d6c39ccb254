/* tn-tokenize - text to token streams and back, tokenizer facts, and BPE
 * training (see tn-tokenize(1)). Option parsing and plumbing only; the work
 * is in libcore (tokenizer, input, tokenize, bpe_train). */
#include "bpe_train.h"
#include "cli.h"
#include "input.h"
#include "io.h"
#include "stream.h"
#include "tokenize.h"
#include "tokenizer.h"
#include "util.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static const char *prog = "tn-tokenize";

static const char usage_text[] =
	"Usage: tn-tokenize COMMAND -t TOKENIZER [OPTION]... [FILE|DIR]...\n"
	"Encode text into token streams (man 5 tn-tokens), decode them, describe a\n"
	"tokenizer, or train a byte-level BPE tokenizer.\n"
	"\n"
	"Commands:\n"
	"  encode -t TOK [INPUT]...   text to a token stream on stdout (or --ids)\n"
	"  decode -t TOK [FILE]...    token streams (or --ids lines) back to text\n"
	"  info -t TOK                kind, vocabulary size, special tokens, fingerprint\n"
	"  train -o FILE --vocab-size N [--special TOKEN]... INPUT...\n"
	"                             train a byte-level BPE; write a tokenizer.json\n"
	"\n"
	"Inputs are files, directories (recursive, sorted), archives (.tar, .tar.gz,\n"
	".tar.xz, .tar.zst, .tar.bz2, .zip), compressed files (.gz, .xz, .zst, .bz2)\n"
	"and - for stdin (the default). Each file or archive member is a document.\n"
	"\n"
	"Options:\n"
	"  -t, --tokenizer PATH      encoder.json+vocab.bpe directory, *.tiktoken,\n"
	"                            tokenizer.json, or SentencePiece .model\n"
	"      --kind KIND           gpt2, tiktoken, hf or spm (default: detected)\n"
	"  -o, --output FILE         write here instead of stdout\n"
	"      --ids                 decimal ids, one document per line, not a stream\n"
	"      --lines               each input line is a document (without its LF)\n"
	"      --split-docs          documents are separated by a line holding exactly\n"
	"                            <|endoftext|> (decode: write that line between them)\n"
	"      --jsonl-field NAME    inputs are JSON lines; each record's NAME is a document\n"
	"      --eot                 put the end-of-text token between documents\n"
	"                            (decode: drop it at the end of a document)\n"
	"  -j, --threads N           encoding/training threads (default: all processors)\n"
	"      --vocab-size N        train: the vocabulary size to reach\n"
	"      --special TOKEN       train: add a special token (repeatable)\n"
	"      --min-frequency N     train: merge only pairs seen at least N times (default 2)\n"
	"  -q, --quiet               no progress line\n"
	"  -h, --help                show this help and exit\n"
	"  -V, --version             show the version and exit\n"
	"\n"
	"Exit status: 0 success, 1 invalid or corrupt data, 2 usage error, 3 system error.\n"
	"See tn-tokenize(1) and tn-tokens(5).\n";

enum {
	OPT_KIND = 256, OPT_IDS, OPT_LINES, OPT_SPLIT_DOCS, OPT_JSONL, OPT_EOT,
	OPT_VOCAB, OPT_SPECIAL, OPT_MIN_FREQ,
};

static const struct option long_opts[] = {
	{"tokenizer", required_argument, NULL, 't'},
	{"kind", required_argument, NULL, OPT_KIND},
	{"output", required_argument, NULL, 'o'},
	{"ids", no_argument, NULL, OPT_IDS},
	{"lines", no_argument, NULL, OPT_LINES},
	{"split-docs", no_argument, NULL, OPT_SPLIT_DOCS},
	{"jsonl-field", required_argument, NULL, OPT_JSONL},
	{"eot", no_argument, NULL, OPT_EOT},
	{"threads", required_argument, NULL, 'j'},
	{"vocab-size", required_argument, NULL, OPT_VOCAB},
	{"special", required_argument, NULL, OPT_SPECIAL},
	{"min-frequency", required_argument, NULL, OPT_MIN_FREQ},
	{"quiet", no_argument, NULL, 'q'},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, 'V'},
	{NULL, 0, NULL, 0},
};

struct args {
	const char *command, *tokenizer, *output, *jsonl;
	int kind, ids, lines, split_docs, eot, quiet;
	uint64_t threads, vocab_size, min_freq;
	const char **specials;
	size_t n_specials;
	char **paths;
	size_t n_paths;
};

static int add_special(struct args *a, const char *s)
{
	const char **v = realloc(a->specials, (a->n_specials + 1) * sizeof *v);
	if (!v)
		return tn_cli_report(prog, tn_fail(TN_ENOMEM, "out of memory"));
	v[a->n_specials++] = s;
	a->specials = v;
	return TN_OK;
}

static int parse_option(struct args *a, int c, const char *arg)
{
	switch (c) {
	case 't': a->tokenizer = arg; return TN_OK;
	case 'o': a->output = arg; return TN_OK;
	case OPT_IDS: a->ids = 1; return TN_OK;
	case OPT_LINES: a->lines = 1; return TN_OK;
	case OPT_SPLIT_DOCS: a->split_docs = 1; return TN_OK;
	case OPT_JSONL: a->jsonl = arg; return TN_OK;
	case OPT_EOT: a->eot = 1; return TN_OK;
	case 'q': a->quiet = 1; return TN_OK;
	case OPT_SPECIAL: return add_special(a, arg);
	case 'j': return tn_cli_u64(prog, "--threads", arg, &a->threads, 0);
	case OPT_VOCAB: return tn_cli_u64(prog, "--vocab-size", arg, &a->vocab_size, 0);
	case OPT_MIN_FREQ: return tn_cli_u64(prog, "--min-frequency", arg, &a->min_freq, 0);
	case OPT_KIND:
		if ((a->kind = tn_tok_kind_parse(arg)) < 0)
			return tn_cli_usage_error(prog, "--kind must be gpt2, tiktoken, hf or spm");
		return TN_OK;
	case 'h':
		fputs(usage_text, stdout);
		exit(0);
	case 'V':
		tn_cli_version(prog);
		exit(0);
	default:
		return tn_cli_usage_error(prog, "unknown option");
	}
}

static int parse_args(struct args *a, int argc, char **argv)
{
	a->min_freq = 2;
	int c, rc;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "t:o:j:qhV", long_opts, NULL)) != -1) {
		if (c == '?')
			return tn_cli_usage_error(prog, "unknown or incomplete option '%s'",
						  argv[optind - 1]);
		if ((rc = parse_option(a, c, optarg)))
			return rc;
	}
	if (optind >= argc)
		return tn_cli_usage_error(prog, "missing command (encode, decode, info or train)");
	a->command = argv[optind++];
	a->paths = argv + optind;
	a->n_paths = (size_t)(argc - optind);
	if (a->threads > 4096)
		return tn_cli_usage_error(prog, "--threads is too large");
	if (a->lines + a->split_docs + (a->jsonl != NULL) > 1)
		return tn_cli_usage_error(prog, "give at most one of --lines, --split-docs, --jsonl-field");
	return TN_OK;
}

static int load(const struct args *a, struct tn_tokenizer **t)
{
	if (!a->tokenizer)
		return tn_cli_usage_error(prog, "%s needs -t TOKENIZER", a->command);
	int rc = tn_tokenizer_load(t, a->tokenizer, (enum tn_tok_kind)a->kind);
	return rc ? tn_cli_report(prog, rc) : TN_OK;
}

static int finish_out(struct tn_out *out, int rc)
{
	if (!rc)
		rc = tn_out_commit(out);
	tn_out_abort(out);
	return rc ? tn_cli_report(prog, rc) : TN_OK;
}

static int cmd_encode(const struct args *a)
{
	struct tn_tokenizer *t;
	int rc = load(a, &t);
	if (rc)
		return rc;
	struct tn_input_opts io = { a->lines ? TN_CUT_LINES : a->split_docs ? TN_CUT_EOT : TN_CUT_FILE,
				    a->jsonl };
	struct tn_input *in = NULL;
	struct tn_out out;
	memset(&out, 0, sizeof out);
	out.fd = -1;
	rc = tn_input_open(&in, a->paths, a->n_paths, &io);
	if (!rc)
		rc = tn_out_open(&out, a->output ? a->output : "-");
	if (!rc) {
		struct tn_tokenize_opts o = { (int)a->threads, a->ids, a->eot, 0 };
		struct tn_tokenize_stats st;
		struct tn_progress progress;
		tn_progress_init(&progress, a->quiet);
		rc = tn_tokenize_run(t, in, &out, &o, &st, &progress);
	}
	rc = finish_out(&out, rc);
	tn_input_free(in);
	tn_tokenizer_free(t);
	return rc;
}

static int cmd_decode(const struct args *a)
{
	struct tn_tokenizer *t;
	int rc = load(a, &t);
	if (rc)
		return rc;
	struct tn_out out;
	rc = tn_out_open(&out, a->output ? a->output : "-");
	if (!rc) {
		struct tn_detokenize_opts o = { a->ids, a->eot, a->split_docs };
		uint64_t docs;
		rc = tn_detokenize_run(t, a->paths, a->n_paths, &out, &o, &docs);
	}
	rc = finish_out(&out, rc);
	tn_tokenizer_free(t);
	return rc;
}

static int cmd_info(const struct args *a)
{
	struct tn_tokenizer *t;
	int rc = load(a, &t);
	if (rc)
		return rc;
	char fp[33];
	tn_fingerprint_hex(t->fingerprint, fp);
	printf("path: %s\nkind: %s\nvocab_size: %u\nmerges: %zu\nfingerprint: %s\n",
	       t->path, tn_tok_kind_name(t->kind), t->vocab_size,
	       tn_bpe_merge_count(t->bpe), fp);
	printf("front_end: %s\n", t->byte_level ? "byte-level" : "sentencepiece");
	if (t->eot_id != TN_BPE_NONE)
		printf("eot: %u\n", t->eot_id);
	for (size_t i = 0; i < t->n_specials; i++)
		printf("special: %u %s\n", t->specials[i].id, t->specials[i].text);
	tn_tokenizer_free(t);
	return TN_OK;
}

static int cmd_train(const struct args *a)
{
	if (!a->output)
		return tn_cli_usage_error(prog, "train needs -o FILE");
	if (a->vocab_size < 256 + a->n_specials || a->vocab_size > (1u << 24))
		return tn_cli_usage_error(prog, "train needs --vocab-size N, 256 + specials <= N <= 16M");
	if (a->n_paths == 0)
		return tn_cli_usage_error(prog, "train needs at least one INPUT");
	struct tn_input_opts io = { a->lines ? TN_CUT_LINES : a->split_docs ? TN_CUT_EOT : TN_CUT_FILE,
				    a->jsonl };
	struct tn_input *in;
	int rc = tn_input_open(&in, a->paths, a->n_paths, &io);
	if (rc)
		return tn_cli_report(prog, rc);
	struct tn_train_opts o = { (uint32_t)a->vocab_size, a->specials, a->n_specials,
				   (int)a->threads, a->min_freq };
	struct tn_progress progress;
	tn_progress_init(&progress, a->quiet);
	rc = tn_bpe_train(in, &o, a->output, &progress);
	tn_input_free(in);
	return rc ? tn_cli_report(prog, rc) : TN_OK;
}

int main(int argc, char **argv)
{
	struct args a = { 0 };
	int rc = parse_args(&a, argc, argv);
	if (rc)
		return rc;
	if (!strcmp(a.command, "encode"))
		rc = cmd_encode(&a);
	else if (!strcmp(a.command, "decode"))
		rc = cmd_decode(&a);
	else if (!strcmp(a.command, "info"))
		rc = cmd_info(&a);
	else if (!strcmp(a.command, "train"))
		rc = cmd_train(&a);
	else
		rc = tn_cli_usage_error(prog, "unknown command '%s'", a.command);
	free(a.specials);
	return rc;
}
