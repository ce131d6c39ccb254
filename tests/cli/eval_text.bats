#!/usr/bin/env bats
# eval_text.bats - tn-eval ppl on text through a tokenizer: every token of
# each document is scored after the end-of-text id, windows score each
# position once, and bits per byte follow from the same sums.
bats_require_minimum_version 1.5.0
load helpers

setup_file() {
	cd "$BATS_FILE_TMPDIR"
	tok="$BATS_TEST_DIRNAME/../../share/demo/spm8k.model"
	head -c 20000 "$BATS_TEST_DIRNAME/../../share/demo/moby-dick-1-30.txt" > text.txt
	"$TN_BIN/tn-tokenize" encode -t "$tok" --eot text.txt | "$TN_BIN/tn-shard" pack -o data -
	"$TN_BIN/tn-train" --preset tiny --data data -o run --steps 3 --seq-len 32 --batch 2 -q
}

json_field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])['$2'])" "$1"; }

@test "text is scored as its ids after the end-of-text id, with bits per byte" {
	cd "$BATS_FILE_TMPDIR"
	tok="$BATS_TEST_DIRNAME/../../share/demo/spm8k.model"
	text=$("$TN_BIN/tn-eval" ppl -m run -t "$tok" --json text.txt)
	ids=$( (printf '2 '; "$TN_BIN/tn-tokenize" encode -t "$tok" --ids text.txt) |
		"$TN_BIN/tn-eval" ppl -m run --ids --json)
	[ "$(json_field "$text" tokens)" = "$(json_field "$ids" tokens)" ]
	[ "$(json_field "$text" nll)" = "$(json_field "$ids" nll)" ]
	[ "$(json_field "$text" bytes)" -eq "$(wc -c < text.txt)" ]
	python3 - "$text" <<'PY'
import json, math, sys
r = json.loads(sys.argv[1])
assert abs(r["bpb"] - r["nll"] * r["tokens"] / math.log(2) / r["bytes"]) < 1e-6 * r["bpb"], r
PY
}

@test "sliding windows score every token once" {
	cd "$BATS_FILE_TMPDIR"
	tok="$BATS_TEST_DIRNAME/../../share/demo/spm8k.model"
	whole=$("$TN_BIN/tn-eval" ppl -m run -t "$tok" --json text.txt)
	windows=$("$TN_BIN/tn-eval" ppl -m run -t "$tok" --ctx 64 --stride 16 --json text.txt)
	[ "$(json_field "$whole" tokens)" = "$(json_field "$windows" tokens)" ]
	[ "$(json_field "$whole" bytes)" = "$(json_field "$windows" bytes)" ]
}

@test "text input errors: one line" {
	cd "$BATS_FILE_TMPDIR"
	run --separate-stderr "$TN_BIN/tn-eval" ppl -m run -t "$TN_SHARED/data/tokenizers/cl100k_base.tiktoken" text.txt
	one_line_error "larger than the model's 8000"
	run --separate-stderr "$TN_BIN/tn-eval" ppl -m run -t x --ids text.txt
	[ "$status" -eq 2 ]
	run --separate-stderr "$TN_BIN/tn-eval" ppl -m run -t "$BATS_TEST_DIRNAME/../../share/demo/spm8k.model" missing.txt
	one_line_error "missing.txt"
}
