#!/usr/bin/env bats
# distributed.bats - data- and tensor-parallel training on CPU ranks under
# Open MPI: the same global batch gives the same losses and weights on 1, 2
# and 4 ranks with every ZeRO stage, TP and DP x TP, a run resumes on
# another number of ranks or TP degree, and a rank that dies stops the
# others.
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

# Largest difference between the weights of two checkpoints (fp32 safetensors), over the
# tensors: "max" relative to each tensor's largest entry, then "l2" relative to its norm.
weight_gap() {
	python3 - "$1/latest/model.safetensors" "$2/latest/model.safetensors" <<'PY'
import array, json, math, struct, sys
def load(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    head = json.loads(b[8:8 + n])
    out = {}
    for k, v in head.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        out[k] = array.array("f", b[8 + n + s:8 + n + e])
    return out
a, b = (load(p) for p in sys.argv[1:])
assert a.keys() == b.keys()
big = l2 = 0
for k in a:
    d = [x - y for x, y in zip(a[k], b[k])]
    big = max(big, max(map(abs, d)) / max(max(map(abs, a[k])), 1e-30))
    l2 = max(l2, math.sqrt(sum(x * x for x in d) / max(sum(x * x for x in a[k]), 1e-30)))
print(big, l2)
PY
}

# Runs that equal the 1-rank run `$1` (the same global batch): the step losses to 1e-6
# relative, the weights after 20 steps to 1e-5 in norm and 1e-3 entry by entry (relative to
# each tensor's largest entry). Not bit for bit: one rank sums a gradient over 4 windows in one
# sgemm, several ranks per window and then across ranks, and with TP the row-split projections
# and the in-mixer norm sum partial products over the ranks; these float rounding differences
# stay near 1e-6 except where AdamW's normalised step turns the last bits of near-zero
# gradients (rare tokens' embedding rows, a few matrix entries) into differences of lr size.
# Measured (tiny preset, 20 steps): losses <= 4.5e-8, weights <= 4.2e-6 in norm, <= 2.3e-4 max.
same_as() {
	one=$1
	shift
	for d in "$@"; do
		loss=$(loss_gap "$one" "$d") weights=$(weight_gap "$one" "$d")
		echo "$d: loss $loss, weights (max, l2) $weights"
		python3 -c "import sys; w = '$weights'.split(); sys.exit(0 if $loss < 1e-6 and \
			float(w[0]) < 1e-3 and float(w[1]) < 1e-5 else 1)"
	done
}

@test "2 ranks with DP, ZeRO-1, ZeRO-2 and TP = 2 train 20 steps as 1 rank does" {
	command -v mpirun >/dev/null || skip "Open MPI not installed"
	train --preset tiny -o one --steps 20 --batch 4
	for z in 0 1 2; do
		train --preset tiny --nproc 2 --zero $z -o two$z --steps 20 --batch 2
	done
	train --preset tiny --nproc 2 --tp 2 -o tp2 --steps 20 --batch 4
	same_as one two0 two1 two2 tp2
	[ -f two2/latest/optimizer.safetensors ]
	# summing (ZeRO-2: reduce-scattering) each layer's gradients as the backward finishes it
	# changes no bit on 2 ranks
	for z in 0 2; do
		train --preset tiny --nproc 2 --zero $z --no-overlap -o after$z --steps 20 --batch 2
		cmp two$z/latest/model.safetensors after$z/latest/model.safetensors
	done
}

@test "4 ranks with DP, ZeRO-1, ZeRO-2 and 2 x 2 DP x TP train 20 steps as 1 rank does" {
	command -v mpirun >/dev/null || skip "Open MPI not installed"
	train --preset tiny -o w1 --steps 20 --batch 4
	for z in 0 1 2; do
		train --preset tiny --nproc 4 --zero $z -o w4z$z --steps 20 --batch 1
	done
	train --preset tiny --nproc 4 --tp 2 -o grid --steps 20 --batch 2
	train --preset tiny --nproc 4 --tp 2 --zero 2 -o gridz --steps 20 --batch 2
	train --preset tiny --nproc 4 --tp 2 --no-overlap -o grids --steps 20 --batch 2
	same_as w1 w4z0 w4z1 w4z2 grid gridz grids
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

@test "TP runs resume on other layouts (4-way TP to 2-way, DP x TP to 1 rank, 1 rank to TP)" {
	command -v mpirun >/dev/null || skip "Open MPI not installed"
	heads="--schedule constant --batch 4"
	tiny4="--preset tiny --set decoder_attention_heads=4"
	train $tiny4 $heads -o straight4 --steps 12
	train $tiny4 $heads --nproc 4 --tp 4 -o tp4 --steps 6
	train --resume tp4 $heads --nproc 2 --tp 2 -o tp4 --steps 12
	train $tiny4 --schedule constant --nproc 4 --tp 2 --zero 2 -o grid --steps 6 --batch 2
	train --resume grid $heads -o grid --steps 12
	train $tiny4 $heads -o tp2 --steps 6
	train --resume tp2 $heads --nproc 2 --tp 2 -o tp2 --steps 12
	for d in tp4 grid tp2; do
		gap=$(loss_gap straight4 $d)
		echo "$d: largest relative loss difference $gap"
		python3 -c "import sys; sys.exit(0 if $gap < 1e-5 else 1)"
	done
	run --separate-stderr train --resume grid $heads --nproc 3 --tp 2 -o grid --steps 14
	[ "$status" -eq 2 ]
	run --separate-stderr train --preset tiny --nproc 4 --tp 4 -o bad --steps 2 # 2 heads
	[ "$status" -eq 2 ] && [[ "$stderr" == *"heads (2) and glu_dim (128) divisible"* ]]
}

# Start a long run on 2 ranks, kill one rank: the other stops within the timeout.
kill_a_rank() {
	out="$BATS_TEST_TMPDIR/long" # a unique path: only this run's processes match it
	timeout 120 "$TN_BIN/tn-train" --data "$BATS_FILE_TMPDIR/data" --seq-len 32 --threads 1 -q \
		--preset tiny --nproc 2 "$@" -o "$out" --steps 100000 --batch 2 --timeout 20 &
	pid=$!
	launcher=""
	for i in $(seq 100); do
		launcher=$(pgrep -f -- "mpirun.*-o $out" | head -1)
		[ -n "$launcher" ] && [ "$(pgrep -P "$launcher" | wc -l)" -ge 2 ] && break
		sleep 0.1
	done
	sleep 1
	victim=$(pgrep -P "$launcher" | tail -1) # a rank, never mpirun itself
	[ -n "$victim" ]
	kill -9 "$victim"
	start=$SECONDS
	run wait "$pid"
	[ "$status" -ne 0 ] && [ "$status" -ne 124 ]
	[ $((SECONDS - start)) -lt 30 ]
	for i in $(seq 50); do [ -z "$(pgrep -f -- "-o $out")" ] && break; sleep 0.1; done
	[ -z "$(pgrep -f -- "-o $out")" ]
}

@test "a rank that dies stops the others" {
	command -v mpirun >/dev/null || skip "Open MPI not installed"
	kill_a_rank
}

@test "a rank of a TP group that dies stops the other" {
	command -v mpirun >/dev/null || skip "Open MPI not installed"
	kill_a_rank --tp 2
}

@test "ranks from the environment: one rank trains as usual, CPU ranks are sent to mpirun" {
	TN_WORLD_SIZE=1 TN_RANK=0 train --preset tiny -o env1 --steps 2 --batch 2
	[ -f env1/latest/model.safetensors ]
	TN_WORLD_SIZE=2 TN_RANK=0 TN_MASTER_ADDR=127.0.0.1:1 \
		run --separate-stderr train --preset tiny -o env2 --steps 2 --batch 2
	[ "$status" -eq 2 ]
	one_line_error "CPU ranks start under mpirun"
	[ ! -e env2/latest ]
}

@test "ranks from the environment: a malformed variable is named" {
	TN_WORLD_SIZE=2 TN_RANK=2 TN_MASTER_ADDR=127.0.0.1:1 \
		run --separate-stderr train --preset tiny -o env3 --steps 2 --batch 2
	[ "$status" -eq 2 ]
	one_line_error "TN_RANK='2'"
}

@test "bench/scaling.sh: its table and its kill test run on CPU ranks" {
	cd "$BATS_FILE_TMPDIR"
	export BIN=$TN_BIN BACKEND=cpu PRESETS=tiny SEQ=16 BATCH=2
	NPROCS="1 2" MODES="dp zero2 tp2" STEPS=3 WORK=sc run --separate-stderr \
		"$BATS_TEST_DIRNAME/../../bench/scaling.sh" table data
	[ "$status" -eq 0 ] || { echo "$output $stderr"; false; }
	[ "$(grep -c '^| tiny |' <<<"$output")" -eq 4 ]
	# every multi-rank row's loss gap to one rank with its global batch is under 1e-6
	awk -F'|' '$4 + 0 > 1 { n++; if ($9 + 0 >= 1e-6 || $9 ~ /^ *- *$/) bad++ }
		END { exit !(n == 3 && !bad) }' <<<"$output"
	NPROCS=2 WORK=kill run --separate-stderr "$BATS_TEST_DIRNAME/../../bench/scaling.sh" kill data
	[ "$status" -eq 0 ] || { echo "$output $stderr"; false; }
	[[ "$output" == *'the run stopped with status 137'* ]]
	[[ "$output" == *'resumed on 1 ranks'*'"interrupted":false'* ]]
}
