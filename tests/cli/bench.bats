#!/usr/bin/env bats
# bench.bats - tn-bench commands that run on the CPU produce their figures
# (smoke tests: speed is measured, not asserted).
load helpers

@test "tn-bench decode: one line per (batch, ctx), state size independent of the context" {
	run "$TN_BIN/tn-bench" decode --preset tiny --ctx 8,300 --batch 1,3 --steps 2 --json
	[ "$status" -eq 0 ]
	[ "$(grep -c '"bench":"decode"' <<< "$output")" -eq 4 ]
	[ "$(grep -o '"state_bytes_per_seq":[0-9]*' <<< "$output" | sort -u | wc -l)" -eq 1 ]
	run "$TN_BIN/tn-bench" decode --ctx 0
	[ "$status" -eq 2 ]
}

@test "tn-bench prefill: one line per (batch, prompt), plotted from its own --json figures only" {
	run "$TN_BIN/tn-bench" prefill --preset tiny --ctx 8,300 --batch 1,3 --steps 2 --json
	[ "$status" -eq 0 ]
	[ "$(grep -c '"bench":"prefill"' <<< "$output")" -eq 4 ]
	[ "$(grep -c '"prefill_tok_per_s":[1-9]' <<< "$output")" -eq 4 ]
	! grep -q decode_tok_per_s <<< "$output"
	printf '%s\n' "$output" > "$BATS_TEST_TMPDIR/p.jsonl"
	run "$TN_BIN/tn-bench" decode --preset tiny --ctx 8 --batch 1 --steps 1 --json
	printf '%s\n' "$output" > "$BATS_TEST_TMPDIR/d.jsonl"
	run "$TN_BIN/tn-bench" prefill --from "$BATS_TEST_TMPDIR/d.jsonl" --plot "$BATS_TEST_TMPDIR/q"
	[ "$status" -ne 0 ]
	[[ "$output" == *"d.jsonl:1: not a tn-bench prefill --json figure"* ]]
	command -v gnuplot >/dev/null || return 0
	run "$TN_BIN/tn-bench" prefill --from "$BATS_TEST_TMPDIR/p.jsonl" --plot "$BATS_TEST_TMPDIR/p"
	[ "$status" -eq 0 ]
	grep -q 'Prefill of the prompts' "$BATS_TEST_TMPDIR/p-speed.svg"
}

@test "tn-bench decode --plot: speed and memory SVGs, of this run or of --json figures" {
	command -v gnuplot >/dev/null || skip "gnuplot is not installed"
	run "$TN_BIN/tn-bench" decode --preset tiny --ctx 8,300 --batch 1,3 --steps 2 --json
	[ "$status" -eq 0 ]
	printf '%s\n# a comment line\n' "$output" > "$BATS_TEST_TMPDIR/f.jsonl"
	run "$TN_BIN/tn-bench" decode --from "$BATS_TEST_TMPDIR/f.jsonl" --plot "$BATS_TEST_TMPDIR/p"
	[ "$status" -eq 0 ]
	grep -q '<svg' "$BATS_TEST_TMPDIR/p-speed.svg"
	grep -q 'tiny batch 3' "$BATS_TEST_TMPDIR/p-memory.svg"
	echo '{"bench":"decode"}' > "$BATS_TEST_TMPDIR/bad.jsonl"
	run "$TN_BIN/tn-bench" decode --from "$BATS_TEST_TMPDIR/bad.jsonl" --plot "$BATS_TEST_TMPDIR/q"
	[ "$status" -ne 0 ]
	[[ "$output" == *"bad.jsonl:1: not a tn-bench decode --json figure"* ]]
	run "$TN_BIN/tn-bench" decode --from "$BATS_TEST_TMPDIR/f.jsonl"
	[ "$status" -eq 2 ]
}
