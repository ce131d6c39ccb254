#!/bin/sh
# run-unit.sh - run each cmocka unit-test binary from the repository root;
# fail if any fails.
status=0
for t in "$@"; do
	"$t" || status=1
done
exit $status
