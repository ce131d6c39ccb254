#!/usr/bin/env bats
# valgrind.bats - the main paths of each program run clean under valgrind's
# memcheck: no invalid access, no use of uninitialised memory, no definite
# leak. (The sanitizer build covers the rest of the suite.)
load helpers

vg() {
	valgrind -q --error-exitcode=9 --leak-check=full --errors-for-leak-kinds=definite \
		--show-leak-kinds=definite "$@"
}

needs_valgrind() {
	[ "${TN_SAN:-0}" != 1 ] || skip "sanitizer build"
	command -v valgrind >/dev/null || skip "valgrind not installed"
}

@test "tn-shard under valgrind" {
	needs_valgrind
	printf '1 2 3\n\n4 5\n' > in.ids
	vg "$TN_BIN/tn-shard" pack --ids --vocab-size 10 --shuffle --dedup --val-tokens 1 -o D in.ids
	vg "$TN_BIN/tn-shard" cat D > s.tok
	vg "$TN_BIN/tn-shard" pack -o E s.tok
	vg "$TN_BIN/tn-shard" verify D E s.tok
	vg "$TN_BIN/tn-shard" info --json D
	vg "$TN_BIN/tn-shard" export-llmc --eot 9 -o x.bin D
	vg "$TN_BIN/tn-shard" import-llmc --eot 9 --vocab-size 10 -o F x.bin
	run vg "$TN_BIN/tn-shard" pack --ids --vocab-size 3 -o G in.ids
	[ "$status" -eq 1 ]
}

@test "tn-tokenize under valgrind" {
	needs_valgrind
	tok="$BATS_TEST_DIRNAME/../../share/demo/spm8k.model"
	printf 'Call me Ishmael.\n' > t.txt
	vg "$TN_BIN/tn-tokenize" encode -t "$tok" -j 2 t.txt > t.tok
	vg "$TN_BIN/tn-tokenize" decode -t "$tok" t.tok > back.txt
	cmp t.txt back.txt
}
