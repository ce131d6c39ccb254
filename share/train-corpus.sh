#!/bin/sh
# train-corpus.sh - one whole training job on a document corpus, for machines
# lent in slices of time: tokenize and pack the corpus once, train in runs of
# at most SLICE seconds (each run resumes from the checkpoint the last one
# wrote when SIGTERM stopped it), then score the held-out texts.
#
# Usage: train-corpus.sh CORPUS_DIR TOKENIZER WORK [TN-TRAIN-OPTION]...
#   CORPUS_DIR  train-*.txt[.xz] (documents split by <|endoftext|> lines) and
#               val_*.txt held out (see ../shared/data/README.md)
#   TOKENIZER   any tokenizer tn-tokenize(1) reads
#   WORK        data/ (shards) and run/ (checkpoints, metrics.jsonl, loss.svg)
# The model comes from MODEL (default "--preset tnl-385m"), given to the first
# run only; the other options go to every run (--data and -o are set here).
# Environment: BIN (the tn binaries, default ../bin beside this script),
# SLICE (seconds per run, default 540), TOTAL (seconds of training in all,
# counted from the first run; when spent, the job scores the last
# checkpoint; default: no limit), BACKEND (default cuda).
set -eu
[ $# -ge 3 ] || { echo "usage: $0 CORPUS_DIR TOKENIZER WORK [TN-TRAIN-OPTION]..." >&2; exit 2; }
corpus=$1 tok=$2 work=$3
shift 3
bin=${BIN:-$(cd "$(dirname "$0")/../bin" && pwd)}
slice=${SLICE:-540}
backend=${BACKEND:-cuda}
model=${MODEL:---preset tnl-385m}
mkdir -p "$work"

if [ ! -f "$work/data/manifest.json" ]; then
	echo "== tokenize and pack $corpus/train-*"
	"$bin/tn-tokenize" encode -q -t "$tok" --split-docs --eot "$corpus"/train-* |
		"$bin/tn-shard" pack -q --shuffle --seed 1 --val-fraction 0.005 -o "$work/data" -
fi
"$bin/tn-shard" info "$work/data"

# One run: at most $slice seconds (fewer when TOTAL runs out); tn-train
# turns the SIGTERM of timeout(1) into a checkpoint and a clean exit,
# reported as "interrupted" in --json.
run=1 last=-1
start=$(date +%s)
while :; do
	left=$slice
	if [ -n "${TOTAL:-}" ]; then
		left=$((TOTAL - ($(date +%s) - start)))
		[ "$left" -gt 0 ] || { echo "== TOTAL=$TOTAL seconds spent: stopping at step $last"; break; }
		[ "$left" -lt "$slice" ] || left=$slice
	fi
	if [ -f "$work/run/latest" ] || [ -d "$work/run/latest" ]; then
		from="--resume $work/run"
	else
		from=$model
	fi
	echo "== training run $run ($from)"
	# shellcheck disable=SC2086 # $from holds several options
	summary=$(timeout -s TERM --preserve-status "$left" "$bin/tn-train" $from --backend "$backend" \
		--data "$work/data" -o "$work/run" --json "$@")
	echo "$summary"
	case $summary in
	*'"interrupted":true'*) ;;
	*) break ;;
	esac
	step=${summary#*'"step":'}
	step=${step%%,*}
	if [ "$step" -le "$last" ] && [ "$left" = "$slice" ]; then
		echo "$0: run $run made no progress (step $step): raise SLICE" >&2
		exit 1
	fi
	last=$step run=$((run + 1))
done

for val in "$corpus"/val_*.txt; do
	[ -f "$val" ] || continue
	echo "== held-out text $(basename "$val")"
	"$bin/tn-eval" ppl -m "$work/run" -t "$tok" --split-docs --ctx 2048 --backend "$backend" \
		--json "$val"
done
echo "== done: the loss curve is $work/run/loss.svg"
