#!/bin/bash
# A second backup of the same flash does not cross the wire again: what
# espfs read is kept and, once the chip has run its app, used only after
# the chip's MD5 of it matches.  An app that changed a block is caught.
# Counted by espfs itself (info.json wire.rx_bytes), not timed.
source "$(dirname "$0")/lib.sh" "$@"
need_fuse

start_espfs --baud 921600 --sim "esp32,app,name=a,size=1048576,flash=$T/a.flash" ||
	{ echo "Bail out! espfs did not mount"; exit 1; }
D=$MNT/a
rx() { json_get "$D/info.json" wire.rx_bytes; }
let_go() {   # the worker resets the chip into its app when idle
	for _ in $(seq 100); do grep -q '^app idle' "$D/state" && return 0; sleep 0.1; done
	return 1
}
check "the chip runs its app" let_go
r0=$(rx)
check "first backup" cp "$D/flash.bin" "$T/b1.bin"
r1=$(rx)
check "it equals the flash" cmp "$T/b1.bin" "$T/a.flash"
check "the chip is let go again" let_go
check "second backup" cp "$D/flash.bin" "$T/b2.bin"
r2=$(rx)
check "it equals the flash" cmp "$T/b2.bin" "$T/a.flash"
echo "# received: first backup $((r1 - r0)) bytes, second $((r2 - r1))"
check "the second backup received under a tenth of the first's bytes" [ $(((r2 - r1) * 10)) -lt $((r1 - r0)) ]

# the app writes a block meanwhile (the test writes the sim's flash file)
check "the chip is let go again" let_go
head -c 4096 /dev/urandom >"$T/x.bin"
dd if="$T/x.bin" of="$T/a.flash" bs=4096 seek=$((0x50000 / 4096)) conv=notrunc status=none
check "third backup" cp "$D/flash.bin" "$T/b3.bin"
r3=$(rx)
check "it holds what the app wrote" cmp "$T/b3.bin" "$T/a.flash"
echo "# received: third backup $((r3 - r2)) bytes"
check "the changed 64 KiB block was read again" [ $((r3 - r2)) -ge 65536 ]
check "and little else" [ $(((r3 - r2) * 4)) -lt $((r1 - r0)) ]
done_testing
