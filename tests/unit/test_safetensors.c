/* test_safetensors.c - dtype conversions (bf16 and fp16 rounding, special
 * values) and the safetensors reader and writer: round trips in every
 * float dtype, and the messages for corrupt headers, gaps, truncation,
 * missing tensors and wrong shapes. */
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

#include "io.h"
#include "safetensors.h"
#include "tensor.h"
#include "util.h"

static char path[64];

static void conversions(void **s)
{
	(void)s;
	assert_int_equal(tn_f32_to_bf16(1.0f), 0x3f80);
	assert_int_equal(tn_f32_to_bf16(1.00390625f), 0x3f80); /* tie: to even */
	assert_int_equal(tn_f32_to_bf16(1.01171875f), 0x3f82); /* tie: to even, upward */
	assert_true(isnan(tn_bf16_to_f32(tn_f32_to_bf16(NAN))));
	assert_true(tn_bf16_to_f32(tn_f32_to_bf16(-INFINITY)) == -INFINITY);
	assert_int_equal(tn_f32_to_f16(1.0f), 0x3c00);
	assert_int_equal(tn_f32_to_f16(65504.0f), 0x7bff);
	assert_int_equal(tn_f32_to_f16(70000.0f), 0x7c00);
	assert_int_equal(tn_f32_to_f16(-2.0f), 0xc000);
	assert_int_equal(tn_f32_to_f16(5.9604644775390625e-08f), 0x0001); /* smallest subnormal */
	assert_int_equal(tn_f32_to_f16(1.00048828125f), 0x3c00);           /* tie: to even */
	assert_true(isnan(tn_f16_to_f32(tn_f32_to_f16(NAN))));
	for (uint32_t h = 0; h < 0x7c00; h++) /* every finite positive half round-trips */
		assert_int_equal(tn_f32_to_f16(tn_f16_to_f32((uint16_t)h)), h);
}

static void round_trip(void **s)
{
	(void)s;
	float a[6] = {1.5f, -2.25f, 3.0f, 0.1f, 1e-3f, -7.0f}, b[3] = {4, 5, 6}, out[6];
	int32_t ids[2] = {7, -1};
	struct tn_st_entry e[] = {
		{"a", TN_F32, 2, {2, 3}, a},
		{"a.bf16", TN_BF16, 2, {3, 2}, a},
		{"a.f16", TN_F16, 1, {6}, a},
		{"b", TN_F64, 1, {3}, b},
		{"ids", TN_I32, 1, {2}, ids},
	};
	assert_int_equal(tn_st_write(path, e, 5), TN_OK);
	struct tn_st st;
	assert_int_equal(tn_st_open(&st, path), TN_OK);
	assert_int_equal(st.n, 5);
	assert_int_equal(tn_st_read_f32(&st, "a", (int64_t[]){2, 3}, 2, out), TN_OK);
	assert_memory_equal(out, a, sizeof(a));
	assert_int_equal(tn_st_read_f32(&st, "a.bf16", (int64_t[]){3, 2}, 2, out), TN_OK);
	for (int i = 0; i < 6; i++)
		assert_float_equal(out[i], a[i], fabsf(a[i]) / 128);
	assert_int_equal(tn_st_read_f32(&st, "a.f16", (int64_t[]){6}, 1, out), TN_OK);
	for (int i = 0; i < 6; i++)
		assert_float_equal(out[i], a[i], fabsf(a[i]) / 1024);
	assert_int_equal(tn_st_read_f32(&st, "b", (int64_t[]){3}, 1, out), TN_OK);
	assert_memory_equal(out, b, sizeof(b));
	assert_int_equal(tn_st_read_f32(&st, "a", (int64_t[]){3, 2}, 2, out), TN_EDATA);
	assert_non_null(strstr(tn_errmsg(), "tensor 'a' has shape [2, 3], expected [3, 2]"));
	assert_int_equal(tn_st_read_f32(&st, "nope", (int64_t[]){1}, 1, out), TN_EDATA);
	assert_non_null(strstr(tn_errmsg(), "tensor 'nope' is missing"));
	assert_int_equal(tn_st_read_f32(&st, "ids", (int64_t[]){2}, 1, out), TN_EDATA);
	assert_non_null(strstr(tn_errmsg(), "has dtype I32"));
	tn_st_close(&st);
}

/* A file with the given header and data bytes. */
static void write_raw(const char *header, size_t data_len)
{
	size_t hl = strlen(header);
	uint8_t *buf = calloc(1, 8 + hl + data_len + 1);
	tn_put64(buf, hl);
	memcpy(buf + 8, header, hl);
	assert_int_equal(tn_write_file_atomic(path, buf, 8 + hl + data_len), TN_OK);
	free(buf);
}

static void expect_open_error(const char *header, size_t data_len, const char *msg)
{
	write_raw(header, data_len);
	struct tn_st st;
	assert_int_equal(tn_st_open(&st, path), TN_EDATA);
	if (!strstr(tn_errmsg(), msg))
		fail_msg("message '%s' lacks '%s'", tn_errmsg(), msg);
}

static void corrupt(void **s)
{
	(void)s;
	write_raw("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
	struct tn_st st;
	assert_int_equal(tn_st_open(&st, path), TN_OK); /* the control is valid */
	tn_st_close(&st);
	expect_open_error("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4,
			  "outside the file");
	expect_open_error("{\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
			  "do not hold its shape");
	expect_open_error("{\"x\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
			  "unsupported dtype Q4");
	expect_open_error("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
			  "gap or overlap");
	expect_open_error("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12,
			  "4 data bytes after the last tensor");
	expect_open_error("{\"x\":", 0, "header byte");
	write_raw("{}", 0);
	uint8_t big[8];
	tn_put64(big, 1000);
	assert_int_equal(tn_write_file_atomic(path, big, 8), TN_OK);
	assert_int_equal(tn_st_open(&st, path), TN_EDATA);
	assert_non_null(strstr(tn_errmsg(), "header length 1000 exceeds"));
}

static int setup(void **s)
{
	(void)s;
	snprintf(path, sizeof(path), "/tmp/tn-test-st-%d.safetensors", (int)getpid());
	return 0;
}

static int teardown(void **s)
{
	(void)s;
	unlink(path);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(conversions),
		cmocka_unit_test(round_trip),
		cmocka_unit_test(corrupt),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
