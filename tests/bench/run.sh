#!/usr/bin/env bash
# The espfs benchmark (not part of the test suite):
#   tests/bench/run.sh [--rev REV] [--quick] [--runs N] [--runs-long N]
#                      [--cases a,b,c,d,e] [--out FILE]
# Builds an optimised tree of the working copy (or, with --rev, of a
# committed revision, so half-done edits of others do not get measured),
# links the counting copy of espfs (wirecount.c), then runs bench.mjs.
# Table on stdout, JSON in tests/bench/results/latest.json.  See README.md.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
B=${ESPFS_BENCH_BUILD:-/tmp/espfs-bench-build}

args=()
while [ $# -gt 0 ]; do
	if [ "$1" = --rev ]; then
		rev=$(git -C "$SRC" rev-parse --short "$2")
		snap=/tmp/espfs-bench-src-$rev
		if [ ! -d "$snap" ]; then
			mkdir -p "$snap.tmp"
			git -C "$SRC" archive "$rev" | tar -x -C "$snap.tmp"
			mv "$snap.tmp" "$snap"
		fi
		SRC=$snap
		B=${ESPFS_BENCH_BUILD:-/tmp/espfs-bench-build-$rev}
		args+=(--src "$snap" --rev "$rev")
		shift 2
	else
		args+=("$1")
		shift
	fi
done

if [ ! -f "$B/build.ninja" ]; then
	# release build: sanitizers would measure themselves, not espfs
	meson setup "$B" "$SRC" -Dbuildtype=release >/dev/null
fi
ninja -C "$B" src/fs/espfs src/sim/espsim tests/mount/espfs-mkimage >/dev/null

# latprobe: the metadata latency sampler of case e (C: no runtime jitter)
cc -O2 -std=gnu11 -Wall -Wextra "$HERE/latprobe.c" -o "$B/latprobe"

# schedbound: the best schedule any client can reach on the sim's model
cc -O2 -std=gnu11 -Wall -Wextra "$HERE/schedbound.c" -o "$B/schedbound" -ldeflate -lz

# espfs-wire: espfs linked with the byte counters around sim transports
cc -O2 -std=gnu11 -Wall -Wextra -I"$SRC/include" -c "$HERE/wirecount.c" -o "$B/wirecount.o"
link=$(ninja -C "$B" -t commands src/fs/espfs | tail -n 1)
case "$link" in
*" -o src/fs/espfs "*) ;;
*) echo "bench: cannot find the espfs link command in $B" >&2; exit 1 ;;
esac
link=${link/ -o src\/fs\/espfs / -o espfs-wire wirecount.o -Wl,--wrap=sim_transport_open }
(cd "$B" && eval "$link")

if [ -z "${ESPFS_SHARED:-}" ] && [ -d "$HERE/../../../shared" ]; then
	ESPFS_SHARED=$(cd "$HERE/../../../shared" && pwd)
fi
export ESPFS_SHARED=${ESPFS_SHARED:-}
exec node "$HERE/bench.mjs" --build "$B" ${args[@]+"${args[@]}"}
