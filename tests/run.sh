#!/bin/sh
# Builds espfs with AddressSanitizer and UBSan and runs every test.
# Ends with the line "N passed, N failed[, N skipped]".
set -e
src=$(cd "$(dirname "$0")/.." && pwd)
build=${ESPFS_TEST_BUILD:-$src/build-test}
if [ ! -f "$build/build.ninja" ]; then
	meson setup "$build" "$src" -Db_sanitize=address,undefined -Db_lundef=false \
		--buildtype=debugoptimized -Dwerror=true >/dev/null
fi
ninja -C "$build" >/dev/null
set +e
meson test -C "$build" --print-errorlogs --timeout-multiplier 2 "$@" > "$build/test-output.txt" 2>&1
rc=$?
set -e
python3 "$src/tests/summarize.py" "$build/meson-logs/testlog.json"
