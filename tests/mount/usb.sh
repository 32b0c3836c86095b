#!/bin/bash
# ESP32-S2 on native USB-OTG running an application with Improv: the
# lines reach no reset circuit, so a cp onto flash.bin blocks with state
# asking for BOOT+RESET; the simulated buttons let it finish (exit 0);
# the RTC watchdog brings the application back on its own port in the same
# folder, and wifi provisioning works right after.  A background loop lists
# the mount every 50 ms: the folder must never vanish.
source "$(dirname "$0")/lib.sh" "$@"
need_fuse

start_espfs --download-wait 30 --sim "esp32s2,usb,app,improv,wifi=Net:pass,name=s2,flash=$T/s2.flash" ||
	{ echo "Bail out! espfs did not mount"; exit 1; }
D=$MNT/s2
for _ in $(seq 100); do grep -q idle "$D/state" 2>/dev/null && break; sleep 0.1; done
echo "# state: $(cat "$D/state"); chip $(cat "$D/chip")"
check "the application is identified by Improv" [ "$(cat "$D/chip")" = ESP32-S2 ]
check "state: app idle" grep -q "^app idle" "$D/state"
pid0=$(json_get "$D/info.json" usb.pid)
check "app port is TinyUSB 303a:4001" [ "$(json_get "$D/info.json" usb.vid):$pid0" = 303a:4001 ]

if head -c 4096 "$D/flash.bin" >/dev/null 2>"$T/h.err"; then nok "a 4 KiB sniff of flash.bin fails instead of waiting"; else
	check "a 4 KiB sniff of flash.bin fails instead of waiting" grep -q "timed out" "$T/h.err"; fi
check "and does not ask for the buttons" grep -vq "waiting for download mode" "$D/state"

# watch the folder
( while [ -e "$T/watch" ]; do ls "$MNT" >"$T/ls" 2>/dev/null; grep -qx s2 "$T/ls" || echo "$(date +%T.%N) gone" >>"$T/flicker"; sleep 0.05; done ) &
WATCH=$!
touch "$T/watch"

mkimg esp32s2 factory "$T/f.bin" s2app
cp "$T/f.bin" "$D/flash.bin" 2>"$T/cp.err" &
CP=$!
waiting=no
for _ in $(seq 100); do grep -q "waiting for download mode: hold BOOT, press RESET" "$D/state" && { waiting=yes; break; }; sleep 0.1; done
echo "# state: $(cat "$D/state")"
check "state asks for BOOT+RESET" [ $waiting = yes ]
sleep 0.5
check "cp blocks meanwhile" kill -0 $CP
check "press BOOT+RESET (simulator hook)" bash -c "echo buttons > '$D/state'"
wait $CP; rc=$?
check "cp completes with exit 0" [ $rc = 0 ]
[ $rc = 0 ] || sed 's/^/# cp: /' "$T/cp.err"
check "the flash holds the image" cmp -n "$(stat -c %s "$T/f.bin")" "$T/f.bin" "$T/s2.flash"
back=no
for _ in $(seq 100); do [ "$(json_get "$D/info.json" sim.mode)" = app ] && grep -q "^app idle" "$D/state" && { back=yes; break; }; sleep 0.1; done
echo "# state: $(cat "$D/state"); reset: $(json_get "$D/info.json" reset.enter) / $(json_get "$D/info.json" reset.leave)"
check "the chip runs its application again" [ $back = yes ]
check "left the loader by the RTC watchdog" [ "$(json_get "$D/info.json" reset.leave)" = watchdog ]
check "the buttons are remembered as the way in" [ "$(json_get "$D/info.json" reset.enter)" = manual ]
check "info.json port is the app's again" [ "$(json_get "$D/info.json" usb.pid)" = 4001 ]
mac=$(cat "$D/mac")
check "MAC known after the flash" [ "$mac" != unknown ]
check "by-mac link to the same folder" [ "$(readlink "$MNT/by-mac/$mac")" = ../s2 ]
if echo 'Net:pass' >"$D/wifi" 2>"$T/w.err"; then ok "wifi right after the flash"; else nok "wifi right after the flash ($(cat "$T/w.err"))"; fi
check "wifi says connected" grep -q "^connected Net" "$D/wifi"

# BOOT still held when the chip is reset out of the loader: the RTC
# watchdog brings it straight back into download mode, and state says so.
mkimg esp32s2 factory "$T/g.bin" s2app2
check "hold BOOT (simulator hook)" bash -c "echo hold-boot > '$D/state'"
cp "$T/g.bin" "$D/flash.bin" 2>"$T/cp.err" &
CP=$!
waiting=no
for _ in $(seq 100); do grep -q "waiting for download mode" "$D/state" && { waiting=yes; break; }; sleep 0.1; done
check "again waits for the buttons (remembered: no futile reset first)" [ $waiting = yes ]
check "press RESET with BOOT held" bash -c "echo press-reset > '$D/state'"
wait $CP; rc=$?
check "cp completes with exit 0" [ $rc = 0 ]
stay=no
for _ in $(seq 100); do grep -q "still in download mode" "$D/state" && { stay=yes; break; }; sleep 0.1; done
echo "# state: $(cat "$D/state")"
check "state says the chip stayed in download mode" [ $stay = yes ]
check "and the simulator agrees" [ "$(json_get "$D/info.json" sim.mode)" != app ]
check "release BOOT, press RESET" bash -c "echo release-boot > '$D/state' && echo press-reset > '$D/state'"
back=no
for _ in $(seq 100); do grep -q "^app idle" "$D/state" && [ "$(json_get "$D/info.json" sim.mode)" = app ] && { back=yes; break; }; sleep 0.1; done
echo "# state: $(cat "$D/state")"
check "the folder follows the chip back into its application" [ $back = yes ]

rm -f "$T/watch"; wait $WATCH
if [ -s "$T/flicker" ]; then nok "the folder never disappeared ($(wc -l <"$T/flicker") polls without it)"; else ok "the folder never disappeared"; fi
done_testing
