/* bench_plot.c - what the plots of tn-bench share: an SVG drawn by one
 * gnuplot script (written through tn_out, so a failed plot leaves no file),
 * and the --json figures of earlier runs read back, one object a line. */
#include "bench.h"
#include "io.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int tn_bench_gnuplot_svg(const char *script, const char *path)
{
	char tmp[] = "/tmp/tn-bench-plot-XXXXXX", cmd[64], buf[65536];
	int fd = mkstemp(tmp), opened = 0;
	if (fd < 0)
		return tn_fail_errno("%s: cannot create the gnuplot script", tmp);
	FILE *f = fdopen(fd, "w");
	if (!f)
		close(fd);
	int rc = f && fputs(script, f) >= 0 && fclose(f) == 0
			 ? TN_OK
			 : tn_fail_errno("%s: cannot write the gnuplot script", tmp);
	snprintf(cmd, sizeof cmd, "gnuplot %s", tmp);
	FILE *p = rc ? NULL : popen(cmd, "r");
	struct tn_out out;
	if (!rc && !p)
		rc = tn_fail_errno("cannot run gnuplot");
	if (!rc)
		opened = !(rc = tn_out_open(&out, path));
	size_t n;
	while (!rc && (n = fread(buf, 1, sizeof buf, p)) > 0)
		rc = tn_out_write(&out, buf, n);
	int st = p ? pclose(p) : 0;
	if (!rc && st != 0)
		rc = tn_fail(TN_EIO, "%s: gnuplot failed (status %d)", path, st);
	if (!rc)
		rc = tn_out_commit(&out);
	if (opened) /* frees it; after a commit, removes nothing */
		tn_out_abort(&out);
	unlink(tmp);
	return rc;
}

int tn_bench_plot_series(const struct tn_bench_plot *pl)
{
	if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
		fprintf(stderr, "%s: gnuplot is not installed: no plots written\n", pl->prog);
		return TN_OK;
	}
	if (!pl->n)
		return tn_fail(TN_EDATA, "%s", pl->empty);
	int n_series = 0;
	for (int i = 0; i < pl->n; i++)
		n_series = pl->p[i].series + 1 > n_series ? pl->p[i].series + 1 : n_series;
	for (int k = 0; k < 2; k++) {
		char *s = NULL, path[4096];
		size_t len = 0;
		FILE *m = open_memstream(&s, &len);
		if (!m)
			return tn_fail(TN_ENOMEM, "plot: out of memory");
		fprintf(m, "set terminal svg size 800,500 dynamic background rgb 'white'\n%s",
			pl->setup[k]);
		for (int q = 0; q < n_series; q++) { /* one data block a series */
			fprintf(m, "$s%d << EOD\n", q);
			for (int i = 0; i < pl->n; i++)
				if (pl->p[i].series == q)
					fprintf(m, "%.10g %g\n", pl->p[i].x, pl->p[i].y[k]);
			fprintf(m, "EOD\n");
		}
		fprintf(m, "plot");
		for (int q = 0; q < n_series; q++)
			fprintf(m, "%s $s%d with linespoints title '%s'", q ? "," : "", q, pl->label[q]);
		fprintf(m, "\n");
		fclose(m);
		snprintf(path, sizeof path, "%s-%s.svg", pl->prefix, pl->name[k]);
		int rc = tn_bench_gnuplot_svg(s, path);
		free(s);
		if (rc)
			return rc;
	}
	return TN_OK;
}

int tn_bench_json_lines(const char *path,
			int (*each)(json_t *j, const char *path, long line, void *ctx), void *ctx)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return tn_fail_errno("%s: cannot open", path);
	char *text = NULL;
	size_t cap = 0;
	int rc = TN_OK;
	for (long line = 1; !rc && getline(&text, &cap, f) > 0; line++) {
		if (text[0] != '{')
			continue;
		json_error_t err;
		json_t *j = json_loads(text, 0, &err);
		rc = j ? each(j, path, line, ctx)
		       : tn_fail(TN_EDATA, "%s:%ld: not JSON: %s", path, line, err.text);
		json_decref(j);
	}
	free(text);
	fclose(f);
	return rc;
}
