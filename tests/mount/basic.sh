#!/bin/bash
# The tree and its metadata: one folder per device, by-mac links, one value
# per file, info.json; listing, stat and the 16 KiB a file manager sniffs
# never reset a chip that runs its app.
source "$(dirname "$0")/lib.sh" "$@"
need_fuse

start_espfs --sim "esp32,app,improv,name=app32,flash=$T/app.flash" --sim "esp32c3,flash=$T/c3.flash" ||
	{ echo "Bail out! espfs did not mount"; exit 1; }
A=$MNT/app32

check "folders for both devices" [ -d "$A" -a -d "$MNT/sim1" ]
check "device files present" bash -c "cd '$A' && ls chip mac flash.bin erase wifi state info.json >/dev/null"
check "chip is one line" [ "$(cat "$A/chip")" = ESP32 ]
check "mac looks like a MAC" grep -qE '^([0-9a-f]{2}:){5}[0-9a-f]{2}$' "$A/mac"
check "st_size of chip is its length" [ "$(stat -c %s "$A/chip")" = "$(cat "$A/chip" | wc -c)" ]
mac=$(cat "$A/mac")
check "by-mac/<mac> points at the folder" [ "$(readlink "$MNT/by-mac/$mac")" = ../app32 ]
check "by-mac/<mac>/chip readable" [ "$(cat "$MNT/by-mac/$mac/chip")" = ESP32 ]
check "info.json is valid JSON" python3 -c "import json,sys; json.load(open(sys.argv[1]))" "$A/info.json"
check "info.json has the MAC" [ "$(json_get "$A/info.json" mac)" = "$mac" ]
check "info.json lists the partition table" python3 -c 'import json,sys; sys.exit(0 if any(p["label"] == "factory" for p in json.load(open(sys.argv[1]))["partitions"]) else 1)' "$A/info.json"
check "state is one line" [ "$(wc -l <"$A/state")" = 1 ]

# a file manager's visit must not reset a running app
r0=$(json_get "$A/info.json" resets)
m0=$(json_get "$A/info.json" sim.mode)
echo "# before: resets=$r0 sim mode=$m0"
for i in 1 2 3; do
	ls -la "$A" "$MNT" "$MNT/by-mac" >/dev/null
	stat "$A"/* >/dev/null
	for f in chip mac flash.bin state info.json wifi; do head -c 16384 "$A/$f" >/dev/null; done
done
check "head -c 16384 of flash.bin equals the flash" cmp <(head -c 16384 "$A/flash.bin") <(head -c 16384 "$T/app.flash")
r1=$(json_get "$A/info.json" resets)
m1=$(json_get "$A/info.json" sim.mode)
echo "# after: resets=$r1 sim mode=$m1"
check "ls/stat/head never reset the chip" [ "$r0" = "$r1" ]
check "the app is still running" [ "$m1" = app ]

# What the app writes (its NVS at 0x9000, otadata) is what a later read
# returns: once the app ran, only the bootloader and partition table are
# served from what espfs read at attach.  (The test writes the sim's flash
# file, as the app would write its flash.)
head -c 4096 /dev/urandom >"$T/nvs.bin"
dd if="$T/nvs.bin" of="$T/app.flash" bs=4096 seek=9 conv=notrunc status=none
check "flash.bin at 0x9000 shows what the app wrote there" cmp <(dd if="$A/flash.bin" bs=4096 skip=9 count=1 status=none) "$T/nvs.bin"

# read-only files refuse writes; unknown names do not exist
if bash -c "echo x >'$A/chip'" 2>/dev/null; then nok "chip is read-only"; else ok "chip is read-only"; fi
if rm "$A/flash.bin" 2>/dev/null; then nok "flash.bin cannot be removed"; else ok "flash.bin cannot be removed"; fi
check "chmod/touch on flash.bin are harmless" bash -c "chmod 600 '$A/flash.bin' && touch '$A/flash.bin'"

# poll(2) on state wakes when it changes
python3 - "$A/state" "$A/erase" <<'PY' && ok "poll on state wakes on a change" || nok "poll on state wakes on a change"
import os, select, sys, threading, time
fd = os.open(sys.argv[1], os.O_RDONLY)
os.read(fd, 4096)
p = select.poll(); p.register(fd, select.POLLPRI | select.POLLIN)
def poke():
    time.sleep(0.3)
    with open(sys.argv[2], 'w') as f: f.write('0x3f0000 0x1000\n')
threading.Thread(target=poke).start()
t = time.time(); ev = p.poll(5000)
sys.exit(0 if ev and time.time() - t < 5 else 1)
PY
# "reset" restarts the app (one more reset, the app runs again)
r0=$(json_get "$A/info.json" resets)
check "echo reset > state" bash -c "echo reset > '$A/state'"
check "the reset was counted" [ "$(json_get "$A/info.json" resets)" -gt "$r0" ]

# unplug: the folder disappears, open handles get ENODEV
C=$MNT/sim1
exec 3<"$C/state"
check "echo unplug > state (simulator hook)" bash -c "echo unplug > '$C/state'"
for _ in $(seq 80); do [ -e "$C" ] || break; sleep 0.1; done
check "the unplugged device's folder is gone" [ ! -e "$C" ]
check "its by-mac link is gone" [ -z "$(find "$MNT/by-mac" -lname '../sim1')" ]
if cat <&3 >/dev/null 2>"$T/err"; then nok "an open handle gets ENODEV"; else
	check "an open handle gets ENODEV" grep -q "No such device" "$T/err"; fi
exec 3<&-
check "the other device is still there" [ "$(cat "$A/chip")" = ESP32 ]
done_testing
