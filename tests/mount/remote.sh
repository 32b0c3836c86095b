#!/bin/bash
# Remote ports (--port rfc2217://HOST:PORT) served by espsim's RFC 2217
# front end on loopback, all in one mount with a local simulated device:
#  - a chip in its application is reset into the loader over the network
#    (DTR/RTS through RFC 2217 into the simulated auto-reset circuit, no
#    buttons), flashed (compared byte for byte) and reset back into its app;
#  - a link cut mid-flash (the server killed) fails the writer with ENODEV
#    and a message, state says "remote link lost", the folder stays, and it
#    re-attaches by itself when the server is back (then a write works);
#  - a farm: 8 remote ports plus the local device flashed by concurrent
#    cp's, by-mac links for all of them.
source "$(dirname "$0")/lib.sh" "$@"
TSTART=$(date +%s%3N); stage() { echo "# +$(( $(date +%s%3N) - TSTART )) ms: $1"; }
ESPSIM=$3
need_fuse
[ -x "$ESPSIM" ] || skip_all "espsim not built"

stop_sims() {
	for f in "$T"/*.pid; do
		[ -f "$f" ] || continue
		kill "$(cat "$f")" 2>/dev/null
	done
	wait 2>/dev/null
}
trap 'stop_sims; cleanup' EXIT

# start_sim NAME PORT ARGS...: espsim --rfc2217 PORT (0: any) in the background;
# its URL in $T/NAME.url, its pid in $T/NAME.pid
start_sim() {
	local name=$1 port=$2; shift 2
	: >"$T/$name.url"
	"$ESPSIM" --rfc2217 "$port" --name "$name" "$@" >"$T/$name.url" 2>>"$T/$name.log" &
	echo $! >"$T/$name.pid"
	for _ in $(seq 100); do [ -s "$T/$name.url" ] && return 0; sleep 0.05; done
	echo "# espsim $name did not start: $(cat "$T/$name.log")"
	return 1
}
url() { cat "$T/$1.url"; }
# the chip key of a folder (ESP32-C3 -> esp32c3), without a python per call
key() { tr 'A-Z' 'a-z' <"$1/chip" | tr -d -- '-\n'; }
folder() { local u; u=$(url "$1"); echo "$MNT/${u#rfc2217://}"; }

mkimg esp32 factory "$T/app1.bin" remote-one
mkimg esp32 factory "$T/app2.bin" remote-two
for s in a c; do cp "$T/app1.bin" "$T/$s.flash"; truncate -s 4M "$T/$s.flash"; done
start_sim a 0 --chip esp32 --app --flash "$T/a.flash" || { echo "Bail out! espsim"; exit 1; }
start_sim c 0 --chip esp32 --app --timing --flash "$T/c.flash" || { echo "Bail out! espsim"; exit 1; }
chips=(esp32 esp32c3 esp32s3 esp32 esp32c3 esp32s3 esp32 esp32c3)
args=()
for i in $(seq 0 7); do
	start_sim "f$i" 0 --chip "${chips[$i]}" --flash "$T/f$i.flash" --flash-size 2M ||
		{ echo "Bail out! espsim"; exit 1; }
	args+=(--port "$(url "f$i")")
done
# an ESP32-S2 on USB-OTG (its ROM's CDC), in download mode, behind RFC 2217
mkimg esp32s2 factory "$T/s2.flash" remote-s2 && truncate -s 4M "$T/s2.flash"
start_sim s2 0 --chip esp32s2 --native-usb --flash "$T/s2.flash" || { echo "Bail out! espsim"; exit 1; }
start_espfs --port "$(url a)" --port "$(url c)" --port "$(url s2)" "${args[@]}" \
	--sim "esp32c3,name=local,flash=$T/local.flash" ||
	{ echo "Bail out! espfs did not mount"; exit 1; }

stage "(a) reset into the loader and back, over RFC 2217"
A=$(folder a)
check "a remote port is a folder named HOST:PORT" [ -d "$A" ]
check "chip over RFC 2217" [ "$(cat "$A/chip" 2>/dev/null)" = ESP32 ]
for _ in $(seq 100); do grep -q "^app idle" "$A/state" 2>/dev/null && break; sleep 0.1; done
echo "# a: state $(cat "$A/state"), espsim: $(grep -c "mode rom" "$T/a.log") loader boots, $(grep -c "mode app" "$T/a.log") app boots"
check "attach: the app was reset into the loader by DTR/RTS (espsim saw ROM mode)" grep -q "mode rom" "$T/a.log"
check "attach: the classic reset sequence worked over the network" [ "$(json_get "$A/info.json" reset.enter)" = classic ]
check "attach: back in the application (state)" grep -q "^app idle" "$A/state"
r0=$(json_get "$A/info.json" resets)
apps0=$(grep -c "mode app" "$T/a.log")
check "cp an application over RFC 2217" cp "$T/app2.bin" "$A/flash.bin"
check "the remote flash holds it, byte for byte" cmp -n "$(stat -c %s "$T/app2.bin")" "$T/app2.bin" "$T/a.flash"
back=no
for _ in $(seq 100); do
	grep -q "^app idle" "$A/state" && [ "$(grep -c "mode app" "$T/a.log")" -gt "$apps0" ] && { back=yes; break; }
	sleep 0.1
done
echo "# a: state $(cat "$A/state"), resets $r0 -> $(json_get "$A/info.json" resets), leave $(json_get "$A/info.json" reset.leave)"
check "reset back into the application after the flash (espsim saw it boot)" [ $back = yes ]
check "two more resets (in, out)" [ "$(json_get "$A/info.json" resets)" -ge $((r0 + 2)) ]
check "left the loader by a hard reset (RTS over RFC 2217)" [ "$(json_get "$A/info.json" reset.leave)" = hard ]
# the server goes away while the link is idle: state says so by itself,
# and once it is back a cp resets the chip over the new link (before the
# idle check, that cp's reset went to the dead link, looked like a USB
# re-enumeration, and the cp waited 60 s for the buttons)
APORT=$(url a); APORT=${APORT##*:}
kill "$(cat "$T/a.pid")"; wait "$(cat "$T/a.pid")" 2>/dev/null
lost=no
for _ in $(seq 100); do grep -q "remote link lost" "$A/state" && { lost=yes; break; }; sleep 0.1; done
echo "# a: idle, server stopped: $(cat "$A/state")"
check "an idle link's loss shows in state" [ $lost = yes ]
start_sim a "$APORT" --chip esp32 --app --flash "$T/a.flash" || nok "espsim a restarts on port $APORT"
for _ in $(seq 300); do grep -q "^app idle" "$A/state" 2>/dev/null && break; sleep 0.1; done
t0=$(ms_now)
check "after the server is back, a cp works" cp "$T/app1.bin" "$A/flash.bin"
dt=$(( $(ms_now) - t0 ))
echo "# a: cp after the return took $dt ms"
check "without waiting for buttons (under 30 s)" [ $dt -lt 30000 ]
check "the flash holds it" cmp -n "$(stat -c %s "$T/app1.bin")" "$T/app1.bin" "$T/a.flash"

stage "(s2) ESP32-S2 on USB-OTG behind RFC 2217: no USB IDs, the ROM says"
# No USB IDs cross the network, and its modem lines reach no reset
# circuit: espfs asks the ROM which port it talks on (UARTDEV_BUF_NO, as
# esptool does) and starts the app with the RTC watchdog; a hard reset
# would leave it in the loader while state said "app".
S2=$(folder s2)
for _ in $(seq 150); do grep -q "^app idle" "$S2/state" 2>/dev/null && grep -q "mode app" "$T/s2.log" && break; sleep 0.1; done
echo "# s2: state $(cat "$S2/state"), leave $(json_get "$S2/info.json" reset.leave)"
check "S2: the ROM said USB-OTG (log)" grep -q "ESP32-S2 ROM talks USB-OTG" "$LOG"
check "S2: left the loader by the RTC watchdog" [ "$(json_get "$S2/info.json" reset.leave)" = watchdog ]
check "S2: espsim saw its application boot" grep -q "mode app" "$T/s2.log"
check "S2: state says app" grep -q "^app idle" "$S2/state"

stage "(d) the farm: 8 remote + 1 local, concurrent cp's, by-mac"
check "12 folders (11 remote, 1 local) plus by-mac" [ "$(ls "$MNT" | grep -vc by-mac)" = 12 ]
links=0
for l in "$MNT"/by-mac/*; do [ -d "$l" ] && [ -f "$l/chip" ] && links=$((links + 1)); done
check "by-mac: a working link for every device (12)" [ $links = 12 ]
declare -A want
for i in $(seq 0 7); do
	F=$(folder "f$i")
	[ -f "$T/${chips[$i]}.img" ] || mkimg "${chips[$i]}" factory "$T/${chips[$i]}.img" farm
	want[$F]=$T/f$i.flash
done
want[$MNT/local]=$T/local.flash
[ -f "$T/esp32c3.img" ] || mkimg esp32c3 factory "$T/esp32c3.img" farm
t0=$(ms_now)
pids=()
for F in "${!want[@]}"; do
	cp "$T/$(key "$F").img" "$F/flash.bin" 2>"$T/cp.$(basename "$F").err" &
	pids+=($!)
done
fails=0
for p in "${pids[@]}"; do wait "$p" || fails=$((fails + 1)); done
echo "# farm: 9 concurrent cp's in $(( $(ms_now) - t0 )) ms"
check "9 concurrent cp's (8 remote, 1 local) all succeed" [ $fails = 0 ]
same=0
for F in "${!want[@]}"; do
	img=$T/$(key "$F").img
	cmp -s -n "$(stat -c %s "$img")" "$img" "${want[$F]}" && same=$((same + 1))
done
check "all 9 flashes hold their image byte for byte" [ $same = 9 ]

stage "(c) the link cut mid-flash, and its return"
C=$(folder c)
CPORT=$(url c); CPORT=${CPORT##*:}
for _ in $(seq 100); do grep -q "^app idle" "$C/state" 2>/dev/null && break; sleep 0.1; done
head -c $((512 * 1024)) /dev/urandom >"$T/rand.bin"   # incompressible: slow on the wire
dd if="$T/rand.bin" of="$C/flash.bin" bs=64k seek=16 conv=notrunc,fsync status=none 2>"$T/dd.err" &
dd_pid=$!
cut=no
for _ in $(seq 300); do
	if grep -qE "writing flash.bin.*(: [1-9][0-9]*%|\([1-9][0-9]* bytes)" "$C/state" 2>/dev/null; then cut=yes; break; fi
	sleep 0.05
done
echo "# c: state before the cut: $(cat "$C/state")"
kill -9 "$(cat "$T/c.pid")"; wait "$(cat "$T/c.pid")" 2>/dev/null
check "the link was cut while the write was under way" [ $cut = yes ]
if wait $dd_pid; then dd_rc=0; else dd_rc=1; fi
echo "# c: dd: $(tr '\n' ' ' <"$T/dd.err")"
check "the writer fails" [ $dd_rc = 1 ]
check "with ENODEV (No such device)" grep -q "No such device" "$T/dd.err"
st=$(cat "$C/state")
echo "# c: state after the cut: $st"
check "state: remote link lost, ENODEV" grep -qE "error ENODEV: .*remote link lost" <<<"$st"
check "the folder stays" [ -f "$C/chip" ]
start_sim c "$CPORT" --chip esp32 --app --timing --flash "$T/c.flash" || nok "espsim c restarts on port $CPORT"
back=no
# back in its app; the partial write stays said as a standing warning
for _ in $(seq 300); do grep -qE "^app (idle|warning)" "$C/state" 2>/dev/null && { back=yes; break; }; sleep 0.1; done
echo "# c: state after the server came back: $(cat "$C/state")"
check "the folder re-attaches when the server is back (app, link error gone)" [ $back = yes ]
check "the partial write is still said (standing warning)" grep -q "warning: flash.bin incomplete" "$C/state"
check "same folder, same chip" [ "$(cat "$C/chip")" = ESP32 ]
check "a write works again after the re-attach" dd if="$T/rand.bin" of="$C/flash.bin" bs=64k seek=16 conv=notrunc,fsync status=none
check "and the flash holds it" cmp -n $((512 * 1024)) "$T/rand.bin" <(tail -c +$((0x100000 + 1)) "$T/c.flash")
check "the warning ends once the range is written again" bash -c "! grep -q incomplete '$C/state'"
stage "end"
done_testing
