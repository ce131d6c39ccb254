#!/usr/bin/env bats
# eval_mc.bats - tn-eval mc on the command line: bad task files named by
# file:line, a tokenizer larger than the model, options. (Scores against the
# parallel form: tests/unit/test_eval_mc.c.)

bats_require_minimum_version 1.5.0
load helpers

setup_file() {
	export TOK="$TN_SHARED/data/tokenizers/spm8k/tokenizer.model"
	export MODEL="$TN_SHARED/golden/A"
}

@test "a malformed task line is named by file and line, before the model loads" {
	cd "$BATS_TEST_TMPDIR"
	printf '{"ctx": "a", "endings": ["b", "c"], "label": 1}\n{"ctx": "a", "endings": ["b"], "label": 1}\n' >t.jsonl
	run --separate-stderr "$TN_BIN/tn-eval" mc -m nowhere -t "$TOK" --task t.jsonl
	one_line_error "t.jsonl:2: answer 1 is not one of the 1 choices"
	[ "$status" -eq 1 ]
	printf '{"ctx": "a", "endings": ["b", "c"], "label": 1}\n{"ctx": "a",\n' >t.jsonl
	run --separate-stderr "$TN_BIN/tn-eval" mc -m nowhere -t "$TOK" --task t.jsonl
	one_line_error "t.jsonl:2: not a JSON object"
}

@test "a tokenizer larger than the model's vocabulary is refused" {
	run --separate-stderr "$TN_BIN/tn-eval" mc -m "$MODEL" -t "$TOK" \
		--task "$TN_SHARED/data/evals/wn_boolq.jsonl" --details "$BATS_TEST_TMPDIR/d.jsonl"
	one_line_error "vocabulary of 8000 is larger than the model's 64"
	[ ! -e "$BATS_TEST_TMPDIR/d.jsonl" ]
}

@test "usage: missing options, --help lists every option" {
	run --separate-stderr "$TN_BIN/tn-eval" mc -m "$MODEL"
	[ "$status" -eq 2 ]
	run "$TN_BIN/tn-eval" mc --help
	[ "$status" -eq 0 ]
	for o in --model --tokenizer --task --shots --limit --details --no-share --json; do
		[[ "$output" == *"$o"* ]]
	done
}

@test "--batch 0 is refused; --help lists --batch" {
	run --separate-stderr "$TN_BIN/tn-eval" mc -m "$MODEL" -t "$TOK" \
		--task "$TN_SHARED/data/evals/wn_define.jsonl" --batch 0
	[ "$status" -eq 2 ]
	run "$TN_BIN/tn-eval" mc --help
	[[ "$output" == *--batch* ]]
}
