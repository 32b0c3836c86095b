#!/bin/bash
# Unplug during a flash: cp fails with ENODEV ("No such device"), state
# says where the write stopped; the device is plugged back into another
# USB socket within the hotplug debounce window: the folder never went
# away, by-mac still points at it, info.json shows the new physical path,
# and a second cp succeeds.  A longer absence removes the folder.
source "$(dirname "$0")/lib.sh" "$@"
need_fuse

start_espfs --sim "esp32,app,name=u,flash=$T/u.flash" || { echo "Bail out! espfs did not mount"; exit 1; }
D=$MNT/u
for _ in $(seq 100); do grep -q idle "$D/state" 2>/dev/null && break; sleep 0.1; done
mac=$(cat "$D/mac")
loc0=$(json_get "$D/info.json" usb.location)
port0=$(json_get "$D/info.json" port)
# a factory image followed by 1 MiB of other data: long enough to be cut
mkimg esp32 factory "$T/f.bin" replug
head -c 1048576 /dev/urandom >>"$T/f.bin"

( while [ -e "$T/watch" ]; do ls "$MNT" >"$T/ls" 2>/dev/null; grep -qx u "$T/ls" || echo gone >>"$T/flicker"; sleep 0.05; done ) &
WATCH=$!
touch "$T/watch"

check "arm the cable pull at 40% (simulator hook)" bash -c "echo 'unplug-at 40' > '$D/state'"
if cp "$T/f.bin" "$D/flash.bin" 2>"$T/cp.err"; then nok "cp fails when the cable is pulled"; else ok "cp fails when the cable is pulled"; fi
sed "s/^/# cp: /" "$T/cp.err"
check "with ENODEV's message" grep -q "No such device" "$T/cp.err"
st=$(cat "$D/state")
echo "# state: $st"
check "state: unplugged, ENODEV" grep -q "^unplugged error ENODEV" <<<"$st"
check "state says where the write stopped" grep -qE "stopped at 0x[0-9a-f]+ \([0-9]+%\)" <<<"$st"
check "plug it back into another socket (simulator hook)" bash -c "echo replug > '$D/state'"
# (the write the unplug cut short stays in state as a warning)
for _ in $(seq 100); do grep -qE "^app (idle|warning: flash.bin incomplete)" "$D/state" && break; sleep 0.1; done
echo "# state: $(cat "$D/state"); port $port0 ($loc0) -> $(json_get "$D/info.json" port) ($(json_get "$D/info.json" usb.location))"
check "attached again in the same folder" grep -qE "^app (idle|warning: flash.bin incomplete)" "$D/state"
check "new physical path" [ "$(json_get "$D/info.json" usb.location)" != "$loc0" ]
check "same MAC" [ "$(cat "$D/mac")" = "$mac" ]
check "by-mac still points at the folder" [ "$(readlink "$MNT/by-mac/$mac")" = ../u ]
check "a second cp succeeds" cp "$T/f.bin" "$D/flash.bin"
check "the flash holds the image" cmp -n "$(stat -c %s "$T/f.bin")" "$T/f.bin" "$T/u.flash"
rm -f "$T/watch"; wait $WATCH
if [ -s "$T/flicker" ]; then nok "the folder never disappeared"; else ok "the folder never disappeared"; fi

check "unplug for good" bash -c "echo unplug > '$D/state'"
sleep 1
check "the folder stays during the debounce window" [ -d "$D" ]
for _ in $(seq 80); do [ -e "$D" ] || break; sleep 0.1; done
check "and goes after it" [ ! -e "$D" ]
check "by-mac link gone too" [ ! -e "$MNT/by-mac/$mac" ]
done_testing
