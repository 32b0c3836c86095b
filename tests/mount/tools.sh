#!/bin/bash
# The copy tools users reach for (issue 14): each real program present on
# this machine onto flash.bin, into a device folder, and for a backup.
# Each write checks the exit status, that the simulated flash holds
# exactly the file and nothing around it changed, that no file is left in
# the folder, and how long a listing of the folder (getdents + lstat of
# every entry, what `ls -l` does) takes during the flash: within 100 ms.
# The writes go to a device with the timing model on (a flash lasts a
# second or two); backups to one without (quick).  A tool that is not
# installed is skipped with a reason.
source "$(dirname "$0")/lib.sh" "$@"
need_fuse

start_espfs --baud 921600 --sim "esp32,timing,name=t,size=0x100000,flash=$T/t.flash" \
	--sim "esp32,name=q,size=0x100000,flash=$T/q.flash" || { echo "Bail out! espfs did not mount"; exit 1; }
D=$MNT/t
# espfs and the probe above the machine's other work (threads started
# later inherit it): what is measured is whether espfs answers, not how
# busy the machine is
for task in /proc/$ESPFS_PID/task/*; do renice -n -10 -p "${task##*/}" >/dev/null 2>&1; done
Q=$MNT/q
mkimg esp32 factory "$T/fbase.bin" base
mkimg esp32 app "$T/app1.bin" appone
mkimg esp32 app "$T/app2.bin" apptwo
# flash.bin images: a factory image and random bytes behind it (128 KiB,
# so the flash takes long enough to watch the folder's listing)
for x in A B; do
	{ cat "$T/fbase.bin"; head -c $((131072 - $(stat -c %s "$T/fbase.bin"))) /dev/urandom; } >"$T/f$x.bin"
done
APP=$((0x10000))
LAT=$T/latencies
: >"$LAT"

have() { command -v "$1" >/dev/null; }
skip() { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }
extra_files() { ls -A "$1" | grep -vxE 'chip|mac|flash.bin|erase|wifi|state|info.json|console|boot|partitions'; }
wait_clean() { for _ in $(seq 50); do [ -z "$(extra_files "$1")" ] && return 0; sleep 0.1; done; return 1; }

# The listing probe: one process lists the folder every 20 ms for the
# whole run and logs "END_MS LATENCY_MS" per listing; a flow takes the
# listings that ended within its own time.  It runs above the tools'
# priority: the machine's load is not what is measured.
nice -n -10 python3 - "$D" "$T/probe.stop" "$T/probe.log" <<'PY' &
import os, sys, time
d, stop, log = sys.argv[1:4]
with open(log, 'w', buffering=1) as out:
    while not os.path.exists(stop):
        t0 = time.monotonic()
        for e in os.listdir(d):
            try:
                os.lstat(os.path.join(d, e))
            except FileNotFoundError:
                pass
        t1 = time.monotonic()
        out.write("%d %.1f\n" % (time.clock_gettime(time.CLOCK_REALTIME) * 1000, (t1 - t0) * 1000))
        time.sleep(0.02)
PY
PROBE=$!
for _ in $(seq 200); do [ -s "$T/probe.log" ] && break; sleep 0.05; done
# window T0 T1: sets WORST (whole ms), MEDIAN, SAMPLES of the listings in it
window() {
	local v
	v=($(awk -v a="$1" -v b="$2" '$1 >= a && $1 <= b { print $2 }' "$T/probe.log" | sort -n))
	SAMPLES=${#v[@]}
	if [ "$SAMPLES" = 0 ]; then WORST=0 MEDIAN=0; return; fi
	WORST=${v[SAMPLES - 1]%.*}
	MEDIAN=${v[SAMPLES / 2]}
}

# expect FLASH_BEFORE OFFSET FILE OUT: the flash with FILE at OFFSET
expect() { cp "$1" "$4" && dd if="$3" of="$4" bs=4096 seek=$(($2 / 4096)) conv=notrunc status=none; }

# write_flow NAME OFFSET FILE CMD...: run a tool that should flash FILE
# at OFFSET of device t
write_flow() {
	local name=$1 off=$2 file=$3; shift 3
	local try
	cp "$T/t.flash" "$T/before.flash"
	for try in 1 2 3; do
		local t0=$(ms_now)
		"$@" >/dev/null 2>"$T/err"
		local rc=$? t1=$(ms_now)
		sleep 0.1   # a listing blocked until the end finishes after it
		window "$t0" "$(ms_now)"
		echo "# $name: $((t1 - t0)) ms; listing worst $WORST ms, median $MEDIAN ms ($SAMPLES listings)"
		[ "$try" = 1 ] && echo "$name $WORST $MEDIAN $SAMPLES" >>"$LAT"
		# a listing held by the kernel's folder lock waits for the rest of
		# the flash, every time; a scheduler hiccup on a loaded machine
		# does not repeat: one more run of the same tool tells them apart
		[ "$WORST" -lt 100 ] || [ "$try" = 3 ] && break
		echo "# $name: again, to tell a blocked listing from the machine's load"
		# the chip holds the file now, and a run writing the same bytes
		# again is quick (espfs skips what the chip already holds): the
		# region goes back to what it held, so the next run flashes too
		dd if="$T/before.flash" of="$D/flash.bin" bs=4096 skip=$((off / 4096)) seek=$((off / 4096)) \
			count=$((($(stat -c %s "$file") + 4095) / 4096)) conv=notrunc status=none
		# and a flashed file still listed (for 2 s) is no longer taken by
		# rsync's quick check (same size and mtime) for the chip's bytes
		wait_clean "$D"
	done
	if [ $rc = 0 ]; then ok "$name: exit 0"; else nok "$name: exit $rc ($(head -c 300 "$T/err" | tr '\n' ' '))"; fi
	expect "$T/before.flash" "$off" "$file" "$T/expect.flash"
	check "$name: the flash holds exactly the file" cmp -s "$T/expect.flash" "$T/t.flash"
	check "$name: nothing left in the folder" wait_clean "$D"
	check "$name: the folder lists within 100 ms during the flash" [ "$WORST" -lt 100 ]
}

# refused_flow NAME CMD...: a tool that removes flash.bin first fails,
# nothing changes, and state says why
refused_flow() {
	local name=$1; shift
	cp "$T/t.flash" "$T/before.flash"
	if "$@" >/dev/null 2>"$T/err"; then nok "$name fails (it removes flash.bin first)"
	else ok "$name fails (it removes flash.bin first)"; fi
	echo "# $name said: $(head -c 200 "$T/err" | tr '\n' ' ')"
	check "$name: the flash is unchanged" cmp -s "$T/before.flash" "$T/t.flash"
	check "$name: state says flash.bin cannot be removed" grep -q "cannot be removed" "$D/state"
	wait_clean "$D"
}

# --- onto flash.bin and into the folder (device t, timing model)
write_flow "cp onto flash.bin" 0 "$T/fA.bin" cp "$T/fA.bin" "$D/flash.bin"
write_flow "cp into the folder" $APP "$T/app1.bin" cp "$T/app1.bin" "$D/"
write_flow "dd bs=4k onto flash.bin" 0 "$T/fB.bin" dd if="$T/fB.bin" of="$D/flash.bin" bs=4k
if have gio; then
	write_flow "gio copy onto flash.bin" 0 "$T/fB.bin" gio copy "$T/fB.bin" "$D/flash.bin"
	write_flow "gio copy into the folder" $APP "$T/app2.bin" gio copy "$T/app2.bin" "$D/"
else
	for x in 1 2; do skip "gio" "gio is not installed (libglib2.0-bin)"; done
fi
if have kioclient5; then
	write_flow "kioclient5 copy onto flash.bin" 0 "$T/fA.bin" kioclient5 --noninteractive --overwrite copy "$T/fA.bin" "$D/flash.bin"
	write_flow "kioclient5 copy into the folder" $APP "$T/app1.bin" kioclient5 --noninteractive copy "$T/app1.bin" "$D/"
else
	skip "kioclient5" "kioclient5 is not installed (KDE's kio)"
fi
if have rsync; then
	write_flow "rsync onto flash.bin" 0 "$T/fA.bin" rsync "$T/fA.bin" "$D/flash.bin"
	write_flow "rsync into the folder" $APP "$T/app1.bin" rsync "$T/app1.bin" "$D/"
	write_flow "rsync -a into the folder" $APP "$T/app2.bin" rsync -a "$T/app2.bin" "$D/app1.bin"
	write_flow "rsync -a again (delta basis)" $APP "$T/app1.bin" rsync -a --no-whole-file "$T/app1.bin" "$D/app1.bin"
	write_flow "rsync --progress --partial onto flash.bin" 0 "$T/fB.bin" rsync --progress --partial "$T/fB.bin" "$D/flash.bin"
	write_flow "rsync --remove-source-files" $APP "$T/app2.bin" \
		bash -c "cp '$T/app2.bin' '$T/moved.bin' && rsync --remove-source-files '$T/moved.bin' '$D/'"
	check "rsync --remove-source-files removed the source" [ ! -e "$T/moved.bin" ]
	write_flow "rsync --inplace onto flash.bin" 0 "$T/fA.bin" rsync --inplace "$T/fA.bin" "$D/flash.bin"
	# raw data cannot show it is cut, as an image can: it is flashed at
	# rsync's close too (an interrupted rsync's close never flashes), so
	# the rename, during which the kernel holds the folder, is quick
	head -c 131072 /dev/urandom >"$T/raw.bin"
	head -c 131072 /dev/urandom >"$T/dump.bin"
	write_flow "rsync raw data into the folder" $((0x80000)) "$T/raw.bin" rsync "$T/raw.bin" "$D/blob@0x80000.bin"
	write_flow "rsync a flash dump onto flash.bin" 0 "$T/dump.bin" rsync "$T/dump.bin" "$D/flash.bin"
else
	skip "rsync" "rsync is not installed"
fi
if have pv; then
	write_flow "pv > flash.bin" 0 "$T/fB.bin" bash -c "pv -q '$T/fB.bin' >'$D/flash.bin'"
	# pv never closes its stdout: the kernel closes it as pv exits 0,
	# which is the end of its copy (a killed writer's is not)
	head -c 131072 /dev/urandom >"$T/pvraw.bin"
	write_flow "pv > a file in the folder" $((0x80000)) "$T/pvraw.bin" \
		bash -c "pv -q '$T/pvraw.bin' >'$D/pv@0x80000.bin'"
else
	for x in 1 2; do skip "pv" "pv is not installed"; done
fi
if have curl; then
	write_flow "curl file:// -o flash.bin" 0 "$T/fA.bin" curl -sS "file://$T/fA.bin" -o "$D/flash.bin"
else
	skip "curl" "curl is not installed"
fi
write_flow "python shutil.copyfile onto flash.bin" 0 "$T/fB.bin" \
	python3 -c 'import shutil, sys; shutil.copyfile(sys.argv[1], sys.argv[2])' "$T/fB.bin" "$D/flash.bin"
write_flow "python shutil.copy into the folder" $APP "$T/app1.bin" \
	python3 -c 'import shutil, sys; shutil.copy(sys.argv[1], sys.argv[2])' "$T/app1.bin" "$D/"
mkdir -p "$T/tar" && cp "$T/fA.bin" "$T/tar/flash.bin" && tar -C "$T/tar" -cf "$T/fw.tar" flash.bin
write_flow "tar -x --overwrite of an archive holding flash.bin" 0 "$T/fA.bin" tar -x --overwrite -f "$T/fw.tar" -C "$D"
refused_flow "tar -x" tar -x -f "$T/fw.tar" -C "$D"
refused_flow "install" install -m 644 "$T/fB.bin" "$D/flash.bin"

# --- backups (device q, no timing model)
check "cp the factory image onto q" cp "$T/fA.bin" "$Q/flash.bin"
# back_flow NAME OUT CMD...: a tool that copies flash.bin to OUT
back_flow() {
	local name=$1 out=$2; shift 2
	rm -f "$out"
	if "$@" >/dev/null 2>"$T/err"; then ok "backup with $name: exit 0"
	else nok "backup with $name ($(head -c 200 "$T/err" | tr '\n' ' '))"; fi
	[ "${out%.tar}" = "$out" ] && check "backup with $name: the copy is the flash" cmp -s "$out" "$T/q.flash"
}
back_flow "cp" "$T/b.bin" cp "$Q/flash.bin" "$T/b.bin"
back_flow "cat" "$T/b.bin" bash -c "cat '$Q/flash.bin' >'$T/b.bin'"
back_flow "dd bs=4k" "$T/b.bin" dd if="$Q/flash.bin" of="$T/b.bin" bs=4k
have pv && back_flow "pv" "$T/b.bin" bash -c "pv -q '$Q/flash.bin' >'$T/b.bin'"
have rsync && back_flow "rsync" "$T/b.bin" rsync "$Q/flash.bin" "$T/b.bin"
have curl && back_flow "curl file://" "$T/b.bin" curl -sS "file://$Q/flash.bin" -o "$T/b.bin"
have gio && back_flow "gio copy" "$T/b.bin" gio copy "$Q/flash.bin" "$T/b.bin"
back_flow "python shutil.copyfile" "$T/b.bin" \
	python3 -c 'import shutil, sys; shutil.copyfile(sys.argv[1], sys.argv[2])' "$Q/flash.bin" "$T/b.bin"
back_flow "tar -c" "$T/b.tar" tar -C "$Q" -cf "$T/b.tar" flash.bin
check "backup with tar -c: the archive holds the flash" cmp -s <(tar -xOf "$T/b.tar" flash.bin) "$T/q.flash"

touch "$T/probe.stop"
wait $PROBE
echo "# listing latency during the flashes (ms), first run of each tool: worst median samples"
sed 's/^/#   /' "$LAT"
done_testing
