#!/bin/sh
# scaling.sh - distributed training on the GPUs of one host (issue 11), in one call:
#   scaling.sh table DATA  weak scaling: tokens/s per GPU, efficiency against one GPU, memory
#                          and the loss gap to one rank with the same global batch, per preset,
#                          sharding mode and rank count (a markdown table; JSON lines in WORK)
#   scaling.sh kill DATA   kill one rank mid-run: how long the others take to stop, then a
#                          resume on half the ranks (same global batch) that finishes the run
#   scaling.sh kill-env DATA  the same with two GPU ranks started from the environment (as a
#                          cluster scheduler starts them: no launcher to stop the survivor), whose
#                          survivor must stop by itself within --timeout (TIMEOUT, 30 s)
# Knobs (environment): BIN (bin), BACKEND (cuda-bf16), PRESETS ("tnl-385m tnl-1b"),
# NPROCS ("1 2 4 8"), MODES ("dp zero1 zero2 tp2"), SEQ (2048), BATCH (8, per data-parallel
# rank), STEPS (8), TRAIN_OPTS (more tn-train options for every run, e.g. "--recompute all"),
# WORK (a new temporary directory). NCCL_NVLS_ENABLE=0 is set (NVLink multicast stays off on
# shared hosts).
set -eu
what=${1:?usage: scaling.sh table|kill|kill-env DATA}
data=${2:?usage: scaling.sh table|kill|kill-env DATA}
bin=${BIN:-bin} backend=${BACKEND:-cuda-bf16} seq=${SEQ:-2048} batch=${BATCH:-8} steps=${STEPS:-8}
work=${WORK:-$(mktemp -d)}
mkdir -p "$work"
export NCCL_NVLS_ENABLE=0

# train OUT NPROC BATCH [OPTION...]: one run; its --json line on stdout
train() { # (sh has no locals: these names are its own)
	t_out=$1 t_np=$2 t_batch=$3
	shift 3
	# shellcheck disable=SC2086 # TRAIN_OPTS holds options and their values
	"$bin/tn-train" --backend "$backend" --data "$data" -o "$t_out" --seq-len "$seq" \
		--batch "$t_batch" --nproc "$t_np" --json -q ${TRAIN_OPTS:-} "$@"
}
field() { sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p"; }
losses() { grep -o '"loss":[^,}]*' "$1/metrics.jsonl" | cut -d: -f2; }
# largest relative gap between the step losses of two runs
gap() { losses "$1" | paste - "$2" | awk '{ d = ($1 - $2) / $1; if (d < 0) d = -d; if (d > m) m = d }
	END { printf "%.2g", m }'; }

table() {
	echo "| preset | mode | GPUs | tok/s | tok/s per GPU | efficiency | GiB on rank 0 | loss gap to 1 rank |"
	echo "|---|---|---|---|---|---|---|---|"
	for preset in ${PRESETS:-tnl-385m tnl-1b}; do
		base=
		for np in ${NPROCS:-1 2 4 8}; do
			one=$work/$preset-one-$np
			if [ "$np" -gt 1 ]; then # one rank with the global batch of $np data-parallel ranks
				train "$one" 1 $((np * batch)) --preset "$preset" --steps "$steps" \
					--no-checkpoint >/dev/null
				losses "$one" >"$one.losses"
			fi
			for mode in ${MODES:-dp zero1 zero2 tp2}; do
				case $mode in
				dp) opt='' dp=$np ;;
				zero1) opt="--zero 1" dp=$np ;;
				zero2) opt="--zero 2" dp=$np ;;
				tp2) opt="--tp 2" dp=$((np / 2)) ;;
				*) echo "scaling.sh: unknown mode '$mode'" >&2; exit 2 ;;
				esac
				[ "$dp" -ge 1 ] && [ "$np" -gt 1 ] || [ "$mode" = dp ] || continue
				run=$work/$preset-$mode-$np
				# (no checkpoints: the table needs the metrics, and a 7B checkpoint is 84 GB)
				# shellcheck disable=SC2086 # $opt holds an option and its value
				j=$(train "$run" "$np" "$batch" --preset "$preset" --steps "$steps" --no-checkpoint $opt)
				echo "$j {\"preset\":\"$preset\",\"mode\":\"$mode\",\"nproc\":$np}" >>"$work/scaling.jsonl"
				tps=$(echo "$j" | field tokens_per_s) mem=$(echo "$j" | field device_bytes)
				if [ -z "$base" ]; then # one rank, plain: the reference of global batch $batch
					base=$tps
					losses "$run" >"$work/$preset-one-1.losses"
				fi
				lg=-
				[ "$np" -eq 1 ] || [ ! -f "$work/$preset-one-$dp.losses" ] ||
					lg=$(gap "$run" "$work/$preset-one-$dp.losses")
				awk -v p="$preset" -v m="$mode" -v n="$np" -v t="$tps" -v b="$base" -v g="$mem" \
					-v l="$lg" 'BEGIN { printf "| %s | %s | %d | %.0f | %.0f | %.1f %% | %.1f | %s |\n",
					p, m, n, t, t / n, 100 * t / n / b, g / 2^30, l }'
			done
		done
	done
}

# first_checkpoint PID ERR: wait for $run/latest while PID runs (else show ERR and fail)
first_checkpoint() {
	while [ ! -e "$run/latest" ]; do
		kill -0 "$1" 2>/dev/null || { echo "scaling.sh: the run ended before its first checkpoint:" \
			"$(cat "$2")" >&2; exit 1; }
		sleep 1
	done
}

kill_one() {
	np=${NPROCS:-8}
	np=${np##* }
	preset=${PRESETS:-tnl-385m}
	preset=${preset%% *}
	run=$work/kill
	# the launcher itself in the background (not a subshell), so that its children are the ranks
	"$bin/tn-train" --backend "$backend" --data "$data" -o "$run" --seq-len "$seq" --batch "$batch" \
		--nproc "$np" -q --preset "$preset" --steps 100000 --save-every 5 2>"$work/kill.err" &
	launcher=$!
	first_checkpoint "$launcher" "$work/kill.err"
	sleep 2
	victim=$(pgrep -P "$launcher" | tail -1)
	t0=$(date +%s.%N)
	kill -9 "$victim"
	status=0
	wait "$launcher" || status=$?
	t1=$(date +%s.%N)
	at=$(readlink "$run/latest")
	echo "killed one of $np ranks (pid $victim): the run stopped with status $status after" \
		"$(echo "$t0 $t1" | awk '{ printf "%.1f", $2 - $1 }') s; last checkpoint $at"
	sed 's/^/  stderr: /' "$work/kill.err" | tail -3
	[ "$status" -ne 0 ] || { echo "scaling.sh: the run did not fail" >&2; exit 1; }
	half=$((np / 2 > 0 ? np / 2 : 1))
	upto=$(echo "$at" | awk -F- '{ print $2 + 3 }')
	j=$(train "$run" "$half" $((batch * np / half)) --resume "$run" --steps "$upto")
	echo "resumed on $half ranks from $at: $j"
	echo "$j" | grep -q "\"step\":$upto," || { echo "scaling.sh: the resume did not reach step $upto" >&2; exit 1; }
}

# Two ranks from TN_RANK/TN_WORLD_SIZE/TN_MASTER_ADDR; SIGKILL to rank 1 after the first
# checkpoint; how rank 0 ends, and when.
kill_env() {
	preset=${PRESETS:-tnl-385m}
	preset=${preset%% *}
	run=$work/kill-env
	master=127.0.0.1:$((20000 + $$ % 20000))
	env_rank() {
		TN_RANK=$1 TN_WORLD_SIZE=2 TN_MASTER_ADDR=$master "$bin/tn-train" --backend "$backend" \
			--data "$data" -o "$run" --seq-len "$seq" --batch "$batch" -q --preset "$preset" \
			--steps 100000 --save-every 5 --timeout "${TIMEOUT:-30}" 2>"$work/kill-env-$1.err" &
	}
	env_rank 0
	pid0=$!
	env_rank 1
	pid1=$!
	first_checkpoint "$pid0" "$work/kill-env-0.err"
	sleep 2
	t0=$(date +%s.%N)
	kill -9 "$pid1"
	status=0
	wait "$pid0" || status=$?
	t1=$(date +%s.%N)
	echo "killed rank 1 of 2 (started from the environment, --timeout ${TIMEOUT:-30}): rank 0" \
		"exited with status $status after $(echo "$t0 $t1" | awk '{ printf "%.1f", $2 - $1 }') s"
	sed 's/^/  rank 0 stderr: /' "$work/kill-env-0.err" | tail -3
	[ "$status" -ne 0 ] || { echo "scaling.sh: rank 0 did not fail" >&2; exit 1; }
}

case $what in
table) table ;;
kill) kill_one ;;
kill-env) kill_env ;;
*) echo "usage: scaling.sh table|kill|kill-env DATA" >&2; exit 2 ;;
esac
