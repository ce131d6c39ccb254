/* util.c - the error buffer, checked allocation and number parsing.
 * The error buffer is thread-local so that worker threads can fail
 * independently; the thread that joins them copies the message over. */
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static _Thread_local char errbuf[1024];

static void vset(const char *fmt, va_list ap)
{
	vsnprintf(errbuf, sizeof errbuf, fmt, ap);
}

int tn_fail(int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vset(fmt, ap);
	va_end(ap);
	return status;
}

int tn_fail_errno(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;
	va_start(ap, fmt);
	vset(fmt, ap);
	va_end(ap);
	size_t len = strlen(errbuf);
	snprintf(errbuf + len, sizeof errbuf - len, ": %s", strerror(saved));
	return TN_EIO;
}

const char *tn_errmsg(void) { return errbuf; }

void *tn_malloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		tn_fail(TN_ENOMEM, "out of memory (%zu bytes)", n);
	return p;
}

void *tn_calloc(size_t count, size_t size)
{
	void *p = calloc(count ? count : 1, size ? size : 1);
	if (!p)
		tn_fail(TN_ENOMEM, "out of memory (%zu x %zu bytes)", count, size);
	return p;
}

void *tn_realloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		tn_fail(TN_ENOMEM, "out of memory (%zu bytes)", n);
	return q;
}

char *tn_strdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = tn_malloc(n);
	if (p)
		memcpy(p, s, n);
	return p;
}

char *tn_path_join(const char *dir, const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = tn_malloc(n);
	if (p)
		snprintf(p, n, "%s/%s", dir, name);
	return p;
}

int tn_parse_u64(const char *s, uint64_t *out, int binary)
{
	if (!s || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno)
		return -1;
	uint64_t unit = 1, base = binary ? 1024 : 1000;
	const char *suffixes = "kMGT";
	if (*end) {
		const char *at = strchr(suffixes, *end);
		if (!at || end[1])
			return -1;
		for (const char *q = suffixes; q <= at; q++)
			unit *= base;
	}
	if (v > UINT64_MAX / unit)
		return -1;
	*out = (uint64_t)v * unit;
	return 0;
}

double tn_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
