#!/usr/bin/env bash
# Remote overhead (case f of the benchmark, run on its own):
#   tests/bench/remote.sh [--runs N]      (default 3; ~2 min on 2 cores)
# The same image, the same simulated ESP32 with its timing model, flashed
# by `cp IMAGE MNT/DEV/flash.bin` at --baud 921600 three ways:
#   inproc   --sim esp32,timing                 (in-process transport)
#   pty      espsim --link on a pty, --port PATH --reset none (termios)
#   rfc2217  espsim --rfc2217 on 127.0.0.1, --port rfc2217://...  (TCP,
#            Telnet framing, the RFC 2217 baud change; resets over it)
# Each run mounts afresh on a blank flash file and times the cp alone
# (connect and stub upload happen at mount).  Medians over the runs; JSON
# in tests/bench/results/remote-latest.json.  Uses the bench's release
# build ($ESPFS_BENCH_BUILD, default /tmp/espfs-bench-build).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
B=${ESPFS_BENCH_BUILD:-/tmp/espfs-bench-build}
RUNS=3
[ "${1:-}" = --runs ] && RUNS=$2
[ -f "$B/build.ninja" ] || meson setup "$B" "$SRC" -Dbuildtype=release >/dev/null
ninja -C "$B" src/fs/espfs src/sim/espsim tests/mount/espfs-mkimage >/dev/null
SHARED=${ESPFS_SHARED:-$SRC/../shared}
IMG=$SHARED/firmware/esphome-project-template/gh-pages-fd3bfd6/project-template-esp32/project-template-esp32.factory.bin
T=$(mktemp -d /tmp/espfs-bench-remote.XXXXXX)
if [ ! -f "$IMG" ]; then  # a bootable image padded to the same size
	"$B/tests/mount/espfs-mkimage" esp32 factory "$T/img.bin"
	head -c 1249000 /dev/urandom | tr '\200-\377' '\000-\177' >>"$T/img.bin"
	IMG=$T/img.bin
fi
STUB=$SRC/tests/interop/node_modules/esptool-js/lib/targets/stub_flasher
STUBARG=()
[ -d "$STUB" ] && STUBARG=(--stub-dir "$STUB")
SIM=
cleanup() {
	mountpoint -q "$T/mnt" 2>/dev/null && fusermount3 -u "$T/mnt"
	[ -n "$SIM" ] && kill "$SIM" 2>/dev/null
	wait 2>/dev/null || true
	rm -rf "$T"
}
trap cleanup EXIT
mkdir -p "$T/mnt"
ms() { date +%s%3N; }

one() {  # CASE: prints the cp time in ms
	local c=$1 port dev
	rm -f "$T/f.flash"
	SIM=
	case $c in
	inproc) set -- --sim "esp32,timing,name=d,flash=$T/f.flash"; dev=d ;;
	pty)
		"$B/src/sim/espsim" --chip esp32 --timing --flash "$T/f.flash" --link "$T/tty" >/dev/null 2>&1 &
		SIM=$!
		for _ in $(seq 100); do [ -L "$T/tty" ] && break; sleep 0.05; done
		set -- --reset none --port "$T/tty"; dev=tty ;;
	rfc2217)
		"$B/src/sim/espsim" --chip esp32 --timing --flash "$T/f.flash" --rfc2217 0 >"$T/url" 2>/dev/null &
		SIM=$!
		for _ in $(seq 100); do [ -s "$T/url" ] && break; sleep 0.05; done
		port=$(cat "$T/url"); set -- --port "$port"; dev=${port#rfc2217://} ;;
	esac
	"$B/src/fs/espfs" -f --no-scan --baud 921600 "${STUBARG[@]}" "$@" "$T/mnt" >"$T/log" 2>&1 &
	local pid=$!
	for _ in $(seq 300); do grep -q idle "$T/mnt/$dev/state" 2>/dev/null && break; sleep 0.1; done
	local t0; t0=$(ms)
	cp "$IMG" "$T/mnt/$dev/flash.bin"
	local dt=$(( $(ms) - t0 ))
	cmp -s -n "$(stat -c %s "$IMG")" "$IMG" "$T/f.flash" || { echo "bench: $c: flash differs" >&2; exit 1; }
	fusermount3 -u "$T/mnt"; wait "$pid" || true
	if [ -n "$SIM" ]; then kill "$SIM"; wait "$SIM" 2>/dev/null || true; SIM=; fi
	echo "$dt"
}

declare -A res
for c in inproc pty rfc2217; do
	for _ in $(seq "$RUNS"); do res[$c]+="$(one $c) "; done
done
python3 - "$IMG" "$RUNS" "${res[inproc]}" "${res[pty]}" "${res[rfc2217]}" "$HERE/results/remote-latest.json" <<'EOF'
import json, os, statistics, sys
img, runs, out = sys.argv[1], int(sys.argv[2]), sys.argv[6]
cases = dict(zip(['inproc', 'pty', 'rfc2217'], [list(map(int, a.split())) for a in sys.argv[3:6]]))
med = {c: statistics.median(v) for c, v in cases.items()}
print(f"remote overhead: cp of {os.path.basename(img)} ({os.path.getsize(img)} bytes), ESP32 timing model, 921600 baud, {runs} runs")
print(f"{'case':10} {'median ms':>10} {'vs inproc':>10}  runs (ms)")
for c, v in cases.items():
    print(f"{c:10} {med[c]:>10.0f} {med[c] / med['inproc']:>9.3f}x  {' '.join(map(str, v))}")
os.makedirs(os.path.dirname(out), exist_ok=True)
json.dump({'image': os.path.basename(img), 'bytes': os.path.getsize(img), 'runs': cases, 'median_ms': med},
          open(out, 'w'), indent=1)
EOF
