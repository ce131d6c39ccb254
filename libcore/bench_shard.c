/* bench_shard.c - tn-bench shard: throughput of pack (streaming, and with
 * shuffle + dedup), cat and verify on synthetic documents, in MB/s of token
 * payload (tokens x width), from a token stream that sits in the page cache,
 * so the figures measure tn, not the disk. */
#include "bench.h"
#include "cli.h"
#include "inspect.h"
#include "pack.h"
#include "shardlist.h"
#include "source.h"
#include "stream.h"
#include "util.h"

#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct bench_opts {
	uint64_t tokens;
	uint32_t vocab;
	const char *dir;
	int json, repeat;
};

static const char *prog = "tn-bench shard";

static int make_stream(const char *path, const struct bench_opts *o)
{
	struct tn_out out;
	int rc = tn_out_open(&out, path);
	struct tn_stream_info info = {tn_width_for_vocab(o->vocab), o->vocab, {0}};
	struct tn_stream_writer *w = NULL;
	if (!rc)
		rc = tn_stream_writer_new(&w, &out, &info);
	uint32_t *doc = tn_malloc(8192 * sizeof *doc);
	uint64_t x = 0x9e3779b97f4a7c15ull, done = 0;
	if (!rc && !doc)
		rc = TN_ENOMEM;
	while (!rc && done < o->tokens) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		size_t len = (size_t)TN_MIN((uint64_t)(64 + (x >> 33) % 4000), o->tokens - done);
		for (size_t i = 0; i < len; i++) {
			x = x * 6364136223846793005ull + 1442695040888963407ull;
			doc[i] = (uint32_t)((x >> 33) % o->vocab);
		}
		rc = tn_stream_write_doc(w, doc, len);
		done += len;
	}
	if (!rc)
		rc = tn_stream_finish(w);
	if (!rc)
		rc = tn_out_commit(&out);
	tn_stream_writer_free(w);
	tn_out_abort(&out);
	free(doc);
	return rc;
}

static int run_pack(const char *stream, const char *dir, int shuffle_dedup)
{
	char *paths[] = {(char *)stream};
	struct tn_source_opts so = {TN_SOURCE_STREAM, 0, -1};
	struct tn_source *src;
	int rc = tn_source_open(&src, paths, 1, &so);
	if (rc)
		return rc;
	struct tn_pack_opts po = {.out_dir = dir, .shard_tokens = 100000000, .shuffle = shuffle_dedup,
				  .dedup = shuffle_dedup, .seed = 1, .memory = 1ull << 30};
	struct tn_pack_stats st;
	struct tn_progress pr = {0};
	rc = tn_pack(src, &po, &st, &pr);
	tn_source_free(src);
	return rc;
}

static int run_cat(const char *dir)
{
	char *paths[] = {(char *)dir};
	struct tn_shard_list l;
	int rc = tn_shard_list_open(&l, paths, 1, "train");
	struct tn_out out;
	int fd = open("/dev/null", O_WRONLY);
	if (!rc && fd < 0)
		rc = tn_fail_errno("/dev/null: cannot open");
	if (!rc)
		rc = tn_out_open_fd(&out, fd, "/dev/null");
	if (!rc) {
		rc = tn_shard_list_write_stream(&l, &out);
		tn_out_abort(&out);
	}
	if (fd >= 0)
		close(fd);
	tn_shard_list_close(&l);
	return rc;
}

static int run_verify(const char *dir)
{
	json_t *d;
	int rc = tn_inspect(dir, 1, &d);
	if (!rc)
		json_decref(d);
	return rc;
}

static void report(const struct bench_opts *o, const char *what, double seconds)
{
	double mb = (double)o->tokens * tn_width_for_vocab(o->vocab) / 1e6;
	if (o->json)
		printf("{\"bench\":\"shard\",\"op\":\"%s\",\"tokens\":%llu,\"vocab\":%u,"
		       "\"seconds\":%.4f,\"mb_per_s\":%.1f,\"mtokens_per_s\":%.1f}\n", what,
		       (unsigned long long)o->tokens, o->vocab, seconds, mb / seconds,
		       (double)o->tokens / seconds / 1e6);
	else
		printf("%-22s %10.3f s %10.1f MB/s %10.1f Mtok/s\n", what, seconds, mb / seconds,
		       (double)o->tokens / seconds / 1e6);
	fflush(stdout);
}

static int remove_tree(const char *path)
{
	char cmd[4300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
	return system(cmd) == 0 ? TN_OK : tn_fail(TN_EIO, "%s: cannot remove", path);
}

typedef int (*step_fn)(const char *a, const char *b, int flag);
static int step_pack(const char *a, const char *b, int flag) { return run_pack(a, b, flag); }
static int step_cat(const char *a, const char *b, int flag) { (void)a; (void)flag; return run_cat(b); }
static int step_verify(const char *a, const char *b, int flag) { (void)a; (void)flag; return run_verify(b); }

/* Best of o->repeat runs; packs remove their output first. */
static int timed(const struct bench_opts *o, const char *what, step_fn fn, const char *a,
		 const char *b, int flag, int fresh_output)
{
	double best = 1e30;
	for (int r = 0; r < o->repeat; r++) {
		if (fresh_output && remove_tree(b))
			return TN_EIO;
		double t0 = tn_now();
		int rc = fn(a, b, flag);
		if (rc)
			return rc;
		best = TN_MIN(best, tn_now() - t0);
	}
	report(o, what, best);
	return TN_OK;
}

static int parse(int argc, char **argv, struct bench_opts *o)
{
	static const struct option opts[] = {
		{"tokens", required_argument, NULL, 't'}, {"vocab-size", required_argument, NULL, 'v'},
		{"dir", required_argument, NULL, 'd'}, {"repeat", required_argument, NULL, 'r'},
		{"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	int c;
	uint64_t v;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 't': if (tn_cli_u64(prog, "--tokens", optarg, &o->tokens, 0)) return TN_EUSAGE; break;
		case 'v':
			if (tn_cli_u64(prog, "--vocab-size", optarg, &v, 0) || !v || v > UINT32_MAX)
				return tn_cli_usage_error(prog, "--vocab-size: 1 to 2^32-1");
			o->vocab = (uint32_t)v;
			break;
		case 'd': o->dir = optarg; break;
		case 'r':
			if (tn_cli_u64(prog, "--repeat", optarg, &v, 0) || !v || v > 100)
				return tn_cli_usage_error(prog, "--repeat: 1 to 100");
			o->repeat = (int)v;
			break;
		case 'j': o->json = 1; break;
		case 'h':
			printf("Usage: tn-bench shard [--tokens N] [--vocab-size N] [--dir DIR] [--repeat N] [--json]\n"
			       "Pack (streaming; shuffle + dedup), cat and verify N synthetic tokens\n"
			       "(default 200M, vocabulary 50257) in DIR (default /tmp); best of --repeat runs.\n");
			exit(0);
		default:
			return tn_cli_usage_error(prog, "unknown option");
		}
	}
	return TN_OK;
}

int tn_bench_shard(int argc, char **argv)
{
	struct bench_opts o = {200000000, 50257, "/tmp", 0, 3};
	int rc = parse(argc, argv, &o);
	if (rc)
		return rc;
	char work[4096], stream[4200], out[4200], out2[4200];
	snprintf(work, sizeof work, "%s/tn-bench-shard-XXXXXX", o.dir);
	if (!mkdtemp(work))
		return tn_cli_report(prog, tn_fail_errno("%s: cannot create", work));
	snprintf(stream, sizeof stream, "%s/in.tok", work);
	snprintf(out, sizeof out, "%s/plain", work);
	snprintf(out2, sizeof out2, "%s/shuffled", work);
	rc = make_stream(stream, &o);
	if (!rc)
		rc = timed(&o, "pack", step_pack, stream, out, 0, 1);
	if (!rc)
		rc = timed(&o, "pack --shuffle --dedup", step_pack, stream, out2, 1, 1);
	if (!rc)
		rc = timed(&o, "cat", step_cat, stream, out, 0, 0);
	if (!rc)
		rc = timed(&o, "verify", step_verify, stream, out, 0, 0);
	remove_tree(work);
	return rc ? tn_cli_report(prog, rc) : 0;
}
