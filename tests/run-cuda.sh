#!/bin/sh
# run-cuda.sh - the GPU tests, run on the GPU machine by `make test-cuda`
# (or by hand there, with bin/ and build/ made elsewhere): runs each
# tests/cuda/test_*.c as built by make into $O/tests, then its --small
# cases under compute-sanitizer memcheck and racecheck; then the model's golden tests (test_model) on the CUDA backend,
# generation and mc scoring on the GPU against the CPU (test_generate, test_eval_mc),
# and a short `tn-bench attn` from $1 (the bin folder).
BIN=${1:-bin}
O=${O:-build/release}
status=0
for src in tests/cuda/test_*.c; do
	exe=$O/tests/$(basename "$src" .c)
	if [ ! -x "$exe" ]; then
		echo "FAIL $exe is not built (make, with nvcc, builds it)"
		status=1
		continue
	fi
	"$exe" || status=1
	for tool in memcheck racecheck; do
		log=$exe.$tool.log
		if compute-sanitizer --tool "$tool" --error-exitcode 1 "$exe" --small >"$log" 2>&1; then
			echo "ok   compute-sanitizer $tool $(basename "$exe") --small"
		else
			echo "FAIL compute-sanitizer $tool $(basename "$exe") --small (log: $log)"
			tail -n 30 "$log"
			status=1
		fi
	done
done
if [ -x "$O/tests/test_model" ]; then
	TN_BACKEND=cuda "$O/tests/test_model" || status=1
fi
# generation (batched, through the decode graph) and multiple-choice scoring
# on the GPU against the CPU; built by make check
for t in test_generate test_eval_mc; do
	if [ -x "$O/tests/$t" ]; then
		TN_BACKEND=cuda "$O/tests/$t" || status=1
	fi
done
if [ -x "$BIN/tn-bench" ]; then
	"$BIN/tn-bench" attn --dims 64 --n 1k --tokens 4k --reps 3 || status=1
fi
exit $status
