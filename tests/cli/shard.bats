#!/usr/bin/env bats
# shard.bats - tn-shard from the command line: round trips, splits,
# shuffle and dedup, llm.c import/export, and every kind of bad input.
bats_require_minimum_version 1.5.0
load helpers

S() { "$TN_BIN/tn-shard" "$@"; }

@test "help, version and usage errors" {
	run S --help
	[ "$status" -eq 0 ] && [[ "$output" == *"Usage: tn-shard"* ]]
	run S --version
	[ "$status" -eq 0 ] && [[ "$output" == "tn-shard (tn) "* ]]
	run --separate-stderr S frobnicate
	[ "$status" -eq 2 ] && [[ "$stderr" == *"unknown command"* ]]
	run --separate-stderr S pack --bogus
	[ "$status" -eq 2 ]
	run --separate-stderr S pack --ids -o D -
	[ "$status" -eq 2 ] && [[ "$stderr" == *"--vocab-size"* ]]
}

@test "the README example: ids in, the same ids out" {
	printf '5 6 7\n8 9\n' | S pack --ids --vocab-size 10 -o D -
	run S cat --ids D
	[ "$status" -eq 0 ] && [ "$output" = $'5 6 7\n8 9' ]
	[ -f D/manifest.json ] && [ -f D/train-00000.tns ]
	[ -z "$(ls -A D | grep -v -e manifest.json -e '\.tns$')" ]
}

@test "a million random documents survive pack and cat, in order, across shards" {
	python3 - <<'PY'
import random
r = random.Random(7)
with open("in.ids", "w") as f:
    for i in range(1000000):
        n = r.choice([0, 1, 2, 3, 5, 8, 40])
        f.write(" ".join(str(r.randrange(70000)) for _ in range(n)) + "\n")
PY
	S pack --ids --vocab-size 70000 --shard-tokens 1M -o D in.ids
	S cat --ids D | cmp - in.ids
	[ "$(ls D/train-*.tns | wc -l)" -gt 3 ]
	S cat D | S pack -o E -
	S cat --ids E | cmp - in.ids
	S verify D E
}

@test "streams concatenate; tokens wider than 16 bits; empty input" {
	printf '1 2\n\n3\n' | S pack --ids --vocab-size 100000 -o A -
	printf '99999\n' | S pack --ids --vocab-size 100000 -o B -
	(S cat A; S cat B) | S pack -o C -
	run S cat --ids C
	[ "$output" = $'1 2\n\n3\n99999' ]
	run S info --json C
	[[ "$output" == *'"token_width":4'* ]]
	printf '' | S pack --ids --vocab-size 10 -o Z -
	run S cat --ids Z
	[ "$status" -eq 0 ] && [ -z "$output" ]
}

@test "validation split by whole documents, shuffle and dedup keep the document set" {
	seq 1 2000 | awk '{print $1 % 700, ($1 * 7) % 700}' > in.ids
	S pack --ids --vocab-size 700 --shuffle --seed 3 --dedup --val-tokens 100 --memory 4k -o D in.ids
	S cat --ids D > train.ids
	S cat --ids --split val D > val.ids
	[ "$(wc -l < val.ids)" -eq 50 ]
	sort -u in.ids > want
	cat train.ids val.ids | sort > got
	cmp want got
	! cmp -s <(sort train.ids) <(sed 1,50d in.ids | sort -u)
	S pack --ids --vocab-size 700 --shuffle --seed 3 --dedup --val-tokens 100 -o D2 in.ids
	S cat --ids D2 | cmp - train.ids
	run S info --json D
	[[ "$output" == *'"duplicates_removed":'* ]]
}

@test "val-fraction takes its share of tokens" {
	seq 1 1000 | awk '{print 1, 2, 3, 4}' > in.ids
	S pack --ids --vocab-size 10 --val-fraction 0.25 -o D in.ids
	run S info --json D
	[[ "$output" == *'"val":{"documents":250,"tokens":1000}'* ]]
}

@test "llm.c files import and export byte for byte" {
	python3 - <<'PY'
import random, struct
r = random.Random(1)
toks = []
for d in range(300):
    toks.append(50256)
    toks += [r.randrange(50256) for _ in range(r.randrange(0, 30))]
with open("a.bin", "wb") as f:
    f.write(struct.pack("<256i", 20240520, 1, len(toks), *([0] * 253)))
    f.write(struct.pack("<%dH" % len(toks), *toks))
with open("b.bin", "wb") as f:
    f.write(struct.pack("<256i", 20240520, 2, len(toks), *([0] * 253)))
    f.write(struct.pack("<%dI" % len(toks), *toks))
PY
	S import-llmc -o D a.bin
	run S info --json D
	[[ "$output" == *'"documents":300'* ]]
	S export-llmc -o out.bin D
	cmp a.bin out.bin
	S import-llmc --vocab-size 50257 -o E b.bin
	S export-llmc --llmc-version 2 -o out2.bin E
	cmp b.bin out2.bin
	printf '1 2\n3\n' | S pack --ids --vocab-size 50257 -o F -
	S export-llmc --eot 50256 -o f.bin F
	S import-llmc -o G f.bin
	run S cat --ids G
	[ "$output" = $'50256 1 2\n50256 3' ]
}

@test "every flipped byte and every truncation of a shard is caught by verify and cat" {
	printf '1 2 3\n4 5\n6\n' | S pack --ids --vocab-size 300 -o D -
	f=D/train-00000.tns
	size=$(stat -c %s "$f")
	cp "$f" orig
	for off in $(seq 0 7 $((size - 1))) $((size - 1)); do
		cp orig "$f"
		printf "$(printf '\\%03o' $(( ($(od -An -tu1 -j $off -N1 orig) ^ 1) )))" |
			dd of="$f" bs=1 seek=$off conv=notrunc status=none
		run --separate-stderr S verify D
		[ "$status" -eq 1 ] || { echo "flip at $off not caught"; return 1; }
		run --separate-stderr S cat D
		[ "$status" -eq 1 ] && [ -z "$output" ] || { echo "cat at $off"; return 1; }
		run --separate-stderr S verify "$f"
		[ "$status" -eq 1 ] || { echo "file flip at $off"; return 1; }
	done
	for len in 0 1 8 100 4095 4096 4100 $((size - 1)); do
		head -c $len orig > "$f"
		run --separate-stderr S verify "$f"
		one_line_error "train-00000.tns" || { echo "truncation at $len"; return 1; }
	done
}

@test "bad streams: magic, version, truncation, flips, ids, fingerprints" {
	printf '1 2 3\n4 5\n' | S pack --ids --vocab-size 300 -o D -
	S cat D > good.tok
	size=$(stat -c %s good.tok)
	for len in $(seq 0 $((size - 1))); do
		head -c $len good.tok > cut.tok
		run --separate-stderr S pack -o "P$len" cut.tok
		[ "$status" -eq 1 ] && [ ! -e "P$len" ] || { echo "cut at $len: $stderr"; return 1; }
		[ "$(printf '%s\n' "$stderr" | wc -l)" -eq 1 ]
	done
	for off in $(seq 0 $((size - 1))); do
		cp good.tok bad.tok
		printf '\x7f' | dd of=bad.tok bs=1 seek=$off conv=notrunc status=none
		cmp -s good.tok bad.tok && continue
		run --separate-stderr S pack -o Q bad.tok
		[ "$status" -eq 1 ] && [ ! -e Q ] || { echo "flip at $off: $stderr"; return 1; }
	done
	printf 'XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX' > junk
	run --separate-stderr S pack -o Q junk
	one_line_error "bad magic"
	run --separate-stderr S info junk
	one_line_error "junk"
	printf '1 2\n' | S pack --ids --vocab-size 301 -o E -
	S cat E > other.tok
	run --separate-stderr S pack -o Q good.tok other.tok
	one_line_error "vocabulary size"
}

@test "bad id text: non-digits, ids past the vocabulary" {
	run --separate-stderr S pack --ids --vocab-size 10 -o D - <<< $'1 2\n3 x 4\n'
	one_line_error "line 2, column 3"
	[ ! -e D ]
	run --separate-stderr S pack --ids --vocab-size 10 -o D - <<< $'1 10\n'
	one_line_error "not below the vocabulary size 10"
	run --separate-stderr S pack --ids --vocab-size 10 -o D - <<< $'99999999999999999999999\n'
	one_line_error "line 1, column 1"
}

@test "bad manifests and directories" {
	printf '1 2\n' | S pack --ids --vocab-size 10 -o D -
	sed -i 's/"tokens": 2/"tokens": 3/' D/manifest.json
	run --separate-stderr S verify D
	one_line_error "manifest checksum mismatch"
	mkdir E
	run --separate-stderr S cat E
	one_line_error "no manifest"
	printf '1 2\n' | S pack --ids --vocab-size 10 -o F -
	printf '1 2 3\n' | S pack --ids --vocab-size 10 -o G -
	cp G/train-00000.tns F/train-00000.tns
	run --separate-stderr S cat F
	one_line_error "does not match its manifest"
	run --separate-stderr S pack --ids --vocab-size 10 -o F - <<< '1'
	one_line_error "not empty"
}

@test "unwritable output and a full disk leave nothing that looks finished" {
	run --separate-stderr S pack --ids --vocab-size 10 -o /proc/tn-test - <<< '1 2'
	one_line_error "/proc/tn-test"
	[ -n "$TN_ENOSPC" ] && [ "$TN_SAN" != 1 ] || skip "no fault library (sanitizer build)"
	seq 1 20000 | awk '{print $1 % 10, 3}' > in.ids
	for after in 0 100 5000 40000; do
		TN_ENOSPC_AFTER=$after LD_PRELOAD="$TN_ENOSPC" run --separate-stderr \
			"$TN_BIN/tn-shard" pack --ids --vocab-size 10 --shard-tokens 10000 -o "D$after" in.ids
		one_line_error "No space left on device"
		[[ "$stderr" != *".partial"* ]] # named as it would have been in D$after
		[ ! -e "D$after" ]
		TN_ENOSPC_AFTER=$after LD_PRELOAD="$TN_ENOSPC" run --separate-stderr \
			"$TN_BIN/tn-shard" pack --ids --vocab-size 10 --shuffle -o "S$after" in.ids
		one_line_error "No space left on device"
		[ ! -e "S$after" ]
	done
	S pack --ids --vocab-size 10 -o D in.ids
	TN_ENOSPC_AFTER=1000 LD_PRELOAD="$TN_ENOSPC" run --separate-stderr \
		"$TN_BIN/tn-shard" export-llmc -o out.bin D
	one_line_error "No space left on device"
	[ ! -e out.bin ] && [ -z "$(ls | grep tmp)" ]
}

@test "info describes shards, directories, streams and llm.c files" {
	printf '1 2 3\n4\n' | S pack --ids --vocab-size 10 -o D -
	run S info D/train-00000.tns
	[[ "$output" == *"documents:    2"* ]] && [[ "$output" == *"tokens:       4"* ]]
	S cat D > s.tok
	run S info --json s.tok
	[[ "$output" == *'"kind":"stream"'* ]] && [[ "$output" == *'"documents":2'* ]]
	S export-llmc -o x.bin D
	run S info --json x.bin
	[[ "$output" == *'"kind":"llm.c"'* ]] && [[ "$output" == *'"tokens":4'* ]]
}

@test "shuffle and dedup stay within --memory on a corpus larger than it" {
	[ "$TN_SAN" != 1 ] || skip "sanitizers inflate memory use"
	awk 'BEGIN { srand(3); for (i = 0; i < 150000; i++) { n = int(rand() * 200); s = "";
		for (j = 0; j < n; j++) s = s (j ? " " : "") int(rand() * 50000); print s } }' > in.ids
	S pack --ids --vocab-size 50257 -o plain in.ids
	/usr/bin/time -o rss -f %M "$TN_BIN/tn-shard" pack --ids --vocab-size 50257 \
		--shuffle --dedup --memory 1M -o D in.ids
	echo "peak RSS $(cat rss) KiB for $(stat -c %s in.ids) bytes of input"
	[ "$(cat rss)" -lt 24000 ]
	S cat --ids D | sort > got
	sort -u in.ids > want
	cmp got want
}

@test "bad llm.c files: magic, version, truncation, ids" {
	python3 - <<'PY'
import struct
def put(name, magic, version, n, toks, fmt="H"):
    with open(name, "wb") as f:
        f.write(struct.pack("<256i", magic, version, n, *([0] * 253)))
        f.write(struct.pack("<%d%s" % (len(toks), fmt), *toks))
put("magic.bin", 12345, 1, 2, [1, 2])
put("version.bin", 20240520, 3, 2, [1, 2])
put("short.bin", 20240520, 1, 5, [1, 2])
put("long.bin", 20240520, 1, 1, [1, 2])
put("id.bin", 20240520, 1, 2, [1, 60000])
PY
	head -c 100 magic.bin > header.bin
	run --separate-stderr S import-llmc -o D magic.bin
	one_line_error "not an llm.c token file"
	run --separate-stderr S import-llmc -o D version.bin
	one_line_error "unknown llm.c version 3"
	run --separate-stderr S import-llmc -o D short.bin
	one_line_error "truncated"
	run --separate-stderr S import-llmc -o D long.bin
	one_line_error "trailing data"
	run --separate-stderr S import-llmc -o D id.bin
	one_line_error "token id 60000 is not below the vocabulary size 50257"
	run --separate-stderr S import-llmc -o D header.bin
	one_line_error "truncated llm.c header"
	[ ! -e D ]
}

@test "a killed pack leaves nothing that looks finished" {
	seq 1 30000 | awk '{print $1 % 10, 1, 2}' | S pack --ids --vocab-size 10 --shard-tokens 1k -o D -
	S cat D > all.tok
	{ head -c 150000 all.tok; sleep 30; } | "$TN_BIN/tn-shard" pack --shard-tokens 1k -o K - &
	pid=$!
	for i in $(seq 50); do [ -n "$(ls -A K/.partial-*/ 2>/dev/null)" ] && break; sleep 0.1; done
	kill -9 "$pid" # $! of a pipeline is its last command, tn-shard
	wait "$pid" || true
	[ ! -e K/manifest.json ]
	[ -z "$(ls K | grep -v '^\.')" ]
	run --separate-stderr S verify K
	one_line_error "no manifest"
}
