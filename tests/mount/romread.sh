#!/bin/bash
# Without a stub, the ESP32 ROM's READ_FLASH_SLOW replies carry no checksum:
# bytes damaged on the way back must never make a backup that differs from
# the flash while cp exits 0, nor be cached.  The simulated chip flips bits in
# what it sends (state command "corrupt RATE", fixed seed); each 4 KiB piece
# espfs reads is checked by the ROM's MD5 and read again when it differs.
source "$(dirname "$0")/lib.sh" "$@"
need_fuse

head -c 262144 /dev/urandom >"$T/r.flash"
start_espfs --no-stub --sim "esp32,name=r,size=262144,flash=$T/r.flash" ||
	{ echo "Bail out! espfs did not mount"; exit 1; }
D=$MNT/r
in_rom() { for _ in $(seq 200); do grep -q '^rom' "$D/state" && return 0; sleep 0.1; done; return 1; }
check "an ESP32 in ROM mode" in_rom
check "the chip's replies get damaged from now on" bash -c "echo 'corrupt 0.00003' > '$D/state'"
if cp "$D/flash.bin" "$T/b1.bin" 2>"$T/err"; then
	check "a backup through damaged replies exits 0 and equals the flash" cmp "$T/b1.bin" "$T/r.flash"
else
	nok "a backup through damaged replies: $(cat "$T/err"); state: $(cat "$D/state")"
fi
check "the link is clean again" bash -c "echo 'corrupt 0' > '$D/state'"
check "a second backup (from the cache) equals the flash" cmp "$D/flash.bin" "$T/r.flash"
done_testing
