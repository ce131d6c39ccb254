/* cli.c - shared command-line behaviour of the tn-* programs. */
#include "cli.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

void tn_cli_version(const char *prog)
{
	printf("%s (tn) %s\n", prog, TN_VERSION);
}

int tn_cli_report(const char *prog, int status)
{
	fprintf(stderr, "%s: %s\n", prog, tn_errmsg());
	return status;
}

int tn_cli_usage_error(const char *prog, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '%s --help' for more information.\n", prog);
	return TN_EUSAGE;
}

int tn_cli_u64(const char *prog, const char *opt, const char *arg,
	       uint64_t *out, int binary)
{
	if (tn_parse_u64(arg, out, binary) != 0)
		return tn_cli_usage_error(prog, "%s: not a count: '%s'", opt, arg);
	return TN_OK;
}

void tn_progress_init(struct tn_progress *p, int quiet)
{
	p->enabled = !quiet && isatty(STDERR_FILENO);
	p->start = p->last = tn_now();
}

void tn_progress_update(struct tn_progress *p, const char *fmt, ...)
{
	if (!p->enabled)
		return;
	double now = tn_now();
	if (now - p->last < 0.1)
		return;
	p->last = now;
	va_list ap;
	fputs("\r\033[K", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fflush(stderr);
}

void tn_progress_done(struct tn_progress *p)
{
	if (p->enabled)
		fputs("\r\033[K", stderr);
}
