#!/bin/bash
# A second backup of the same flash does not cross the wire again: what
# espfs read is kept and, once the chip has run its app, used only after
# the chip's MD5 of it matches.  An app that changed a sector is caught.  Any
# range the cache holds is served, however a reader cuts it (cmp, md5sum,
# head, dd bs=1000), and a backup shows in state its progress through the
# whole flash, not one 128 KiB request's.
# Counted by espfs itself (info.json wire.rx_bytes), not timed.
source "$(dirname "$0")/lib.sh" "$@"
need_fuse

head -c 524288 /dev/urandom >"$T/t.flash"
start_espfs --baud 921600 --sim "esp32,app,name=a,size=1048576,flash=$T/a.flash" \
	--sim "esp32,name=t,size=524288,timing,flash=$T/t.flash" ||
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
check "the changed sector was read again" [ $((r3 - r2)) -ge 4096 ]
check "and little else" [ $(((r3 - r2) * 4)) -lt $((r1 - r0)) ]

# Right after a cp, readers that cut flash.bin in small or odd pieces are
# served from what was written (before: only whole 64 KiB-aligned reads
# were, so each of these went to the chip again).
mkimg esp32 factory "$T/f.bin"
sz=$(stat -c %s "$T/f.bin")
check "cp an image" cp "$T/f.bin" "$D/flash.bin"
r4=$(rx)
check "cmp -n of what was written" cmp -n "$sz" "$T/f.bin" "$D/flash.bin"
check "md5sum of its first bytes (head -c)" \
	[ "$(head -c "$sz" "$D/flash.bin" | md5sum)" = "$(md5sum <"$T/f.bin")" ]
check "dd bs=4k" cmp <(dd if="$D/flash.bin" bs=4k count=$((sz / 4096)) status=none) \
	<(head -c $((sz / 4096 * 4096)) "$T/f.bin")
check "dd bs=1000 at an odd offset" cmp <(dd if="$D/flash.bin" bs=1000 skip=7 count=50 status=none) \
	<(dd if="$T/f.bin" bs=1000 skip=7 count=50 status=none)
r5=$(rx)
echo "# received: $((r5 - r4)) bytes for four reads of the $sz-byte image just written"
check "the small reads were served from the cache (received under a tenth of one image)" \
	[ $(((r5 - r4) * 10)) -lt "$sz" ]

# A backup on a chip with the link's timing: state follows the whole read.
cp "$MNT/t/flash.bin" "$T/t.bin" &
CP=$!
best=
while kill -0 $CP 2>/dev/null; do
	l=$(cat "$MNT/t/state")
	case $l in *"reading flash.bin"*) best=$l ;; esac
	sleep 0.2
done
wait $CP; rc=$?
echo "# last progress seen: $best"
check "backup of the timed chip" [ $rc = 0 ]
check "it equals its flash" cmp "$T/t.bin" "$T/t.flash"
total=$(sed -n 's|.*(\([0-9]*\)/\([0-9]*\) bytes).*|\2|p' <<<"$best")
done_b=$(sed -n 's|.*(\([0-9]*\)/\([0-9]*\) bytes).*|\1|p' <<<"$best")
check "state counts the bytes of the whole flash" [ "$total" = 524288 ]
check "and how far the backup got, past its first request" [ "${done_b:-0}" -gt 131072 ]
done_testing
