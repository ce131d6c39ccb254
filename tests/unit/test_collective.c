/* test_collective.c - the collectives, as a single process (make check) and
 * under mpirun with several ranks (tests/cli/collective.bats): sums,
 * reduce-scatter, all-gather (in place too) and broadcast give what their
 * definitions say for every rank count, also inside the groups of a split. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "collective.h"
#include "util.h"

static struct tn_comm *comm;

static void allreduce_sums(void **state)
{
	(void)state;
	int r = tn_comm_rank(comm), w = tn_comm_size(comm);
	float v[1000];
	double d[3] = {r, 1, 0.5};
	for (int i = 0; i < 1000; i++)
		v[i] = (float)(r + 1) * (float)i;
	assert_int_equal(tn_comm_allreduce(comm, v, 1000), TN_OK);
	assert_int_equal(tn_comm_allreduce_f64(comm, d, 3), TN_OK);
	float ranks = (float)(w * (w + 1) / 2);
	for (int i = 0; i < 1000; i++)
		assert_float_equal(v[i], ranks * (float)i, 1e-3f * (float)i);
	assert_float_equal(d[0], w * (w - 1) / 2.0, 0);
	assert_float_equal(d[1], w, 0);
}

/* In place, as ZeRO shards the gradients and gathers the parameters: the
 * sum lands in this rank's block, the gather fills the others around it. */
static void scatter_and_gather(void **state)
{
	(void)state;
	int r = tn_comm_rank(comm), w = tn_comm_size(comm);
	size_t n = 5;
	float *buf = malloc(w * n * sizeof(float)), *mine = buf + (size_t)r * n;
	float *all = malloc(w * n * sizeof(float));
	for (size_t i = 0; i < w * n; i++)
		buf[i] = (float)(r + 1) * (float)i;
	assert_int_equal(tn_comm_reduce_scatter_inplace(comm, buf, n), TN_OK);
	for (size_t i = 0; i < n; i++)
		assert_float_equal(mine[i], (float)(w * (w + 1) / 2) * (float)(r * n + i), 0);
	for (size_t i = 0; i < n; i++)
		mine[i] = (float)(100 * r + (int)i);
	assert_int_equal(tn_comm_allgather(comm, mine, all, n), TN_OK);
	assert_int_equal(tn_comm_allgather_inplace(comm, buf, n), TN_OK);
	for (int q = 0; q < w; q++)
		for (size_t i = 0; i < n; i++) {
			assert_float_equal(all[q * n + i], (float)(100 * q + (int)i), 0);
			assert_float_equal(buf[q * n + i], (float)(100 * q + (int)i), 0);
		}
	free(buf);
	free(all);
}

static void broadcast_from_last(void **state)
{
	(void)state;
	int r = tn_comm_rank(comm), w = tn_comm_size(comm);
	char msg[32];
	snprintf(msg, sizeof msg, "rank %d", r);
	assert_int_equal(tn_comm_broadcast(comm, msg, sizeof msg, w - 1), TN_OK);
	char want[32];
	snprintf(want, sizeof want, "rank %d", w - 1);
	assert_string_equal(msg, want);
	assert_int_equal(tn_comm_barrier(comm), TN_OK);
}

/* Two non-blocking sums in flight at once, finished by one wait. */
static void allreduce_started_then_waited(void **state)
{
	(void)state;
	int r = tn_comm_rank(comm), w = tn_comm_size(comm);
	float a[300], b[7];
	for (int i = 0; i < 300; i++)
		a[i] = (float)(r + i);
	for (int i = 0; i < 7; i++)
		b[i] = (float)(r * i);
	assert_int_equal(tn_comm_iallreduce(comm, a, 300), TN_OK);
	assert_int_equal(tn_comm_iallreduce(comm, b, 7), TN_OK);
	assert_int_equal(tn_comm_wait(comm), TN_OK);
	for (int i = 0; i < 300; i++)
		assert_float_equal(a[i], (float)(w * (w - 1) / 2 + w * i), 0);
	for (int i = 0; i < 7; i++)
		assert_float_equal(b[i], (float)(w * (w - 1) / 2 * i), 0);
	assert_int_equal(tn_comm_wait(comm), TN_OK); /* nothing left: a no-op */
}

/* Rank q receives the sum of its q + 1 floats, where they were, from each
 * of two reduce-scatters in flight at once (the second one's blocks in
 * the other order). */
static void reduce_scatter_started_then_waited(void **state)
{
	(void)state;
	int r = tn_comm_rank(comm), w = tn_comm_size(comm);
	size_t cnt[8], back[8], total = 0;
	float a[36], b[36];
	for (int q = 0; q < w; q++)
		total += cnt[q] = (size_t)q + 1;
	for (int q = 0; q < w; q++)
		back[q] = cnt[w - 1 - q];
	for (size_t i = 0; i < total; i++)
		a[i] = b[i] = (float)(r + 1) * (float)i;
	assert_int_equal(tn_comm_ireduce_scatterv_inplace(comm, a, cnt), TN_OK);
	assert_int_equal(tn_comm_ireduce_scatterv_inplace(comm, b, back), TN_OK);
	assert_int_equal(tn_comm_wait(comm), TN_OK);
	size_t at_a = 0, at_b = 0; /* blocks of ranks before this one */
	for (int q = 0; q < r; q++) {
		at_a += cnt[q];
		at_b += back[q];
	}
	float ranks = (float)(w * (w + 1) / 2);
	for (size_t i = 0; i < cnt[r]; i++)
		assert_float_equal(a[at_a + i], ranks * (float)(at_a + i), 0);
	for (size_t i = 0; i < back[r]; i++)
		assert_float_equal(b[at_b + i], ranks * (float)(at_b + i), 0);
}

/* Groups of even and odd ranks (the DP groups of a 2-way TP grid). */
static void split_groups(void **state)
{
	(void)state;
	int r = tn_comm_rank(comm), w = tn_comm_size(comm);
	struct tn_comm *sub;
	assert_int_equal(tn_comm_split(comm, r % 2, r, &sub), TN_OK);
	assert_int_equal(tn_comm_rank(sub), r / 2);
	assert_int_equal(tn_comm_size(sub), (w - r % 2 + 1) / 2);
	float v = (float)r, all[8];
	double sum = 0;
	for (int q = r % 2; q < w; q += 2)
		sum += q;
	assert_int_equal(tn_comm_allreduce(sub, &v, 1), TN_OK);
	assert_float_equal(v, sum, 0);
	v = (float)r;
	assert_int_equal(tn_comm_allgather(sub, &v, all, 1), TN_OK);
	for (int i = 0; i < tn_comm_size(sub); i++)
		assert_float_equal(all[i], (float)(2 * i + r % 2), 0);
	assert_int_equal(tn_comm_barrier(sub), TN_OK);
	tn_comm_close(sub);
}

int main(void)
{
	if (tn_comm_open(&comm, 0)) {
		fprintf(stderr, "%s\n", tn_errmsg());
		return 1;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(allreduce_sums),
		cmocka_unit_test(scatter_and_gather),
		cmocka_unit_test(broadcast_from_last),
		cmocka_unit_test(allreduce_started_then_waited),
		cmocka_unit_test(reduce_scatter_started_then_waited),
		cmocka_unit_test(split_groups),
	};
	int failed = cmocka_run_group_tests_name("collective", tests, NULL, NULL);
	tn_comm_close(comm);
	return failed;
}
