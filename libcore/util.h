/* util.h - errors, allocation and small helpers shared by every tn module.
 *
 * Library functions never print and never exit: they return TN_OK or an
 * error class, and leave a one-line message (file, position, what is wrong)
 * in a thread-local buffer that the caller reads with tn_errmsg(). Only
 * cmd/ prints it, prefixed with the program name. */
#ifndef TN_UTIL_H
#define TN_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define TN_VERSION "0.1.0"

/* Error classes double as process exit codes (see tn(7) EXIT STATUS). */
enum tn_status {
	TN_OK = 0,
	TN_EDATA = 1,  /* input is invalid, corrupt or inconsistent */
	TN_EUSAGE = 2, /* the command line is wrong */
	TN_EIO = 3,    /* the system failed us: open, read, write, no space */
	TN_ENOMEM = 4, /* out of memory */
};

/* Set the error message (printf-style) and return the class, so that
 * callers can write `return tn_fail(TN_EDATA, "%s: ...", path);`. */
int tn_fail(int status, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* As tn_fail, appending ": strerror(errno)"; class TN_EIO. */
int tn_fail_errno(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *tn_errmsg(void);

/* Allocation that reports failure through tn_fail(TN_ENOMEM) and returns
 * NULL; callers propagate TN_ENOMEM. */
void *tn_malloc(size_t n);
void *tn_calloc(size_t count, size_t size);
void *tn_realloc(void *p, size_t n);
char *tn_strdup(const char *s);
/* "dir/name", allocated. */
char *tn_path_join(const char *dir, const char *name);

/* Parse a whole decimal string into an unsigned 64-bit value; accepts the
 * suffixes k, M, G, T (powers of 1024 when `binary`, else of 1000).
 * Returns 0 on success, -1 if s is not a number or overflows. */
int tn_parse_u64(const char *s, uint64_t *out, int binary);

/* Monotonic wall-clock seconds. */
double tn_now(void);

/* Fixed-width little-endian loads and stores; files are little-endian. */
static inline uint32_t tn_le32(const void *p)
{
	const uint8_t *b = (const uint8_t *)p;
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
	       (uint32_t)b[3] << 24;
}
static inline uint64_t tn_le64(const void *p)
{
	const uint8_t *b = (const uint8_t *)p;
	return (uint64_t)tn_le32(b) | (uint64_t)tn_le32(b + 4) << 32;
}
static inline void tn_put32(void *p, uint32_t v)
{
	uint8_t *b = (uint8_t *)p;
	b[0] = (uint8_t)v; b[1] = (uint8_t)(v >> 8);
	b[2] = (uint8_t)(v >> 16); b[3] = (uint8_t)(v >> 24);
}
static inline void tn_put64(void *p, uint64_t v)
{
	tn_put32(p, (uint32_t)v);
	tn_put32((uint8_t *)p + 4, (uint32_t)(v >> 32));
}

#define TN_MIN(a, b) ((a) < (b) ? (a) : (b))
#define TN_MAX(a, b) ((a) > (b) ? (a) : (b))
#define TN_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
