#!/usr/bin/env bats
# completion.bats - the bash completion offers the subcommands and long
# options that each built program lists in its --help.
load helpers

complete_words() {
	PATH="$TN_BIN:$PATH" bash -c '
		source "$0"
		COMP_WORDS=("${@}"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
		_tn_complete; printf "%s\n" "${COMPREPLY[@]}"' \
		"$BATS_TEST_DIRNAME/../../completions/tn.bash" "$@"
}

@test "every program has --help, --version and completions" {
	for p in "$TN_BIN"/tn-*; do
		name=$(basename "$p")
		run "$p" --help
		[ "$status" -eq 0 ] && [[ "$output" == *"Usage: $name"* ]] || { echo "$name --help"; return 1; }
		run "$p" --version
		[ "$status" -eq 0 ] && [[ "$output" == "$name (tn) "* ]] || { echo "$name --version"; return 1; }
		grep -q "$name" "$BATS_TEST_DIRNAME/../../completions/tn.bash"
		grep -q "$name" "$BATS_TEST_DIRNAME/../../completions/_tn"
		[ -f "$BATS_TEST_DIRNAME/../../man/man1/$name.1" ] || { echo "no man page for $name"; return 1; }
	done
}

@test "bash completion of tn-shard subcommands and options" {
	run complete_words tn-shard ve
	[ "$output" = "verify" ]
	run complete_words tn-shard pack --sh
	[[ "$output" == *"--shuffle"* ]] && [[ "$output" == *"--shard-tokens"* ]]
}

@test "zsh completion parses" {
	command -v zsh >/dev/null || skip "zsh not installed"
	zsh -n "$BATS_TEST_DIRNAME/../../completions/_tn"
}
