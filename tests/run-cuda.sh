#!/bin/sh
# run-cuda.sh - the GPU tests, run on the GPU machine by `make test-cuda`
# (or by hand there, with bin/ and build/ made elsewhere): runs each
# tests/cuda/test_*.c as built by make into $O/tests, then its --small
# cases under compute-sanitizer memcheck and racecheck; then the model's golden tests (test_model) on the CUDA backend,
# generation and mc scoring on the GPU against the CPU (test_generate, test_eval_mc),
# one-rank NCCL training against the plain path, two identical tn-train runs
# per backend (deterministic mode), and a short `tn-bench attn` from $1 (the
# bin folder).
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
# The NCCL path with one rank (TN_COMM=nccl; gradient sums started on a
# side stream during the backward, or after it with --no-overlap), also
# started from the launch environment (TN_WORLD_SIZE=1), trains exactly as
# the plain CUDA path does: the same losses and the same weights, bit for bit.
# The demo's shards in $1/data, made once for the two training checks below.
demo_shards() {
	"$BIN/tn-tokenize" encode -q -t share/demo/spm8k.model --split-docs --eot \
		share/demo/moby-dick-1-30.txt | "$BIN/tn-shard" pack -q -o "$1/data" -
}
nccl_one_rank() {
	dir=$1
	train="$BIN/tn-train --backend cuda --preset tiny --data $dir/data --steps 30 --seq-len 64 --batch 8 --accum 2 -q"
	$train -o "$dir/plain" && TN_COMM=nccl $train -o "$dir/nccl" &&
		TN_COMM=nccl $train --no-overlap -o "$dir/after" &&
		TN_COMM=nccl TN_WORLD_SIZE=1 TN_RANK=0 $train -o "$dir/env" || return 1
	for run in nccl after env; do
		if cmp -s "$dir/plain/metrics.jsonl" "$dir/$run/metrics.jsonl" &&
			cmp -s "$dir/plain/step-00000030/model.safetensors" \
				"$dir/$run/step-00000030/model.safetensors"; then
			echo "ok   NCCL one rank ($run): the plain path's losses and weights"
		else
			echo "FAIL NCCL one rank ($run): losses or weights differ from the plain path"
			return 1
		fi
	done
}
# tn-train (batches made ahead on a thread, uploaded from pinned memory)
# twice from the same seed, on each CUDA backend: the same losses and the
# same checkpoint, byte for byte.
same_twice() {
	dir=$1
	for be in cuda cuda-bf16; do
		for run in a b; do
			"$BIN/tn-train" --backend $be --preset tiny --data "$dir/data" --steps 20 \
				--seq-len 64 --batch 8 --accum 2 -q -o "$dir/$be-$run" || return 1
		done
		if cmp -s "$dir/$be-a/metrics.jsonl" "$dir/$be-b/metrics.jsonl" &&
			cmp -s "$dir/$be-a/step-00000020/model.safetensors" \
				"$dir/$be-b/step-00000020/model.safetensors"; then
			echo "ok   tn-train --backend $be twice: the same losses and weights"
		else
			echo "FAIL tn-train --backend $be twice: losses or weights differ"
			return 1
		fi
	done
}
if [ -x "$BIN/tn-train" ]; then
	work=$(mktemp -d) && demo_shards "$work" || status=1
	if [ -d "$work/data" ]; then
		nccl_one_rank "$work" || status=1
		same_twice "$work" || status=1
	fi
	rm -rf "$work"
fi
if [ -x "$BIN/tn-bench" ]; then
	"$BIN/tn-bench" attn --dims 64 --n 1k --tokens 4k --reps 3 || status=1
fi
exit $status
