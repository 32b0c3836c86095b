#!/bin/bash
# The reset chain per USB identity: an ESP32 behind a CP210x bridge gets
# into the loader by the classic DTR/RTS sequence, an ESP32-C3 on
# USB-Serial/JTAG (303a:1001) by its own sequence; after the flash both run
# their application again, in the same folder, with nobody pressing a
# button.  What worked is remembered (info.json reset.enter/leave).
source "$(dirname "$0")/lib.sh" "$@"
need_fuse

start_espfs --sim "esp32,app,name=uart,flash=$T/e.flash" --sim "esp32c3,usb,app,name=jtag,flash=$T/c.flash" \
	--sim "esp32c3,reenum,app,improv,wifi=Lab:secret1,name=jtagre,flash=$T/r.flash" ||
	{ echo "Bail out! espfs did not mount"; exit 1; }
for _ in $(seq 100); do grep -q idle "$MNT/uart/state" 2>/dev/null && grep -q idle "$MNT/jtag/state" 2>/dev/null &&
	grep -q idle "$MNT/jtagre/state" 2>/dev/null && break; sleep 0.1; done
# (watch the folders throughout)
( while [ -e "$T/watch" ]; do ls "$MNT" >"$T/ls" 2>/dev/null; for f in uart jtag jtagre; do grep -qx $f "$T/ls" || echo "$f" >>"$T/flicker"; done; sleep 0.05; done ) &
WATCH=$!
touch "$T/watch"

# jtagre: a C3 whose USB-Serial/JTAG port drops off the bus and comes back
# under a new name on every chip reset, as real boards may
for pair in uart:esp32:e.flash:10c4:ea60:classic jtag:esp32c3:c.flash:303a:1001:usb-jtag \
	    jtagre:esp32c3:r.flash:303a:1001:usb-jtag; do
	IFS=: read -r dev chip file vid pid how <<<"$pair"
	D=$MNT/$dev
	check "$dev: USB identity $vid:$pid" [ "$(json_get "$D/info.json" usb.vid):$(json_get "$D/info.json" usb.pid)" = "$vid:$pid" ]
	loc=$(json_get "$D/info.json" usb.location)
	port=$(json_get "$D/info.json" port)
	echo "# $dev at $port ($loc), serial $(json_get "$D/info.json" usb.serial)"
	r0=$(json_get "$D/info.json" resets)
	mkimg "$chip" factory "$T/$chip.bin" "resets-$chip"
	check "$dev: cp a factory image" cp "$T/$chip.bin" "$D/flash.bin"
	if [ $dev = jtagre ]; then
		# at once, while the chip is still in its loader: the job resets it,
		# follows the port and waits for the fresh app to answer Improv
		if echo 'Lab:secret1' >"$D/wifi" 2>"$T/w.err"; then ok "$dev: wifi right after cp"; else nok "$dev: wifi right after cp ($(cat "$T/w.err"))"; fi
		check "$dev: wifi says connected" grep -q "^connected Lab" "$D/wifi"
	fi
	check "$dev: the flash holds it" cmp -n "$(stat -c %s "$T/$chip.bin")" "$T/$chip.bin" "$T/$file"
	back=no
	for _ in $(seq 50); do [ "$(json_get "$D/info.json" sim.mode)" = app ] && grep -q "^app idle" "$D/state" && { back=yes; break; }; sleep 0.1; done
	echo "# $dev: state $(cat "$D/state"), reset $(json_get "$D/info.json" reset.enter)/$(json_get "$D/info.json" reset.leave), resets $r0 -> $(json_get "$D/info.json" resets)"
	check "$dev: back in its application" [ $back = yes ]
	check "$dev: entered the loader by the $how sequence" [ "$(json_get "$D/info.json" reset.enter)" = "$how" ]
	check "$dev: left it by a hard reset (RTS)" [ "$(json_get "$D/info.json" reset.leave)" = hard ]
	check "$dev: two more resets (in, out)" [ "$(json_get "$D/info.json" resets)" -ge $((r0 + 2)) ]
	check "$dev: same socket" [ "$(json_get "$D/info.json" usb.location)" = "$loc" ]
	echo "# $dev: port $port -> $(json_get "$D/info.json" port)"
	if [ $dev = jtagre ]; then
		check "$dev: the port was renamed by the resets and followed" [ "$(json_get "$D/info.json" port)" != "$port" ]
	else
		check "$dev: same port" [ "$(json_get "$D/info.json" port)" = "$port" ]
	fi
done
rm -f "$T/watch"; wait $WATCH
if [ -s "$T/flicker" ]; then nok "no folder ever disappeared ($(sort -u "$T/flicker" | tr '\n' ' '))"; else ok "no folder ever disappeared"; fi
done_testing
