#!/bin/bash
# Remote ports through ser2net (Debian's, 4.x YAML configuration) serving
# espsim's pty on loopback: rfc2217:// (telnet(rfc2217) accepter: the
# baud-rate changes travel to the pty, the flash is compared byte for
# byte) and socket:// (raw tcp accepter: bytes only, 115200 throughout).
# A pty carries no modem lines, so both use --reset none with the chip
# waiting in its ROM loader; resets over the network are remote.sh's.
source "$(dirname "$0")/lib.sh" "$@"
ESPSIM=$3
need_fuse
[ -x "$ESPSIM" ] || skip_all "espsim not built"
SER2NET=$(command -v ser2net || ls /usr/sbin/ser2net 2>/dev/null)
[ -n "$SER2NET" ] || skip_all "ser2net is not installed (tests/deps.sh installs it)"

stop_all() {
	for f in "$T"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
	wait 2>/dev/null
}
trap 'stop_all; cleanup' EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
start_pty() {  # NAME: espsim on a pty at $T/NAME
	"$ESPSIM" --chip esp32 --link "$T/$1" --flash "$T/$1.flash" --name "$1" >/dev/null 2>"$T/$1.log" &
	echo $! >"$T/$1.pid"
	for _ in $(seq 100); do [ -L "$T/$1" ] && return 0; sleep 0.05; done
	return 1
}
start_pty rfc && start_pty raw || { echo "Bail out! espsim did not start"; exit 1; }
PR=$(free_port); PT=$(free_port)
cat >"$T/ser2net.yaml" <<EOC
%YAML 1.1
---
connection: &rfc
  accepter: telnet(rfc2217),tcp,127.0.0.1,$PR
  connector: serialdev,$(readlink "$T/rfc"),115200n81,local
  options:
    kickolduser: true
connection: &raw
  accepter: tcp,127.0.0.1,$PT
  connector: serialdev,$(readlink "$T/raw"),115200n81,local
  options:
    kickolduser: true
EOC
"$SER2NET" -n -d -c "$T/ser2net.yaml" >"$T/ser2net.log" 2>&1 &
echo $! >"$T/ser2net.pid"
up=no
for _ in $(seq 100); do
	ss -ltn 2>/dev/null | grep -q "127.0.0.1:$PT " && ss -ltn | grep -q "127.0.0.1:$PR " && { up=yes; break; }
	sleep 0.05
done
[ $up = yes ] || skip_all "ser2net did not start: $(head -c 200 "$T/ser2net.log")"

start_espfs --reset none --port "rfc2217://127.0.0.1:$PR" --port "socket://127.0.0.1:$PT" ||
	{ echo "Bail out! espfs did not mount"; exit 1; }
R=$MNT/127.0.0.1:$PR
S=$MNT/127.0.0.1:$PT
for _ in $(seq 150); do grep -q idle "$R/state" 2>/dev/null && grep -q idle "$S/state" 2>/dev/null && break; sleep 0.1; done
echo "# rfc2217: $(cat "$R/state"); socket: $(cat "$S/state")"
check "rfc2217 through ser2net: chip identified" [ "$(cat "$R/chip" 2>/dev/null)" = ESP32 ]
check "socket through ser2net: chip identified" [ "$(cat "$S/chip" 2>/dev/null)" = ESP32 ]
check "both MACs differ (two chips)" [ "$(cat "$R/mac")" != "$(cat "$S/mac")" ]
mkimg esp32 factory "$T/f.bin" ser2net
check "cp through ser2net's RFC 2217" cp "$T/f.bin" "$R/flash.bin"
check "the flash holds it" cmp -n "$(stat -c %s "$T/f.bin")" "$T/f.bin" "$T/rfc.flash"
echo "# rates the ptys saw: rfc2217: $(grep -o "baud [0-9]*" "$T/rfc.log" | tr '\n' ' ') raw: $(grep -o "baud [0-9]*" "$T/raw.log" | tr '\n' ' ')"
check "the loader's baud change reached the pty through ser2net (SET-BAUDRATE)" \
	grep -qE "baud (921600|[1-9][0-9]{6})" "$T/rfc.log"
check "raw TCP never changed the rate" bash -c "! grep -q 'baud' '$T/raw.log'"
check "cp through ser2net's raw TCP" cp "$T/f.bin" "$S/flash.bin"
check "the flash holds it" cmp -n "$(stat -c %s "$T/f.bin")" "$T/f.bin" "$T/raw.flash"
# a read back over each link, compared with the flash file
check "read back over RFC 2217" cmp <(head -c 65536 "$R/flash.bin") <(head -c 65536 "$T/rfc.flash")
check "read back over raw TCP" cmp <(head -c 65536 "$S/flash.bin") <(head -c 65536 "$T/raw.flash")
done_testing
