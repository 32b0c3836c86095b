#!/bin/bash
# console: what the application prints, streamed; what is written to it
# reaches the application (the simulator's echo mode plays a REPL).
# cat follows it, tail -f follows it across a cp (the new firmware's boot
# log after the reset), poll() wakes, O_NONBLOCK gets EAGAIN, two readers
# each get the stream, a late reader gets the last 64 KiB, and a waiting
# read ends on a signal (FUSE interrupt).
source "$(dirname "$0")/lib.sh" "$@"
need_fuse
READERS=()
trap 'for p in "${READERS[@]}"; do kill "$p" 2>/dev/null; done; cleanup' EXIT

start_espfs --sim esp32,app,echo,name=c0 || { echo "Bail out! espfs did not mount"; exit 1; }
D=$MNT/c0
C=$D/console
check "console is in the device folder" [ -f "$C" ]

# The attach resets the chip into its application: its boot log is there.
timeout 3 cat "$C" >"$T/first" 2>"$T/first.err"
rc=$?
check "cat keeps following (still reading when timeout stops it: $rc)" [ "$rc" = 124 ]
check "the boot log is in console (ROM line and app start)" \
	bash -c "grep -q '^rst:' '$T/first' && grep -q 'cpu_start: Project name:     espfs-demo' '$T/first'"
check "no Improv packet bytes in console" bash -c "! grep -qa IMPROV '$T/first'"
check "cat saw a periodic line arrive while it waited" grep -q 'espfs-demo: running' "$T/first"
sz=$(stat -c %s "$C")
check "the size is what the device printed so far ($sz bytes)" [ "$sz" -ge "$(stat -c %s "$T/first")" ]

# A waiting read ends on a signal: the interrupt reaches espfs (SIGINT is
# ignored by background jobs of a script, so SIGTERM).
cat "$C" >/dev/null &
cp_pid=$!
sleep 0.5
kill -TERM $cp_pid
t0=$(ms_now)
for _ in $(seq 50); do kill -0 $cp_pid 2>/dev/null || break; sleep 0.1; done
if kill -0 $cp_pid 2>/dev/null; then nok "a waiting read ends on SIGTERM"; kill -9 $cp_pid; else ok "a waiting read ends on SIGTERM ($(( $(ms_now) - t0 )) ms)"; fi
wait $cp_pid 2>/dev/null

# O_NONBLOCK at the end: EAGAIN; poll() wakes when the next line comes.
python3 - "$C" >"$T/poll.out" 2>&1 <<'EOF'
import os, select, sys, time, errno
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_NONBLOCK)
while True:
    try:
        b = os.read(fd, 65536)
    except OSError as e:
        print("eagain" if e.errno == errno.EAGAIN else "error %d" % e.errno)
        break
    if not b:
        print("eof"); break
p = select.poll(); p.register(fd, select.POLLIN)
t = time.time(); ev = p.poll(6000)
print("poll", ev and ev[0][1] & select.POLLIN and "in" or "none", round(time.time() - t, 2))
b = os.read(fd, 65536)
print("after", len(b))
EOF
check "O_NONBLOCK read at the end: EAGAIN" grep -qx eagain "$T/poll.out"
check "poll() reports POLLIN when the application prints" grep -q '^poll in' "$T/poll.out"
check "and the read after it has data" bash -c "awk '/^after/ {exit !(\$2 > 0)}' '$T/poll.out'"
sed 's/^/# /' "$T/poll.out"

# Writes reach the application (echo mode).
echo "hello-espfs-console" >"$C"
check "echo into console is accepted" [ $? = 0 ]
found=no
for _ in $(seq 30); do
	if timeout 0.5 cat "$C" 2>/dev/null | grep -q hello-espfs-console; then found=yes; break; fi
done
check "the application got it (echoed back into console)" [ $found = yes ]

# The console's rate per device: state "console-baud N", shown in info.json.
check "state takes console-baud 74880" bash -c "echo console-baud 74880 > '$D/state'"
check "info.json: console.baud 74880" [ "$(json_get "$D/info.json" console.baud)" = 74880 ]
if bash -c "echo console-baud fast > '$D/state'" 2>/dev/null; then nok "console-baud fast is refused"; else ok "console-baud fast is refused"; fi
check "back to 115200" bash -c "echo console-baud 115200 > '$D/state'"
echo "after-rate-marker" >"$C"
found=no
for _ in $(seq 30); do
	if timeout 0.5 cat "$C" 2>/dev/null | grep -q after-rate-marker; then found=yes; break; fi
done
check "input reaches the application at 115200 again" [ $found = yes ]
check "info.json: console.bytes is the file's size or more" \
	[ "$(json_get "$D/info.json" console.bytes)" -ge "$(stat -c %s "$C")" ]

# Two readers at once each get the stream.
cat "$C" >"$T/r1" & READERS+=($!)
cat "$C" >"$T/r2" & READERS+=($!)
sleep 0.5
echo "two-readers-marker" >"$C"
sleep 2.5
kill "${READERS[@]}" 2>/dev/null; wait "${READERS[@]}" 2>/dev/null; READERS=()
check "reader 1 got the new input" grep -q two-readers-marker "$T/r1"
check "reader 2 got it too" grep -q two-readers-marker "$T/r2"

# tail -f across a cp: one line says a job has the port, then the new
# firmware's boot log follows after the reset back to the application.
mkimg esp32 factory "$T/new.bin" console-new
tail -n 3 -f -s 0.1 "$C" >"$T/tail" & READERS+=($!)
sleep 0.5
check "cp a new firmware" cp "$T/new.bin" "$D/flash.bin"
t0=$(ms_now)
seen=
for _ in $(seq 100); do
	if grep -q 'Project name:     console-new' "$T/tail"; then seen=$(( $(ms_now) - t0 )); break; fi
	sleep 0.05
done
kill "${READERS[@]}" 2>/dev/null; wait "${READERS[@]}" 2>/dev/null; READERS=()
check "tail -f shows the job's line" grep -q '^\[espfs\] flash.bin has the port' "$T/tail"
# the reset comes 0.7 s after the last write (the loader's idle time), the
# boot log ~0.2 s later, tail looks every 0.1 s: ~1 s; 4 s for a loaded machine
check "tail -f shows the new firmware's boot log after the cp (${seen:-never} ms after cp returned)" \
	[ -n "$seen" ] && [ "$seen" -lt 4000 ]
check "the job line comes before the new boot log" \
	bash -c "awk '/has the port/ {a=NR} /console-new/ && !b {b=NR} END {exit !(a && b > a)}' '$T/tail'"
echo "# tail -f after cp:"; sed 's/^/#   /' "$T/tail" | head -20

# A reader that comes late gets the last 64 KiB first: push >64 KiB through
# the echo, then a new reader's first bytes are the newest 65536.
python3 - "$C" <<'EOF'
import os, sys, time, errno
fd = os.open(sys.argv[1], os.O_WRONLY)
line = b"".join(b"%05d-fill-line-for-the-console-ring-........................\n" % i for i in range(1200))
off = 0
while off < len(line):
    try:
        off += os.write(fd, line[off:off + 2048])
    except OSError as e:
        if e.errno != errno.EBUSY: raise
        time.sleep(0.02)
EOF
for _ in $(seq 50); do
	timeout 0.3 cat "$C" 2>/dev/null | grep -q '^01199-fill' && break
done
timeout 1 cat "$C" >"$T/late" 2>/dev/null
sz=$(stat -c %s "$C")
lsz=$(stat -c %s "$T/late")
check "console has grown past 64 KiB ($sz)" [ "$sz" -gt 65536 ]
check "the late reader got at least the kept 64 KiB ($lsz bytes)" [ "$lsz" -ge 65536 ]
check "... but not what is older (the first boot log is gone)" bash -c "! grep -q 'Project name:     espfs-demo' '$T/late'"
check "... and it ends with the newest input" grep -q '^01199-fill' "$T/late"
# tail reads near the end by offset: its last line is the newest one
check "tail -n1 (seek near the end) reads the newest line" \
	bash -c "timeout 2 tail -n 1 '$C' | grep -q 'running\|01199-fill'"

done_testing
