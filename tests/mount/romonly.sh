#!/bin/bash
# Without a stub (--no-stub), on chips whose ROM cannot read flash (ESP32-C3,
# ESP8266): what espfs wrote reads back from its cache in any pieces; a write
# whose last sector it cannot read is padded with 0xFF as esptool does (and
# says so) instead of failing halfway through a copy; a write that starts
# inside a sector it cannot read is refused before anything is erased; a
# read the chip cannot do fails with its errno in state; ESP8266 ROM writes
# are said to be unverified, never "idle".
source "$(dirname "$0")/lib.sh" "$@"
need_fuse

MB=1048576
head -c $MB /dev/urandom >"$T/c.flash"
head -c $MB /dev/urandom >"$T/e.flash"
cp "$T/c.flash" "$T/c.want"
cp "$T/e.flash" "$T/e.want"
start_espfs --no-stub --sim "esp32c3,name=c,size=$MB,flash=$T/c.flash" \
	--sim "esp8266,name=e,size=$MB,flash=$T/e.flash" ||
	{ echo "Bail out! espfs did not mount"; exit 1; }
C=$MNT/c
E=$MNT/e
st() { cat "$1/state"; }
# put SRC at byte offset OFF of FILE (the flash we expect)
put() { dd if="$2" of="$1" bs=4096 seek=$(($3)) oflag=seek_bytes conv=notrunc status=none; }
ffs() { head -c $(($1)) /dev/zero | tr '\0' '\377'; }
same_flash() { cmp "$1.flash" "$1.want"; }

# 1. A write whose last sector the C3 ROM cannot read back: padded.
head -c $((0x2345)) /dev/urandom >"$T/blob"
check "C3: dd of 0x2345 bytes over old data at 0x40000" \
	dd if="$T/blob" of="$C/flash.bin" bs=4096 seek=64 conv=notrunc status=none
put "$T/c.want" "$T/blob" 0x40000
ffs $((0x3000 - 0x2345)) >"$T/pad"; put "$T/c.want" "$T/pad" 0x42345
check "C3: the flash holds it, 0xFF to the end of its sector, nothing else changed" same_flash "$T/c"
echo "# state: $(st "$C")"
check "C3: state says the rest of the sector was set to 0xFF" grep -q "set to 0xFF" "$C/state"

# 2. What was just written reads back, in small and odd pieces.
check "C3: dd bs=4k of the written range" cmp <(dd if="$C/flash.bin" bs=4k skip=64 count=2 status=none) \
	<(head -c 8192 "$T/blob")
check "C3: dd bs=1000 of the written range" \
	cmp <(dd if="$C/flash.bin" bs=1000 skip=$((0x40000 / 1000 + 1)) count=8 status=none) \
	<(dd if="$T/c.want" bs=1000 skip=$((0x40000 / 1000 + 1)) count=8 status=none)

# 3. A read the chip cannot do: its errno in state.
if dd if="$C/flash.bin" bs=4k skip=128 count=1 of=/dev/null status=none 2>"$T/err"; then
	nok "C3: a read of flash espfs does not hold fails"
else
	ok "C3: a read of flash espfs does not hold fails ($(cat "$T/err"))"
fi
echo "# state: $(st "$C")"
check "C3: state says the read failed, with EOPNOTSUPP" grep -q "error EOPNOTSUPP: flash.bin: read at 0x80000" "$C/state"
check "C3: a good read later ends that error" dd if="$C/flash.bin" bs=4k skip=64 count=1 of=/dev/null status=none
check "C3: state no longer shows it" bash -c "! grep -q 'error' '$C/state'"

# 4. A write starting inside a sector the ROM cannot read: refused, nothing erased.
if dd if="$T/blob" of="$C/flash.bin" bs=16 seek=$((0x60010 / 16)) count=256 conv=notrunc status=none 2>"$T/err"; then
	nok "C3: a write from inside a sector is refused"
else
	ok "C3: a write from inside a sector is refused ($(cat "$T/err"))"
fi
echo "# state: $(st "$C")"
check "C3: state says why" grep -q "starts inside a sector" "$C/state"
check "C3: the flash is untouched" same_flash "$T/c"
# a failed read shows over that refusal, and a good read brings it back
dd if="$C/flash.bin" bs=4k skip=128 count=1 of=/dev/null status=none 2>/dev/null
check "C3: a failed read shows in state over it" grep -q "flash.bin: read at 0x80000" "$C/state"
dd if="$C/flash.bin" bs=4k skip=64 count=1 of=/dev/null status=none
echo "# state: $(st "$C")"
check "C3: a good read ends the read error, not the refusal under it" grep -q "starts inside a sector" "$C/state"

# 5. The rest of a last sector known from the cache is kept, not padded.
head -c $((0x3000)) /dev/urandom >"$T/a"
head -c $((0x1800)) /dev/urandom >"$T/b"
check "C3: write 0x3000 bytes at 0x50000" dd if="$T/a" of="$C/flash.bin" bs=4096 seek=80 conv=notrunc status=none
check "C3: then 0x1800 bytes over their start" dd if="$T/b" of="$C/flash.bin" bs=4096 seek=80 conv=notrunc status=none
put "$T/c.want" "$T/a" 0x50000
put "$T/c.want" "$T/b" 0x50000
check "C3: the flash keeps the first write's bytes after the second" same_flash "$T/c"

# 6. A factory image over old data, twice (a retry must work too); then it
#    boots, and reads back once its MD5 matches.
mkimg esp32c3 factory "$T/f.bin"
sz=$(stat -c %s "$T/f.bin")
check "C3: cp a factory image over old data" cp "$T/f.bin" "$C/flash.bin"
check "C3: and again" cp "$T/f.bin" "$C/flash.bin"
check "C3: the flash holds it" cmp -n "$sz" "$T/f.bin" "$T/c.flash"
for _ in $(seq 100); do grep -q '^app' "$C/state" && break; sleep 0.1; done
echo "# state: $(st "$C")"
check "C3: it reads back after the app ran (checked by the ROM's MD5)" cmp -n "$sz" "$T/f.bin" "$C/flash.bin"

# 7. ESP8266 ROM: no MD5, no read, and it erases sectors in pairs inside a
#    64 KiB block: 3 sectors written take the 4th with them.  Padded (and
#    the 4th left erased) when espfs does not know them, said in state, and
#    said to be unverified.
check "ESP8266: dd of 0x2345 bytes at 0x40000" \
	dd if="$T/blob" of="$E/flash.bin" bs=4096 seek=64 conv=notrunc status=none
put "$T/e.want" "$T/blob" 0x40000
ffs $((0x4000 - 0x2345)) >"$T/pad8266"; put "$T/e.want" "$T/pad8266" 0x42345
check "ESP8266: the flash holds it, then 0xFF to the end of the erased pair of sectors" same_flash "$T/e"
echo "# state: $(st "$E")"
check "ESP8266: state says it is not verified" grep -q "not verified" "$E/state"
check "ESP8266: and what was set to 0xFF" grep -q "0x42345-0x44000 after the data set to 0xFF" "$E/state"
check "ESP8266: and not idle" bash -c "! grep -q idle '$E/state'"
# bytes espfs knows (it wrote them) are kept
head -c $((0x4000)) /dev/urandom >"$T/a4"
# (one process, so that the chip is not let go to its app in between: what
# it then holds could have changed, and the ESP8266 ROM cannot say)
check "ESP8266: write 4 sectors at 0x50000, then 0x2345 bytes over their start" python3 -c '
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
for src in sys.argv[2:]:
    os.pwrite(fd, open(src, "rb").read(), 0x50000)
    os.fsync(fd)
os.close(fd)' "$E/flash.bin" "$T/a4" "$T/blob"
put "$T/e.want" "$T/a4" 0x50000
put "$T/e.want" "$T/blob" 0x50000
check "ESP8266: the rest of the 4 sectors is kept" same_flash "$T/e"
# 8. ESP8266 ROM region erase: an odd number of sectors inside a 64 KiB
# block would take the sector after it too; refused before anything is
# erased.  An even count there is exact.
check "ESP8266: erase of one sector (0x61000 0x1000) is refused" \
	bash -c "! echo '0x61000 0x1000' >'$E/erase'"
check "ESP8266: the flash is untouched" same_flash "$T/e"
check "ESP8266: state says why" grep -q "pairs" "$E/state"
check "ESP8266: erase of two sectors (0x62000 0x2000)" bash -c "echo '0x62000 0x2000' >'$E/erase'"
ffs 0x2000 >"$T/ff2"; put "$T/e.want" "$T/ff2" 0x62000
check "ESP8266: exactly those two sectors are erased" same_flash "$T/e"
done_testing
