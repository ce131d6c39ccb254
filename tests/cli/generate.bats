#!/usr/bin/env bats
# generate.bats - tn-generate on the golden models (ids) and a tiny model
# with the spm8k tokenizer: greedy ids, JSON lines, sampling by seed, bad input.

bats_require_minimum_version 1.5.0
load helpers

G() { echo "$TN_SHARED/golden/$1"; }

@test "greedy --ids prints N ids, the same as one more prompt token each time" {
	run --separate-stderr "$TN_BIN/tn-generate" -m "$(G A)" --ids --greedy -n 6 <<<"5 9 13 2 7"
	[ "$status" -eq 0 ]
	read -ra ids <<<"$output"
	[ "${#ids[@]}" -eq 6 ]
	# continuing from prompt + first id gives the remaining ids
	run --separate-stderr "$TN_BIN/tn-generate" -m "$(G A)" --ids -n 5 <<<"5 9 13 2 7 ${ids[0]}"
	[ "$output" = "${ids[*]:1}" ]
}

@test "one output line per prompt line; --prompts gives JSON lines" {
	printf '1 2 3\n4 5\n60\n' >p.txt
	run --separate-stderr "$TN_BIN/tn-generate" -m "$(G B)" --ids -n 3 <p.txt
	[ "$status" -eq 0 ]
	[ "${#lines[@]}" -eq 3 ]
	run --separate-stderr "$TN_BIN/tn-generate" -m "$(G B)" --ids -n 3 --prompts p.txt -o out.jsonl
	[ "$status" -eq 0 ]
	[ "$(wc -l <out.jsonl)" -eq 3 ]
	grep -q '"prompt_tokens":2,"ids":\[[0-9]*,[0-9]*,[0-9]*\],"reason":"length"' out.jsonl
}

@test "sampling is fixed by the seed" {
	a=$("$TN_BIN/tn-generate" -m "$(G C)" --ids -n 20 --temperature 1.5 --top-p 0.95 --seed 4 <<<"3 4")
	b=$("$TN_BIN/tn-generate" -m "$(G C)" --ids -n 20 --temperature 1.5 --top-p 0.95 --seed 4 <<<"3 4")
	c=$("$TN_BIN/tn-generate" -m "$(G C)" --ids -n 20 --temperature 1.5 --top-p 0.95 --seed 5 <<<"3 4")
	[ "$a" = "$b" ]
	[ "$a" != "$c" ]
}

@test "a tokenizer larger than the model is refused; --stop needs a tokenizer" {
	tok="$TN_SHARED/data/tokenizers/spm8k/tokenizer.model"
	run --separate-stderr "$TN_BIN/tn-generate" -m "$(G A)" -t "$tok" -p "hello" -n 3
	one_line_error "vocabulary"
	printf 'hello world\nthe whale\n' >p.txt
	run --separate-stderr "$TN_BIN/tn-generate" -m "$(G A)" --ids --stop x --prompts p.txt
	[ "$status" -eq 2 ]
}

@test "bad input: an id outside the vocabulary, a prompt over the limit, bad options" {
	run --separate-stderr "$TN_BIN/tn-generate" -m "$(G A)" --ids <<<"1 64"
	one_line_error "64"
	run --separate-stderr "$TN_BIN/tn-generate" -m "$(G A)" --ids --max-prompt 2 <<<"1 2 3"
	one_line_error "longer than the limit of 2"
	run --separate-stderr "$TN_BIN/tn-generate" -m "$(G A)" --ids --top-p 0 <<<"1"
	[ "$status" -eq 2 ]
	run --separate-stderr "$TN_BIN/tn-generate" -m "$(G A)" --ids -o out.txt <<<"1 99"
	[ "$status" -eq 1 ]
	[ ! -e out.txt ]
	run "$TN_BIN/tn-generate" --help
	[ "$status" -eq 0 ]
	[[ "$output" == *--repetition-penalty* ]]
}

@test "--batch gives the same lines in the same order, ids and JSON; --batch 0 is refused" {
	printf '1 2 3\n4 5\n60\n7 8 9 10\n11\n' >p.txt
	one=$("$TN_BIN/tn-generate" -m "$(G A)" --ids -n 5 --eos 3 <p.txt)
	many=$("$TN_BIN/tn-generate" -m "$(G A)" --ids -n 5 --eos 3 -b 2 <p.txt)
	[ "$one" = "$many" ]
	[ "$(wc -l <<<"$many")" -eq 5 ]
	"$TN_BIN/tn-generate" -m "$(G B)" --ids -n 4 --prompts p.txt -o one.jsonl
	"$TN_BIN/tn-generate" -m "$(G B)" --ids -n 4 --prompts p.txt --batch 3 -o many.jsonl
	cmp one.jsonl many.jsonl
	run --separate-stderr "$TN_BIN/tn-generate" -m "$(G A)" --ids --batch 0 <p.txt
	[ "$status" -eq 2 ]
}

@test "--prompts FILE.jsonl takes {\"ids\": [...]} lines; --json gives JSON lines from stdin; bad lines named" {
	printf '1 2 3\n4 5\n60\n' >p.txt
	printf '{"ids": [1, 2, 3]}\n{"ids": [4, 5]}\n\n{"ids": [60]}\n' >p.jsonl
	"$TN_BIN/tn-generate" -m "$(G B)" --ids -n 4 --prompts p.txt -o want.jsonl
	"$TN_BIN/tn-generate" -m "$(G B)" --ids -n 4 --prompts p.jsonl -b 2 -o got.jsonl
	cmp want.jsonl got.jsonl
	"$TN_BIN/tn-generate" -m "$(G B)" --ids -n 4 --json -o stdin.jsonl <p.txt
	cmp want.jsonl stdin.jsonl
	printf '{"ids": [1, 2]}\n{"ids": [4, 99]}\n' >bad.jsonl
	run --separate-stderr "$TN_BIN/tn-generate" -m "$(G A)" --ids --prompts bad.jsonl
	one_line_error "bad.jsonl:2: ids[1]"
	printf '{"text": "x"}\n' >bad.jsonl
	run --separate-stderr "$TN_BIN/tn-generate" -m "$(G A)" --ids --prompts bad.jsonl
	one_line_error "bad.jsonl:1: not a JSON object"
}
