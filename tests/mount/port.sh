#!/bin/bash
# --port PATH with a pty (espsim, the simulator's pty front end) through a
# symlink and --reset none: the folder is named after PATH as given, and
# flashing works over the termios transport.
source "$(dirname "$0")/lib.sh" "$@"
ESPSIM=$3
need_fuse
[ -x "$ESPSIM" ] || skip_all "espsim not built"

"$ESPSIM" --chip esp32 --link "$T/ttyESP" --flash "$T/p.flash" >"$T/espsim.log" 2>&1 &
SIM_PID=$!
trap 'kill $SIM_PID 2>/dev/null; wait $SIM_PID 2>/dev/null; cleanup' EXIT
for _ in $(seq 50); do [ -L "$T/ttyESP" ] && break; sleep 0.1; done
[ -L "$T/ttyESP" ] || { echo "Bail out! espsim did not start: $(cat "$T/espsim.log")"; exit 1; }

start_espfs --reset none --port "$T/ttyESP" || { echo "Bail out! espfs did not mount"; exit 1; }
D=$MNT/ttyESP
check "the folder is named after the port path" [ -d "$D" ]
check "chip over a pty" [ "$(cat "$D/chip")" = ESP32 ]
echo "# state: $(cat "$D/state")"
mkimg esp32 factory "$T/f.bin"
t0=$(ms_now)
check "cp a factory image over the pty" cp "$T/f.bin" "$D/flash.bin"
echo "# cp over the pty: $(( $(ms_now) - t0 )) ms"
check "the flash holds it" cmp -n "$(stat -c %s "$T/f.bin")" "$T/f.bin" "$T/p.flash"
if bash -c "echo reset > '$D/state'" 2>/dev/null; then nok "--reset none refuses a reset"; else ok "--reset none refuses a reset"; fi
done_testing
