#!/bin/bash
# Staging files: gio copy and rsync onto flash.bin (temp file + rename),
# files dropped into a device folder flashed to the offset their content
# implies, NAME@0xOFFSET.bin, unknown content refused, KIO's .part.
source "$(dirname "$0")/lib.sh" "$@"
need_fuse

start_espfs --sim "esp32,name=d,flash=$T/d.flash" || { echo "Bail out! espfs did not mount"; exit 1; }
D=$MNT/d
mkimg esp32 factory "$T/f.bin" staged
mkimg esp32 app "$T/app.bin" droppedapp
mkimg esp32 ptable "$T/pt.bin"

if command -v gio >/dev/null; then
	erase_all() { echo 1 >"$D/erase"; }
	erase_all
	if gio copy "$T/f.bin" "$D/flash.bin" 2>"$T/err"; then ok "gio copy onto flash.bin"
	else nok "gio copy onto flash.bin ($(cat "$T/err"))"; fi
	check "gio copy: the flash holds the image" cmp -n "$(stat -c %s "$T/f.bin")" "$T/f.bin" "$T/d.flash"
	erase_all
	# dropped app: goes to the app partition of the table already on the chip
	cp "$T/f.bin" "$D/flash.bin"
	if gio copy "$T/app.bin" "$D/" 2>"$T/err"; then ok "gio copy of an app image into the folder"
	else nok "gio copy of an app image into the folder ($(cat "$T/err"))"; fi
	check "the app landed at 0x10000" cmp "$T/app.bin" <(dd if="$T/d.flash" bs=4096 skip=16 status=none | head -c "$(stat -c %s "$T/app.bin")")
else
	for x in 1 2 3 4; do n=$((n + 1)); echo "ok $n - gio # SKIP gio not installed"; done
fi

if command -v rsync >/dev/null; then
	echo 1 >"$D/erase"
	if rsync --inplace=no "$T/f.bin" "$D/flash.bin" 2>/dev/null || rsync "$T/f.bin" "$D/flash.bin" 2>"$T/err"; then ok "rsync onto flash.bin"
	else nok "rsync onto flash.bin ($(cat "$T/err"))"; fi
	check "rsync: the flash holds the image" cmp -n "$(stat -c %s "$T/f.bin")" "$T/f.bin" "$T/d.flash"
else
	for x in 1 2; do n=$((n + 1)); echo "ok $n - rsync # SKIP rsync not installed"; done
fi

# cp into the folder: a partition table goes to 0x8000
echo 1 >"$D/erase"
check "cp pt.bin into the folder" cp "$T/pt.bin" "$D/pt.bin"
check "partition table landed at 0x8000" cmp "$T/pt.bin" <(dd if="$T/d.flash" bs=4096 skip=8 count=1 status=none | head -c "$(stat -c %s "$T/pt.bin")")

# NAME@0xOFFSET.bin forces the offset
head -c 8192 /dev/urandom >"$T/blob.bin"
check "cp blob@0x300000.bin" cp "$T/blob.bin" "$D/blob@0x300000.bin"
check "blob landed at 0x300000" cmp "$T/blob.bin" <(dd if="$T/d.flash" bs=4096 skip=$((0x300)) count=2 status=none)

# unknown content is refused, nothing changes
cp "$T/d.flash" "$T/before.bin"
if cp "$T/blob.bin" "$D/mystery.bin" 2>"$T/err"; then nok "unknown content refused"; else ok "unknown content refused"; fi
echo "# cp said: $(cat "$T/err"); state: $(cat "$D/state")"
check "flash unchanged after the refusal" cmp "$T/before.bin" "$T/d.flash"
check "state names NAME@0xOFFSET.bin" grep -q "@0xOFFSET" "$D/state"

# KIO 5: flash.bin.part written and closed (commit), then renamed
echo 1 >"$D/erase"
python3 - "$D" "$T/f.bin" <<'PY' && ok "KIO-style flash.bin.part + rename" || nok "KIO-style flash.bin.part + rename"
import os, sys
d, src = sys.argv[1], sys.argv[2]
data = open(src, 'rb').read()
with open(os.path.join(d, 'flash.bin.part'), 'wb') as f:
    f.write(data)
try:
    os.unlink(os.path.join(d, 'flash.bin'))
except OSError:
    pass  # KIO only warns
os.rename(os.path.join(d, 'flash.bin.part'), os.path.join(d, 'flash.bin'))
PY
check "KIO: the flash holds the image" cmp -n "$(stat -c %s "$T/f.bin")" "$T/f.bin" "$T/d.flash"
sleep 2.5
echo "# folder: $(ls -A "$D" | tr '\n' ' ')"
check "committed staging files vanish from the folder" [ -z "$(ls "$D" | grep -vxE 'chip|mac|flash.bin|erase|wifi|state|info.json|console|boot|partitions')" ]
done_testing
