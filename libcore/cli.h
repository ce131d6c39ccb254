/* cli.h - what every tn-* command does the same way: --version, error
 * lines of the form "prog: message", usage errors, and progress on stderr
 * that appears only when stderr is a terminal. */
#ifndef TN_CLI_H
#define TN_CLI_H

#include <stdint.h>

void tn_cli_version(const char *prog);
/* Print "prog: <tn_errmsg()>" and return status (an exit code). */
int tn_cli_report(const char *prog, int status);
/* Print "prog: <message>" and "Try 'prog --help'." and return TN_EUSAGE. */
int tn_cli_usage_error(const char *prog, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Parse a count option (decimal, k/M/G/T suffixes); on error report it. */
int tn_cli_u64(const char *prog, const char *opt, const char *arg,
	       uint64_t *out, int binary);

/* Progress line on stderr, redrawn at most ten times a second, shown only
 * when stderr is a terminal and not disabled with --quiet. */
struct tn_progress {
	int enabled;
	double start, last;
};
void tn_progress_init(struct tn_progress *p, int quiet);
void tn_progress_update(struct tn_progress *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void tn_progress_done(struct tn_progress *p);

#endif
