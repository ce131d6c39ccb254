/* test_launch.c - the ranks that --nproc starts without mpirun (GPU runs):
 * each child gets its rank, the world size and one rendezvous address and
 * not the --nproc option; the first rank that fails stops the others at
 * once and its status comes back; a program that cannot run is status 127. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "launch.h"
#include "util.h"

static int launch(int nproc, const char *script, int *status)
{
	char *argv[] = {"sh", "-c", (char *)script, "sh", "--nproc", "9", "last", NULL};
	return tn_launch_local(nproc, 7, argv, status);
}

static void ranks_get_their_environment(void **state)
{
	(void)state;
	char dir[] = "/tmp/tn-launch-XXXXXX", script[512], path[600], line[256];
	assert_non_null(mkdtemp(dir));
	snprintf(script, sizeof script,
		 "echo \"$TN_RANK $TN_LOCAL_RANK $TN_WORLD_SIZE $TN_MASTER_ADDR $# $1\" > %s/$TN_RANK",
		 dir);
	int status = -1;
	assert_int_equal(launch(3, script, &status), TN_OK);
	assert_int_equal(status, 0);
	char addr0[64] = "";
	for (int r = 0; r < 3; r++) {
		snprintf(path, sizeof path, "%s/%d", dir, r);
		FILE *f = fopen(path, "r");
		assert_non_null(f);
		assert_non_null(fgets(line, sizeof line, f));
		fclose(f);
		unlink(path);
		int rank, local, world, nargs, port;
		char rest[16];
		assert_int_equal(sscanf(line, "%d %d %d 127.0.0.1:%d %d %15s", &rank, &local, &world,
					&port, &nargs, rest), 6);
		assert_int_equal(rank, r);
		assert_int_equal(local, r);
		assert_int_equal(world, 3);
		assert_true(port > 0 && port < 65536);
		assert_int_equal(nargs, 1); /* "--nproc 9" removed, "last" kept */
		assert_string_equal(rest, "last");
		char *addr = strchr(line, ':') - 9;
		addr[strcspn(addr, " ")] = 0;
		if (r == 0)
			snprintf(addr0, sizeof addr0, "%s", addr);
		assert_string_equal(addr, addr0);
	}
	rmdir(dir);
}

static void a_failed_rank_stops_the_others(void **state)
{
	(void)state;
	double t0 = tn_now();
	int status = -1;
	assert_int_equal(launch(3, "[ \"$TN_RANK\" = 1 ] && exit 3; exec sleep 30", &status), TN_OK);
	assert_int_equal(status, 3);
	assert_true(tn_now() - t0 < 10);
	assert_non_null(strstr(tn_errmsg(), "rank 1 of 3 exited with status 3"));
}

static void a_missing_program_is_status_127(void **state)
{
	(void)state;
	char *argv[] = {"/nonexistent/tn-nothing", NULL};
	int status = -1;
	assert_int_equal(tn_launch_local(2, 1, argv, &status), TN_OK);
	assert_int_equal(status, 127);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(ranks_get_their_environment),
		cmocka_unit_test(a_failed_rank_stops_the_others),
		cmocka_unit_test(a_missing_program_is_status_127),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
