/* test_tok.c - unit tests of the tokenizer modules: the BPE merge engine
 * against a plain reference loop (short and long words), exact ids on the
 * shared reference texts through the library (one and several threads),
 * byte-level round trips of random bytes, SentencePiece's handling of
 * invalid UTF-8, and refusals of malformed tokenizer files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bpe.h"
#include "input.h"
#include "io.h"
#include "tokenize.h"
#include "tokenizer.h"
#include "util.h"

static char shared[512];

static const char *data(const char *rel)
{
	static char buf[4][1024];
	static int k;
	k = (k + 1) % 4;
	snprintf(buf[k], sizeof buf[k], "%s/data/%s", shared, rel);
	return buf[k];
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)rng;
}

/* The textbook loop: find the lowest-ranked adjacent pair, leftmost on
 * ties, merge it, repeat. */
static size_t reference_merge(uint32_t *ids, size_t n, const uint32_t *rank,
			      const uint32_t *merged, uint32_t alpha)
{
	for (;;) {
		size_t best = SIZE_MAX;
		uint32_t br = UINT32_MAX;
		for (size_t i = 0; i + 1 < n; i++) {
			if (ids[i] >= alpha || ids[i + 1] >= alpha)
				continue;
			uint32_t r = rank[ids[i] * alpha + ids[i + 1]];
			if (r < br) {
				br = r;
				best = i;
			}
		}
		if (best == SIZE_MAX)
			return n;
		ids[best] = merged[ids[best] * alpha + ids[best + 1]];
		memmove(ids + best + 1, ids + best + 2, (n - best - 2) * sizeof *ids);
		n--;
	}
}

/* Random merge tables over a small alphabet; words of every length, so both
 * the flat scan and the heap are checked against the reference. */
static void bpe_matches_reference(void **state)
{
	(void)state;
	enum { A = 40 };
	for (int round = 0; round < 20; round++) {
		struct tn_bpe *b;
		assert_int_equal(tn_bpe_new(&b, A), TN_OK);
		static uint32_t rank[A * A], merged[A * A];
		memset(rank, 0xff, sizeof rank);
		uint32_t r = 0;
		for (int k = 0; k < 300; k++) {
			uint32_t l = next_rand() % A, rr = next_rand() % A, m = next_rand() % A;
			if (rank[l * A + rr] != UINT32_MAX)
				continue;
			rank[l * A + rr] = r / 3; /* some equal ranks: ties */
			merged[l * A + rr] = m;
			assert_int_equal(tn_bpe_add_merge(b, l, rr, r / 3, m), TN_OK);
			r++;
		}
		static const size_t lens[] = { 2, 3, 7, 50, 96, 97, 300, 2000 };
		for (size_t li = 0; li < TN_ARRAY_LEN(lens); li++) {
			size_t n = lens[li];
			uint32_t *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
			for (size_t i = 0; i < n; i++)
				x[i] = y[i] = next_rand() % A;
			size_t nx = tn_bpe_merge(b, x, n);
			size_t ny = reference_merge(y, n, rank, merged, A);
			assert_int_equal(nx, ny);
			assert_memory_equal(x, y, nx * sizeof *x);
			free(x);
			free(y);
		}
		tn_bpe_free(b);
	}
}

static void read_text(const char *path, uint8_t **d, size_t *n)
{
	assert_int_equal(tn_read_file(path, d, n), TN_OK);
}

/* ids of a text as the reference files write them: "1 2 3\n" */
static char *format_ids(const struct tn_idvec *v)
{
	char *s = malloc(11 * v->n + 2);
	size_t k = 0;
	for (size_t i = 0; i < v->n; i++)
		k += (size_t)sprintf(s + k, i ? " %u" : "%u", v->v[i]);
	s[k++] = '\n';
	s[k] = 0;
	return s;
}

static void check_whole(const char *tok, const char *text, const char *ids, int threads)
{
	struct tn_tokenizer *t;
	assert_int_equal(tn_tokenizer_load(&t, data(tok), TN_TOK_AUTO), TN_OK);
	uint8_t *d, *want;
	size_t n, wn;
	read_text(data(text), &d, &n);
	read_text(data(ids), &want, &wn);
	struct tn_idvec v = { 0 };
	assert_int_equal(tn_tokenize_text(t, d, n, threads, &v), TN_OK);
	char *got = format_ids(&v);
	assert_int_equal(strlen(got), wn);
	assert_memory_equal(got, want, wn);
	free(got);
	tn_idvec_free(&v);
	free(d);
	free(want);
	tn_tokenizer_free(t);
}

static void reference_ids(void **state)
{
	(void)state;
	static const char *const tok[][2] = {
		{ "tokenizers/gpt2", "gpt2" }, { "tokenizers/gpt2/r50k_base.tiktoken", "gpt2" },
		{ "tokenizers/cl100k_base.tiktoken", "cl100k" },
		{ "tokenizers/spm8k/tokenizer.model", "spm" },
		{ "tokenizers/spm8k/tokenizer.json", "spm" },
	};
	for (size_t i = 0; i < TN_ARRAY_LEN(tok); i++) {
		char ids[128];
		snprintf(ids, sizeof ids, "reftok/cases.%s.whole.ids", tok[i][1]);
		check_whole(tok[i][0], "reftok/cases.txt", ids, 1);
		snprintf(ids, sizeof ids, "reftok/mixed.%s.whole.ids", tok[i][1]);
		/* 1 MB: cut into parts for the threads, the same ids */
		check_whole(tok[i][0], "reftok/mixed.txt", ids, 1);
		check_whole(tok[i][0], "reftok/mixed.txt", ids, 3);
	}
}

static void decode_all(const struct tn_tokenizer *t, const struct tn_idvec *v,
		       uint8_t **out, size_t *len)
{
	struct tn_detok d;
	size_t cap = 0;
	*out = NULL;
	*len = 0;
	tn_detok_begin(&d, t);
	assert_int_equal(tn_detok_run(&d, v->v, v->n, out, len, &cap), TN_OK);
}

/* decode(encode(x)) == x on any bytes: invalid UTF-8, NUL, long runs. */
static void byte_level_round_trip(void **state)
{
	(void)state;
	static const char *const toks[] = { "tokenizers/gpt2", "tokenizers/cl100k_base.tiktoken" };
	static const char alphabet[] = "aZ 9\n\t'.\xc3\xa9\xe2\x96\x81\xf0\x9f\x98\x80\xff\x80\xc3";
	for (size_t k = 0; k < TN_ARRAY_LEN(toks); k++) {
		struct tn_tokenizer *t;
		struct tn_tok_state *s;
		assert_int_equal(tn_tokenizer_load(&t, data(toks[k]), TN_TOK_AUTO), TN_OK);
		assert_int_equal(tn_tok_state_new(&s, t), TN_OK);
		for (int round = 0; round < 300; round++) {
			size_t n = next_rand() % (round < 290 ? 64 : 5000);
			uint8_t *x = malloc(n + 1);
			for (size_t i = 0; i < n; i++)
				x[i] = round % 2 ? (uint8_t)next_rand()
						 : (uint8_t)alphabet[next_rand() % (sizeof alphabet - 1)];
			struct tn_idvec v = { 0 };
			assert_int_equal(tn_tokenizer_encode(s, x, n, &v), TN_OK);
			uint8_t *y;
			size_t m;
			decode_all(t, &v, &y, &m);
			assert_int_equal(m, n);
			if (n)
				assert_memory_equal(x, y, n);
			free(x);
			free(y);
			tn_idvec_free(&v);
		}
		tn_tok_state_free(s);
		tn_tokenizer_free(t);
	}
}

/* SentencePiece reads each invalid byte as U+FFFD; NUL is a character. */
static void spm_invalid_utf8(void **state)
{
	(void)state;
	struct tn_tokenizer *t;
	struct tn_tok_state *s;
	assert_int_equal(tn_tokenizer_load(&t, data("tokenizers/spm8k/tokenizer.model"),
					   TN_TOK_AUTO), TN_OK);
	assert_int_equal(tn_tok_state_new(&s, t), TN_OK);
	struct tn_idvec a = { 0 }, b = { 0 };
	assert_int_equal(tn_tokenizer_encode(s, (const uint8_t *)"x\xffy\x00z", 5, &a), TN_OK);
	assert_int_equal(tn_tokenizer_encode(s, (const uint8_t *)"x\xef\xbf\xbdy\x00z", 7, &b), TN_OK);
	assert_int_equal(a.n, b.n);
	assert_memory_equal(a.v, b.v, a.n * sizeof *a.v);
	uint8_t *y;
	size_t m;
	decode_all(t, &a, &y, &m);
	assert_int_equal(m, 7);
	assert_memory_equal(y, "x\xef\xbf\xbdy\x00z", 7);
	/* the empty text: no ids at all (no dummy prefix alone) */
	a.n = 0;
	assert_int_equal(tn_tokenizer_encode(s, (const uint8_t *)"", 0, &a), TN_OK);
	assert_int_equal(a.n, 0);
	free(y);
	tn_idvec_free(&a);
	tn_idvec_free(&b);
	tn_tok_state_free(s);
	tn_tokenizer_free(t);
}

/* Multi-megabyte words stay fast: the heap, not a quadratic scan. */
static void long_words_are_linear(void **state)
{
	(void)state;
	static const char *const toks[] = { "tokenizers/gpt2", "tokenizers/spm8k/tokenizer.model" };
	size_t n = 4u << 20;
	uint8_t *x = malloc(n);
	for (size_t i = 0; i < n; i++)
		x[i] = (uint8_t)("abcdefghij"[next_rand() % 10]);
	for (size_t k = 0; k < TN_ARRAY_LEN(toks); k++) {
		struct tn_tokenizer *t;
		assert_int_equal(tn_tokenizer_load(&t, data(toks[k]), TN_TOK_AUTO), TN_OK);
		struct tn_idvec v = { 0 };
		double t0 = tn_now();
		assert_int_equal(tn_tokenize_text(t, x, n, 1, &v), TN_OK);
		assert_true(tn_now() - t0 < 20.0);
		assert_true(v.n > n / 10 && v.n < n);
		tn_idvec_free(&v);
		tn_tokenizer_free(t);
	}
	free(x);
}

static void write_tmp(const char *path, const void *d, size_t n)
{
	assert_int_equal(tn_write_file_atomic(path, d, n), TN_OK);
}

static void expect_load_error(const char *path, int kind, const char *what)
{
	struct tn_tokenizer *t = NULL;
	int rc = tn_tokenizer_load(&t, path, (enum tn_tok_kind)kind);
	assert_int_not_equal(rc, TN_OK);
	assert_null(t);
	if (!strstr(tn_errmsg(), what))
		fail_msg("'%s' lacks '%s'", tn_errmsg(), what);
}

static void bad_files(void **state)
{
	(void)state;
	char dir[] = "/tmp/tn-tok-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char p[256];
	snprintf(p, sizeof p, "%s/missing.model", dir);
	expect_load_error(p, TN_TOK_AUTO, "missing.model");
	/* a SentencePiece model cut short */
	uint8_t *m;
	size_t n;
	read_text(data("tokenizers/spm8k/tokenizer.model"), &m, &n);
	snprintf(p, sizeof p, "%s/cut.model", dir);
	write_tmp(p, m, n / 2);
	expect_load_error(p, TN_TOK_AUTO, "truncated");
	free(m);
	snprintf(p, sizeof p, "%s/bad.json", dir);
	write_tmp(p, "{\"model\": {\"type\": \"BPE\", ", 26);
	expect_load_error(p, TN_TOK_AUTO, "bad.json: line 1");
	static const char wp[] = "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}";
	write_tmp(p, wp, sizeof wp - 1);
	expect_load_error(p, TN_TOK_AUTO, "WordPiece");
	snprintf(p, sizeof p, "%s/r50k_base.tiktoken", dir);
	write_tmp(p, "IQ== 0\n!!!! 1\n", 14);
	expect_load_error(p, TN_TOK_AUTO, "rank 1: bad base64");
	write_tmp(p, "IQ== 0\nIg==\n", 12);
	expect_load_error(p, TN_TOK_AUTO, "line 2");
	snprintf(p, sizeof p, "%s/what.bin", dir);
	write_tmp(p, "\x01\x02\x03", 3);
	expect_load_error(p, TN_TOK_AUTO, "use --kind");
	expect_load_error(dir, TN_TOK_AUTO, "no tokenizer here");
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

/* Corrupted tokenizer files load or fail cleanly; what loads encodes. */
static void corrupt_files(void **state)
{
	(void)state;
	static const char *const files[][2] = {
		{ "tests/data/tok/nfkc400.model", "x.model" },
		{ NULL, "tokenizers/spm8k/tokenizer.json" },
		{ NULL, "tokenizers/gpt2/r50k_base.tiktoken" },
	};
	char dir[] = "/tmp/tn-tok-XXXXXX";
	assert_non_null(mkdtemp(dir));
	uint8_t *text;
	size_t tn;
	read_text(data("reftok/cases.txt"), &text, &tn);
	for (size_t f = 0; f < TN_ARRAY_LEN(files); f++) {
		const char *src = files[f][0] ? files[f][0] : data(files[f][1]);
		const char *base = strrchr(files[f][1], '/') ? strrchr(files[f][1], '/') + 1 : files[f][1];
		uint8_t *d;
		size_t n;
		read_text(src, &d, &n);
		char p[256];
		snprintf(p, sizeof p, "%s/%s", dir, base);
		for (int round = 0; round < 60; round++) {
			uint8_t *c = malloc(n);
			memcpy(c, d, n);
			size_t len = round % 3 == 0 ? next_rand() % n : n;
			for (int k = 0; k < 1 + round % 8; k++)
				c[next_rand() % len] ^= (uint8_t)(1 + next_rand() % 255);
			write_tmp(p, c, len);
			struct tn_tokenizer *t = NULL;
			if (tn_tokenizer_load(&t, p, TN_TOK_AUTO) == TN_OK) {
				struct tn_tok_state *s;
				struct tn_idvec v = { 0 };
				assert_int_equal(tn_tok_state_new(&s, t), TN_OK);
				int rc = tn_tokenizer_encode(s, text, tn, &v);
				assert_true(rc == TN_OK || rc == TN_EDATA);
				tn_idvec_free(&v);
				tn_tok_state_free(s);
				tn_tokenizer_free(t);
			} else {
				assert_null(t);
				assert_true(strlen(tn_errmsg()) > 0);
			}
			free(c);
		}
		free(d);
	}
	free(text);
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

/* An id outside the vocabulary is an error, not garbage. */
static void decode_out_of_range(void **state)
{
	(void)state;
	struct tn_tokenizer *t;
	assert_int_equal(tn_tokenizer_load(&t, data("tokenizers/gpt2"), TN_TOK_AUTO), TN_OK);
	uint32_t ids[] = { 31373, 50257 };
	struct tn_detok d;
	uint8_t *out = NULL;
	size_t len = 0, cap = 0;
	tn_detok_begin(&d, t);
	assert_int_equal(tn_detok_run(&d, ids, 2, &out, &len, &cap), TN_EDATA);
	assert_non_null(strstr(tn_errmsg(), "50257"));
	free(out);
	tn_tokenizer_free(t);
}

/* Many small batches, several threads: still every line's ids in order. */
static void batches_keep_order(void **state)
{
	(void)state;
	struct tn_tokenizer *t;
	assert_int_equal(tn_tokenizer_load(&t, data("tokenizers/gpt2"), TN_TOK_AUTO), TN_OK);
	char *paths[] = { (char *)data("reftok/mixed.txt") };
	struct tn_input_opts io = { TN_CUT_LINES, NULL };
	struct tn_input *in;
	assert_int_equal(tn_input_open(&in, paths, 1, &io), TN_OK);
	char out_path[] = "/tmp/tn-tok-ids-XXXXXX";
	int fd = mkstemp(out_path);
	assert_true(fd >= 0);
	close(fd);
	struct tn_out out;
	assert_int_equal(tn_out_open(&out, out_path), TN_OK);
	struct tn_tokenize_opts o = { 3, 1, 0, 4096 };
	struct tn_tokenize_stats st;
	struct tn_progress pr = { 0 };
	assert_int_equal(tn_tokenize_run(t, in, &out, &o, &st, &pr), TN_OK);
	assert_int_equal(tn_out_commit(&out), TN_OK);
	tn_out_abort(&out);
	assert_int_equal(st.docs, 25153);
	uint8_t *got, *want;
	size_t gn, wn;
	read_text(out_path, &got, &gn);
	read_text(data("reftok/mixed.gpt2.lines.ids"), &want, &wn);
	assert_int_equal(gn, wn);
	assert_memory_equal(got, want, wn);
	unlink(out_path);
	free(got);
	free(want);
	tn_input_free(in);
	tn_tokenizer_free(t);
}

int main(void)
{
	const char *env = getenv("TN_SHARED");
	snprintf(shared, sizeof shared, "%s", env ? env : "../shared");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(bpe_matches_reference),
		cmocka_unit_test(reference_ids),
		cmocka_unit_test(byte_level_round_trip),
		cmocka_unit_test(spm_invalid_utf8),
		cmocka_unit_test(long_words_are_linear),
		cmocka_unit_test(bad_files),
		cmocka_unit_test(corrupt_files),
		cmocka_unit_test(decode_out_of_range),
		cmocka_unit_test(batches_keep_order),
	};
	return cmocka_run_group_tests_name("tok", tests, NULL, NULL);
}
