/* test_config.c - config.json reading and writing, presets, --set, the
 * consistency checks and their messages, the decay table (against the
 * values the official code used, from golden meta), and parameter counts
 * of the released sizes (MODEL.md 3.1). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "safetensors.h"
#include "util.h"

static const char *shared_dir(void)
{
	const char *s = getenv("TN_SHARED");
	return s ? s : "../shared";
}

static void presets(void **s)
{
	(void)s;
	struct tn_config c;
	for (int i = 0; tn_config_presets[i]; i++) {
		assert_int_equal(tn_config_preset(&c, tn_config_presets[i]), TN_OK);
		assert_int_equal(tn_config_check(&c, "preset"), TN_OK);
	}
	assert_int_equal(tn_config_preset(&c, "tnl-1b"), TN_OK);
	assert_int_equal(tn_config_params(&c), 1020266496ull);
	assert_float_equal(tn_config_embed_scale(&c), sqrt(2048.0), 1e-9);
	assert_int_equal(tn_config_preset(&c, "tnl-7b"), TN_OK);
	assert_int_equal(tn_config_params(&c), 6836719616ull); /* 6.837 B */
	assert_float_equal(tn_config_embed_scale(&c), 1.0, 0);
	assert_int_equal(tn_config_preset(&c, "huge"), TN_EUSAGE);
}

/* s[l,h] as the official code computed them (golden decay_s, fp64 copies
 * of fp32 values): bit-exact, including the 5-head rule of B. */
static void decay_matches_official(void **s)
{
	(void)s;
	const char *names[] = {"A", "B", "C", "tvb"};
	for (size_t k = 0; k < 4; k++) {
		char path[512];
		struct tn_config c;
		snprintf(path, sizeof(path), "%s/golden/%s/config.json", shared_dir(), names[k]);
		assert_int_equal(tn_config_load(&c, path), TN_OK);
		snprintf(path, sizeof(path), "%s/golden/%s/golden.safetensors", shared_dir(), names[k]);
		struct tn_st st;
		assert_int_equal(tn_st_open(&st, path), TN_OK);
		const struct tn_st_tensor *t = tn_st_find(&st, "decay_s");
		assert_non_null(t);
		assert_int_equal(t->shape[0] * t->shape[1], c.layers * c.heads);
		for (int l = 0; l < c.layers; l++)
			for (int h = 0; h < c.heads; h++) {
				double want;
				memcpy(&want, t->data + 8 * (l * c.heads + h), 8);
				if ((float)want != tn_config_decay(&c, l, h))
					fail_msg("%s: s[%d,%d] = %.9g, official %.9g", names[k], l, h,
						 tn_config_decay(&c, l, h), want);
			}
		tn_st_close(&st);
	}
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void expect_load_error(const char *text, const char *msg)
{
	char path[64];
	snprintf(path, sizeof(path), "/tmp/tn-test-config-%d.json", (int)getpid());
	write_text(path, text);
	struct tn_config c;
	assert_int_equal(tn_config_load(&c, path), TN_EDATA);
	if (!strstr(tn_errmsg(), msg))
		fail_msg("message '%s' lacks '%s'", tn_errmsg(), msg);
	unlink(path);
}

static void bad_configs(void **s)
{
	(void)s;
	const char *base = "\"vocab_size\": 10, \"decoder_attention_heads\": 2, ";
	char t[512];
	snprintf(t, sizeof(t), "{%s \"decoder_embed_dim\": 9, \"decoder_layers\": 2}", base);
	expect_load_error(t, "decoder_embed_dim 9 is not a positive multiple");
	snprintf(t, sizeof(t), "{%s \"decoder_embed_dim\": 8, \"decoder_layers\": 1}", base);
	expect_load_error(t, "decoder_layers 1");
	snprintf(t, sizeof(t), "{%s \"decoder_embed_dim\": 8, \"decoder_layers\": 2, \"hidden_dim\": 16}",
		 base);
	expect_load_error(t, "hidden_dim 16 differs");
	snprintf(t, sizeof(t), "{%s \"decoder_embed_dim\": 8, \"decoder_layers\": 2, "
		 "\"norm_type\": \"layernorm\"}", base);
	expect_load_error(t, "norm_type must be");
	snprintf(t, sizeof(t), "{%s \"decoder_embed_dim\": 8, \"decoder_layers\": 2, "
		 "\"linear_act_fun\": \"gelu\"}", base);
	expect_load_error(t, "linear_act_fun 'gelu' is not supported");
	snprintf(t, sizeof(t), "{%s \"decoder_embed_dim\": 8, \"decoder_layers\": 2, "
		 "\"linear_use_lrpe_list\": [1, 0, 1]}", base);
	expect_load_error(t, "flag for layer 2 of 2");
	expect_load_error("{\"vocab_size\": 10}", "'decoder_embed_dim' is missing");
	expect_load_error("{\"vocab_size\": 10,", "line 1");
}

static void set_and_round_trip(void **s)
{
	(void)s;
	struct tn_config c, d;
	assert_int_equal(tn_config_preset(&c, "small"), TN_OK);
	assert_int_equal(tn_config_set(&c, "vocab_size=321"), TN_OK);
	assert_int_equal(tn_config_set(&c, "decoder_layers=3"), TN_OK);
	assert_int_equal(tn_config_set(&c, "linear_use_lrpe_list=1,1,0"), TN_OK);
	assert_int_equal(tn_config_set(&c, "linear_act_fun=relu"), TN_OK);
	assert_int_equal(tn_config_set(&c, "no_scale_embedding=true"), TN_OK);
	assert_int_equal(tn_config_set(&c, "glu_dim=-1"), TN_OK);
	assert_int_equal(c.glu_dim, c.d);
	assert_int_equal(tn_config_set(&c, "no_such_key=1"), TN_EUSAGE);
	assert_int_equal(tn_config_set(&c, "layers=3"), TN_EUSAGE); /* a part of a key is no key */
	assert_int_equal(tn_config_set(&c, "decoder_layers"), TN_EUSAGE);
	assert_int_equal(tn_config_set(&c, "decoder_layers=many"), TN_EDATA);
	char path[64];
	snprintf(path, sizeof(path), "/tmp/tn-test-config-%d.json", (int)getpid());
	assert_int_equal(tn_config_save(&c, path, "float32"), TN_OK);
	assert_int_equal(tn_config_load(&d, path), TN_OK);
	unlink(path);
	assert_int_equal(d.vocab_size, 321);
	assert_int_equal(d.layers, 3);
	assert_int_equal(d.lrpe[0] + 2 * d.lrpe[1] + 4 * d.lrpe[2], 3);
	assert_int_equal(d.act, TN_ACT_RELU);
	assert_int_equal(d.no_scale_embedding, 1);
	assert_int_equal(d.glu_dim, c.d);
	assert_int_equal(tn_config_params(&c), tn_config_params(&d));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(presets),
		cmocka_unit_test(decay_matches_official),
		cmocka_unit_test(bad_configs),
		cmocka_unit_test(set_and_round_trip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
