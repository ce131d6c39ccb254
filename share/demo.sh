#!/bin/sh
# demo.sh - `make demo`: the main job of tn on the data embedded in share/,
# end to end, in a scratch directory. Each step prints what it does.
set -eu
bin=$(cd "${1:-bin}" && pwd)
share=$(cd "$(dirname "$0")" && pwd)
work=${TN_DEMO_DIR:-$(mktemp -d /tmp/tn-demo-XXXXXX)}
step() { printf '\n== %s\n' "$*"; }

step "pack hand-written token ids into a shard directory and read them back"
rm -rf "$work/ids"
printf '5 6 7\n8 9\n' | "$bin/tn-shard" pack --ids --vocab-size 10 -o "$work/ids" -
"$bin/tn-shard" cat --ids "$work/ids"

step "a corpus of 20,000 documents, shuffled, deduplicated, 1% held out"
rm -rf "$work/corpus"
awk 'BEGIN { srand(1); for (i = 0; i < 20000; i++) { n = 1 + int(rand() * 300); s = "";
	for (j = 0; j < n; j++) s = s (j ? " " : "") int(rand() * 50257); print s } }' |
	"$bin/tn-shard" pack --ids --vocab-size 50257 --shuffle --dedup --val-fraction 0.01 \
		--shard-tokens 1M -o "$work/corpus" -
"$bin/tn-shard" info "$work/corpus"
"$bin/tn-shard" verify "$work/corpus"

step "done: results in $work"
