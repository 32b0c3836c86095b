#!/bin/bash
# Re-flashing an identical image sends no flash data: the device manager
# writes with ESP_WRITE_SKIP_SAME, so the second cp costs MD5 round trips
# only.  Counted on the wire by espfs itself (info.json wire.*), not timed.
source "$(dirname "$0")/lib.sh" "$@"
need_fuse

start_espfs --baud 921600 --sim "esp32,app,name=a,flash=$T/a.flash" || { echo "Bail out! espfs did not mount"; exit 1; }
D=$MNT/a
mkimg esp32 factory "$T/f.bin" skipsame
# other content first (random bytes where the app goes), so the first cp
# has real work to do
head -c 131072 /dev/urandom >"$T/g.bin"
pk() { json_get "$D/info.json" wire.flash_data_packets; }
tx() { json_get "$D/info.json" wire.tx_bytes; }
check "dd random data over the app region first" dd if="$T/g.bin" of="$D/flash.bin" bs=64k seek=1 conv=notrunc,fsync status=none
# Each cp starts with the chip in its app (a reset first), so both pay the
# same reconnect and stub upload: whether the idle chip had been let go
# before a cp was a matter of timing, and made the byte counts unequal.
echo reset >"$D/state"
p0=$(pk); t0=$(tx)
check "cp the image" cp "$T/f.bin" "$D/flash.bin"
p1b=$(pk); t1b=$(tx)
check "the flash holds it" cmp -n "$(stat -c %s "$T/f.bin")" "$T/f.bin" "$T/a.flash"
echo reset >"$D/state"
p1=$(pk); t1=$(tx)
check "cp the same image again" cp "$T/f.bin" "$D/flash.bin"
p2=$(pk); t2=$(tx)
check "the flash still holds it" cmp -n "$(stat -c %s "$T/f.bin")" "$T/f.bin" "$T/a.flash"
echo "# first cp: $((p1b - p0)) FLASH_DATA packets, $((t1b - t0)) bytes sent; again: $((p2 - p1)) packets, $((t2 - t1)) bytes"
check "the first cp sent flash data" [ $((p1b - p0)) -gt 0 ]
check "the identical cp sent no FLASH_DATA" [ $((p2 - p1)) -eq 0 ]
# (the second cp still reconnects, so its bytes include SYNC and the stub upload)
check "and fewer bytes than the first" [ $((t2 - t1)) -lt $((t1b - t0)) ]
check "state is idle" grep -q idle "$D/state"
done_testing
