/* tn-bench - measure tn against the physical limits and its peers (see
 * tn-bench(1)). Dispatch only: each subcommand lives in libcore/bench_*.c. */
#include "backend.h"
#include "bench.h"
#include "cli.h"
#include "util.h"

#include <stdio.h>
#include <string.h>

static const char *prog = "tn-bench";

static const struct {
	const char *name, *what;
	int (*run)(int argc, char **argv);
} commands[] = {
	{"shard", "tn-shard pack, cat and verify throughput", tn_bench_shard},
	{"decode", "generation: prefill, then tokens/s per step vs context and batch", tn_bench_decode},
	{"prefill", "prompt prefill: tokens/s and memory vs prompt length and batch", tn_bench_prefill},
	{"tokenize", "tn-tokenize encoding speed, one thread and all", tn_bench_tokenize},
	{"attn", "Lightning Attention on the GPU: forward, backward, prefill, decode", tn_bench_attn},
	{"train", "training steps of the model: tokens/s, GFLOP/s against sgemm", tn_bench_train},
};

static void usage(FILE *f)
{
	fprintf(f, "Usage: tn-bench COMMAND [OPTION]...\n"
		   "Measure tn's speed; tables on stdout, --json for one JSON line per result.\n\n"
		   "Commands:\n");
	for (size_t i = 0; i < TN_ARRAY_LEN(commands); i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].what);
	fprintf(f, "\nOptions:\n"
		   "  -h, --help     show this help (COMMAND --help: that command's options)\n"
		   "  -V, --version  show the version and exit\n"
		   "See tn-bench(1).\n");
}

int main(int argc, char **argv)
{
	tn_cpu_passive_wait(argv);
	if (argc < 2)
		return tn_cli_usage_error(prog, "missing COMMAND");
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "-V") || !strcmp(argv[1], "--version")) {
		tn_cli_version(prog);
		return 0;
	}
	for (size_t i = 0; i < TN_ARRAY_LEN(commands); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].run(argc - 1, argv + 1);
	return tn_cli_usage_error(prog, "unknown command '%s'", argv[1]);
}
