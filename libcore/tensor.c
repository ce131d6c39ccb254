/* tensor.c - dtype names and fp32 <-> bf16/fp16/fp64 conversion.
 * Conversions to narrower types round to nearest even and keep NaN a NaN,
 * matching what PyTorch writes, so a saved bf16 checkpoint loads in torch
 * bit for bit. */
#include "tensor.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const struct {
	const char *name;
	size_t size;
} dtypes[TN_DTYPE_COUNT] = {
	[TN_F32] = {"F32", 4}, [TN_BF16] = {"BF16", 2}, [TN_F16] = {"F16", 2},
	[TN_F64] = {"F64", 8}, [TN_I32] = {"I32", 4},   [TN_I64] = {"I64", 8},
};

size_t tn_dtype_size(enum tn_dtype t) { return dtypes[t].size; }
const char *tn_dtype_name(enum tn_dtype t) { return dtypes[t].name; }

int tn_dtype_parse(const char *name)
{
	for (int i = 0; i < TN_DTYPE_COUNT; i++)
		if (!strcmp(dtypes[i].name, name))
			return i;
	return -1;
}

int tn_dtype_is_float(enum tn_dtype t)
{
	return t == TN_F32 || t == TN_BF16 || t == TN_F16 || t == TN_F64;
}

static uint32_t f32_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

static float bits_f32(uint32_t u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}

float tn_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t tn_f32_to_bf16(float f)
{
	uint32_t u = f32_bits(f);
	if (isnan(f))
		return (uint16_t)((u >> 16) | 0x40);
	u += 0x7fff + ((u >> 16) & 1);
	return (uint16_t)(u >> 16);
}

float tn_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
	if (exp == 0x1f)
		return bits_f32(sign | 0x7f800000 | man << 13);
	if (exp)
		return bits_f32(sign | (exp + 112) << 23 | man << 13);
	float v = ldexpf((float)man, -24); /* zero or subnormal */
	return sign ? -v : v;
}

uint16_t tn_f32_to_f16(float f)
{
	uint32_t u = f32_bits(f), sign = (u >> 16) & 0x8000;
	if (isnan(f))
		return (uint16_t)(sign | 0x7e00);
	float a = fabsf(f);
	if (a >= 65520.0f)
		return (uint16_t)(sign | 0x7c00);
	if (a < 6.103515625e-05f) { /* subnormal: multiples of 2^-24 */
		float q = nearbyintf(a * 16777216.0f);
		return (uint16_t)(sign | (uint32_t)q);
	}
	uint32_t e = ((u >> 23) & 0xff) - 112, man = u & 0x7fffff;
	uint32_t h = e << 10 | man >> 13, rest = man & 0x1fff;
	if (rest > 0x1000 || (rest == 0x1000 && (h & 1)))
		h++; /* carries into the exponent correctly */
	return (uint16_t)(sign | h);
}

void tn_to_f32(float *dst, const void *src, enum tn_dtype t, size_t n)
{
	const uint8_t *s = src;
	for (size_t i = 0; i < n; i++) {
		switch (t) {
		case TN_BF16: dst[i] = tn_bf16_to_f32((uint16_t)(s[2 * i] | s[2 * i + 1] << 8)); break;
		case TN_F16: dst[i] = tn_f16_to_f32((uint16_t)(s[2 * i] | s[2 * i + 1] << 8)); break;
		case TN_F64: {
			double d;
			memcpy(&d, s + 8 * i, 8);
			dst[i] = (float)d;
			break;
		}
		default: memcpy(dst + i, s + 4 * i, 4); break;
		}
	}
}

void tn_from_f32(void *dst, const float *src, enum tn_dtype t, size_t n)
{
	uint8_t *d = dst;
	for (size_t i = 0; i < n; i++) {
		uint16_t h;
		switch (t) {
		case TN_BF16:
		case TN_F16:
			h = t == TN_BF16 ? tn_f32_to_bf16(src[i]) : tn_f32_to_f16(src[i]);
			d[2 * i] = (uint8_t)h;
			d[2 * i + 1] = (uint8_t)(h >> 8);
			break;
		case TN_F64: {
			double v = src[i];
			memcpy(d + 8 * i, &v, 8);
			break;
		}
		default: memcpy(d + 4 * i, src + i, 4); break;
		}
	}
}

size_t tn_numel(const int64_t *shape, int ndim)
{
	size_t n = 1;
	for (int i = 0; i < ndim; i++)
		n *= (size_t)shape[i];
	return n;
}

const char *tn_shape_str(char *buf, size_t cap, const int64_t *shape, int ndim)
{
	size_t len = 0;
	len += (size_t)snprintf(buf, cap, "[");
	for (int i = 0; i < ndim && len < cap; i++)
		len += (size_t)snprintf(buf + len, cap - len, "%s%lld", i ? ", " : "",
					(long long)shape[i]);
	if (len < cap)
		snprintf(buf + len, cap - len, "]");
	return buf;
}
