#!/bin/bash
# Does the size of write() matter? (issue 14 item 5)  Flashes the ESP32
# factory image (1.3 MB) onto a fresh simulated ESP32 (timing model, 921600
# baud) with cp (128 KiB writes), dd bs=4k, dd bs=128k and curl file://
# (its own write sizes), RUNS times each, interleaved; prints each time and
# the median per tool.  Not part of the test suite.  Several binaries
# (e.g. before and after a change, "OLD NEW") run interleaved, side by side.
# Usage: tests/bench/smallwrites.sh "ESPFS_BIN..." [RUNS] [IMAGE]
set -u
BINS=${1:?espfs binary}
RUNS=${2:-3}
IMG=${3:-${ESPFS_SHARED:-/work/shared}/firmware/esphome-project-template/gh-pages-fd3bfd6/project-template-esp32/project-template-esp32.factory.bin}
W=$(mktemp -d /dev/shm/espfs-smallw.XXXXXX)
trap 'mountpoint -q "$W/mnt" && fusermount3 -u "$W/mnt"; rm -rf "$W"' EXIT
mkdir "$W/mnt"
declare -A times
tools="cp dd4k dd128k curl"
for r in $(seq "$RUNS"); do
	for tool in $tools; do
	for ESPFS in $BINS; do
		rm -f "$W/d.flash"
		"$ESPFS" -f --no-scan --baud 921600 --sim "esp32,timing,name=d,flash=$W/d.flash" "$W/mnt" >"$W/log" 2>&1 &
		pid=$!
		for _ in $(seq 300); do [ -e "$W/mnt/d/state" ] && grep -q idle "$W/mnt/d/state" 2>/dev/null && break; sleep 0.1; done
		t0=$(date +%s%N)
		case $tool in
		cp) cp "$IMG" "$W/mnt/d/flash.bin" ;;
		dd4k) dd if="$IMG" of="$W/mnt/d/flash.bin" bs=4k status=none ;;
		dd128k) dd if="$IMG" of="$W/mnt/d/flash.bin" bs=128k status=none ;;
		curl) curl -sS "file://$IMG" -o "$W/mnt/d/flash.bin" ;;
		esac
		rc=$?
		t1=$(date +%s%N)
		ok=$(cmp -s "$IMG" <(head -c "$(stat -c %s "$IMG")" "$W/d.flash") && echo ok || echo BAD)
		ms=$(( (t1 - t0) / 1000000 ))
		echo "run $r $tool $ESPFS: $ms ms rc=$rc $ok"
		times[$tool $ESPFS]+="$ms "
		fusermount3 -u "$W/mnt"; wait $pid
	done
	done
done
for tool in $tools; do
	for ESPFS in $BINS; do
		echo "median $tool $ESPFS: $(echo ${times[$tool $ESPFS]} | tr ' ' '\n' | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}') ms (runs: ${times[$tool $ESPFS]})"
	done
done
