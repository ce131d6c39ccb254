#!/usr/bin/env bats
# train.bats - tn-train and tn-eval from the command line: a tiny model
# learns, checkpoints and metrics appear, a resume is bit-exact, SIGINT
# checkpoints, activation checkpointing changes no bit, non-finite steps
# stop or are skipped and never reach a checkpoint, perplexity equals the
# official loss on golden model A, and bad input gets one clear line and a
# non-zero exit.
load helpers
bats_require_minimum_version 1.5.0

TR() { "$TN_BIN/tn-train" "$@"; }
EV() { "$TN_BIN/tn-eval" "$@"; }

# A learnable corpus: arithmetic sequences modulo 40, ids 3..42.
make_data() {
	awk 'BEGIN { for (d = 0; d < 150; d++) { s = ""; for (i = 0; i < 40; i++)
		s = s (i ? " " : "") ((d * 7 + 3 * i) % 40 + 3); print s } }' > in.ids
	"$TN_BIN/tn-shard" pack --ids --vocab-size 48 --val-fraction 0.1 -o D in.ids
}

@test "a tiny model learns; checkpoints, metrics and the loss curve appear" {
	make_data
	run --separate-stderr TR --preset tiny --data D -o R --steps 30 --seq-len 16 --batch 4 --lr 1e-2 \
		--eval-every 15 --save-every 10 --keep 2 --json
	[ "$status" -eq 0 ]
	[[ "$output" == *'"step":30'* ]]
	[[ "$output" == *'"tokens_per_s":'[1-9]*',"device_bytes":0}' ]]
	first=$(head -1 R/metrics.jsonl | sed 's/.*"loss":\([0-9.e+-]*\).*/\1/')
	last=$(grep '"loss"' R/metrics.jsonl | tail -1 | sed 's/.*"loss":\([0-9.e+-]*\).*/\1/')
	awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 0.5) }'
	[ "$(grep -c val_loss R/metrics.jsonl)" -eq 2 ]
	[ "$(ls -d R/step-* | wc -l)" -eq 2 ] && [ -d R/step-00000030 ] && [ -d R/step-00000020 ]
	[ "$(readlink R/latest)" = step-00000030 ]
	grep -q '"decoder_embed_dim": 64' R/latest/config.json
	grep -q '"vocab_size": 48' R/latest/config.json
	grep -q '<svg' R/loss.svg
	run --separate-stderr EV ppl -m R D --ctx 16 --json
	[ "$status" -eq 0 ] && [[ "$output" == '{"tokens":'* ]]
}

@test "--no-checkpoint: metrics and the loss curve, no checkpoint" {
	make_data
	run --separate-stderr TR --preset tiny --data D -o R --steps 6 --seq-len 16 --batch 4 \
		--no-checkpoint --json
	[ "$status" -eq 0 ] && [[ "$output" == *'"step":6'* ]]
	[ "$(grep -c '"loss"' R/metrics.jsonl)" -eq 6 ]
	grep -q '<svg' R/loss.svg
	[ ! -e R/latest ] && ! ls -d R/step-* 2>/dev/null
	run --separate-stderr TR --preset tiny --data D -o S --steps 6 --no-checkpoint --save-every 2
	[ "$status" -eq 2 ]
	[[ "$stderr" == *"--no-checkpoint and --save-every exclude each other"* ]]
}

@test "4 steps + resume + 4 steps equals 8 steps, bit for bit" {
	make_data
	TR --preset tiny --data D -o A --steps 8 --seq-len 16 --batch 2 --accum 2 \
		--warmup 2 --save-every 4 --keep 0 -q
	cp -r A B && rm -r B/step-00000008
	TR --resume B/step-00000004 --data D -o B --steps 8 --seq-len 16 --batch 2 --accum 2 \
		--warmup 2 -q
	cmp A/step-00000008/model.safetensors B/step-00000008/model.safetensors
	cmp A/step-00000008/optimizer.safetensors B/step-00000008/optimizer.safetensors
	cmp A/step-00000008/trainer_state.json B/step-00000008/trainer_state.json
	cmp A/metrics.jsonl B/metrics.jsonl
	run --separate-stderr TR --resume B --data D -o B --steps 8 --seq-len 32 --batch 2 --accum 2
	one_line_error "a resume must keep them"
}

@test "SIGINT finishes the step, writes a checkpoint and exits 0" {
	make_data
	"$TN_BIN/tn-train" --preset tiny --data D -o R --steps 100000 --seq-len 16 --batch 2 \
		--save-every 5 --keep 0 -q &
	pid=$!
	for i in $(seq 300); do [ -e R/latest ] && break; sleep 0.1; done
	kill -INT $pid
	wait $pid
	last=$(ls -d R/step-* | tail -1)
	[ "$(readlink R/latest)" = "$(basename "$last")" ]
	grep -q '"step": [1-9]' R/latest/trainer_state.json
}

# The token ids of golden model A's test sequences, one per line, read from
# ../shared (the int32 "tokens" tensor of golden.safetensors).
golden_a_ids() {
	python3 - "$TN_SHARED/golden/A/golden.safetensors" > golden-A.ids <<'PY'
import array, json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
t = json.loads(b[8:8 + n])["tokens"]
s, e = t["data_offsets"]
ids = array.array("i", b[8 + n + s:8 + n + e])
rows, cols = t["shape"]
for r in range(rows):
    print(" ".join(str(x) for x in ids[r * cols:(r + 1) * cols]))
PY
}

@test "perplexity of golden model A equals the official loss" {
	golden_a_ids
	dir="$TN_SHARED/golden/A"
	want=$(grep -o '^  "loss": [0-9.]*' "$dir/meta.json" | awk '{print $2}')
	run --separate-stderr EV ppl -m "$dir" --ids --json golden-A.ids
	[ "$status" -eq 0 ]
	[[ "$output" == '{"tokens":32,'* ]]
	got=$(printf '%s' "$output" | sed 's/.*"nll":\([0-9.e+-]*\).*/\1/')
	awk -v a="$got" -v b="$want" 'BEGIN { d = a - b; exit !(d < 1e-5 && d > -1e-5) }'
	EV ppl -m "$dir" --ids < golden-A.ids | grep -q '^tokens 32  nll 7.3749'
}

@test "bad input: one line, non-zero exit, nothing lost" {
	make_data
	run --separate-stderr TR --preset tiny --set decoder_layers=1 --data D -o R
	one_line_error "decoder_layers 1"
	run --separate-stderr TR --preset tiny --set vocab_size=20 --data D -o R --steps 1
	one_line_error "vocabulary of 48 is larger than the model's 20"
	run --separate-stderr TR --preset nope --data D -o R
	[ "$status" -eq 2 ]
	run --separate-stderr TR --data D -o R
	[ "$status" -eq 2 ]
	run --separate-stderr TR --preset tiny --data D -o R --steps 3 --seq-len 16 --batch 2 --lr 1e30 --clip 0 --save-every 1 -q
	one_line_error "the last good checkpoint is R/step-0000000"
	[ -f R/latest/model.safetensors ]
	for i in 1 2 3 4 5 6; do printf 'Call me Ishmael. Some years ago, never mind how long.\n'; done |
		"$TN_BIN/tn-tokenize" encode -q \
		-t "$BATS_TEST_DIRNAME/../../share/demo/spm8k.model" | "$TN_BIN/tn-shard" pack -o E -
	run --separate-stderr TR --resume R --data E -o R --steps 3 --seq-len 16 --batch 2
	one_line_error "E: tokenizer fingerprint"
	mkdir M && cp R/latest/model.safetensors M/ && sed 's/"decoder_layers": 2/"decoder_layers": 3/' \
		R/latest/config.json > M/config.json
	run --separate-stderr EV ppl -m M --ids in.ids
	one_line_error "'model.layers.2.token_mixer.qkvu_proj.weight' is missing"
	golden_a_ids
	run --separate-stderr EV ppl -m R --ids golden-A.ids
	one_line_error "golden-A.ids: line 1, column 20: token id is not below the vocabulary size 48"
	run --separate-stderr EV ppl -m nowhere in.ids
	one_line_error "nowhere: neither a checkpoint"
	run --separate-stderr EV frobnicate
	[ "$status" -eq 2 ]
}

@test "--recompute: the same run bit for bit, with and without tensor parallelism" {
	make_data
	for r in none 1 all; do
		TR --preset tiny --data D -o "$r" --steps 3 --seq-len 16 --batch 2 --accum 2 -q --recompute "$r"
	done
	for r in 1 all; do
		cmp none/latest/model.safetensors "$r"/latest/model.safetensors
		cmp none/latest/optimizer.safetensors "$r"/latest/optimizer.safetensors
		cmp none/metrics.jsonl "$r"/metrics.jsonl
	done
	run --separate-stderr TR --preset tiny --data D -o R --recompute some
	[ "$status" -eq 2 ] && [[ "$stderr" == *"all, none or a number of layers, not 'some'"* ]]
	command -v mpirun >/dev/null || skip "Open MPI not installed"
	export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ASAN_OPTIONS=detect_leaks=0
	for r in none all; do
		TR --preset tiny --data D -o "tp-$r" --steps 3 --seq-len 16 --batch 2 --nproc 2 --tp 2 \
			--threads 1 -q --recompute "$r"
	done
	cmp tp-none/latest/model.safetensors tp-all/latest/model.safetensors
	cmp tp-none/latest/optimizer.safetensors tp-all/latest/optimizer.safetensors
}

# Every float of an fp32 safetensors file is finite.
all_finite() {
	python3 - "$1" <<'PY'
import array, json, math, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
a = array.array("f", b[8 + n:])
sys.exit(0 if a and all(map(math.isfinite, a)) else 1)
PY
}

@test "--on-nan skip: no update, a logged skip, a stop after --max-skips; never a poisoned checkpoint" {
	make_data
	run --separate-stderr TR --preset tiny --data D -o R --steps 5 --seq-len 16 --batch 2 --lr 1e30 \
		--clip 0 --save-every 1 --on-nan skip --max-skips 3 -q
	[ "$status" -eq 1 ]
	[ "$(printf '%s\n' "$stderr" | grep -c '^tn-train: step 2 skipped: loss nan')" -eq 3 ]
	[[ "$stderr" == *"step 2: 3 steps in a row skipped"*"last good checkpoint is R/step-00000001)" ]]
	[ "$(grep -c '"step":2,"skipped":true' R/metrics.jsonl)" -eq 3 ]
	[ "$(readlink R/latest)" = step-00000001 ]
	all_finite R/latest/model.safetensors && all_finite R/latest/optimizer.safetensors
	# the checkpoint resumes (and skips again: its weights are huge, but finite)
	run --separate-stderr TR --resume R --data D -o R --steps 5 --seq-len 16 --batch 2 --lr 1e30 \
		--clip 0 --on-nan skip --max-skips 1 -q
	[ "$status" -eq 1 ] && [[ "$stderr" == *"step 2: 1 steps in a row skipped"* ]]
	# stop (the default): exit 1 at the first bad step, nothing skipped
	run --separate-stderr TR --preset tiny --data D -o S --steps 5 --seq-len 16 --batch 2 --lr 1e30 \
		--clip 0 --save-every 1 -q
	one_line_error "step 2: the loss is nan; stopped (the last good checkpoint is S/step-00000001)"
	! grep -q skipped S/metrics.jsonl
	# an update that overflows (lr 1e39 is inf in fp32): the checkpoint is refused
	run --separate-stderr TR --preset tiny --data D -o U --steps 2 --seq-len 16 --batch 2 --lr 1e39 \
		--clip 0 --save-every 1 -q
	one_line_error "U/step-00000001: not written: the weights of model.embed_tokens.weight hold a non-finite value"
	[ ! -e U/latest ] && [ ! -e U/step-00000001 ]
	run --separate-stderr TR --preset tiny --data D -o R --on-nan maybe
	[ "$status" -eq 2 ]
	# two data-parallel ranks (ZeRO-1): the all-reduced loss and global norm, so they skip and stop alike
	command -v mpirun >/dev/null || skip "Open MPI not installed"
	export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ASAN_OPTIONS=detect_leaks=0
	run --separate-stderr TR --preset tiny --data D -o P --steps 5 --seq-len 16 --batch 2 --lr 1e30 \
		--clip 0 --save-every 1 --on-nan skip --max-skips 2 --nproc 2 --zero 1 --threads 1 -q
	[ "$status" -eq 1 ]
	[[ "$stderr" == *'tn-train: step 2: 2 steps in a row skipped'* ]]
	[ "$(grep -c '"step":2,"skipped":true' P/metrics.jsonl)" -eq 2 ]
	[ "$(readlink P/latest)" = step-00000001 ]
}

@test "tn-bench train measures a few steps" {
	run --separate-stderr "$TN_BIN/tn-bench" train --cpu --preset tiny --seq-len 16 --batch 2 \
		--steps 1 --json
	[ "$status" -eq 0 ]
	[[ "$output" == '{"bench":"train","backend":"cpu","preset":"tiny",'*'"tokens_per_s":'* ]]
	run --separate-stderr "$TN_BIN/tn-bench" train --preset nope
	one_line_error "unknown preset 'nope'"
	# checkpointing both layers of tiny: the activations shrink
	act() {
		"$TN_BIN/tn-bench" train --cpu --preset tiny --seq-len 16 --batch 2 --steps 1 --json \
			--recompute "$1" | sed 's/.*"activation_bytes":\([0-9]*\).*/\1/'
	}
	none=$(act none) all=$(act all)
	[ "$all" -lt "$none" ]
}
