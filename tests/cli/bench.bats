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
