#!/bin/sh
# deps.sh - make sure the Debian packages that tn builds and tests with are
# installed: as root, install what is missing; otherwise print the exact
# apt-get line and stop.
set -e
pkgs="make gcc pkg-config libarchive-dev libxxhash-dev libjansson-dev \
libopenblas-dev libpcre2-dev libutf8proc-dev libcmocka-dev bats xxhash time python3 zsh valgrind libopenmpi-dev openmpi-bin procps \
gnuplot-nox"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
	echo "tn: installing:$missing" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
else
	echo "tn: missing Debian packages; run:" >&2
	echo "  sudo apt-get install -y$missing" >&2
	exit 1
fi
