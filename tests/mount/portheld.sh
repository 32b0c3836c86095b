#!/bin/bash
# The serial port is espfs's alone while it has it (issue 11 item 9), and a
# port held by another program is named in state (issue 12 item 4):
# espfs takes an flock (what pyserial's exclusive open and esptool use)
# and TIOCEXCL; as root TIOCEXCL is no bar, so the flock is what is tested.
source "$(dirname "$0")/lib.sh" "$@"
ESPSIM=$3
need_fuse
[ -x "$ESPSIM" ] || skip_all "espsim not built"
HOLDER=
MNT2=$T/mnt2
ESPFS2=
mkdir -p "$MNT2"
finish() {
	[ -n "$HOLDER" ] && kill "$HOLDER" 2>/dev/null
	mountpoint -q "$MNT2" 2>/dev/null && fusermount3 -u "$MNT2"
	[ -n "$ESPFS2" ] && { kill "$ESPFS2" 2>/dev/null; wait "$ESPFS2" 2>/dev/null; }
	kill $SIM_PID 2>/dev/null; wait $SIM_PID 2>/dev/null
	cleanup
}
"$ESPSIM" --chip esp32 --link "$T/ttyESP" --flash "$T/p.flash" >"$T/espsim.log" 2>&1 &
SIM_PID=$!
trap finish EXIT
for _ in $(seq 50); do [ -L "$T/ttyESP" ] && break; sleep 0.1; done
[ -L "$T/ttyESP" ] || { echo "Bail out! espsim did not start: $(cat "$T/espsim.log")"; exit 1; }

# python3 holds the port the way pyserial's exclusive open does
python3 -c '
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_NOCTTY)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
open(sys.argv[2], "w").write("locked")
time.sleep(120)' "$T/ttyESP" "$T/held" &
HOLDER=$!
for _ in $(seq 50); do [ -f "$T/held" ] && break; sleep 0.1; done

start_espfs --reset none --port "$T/ttyESP" || { echo "Bail out! espfs did not mount"; exit 1; }
D=$MNT/ttyESP
st=$(cat "$D/state")
echo "# state: $st"
check "state says the port is held by another program" grep -q "held by another program" <<<"$st"
check "state names the holder (pid $HOLDER, python3)" grep -q "pid $HOLDER (python3)" <<<"$st"
if bash -c "echo 0x1000 0x1000 > '$D/erase'" 2>"$T/erase.err"; then
	nok "an erase while the port is held fails"
else
	ok "an erase while the port is held fails ($(cat "$T/erase.err" | head -c 120))"
fi
check "the folder stays" [ -d "$D" ]

# the holder lets go: espfs takes the port (it looks again each second)
kill $HOLDER; wait $HOLDER 2>/dev/null; HOLDER=
got=
for _ in $(seq 100); do
	[ "$(cat "$D/chip" 2>/dev/null)" = ESP32 ] && { got=yes; break; }
	sleep 0.1
done
check "once the holder let go espfs attached (chip ESP32)" [ "$got" = yes ]
echo "# state: $(cat "$D/state")"

# now espfs has it: another flock fails, a second espfs names espfs
if python3 -c '
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_NOCTTY)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)' "$T/ttyESP" 2>/dev/null; then
	nok "a second program cannot lock the port espfs holds"
else
	ok "a second program cannot lock the port espfs holds"
fi
"$ESPFS_BIN" -f --no-scan --reset none --port "$T/ttyESP" "$MNT2" >"$T/espfs2.log" 2>&1 &
ESPFS2=$!
for _ in $(seq 100); do [ -f "$MNT2/ttyESP/state" ] && break; sleep 0.1; done
st2=$(cat "$MNT2/ttyESP/state" 2>/dev/null)
echo "# second espfs state: $st2"
check "a second espfs names the first (pid $ESPFS_PID, espfs)" grep -q "pid $ESPFS_PID (espfs)" <<<"$st2"
fusermount3 -u "$MNT2"; wait $ESPFS2 2>/dev/null; ESPFS2=
mkimg esp32 factory "$T/f.bin"
check "the first espfs still flashes over its port" cp "$T/f.bin" "$D/flash.bin"
check "the flash holds it" cmp -n "$(stat -c %s "$T/f.bin")" "$T/f.bin" "$T/p.flash"
done_testing
