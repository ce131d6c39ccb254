/* tn-shard - pack token streams into checked, mmap-able shards and get
 * them back out (see tn-shard(1)). Option parsing and plumbing only; the
 * work is in libcore (pack, shardlist, inspect). */
#include "cli.h"
#include "inspect.h"
#include "pack.h"
#include "shardlist.h"
#include "source.h"
#include "util.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static const char *prog = "tn-shard";

static const char usage_text[] =
	"Usage: tn-shard COMMAND [OPTION]... [ARG]...\n"
	"Pack token data into shards a trainer reads, and read them back.\n"
	"\n"
	"Commands:\n"
	"  pack -o DIR [FILE]...     token streams (or --ids text) into a shard directory\n"
	"  info [--json] PATH        describe a shard, shard directory, stream or llm.c file\n"
	"  verify PATH...            check every checksum and token id\n"
	"  cat [--ids] PATH...       shards back to a token stream (or decimal ids)\n"
	"  import-llmc -o DIR FILE...   llm.c .bin files into a shard directory\n"
	"  export-llmc -o FILE PATH...  shards into one llm.c .bin file\n"
	"\n"
	"Pack options (also for import-llmc):\n"
	"  -o, --output DIR          the shard directory to create (new or empty)\n"
	"      --ids                 input is decimal ids, one document per line\n"
	"      --vocab-size N        vocabulary size of --ids input (required there)\n"
	"      --width 2|4           bytes per token in the shards (default: the input's)\n"
	"      --shard-tokens N      end a shard at the first document end past N tokens\n"
	"                            (default 100M; k, M, G suffixes)\n"
	"      --val-tokens N        put the first N tokens' worth of documents in val\n"
	"      --val-fraction F      put a share F of the tokens in val (0 <= F < 1)\n"
	"      --shuffle             shuffle documents (seeded by --seed)\n"
	"      --seed N              seed for --shuffle (default 1)\n"
	"      --dedup               drop exact duplicate documents (the first stays)\n"
	"      --memory BYTES        memory bound for shuffle and dedup (default 1G)\n"
	"      --eot ID              import-llmc: documents start at this id (default 50256);\n"
	"                            export-llmc: put it before every document\n"
	"      --json                pack: print a summary as one JSON line\n"
	"  -q, --quiet               no progress line\n"
	"Other options:\n"
	"      --split train|val     which split of a directory cat/export-llmc read\n"
	"      --llmc-version 1|2    export-llmc token width (default: 1 if it fits)\n"
	"  -h, --help                show this help and exit\n"
	"  -V, --version             show the version and exit\n"
	"\n"
	"Exit status: 0 success, 1 invalid or corrupt data, 2 usage error, 3 system error.\n"
	"See tn-shard(1), tn-shard(5) and tn-tokens(5).\n";

enum {
	OPT_IDS = 256, OPT_VOCAB, OPT_WIDTH, OPT_SHARD_TOKENS, OPT_VAL_TOKENS, OPT_VAL_FRACTION,
	OPT_SHUFFLE, OPT_SEED, OPT_DEDUP, OPT_MEMORY, OPT_EOT, OPT_JSON, OPT_SPLIT, OPT_LLMC_VERSION,
};

static const struct option long_opts[] = {
	{"output", required_argument, NULL, 'o'},
	{"ids", no_argument, NULL, OPT_IDS},
	{"vocab-size", required_argument, NULL, OPT_VOCAB},
	{"width", required_argument, NULL, OPT_WIDTH},
	{"shard-tokens", required_argument, NULL, OPT_SHARD_TOKENS},
	{"val-tokens", required_argument, NULL, OPT_VAL_TOKENS},
	{"val-fraction", required_argument, NULL, OPT_VAL_FRACTION},
	{"shuffle", no_argument, NULL, OPT_SHUFFLE},
	{"seed", required_argument, NULL, OPT_SEED},
	{"dedup", no_argument, NULL, OPT_DEDUP},
	{"memory", required_argument, NULL, OPT_MEMORY},
	{"eot", required_argument, NULL, OPT_EOT},
	{"json", no_argument, NULL, OPT_JSON},
	{"split", required_argument, NULL, OPT_SPLIT},
	{"llmc-version", required_argument, NULL, OPT_LLMC_VERSION},
	{"quiet", no_argument, NULL, 'q'},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, 'V'},
	{NULL, 0, NULL, 0},
};

struct args {
	const char *command, *output, *split;
	struct tn_pack_opts pack;
	int ids, json, quiet, have_eot, llmc_version;
	uint64_t vocab_size, eot;
	char **paths;
	int n_paths;
};

static int parse_fraction(const char *s, double *out)
{
	char *end;
	*out = strtod(s, &end);
	if (end == s || *end || !(*out >= 0 && *out < 1))
		return tn_cli_usage_error(prog, "--val-fraction: not a fraction in [0, 1): '%s'", s);
	return TN_OK;
}

static int parse_option(struct args *a, int c, const char *arg)
{
	uint64_t v;
	switch (c) {
	case 'o': a->output = arg; return TN_OK;
	case OPT_IDS: a->ids = 1; return TN_OK;
	case OPT_SHUFFLE: a->pack.shuffle = 1; return TN_OK;
	case OPT_DEDUP: a->pack.dedup = 1; return TN_OK;
	case OPT_JSON: a->json = 1; return TN_OK;
	case 'q': a->quiet = 1; return TN_OK;
	case OPT_SPLIT: a->split = arg; return TN_OK;
	case OPT_VOCAB: return tn_cli_u64(prog, "--vocab-size", arg, &a->vocab_size, 0);
	case OPT_SHARD_TOKENS: return tn_cli_u64(prog, "--shard-tokens", arg, &a->pack.shard_tokens, 0);
	case OPT_VAL_TOKENS: return tn_cli_u64(prog, "--val-tokens", arg, &a->pack.val_tokens, 0);
	case OPT_VAL_FRACTION: return parse_fraction(arg, &a->pack.val_fraction);
	case OPT_SEED: return tn_cli_u64(prog, "--seed", arg, &a->pack.seed, 0);
	case OPT_MEMORY: return tn_cli_u64(prog, "--memory", arg, &a->pack.memory, 1);
	case OPT_EOT:
		a->have_eot = 1;
		return tn_cli_u64(prog, "--eot", arg, &a->eot, 0);
	case OPT_WIDTH:
		if (tn_parse_u64(arg, &v, 0) || (v != 2 && v != 4))
			return tn_cli_usage_error(prog, "--width must be 2 or 4");
		a->pack.width = (uint32_t)v;
		return TN_OK;
	case OPT_LLMC_VERSION:
		if (tn_parse_u64(arg, &v, 0) || (v != 1 && v != 2))
			return tn_cli_usage_error(prog, "--llmc-version must be 1 or 2");
		a->llmc_version = (int)v;
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
	a->pack.shard_tokens = 100000000;
	a->pack.seed = 1;
	a->pack.memory = 1ull << 30;
	a->split = "train";
	int c, rc;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "o:qhV", long_opts, NULL)) != -1) {
		if (c == '?')
			return tn_cli_usage_error(prog, "unknown or incomplete option '%s'",
						  argv[optind - 1]);
		if ((rc = parse_option(a, c, optarg)))
			return rc;
	}
	a->paths = argv + optind;
	a->n_paths = argc - optind;
	if (strcmp(a->split, "train") && strcmp(a->split, "val"))
		return tn_cli_usage_error(prog, "--split must be train or val");
	if (a->vocab_size > UINT32_MAX)
		return tn_cli_usage_error(prog, "--vocab-size is too large");
	return TN_OK;
}

static void print_pack_summary(const struct args *a, const struct tn_pack_stats *st)
{
	if (!a->json)
		return;
	printf("{\"output\":\"%s\",\"documents_in\":%llu,\"tokens_in\":%llu,\"duplicates\":%llu,"
	       "\"train\":{\"shards\":%llu,\"documents\":%llu,\"tokens\":%llu},"
	       "\"val\":{\"shards\":%llu,\"documents\":%llu,\"tokens\":%llu}}\n",
	       a->output, (unsigned long long)st->docs_in, (unsigned long long)st->tokens_in,
	       (unsigned long long)st->duplicates, (unsigned long long)st->shards[0],
	       (unsigned long long)st->docs[0], (unsigned long long)st->tokens[0],
	       (unsigned long long)st->shards[1], (unsigned long long)st->docs[1],
	       (unsigned long long)st->tokens[1]);
}

static int cmd_pack(struct args *a, enum tn_source_kind kind)
{
	if (!a->output)
		return tn_cli_usage_error(prog, "%s needs -o DIR", a->command);
	if (a->ids && kind == TN_SOURCE_STREAM)
		kind = TN_SOURCE_IDS;
	if (kind == TN_SOURCE_IDS && !a->vocab_size)
		return tn_cli_usage_error(prog, "--ids needs --vocab-size N");
	if (kind == TN_SOURCE_LLMC && a->n_paths == 0)
		return tn_cli_usage_error(prog, "import-llmc needs at least one FILE.bin");
	if (a->pack.val_tokens && a->pack.val_fraction > 0)
		return tn_cli_usage_error(prog, "give --val-tokens or --val-fraction, not both");
	struct tn_source_opts so = {kind, (uint32_t)a->vocab_size,
				    a->have_eot ? (int64_t)a->eot : 50256};
	struct tn_source *src;
	int rc = tn_source_open(&src, a->paths, (size_t)a->n_paths, &so);
	if (rc)
		return tn_cli_report(prog, rc);
	a->pack.out_dir = a->output;
	a->pack.input_note = kind == TN_SOURCE_IDS ? "ids" : kind == TN_SOURCE_LLMC ? "llm.c" : "stream";
	struct tn_progress progress;
	tn_progress_init(&progress, a->quiet);
	struct tn_pack_stats st;
	rc = tn_pack(src, &a->pack, &st, &progress);
	tn_source_free(src);
	if (rc)
		return tn_cli_report(prog, rc);
	print_pack_summary(a, &st);
	return 0;
}

static int cmd_info(struct args *a)
{
	if (a->n_paths != 1)
		return tn_cli_usage_error(prog, "info takes one PATH");
	json_t *d;
	int rc = tn_inspect(a->paths[0], 0, &d);
	if (rc)
		return tn_cli_report(prog, rc);
	if (a->json) {
		char *s = json_dumps(d, JSON_COMPACT | JSON_PRESERVE_ORDER);
		if (s)
			puts(s);
		free(s);
	} else {
		tn_inspect_print(d, stdout);
	}
	json_decref(d);
	return 0;
}

static int cmd_verify(struct args *a)
{
	if (a->n_paths == 0)
		return tn_cli_usage_error(prog, "verify needs at least one PATH");
	int status = 0;
	for (int i = 0; i < a->n_paths; i++) {
		json_t *d;
		int rc = tn_inspect(a->paths[i], 1, &d);
		if (rc) {
			status = status ? status : rc;
			tn_cli_report(prog, rc);
			continue;
		}
		const json_t *t = json_object_get(d, "tokens");
		if (!t)
			t = json_object_get(json_object_get(d, "train"), "tokens");
		printf("%s: ok (%s, %lld tokens)\n", a->paths[i],
		       json_string_value(json_object_get(d, "kind")), (long long)json_integer_value(t));
		json_decref(d);
	}
	return status;
}

static int cmd_write(struct args *a, int llmc)
{
	if (a->n_paths == 0)
		return tn_cli_usage_error(prog, "%s needs at least one PATH", a->command);
	if (llmc && !a->output)
		return tn_cli_usage_error(prog, "export-llmc needs -o FILE");
	struct tn_shard_list l;
	int rc = tn_shard_list_open(&l, a->paths, (size_t)a->n_paths, a->split);
	if (rc)
		return tn_cli_report(prog, rc);
	struct tn_out out;
	rc = tn_out_open(&out, llmc ? a->output : "-");
	if (!rc && llmc) {
		int version = a->llmc_version ? a->llmc_version : l.info.vocab_size <= 65536 ? 1 : 2;
		rc = tn_shard_list_write_llmc(&l, &out, version, a->have_eot ? (int64_t)a->eot : -1);
	} else if (!rc) {
		rc = a->ids ? tn_shard_list_write_ids(&l, &out) : tn_shard_list_write_stream(&l, &out);
	}
	if (!rc)
		rc = tn_out_commit(&out);
	tn_out_abort(&out);
	tn_shard_list_close(&l);
	return rc ? tn_cli_report(prog, rc) : 0;
}

int main(int argc, char **argv)
{
	struct args a = {0};
	if (argc < 2)
		return tn_cli_usage_error(prog, "missing COMMAND");
	a.command = argv[1];
	if (!strcmp(a.command, "-h") || !strcmp(a.command, "--help")) {
		fputs(usage_text, stdout);
		return 0;
	}
	if (!strcmp(a.command, "-V") || !strcmp(a.command, "--version")) {
		tn_cli_version(prog);
		return 0;
	}
	int rc = parse_args(&a, argc - 1, argv + 1);
	if (rc)
		return rc;
	if (!strcmp(a.command, "pack"))
		return cmd_pack(&a, TN_SOURCE_STREAM);
	if (!strcmp(a.command, "import-llmc"))
		return cmd_pack(&a, TN_SOURCE_LLMC);
	if (!strcmp(a.command, "info"))
		return cmd_info(&a);
	if (!strcmp(a.command, "verify"))
		return cmd_verify(&a);
	if (!strcmp(a.command, "cat"))
		return cmd_write(&a, 0);
	if (!strcmp(a.command, "export-llmc"))
		return cmd_write(&a, 1);
	return tn_cli_usage_error(prog, "unknown command '%s'", a.command);
}
