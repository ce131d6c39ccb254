#!/usr/bin/env bats
# share.bats - share/train-corpus.sh, the sliced training job: whatever the
# slices, it ends at the asked step with the held-out texts scored, and it
# stops with a message when a slice is too short to make progress.
bats_require_minimum_version 1.5.0
load helpers

setup_file() {
	cd "$BATS_FILE_TMPDIR"
	mkdir corpus
	text="$BATS_TEST_DIRNAME/../../share/demo/moby-dick-1-30.txt"
	head -c 60000 "$text" > corpus/train-00.txt
	tail -c 20000 "$text" > corpus/val_moby.txt
}

@test "a sliced job trains to the last step and scores the held-out text" {
	cd "$BATS_FILE_TMPDIR"
	BIN=$TN_BIN BACKEND=cpu MODEL="--preset tiny" SLICE=5 \
		run --separate-stderr "$BATS_TEST_DIRNAME/../../share/train-corpus.sh" corpus \
		"$BATS_TEST_DIRNAME/../../share/demo/spm8k.model" work --steps 40 --seq-len 32 --batch 2 -q
	[ "$status" -eq 0 ] || { echo "$output $stderr"; false; }
	[[ "$output" == *'{"step":40,'*'"interrupted":false,'* ]]
	[[ "$output" == *'"bpb":'* ]]
	[ -f work/run/loss.svg ]
}

@test "a slice too short for one step stops the job" {
	cd "$BATS_FILE_TMPDIR"
	BIN=$TN_BIN BACKEND=cpu MODEL="--preset tiny" SLICE=0.01 \
		run --separate-stderr "$BATS_TEST_DIRNAME/../../share/train-corpus.sh" corpus \
		"$BATS_TEST_DIRNAME/../../share/demo/spm8k.model" short --steps 40 --seq-len 32 --batch 2 -q
	[ "$status" -ne 0 ]
}

@test "TOTAL ends the training early and the last checkpoint is scored" {
	cd "$BATS_FILE_TMPDIR"
	BIN=$TN_BIN BACKEND=cpu MODEL="--preset tiny" SLICE=3 TOTAL=5 \
		run --separate-stderr "$BATS_TEST_DIRNAME/../../share/train-corpus.sh" corpus \
		"$BATS_TEST_DIRNAME/../../share/demo/spm8k.model" total --steps 1000000 --seq-len 32 --batch 2 -q
	[ "$status" -eq 0 ] || { echo "$output $stderr"; false; }
	[[ "$output" == *"TOTAL=5 seconds spent"* ]]
	[[ "$output" == *'"bpb":'* ]]
}
