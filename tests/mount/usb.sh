#!/bin/bash
# A native-USB ESP32-S2 running its app cannot be reset into the loader
# over the lines: state asks for the buttons, the folder stays, and once
# BOOT+RESET are pressed (a simulator hook) the port re-enumerates, espfs
# reopens it, identifies the chip and can flash it.
source "$(dirname "$0")/lib.sh" "$@"
need_fuse

start_espfs --sim "esp32s2,usb,app,improv,name=s2,flash=$T/s2.flash" || { echo "Bail out! espfs did not mount"; exit 1; }
D=$MNT/s2
echo "# state: $(cat "$D/state")"
check "state asks for download mode" grep -q "waiting for download mode: hold BOOT and press RESET" "$D/state"
if cp "$T/s2.flash" "$D/flash.bin" 2>/dev/null; then nok "flash.bin refuses writes before identification"; else ok "flash.bin refuses writes before identification"; fi
check "press BOOT+RESET (simulator hook)" bash -c "echo buttons > '$D/state'"
for _ in $(seq 50); do [ "$(cat "$D/chip")" = ESP32-S2 ] && break; sleep 0.1; done
check "identified after the button press" [ "$(cat "$D/chip")" = ESP32-S2 ]
mac=$(cat "$D/mac")
check "by-mac link appears" [ "$(readlink "$MNT/by-mac/$mac")" = ../s2 ]
mkimg esp32s2 factory "$T/f.bin"
check "cp a factory image" cp "$T/f.bin" "$D/flash.bin"
check "the flash holds it" cmp -n "$(stat -c %s "$T/f.bin")" "$T/f.bin" "$T/s2.flash"
done_testing
