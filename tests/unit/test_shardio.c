/* test_shardio.c - unit tests of the token stream, shard, external sort
 * and loader modules: round trips at the edges (empty documents, chunks
 * larger than a record, both widths), every flipped byte and truncation of
 * a small stream, and the loader's epoch and rank guarantees. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "extsort.h"
#include "io.h"
#include "loader.h"
#include "pack.h"
#include "shard.h"
#include "source.h"
#include "stream.h"
#include "util.h"

static char tmpdir[] = "/tmp/tn-unit-XXXXXX";

static char *tmp_path(const char *name)
{
	static char buf[256];
	snprintf(buf, sizeof buf, "%s/%s", tmpdir, name);
	return buf;
}

static uint64_t rng = 88172645463325252ull;
static uint32_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)rng;
}

/* Write docs (lengths lens[], tokens from a seeded generator) as a stream. */
static void write_stream(const char *path, uint32_t vocab, const size_t *lens, size_t n_docs,
			 uint32_t *all)
{
	struct tn_out out;
	assert_int_equal(tn_out_open(&out, path), TN_OK);
	struct tn_stream_info info = {tn_width_for_vocab(vocab), vocab, {1, 2, 3}};
	struct tn_stream_writer *w;
	assert_int_equal(tn_stream_writer_new(&w, &out, &info), TN_OK);
	size_t at = 0;
	for (size_t d = 0; d < n_docs; d++) {
		for (size_t i = 0; i < lens[d]; i++)
			all[at + i] = next_rand() % vocab;
		assert_int_equal(tn_stream_write_doc(w, all + at, lens[d]), TN_OK);
		at += lens[d];
	}
	assert_int_equal(tn_stream_finish(w), TN_OK);
	assert_int_equal(tn_out_commit(&out), TN_OK);
	tn_stream_writer_free(w);
	tn_out_abort(&out);
}

/* Read a stream back; returns the status of the first failure. */
static int read_stream(const char *path, uint32_t *got, size_t *n_tokens, size_t *n_docs,
		       size_t *lens)
{
	struct tn_in in;
	int rc = tn_in_open(&in, path);
	if (rc)
		return rc;
	struct tn_stream_reader *r = NULL;
	rc = tn_stream_reader_new(&r, &in);
	*n_tokens = *n_docs = 0;
	size_t cur = 0;
	for (int eos = 0; !rc && !eos;) {
		size_t n;
		int end;
		rc = tn_stream_read(r, got + *n_tokens, 1000, &n, &end, &eos);
		*n_tokens += n;
		cur += n;
		if (end) {
			if (lens)
				lens[*n_docs] = cur;
			(*n_docs)++;
			cur = 0;
		}
	}
	tn_stream_reader_free(r);
	tn_in_close(&in);
	return rc;
}

static void stream_round_trip(void **state)
{
	(void)state;
	const size_t lens[] = {0, 1, 5, 0, TN_STREAM_MAX_CHUNK + 3, 7, 0};
	size_t total = 0, n = TN_ARRAY_LEN(lens);
	for (size_t i = 0; i < n; i++)
		total += lens[i];
	uint32_t vocabs[] = {2, 65536, 65537, 4000000000u};
	uint32_t *all = malloc(total * 4), *got = malloc(total * 4 + 4000);
	size_t got_lens[16];
	for (size_t v = 0; v < TN_ARRAY_LEN(vocabs); v++) {
		write_stream(tmp_path("s.tok"), vocabs[v], lens, n, all);
		size_t nt, nd;
		assert_int_equal(read_stream(tmp_path("s.tok"), got, &nt, &nd, got_lens), TN_OK);
		assert_int_equal(nt, total);
		assert_int_equal(nd, n);
		assert_memory_equal(got_lens, lens, sizeof lens);
		assert_memory_equal(got, all, total * 4);
	}
	free(all);
	free(got);
}

static void stream_every_flip_and_cut(void **state)
{
	(void)state;
	const size_t lens[] = {3, 0, 4};
	uint32_t all[7], got[7000];
	write_stream(tmp_path("s.tok"), 1000, lens, 3, all);
	uint8_t *data;
	size_t len, nt, nd;
	assert_int_equal(tn_read_file(tmp_path("s.tok"), &data, &len), TN_OK);
	for (size_t cut = 0; cut < len; cut++) {
		assert_int_equal(tn_write_file_atomic(tmp_path("c.tok"), data, cut), TN_OK);
		assert_int_equal(read_stream(tmp_path("c.tok"), got, &nt, &nd, NULL), TN_EDATA);
	}
	for (size_t at = 0; at < len; at++)
		for (int bit = 0; bit < 8; bit++) {
			data[at] ^= (uint8_t)(1 << bit);
			assert_int_equal(tn_write_file_atomic(tmp_path("c.tok"), data, len), TN_OK);
			assert_int_equal(read_stream(tmp_path("c.tok"), got, &nt, &nd, NULL), TN_EDATA);
			data[at] ^= (uint8_t)(1 << bit);
		}
	free(data);
}

static void stream_rejects_out_of_vocab(void **state)
{
	(void)state;
	struct tn_out out;
	assert_int_equal(tn_out_open(&out, tmp_path("v.tok")), TN_OK);
	struct tn_stream_info info = {2, 10, {0}};
	struct tn_stream_writer *w;
	assert_int_equal(tn_stream_writer_new(&w, &out, &info), TN_OK);
	uint32_t t[] = {9, 10};
	assert_int_equal(tn_stream_write_doc(w, t, 2), TN_EDATA);
	assert_non_null(strstr(tn_errmsg(), "vocabulary"));
	tn_stream_writer_free(w);
	tn_out_abort(&out);
	assert_int_equal(access(tmp_path("v.tok"), F_OK), -1);
}

/* Streams from different tokenizers, or of a version this tn does not
 * know (with a valid header checksum), are refused with a clear message. */
static void stream_refuses_mixed_and_future(void **state)
{
	(void)state;
	const size_t lens[] = {2};
	uint32_t all[2], got[4000];
	size_t nt, nd;
	write_stream(tmp_path("a.tok"), 100, lens, 1, all);
	uint8_t *a, *b;
	size_t la, lb;
	assert_int_equal(tn_read_file(tmp_path("a.tok"), &a, &la), TN_OK);
	assert_int_equal(tn_read_file(tmp_path("a.tok"), &b, &lb), TN_OK);
	b[24] ^= 0xff; /* another tokenizer: the fingerprint differs */
	tn_put64(b + 40, XXH3_64bits(b, 40));
	uint8_t *both = malloc(la + lb);
	memcpy(both, a, la);
	memcpy(both + la, b, lb);
	assert_int_equal(tn_write_file_atomic(tmp_path("ab.tok"), both, la + lb), TN_OK);
	assert_int_equal(read_stream(tmp_path("ab.tok"), got, &nt, &nd, NULL), TN_EDATA);
	assert_non_null(strstr(tn_errmsg(), "fingerprint"));
	tn_put32(a + 8, 2); /* version 2, correctly checksummed */
	tn_put64(a + 40, XXH3_64bits(a, 40));
	assert_int_equal(tn_write_file_atomic(tmp_path("v2.tok"), a, la), TN_OK);
	assert_int_equal(read_stream(tmp_path("v2.tok"), got, &nt, &nd, NULL), TN_EDATA);
	assert_non_null(strstr(tn_errmsg(), "unsupported stream version 2"));
	free(a);
	free(b);
	free(both);
}

static void shard_refuses_future_version(void **state)
{
	(void)state;
	struct tn_stream_info info = {2, 50, {0}};
	struct tn_shard_writer *w;
	assert_int_equal(tn_shard_writer_new(&w, tmp_path("x.tns"), &info), TN_OK);
	uint32_t t[] = {1, 2, 49};
	assert_int_equal(tn_shard_append(w, t, 3), TN_OK);
	assert_int_equal(tn_shard_end_doc(w), TN_OK);
	struct tn_shard_header h;
	assert_int_equal(tn_shard_writer_finish(w, &h), TN_OK);
	tn_shard_writer_free(w);
	uint8_t *d;
	size_t len;
	assert_int_equal(tn_read_file(tmp_path("x.tns"), &d, &len), TN_OK);
	tn_put32(d + 8, 7);
	tn_put64(d + 120, XXH3_64bits(d, 120));
	assert_int_equal(tn_write_file_atomic(tmp_path("x.tns"), d, len), TN_OK);
	struct tn_shard s;
	assert_int_equal(tn_shard_open(&s, tmp_path("x.tns"), TN_SHARD_CHECK_ALL), TN_EDATA);
	assert_non_null(strstr(tn_errmsg(), "unsupported shard version 7"));
	free(d);
}

static int cmp_u32(const void *a, const void *b, void *ctx)
{
	(void)ctx;
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

static int cmp_plain(const void *a, const void *b) { return cmp_u32(a, b, NULL); }

static void extsort_matches_qsort(void **state)
{
	(void)state;
	const size_t sizes[] = {0, 1, 63, 64, 65, 1000, 50000};
	for (size_t s = 0; s < TN_ARRAY_LEN(sizes); s++) {
		size_t n = sizes[s];
		uint32_t *v = malloc(n * 4 + 4), *got = malloc(n * 4 + 4);
		for (size_t i = 0; i < n; i++)
			v[i] = next_rand() % 1000;
		int in_fd, out_fd;
		assert_int_equal(tn_scratch_fd(tmpdir, &in_fd), TN_OK);
		assert_int_equal(tn_scratch_fd(tmpdir, &out_fd), TN_OK);
		assert_int_equal(tn_write_all(in_fd, v, n * 4, "in"), TN_OK);
		for (size_t mem = 256; mem <= 1 << 20; mem *= 64) {
			struct tn_extsort o = {4, cmp_u32, NULL, mem, tmpdir};
			assert_int_equal(tn_extsort(&o, in_fd, n, out_fd, "test"), TN_OK);
			assert_int_equal(tn_pread_all(out_fd, got, n * 4, 0, "out"), TN_OK);
			qsort(v, n, 4, cmp_plain);
			assert_memory_equal(got, v, n * 4);
		}
		close(in_fd);
		close(out_fd);
		free(v);
		free(got);
	}
}

/* A directory of n_docs documents of varied length, made through tn_pack. */
static void make_dir(const char *dir, size_t n_docs, uint64_t shard_tokens)
{
	FILE *f = fopen(tmp_path("in.ids"), "w");
	for (size_t d = 0; d < n_docs; d++) {
		size_t len = next_rand() % 9;
		for (size_t i = 0; i < len; i++)
			fprintf(f, "%s%u", i ? " " : "", (unsigned)(next_rand() % 500));
		fputc('\n', f);
	}
	fclose(f);
	char *paths[] = {tmp_path("in.ids")};
	struct tn_source_opts so = {TN_SOURCE_IDS, 500, -1};
	struct tn_source *src;
	assert_int_equal(tn_source_open(&src, paths, 1, &so), TN_OK);
	struct tn_pack_opts po = {.out_dir = dir, .shard_tokens = shard_tokens, .memory = 1 << 20};
	struct tn_pack_stats st;
	struct tn_progress pr = {0};
	assert_int_equal(tn_pack(src, &po, &st, &pr), TN_OK);
	tn_source_free(src);
}

static void loader_epochs_ranks_and_resume(void **state)
{
	(void)state;
	char dir[256];
	snprintf(dir, sizeof dir, "%s/L", tmpdir);
	make_dir(dir, 3000, 997);
	const uint32_t n = 16, world = 3;
	struct tn_loader *l[3];
	for (uint32_t r = 0; r < world; r++) {
		struct tn_loader_opts o = {dir, "train", n, 42, 1, r, world};
		assert_int_equal(tn_loader_open(&l[r], &o), TN_OK);
	}
	uint64_t per = tn_loader_windows_per_epoch(l[0]);
	uint64_t windows = (tn_loader_tokens(l[0]) - 1) / n;
	assert_int_equal(per, windows / world);
	/* Unshuffled reference windows, to identify each window by content. */
	struct tn_loader_opts o = {dir, "train", n, 0, 0, 0, 1};
	struct tn_loader *seq;
	assert_int_equal(tn_loader_open(&seq, &o), TN_OK);
	uint32_t *ref = malloc(windows * (n + 1) * 4);
	for (uint64_t w = 0; w < windows; w++)
		tn_loader_next(seq, ref + w * (n + 1), NULL, NULL);
	for (uint64_t w = 0; w + 1 < windows; w++) /* consecutive windows share one token */
		assert_int_equal(ref[w * (n + 1) + n], ref[(w + 1) * (n + 1)]);
	char *seen = calloc(windows, 1);
	uint32_t tok[17], starts[16];
	size_t n_starts;
	for (uint32_t r = 0; r < world; r++)
		for (uint64_t p = 0; p < per; p++) {
			tn_loader_next(l[r], tok, starts, &n_starts);
			uint64_t w = 0;
			while (w < windows && memcmp(ref + w * (n + 1), tok, sizeof tok) != 0)
				w++;
			assert_true(w < windows);
			while (seen[w] && w < windows) /* identical windows: take the next copy */
				w++;
			assert_true(w < windows);
			seen[w] = 1;
		}
	/* Resume: a fresh loader at the same cursor gives the same windows. */
	struct tn_loader_cursor c = tn_loader_get_cursor(l[1]);
	uint32_t a[17], b[17];
	struct tn_loader_opts o1 = {dir, "train", n, 42, 1, 1, world};
	struct tn_loader *again;
	if (tn_loader_open(&again, &o1) != TN_OK)
		fail_msg("%s", tn_errmsg());
	assert_int_equal(tn_loader_set_cursor(again, c), TN_OK);
	for (int i = 0; i < 50; i++) {
		tn_loader_next(l[1], a, NULL, NULL);
		tn_loader_next(again, b, NULL, NULL);
		assert_memory_equal(a, b, sizeof a);
	}
	assert_int_equal(tn_loader_get_cursor(again).epoch, 1);
	free(seen);
	free(ref);
	tn_loader_free(seq);
	tn_loader_free(again);
	for (uint32_t r = 0; r < world; r++)
		tn_loader_free(l[r]);
}

static void loader_document_starts(void **state)
{
	(void)state;
	char dir[256];
	snprintf(dir, sizeof dir, "%s/M", tmpdir);
	FILE *f = fopen(tmp_path("m.ids"), "w");
	fputs("1 2 3\n\n4 5\n6\n7 8 9 1 2 3 4\n5\n", f); /* doc starts at 0,3,3,5,6,13 */
	fclose(f);
	char *paths[] = {tmp_path("m.ids")};
	struct tn_source_opts so = {TN_SOURCE_IDS, 10, -1};
	struct tn_source *src;
	assert_int_equal(tn_source_open(&src, paths, 1, &so), TN_OK);
	struct tn_pack_opts po = {.out_dir = dir, .shard_tokens = 4, .memory = 1 << 20};
	struct tn_pack_stats st;
	struct tn_progress pr = {0};
	assert_int_equal(tn_pack(src, &po, &st, &pr), TN_OK);
	tn_source_free(src);
	struct tn_loader_opts o = {dir, "train", 6, 0, 0, 0, 1};
	struct tn_loader *l;
	assert_int_equal(tn_loader_open(&l, &o), TN_OK);
	uint32_t tok[7], starts[6];
	size_t n;
	tn_loader_next(l, tok, starts, &n);
	const uint32_t want_tok0[] = {1, 2, 3, 4, 5, 6, 7}, want0[] = {0, 3, 5};
	assert_memory_equal(tok, want_tok0, sizeof tok);
	assert_int_equal(n, 3);
	assert_memory_equal(starts, want0, sizeof want0);
	tn_loader_next(l, tok, starts, &n);
	const uint32_t want_tok1[] = {7, 8, 9, 1, 2, 3, 4}, want1[] = {0};
	assert_memory_equal(tok, want_tok1, sizeof tok);
	assert_int_equal(n, 1);
	assert_memory_equal(starts, want1, sizeof want1);
	tn_loader_free(l);
}

int main(void)
{
	if (!mkdtemp(tmpdir))
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(stream_round_trip),
		cmocka_unit_test(stream_every_flip_and_cut),
		cmocka_unit_test(stream_rejects_out_of_vocab),
		cmocka_unit_test(stream_refuses_mixed_and_future),
		cmocka_unit_test(shard_refuses_future_version),
		cmocka_unit_test(extsort_matches_qsort),
		cmocka_unit_test(loader_epochs_ranks_and_resume),
		cmocka_unit_test(loader_document_starts),
	};
	int failed = cmocka_run_group_tests_name("shardio", tests, NULL, NULL);
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
	if (system(cmd) != 0)
		return 1;
	return failed;
}
