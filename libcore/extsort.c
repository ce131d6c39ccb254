/* extsort.c - bounded-memory external merge sort (see extsort.h).
 * Runs live back to back in one scratch file; run i of a pass covers
 * records [start[i], start[i+1]). A merge pass reads each run through its
 * own small buffer and writes the merged runs to the next scratch file. */
#include "extsort.h"
#include "io.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MIN_RUN 64

struct cursor {
	int fd;
	uint64_t next, end; /* record indices still to read */
	uint8_t *buf;
	size_t have, pos;   /* records in buf, next one */
};

struct merger {
	const struct tn_extsort *o;
	struct cursor *cur;
	size_t *heap, n_heap;
	const char *name;
};

static const uint8_t *head_of(const struct merger *m, size_t c)
{
	return m->cur[c].buf + m->cur[c].pos * m->o->rec;
}

static int less(const struct merger *m, size_t a, size_t b)
{
	int r = m->o->cmp(head_of(m, a), head_of(m, b), m->o->ctx);
	return r < 0 || (r == 0 && a < b); /* stable across runs */
}

static void sift_down(struct merger *m, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, min = i;
		if (l < m->n_heap && less(m, m->heap[l], m->heap[min]))
			min = l;
		if (r < m->n_heap && less(m, m->heap[r], m->heap[min]))
			min = r;
		if (min == i)
			return;
		size_t t = m->heap[i];
		m->heap[i] = m->heap[min];
		m->heap[min] = t;
		i = min;
	}
}

/* Refill cursor c; returns TN_OK with have == 0 at the run's end. */
static int refill(struct merger *m, struct cursor *c, size_t cap)
{
	size_t take = (size_t)TN_MIN((uint64_t)cap, c->end - c->next);
	c->have = take;
	c->pos = 0;
	int rc = take ? tn_pread_all(c->fd, c->buf, take * m->o->rec, c->next * m->o->rec, m->name)
		      : TN_OK;
	c->next += take;
	return rc;
}

/* Merge runs [r0, r1) of the run file into out. */
static int merge_runs(const struct tn_extsort *o, int fd, const uint64_t *start,
		      size_t r0, size_t r1, struct tn_out *out, const char *name)
{
	size_t k = r1 - r0;
	size_t cap = TN_MAX((size_t)1, o->memory / (k * o->rec));
	struct merger m = {o, tn_calloc(k, sizeof *m.cur), tn_calloc(k, sizeof *m.heap), 0, name};
	uint8_t *bufs = tn_malloc(k * cap * o->rec);
	int rc = m.cur && m.heap && bufs ? TN_OK : TN_ENOMEM;
	for (size_t i = 0; !rc && i < k; i++) {
		struct cursor *c = &m.cur[i];
		*c = (struct cursor){fd, start[r0 + i], start[r0 + i + 1], bufs + i * cap * o->rec, 0, 0};
		rc = refill(&m, c, cap);
		if (!rc && c->have)
			m.heap[m.n_heap++] = i;
	}
	for (size_t i = m.n_heap; !rc && i-- > 0;)
		sift_down(&m, i);
	while (!rc && m.n_heap > 0) {
		size_t c = m.heap[0];
		rc = tn_out_write(out, head_of(&m, c), o->rec);
		if (!rc && ++m.cur[c].pos == m.cur[c].have)
			rc = refill(&m, &m.cur[c], cap);
		if (!rc && m.cur[c].have == 0)
			m.heap[0] = m.heap[--m.n_heap];
		sift_down(&m, 0);
	}
	free(bufs);
	free(m.cur);
	free(m.heap);
	return rc;
}

/* Sort memory-sized runs of in_fd into run_fd; fills start[] (n_runs + 1). */
static int make_runs(const struct tn_extsort *o, int in_fd, uint64_t n, size_t per,
		     struct tn_out *out, uint64_t *start, const char *name)
{
	uint8_t *buf = tn_malloc(per * o->rec);
	if (!buf)
		return TN_ENOMEM;
	int rc = TN_OK;
	size_t r = 0;
	for (uint64_t at = 0; !rc && at < n; at += per) {
		size_t take = (size_t)TN_MIN((uint64_t)per, n - at);
		start[r++] = at;
		rc = tn_pread_all(in_fd, buf, take * o->rec, at * o->rec, name);
		if (!rc) {
			qsort_r(buf, take, o->rec, o->cmp, o->ctx);
			rc = tn_out_write(out, buf, take * o->rec);
		}
	}
	start[r] = n;
	free(buf);
	return rc ? rc : tn_out_flush(out);
}

int tn_extsort(const struct tn_extsort *o, int in_fd, uint64_t n, int out_fd,
	       const char *name)
{
	size_t per = TN_MAX((size_t)MIN_RUN, o->memory / o->rec);
	size_t fan_in = TN_MAX((size_t)2, o->memory / (o->rec * MIN_RUN));
	size_t n_runs = (size_t)((n + per - 1) / per);
	uint64_t *start = tn_malloc((n_runs + 1) * sizeof *start);
	uint64_t *next_start = tn_malloc((n_runs + 1) * sizeof *next_start);
	struct tn_out out = {.fd = -1};
	int run_fd = -1, rc = start && next_start ? TN_OK : TN_ENOMEM;
	if (!rc)
		rc = tn_scratch_fd(o->tmpdir, &run_fd);
	if (!rc)
		rc = tn_out_open_fd(&out, n_runs <= 1 ? out_fd : run_fd, name);
	if (!rc)
		rc = make_runs(o, in_fd, n, per, &out, start, name);
	/* Merge passes until one run is left; the last pass writes out_fd. */
	while (!rc && n_runs > 1) {
		int dst_fd = -1;
		int last = n_runs <= fan_in;
		rc = last ? TN_OK : tn_scratch_fd(o->tmpdir, &dst_fd);
		tn_out_abort(&out);
		if (!rc)
			rc = tn_out_open_fd(&out, last ? out_fd : dst_fd, name);
		size_t groups = 0;
		for (size_t r = 0; !rc && r < n_runs; r += fan_in) {
			size_t r1 = TN_MIN(r + fan_in, n_runs);
			next_start[groups++] = start[r];
			rc = merge_runs(o, run_fd, start, r, r1, &out, name);
		}
		next_start[groups] = n;
		if (!rc)
			rc = tn_out_flush(&out);
		close(run_fd);
		run_fd = dst_fd;
		memcpy(start, next_start, (groups + 1) * sizeof *start);
		n_runs = groups;
	}
	tn_out_abort(&out);
	if (run_fd >= 0)
		close(run_fd);
	free(start);
	free(next_start);
	return rc;
}
