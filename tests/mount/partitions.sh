#!/bin/bash
# partitions/ (one file per partition of the chip's table, table.csv), the
# boot file (OTA slot from otadata) and erase by label, on simulated chips:
# writes land only inside their partition, app partitions take only an app
# for the chip, the switched slot is the one the simulated bootloader
# starts, NVS backup and restore round-trip, chips without a table show an
# empty folder.  With ../shared: the real ESPHome images and tables.
source "$(dirname "$0")/lib.sh" "$@"
need_fuse

start_espfs --sim esp32,app,improv,flash="$T/e.flash" --sim esp8266,app,flash="$T/8266.flash" \
	--sim esp32c3,app,flash="$T/c3.flash" --sim esp32s3,app,flash="$T/s3.flash" ||
	{ echo "Bail out! espfs did not mount"; exit 1; }
D=$MNT/sim0
P=$D/partitions

# outside OFF LEN A B: A and B are the same outside [OFF, OFF+LEN)
outside() {
	python3 - "$@" <<'EOF'
import sys
off, n = int(sys.argv[1], 0), int(sys.argv[2], 0)
a, b = open(sys.argv[3], 'rb').read(), open(sys.argv[4], 'rb').read()
sys.exit(0 if len(a) == len(b) and a[:off] == b[:off] and a[off + n:] == b[off + n:] else 1)
EOF
}
# last_boot: the offset of the app the (simulated) bootloader started last
last_boot() {
	local want=$1 dir=${2:-$D} line=
	for _ in $(seq 50); do
		line=$(timeout 1 cat "$dir/console" 2>/dev/null | grep -a "Loaded app from partition" | tail -1)
		[[ $line == *"$want"* ]] && break
		sleep 0.2
	done
	[[ $line == *"$want"* ]]
}
# ota_entry FLASH OFF: "seq valid" of the otadata entry at OFF
ota_entry() {
	python3 - "$@" <<'EOF'
import sys, struct, zlib
f = open(sys.argv[1], 'rb').read(); o = int(sys.argv[2], 0)
seq, = struct.unpack_from('<I', f, o); crc, = struct.unpack_from('<I', f, o + 28)
ok = seq != 0xffffffff and crc == zlib.crc32(f[o:o + 4], 0xffffffff) & 0xffffffff
print(seq, 'valid' if ok else 'invalid')
EOF
}

mkimg esp32 ota-factory "$T/of.bin" slot_a
mkimg esp32 app "$T/a.bin" slot_a
mkimg esp32 app "$T/b.bin" slot_b
mkimg esp32c3 app "$T/c3app.bin" c3app
mkimg esp32 bootloader "$T/boot.bin"
check "cp the two-slot image onto flash.bin" cp "$T/of.bin" "$D/flash.bin"
check "partitions/ lists the table's labels, the slots' subtype names and table.csv" \
	[ "$(ls "$P" | tr '\n' ' ')" = "app0 app1 nvs ota_0 ota_1 otadata spiffs table.csv " ]
check "ota_1 is a link to app1" [ "$(readlink "$P/ota_1")" = app1 ]
expect_csv='# ESP-IDF Partition Table
# Name, Type, SubType, Offset, Size, Flags
nvs,data,nvs,0x9000,20K,
otadata,data,ota,0xe000,8K,
app0,app,ota_0,0x10000,1280K,
app1,app,ota_1,0x150000,1280K,
spiffs,data,spiffs,0x290000,1408K,'
check "table.csv is the table in gen_esp32part's CSV" [ "$(cat "$P/table.csv")" = "$expect_csv" ]
check "a partition's size is its table size" [ "$(stat -c %s "$P/app1")" = $((0x140000)) ]
check "table.csv is read-only" bash -c "! echo x > '$P/table.csv'" 2>/dev/null
check "no new files in partitions/" bash -c "! touch '$P/new'" 2>/dev/null
check "blank otadata, no factory: boot says ota_0" [ "$(cat "$D/boot")" = ota_0 ]
check "app0 reads the app that was flashed" cmp -s -n "$(stat -c %s "$T/a.bin")" "$T/a.bin" "$P/app0"

# app partitions take only an app for this chip; nothing reaches the flash
cp "$T/e.flash" "$T/before"
check "a C3 app into app1 is refused" bash -c "! cp '$T/c3app.bin' '$P/app1'" 2>/dev/null
check "state says it was built for the C3" grep -q "ESP32-C3" "$D/state"
head -c 200000 /dev/urandom > "$T/rnd"
check "raw data into app1 is refused" bash -c "! cp '$T/rnd' '$P/app1'" 2>/dev/null
check "a bootloader into app1 is refused" bash -c "! cp '$T/boot.bin' '$P/app1'" 2>/dev/null
check "the flash is unchanged by the refusals" cmp -s "$T/before" "$T/e.flash"

# an app into app1 lands there and nowhere else
check "cp an app into partitions/app1" cp "$T/b.bin" "$P/app1"
check "the app is at app1's offset in flash" \
	cmp -s -n "$(stat -c %s "$T/b.bin")" "$T/b.bin" <(tail -c +$((0x150000 + 1)) "$T/e.flash")
check "nothing outside app1 changed" outside 0x150000 0x140000 "$T/before" "$T/e.flash"
check "reading app1 back gives the app" cmp -s -n "$(stat -c %s "$T/b.bin")" "$T/b.bin" "$P/app1"
check "cp through the subtype name (partitions/ota_1) writes app1" cp "$T/b.bin" "$P/ota_1"

# switch the slot: the simulated bootloader starts app1
check "echo ota_1 > boot" bash -c "echo ota_1 > '$D/boot'"
check "boot says ota_1" [ "$(cat "$D/boot")" = ota_1 ]
check "otadata entry 0 holds ota_seq 2 with its CRC" [ "$(ota_entry "$T/e.flash" 0xe000)" = "2 valid" ]
check "the chip boots the app in app1 (0x150000)" last_boot "offset 0x150000"
check "and it is slot_b" bash -c "timeout 1 cat '$D/console' | grep -a 'Project name' | tail -1 | grep -q slot_b"
r0=$(json_get "$D/info.json" resets)
check "reading boot while the app runs says ota_1" [ "$(cat "$D/boot")" = ota_1 ]
check "and does not reset the chip" [ "$(json_get "$D/info.json" resets)" = "$r0" ]
check "state still says app" grep -q "^app" "$D/state"
# a file manager's listing sniffs files without a telling extension
# (O_NOATIME, first 4-16 KiB): no reset of the running app for that
if command -v gio >/dev/null; then
	gio info -a standard::content-type "$P/app0" "$P/spiffs" >/dev/null 2>&1
	ok "gio info of app0 and spiffs (content type) ran"
else
	n=$((n + 1)); echo "ok $n - gio info # SKIP gio not installed"
fi
check "a sniff (O_NOATIME read of 4 KiB) of app1 gets EAGAIN" python3 -c '
import os, sys, errno
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_NOATIME)
try:
    os.read(fd, 4096); sys.exit(1)
except OSError as e:
    sys.exit(0 if e.errno == errno.EAGAIN else 1)' "$P/app1"
check "neither reset the chip" [ "$(json_get "$D/info.json" resets)" = "$r0" ]
check "switch back by label: echo app0 > boot" bash -c "echo app0 > '$D/boot'"
check "the new entry goes to the other sector (ota_seq 3), the old one stays" \
	[ "$(ota_entry "$T/e.flash" 0xf000) / $(ota_entry "$T/e.flash" 0xe000)" = "3 valid / 2 valid" ]
check "boot says ota_0" [ "$(cat "$D/boot")" = ota_0 ]
check "the chip boots app0 again" last_boot "offset 0x10000"
cp "$T/e.flash" "$T/before"
check "factory refused: the table has none" bash -c "! echo factory > '$D/boot'" 2>/dev/null
check "an unknown slot is refused" bash -c "! echo ota_7 > '$D/boot'" 2>/dev/null
check "a data partition is refused" bash -c "! echo nvs > '$D/boot'" 2>/dev/null
check "two words are refused" bash -c "! echo 'ota_1 x' > '$D/boot'" 2>/dev/null
check "refused switches leave the flash unchanged" cmp -s "$T/before" "$T/e.flash"
check "state says why" grep -q "boot:" "$D/state"
check "an empty slot is refused" bash -c "echo app1 > '$D/erase' && ! echo ota_1 > '$D/boot'" 2>/dev/null
check "state says the slot is empty" grep -q "empty" "$D/state"
check "boot still says ota_0" [ "$(cat "$D/boot")" = ota_0 ]

# NVS: backup, erase by label, restore, byte for byte
head -c $((0x5000)) /dev/urandom > "$T/nvs.data"
check "cp data into partitions/nvs" cp "$T/nvs.data" "$P/nvs"
check "backup of partitions/nvs" cp "$P/nvs" "$T/nvs.bak"
check "the backup is the data" cmp -s "$T/nvs.data" "$T/nvs.bak"
cp "$T/e.flash" "$T/before"
check "echo nvs > erase" bash -c "echo nvs > '$D/erase'"
check "nvs is erased" cmp -s "$P/nvs" <(head -c $((0x5000)) /dev/zero | tr '\0' '\377')
check "nothing outside nvs was erased" outside 0x9000 0x5000 "$T/before" "$T/e.flash"
check "restore the backup" cp "$T/nvs.bak" "$P/nvs"
check "the flash holds the backup again" \
	cmp -s -n $((0x5000)) "$T/nvs.bak" <(tail -c +$((0x9000 + 1)) "$T/e.flash")
cp "$T/e.flash" "$T/before"
check "an unknown label erases nothing" bash -c "! echo nosuch > '$D/erase'" 2>/dev/null
check "a label with a blank erases nothing" bash -c "! echo 'nvs x' > '$D/erase'" 2>/dev/null
check "the flash is unchanged" cmp -s "$T/before" "$T/e.flash"

# bounded: past the end is EFBIG; dd at an offset stays inside
head -c $((0x5000 + 1)) /dev/urandom > "$T/big"
cp "$T/e.flash" "$T/before"
out=$(cp "$T/big" "$P/nvs" 2>&1)
check "a file bigger than nvs fails with EFBIG" grep -q "File too large" <<<"$out"
check "state says it ends past the partition's end" grep -q "past the end of the 20480-byte partition" "$D/state"
check "nothing was written (one write: refused before the flash)" cmp -s "$T/before" "$T/e.flash"
# bigger than one write(): the start went out before the end came
head -c $((0x160000 + 4096)) /dev/urandom > "$T/big"
out=$(cp "$T/big" "$P/spiffs" 2>&1)
check "a file bigger than spiffs fails with EFBIG" grep -q "File too large" <<<"$out"
check "state says spiffs holds part of it" grep -q "partitions/spiffs incomplete: the data runs past its end" "$D/state"
check "nothing outside spiffs changed" outside 0x290000 0x160000 "$T/before" "$T/e.flash"
check "ack clears the warning" bash -c "echo ack > '$D/state' && ! grep -q incomplete '$D/state'"
printf 'SPIFFS!!' > "$T/tag"
check "dd into spiffs at an offset" dd if="$T/tag" of="$P/spiffs" bs=1 seek=4096 conv=notrunc status=none
check "it lands at spiffs+4096" [ "$(dd if="$T/e.flash" bs=1 skip=$((0x290000 + 4096)) count=8 status=none)" = 'SPIFFS!!' ]
check "dd past the end of spiffs fails" bash -c "! dd if='$T/tag' of='$P/spiffs' bs=1 seek=$((0x160000)) conv=notrunc status=none" 2>/dev/null

# a new table: the folder follows it
mkimg esp32 factory "$T/f.bin" fac
check "cp a one-factory image onto flash.bin" cp "$T/f.bin" "$D/flash.bin"
check "partitions/ now lists factory, nvs, phy_init (no links: factory is a label)" \
	[ "$(ls "$P" | tr '\n' ' ')" = "factory nvs phy_init table.csv " ]
check "boot says factory (no otadata)" [ "$(cat "$D/boot")" = factory ]
check "echo factory > boot is fine without otadata" bash -c "echo factory > '$D/boot'"

# a hand-made table with labels that cannot be file names, a repeated
# label, one called table.csv, one past the flash's end: no crash, those
# get no file, the rest do
python3 - "$T/hostile.bin" <<'EOF'
import sys, struct, hashlib
rows = [(1, 2, 0x9000, 0x5000, b'nvs'), (1, 0x82, 0xE000, 0x1000, b'..'),
        (1, 0x82, 0xF000, 0x1000, b'a/b'), (0, 0x10, 0x10000, 0x100000, b'nvs'),
        (0, 0x11, 0x110000, 0x100000, b'table.csv'), (1, 0x82, 0x210000, 0x1000, b''),
        (1, 0x81, 0x3F0000, 0x100000, b'past_end'), (1, 0x99, 0x211000, 0x1000, b'sp ace')]
t = b''.join(struct.pack('<2sBBII16sI', b'\xaa\x50', ty, st, o, n, l, 0) for ty, st, o, n, l in rows)
t += b'\xeb\xeb' + b'\xff' * 14 + hashlib.md5(t).digest()
open(sys.argv[1], 'wb').write(t + b'\xff' * (0xc00 - len(t)))
EOF
check "a table with hostile labels at 0x8000" dd if="$T/hostile.bin" of="$D/flash.bin" bs=4096 seek=8 conv=notrunc status=none
check "only the usable labels get files" [ "$(ls "$P" | tr '\n' ' ')" = "nvs past_end sp ace table.csv " ]
check "the first nvs (data) is the file" [ "$(stat -c %s "$P/nvs")" = $((0x5000)) ]
pe=$(wc -c <"$P/past_end" 2>"$T/pe.err"); echo "# past_end read $pe bytes $(cat "$T/pe.err")"
check "a partition past the flash's end reads up to the end" [ "$pe" = $((0x10000)) ]
check "table.csv lists all eight rows" [ "$(grep -vc '^#' "$P/table.csv")" = 8 ]
check "boot with ota slots but no otadata: ota_0" [ "$(cat "$D/boot")" = ota_0 ]
check "state still answers" grep -q . "$D/state"

# chips without a table: an empty folder, boot empty and refusing
check "ESP8266: partitions/ is empty" [ -z "$(ls "$MNT/sim1/partitions")" ]
check "ESP8266: boot is empty" [ -z "$(cat "$MNT/sim1/boot")" ]
check "ESP8266: a switch is refused" bash -c "! echo ota_0 > '$MNT/sim1/boot'" 2>/dev/null

# the real images, where ../shared is present
img=$(shared esphome-project-template/gh-pages-fd3bfd6/project-template-esp32/project-template-esp32.factory.bin)
ota=$(shared esphome-project-template/gh-pages-fd3bfd6/project-template-esp32/project-template-esp32.ota.bin)
pt22=$(shared esphome-project-template/gh-pages-800bdaa/project-template-esp32/partitions.bin)
ba0=$(shared esphome-project-template/gh-pages-800bdaa/project-template-esp32/boot_app0.bin)
if [ -n "$img" ] && [ -n "$ota" ] && [ -n "$pt22" ] && [ -n "$ba0" ]; then
	check "real: cp the ESPHome 2024 factory image" cp "$img" "$D/flash.bin"
	check "real: table.csv of the 2024 layout" [ "$(tail -n +3 "$P/table.csv" | tr '\n' ' ')" = \
		"otadata,data,ota,0x9000,8K, phy_init,data,phy,0xb000,4K, app0,app,ota_0,0x10000,1792K, app1,app,ota_1,0x1d0000,1792K, nvs,data,nvs,0x390000,436K, " ]
	check "real: boot says ota_0" [ "$(cat "$D/boot")" = ota_0 ]
	check "real: cp the OTA app into partitions/app1" cp "$ota" "$P/app1"
	check "real: echo ota_1 > boot" bash -c "echo ota_1 > '$D/boot'"
	check "real: the chip boots app1 (0x1d0000)" last_boot "offset 0x1d0000"
	check "real: C3 OTA app refused in app0" bash -c "! cp '$(shared esphome-project-template/gh-pages-fd3bfd6/project-template-esp32c3/project-template-esp32c3.ota.bin)' '$P/app0'" 2>/dev/null
	check "real: the 2022 table at 0x8000" dd if="$pt22" of="$D/flash.bin" bs=4096 seek=8 conv=notrunc status=none
	check "real: table.csv of the 2022 layout (eeprom is subtype 153)" [ "$(tail -n +3 "$P/table.csv" | tr '\n' ' ')" = \
		"nvs,data,nvs,0x9000,20K, otadata,data,ota,0xe000,8K, app0,app,ota_0,0x10000,1792K, app1,app,ota_1,0x1d0000,1792K, eeprom,data,153,0x390000,4K, spiffs,data,spiffs,0x391000,60K, " ]
	check "real: boot_app0.bin into partitions/otadata" cp "$ba0" "$P/otadata"
	check "real: boot_app0 selects ota_0" [ "$(cat "$D/boot")" = ota_0 ]
else
	for t in 2024-image 2024-csv boot app1 switch boots c3-refused 2022-table 2022-csv otadata boot_app0; do
		n=$((n + 1)); echo "ok $n - real images: $t # SKIP ESPFS_SHARED/firmware not available"
	done
fi

# a C3 (bootloader at 0): the same folder
mkimg esp32c3 ota-factory "$T/c3of.bin" c3a
check "C3: cp the two-slot image" cp "$T/c3of.bin" "$MNT/sim2/flash.bin"
check "C3: partitions/ lists app0 and app1" [ -e "$MNT/sim2/partitions/app0" ] && [ -e "$MNT/sim2/partitions/app1" ]
check "C3: an ESP32 app is refused in app1" bash -c "! cp '$T/b.bin' '$MNT/sim2/partitions/app1'" 2>/dev/null

# the real C3 and S3 two-slot images: the OTA app into ota_1, switch, boot
for pair in esp32c3:sim2 esp32s3:sim3; do
	chip=${pair%%:*}; S=$MNT/${pair#*:}
	fac=$(shared "esphome-project-template/gh-pages-fd3bfd6/project-template-$chip/project-template-$chip.factory.bin")
	ota=$(shared "esphome-project-template/gh-pages-fd3bfd6/project-template-$chip/project-template-$chip.ota.bin")
	if [ -z "$fac" ] || [ -z "$ota" ]; then
		for t in factory ota_1 switch boots; do
			n=$((n + 1)); echo "ok $n - real $chip: $t # SKIP ESPFS_SHARED/firmware not available"
		done
		continue
	fi
	check "real $chip: cp the factory image" cp "$fac" "$S/flash.bin"
	check "real $chip: cp the OTA app into partitions/ota_1" cp "$ota" "$S/partitions/ota_1"
	check "real $chip: echo ota_1 > boot" bash -c "echo ota_1 > '$S/boot' && [ \"\$(cat '$S/boot')\" = ota_1 ]"
	check "real $chip: the chip boots app1 (0x1d0000)" last_boot "offset 0x1d0000" "$S"
done

done_testing
