/* test_rendezvous.c - ranks started from the environment meet over TCP on
 * this host: rank 0's blob reaches every rank (forked processes, rank 0
 * started last), a rank with another world size is refused on both sides,
 * a rank that finds no rank 0 gives up at its deadline, and malformed
 * variables are named. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rendezvous.h"
#include "util.h"

/* Rank `rank` in a child process: exit 0 if it got the expected blob (or,
 * with expect_fail, if it failed). */
static pid_t start_rank(const char *addr, int rank, int world, int expect_fail)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid)
		return pid;
	struct tn_launch_env e = {.rank = rank, .world = world, .master = addr, .timeout = 5};
	unsigned char blob[128] = {0};
	int rc = tn_rendezvous_share(&e, blob, sizeof blob);
	int ok = !rc;
	for (int i = 0; ok && i < 128; i++)
		ok = blob[i] == (unsigned char)(i * 7 + 1);
	_exit(expect_fail ? !rc : !ok);
}

static void blob_reaches_every_rank(void **state)
{
	(void)state;
	char addr[64];
	assert_int_equal(tn_rendezvous_free_address(addr, sizeof addr), TN_OK);
	pid_t kids[3];
	for (int r = 1; r <= 3; r++)
		kids[r - 1] = start_rank(addr, r, 4, 0);
	usleep(200 * 1000); /* the others wait for rank 0 */
	struct tn_launch_env e = {.rank = 0, .world = 4, .master = addr, .timeout = 5};
	unsigned char blob[128];
	for (int i = 0; i < 128; i++)
		blob[i] = (unsigned char)(i * 7 + 1);
	assert_int_equal(tn_rendezvous_share(&e, blob, sizeof blob), TN_OK);
	for (int i = 0; i < 3; i++) {
		int status;
		assert_int_equal(waitpid(kids[i], &status, 0), kids[i]);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
}

static void another_world_size_is_refused(void **state)
{
	(void)state;
	char addr[64];
	assert_int_equal(tn_rendezvous_free_address(addr, sizeof addr), TN_OK);
	pid_t kid = start_rank(addr, 1, 3, 1);
	struct tn_launch_env e = {.rank = 0, .world = 2, .master = addr, .timeout = 5};
	unsigned char blob[128] = {0};
	assert_int_equal(tn_rendezvous_share(&e, blob, sizeof blob), TN_EDATA);
	assert_non_null(strstr(tn_errmsg(), "TN_WORLD_SIZE 3"));
	int status;
	assert_int_equal(waitpid(kid, &status, 0), kid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void no_rank_zero_times_out(void **state)
{
	(void)state;
	char addr[64];
	assert_int_equal(tn_rendezvous_free_address(addr, sizeof addr), TN_OK);
	struct tn_launch_env e = {.rank = 1, .world = 2, .master = addr, .timeout = 0.3};
	unsigned char blob[8];
	double t0 = tn_now();
	assert_int_equal(tn_rendezvous_share(&e, blob, sizeof blob), TN_EIO);
	assert_true(tn_now() - t0 < 3);
	assert_non_null(strstr(tn_errmsg(), addr));
}

static void environment_is_checked(void **state)
{
	(void)state;
	struct tn_launch_env e;
	int found;
	unsetenv("TN_WORLD_SIZE");
	assert_int_equal(tn_launch_env_read(&e, &found), TN_OK);
	assert_int_equal(found, 0);
	setenv("TN_WORLD_SIZE", "4", 1);
	setenv("TN_RANK", "4", 1);
	setenv("TN_MASTER_ADDR", "node0:29500", 1);
	assert_int_equal(tn_launch_env_read(&e, &found), TN_EUSAGE);
	assert_non_null(strstr(tn_errmsg(), "TN_RANK='4'"));
	setenv("TN_RANK", "3", 1);
	assert_int_equal(tn_launch_env_read(&e, &found), TN_OK);
	assert_int_equal(found, 1);
	assert_int_equal(e.local_rank, 3);
	assert_string_equal(e.master, "node0:29500");
	unsetenv("TN_MASTER_ADDR");
	assert_int_equal(tn_launch_env_read(&e, &found), TN_EUSAGE);
	assert_non_null(strstr(tn_errmsg(), "TN_MASTER_ADDR"));
	setenv("TN_MASTER_ADDR", "no-port", 1);
	e = (struct tn_launch_env){.rank = 1, .world = 2, .master = "no-port", .timeout = 1};
	unsigned char blob[8];
	assert_int_equal(tn_rendezvous_share(&e, blob, sizeof blob), TN_EUSAGE);
	unsetenv("TN_WORLD_SIZE");
	unsetenv("TN_RANK");
	unsetenv("TN_MASTER_ADDR");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(blob_reaches_every_rank),
		cmocka_unit_test(another_world_size_is_refused),
		cmocka_unit_test(no_rank_zero_times_out),
		cmocka_unit_test(environment_is_checked),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
