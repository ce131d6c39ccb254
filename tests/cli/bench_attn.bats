#!/usr/bin/env bats
# bench_attn.bats - tn-bench attn's plots, drawn from the --json figures of an
# earlier GPU run (measuring needs the GPU; drawing needs gnuplot only).
load helpers

figures() {
	local m n
	for m in fwd fwd+bwd quad-fwd prefill; do
		for n in 1024 2048 4096; do
			printf '{"op":"attn","mode":"%s","dtype":"bf16","B":%d,"H":16,"N":%d,' "$m" $((8192 / n)) "$n"
			printf '"dk":64,"dv":64,"ms":%s,"tflops":1,"gbps":1,"bound_ms":0.1,"pct_of_bound":50,"peak_mib":%s}\n' \
				"0.$n" "$n.5"
		done
	done
}

@test "tn-bench attn --from --plot: time and memory SVGs of earlier figures" {
	command -v gnuplot >/dev/null || skip "gnuplot is not installed"
	figures >"$BATS_TEST_TMPDIR/f.jsonl"
	run "$TN_BIN/tn-bench" attn --from "$BATS_TEST_TMPDIR/f.jsonl" --plot "$BATS_TEST_TMPDIR/p"
	[ "$status" -eq 0 ]
	for w in time memory; do
		grep -q '<svg' "$BATS_TEST_TMPDIR/p-$w.svg"
		grep -q "quad-fwd 64x64" "$BATS_TEST_TMPDIR/p-$w.svg"
		! grep -q "prefill" "$BATS_TEST_TMPDIR/p-$w.svg"
	done
}

@test "tn-bench attn --from: bad lines and a missing --plot are errors" {
	printf '{"mode":"fwd"}\n' >"$BATS_TEST_TMPDIR/bad.jsonl"
	run "$TN_BIN/tn-bench" attn --from "$BATS_TEST_TMPDIR/bad.jsonl" --plot "$BATS_TEST_TMPDIR/p"
	[ "$status" -eq 1 ]
	[[ "$output" == *"bad.jsonl:1: not a tn-bench attn --json figure"* ]]
	[ ! -e "$BATS_TEST_TMPDIR/p-time.svg" ]
	run "$TN_BIN/tn-bench" attn --from "$BATS_TEST_TMPDIR/bad.jsonl"
	[ "$status" -eq 2 ]
}
