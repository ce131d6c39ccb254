/* bench.h - the subcommands of tn-bench, one function and one file each
 * (bench_<name>.c). Each parses its own options, measures, and prints a
 * table on stdout, or one JSON object per line with --json. */
#ifndef TN_BENCH_H
#define TN_BENCH_H

#include <jansson.h>
#include <stdint.h>

#include "backend.h"

int tn_bench_shard(int argc, char **argv);
int tn_bench_decode(int argc, char **argv);
int tn_bench_prefill(int argc, char **argv);
int tn_bench_tokenize(int argc, char **argv);
int tn_bench_attn(int argc, char **argv);
int tn_bench_train(int argc, char **argv);

/* What every model benchmark (train, decode) is told: the preset and its
 * vocabulary, the backend, and whether to print JSON; the getopt entries
 * (short codes 'p', 'v', 'B', 'j') and their handler. */
struct tn_bench_model {
	const char *preset;
	const struct tn_backend *be;
	uint64_t vocab;
	int json;
};
#define TN_BENCH_MODEL_OPTIONS \
	{"preset", required_argument, NULL, 'p'}, {"vocab-size", required_argument, NULL, 'v'}, \
	{"backend", required_argument, NULL, 'B'}, {"json", no_argument, NULL, 'j'}
/* Apply option c: TN_OK, a usage error (reported), or 1 if c is not one of them. */
int tn_bench_model_option(const char *prog, struct tn_bench_model *o, int c, const char *arg);

/* The SVG that one gnuplot script draws (svg terminal, output on stdout)
 * into path, through tn_out (bench_plot.c). */
int tn_bench_gnuplot_svg(const char *script, const char *path);
/* Two SVGs of the same series of points, PREFIX-name[0].svg and
 * PREFIX-name[1].svg: y[0] and y[1] against x, one line a series (points in
 * their order; series numbered from 0 in order of first appearance),
 * gnuplot settings setup[k] (axes, title, labels) for each. Without gnuplot
 * it says so on stderr, after prog, and draws nothing; with no point it
 * fails with the message empty. */
struct tn_bench_point {
	int series;
	double x, y[2];
};
struct tn_bench_plot {
	const char *prog, *prefix, *name[2], *setup[2], *empty;
	const struct tn_bench_point *p;
	int n;
	const char *const *label; /* one a series */
};
int tn_bench_plot_series(const struct tn_bench_plot *pl);
/* each(j, path, line, ctx) for every JSON object of path, one a line
 * (lines not starting with '{' are skipped: comments between runs); stops
 * at the first failure, which names the file and line. */
int tn_bench_json_lines(const char *path,
			int (*each)(json_t *j, const char *path, long line, void *ctx), void *ctx);

#endif
