#!/usr/bin/env bats
# distributed.bats - data-parallel training on CPU ranks under Open MPI:
# the same global batch gives the same losses on 1 and 2 ranks with every
# ZeRO stage, a run resumes on another number of ranks, and a rank that
# dies stops the others.
bats_require_minimum_version 1.5.0
load helpers

setup_file() {
	export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ASAN_OPTIONS=detect_leaks=0
	cd "$BATS_FILE_TMPDIR"
	"$TN_BIN/tn-tokenize" encode -t "$BATS_TEST_DIRNAME/../../share/demo/spm8k.model" \
		--split-docs --eot "$BATS_TEST_DIRNAME/../../share/demo/moby-dick-1-30.txt" |
		"$TN_BIN/tn-shard" pack --val-fraction 0.05 -o data -
}

train() {
	"$TN_BIN/tn-train" --data "$BATS_FILE_TMPDIR/data" --seq-len 32 --threads 1 \
		--log-every 1 -q "$@"
}

# Largest relative difference between the step losses of two runs.
loss_gap() {
	python3 - "$1/metrics.jsonl" "$2/metrics.jsonl" <<'PY'
import json, sys
a, b = ([json.loads(l)["loss"] for l in open(p) if '"loss"' in l] for p in sys.argv[1:])
assert len(a) == len(b) and a, (len(a), len(b))
print(max(abs(x - y) / abs(x) for x, y in zip(a, b)))
PY
}

@test "2 ranks with DP, ZeRO-1 and ZeRO-2 match 1 rank with the same global batch" {
	command -v mpirun >/dev/null || skip "Open MPI not installed"
	train --preset tiny -o one --steps 6 --batch 4
	for z in 0 1 2; do
		train --preset tiny --nproc 2 --zero $z -o two$z --steps 6 --batch 2
		gap=$(loss_gap one two$z)
		echo "ZeRO-$z: largest relative loss difference $gap"
		python3 -c "import sys; sys.exit(0 if $gap < 1e-5 else 1)"
	done
	[ -f two2/latest/optimizer.safetensors ]
}

@test "a 2-rank ZeRO-2 run resumes on 1 rank and on 3, as if it had not stopped" {
	command -v mpirun >/dev/null || skip "Open MPI not installed"
	# a constant rate, so that a run to step 6 is the first half of one to step 12
	train --preset tiny --schedule constant -o straight --steps 12 --batch 6
	train --preset tiny --schedule constant --nproc 2 --zero 2 -o split --steps 6 --batch 3
	train --resume split --schedule constant -o split --steps 12 --batch 6
	python3 -c "import sys; sys.exit(0 if $(loss_gap straight split) < 1e-5 else 1)"
	train --preset tiny --schedule constant --nproc 3 --zero 1 -o three --steps 6 --batch 2
	train --resume three --schedule constant --nproc 2 -o three --steps 12 --batch 3
	python3 -c "import sys; sys.exit(0 if $(loss_gap straight three) < 1e-5 else 1)"
	run --separate-stderr train --resume split -o split --steps 14 --batch 4
	one_line_error "global batch"
}

@test "a rank that dies stops the others" {
	command -v mpirun >/dev/null || skip "Open MPI not installed"
	out="$BATS_TEST_TMPDIR/long" # a unique path: only this run's processes match it
	train --preset tiny --nproc 2 -o "$out" --steps 100000 --batch 2 --timeout 20 &
	pid=$!
	for i in $(seq 100); do [ "$(pgrep -f -- "-o $out" | wc -l)" -ge 3 ] && break; sleep 0.1; done
	sleep 1
	victim=$(pgrep -f -- "-o $out" | tail -1)
	kill -9 "$victim"
	start=$SECONDS
	run wait "$pid"
	[ "$status" -ne 0 ]
	[ $((SECONDS - start)) -lt 30 ]
	for i in $(seq 50); do [ -z "$(pgrep -f -- "-o $out")" ] && break; sleep 0.1; done
	[ -z "$(pgrep -f -- "-o $out")" ]
}
