#!/usr/bin/env bats
# convert.bats - tn-convert: round trips bit-exact (fp32, bf16, shards),
# info, the tied head, LRPE theta, and bad sources that must fail cleanly
# without leaving a half-written directory.

bats_require_minimum_version 1.5.0
load helpers

A="$TN_SHARED/golden/A"

# A safetensors file holding one tensor: name dtype shape(json) bytes.
one_tensor() {
	local json="{\"$1\":{\"dtype\":\"$2\",\"shape\":$3,\"data_offsets\":[0,$4]}}" n i
	n=${#json}
	for i in 0 1 2 3 4 5 6 7; do printf "\\x$(printf %02x $(((n >> (8 * i)) & 255)))"; done
	printf '%s' "$json"
	head -c "$4" /dev/zero
}

@test "HF -> tn -> HF is byte-identical for fp32; tensors equal the source's" {
	"$TN_BIN/tn-convert" -q "$A" x
	"$TN_BIN/tn-convert" -q x y
	cmp x/model.safetensors y/model.safetensors
	cmp x/config.json y/config.json
	diff <("$TN_BIN/tn-convert" info "$A" | sort) <("$TN_BIN/tn-convert" info x | sort)
	# the converted model generates what the source does
	a=$("$TN_BIN/tn-generate" -m "$A" --ids -n 8 <<<"3 1 4 1 5")
	b=$("$TN_BIN/tn-generate" -m x --ids -n 8 <<<"3 1 4 1 5")
	[ "$a" = "$b" ]
}

@test "bf16 and sharding: every path to bf16 gives the same bytes" {
	"$TN_BIN/tn-convert" -q --dtype bf16 "$A" b1
	"$TN_BIN/tn-convert" -q --dtype bf16 --shard-size 10k "$A" sh
	[ -e sh/model.safetensors.index.json ]
	[ "$(ls sh/model-*-of-*.safetensors | wc -l)" -gt 1 ]
	"$TN_BIN/tn-convert" -q sh b2        # unshard, keeping bf16
	"$TN_BIN/tn-convert" -q --dtype fp32 b1 f
	"$TN_BIN/tn-convert" -q --dtype bf16 f b3
	cmp b1/model.safetensors b2/model.safetensors
	cmp b1/model.safetensors b3/model.safetensors
	grep -q '"torch_dtype": "bfloat16"' b1/config.json
	"$TN_BIN/tn-convert" info sh | grep -q '^total	12 tensors	43072 bytes$'
}

@test "the tied head: written on request, dropped when read; theta reported" {
	run --separate-stderr "$TN_BIN/tn-convert" --head "$A" h
	[ "$status" -eq 0 ]
	[[ "$stderr" == *"LRPE theta copied, max deviation from the formula"* ]]
	"$TN_BIN/tn-convert" info h | grep -q '^lm_head.weight	F32	\[64, 32\]	8192	'
	run --separate-stderr "$TN_BIN/tn-convert" h h2
	[[ "$stderr" == *"lm_head.weight dropped (tied)"* ]]
	"$TN_BIN/tn-convert" -q "$A" x
	cmp x/model.safetensors h2/model.safetensors
}

@test "bad sources: missing shard, truncated header, integer weights, a missing tensor" {
	"$TN_BIN/tn-convert" -q --shard-size 10k "$A" sh
	rm sh/model-00002-of-*.safetensors
	run --separate-stderr "$TN_BIN/tn-convert" sh out
	one_line_error "missing shard"
	[ ! -e out ] && [ ! -e out.tmp ]
	mkdir t && cp "$A/config.json" t/
	head -c 20 "$A/model.safetensors" >t/model.safetensors
	run --separate-stderr "$TN_BIN/tn-convert" t out
	one_line_error "t/model.safetensors"
	[ "$status" -eq 1 ]
	one_tensor model.embed_tokens.weight I32 '[64,32]' 8192 >t/model.safetensors
	run --separate-stderr "$TN_BIN/tn-convert" t out
	one_line_error "model.embed_tokens.weight is I32, which cannot be converted"
	one_tensor extra.weight F32 '[2]' 8 >t/model.safetensors
	run --separate-stderr "$TN_BIN/tn-convert" t out
	one_line_error "tensor model.embed_tokens.weight is missing"
	[ ! -e out ] && [ ! -e out.tmp ]
}

@test "usage: an existing output, a bad dtype, info without a directory" {
	mkdir out
	run --separate-stderr "$TN_BIN/tn-convert" "$A" out
	one_line_error "out exists"
	run --separate-stderr "$TN_BIN/tn-convert" --dtype int8 "$A" o2
	[ "$status" -eq 2 ]
	run --separate-stderr "$TN_BIN/tn-convert" info
	[ "$status" -eq 2 ]
	run "$TN_BIN/tn-convert" --help
	[[ "$output" == *--shard-size* ]]
}

# A directory with tvb's config and a PyTorch file (tests/cli/data/torch, made
# by make_torch_bin.py in torch.save's layout).
bin_dir() {
	mkdir "$1" && cp "$TN_SHARED/golden/tvb/config.json" "$1/"
	cp "$BATS_TEST_DIRNAME/data/torch/$2" "$1/${3:-pytorch_model.bin}"
}

@test "pytorch_model.bin converts to the same tensors as its safetensors twin" {
	bin_dir p tvb.bin
	"$TN_BIN/tn-convert" info p | grep -q '^lm_head.weight	F32	\[11, 8\]'
	"$TN_BIN/tn-convert" -q p from_bin
	"$TN_BIN/tn-convert" -q "$TN_SHARED/golden/tvb" from_st
	cmp from_bin/model.safetensors from_st/model.safetensors
	bin_dir pb tvb-bf16.bin
	"$TN_BIN/tn-convert" -q pb bf_bin
	"$TN_BIN/tn-convert" -q --dtype bf16 "$TN_SHARED/golden/tvb" bf_st
	cmp bf_bin/model.safetensors bf_st/model.safetensors
	# a shard named by pytorch_model.bin.index.json
	bin_dir ps tvb.bin part-1.bin
	echo '{"weight_map": {"model.embed_tokens.weight": "part-1.bin"}}' >ps/pytorch_model.bin.index.json
	"$TN_BIN/tn-convert" -q ps from_shard
	cmp from_shard/model.safetensors from_st/model.safetensors
}

@test "a pickle that calls anything, an unknown opcode, a truncated archive: refused" {
	bin_dir e evil.bin
	run --separate-stderr "$TN_BIN/tn-convert" e out
	one_line_error "system is not one a tensor state dict uses (refused; nothing is executed)"
	bin_dir f float.bin
	run --separate-stderr "$TN_BIN/tn-convert" f out
	one_line_error "opcode 0x47 is not one state dicts use"
	mkdir t && cp "$TN_SHARED/golden/tvb/config.json" t/
	head -c 3000 "$BATS_TEST_DIRNAME/data/torch/tvb.bin" >t/pytorch_model.bin
	run --separate-stderr "$TN_BIN/tn-convert" t out
	[ "$status" -eq 1 ]
	[[ "$stderr" == *"t/pytorch_model.bin"* ]]
	[ ! -e out ] && [ ! -e out.tmp ]
}

# Written by torch 2.11 itself on the GPU machine (2026-11-29): random weights with
# golden A's names and shapes (seed 20261129), saved by torch.save and, as their
# twins, by safetensors.torch.save_file, in fp32 and bf16 (random*.torch.bin,
# random*.safetensors): real files of both libraries, not our imitation.
@test "pytorch_model.bin files written by torch equal their safetensors twins" {
	D="$BATS_TEST_DIRNAME/data/torch"
	for v in random random-bf16; do
		mkdir -p "bin-$v" "st-$v"
		cp "$TN_SHARED/golden/A/config.json" "bin-$v/"
		cp "$TN_SHARED/golden/A/config.json" "st-$v/"
		cp "$D/$v.torch.bin" "bin-$v/pytorch_model.bin"
		cp "$D/$v.safetensors" "st-$v/model.safetensors"
		"$TN_BIN/tn-convert" -q "bin-$v" "out-bin-$v"
		"$TN_BIN/tn-convert" -q "st-$v" "out-st-$v"
		cmp <("$TN_BIN/tn-convert" info "out-st-$v" | sort) <("$TN_BIN/tn-convert" info "out-bin-$v" | sort)
	done
}
