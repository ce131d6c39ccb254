#!/usr/bin/env bats
# collective.bats - the collectives under mpirun with several ranks on this
# host (the CPU path of distributed training, which CI can run).
load helpers

mpi() {
	OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ASAN_OPTIONS=detect_leaks=0 \
		mpirun --oversubscribe -np "$@"
}

@test "collectives with 2 and 3 ranks" {
	command -v mpirun >/dev/null || skip "Open MPI not installed"
	for n in 2 3; do
		run mpi "$n" "$TN_TESTS/test_collective"
		[ "$status" -eq 0 ] || { echo "$output"; return 1; }
		[ "$(grep -c 'PASSED  \] 6 test' <<< "$output")" -eq "$n" ]
	done
}

@test "a model split over 2 and 4 ranks gives the whole model's loss and gradients" {
	command -v mpirun >/dev/null || skip "Open MPI not installed"
	for n in 2 4; do
		run mpi "$n" "$TN_TESTS/test_tp"
		[ "$status" -eq 0 ] || { echo "$output"; return 1; }
		[ "$(grep -c 'PASSED  \] 2 test' <<< "$output")" -eq "$n" ]
	done
}
