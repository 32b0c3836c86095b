#!/bin/bash
# A hostile user, a clumsy script and a flaky link against one device
# (issue 11): bad values to every file, concurrent writers, unplug and
# faults mid-operation, kill -9 of espfs and a remount.  Each attack
# checks what the user sees (exit status, message), what state says, and
# that the flash is exactly what was asked for or untouched (the
# simulator's flash file, compared byte for byte).
#
# Checks for items fixed elsewhere in the tree (erase parsing, staging,
# the read path) go through others(), which names the area fixed.
source "$(dirname "$0")/lib.sh" "$@"
need_fuse

SIM="esp32,app,improv,wifi=Net:pw,name=h,flash=$T/h.flash"
start_espfs --baud 460800 --sim "$SIM" --sim "esp32,timing,name=slow,flash=$T/slow.flash" ||
	{ echo "Bail out! espfs did not mount"; exit 1; }
D=$MNT/h
F=$T/h.flash
mkimg esp32 factory "$T/factory.bin" hostile
mkimg esp32s2 factory "$T/s2.bin" hostile
head -c $((512 * 1024)) /dev/urandom >"$T/rand.bin"

# others AREA NAME CMD...: a check of an item fixed in AREA
others() {
	local area=$1 name=$2; shift 2
	if "$@"; then ok "$name"; else nok "$name ($area)"; fi
}
snap() { cp "$F" "$T/snap"; }
untouched() { cmp -s "$F" "$T/snap"; }
idle_wait() {
	for _ in $(seq 100); do
		grep -qE " (idle|warning:|error )" "$D/state" 2>/dev/null && return 0
		sleep 0.1
	done
}
# refused NAME FILE VALUE: writing VALUE fails, the flash is untouched
refused() {
	local name=$1 file=$2 value=$3
	snap
	if printf '%s' "$value" >"$file" 2>"$T/err"; then RC=0; else RC=1; fi
	idle_wait
	[ $RC = 1 ] && untouched
}

# --- erase ----------------------------------------------------------------
cp "$T/factory.bin" "$D/flash.bin"
for v in "garbage" "0x1001 0x1000" "0x0 0x0" "0x0 0x1000 0x2000" "0x400000 0x1000" \
	"0x3ff000 0x2000" "$(head -c 3000 /dev/zero | tr '\0' 9)"; do
	check "erase '${v:0:24}' is refused, flash untouched" refused erase "$D/erase" "$v"
done
check "state explains a refused erase" grep -q "error E" "$D/state"
needs_guard_erase() {
	local v
	for v in "0x1000 -0x1000" "0xFFFFFFFF00000000 0x100000000" "0x10000 0xFFFFFFFFFFFF0000" \
		"-1" "0x1000 0x1000x" " +0x1000 0x1000"; do
		others guard "erase '$v' is refused before anything is erased" refused erase "$D/erase" "$v"
	done
}
needs_guard_erase

# --- wifi -----------------------------------------------------------------
st0=$(cat "$D/wifi")
for v in "no-colon" ":nopass" "$(printf 'x%.0s' $(seq 33)):pw" "Net:$(printf 'p%.0s' $(seq 65))" \
	'{"ssid": 1}' '{"ssid":"a"' "$(head -c 5000 /dev/zero | tr '\0' a)"; do
	check "wifi '${v:0:20}' is refused, flash untouched" refused wifi "$D/wifi" "$v"
done
check "refused wifi values change no wifi status" [ "$(cat "$D/wifi")" = "$st0" ]
needs_guard_wifi() {
	others guard 'wifi JSON with \u0000 in the SSID is refused' refused wifi "$D/wifi" '{"ssid":"Ne\u0000t","password":"pw"}'
	printf 'Ne\nt:pw' >"$D/wifi" 2>/dev/null
	others guard "the wifi file stays one line whatever was written" [ "$(wc -l <"$D/wifi")" = 1 ]
	printf '\xff\xfe:pw' >"$D/wifi" 2>/dev/null
	others guard "info.json stays valid JSON after an invalid-UTF-8 SSID" python3 -c 'import json,sys
try: json.load(open(sys.argv[1]))
except Exception: sys.exit(1)' "$D/info.json"
}
needs_guard_wifi

# --- state ----------------------------------------------------------------
check "state: an unknown command is refused" refused state "$D/state" "format-the-chip"
check "state: random bytes are refused" refused state "$D/state" "$(head -c 64 /dev/urandom | tr -d '\0')"
needs_guard_state() {
	head -c 64 /dev/urandom | tr -d '\0\n' >"$T/junk"
	cat "$T/junk" >"$D/state" 2>/dev/null
	# one line of valid UTF-8 with no control bytes (valid multi-byte
	# characters in the junk may be shown as they are; anything else escaped)
	others guard "state never echoes raw bytes written to it" python3 -c '
import sys
b = open(sys.argv[1], "rb").read()
s = b.decode("utf-8")              # raises on bytes that are not UTF-8
body = s[:-1] if s.endswith("\n") else s
sys.exit(1 if any(ord(c) < 32 or ord(c) == 127 for c in body) else 0)' "$D/state"
}
needs_guard_state

# --- the read-only files ----------------------------------------------------
for f in chip mac info.json; do
	check "writing $f is refused, flash untouched" refused "$f" "$D/$f" "x"
done
check "chip still reads as before" grep -qx "ESP32" "$D/chip"

# --- flash.bin offsets and sizes -------------------------------------------
snap
if dd if="$T/rand.bin" of="$D/flash.bin" bs=4k seek=1024 conv=notrunc status=none 2>"$T/err"
then nok "a write at the end of flash fails"; else ok "a write at the end of flash fails"; fi
check "with EFBIG (File too large)" grep -q "too large" "$T/err"
check "and nothing was erased" untouched
# one write() that would run past the end: refused whole (a dd with
# smaller blocks gets its blocks before the end written, as asked)
if dd if="$T/rand.bin" of="$D/flash.bin" bs=512k seek=$((0x400000 - 0x40000)) oflag=seek_bytes conv=notrunc status=none 2>"$T/err"
then nok "a write running past the end fails"; else ok "a write running past the end fails"; fi
check "a write running past the end erased nothing" untouched
if cp "$T/s2.bin" "$D/flash.bin" 2>"$T/err"; then nok "an ESP32-S2 image is refused"; else ok "an ESP32-S2 image is refused"; fi
check "with EINVAL, the reason in state" grep -q "ESP32-S2" "$D/state"
check "the wrong-chip image erased nothing" untouched
truncate -s 0 "$D/flash.bin" 2>/dev/null
: >"$D/flash.bin" 2>/dev/null
check "truncate and O_TRUNC erase nothing" untouched
python3 - "$D/flash.bin" <<'EOF' 2>"$T/err" && ok "pwrite at a huge offset fails" || nok "pwrite at a huge offset fails"
import os, sys, errno
fd = os.open(sys.argv[1], os.O_WRONLY)
try:
    os.pwrite(fd, b"x" * 4096, 1 << 40)
    sys.exit(1)
except OSError as e:
    sys.exit(0 if e.errno in (errno.EFBIG, errno.EINVAL) else 1)
finally:
    try: os.close(fd)
    except OSError: pass
EOF
check "a huge offset erased nothing" untouched

# --- names ------------------------------------------------------------------
snap
head -c 8192 /dev/urandom >"$T/junk.bin"
if cp "$T/junk.bin" "$D/junk.bin" 2>"$T/err"; then nok "an unrecognised dropped file is refused"
else ok "an unrecognised dropped file is refused"; fi
check "the refused drop erased nothing" untouched
if mkdir "$D/sub" 2>/dev/null; then nok "mkdir in a device folder is refused"; else ok "mkdir in a device folder is refused"; fi
if rm -f "$D/chip" 2>/dev/null && [ ! -e "$D/chip" ]; then nok "the device's own files cannot be removed"
else ok "the device's own files cannot be removed"; fi
needs_guard_names() {
	local long
	long=$(printf 'n%.0s' $(seq 300))
	others guard "a 300-byte name is refused, not cut" bash -c ": >'$D/$long.bin' 2>/dev/null; [ \$? != 0 ] && ! ls '$D' | grep -q nnnnnnnnnn"
	sleep 2.5   # the refused drop expires
	echo 3 >/proc/sys/vm/drop_caches 2>/dev/null
	others guard "listing after a refused drop expired works (nodes.c)" bash -c "ls '$D' >/dev/null"
	cp "$T/junk.bin" "$D/junk2.bin" 2>/dev/null
	mv "$D/junk2.bin" "$D/flash.bin" 2>"$T/err"
	others guard "mv of a refused staging file does not say 'subdirectory of itself'" bash -c "! grep -q subdirectory '$T/err'"
	# a rename onto flash.bin replaces it (unrecognised content goes to
	# 0, docs/files.md): the flash then holds exactly that file, or nothing changed
	check "a rename onto flash.bin leaves exactly that file at 0, or nothing" \
		bash -c "cmp -s -n 8192 '$T/junk.bin' '$F' || cmp -s '$F' '$T/snap'"
}
needs_guard_names

# --- concurrent writers -----------------------------------------------------
idle_wait
snap
cp "$T/rand.bin" "$D/flash.bin" &
cp1=$!
sleep 0.05
if bash -c "exec 3>>'$D/flash.bin'" 2>"$T/err"; then w2=0; else w2=1; fi
wait $cp1; rc1=$?
check "the first writer succeeds" [ $rc1 = 0 ]
check "the flash holds exactly the first writer's data" cmp -n $((512 * 1024)) "$T/rand.bin" "$F"
needs_copy_writers() {
	others copy "a second writer during a cp gets EBUSY" [ $w2 = 1 ]
	# on a device with a real link's speed, so the cp is still running
	local S=$MNT/slow
	cp "$T/rand.bin" "$S/flash.bin" & local c=$!
	for _ in $(seq 100); do grep -q "writing flash.bin" "$S/state" && break; sleep 0.1; done
	printf 1 >"$S/erase" 2>"$T/err"; local e=$?
	wait $c; local rc=$?
	others copy "an erase during a cp gets EBUSY" [ $e != 0 ]
	others copy "and the cp's image is whole" bash -c "[ $rc = 0 ] && cmp -s -n $((512 * 1024)) '$T/rand.bin' '$T/slow.flash'"
}
needs_copy_writers

# --- a fault mid-write: programming fails --------------------------------
idle_wait
cp "$T/factory.bin" "$D/flash.bin"
echo "fault program-fail" >"$D/state"
if dd if="$T/rand.bin" of="$D/flash.bin" bs=64k seek=48 conv=notrunc status=none 2>"$T/err"
then nok "a write the flash cannot program fails"; else ok "a write the flash cannot program fails"; fi
echo "fault none" >"$D/state"
echo "# said: $(cat "$T/err"); state: $(cat "$D/state")"
check "with EIO" grep -q "Input/output error" "$T/err"
check "state says the range may be partly written" grep -q "may be erased or partly written" "$D/state"
echo reset >"$D/state"; idle_wait
check "a later job leaves the warning standing" grep -q "warning: flash.bin incomplete" "$D/state"
dd if="$T/rand.bin" of="$D/flash.bin" bs=64k seek=48 conv=notrunc status=none
check "the range written again clears it" grep -qE "^[a-z]+ idle$" "$D/state"
check "the flash holds what was written" cmp -n $((512 * 1024)) "$T/rand.bin" <(tail -c +$((0x300000 + 1)) "$F")

# write_again WHEN: the write that was cut goes through now, the standing
# warning about it goes, and the flash holds exactly it
write_again() {
	if cp "$T/rand.bin" "$D/flash.bin" 2>"$T/err"; then ok "the write goes through $1"
	else nok "the write goes through $1 ($(cat "$T/err"))"; fi
	check "and the warning goes" grep -qE "^[a-z]+ idle$" "$D/state"
	check "the flash holds exactly that" cmp -n $((512 * 1024)) "$T/rand.bin" "$F"
}

# --- unplug mid-write ------------------------------------------------------
idle_wait
echo "unplug-at 50" >"$D/state"
if cp "$T/rand.bin" "$D/flash.bin" 2>"$T/err"; then nok "a write cut by an unplug fails"
else ok "a write cut by an unplug fails"; fi
echo "# said: $(cat "$T/err"); state: $(cat "$D/state")"
check "state says unplugged, ENODEV, flash.bin incomplete" grep -q "^unplugged error ENODEV: flash.bin incomplete" "$D/state"
echo replug >"$D/state"
for _ in $(seq 100); do grep -q "^unplugged" "$D/state" || break; sleep 0.1; done
idle_wait
echo "# state after the replug: $(cat "$D/state")"
check "after the replug state still says the flash is incomplete" grep -q "flash.bin incomplete" "$D/state"
write_again "after the replug"

# --- reads on a garbled link -------------------------------------------------
needs_read_garbage() {
	echo "fault garbage" >"$D/state"
	local out=$T/read.bin
	if dd if="$D/flash.bin" of="$out" bs=64k skip=2 count=2 status=none 2>"$T/err"; then
		others read "a read over a garbled link returns the flash or fails" cmp -s "$out" <(dd if="$F" bs=64k skip=2 count=2 status=none)
	else
		others read "a failed read says so in state" grep -q "error E" "$D/state"
	fi
	echo "fault none" >"$D/state"
}
needs_read_garbage

# --- kill -9 mid-write, then a new espfs -----------------------------------
cp "$T/factory.bin" "$D/flash.bin"
stop_espfs
start_espfs --baud 460800 --sim "$SIM,timing" || { echo "Bail out! espfs did not remount"; exit 1; }
cp "$T/rand.bin" "$D/flash.bin" 2>/dev/null &
cp_pid=$!
# until the chip has taken data (entering the loader comes first)
for _ in $(seq 300); do grep -qE "\([1-9][0-9]* bytes so far\)" "$D/state" 2>/dev/null && break; sleep 0.1; done
kill -9 "$ESPFS_PID"; wait "$ESPFS_PID" 2>/dev/null; ESPFS_PID=
wait $cp_pid; rc=$?
check "the cp under a killed espfs fails" [ $rc != 0 ]
check "the killed espfs left a journal of the unfinished write" grep -q "^running " "$F.espfs-journal"
fusermount3 -uz "$MNT" 2>/dev/null
start_espfs --sim "$SIM" || { echo "Bail out! espfs did not remount after kill -9"; exit 1; }
echo "# state after the restart: $(cat "$D/state")"
check "the new espfs says a write was interrupted in the previous run" grep -q "previous espfs run" "$D/state"
write_again "after the restart"
done_testing
