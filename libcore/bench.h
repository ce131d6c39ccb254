/* bench.h - the subcommands of tn-bench, one function and one file each
 * (bench_<name>.c). Each parses its own options, measures, and prints a
 * table on stdout, or one JSON object per line with --json. */
#ifndef TN_BENCH_H
#define TN_BENCH_H

int tn_bench_shard(int argc, char **argv);
int tn_bench_tokenize(int argc, char **argv);
int tn_bench_attn(int argc, char **argv);
int tn_bench_train(int argc, char **argv);

#endif
