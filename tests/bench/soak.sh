#!/usr/bin/env bash
# The long soak (issue 11): 30 cycles of erase + cp + dump + wifi on one
# simulated device, on a plain (non-ASan) optimised build, with espfs's
# resident memory and open file descriptors required to stay flat.  The
# test suite runs the same script (tests/mount/soak.sh) for 5 cycles under
# ASan, which checks for leaks at unmount.
#   tests/bench/soak.sh [CYCLES]      (default 30; needs /dev/fuse, root)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
B=${ESPFS_SOAK_BUILD:-/tmp/espfs-soak-build}
if [ ! -d "$B" ]; then
	meson setup "$B" "$SRC" --buildtype=release >/dev/null
fi
nice ninja -C "$B" src/fs/espfs tests/mount/espfs-mkimage >/dev/null
export ESPFS_SOURCE=$SRC SOAK_CYCLES=${1:-30} SOAK_RSS=1
exec bash "$SRC/tests/mount/soak.sh" "$B/src/fs/espfs" "$B/tests/mount/espfs-mkimage"
