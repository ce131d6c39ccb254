#!/usr/bin/env bats
# tokenize.bats - tn-tokenize from the command line: exact ids on every
# reference text in both layouts, round trips (through tn-shard too), every
# kind of input, training, and every kind of bad input.
bats_require_minimum_version 1.5.0
load helpers

K() { "$TN_BIN/tn-tokenize" "$@"; }
TOK="$TN_SHARED/data/tokenizers"
REF="$TN_SHARED/data/reftok"

# name:path:reference-name for every tokenizer with reference ids
TOKS="gpt2:$TOK/gpt2:gpt2 r50k:$TOK/gpt2/r50k_base.tiktoken:gpt2 cl100k:$TOK/cl100k_base.tiktoken:cl100k spm:$TOK/spm8k/tokenizer.model:spm spmhf:$TOK/spm8k/tokenizer.json:spm"

@test "help, version and usage errors" {
	run K --help
	[ "$status" -eq 0 ] && [[ "$output" == *"Usage: tn-tokenize"* ]] && [[ "$output" == *"--jsonl-field"* ]]
	run K --version
	[ "$status" -eq 0 ] && [[ "$output" == "tn-tokenize (tn) "* ]]
	run --separate-stderr K frobnicate -t "$TOK/gpt2"
	[ "$status" -eq 2 ] && [[ "$stderr" == *"unknown command"* ]]
	run --separate-stderr K encode
	[ "$status" -eq 2 ] && [[ "$stderr" == *"-t TOKENIZER"* ]]
	run --separate-stderr K encode -t "$TOK/gpt2" --kind nope
	[ "$status" -eq 2 ]
	run --separate-stderr K encode -t "$TOK/gpt2" --lines --split-docs
	[ "$status" -eq 2 ]
	run --separate-stderr K train -o x.json /dev/null
	[ "$status" -eq 2 ] && [[ "$stderr" == *"--vocab-size"* ]]
}

@test "exact reference ids: every tokenizer, every text, whole and --lines" {
	for t in $TOKS; do
		IFS=: read -r name path ref <<<"$t"
		for txt in cases multiline mixed; do
			K encode -t "$path" --ids <"$REF/$txt.txt" >out.whole
			cmp out.whole "$REF/$txt.$ref.whole.ids" || { echo "$name $txt whole"; return 1; }
			K encode -t "$path" --ids --lines "$REF/$txt.txt" >out.lines
			cmp out.lines "$REF/$txt.$ref.lines.ids" || { echo "$name $txt lines"; return 1; }
		done
	done
}

@test "SentencePiece with a precompiled character map (nmt_nfkc), user pieces" {
	F="$BATS_TEST_DIRNAME/../data/tok"
	for txt in cases multiline; do
		K encode -t "$F/nfkc400.model" --ids "$REF/$txt.txt" | cmp - "$F/$txt.nfkc400.whole.ids"
		K encode -t "$F/nfkc400.model" --ids --lines "$REF/$txt.txt" | cmp - "$F/$txt.nfkc400.lines.ids"
	done
	run K encode -t "$F/nfkc400.model" --ids <<<'ﬁ<sep>  Ａ'
	[ "$output" = "$(K encode -t "$F/nfkc400.model" --ids <<<'fi<sep> A')" ]
}

@test "GPT-2 written as a Hugging Face tokenizer.json gives GPT-2's ids" {
	python3 - "$TOK/gpt2" <<'PY'
import json, sys
d = sys.argv[1]
enc = json.load(open(d + "/encoder.json"))
merges = open(d + "/vocab.bpe", encoding="utf-8").read().split("\n")[1:-1]
ws = "\\t\\n\\x0B\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
pat = ("'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" + ws + "\\p{L}\\p{N}]+|[" + ws +
       "]+(?![^" + ws + "])|[" + ws + "]+")
model = {"type": "BPE", "dropout": None, "unk_token": None, "vocab": enc, "merges": merges}
added = [{"id": 50256, "content": "<|endoftext|>", "special": True}]
bl = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}
json.dump({"added_tokens": added, "normalizer": None, "pre_tokenizer": bl, "model": model},
          open("bl.json", "w"))
split = {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": pat}, "behavior": "Isolated", "invert": False},
    dict(bl, use_regex=False)]}
json.dump({"added_tokens": added, "normalizer": None, "pre_tokenizer": split, "model": model},
          open("split.json", "w"))
PY
	for j in bl.json split.json; do
		for txt in cases multiline mixed; do
			K encode -t $j --ids "$REF/$txt.txt" | cmp - "$REF/$txt.gpt2.whole.ids"
			K encode -t $j --ids --lines "$REF/$txt.txt" | cmp - "$REF/$txt.gpt2.lines.ids"
		done
		K encode -t $j "$REF/mixed.txt" | K decode -t $j | cmp - "$REF/mixed.txt"
	done
	run K info -t bl.json
	[[ "$output" == *"kind: hf"* ]] && [[ "$output" == *"eot: 50256"* ]]
}

@test "the same ids on one thread and on many" {
	K encode -t "$TOK/cl100k_base.tiktoken" --ids -j 1 "$REF/mixed.txt" >one
	K encode -t "$TOK/cl100k_base.tiktoken" --ids -j 7 "$REF/mixed.txt" >many
	cmp one many
	cat "$REF/mixed.txt" "$REF/cases.txt" "$REF/mixed.txt" >three
	K encode -t "$TOK/spm8k/tokenizer.model" --lines -j 1 three >a.tok
	K encode -t "$TOK/spm8k/tokenizer.model" --lines -j 5 three >b.tok
	cmp a.tok b.tok
}

@test "decode gives the text back, from a stream and from ids" {
	for t in $TOKS; do
		IFS=: read -r name path ref <<<"$t"
		K encode -t "$path" "$REF/mixed.txt" | K decode -t "$path" >back
		cmp back "$REF/mixed.txt" || { echo "$name"; return 1; }
	done
	K decode -t "$TOK/gpt2" --ids "$REF/cases.gpt2.whole.ids" >back
	cmp back "$REF/cases.txt"
}

@test "byte-level round trip of bytes that are not UTF-8" {
	printf 'a\xff\xfeb\x00c \xc3\n\xe2\x96 \xf0\x9f\x98\x80\x80' >bin.txt
	for p in "$TOK/gpt2" "$TOK/cl100k_base.tiktoken"; do
		K encode -t "$p" bin.txt | K decode -t "$p" | cmp - bin.txt
	done
}

@test "corpus documents: --split-docs --eot, through tn-shard and back" {
	printf 'one\n<|endoftext|>\ntwo\nlines\n<|endoftext|>\n\n<|endoftext|>\nlast\n' >c.txt
	K encode -t "$TOK/gpt2" --split-docs --eot --ids c.txt >ids
	[ "$(wc -l <ids)" -eq 4 ]
	[ "$(sed -n 1p ids)" = "505 198 50256" ]
	K encode -t "$TOK/gpt2" --split-docs --eot c.txt | "$TN_BIN/tn-shard" pack -q -o D -
	"$TN_BIN/tn-shard" cat D | K decode -t "$TOK/gpt2" --split-docs --eot | cmp - c.txt
}

@test "inputs: directories sorted, archives, compressed files, JSON lines, stdin" {
	mkdir -p d/b d/a
	printf 'alpha\n' >d/b/2.txt
	printf 'beta\n' >d/a/1.txt
	printf 'gamma' >d/c.txt
	K encode -t "$TOK/gpt2" --ids d >dir.ids
	K encode -t "$TOK/gpt2" --ids d/a/1.txt d/b/2.txt d/c.txt >files.ids
	cmp dir.ids files.ids
	[ "$(wc -l <dir.ids)" -eq 3 ]
	(cd d && tar czf ../d.tar.gz a/1.txt b/2.txt c.txt && tar cJf ../d.tar.xz a/1.txt b/2.txt c.txt)
	K encode -t "$TOK/gpt2" --ids d.tar.gz | cmp - files.ids
	K encode -t "$TOK/gpt2" --ids d.tar.xz | cmp - files.ids
	python3 -c "
import zipfile
with zipfile.ZipFile('d.zip', 'w', zipfile.ZIP_DEFLATED) as z:
    for n in ['a/1.txt', 'b/2.txt', 'c.txt']: z.write('d/' + n, n)"
	K encode -t "$TOK/gpt2" --ids d.zip | cmp - files.ids
	xz -c "$REF/mixed.txt" >m.txt.xz
	K encode -t "$TOK/gpt2" --ids m.txt.xz | cmp - "$REF/mixed.gpt2.whole.ids"
	printf '{"text": "beta\\n", "id": 1}\n\n{"text": "alpha\\n"}\n' >j.jsonl
	K encode -t "$TOK/gpt2" --ids --jsonl-field text j.jsonl >j.ids
	head -n 2 files.ids | cmp - j.ids
	cat d/c.txt | K encode -t "$TOK/gpt2" --ids | cmp - <(tail -n 1 files.ids)
	: >empty.txt
	run K encode -t "$TOK/spm8k/tokenizer.model" --ids empty.txt
	[ "$status" -eq 0 ] && [ "$output" = "" ]
}

@test "train: deterministic across threads, loads back, round trips" {
	K train -q -o a.json --vocab-size 1000 --special '<|endoftext|>' --split-docs -j 1 \
		"$TN_SHARED/data/ci/ci_val.txt"
	K train -q -o b.json --vocab-size 1000 --special '<|endoftext|>' --split-docs -j 3 \
		"$TN_SHARED/data/ci/ci_val.txt"
	cmp a.json b.json
	run K info -t a.json
	[[ "$output" == *"vocab_size: 1000"* ]] && [[ "$output" == *"eot: 999"* ]]
	K encode -t a.json "$REF/mixed.txt" | K decode -t a.json | cmp - "$REF/mixed.txt"
}

@test "info names the kind, size, specials and fingerprint" {
	run K info -t "$TOK/cl100k_base.tiktoken"
	[ "$status" -eq 0 ]
	[[ "$output" == *"kind: tiktoken"* ]] && [[ "$output" == *"vocab_size: 100277"* ]]
	[[ "$output" == *"special: 100257 <|endoftext|>"* ]]
	[[ "$output" =~ fingerprint:\ [0-9a-f]{32} ]]
}

@test "bad tokenizers: one line, non-zero, nothing written" {
	run --separate-stderr K encode -t nowhere.json -o out.tok "$REF/cases.txt"
	one_line_error "nowhere.json"
	[ ! -e out.tok ]
	head -c 5000 "$TOK/spm8k/tokenizer.model" >cut.model
	run --separate-stderr K encode -t cut.model "$REF/cases.txt"
	one_line_error "cut.model"
	printf '{"model": {"type": "Unigram", "vocab": []}}' >u.json
	run --separate-stderr K info -t u.json
	one_line_error "Unigram"
	printf '{"model": ' >trunc.json
	run --separate-stderr K info -t trunc.json
	one_line_error "trunc.json"
}

@test "bad inputs: one line, non-zero, nothing half-written" {
	run --separate-stderr K encode -t "$TOK/gpt2" -o out.tok missing.txt
	one_line_error "missing.txt"
	[ ! -e out.tok ]
	printf 'not gzip at all' >bad.tar.gz
	run --separate-stderr K encode -t "$TOK/gpt2" -o out.tok bad.tar.gz
	one_line_error "bad.tar.gz"
	[ ! -e out.tok ]
	mkdir d && head -c 300000 "$REF/mixed.txt" >d/a.txt && cp "$REF/cases.txt" d/b.txt
	tar czf d.tar.gz -C d a.txt b.txt && head -c 60000 d.tar.gz >cut.tar.gz
	run --separate-stderr K encode -t "$TOK/gpt2" -o out.tok cut.tar.gz
	one_line_error "cut.tar.gz:a.txt"
	[ ! -e out.tok ]
	printf '{"text": "ok"}\n{"txt": "no"}\n' >j.jsonl
	run --separate-stderr K encode -t "$TOK/gpt2" --jsonl-field text -o out.tok j.jsonl
	one_line_error "line 2"
	[ ! -e out.tok ]
	printf '1 2 50257\n' >ids
	run --separate-stderr K decode -t "$TOK/gpt2" --ids -o out.txt ids
	one_line_error "50257"
	[ ! -e out.txt ]
	K encode -t "$TOK/cl100k_base.tiktoken" "$REF/cases.txt" >cl.tok
	run --separate-stderr K decode -t "$TOK/gpt2" cl.tok
	[ "$status" -ne 0 ]
}
