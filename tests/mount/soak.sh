#!/bin/bash
# Soak: CYCLES (default 5; the benchmark runs 30) rounds of erase + cp +
# dump + wifi on one device.  Every round must do exactly what it was asked
# (the dump equals what was written, the erase left 0xFF, wifi connects),
# and espfs's open file descriptors must stay flat; with SOAK_RSS=1 (a
# plain build: ASan's quarantine grows by design) its resident memory too.
# Under ASan the unmount checks that nothing leaked (lib.sh).
# Usage: soak.sh ESPFS MKIMAGE [ESPSIM]   env: SOAK_CYCLES, SOAK_RSS
source "$(dirname "$0")/lib.sh" "$@"
need_fuse

CYCLES=${SOAK_CYCLES:-5}
start_espfs --sim "esp32,app,improv,wifi=Net:pw,name=s,flash=$T/s.flash" ||
	{ echo "Bail out! espfs did not mount"; exit 1; }
D=$MNT/s
mkimg esp32 factory "$T/factory.bin" soak

rss() { awk '/^VmRSS/ {print $2}' "/proc/$ESPFS_PID/status"; }
fds() { ls "/proc/$ESPFS_PID/fd" | wc -l; }
bad=0
rss_at=()
fds_at=()
t0=$(ms_now)
for c in $(seq "$CYCLES"); do
	# erase the whole chip: it must read back as 0xFF
	if ! echo 1 >"$D/erase" 2>"$T/err"; then echo "# cycle $c: erase failed: $(cat "$T/err")"; bad=1; fi
	if ! cmp -s -n $((1024 * 1024)) <(head -c $((1024 * 1024)) /dev/zero | tr '\0' '\377') "$T/s.flash"; then
		echo "# cycle $c: the flash is not blank after the erase"; bad=1
	fi
	# a bootable image with 1 MiB of fresh data behind it
	head -c $((1024 * 1024)) /dev/urandom >"$T/data.bin"
	# (no holes: cp skips a sparse file's holes, which would leave the
	# flash there as it was)
	{ cat "$T/factory.bin"; head -c $((0x100000 - $(stat -c %s "$T/factory.bin"))) /dev/zero | tr '\0' '\377'
	  cat "$T/data.bin"; } >"$T/img.bin"
	if ! cp "$T/img.bin" "$D/flash.bin" 2>"$T/err"; then echo "# cycle $c: cp failed: $(cat "$T/err")"; bad=1; fi
	# dump the whole flash through the mount
	if ! cat "$D/flash.bin" >"$T/dump.bin" 2>"$T/err"; then echo "# cycle $c: dump failed: $(cat "$T/err")"; bad=1; fi
	if ! cmp -s -n "$(stat -c %s "$T/img.bin")" "$T/img.bin" "$T/dump.bin"; then
		echo "# cycle $c: the dump differs from what was written: $(cmp "$T/img.bin" "$T/dump.bin" 2>&1 | head -1)"; bad=1
	fi
	if ! cmp -s "$T/dump.bin" "$T/s.flash"; then
		echo "# cycle $c: the dump differs from the chip: $(cmp "$T/dump.bin" "$T/s.flash" 2>&1 | head -1)"; bad=1
	fi
	if ! echo "Net:pw" >"$D/wifi" 2>"$T/err"; then echo "# cycle $c: wifi failed: $(cat "$T/err"); $(cat "$D/state")"; bad=1; fi
	grep -q "^connected Net" "$D/wifi" || { echo "# cycle $c: wifi says $(cat "$D/wifi")"; bad=1; }
	rss_at+=("$(rss)")
	fds_at+=("$(fds)")
done
dt=$(( $(ms_now) - t0 ))
echo "# $CYCLES cycles in $dt ms; RSS (KiB) per cycle: ${rss_at[*]}"
echo "# open fds per cycle: ${fds_at[*]}"
check "every cycle did what it was asked (erase, cp, dump, wifi)" [ $bad = 0 ]
check "open file descriptors stay flat" [ "${fds_at[0]}" = "${fds_at[-1]}" ]
if [ "${SOAK_RSS:-0}" = 1 ]; then
	# after a warm-up of a third of the cycles (malloc arenas, the read
	# cache's file, libfuse's buffers settle): growth under 1 MiB
	w=$(( CYCLES / 3 ))
	grow=$(( rss_at[-1] - rss_at[w] ))
	echo "# RSS growth after cycle $((w + 1)): $grow KiB"
	check "resident memory stays flat (growth under 1 MiB after the warm-up)" [ $grow -lt 1024 ]
fi
done_testing
