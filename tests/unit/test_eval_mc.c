/* test_eval_mc.c - task files and multiple-choice scoring: the lm-eval
 * prompts of every layout (items written here), few-shot contexts, bad lines
 * named by file:line, shared-prefix log-likelihoods equal to scoring each
 * context + choice from scratch and to the parallel form, and every set of
 * ../shared/data/evals run through tn_eval_mc_main with a random vocab-8000
 * model and the spm8k tokenizer, its --details checked the same way. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "eval_mc.h"
#include "io.h"
#include "util.h"
#include "tiny_model.h"

static const char *shared_dir(void)
{
	const char *s = getenv("TN_SHARED");
	return s ? s : "../shared";
}

static char tmpdir[256];

static int make_tmp(void **s)
{
	(void)s;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/tn_eval_mc.XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_tmp(void **s)
{
	(void)s;
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd);
}

static const char *write_tmp(const char *name, const char *text)
{
	static char path[400];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	assert_int_equal(tn_write_file_atomic(path, text, strlen(text)), TN_OK);
	return path;
}

static void load_ok(struct tn_task *t, const char *name, const char *text)
{
	if (tn_task_load(t, write_tmp(name, text)))
		fail_msg("%s", tn_errmsg());
}

static void layouts(void **s)
{
	(void)s;
	struct tn_task t;
	load_ok(&t, "m.jsonl",
		"{\"question\": \"  Which is red? \", \"subject\": \"x\", \"choices\": [\"sky\", "
		"\"blood\", \"grass\"], \"answer\": 1}\n"
		"{\"question\": \"Two?\", \"choices\": [\"1\", \"2\"], \"answer\": \"1\"}\n");
	assert_int_equal(t.kind, TN_TASK_MMLU);
	assert_int_equal(t.n, 2);
	assert_string_equal(t.items[0].text, "Which is red?\nA. sky\nB. blood\nC. grass\nAnswer:");
	assert_int_equal(t.items[0].n_choices, 3);
	assert_string_equal(t.items[0].choices[2], "C");
	assert_int_equal(t.items[0].gold, 1);
	assert_int_equal(t.items[1].gold, 1);
	char *ctx;
	assert_int_equal(tn_task_context(&t, 1, 5, &ctx), TN_OK);
	assert_string_equal(ctx, "Which is red?\nA. sky\nB. blood\nC. grass\nAnswer: B\n\n"
				 "Two?\nA. 1\nB. 2\nAnswer:");
	free(ctx);
	tn_task_free(&t);
	load_ok(&t, "b.jsonl", "{\"passage\": \"ice: frozen water.\", \"question\": \"is ice cold\", "
			       "\"label\": true, \"idx\": 4}");
	assert_int_equal(t.kind, TN_TASK_BOOLQ);
	assert_string_equal(t.items[0].text, "ice: frozen water.\nQuestion: is ice cold?\nAnswer:");
	assert_string_equal(t.items[0].choices[0], "no");
	assert_string_equal(t.items[0].choices[1], "yes");
	assert_int_equal(t.items[0].gold, 1);
	tn_task_free(&t);
	load_ok(&t, "h.jsonl", "{\"ctx\": \"The cat sat\", \"endings\": [\"on the mat.\", \"é\"], "
			       "\"label\": 0}\n\n");
	assert_int_equal(t.kind, TN_TASK_HELLASWAG);
	assert_string_equal(t.items[0].text, "The cat sat");
	assert_string_equal(t.items[0].choices[1], "é");
	tn_task_free(&t);
	load_ok(&t, "l.jsonl", "{\"text\": \"a  b c word\"}\n{\"text\": \"x y\"}\n");
	assert_int_equal(t.kind, TN_TASK_LAMBADA);
	assert_string_equal(t.items[0].text, "a  b c");
	assert_string_equal(t.items[0].choices[0], "word");
	assert_int_equal(tn_task_context(&t, 0, 1, &ctx), TN_OK);
	assert_string_equal(ctx, "x y\n\na  b c");
	free(ctx);
	tn_task_free(&t);
}

static void expect_bad(const char *text, const char *msg)
{
	struct tn_task t;
	assert_int_equal(tn_task_load(&t, write_tmp("bad.jsonl", text)), TN_EDATA);
	if (!strstr(tn_errmsg(), msg))
		fail_msg("'%s' lacks '%s'", tn_errmsg(), msg);
}

static void bad_lines(void **s)
{
	(void)s;
	const char *ok = "{\"passage\": \"p\", \"question\": \"q\", \"label\": 0}\n";
	char buf[512];
	snprintf(buf, sizeof(buf), "%s%s{\"passage\": \"p\", \"label\": 0}\n", ok, ok);
	expect_bad(buf, "bad.jsonl:3: missing or bad question");
	snprintf(buf, sizeof(buf), "%s{\"passage\": \"p\", \"question\": \"q\", \"label\": 2}\n", ok);
	expect_bad(buf, "bad.jsonl:2: answer 2 is not one of the 2 choices");
	snprintf(buf, sizeof(buf), "%s{\"passage\": \"p\",\n", ok);
	expect_bad(buf, "bad.jsonl:2: not a JSON object");
	snprintf(buf, sizeof(buf), "%s{\"text\": \"a b\"}\n", ok);
	expect_bad(buf, "bad.jsonl:2: a lambada item in a boolq file");
	expect_bad("{\"foo\": 1}\n", "bad.jsonl:1: no key of a known layout");
	expect_bad("{\"question\": \"q\", \"choices\": [\"a\", 3], \"answer\": 0}\n",
		   "bad.jsonl:1: missing or bad choices");
	expect_bad("{\"text\": \"oneword\"}\n", "bad.jsonl:1: missing or bad text");
	expect_bad("\n", "no items");
}

/* Log-likelihood of cont after ctx by the parallel form over ctx + cont[:-1]. */
static double parallel_ll(struct tn_model *m, const int32_t *ctx, size_t nctx,
			  const int32_t *cont, size_t ncont)
{
	size_t n = nctx + ncont - 1;
	int V = m->cfg.vocab_size;
	if (!ncont)
		return 0;
	int32_t *seq = malloc(n * sizeof(int32_t));
	float *lg = malloc(n * V * sizeof(float));
	memcpy(seq, ctx, nctx * sizeof(int32_t));
	memcpy(seq + nctx, cont, (ncont - 1) * sizeof(int32_t));
	assert_int_equal(tn_model_forward(m, seq, NULL, 1, (int)n, NULL), TN_OK);
	assert_int_equal(tn_model_logits(m, lg), TN_OK);
	double ll = 0;
	for (size_t t = 0; t < ncont; t++) {
		const float *x = lg + (nctx - 1 + t) * V;
		double mx = x[0], sum = 0;
		for (int v = 1; v < V; v++)
			mx = fmax(mx, x[v]);
		for (int v = 0; v < V; v++)
			sum += exp(x[v] - mx);
		ll += x[cont[t]] - mx - log(sum);
	}
	free(seq);
	free(lg);
	return ll;
}

static void fill(int32_t *t, size_t n, int V, uint64_t seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		t[i] = (int32_t)((seed >> 33) % (uint64_t)V);
	}
}

/* Shared prefix = each choice from scratch = parallel form (fp32 rounding). */
static void shared_equals_scratch(void **s)
{
	(void)s;
	struct tn_model *m = tiny_model(29, 20, 5, 3, 0.3, 17);
	const size_t nctx[] = {1, 7, 300}; /* 300 crosses the prefill block */
	int32_t ctx[300], c0[5], c1[1], c2[3];
	int32_t *cont[] = {c0, c1, c2, c2};
	const size_t ncont[] = {5, 1, 3, 0};
	fill(ctx, 300, 29, 1);
	fill(c0, 5, 29, 2);
	fill(c1, 1, 29, 3);
	fill(c2, 3, 29, 4);
	for (size_t k = 0; k < 3; k++) {
		double a[4], b[4];
		int ga[4], gb[4];
		assert_int_equal(tn_mc_loglik(m, ctx, nctx[k], cont, ncont, 4, 1, a, ga), TN_OK);
		assert_int_equal(tn_mc_loglik(m, ctx, nctx[k], cont, ncont, 4, 0, b, gb), TN_OK);
		for (int c = 0; c < 4; c++) {
			double p = parallel_ll(m, ctx, nctx[k], cont[c], ncont[c]);
			if (!(fabs(a[c] - b[c]) <= 1e-5 * (1 + fabs(b[c])) &&
			      fabs(a[c] - p) <= 1e-4 * (1 + fabs(p))))
				fail_msg("ctx %zu choice %d: shared %.9g scratch %.9g parallel %.9g",
					 nctx[k], c, a[c], b[c], p);
			assert_int_equal(ga[c], gb[c]);
		}
		assert_true(a[3] == 0 && ga[3] == 1);
	}
	assert_int_equal(tn_mc_loglik(m, ctx, 0, cont, ncont, 4, 1, NULL, NULL), TN_EDATA);
	tn_model_free(m);
}

/* Three items scored as one batch on the backend under test (TN_BACKEND)
 * give each item's log-likelihoods scored alone on the CPU, with and
 * without the shared context. */
static void items_batched(void **s)
{
	(void)s;
	struct tn_model *m = tiny_model_on(test_backend(), 29, 20, 5, 3, 0.3, 17);
	struct tn_model *ref = tiny_model(29, 20, 5, 3, 0.3, 17);
	int32_t ctx[320], c0[5], c1[1], c2[3];
	int32_t *cont[] = {c0, c1, c2, c2};
	const size_t ncont[] = {5, 1, 3, 0}, nctx[] = {7, 300, 1};
	const int nc[] = {4, 2, 3};
	fill(ctx, 320, 29, 1);
	fill(c0, 5, 29, 2);
	fill(c1, 1, 29, 3);
	fill(c2, 3, 29, 4);
	double ll[3][4];
	int g[3][4];
	struct tn_mc_item it[3];
	for (int share = 0; share < 2; share++) {
		for (int j = 0; j < 3; j++) /* item j: its own context and choices */
			it[j] = (struct tn_mc_item){ctx + 10 * j, nctx[j], cont + 4 - nc[j],
						    ncont + 4 - nc[j], nc[j], ll[j], g[j]};
		assert_int_equal(tn_mc_loglik_items(m, it, 3, share), TN_OK);
		for (int j = 0; j < 3; j++) {
			double want[4];
			int gw[4];
			assert_int_equal(tn_mc_loglik(ref, it[j].ctx, nctx[j], it[j].cont, it[j].ncont,
						      nc[j], 1, want, gw), TN_OK);
			for (int c = 0; c < nc[j]; c++) {
				if (!(fabs(ll[j][c] - want[c]) <= 1e-5 * (1 + fabs(want[c]))))
					fail_msg("item %d choice %d: batched %.9g alone %.9g", j, c,
						 ll[j][c], want[c]);
				assert_int_equal(g[j][c], gw[c]);
			}
		}
	}
	tn_model_free(m);
	tn_model_free(ref);
}

/* A model dir of a random vocab-8000 model for the spm8k tokenizer. */
static const char *save_model(void)
{
	static char dir[400];
	char path[500];
	snprintf(dir, sizeof(dir), "%s/model", tmpdir);
	mkdir(dir, 0755);
	struct tn_model *m = tiny_model(8000, 16, 2, 2, 0.3, 23);
	snprintf(path, sizeof(path), "%s/config.json", dir);
	assert_int_equal(tn_config_save(&m->cfg, path, "float32"), TN_OK);
	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	assert_int_equal(tn_model_save_weights(m, path, TN_F32), TN_OK);
	tn_model_free(m);
	return dir;
}

static int32_t *encode(struct tn_tok_state *ts, const char *s, size_t len, size_t *n)
{
	struct tn_idvec v = {0};
	assert_int_equal(tn_tokenizer_encode(ts, (const uint8_t *)s, len, &v), TN_OK);
	*n = v.n;
	return (int32_t *)v.v;
}

/* Every item's details against the parallel form, tokens as lm-eval's _encode_pair. */
static void check_details(struct tn_model *m, struct tn_tok_state *ts, const char *task,
			  const char *details, int shots, size_t limit)
{
	struct tn_task t;
	assert_int_equal(tn_task_load(&t, task), TN_OK);
	FILE *f = fopen(details, "r");
	assert_non_null(f);
	char line[1 << 16];
	size_t i = 0;
	for (; fgets(line, sizeof(line), f); i++) {
		json_t *o = json_loads(line, 0, NULL), *ll = json_object_get(o, "ll");
		assert_non_null(ll);
		char *ctx;
		assert_int_equal(tn_task_context(&t, i, shots, &ctx), TN_OK);
		size_t nc, nw;
		int32_t *c = encode(ts, ctx, strlen(ctx), &nc);
		for (int k = 0; k < t.items[i].n_choices; k++) {
			char *w;
			assert_true(asprintf(&w, "%s %s", ctx, t.items[i].choices[k]) > 0);
			int32_t *wi = encode(ts, w, strlen(w), &nw);
			double p = parallel_ll(m, c, nc, wi + nc, nw - nc);
			double got = json_real_value(json_array_get(ll, (size_t)k));
			if (!(fabs(got - p) <= 1e-4 * (1 + fabs(p))))
				fail_msg("%s item %zu choice %d: %.9g, parallel %.9g", task, i, k, got, p);
			free(w);
			free(wi);
		}
		free(c);
		free(ctx);
		json_decref(o);
	}
	assert_int_equal(i, limit);
	fclose(f);
	tn_task_free(&t);
}

static void shared_sets(void **s)
{
	(void)s;
	const char *sets[] = {"wn_define", "wn_cloze", "wn_boolq", "quiz_mc", "moby_lambada",
			      "moby_next"};
	char tok_path[400], task[400], details[400];
	snprintf(tok_path, sizeof(tok_path), "%s/data/tokenizers/spm8k/tokenizer.model",
		 shared_dir());
	const char *dir = save_model();
	struct tn_model *m;
	struct tn_tokenizer *tok;
	struct tn_tok_state *ts;
	assert_int_equal(tn_model_load(&m, dir, &tn_backend_cpu), TN_OK);
	if (tn_tokenizer_load(&tok, tok_path, TN_TOK_AUTO))
		fail_msg("%s", tn_errmsg());
	assert_int_equal(tn_tok_state_new(&ts, tok), TN_OK);
	snprintf(details, sizeof(details), "%s/details.jsonl", tmpdir);
	for (size_t k = 0; k < TN_ARRAY_LEN(sets); k++) {
		snprintf(task, sizeof(task), "%s/data/evals/%s.jsonl", shared_dir(), sets[k]);
		int shots = k % 2; /* some with one solved example before */
		char shot_s[4], batch_s[4];
		snprintf(shot_s, sizeof(shot_s), "%d", shots);
		snprintf(batch_s, sizeof(batch_s), "%d", (int)(k % 3) + 1); /* 1 to 3 items a batch */
		char *argv[] = {"mc", "-m", (char *)dir, "-t", tok_path, "--task", task,
				"--limit", "3", "--shots", shot_s, "--details", details, "--json",
				"--batch", batch_s, NULL};
		fflush(stdout);
		assert_int_equal(tn_eval_mc_main((int)TN_ARRAY_LEN(argv) - 1, argv), 0);
		check_details(m, ts, task, details, shots, 3);
	}
	char *bad[] = {"mc", "-m", (char *)dir, "--task", task, NULL};
	assert_int_equal(tn_eval_mc_main(5, bad), TN_EUSAGE);
	tn_tok_state_free(ts);
	tn_tokenizer_free(tok);
	tn_model_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(layouts),
		cmocka_unit_test(bad_lines),
		cmocka_unit_test(shared_equals_scratch),
		cmocka_unit_test(shared_sets),
		cmocka_unit_test(items_batched),
	};
	return cmocka_run_group_tests(tests, make_tmp, remove_tmp);
}
