#!/bin/bash
# Long work stays off FUSE threads: Ctrl-C on a cp into flash.bin returns
# promptly and state says the flash is incomplete; while one device flashes,
# another device's files answer in milliseconds.  Uses the timing model
# (a real serial link's speed), so the flash takes long enough to interrupt.
source "$(dirname "$0")/lib.sh" "$@"
need_fuse

start_espfs --baud 460800 --sim "esp32,timing,name=slow,flash=$T/slow.flash" \
	--sim "esp32c3,name=other,flash=$T/other.flash" || { echo "Bail out! espfs did not mount"; exit 1; }
S=$MNT/slow
head -c $((1024 * 1024)) /dev/urandom >"$T/rand.bin"   # incompressible: slow on the wire

set -m   # background jobs get SIGINT like a terminal's Ctrl-C
cp "$T/rand.bin" "$S/flash.bin" 2>"$T/cp.err" &
cp_pid=$!
set +m
sleep 2
echo "# state while flashing: $(cat "$S/state")"
check "state shows the flash in progress" grep -q "writing flash.bin" "$S/state"

# metadata and another device stay responsive during the flash
worst=0
for i in $(seq 10); do
	t0=$(ms_now)
	cat "$MNT/other/chip" "$MNT/other/mac" "$MNT/other/state" >/dev/null
	ls -l "$S" >/dev/null
	cat "$S/chip" >/dev/null
	dt=$(( $(ms_now) - t0 ))
	[ $dt -gt $worst ] && worst=$dt
done
echo "# worst latency of cat/ls during the flash: $worst ms"
check "other device and metadata answer within 200 ms during a flash" [ $worst -lt 200 ]
t0=$(ms_now)
head -c 16384 "$MNT/other/flash.bin" >/dev/null
echo "# head -c 16384 other/flash.bin during the flash: $(( $(ms_now) - t0 )) ms"

# the flashing device: reads and a second writer are refused, not queued
if head -c 100 "$S/flash.bin" >/dev/null 2>"$T/err"; then nok "reading flash.bin during a flash gets EBUSY"
else check "reading flash.bin during a flash gets EBUSY" grep -q "busy" "$T/err"; fi
if bash -c "exec 3>>'$S/flash.bin'" 2>"$T/err"; then nok "a second writer gets EBUSY"
else check "a second writer gets EBUSY" grep -q "busy" "$T/err"; fi

kill -INT $cp_pid
t0=$(ms_now)
wait $cp_pid
rc=$?
dt=$(( $(ms_now) - t0 ))
echo "# cp exited $rc, $dt ms after SIGINT; said: $(cat "$T/cp.err")"
check "cp was interrupted (non-zero exit)" [ $rc -ne 0 ]
check "cp returned within a second of SIGINT" [ $dt -lt 1000 ]
sleep 0.3
echo "# state: $(cat "$S/state")"
check "state says the flash is incomplete" grep -q "incomplete" "$S/state"

# what the interrupted write left is read from the chip, not from what
# espfs had cached of that region before
check "flash.bin's first 64 KiB read back what the chip holds after the interruption" \
	cmp <(head -c 65536 "$S/flash.bin") <(head -c 65536 "$T/slow.flash")

# the device is usable again: a small write goes through
head -c 4096 /dev/urandom >"$T/small.bin"
check "a later write succeeds" dd if="$T/small.bin" of="$S/flash.bin" bs=4k seek=32 conv=notrunc status=none
check "and lands in the flash" cmp "$T/small.bin" <(dd if="$T/slow.flash" bs=4k skip=32 count=1 status=none)
done_testing
