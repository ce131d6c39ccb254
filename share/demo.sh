#!/bin/sh
# demo.sh - `make demo`: the main job of tn on the data embedded in share/,
# end to end, in a scratch directory. Each step prints what it does.
set -eu
bin=$(cd "${1:-bin}" && pwd)
share=$(cd "$(dirname "$0")" && pwd)
work=${TN_DEMO_DIR:-$(mktemp -d /tmp/tn-demo-XXXXXX)}
tok="$share/demo/spm8k.model"
text="$share/demo/moby-dick-1-30.txt"
step() { printf '\n== %s\n' "$*"; }

step "the tokenizer"
"$bin/tn-tokenize" info -t "$tok"

step "tokenize Moby-Dick (one document per chapter) and pack it into shards, 5% held out"
rm -rf "$work/data"
"$bin/tn-tokenize" encode -t "$tok" --split-docs --eot "$text" |
	"$bin/tn-shard" pack --shuffle --seed 1 --val-fraction 0.05 --shard-tokens 20k -o "$work/data" -
"$bin/tn-shard" info "$work/data"
"$bin/tn-shard" verify "$work/data"

step "every byte comes back: shards -> text equals the input (documents in shuffled order)"
"$bin/tn-shard" cat "$work/data" "$work/data/val-00000.tns" |
	"$bin/tn-tokenize" decode -t "$tok" --split-docs --eot > "$work/back.txt"
sort "$text" > "$work/a"
sort "$work/back.txt" > "$work/b"
cmp "$work/a" "$work/b" && echo "same lines as the input"

step "train a tiny TransNormerLLM on it (about 30 seconds on two cores)"
rm -rf "$work/run"
"$bin/tn-train" --preset tiny --data "$work/data" -o "$work/run" --steps 300 \
	--eval-every 100 --log-every 50

step "perplexity on the held-out chapter"
"$bin/tn-eval" ppl -m "$work/run" "$work/data"

step "generate: continue a prompt (recurrent decoding, constant time per token)"
"$bin/tn-generate" -m "$work/run" -t "$tok" -p "Call me Ishmael." -n 40 \
	--temperature 0.8 --top-p 0.95 --seed 1
echo

step "a HellaSwag-style task: pick the true next sentence of Moby-Dick (100 items, chance 25%)"
"$bin/tn-eval" mc -m "$work/run" -t "$tok" --task "$share/demo/moby_next-100.jsonl"

step "done: results in $work (the loss curve is $work/run/loss.svg)"
