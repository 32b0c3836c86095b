#!/bin/bash
# flash.bin with cp, dd, cmp: images land byte for byte in the simulated
# flash; wrong-chip images and writes past the end are refused before
# anything changes; backups read back what the flash holds.
source "$(dirname "$0")/lib.sh" "$@"
need_fuse

start_espfs --sim esp32,flash="$T/esp32.flash" --sim esp32s2,flash="$T/s2.flash" \
	--sim esp32c3,flash="$T/c3.flash" --sim esp32s3,flash="$T/s3.flash" \
	--sim esp8266,flash="$T/8266.flash" || { echo "Bail out! espfs did not mount"; exit 1; }

D=$MNT/sim0
check "sim0 is an ESP32" [ "$(cat "$D/chip")" = ESP32 ]
check "sim1 is an ESP32-S2" [ "$(cat "$MNT/sim1/chip")" = ESP32-S2 ]
check "flash.bin size is the flash size" [ "$(stat -c %s "$D/flash.bin")" = "$(stat -c %s "$T/esp32.flash")" ]

# synthetic factory image (stands alone without shared/)
mkimg esp32 factory "$T/f32.bin" testproj
start=$(ms_now)
if cp "$T/f32.bin" "$D/flash.bin"; then ok "cp synthetic ESP32 factory image"; else nok "cp synthetic ESP32 factory image"; fi
echo "# cp of $(stat -c %s "$T/f32.bin") bytes took $(( $(ms_now) - start )) ms"
check "flash holds the synthetic image" cmp -n "$(stat -c %s "$T/f32.bin")" "$T/f32.bin" "$T/esp32.flash"
python3 - "$T/f32.bin" "$T/esp32.flash" <<'EOF' && ok "the rest of the image's last sector is still erased" || nok "the rest of the image's last sector is still erased"
import sys
n = len(open(sys.argv[1], 'rb').read()); f = open(sys.argv[2], 'rb').read()
end = (n + 4095) // 4096 * 4096
sys.exit(0 if n % 4096 and f[n:end] == b'\xff' * (end - n) else 1)
EOF
check "state is idle after cp" grep -q "idle" "$D/state"

# real factory images onto their chips
for pair in "esphome-project-template/gh-pages-fd3bfd6/project-template-esp32/project-template-esp32.factory.bin:sim0:esp32.flash" \
	    "esphome-project-template/gh-pages-fd3bfd6/project-template-esp32c3/project-template-esp32c3.factory.bin:sim2:c3.flash" \
	    "esphome-project-template/gh-pages-fd3bfd6/project-template-esp32s3/project-template-esp32s3.factory.bin:sim3:s3.flash" \
	    "esphome-project-template/gh-pages-a9c729c/project-template-esp8266/project-template-esp8266.factory.bin:sim4:8266.flash"; do
	IFS=: read -r rel dev file <<<"$pair"
	img=$(shared "$rel")
	name=$(basename "$rel")
	if [ -z "$img" ]; then
		n=$((n + 1)); echo "ok $n - cp $name # SKIP ESPFS_SHARED/firmware not available"
		continue
	fi
	start=$(ms_now)
	if cp "$img" "$MNT/$dev/flash.bin" 2>"$T/err"; then
		echo "# cp $name: $(( $(ms_now) - start )) ms"
		check "cp $name then cmp with the sim flash" cmp -n "$(stat -c %s "$img")" "$img" "$T/$file"
	else
		nok "cp $name ($(cat "$T/err"); state: $(cat "$MNT/$dev/state"))"
	fi
done

# backup: cp flash.bin out and compare with the flash file
start=$(ms_now)
check "cp flash.bin backup.bin" cp "$D/flash.bin" "$T/backup.bin"
echo "# backup of 4 MiB took $(( $(ms_now) - start )) ms"
check "backup equals the sim flash" cmp "$T/backup.bin" "$T/esp32.flash"
check "head -c 16384 equals the flash start" cmp <(head -c 16384 "$D/flash.bin") <(head -c 16384 "$T/esp32.flash")

# dd seek=16 conv=notrunc changes exactly that range
cp "$T/esp32.flash" "$T/before.bin"
head -c 8192 /dev/urandom >"$T/rand.bin"
check "dd bs=4k seek=16 conv=notrunc" dd if="$T/rand.bin" of="$D/flash.bin" bs=4k seek=16 conv=notrunc status=none
python3 - "$T/before.bin" "$T/esp32.flash" "$T/rand.bin" <<'EOF' && ok "dd changed exactly 0x10000..0x12000" || nok "dd changed exactly 0x10000..0x12000"
import sys
a, b, r = (open(p, 'rb').read() for p in sys.argv[1:4])
off = 16 * 4096
sys.exit(0 if a[:off] == b[:off] and b[off:off + len(r)] == r and a[off + len(r):] == b[off + len(r):] else 1)
EOF

# unaligned write: read-modify-write of partial sectors
cp "$T/esp32.flash" "$T/before.bin"
printf 'espfs-unaligned' >"$T/small.bin"
check "dd unaligned 15 bytes at 0x20005" dd if="$T/small.bin" of="$D/flash.bin" bs=1 seek=$((0x20005)) conv=notrunc status=none
python3 - "$T/before.bin" "$T/esp32.flash" <<'EOF' && ok "unaligned write kept the rest of the sector" || nok "unaligned write kept the rest of the sector"
import sys
a, b = (open(p, 'rb').read() for p in sys.argv[1:3])
o = 0x20005; s = b'espfs-unaligned'
sys.exit(0 if a[:o] == b[:o] and b[o:o + len(s)] == s and a[o + len(s):] == b[o + len(s):] else 1)
EOF

# the same in an erased area: the sector's old bytes are known blank by MD5
cp "$T/esp32.flash" "$T/before.bin"
check "dd unaligned 15 bytes at 0x3f0805" dd if="$T/small.bin" of="$D/flash.bin" bs=1 seek=$((0x3f0805)) conv=notrunc status=none
python3 - "$T/before.bin" "$T/esp32.flash" <<'EOF' && ok "unaligned write into erased flash kept the sector erased around it" || nok "unaligned write into erased flash kept the sector erased around it"
import sys
a, b = (open(p, 'rb').read() for p in sys.argv[1:3])
o = 0x3f0805; s = b'espfs-unaligned'
sys.exit(0 if a[o - 0x805:o + 0x800] == b'\xff' * 0x1005 and a[:o] == b[:o] and b[o:o + len(s)] == s and a[o + len(s):] == b[o + len(s):] else 1)
EOF

# wrong chip: an ESP32-S2 image onto the ESP32 is refused, nothing changes
mkimg esp32s2 factory "$T/fs2.bin"
cp "$T/esp32.flash" "$T/before.bin"
if cp "$T/fs2.bin" "$D/flash.bin" 2>"$T/err"; then nok "cp of an ESP32-S2 image onto an ESP32 fails"; else ok "cp of an ESP32-S2 image onto an ESP32 fails"; fi
echo "# cp said: $(cat "$T/err")"
check "cp reported Invalid argument" grep -q "Invalid argument" "$T/err"
check "flash unchanged after the refusal" cmp "$T/before.bin" "$T/esp32.flash"
echo "# state: $(cat "$D/state")"
check "state says why (ESP32-S2)" grep -q "ESP32-S2" "$D/state"

# an app image where the bootloader belongs (C3: bootloader at 0)
mkimg esp32c3 app "$T/c3app.bin"
cp "$T/c3.flash" "$T/before.bin"
if cp "$T/c3app.bin" "$MNT/sim2/flash.bin" 2>/dev/null; then nok "app image at offset 0 of an ESP32-C3 refused"; else ok "app image at offset 0 of an ESP32-C3 refused"; fi
check "C3 flash unchanged" cmp "$T/before.bin" "$T/c3.flash"
echo "# state: $(cat "$MNT/sim2/state")"

# past the end
cp "$T/esp32.flash" "$T/before.bin"
if dd if=/dev/zero of="$D/flash.bin" bs=4096 seek=1024 count=1 conv=notrunc status=none 2>"$T/err"; then
	nok "write past the end fails"
else
	ok "write past the end fails"
fi
check "write past the end says File too large" grep -q "File too large" "$T/err"
check "flash unchanged after write past the end" cmp "$T/before.bin" "$T/esp32.flash"

# O_TRUNC alone never erases
cp "$T/esp32.flash" "$T/before.bin"
: >"$D/flash.bin"
truncate -s 0 "$D/flash.bin" 2>/dev/null
check ": > flash.bin and truncate change nothing" cmp "$T/before.bin" "$T/esp32.flash"

# erase
check "echo '0x10000 0x2000' > erase" bash -c "echo '0x10000 0x2000' > '$D/erase'"
check "the region reads back as 0xFF" cmp <(head -c 8192 /dev/zero | tr '\0' '\377') <(dd if="$T/esp32.flash" bs=4096 skip=16 count=2 status=none)
if bash -c "echo '0x10001 0x2000' > '$D/erase'" 2>/dev/null; then nok "unaligned erase refused"; else ok "unaligned erase refused"; fi
if bash -c "echo 'please' > '$D/erase'" 2>/dev/null; then nok "malformed erase refused"; else ok "malformed erase refused"; fi
check "state explains the malformed erase" grep -q "erase" "$D/state"

done_testing
