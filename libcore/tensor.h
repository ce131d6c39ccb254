/* tensor.h - element types of stored tensors (fp32, bf16, fp16, integers),
 * their names in safetensors files, and conversion to and from fp32.
 * Decision: every tensor tn computes with is fp32 (CPU); bf16/fp16 exist
 * only as storage and are converted on load/save with round-to-nearest-even. */
#ifndef TN_TENSOR_H
#define TN_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#define TN_MAX_DIMS 8

enum tn_dtype { TN_F32, TN_BF16, TN_F16, TN_F64, TN_I32, TN_I64, TN_DTYPE_COUNT };

/* Bytes per element; the safetensors name ("F32", "BF16", ...). */
size_t tn_dtype_size(enum tn_dtype t);
const char *tn_dtype_name(enum tn_dtype t);
/* Parse a safetensors dtype name; -1 if unknown. */
int tn_dtype_parse(const char *name);
/* Is it one tn can convert to and from fp32 (F32, BF16, F16, F64)? */
int tn_dtype_is_float(enum tn_dtype t);

float tn_bf16_to_f32(uint16_t h);
uint16_t tn_f32_to_bf16(float f);
float tn_f16_to_f32(uint16_t h);
uint16_t tn_f32_to_f16(float f);

/* n elements of a float type (little-endian bytes) to fp32, and back. */
void tn_to_f32(float *dst, const void *src, enum tn_dtype t, size_t n);
void tn_from_f32(void *dst, const float *src, enum tn_dtype t, size_t n);

/* Product of the dims; "[a, b, c]" into buf (for messages). */
size_t tn_numel(const int64_t *shape, int ndim);
const char *tn_shape_str(char *buf, size_t cap, const int64_t *shape, int ndim);

#endif
