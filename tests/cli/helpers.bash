# helpers.bash - shared setup for the command-line tests.
# TN_BIN: directory of the tn-* binaries; TN_SHARED: the shared data folder.
: "${TN_BIN:=$BATS_TEST_DIRNAME/../../bin}"
: "${TN_SHARED:=$BATS_TEST_DIRNAME/../../../shared}"
export TN_BIN TN_SHARED

setup() {
	T="$BATS_TEST_TMPDIR"
	cd "$T" || return 1
}

# Exactly one line on stderr, naming what it should.
one_line_error() {
	[ "$status" -ne 0 ] || { echo "expected failure, got status 0"; return 1; }
	[ "$(printf '%s\n' "$stderr" | wc -l)" -eq 1 ] || { echo "stderr: $stderr"; return 1; }
	[[ "$stderr" == *"$1"* ]] || { echo "stderr lacks '$1': $stderr"; return 1; }
}
