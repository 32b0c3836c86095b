#!/bin/bash
# Who may flash what, and when (issue 14 items 1-4, 7; issue 11 items 4-6,
# 8): rsync into a device folder flashes the file and fails on a wrong
# chip; only the writer's close, fsync or the rename commits a dropped
# file (never a reader's close); a killed cp or rsync (SIGINT, SIGTERM,
# SIGKILL, rsync --partial) flashes none of its raw data and state says
# so, and rsync --partial resumes; gio's fsync commits, so the rename has
# nothing to wait for; an unlinked drop is never flashed; flashed files
# give their slot back (no ENOSPC after 32 drops); one writer at a time
# (EBUSY for an erase or a drop while a cp streams); a read on flash.bin's
# writer fd sees what it wrote; state never shows more than 100% nor a
# temp file's name; a refused unlink says so in state.
source "$(dirname "$0")/lib.sh" "$@"
need_fuse

# q: no timing model (quick); t: the timing model, so a flash lasts seconds
start_espfs --baud 921600 --sim "esp32,name=q,flash=$T/q.flash" \
	--sim "esp32,timing,name=t,flash=$T/t.flash" || { echo "Bail out! espfs did not mount"; exit 1; }
Q=$MNT/q
TD=$MNT/t
mkimg esp32 factory "$T/f.bin" base
mkimg esp32 app "$T/app.bin" appone
mkimg esp32 app "$T/app2.bin" apptwo
mkimg esp32c3 app "$T/c3app.bin" wrongchip
APP_OFF=$((0x10000))
sz() { stat -c %s "$1"; }
# flash_has FLASH OFFSET FILE: the simulated flash holds FILE at OFFSET
flash_has() { cmp -s "$3" <(tail -c +$(($2 + 1)) "$1" | head -c "$(sz "$3")"); }
# extra_files DIR: names in the folder besides the device's own
extra_files() { ls -A "$1" | grep -vxE 'chip|mac|flash.bin|erase|wifi|state|info.json|console|boot|partitions'; }
# wait_clean DIR: flashed/refused files leave the folder (a few seconds)
wait_clean() { for _ in $(seq 50); do [ -z "$(extra_files "$1")" ] && return 0; sleep 0.1; done; return 1; }

check "factory image onto q/flash.bin" cp "$T/f.bin" "$Q/flash.bin"

echo "# $(date +%T.%N | cut -c1-12) issue 14 item 1: rsync into the folder flashes the file"
# --- issue 14 item 1: rsync into the folder flashes the file
if command -v rsync >/dev/null; then
	check "rsync app.bin into the folder exits 0" rsync "$T/app.bin" "$Q/"
	check "rsync: the app is on the chip at 0x10000" flash_has "$T/q.flash" $APP_OFF "$T/app.bin"
	check "rsync: nothing left in the folder" wait_clean "$Q"
	check "rsync -a --progress --partial app2.bin" bash -c "rsync -a --progress --partial '$T/app2.bin' '$Q/app.bin' >/dev/null"
	check "rsync -a: app2 is on the chip" flash_has "$T/q.flash" $APP_OFF "$T/app2.bin"
	# a second rsync -a right away: the previous file is still listed and
	# becomes rsync's delta basis; the new one must be flashed
	check "second rsync -a (delta basis) exits 0" rsync -a --no-whole-file "$T/app.bin" "$Q/app.bin"
	check "second rsync -a: the new version is on the chip" flash_has "$T/q.flash" $APP_OFF "$T/app.bin"
	check "second rsync -a: nothing left in the folder" wait_clean "$Q"
	cp "$T/app2.bin" "$T/move.bin"
	check "rsync --remove-source-files exits 0" rsync --remove-source-files "$T/move.bin" "$Q/"
	check "rsync --remove-source-files: flashed" flash_has "$T/q.flash" $APP_OFF "$T/app2.bin"
	check "rsync --remove-source-files: source removed after the flash" [ ! -e "$T/move.bin" ]
	cp "$T/c3app.bin" "$T/wrong.bin"
	cp "$T/q.flash" "$T/before.flash"
	if rsync --remove-source-files "$T/wrong.bin" "$Q/" 2>"$T/err"; then nok "rsync of a wrong-chip image fails"
	else ok "rsync of a wrong-chip image fails"; fi
	echo "# rsync said: $(head -c 300 "$T/err" | tr '\n' ' ')"
	check "wrong chip: the source is kept" [ -e "$T/wrong.bin" ]
	check "wrong chip: the flash is unchanged" cmp -s "$T/before.flash" "$T/q.flash"
	check "wrong chip: state says why" grep -q "refused" "$Q/state"
	wait_clean "$Q"
	# raw data: flashed at rsync's close too, so the rename is quick
	head -c 8192 /dev/urandom >"$T/raw.bin"
	check "rsync raw blob@0x300000.bin" rsync "$T/raw.bin" "$Q/blob@0x300000.bin"
	check "rsync raw blob landed at 0x300000" flash_has "$T/q.flash" $((0x300000)) "$T/raw.bin"
	check "rsync raw blob: nothing left in the folder" wait_clean "$Q"
else
	for x in $(seq 18); do n=$((n + 1)); echo "ok $n - rsync # SKIP rsync not installed"; done
fi

echo "# $(date +%T.%N | cut -c1-12) issue 14: a killed cp or rsync of raw data flashes nothing"
# --- issue 14: a killed cp or rsync of raw data flashes nothing, and state
# says so.  Raw data cannot show it is cut (an image can), so what counts
# is how its writer ended: the kernel's close of a killed writer, or
# rsync's close in its exit cleanup (it closes its temp file and then
# deletes it, or with --partial renames it to NAME), never flashes.
head -c $((1024 * 1024)) /dev/urandom >"$T/rawbig.bin"
# settle: time for a flash, had one started, to reach the simulated chip
settle() { sleep 0.5; }
set -m   # background jobs: their own process group, SIGINT as from a terminal
for sig in KILL INT; do
	name=cut$sig@0x200000.bin
	cp "$T/q.flash" "$T/before.flash"
	rm -f "$T/fifo"; mkfifo "$T/fifo"
	cp "$T/fifo" "$Q/$name" 2>/dev/null &
	cp_pid=$!
	exec 7>"$T/fifo"
	head -c 65536 "$T/rawbig.bin" >&7
	for _ in $(seq 100); do [ "$(stat -c %s "$Q/$name" 2>/dev/null)" = 65536 ] && break; sleep 0.05; done
	kill -$sig $cp_pid
	wait $cp_pid 2>/dev/null
	exec 7>&-
	settle
	echo "# state after cp was killed by SIG$sig: $(cat "$Q/state")"
	check "cp killed by SIG$sig: the flash is untouched" cmp -s "$T/before.flash" "$T/q.flash"
	check "cp killed by SIG$sig: state says $name was interrupted and not flashed" \
		grep -q "$name: interrupted, nothing was flashed.*SIG$sig" "$Q/state"
	rm -f "$Q/$name"
done
if command -v rsync >/dev/null; then
	# rsync_cut NAME SIGNAL TO RSYNC-OPTS...: start rsync of 1 MiB at
	# 200 KB/s, let a part of it arrive, then send SIGNAL to TO: "group"
	# (Ctrl-C in a terminal), "main" (kill PID)
	rsync_cut() {
		local name=$1 sig=$2 to=$3; shift 3
		cp "$T/q.flash" "$T/before.flash"
		rsync --bwlimit=200 "$@" "$T/rawbig.bin" "$Q/$name" 2>/dev/null &
		local pid=$! tmp=
		for _ in $(seq 100); do
			tmp=$(ls -A "$Q" | grep -F ".$name." | head -1)
			[ -n "$tmp" ] && [ "$(stat -c %s "$Q/$tmp" 2>/dev/null || echo 0)" -gt 100000 ] && break
			sleep 0.05
		done
		if [ "$to" = group ]; then kill -$sig -- -$pid; else kill -$sig $pid; fi
		wait $pid
		RC=$?
		settle
		echo "# rsync $* killed by SIG$sig ($to): exit $RC; state: $(cat "$Q/state")"
		echo "# folder: $(ls -A "$Q" | tr '\n' ' ')"
	}
	for spec in "INT group" "TERM main" "KILL group"; do
		read -r sig to <<<"$spec"
		rsync_cut rs$sig@0x300000.bin $sig $to
		check "rsync killed by SIG$sig ($to): the flash is untouched" cmp -s "$T/before.flash" "$T/q.flash"
		check "rsync killed by SIG$sig ($to): state says rs$sig@0x300000.bin was interrupted and not flashed" \
			grep -q "rs$sig@0x300000.bin: interrupted, nothing was flashed" "$Q/state"
		for f in $(ls -A "$Q" | grep -F "rs$sig@"); do rm -f "$Q/$f"; done
	done
	# --partial: rsync renames its cut temp file to NAME, for the next run
	# to resume from; it stays unflashed, and the next run flashes it whole
	rsync_cut rsp@0x300000.bin INT group --partial
	check "rsync --partial killed by SIGINT: the flash is untouched" cmp -s "$T/before.flash" "$T/q.flash"
	check "rsync --partial killed by SIGINT: state says rsp@0x300000.bin was interrupted and not flashed" \
		grep -q "rsp@0x300000.bin: interrupted, nothing was flashed" "$Q/state"
	check "rsync --partial killed by SIGINT: the partial copy is kept as rsp@0x300000.bin" \
		[ -e "$Q/rsp@0x300000.bin" ]
	check "rsync --partial again finishes the copy" rsync --partial "$T/rawbig.bin" "$Q/rsp@0x300000.bin"
	check "rsync --partial again: the whole file is on the chip" flash_has "$T/q.flash" $((0x300000)) "$T/rawbig.bin"
	check "rsync --partial again: nothing left in the folder" wait_clean "$Q"
else
	for x in $(seq 12); do n=$((n + 1)); echo "ok $n - rsync # SKIP rsync not installed"; done
fi
set +m

echo "# $(date +%T.%N | cut -c1-12) issue 14 item 2: a reader's close never commits"
# --- issue 14 item 2: a reader's close never commits
head -c 65536 /dev/urandom >"$T/blob.bin"
cp "$T/q.flash" "$T/before.flash"
python3 - "$Q/half@0x200000.bin" "$T/blob.bin" "$T/q.flash" <<'PY' && ok "a reader's close never commits a drop being written" || nok "a reader's close never commits a drop being written"
import sys
dst, src, flash = sys.argv[1:4]
data = open(src, 'rb').read()
def chip():
    with open(flash, 'rb') as f:
        f.seek(0x200000)
        return f.read(len(data))
before = chip()
f = open(dst, 'wb', buffering=0)
f.write(data[:32768])
with open(dst, 'rb') as r:        # a file manager's sniff, `head -c 16`
    r.read(16)
untouched = chip() == before
f.write(data[32768:])
f.close()                         # the writer's close commits
sys.exit(0 if untouched and chip() == data else 1)
PY
wait_clean "$Q"

echo "# $(date +%T.%N | cut -c1-12) issue 11 item 6: unlink before close discards"
# --- issue 11 item 6: unlink before close discards
cp "$T/q.flash" "$T/before.flash"
python3 - "$Q/gone@0x280000.bin" "$T/blob.bin" <<'PY' && ok "write, unlink, close a drop" || nok "write, unlink, close a drop"
import sys, os
f = open(sys.argv[1], 'wb', buffering=0)
f.write(open(sys.argv[2], 'rb').read())
os.unlink(sys.argv[1])
f.close()
PY
check "the unlinked drop was not flashed" cmp -s "$T/before.flash" "$T/q.flash"

echo "# $(date +%T.%N | cut -c1-12) issue 14 item 3: gio's sequence; fsync commits, the rename is quick"
# --- issue 14 item 3: gio's sequence; fsync commits, the rename is quick
cp "$T/q.flash" "$T/before.flash"
python3 - "$Q" "$T/blob.bin" "$T/q.flash" <<'PY' && ok "fsync of a temp file commits it before the rename" || nok "fsync of a temp file commits it before the rename"
import sys, os
d, src, flash = sys.argv[1:4]
data = open(src, 'rb').read()
tmp = os.path.join(d, '.goutputstream-AB12CD')
fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
os.write(fd, data)
os.fsync(fd)
with open(flash, 'rb') as f:          # the simulated chip, right after fsync
    f.seek(0)
    ok = f.read(len(data)) == data
os.rename(tmp, os.path.join(d, 'flash.bin'))
os.close(fd)
sys.exit(0 if ok else 1)
PY
check "gio-style copy: flash.bin holds the file" flash_has "$T/q.flash" 0 "$T/blob.bin"
check "gio-style copy: nothing left in the folder" wait_clean "$Q"
cp "$T/f.bin" "$Q/flash.bin"

echo "# $(date +%T.%N | cut -c1-12) issue 11 item 5: read-modify-write on one O_RDWR descriptor"
# --- issue 11 item 5: read-modify-write on one O_RDWR descriptor
python3 - "$Q/flash.bin" <<'PY' && ok "a read on the writer's fd sees what it wrote" || nok "a read on the writer's fd sees what it wrote"
import sys, os
fd = os.open(sys.argv[1], os.O_RDWR)
new = bytes(range(256)) * 16
os.pwrite(fd, new, 0x300000)
got = os.pread(fd, 4096, 0x300000)
part = os.pread(fd, 100, 0x300000 - 50)  # straddles old and new bytes
os.close(fd)
sys.exit(0 if got == new and part[50:] == new[:50] else 1)
PY
check "the O_RDWR write reached the chip" cmp -s <(python3 -c 'import sys; sys.stdout.buffer.write(bytes(range(256))*16)') <(tail -c +$((0x300000 + 1)) "$T/q.flash" | head -c 4096)

echo "# $(date +%T.%N | cut -c1-12) issue 11 item 8: flashed drops give their slot back"
# --- issue 11 item 8: flashed drops give their slot back
for i in $(seq 0 33); do
	head -c 4096 /dev/zero | tr '\0' "\\$(printf %o $((i % 200 + 1)))" >"$T/s$i.bin"
done
fails=0
for i in $(seq 0 31); do cp "$T/s$i.bin" "$Q/s$i@$((0x380000 + i * 4096)).bin" 2>/dev/null || fails=$((fails + 1)); done
check "32 drops flashed" [ $fails = 0 ]
sleep 2.5
if cp "$T/s32.bin" "$Q/s32@$((0x3a0000)).bin" 2>"$T/err"; then ok "a 33rd drop after the others were flashed"
else nok "a 33rd drop after the others were flashed ($(cat "$T/err"))"; fi
check "the 33rd drop is on the chip" flash_has "$T/q.flash" $((0x3a0000)) "$T/s32.bin"

echo "# $(date +%T.%N | cut -c1-12) issue 14 item 7: EPERM of unlink, visible in state"
# --- issue 14 item 7: EPERM of unlink, visible in state
if rm -f "$Q/flash.bin" 2>"$T/err"; then nok "rm flash.bin is refused"; else ok "rm flash.bin is refused"; fi
check "rm flash.bin: Operation not permitted" grep -q "not permitted" "$T/err"
check "state says flash.bin cannot be removed and what to do" grep -q "cannot be removed.*cp FILE flash.bin" "$Q/state"

echo "# $(date +%T.%N | cut -c1-12) issue 11 item 4: one writer at a time while a cp streams (timing model)"
# --- issue 11 item 4: one writer at a time while a cp streams (timing model)
head -c $((256 * 1024)) /dev/urandom >"$T/big.bin"
cp "$T/big.bin" "$TD/flash.bin" 2>"$T/cp.err" &
cp_pid=$!
for _ in $(seq 100); do grep -q "writing" "$TD/state" && break; sleep 0.05; done
if echo 1 >"$TD/erase" 2>"$T/err"; then nok "erase during a cp gets EBUSY"
else check "erase during a cp gets EBUSY" grep -qi "busy" "$T/err"; fi
if cp "$T/app.bin" "$TD/app.bin" 2>"$T/err"; then nok "a drop during a cp gets EBUSY"
else check "a drop during a cp gets EBUSY" grep -qi "busy" "$T/err"; fi
wait $cp_pid
check "the cp exits 0" [ $? = 0 ]
check "the flash holds exactly the cp's file" flash_has "$T/t.flash" 0 "$T/big.bin"
wait_clean "$TD"

echo "# $(date +%T.%N | cut -c1-12) issue 14 item 4: state during a drop's commit never exceeds 100%;"
# --- issue 14 item 4: state during a drop's commit never exceeds 100%;
# after an interrupt it names what the user copied, not the temp file
head -c $((200 * 1024 + 100)) /dev/urandom >"$T/odd.bin"   # not whole sectors
cp "$T/odd.bin" "$TD/odd@0x100000.bin" &
cp_pid=$!
over=$(python3 - "$TD/state" $cp_pid <<'PY'
import os, re, sys, time
state, pid = sys.argv[1], int(sys.argv[2])
worst = ''
while True:
    try:
        os.kill(pid, 0)
    except OSError:
        break
    m = re.search(r'\((\d+)/(\d+) bytes\)', open(state).read())
    if m and int(m.group(1)) > int(m.group(2)):
        worst = m.group(0)
    time.sleep(0.002)
print(worst)
PY
)
wait $cp_pid
check "the drop was flashed" flash_has "$T/t.flash" $((0x100000)) "$T/odd.bin"
if [ -z "$over" ]; then ok "state never showed more bytes than the file has"
else nok "state never showed more bytes than the file has ($over)"; fi
wait_clean "$TD"
set -m   # a background job gets SIGINT like a terminal's Ctrl-C
python3 - "$TD" "$T/big.bin" <<'PY' &
import os, sys
d, src = sys.argv[1], sys.argv[2]
tmp = os.path.join(d, '.big@0x200000.bin.Xy12Zq')    # rsync's temp name
with open(tmp, 'wb') as f:                            # its close flashes it,
    f.write(open(src, 'rb').read())                   # raw data as an image
os.rename(tmp, os.path.join(d, 'big@0x200000.bin'))
PY
py_pid=$!
set +m
for _ in $(seq 400); do grep -q "writing big@0x200000.bin" "$TD/state" && break; sleep 0.05; done
echo "# state before the interrupt: $(cat "$TD/state")"
kill -INT $py_pid
wait $py_pid
sleep 0.3
echo "# state after the interrupt: $(cat "$TD/state")"
check "state names the file the user copied" grep -qE "big@0x200000.bin( incomplete)?: interrupted|big@0x200000.bin incomplete" "$TD/state"
check "state does not name the temp file" bash -c "! grep -q 'Xy12Zq' '$TD/state'"

done_testing
