#!/usr/bin/env bats
# collective.bats - the collectives under mpirun with several ranks on this
# host (the CPU path of distributed training, which CI can run).
load helpers

mpi() {
	OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ASAN_OPTIONS=detect_leaks=0 \
		mpirun --oversubscribe -np "$@"
}

# every_rank_passes TEST COUNT N...: under mpirun with each N ranks, every
# rank of the cmocka program TEST passes all COUNT of its tests.
every_rank_passes() {
	local exe=$TN_TESTS/$1 count=$2
	shift 2
	for n in "$@"; do
		run mpi "$n" "$exe"
		[ "$status" -eq 0 ] || { echo "$output"; return 1; }
		[ "$(grep -c "PASSED  \] $count test" <<< "$output")" -eq "$n" ] ||
			{ echo "$output"; return 1; }
	done
}

@test "collectives with 2 and 3 ranks" {
	command -v mpirun >/dev/null || skip "Open MPI not installed"
	every_rank_passes test_collective 6 2 3
}

@test "a model split over 2 and 4 ranks gives the whole model's loss and gradients" {
	command -v mpirun >/dev/null || skip "Open MPI not installed"
	every_rank_passes test_tp 2 2 4
}

@test "ZeRO-1 and ZeRO-2 over 2 and 3 ranks update as DP does, holding one shard of the moments" {
	command -v mpirun >/dev/null || skip "Open MPI not installed"
	every_rank_passes test_zero 2 2 3
}
