/* enospc.c - a preloaded write(2)/pwrite(2) that runs out of space: once
 * TN_ENOSPC_AFTER bytes have gone to regular files, every further write to
 * a regular file fails with ENOSPC. Tests use it to simulate a full disk
 * without a small filesystem. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static long long budget = -1;

static int full(int fd, size_t n)
{
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
		return 0;
	if (budget < 0) {
		const char *s = getenv("TN_ENOSPC_AFTER");
		budget = s ? atoll(s) : (1ll << 62);
	}
	if ((long long)n > budget) {
		budget = 0;
		return 1;
	}
	budget -= (long long)n;
	return 0;
}

ssize_t write(int fd, const void *buf, size_t n)
{
	static ssize_t (*real)(int, const void *, size_t);
	if (!real)
		real = (ssize_t (*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
	if (full(fd, n)) {
		errno = ENOSPC;
		return -1;
	}
	return real(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
	static ssize_t (*real)(int, const void *, size_t, off_t);
	if (!real)
		real = (ssize_t (*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite");
	if (full(fd, n)) {
		errno = ENOSPC;
		return -1;
	}
	return real(fd, buf, n, off);
}
