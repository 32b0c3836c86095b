#!/bin/bash
# The size of write() does not shape the flash jobs (issue 14 item 5):
# whatever pieces a tool writes flash.bin in (cp 128 KiB, dd bs=4k, curl's
# 16, 4, 12, 4, 12 ... KiB, dd bs=1000), every job but the stream's last
# covers whole 64 KiB blocks, which the chip erases in one command each; a
# job ending inside a block made the chip erase that block as 16 sectors
# (curl onto flash.bin was 10% slower than cp).  The jobs are read from
# espfs's command timeline (ESPFS_TRACE=1: one "range" line per job); each
# flow writes new random data, so no sector is skipped as already there
# and each job is one range.
source "$(dirname "$0")/lib.sh" "$@"
need_fuse

export ESPFS_TRACE=1
start_espfs --baud 921600 --sim "esp32,name=w,size=0x400000,flash=$T/w.flash" ||
	{ echo "Bail out! espfs did not mount"; exit 1; }
D=$MNT/w

# flow NAME CMD...: write data.bin onto flash.bin with CMD, then check the
# jobs it made
flow() {
	local name=$1; shift
	# 1.3 MB, the size of the ESP32 factory image that showed it
	head -c 1315200 /dev/urandom >"$T/data.bin"
	local from=$(($(wc -l <"$LOG") + 1))
	if "$@" 2>"$T/err"; then ok "$name: exit 0"; else nok "$name: exit $? ($(head -c 200 "$T/err"))"; fi
	check "$name: the flash holds the data" cmp -s "$T/data.bin" <(head -c 1315200 "$T/w.flash")
	local jobs
	jobs=$(tail -n +"$from" "$LOG" | awk '$1 == "trace" && $4 == "range" { print $6 }' | tr '\n' ' ')
	echo "# $name: jobs of $jobs bytes"
	# all but the last a multiple of 64 KiB (they start at 0)
	check "$name: every job but the last ends on a 64 KiB block" \
		python3 -c 'import sys; j = [int(x) for x in sys.argv[1:]]; sys.exit(0 if len(j) > 1 and all(x % 65536 == 0 for x in j[:-1]) and sum(j) >= 1315200 else 1)' $jobs
}

flow "cp" cp "$T/data.bin" "$D/flash.bin"
flow "dd bs=4k" dd if="$T/data.bin" of="$D/flash.bin" bs=4k status=none
# curl's writes from file:// (strace, curl 7.88): 16 KiB, then 4 and 12 KiB
# in turn, a 16 KiB one every 100 KiB
flow "curl's write sizes" python3 - "$T/data.bin" "$D/flash.bin" <<'PY'
import os, sys
data = open(sys.argv[1], 'rb').read()
fd = os.open(sys.argv[2], os.O_WRONLY)
period = [16384] + [4096, 12288] * 5 + [4096]
off = i = 0
while off < len(data):
    n = min(period[i % len(period)], len(data) - off)
    os.write(fd, data[off:off + n])
    off += n
    i += 1
os.close(fd)
PY
flow "dd bs=1000" dd if="$T/data.bin" of="$D/flash.bin" bs=1000 status=none

done_testing
