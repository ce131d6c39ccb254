/* tn-convert - move checkpoints between the released Hugging Face layout
 * and tn (see tn-convert(1)): dtype, sharding, the tied head, LRPE theta,
 * and `info` to list a checkpoint's tensors. Options and plumbing only; the
 * work is libcore/convert.c. */
#include "cli.h"
#include "convert.h"
#include "io.h"
#include "tensor.h"
#include "util.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *prog = "tn-convert";

static const char usage_text[] =
	"Usage: tn-convert [OPTION]... SRC DST\n"
	"       tn-convert info DIR\n"
	"Convert a checkpoint directory in the Hugging Face TransNormerLLM layout\n"
	"(config.json + model.safetensors, safetensors shards with an index, PyTorch\n"
	"pytorch_model.bin or its shards, or a tn-train checkpoint) into a new directory\n"
	"DST in that layout (safetensors), without training state.\n"
	"`info` lists every tensor: name, dtype, shape, bytes, XXH3-64 of its bytes.\n"
	"\n"
	"Options:\n"
	"      --dtype fp32|bf16|fp16  weights' type in DST (default: the source's)\n"
	"      --shard-size SIZE       shards of at most SIZE bytes (k, M, G suffixes) with\n"
	"                              model.safetensors.index.json (default: one file)\n"
	"      --head                  also store lm_head.weight (a copy of the embedding)\n"
	"  -q, --quiet                 no summary on standard error\n"
	"  -h, --help                  show this help and exit\n"
	"  -V, --version               show the version and exit\n"
	"\n"
	"Exit status: 0 success, 1 invalid data, 2 usage error, 3 system error.\n"
	"See tn-convert(1) and tn-checkpoint(5).\n";

enum { OPT_DTYPE = 256, OPT_SHARD, OPT_HEAD };

static const struct option long_opts[] = {
	{"dtype", required_argument, NULL, OPT_DTYPE},
	{"shard-size", required_argument, NULL, OPT_SHARD},
	{"head", no_argument, NULL, OPT_HEAD},
	{"quiet", no_argument, NULL, 'q'},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, 'V'},
	{NULL, 0, NULL, 0},
};

static int parse_dtype(const char *s, int *out)
{
	static const struct { const char *name; enum tn_dtype t; } names[] = {
		{"fp32", TN_F32}, {"float32", TN_F32}, {"bf16", TN_BF16},
		{"bfloat16", TN_BF16}, {"fp16", TN_F16}, {"float16", TN_F16},
	};
	for (size_t i = 0; i < TN_ARRAY_LEN(names); i++)
		if (!strcmp(s, names[i].name)) {
			*out = names[i].t;
			return TN_OK;
		}
	return tn_cli_usage_error(prog, "--dtype: '%s' is not fp32, bf16 or fp16", s);
}

static int info(const char *dir)
{
	struct tn_out out;
	int rc = tn_out_open(&out, "-");
	if (!rc)
		rc = tn_convert_info(dir, &out);
	if (!rc)
		rc = tn_out_commit(&out);
	tn_out_abort(&out);
	return rc ? tn_cli_report(prog, rc) : 0;
}

static void summary(const char *dst, const struct tn_convert_report *r)
{
	fprintf(stderr, "%s: %s: %zu tensors, %s, %zu file%s", prog, dst, r->tensors,
		tn_dtype_name(r->dtype), r->shards, r->shards == 1 ? "" : "s");
	if (r->theta_layers && r->theta_computed == r->theta_layers)
		fprintf(stderr, "; LRPE theta computed by its formula");
	else if (r->theta_layers)
		fprintf(stderr, "; LRPE theta copied, max deviation from the formula %.3g",
			r->theta_dev);
	if (r->head_present)
		fprintf(stderr, "; lm_head.weight dropped (tied%s)",
			r->head_differs ? ", and it differed from the embedding" : "");
	fputc('\n', stderr);
}

int main(int argc, char **argv)
{
	struct tn_convert_opts o = {.dtype = -1};
	int c, quiet = 0, rc = TN_OK;
	opterr = 0;
	if (argc >= 2 && !strcmp(argv[1], "info")) {
		if (argc == 3 && argv[2][0] != '-')
			return info(argv[2]);
		if (argc == 3 && !strcmp(argv[2], "--help")) {
			fputs(usage_text, stdout);
			return 0;
		}
		return tn_cli_usage_error(prog, "info takes one directory");
	}
	while (!rc && (c = getopt_long(argc, argv, "qhV", long_opts, NULL)) != -1) {
		switch (c) {
		case OPT_DTYPE: rc = parse_dtype(optarg, &o.dtype); break;
		case OPT_SHARD:
			rc = tn_cli_u64(prog, "--shard-size", optarg, &o.shard_bytes, 1);
			if (!rc && !o.shard_bytes)
				rc = tn_cli_usage_error(prog, "--shard-size must be positive");
			break;
		case OPT_HEAD: o.write_head = 1; break;
		case 'q': quiet = 1; break;
		case 'h': fputs(usage_text, stdout); return 0;
		case 'V': tn_cli_version(prog); return 0;
		default:
			return tn_cli_usage_error(prog, "unknown or incomplete option '%s'",
						  argv[optind - 1]);
		}
	}
	if (rc)
		return rc;
	if (argc - optind != 2)
		return tn_cli_usage_error(prog, "needs SRC and DST (or: info DIR)");
	struct tn_convert_report r;
	if ((rc = tn_convert(argv[optind], argv[optind + 1], &o, &r)))
		return tn_cli_report(prog, rc);
	if (!quiet)
		summary(argv[optind + 1], &r);
	return 0;
}
