#!/bin/bash
# wifi: `echo ssid:pass > wifi` provisions through Improv and reports the
# result in write() (bash ignores close errors); the password appears in no
# file and no log.
source "$(dirname "$0")/lib.sh" "$@"
need_fuse

PASS='s3cret word:with-colon'
start_espfs --sim "esp32,app,improv,name=dev,flash=$T/app.flash,wifi=Home Net:$PASS" ||
	{ echo "Bail out! espfs did not mount"; exit 1; }
D=$MNT/dev

check "wifi is mode 0600" [ "$(stat -c %a "$D/wifi")" = 600 ]
check "wifi starts unprovisioned (Improv state at attach)" [ "$(cat "$D/wifi")" = unprovisioned ]
echo "# info: $(tr -d '\n' <"$D/info.json" | head -c 400)"
if echo "Home Net:$PASS" >"$D/wifi" 2>"$T/err"; then ok "echo 'Home Net:<pass with :>' > wifi exits 0"
else nok "echo 'Home Net:<pass with :>' > wifi exits 0 ($(cat "$T/err"); state: $(cat "$D/state"))"; fi
check "wifi shows the SSID" grep -q "Home Net" "$D/wifi"
check "wifi shows connected" grep -q "^connected" "$D/wifi"

if echo "Home Net:wrong-password" >"$D/wifi" 2>"$T/err"; then nok "wrong password fails"; else ok "wrong password fails"; fi
echo "# echo said: $(cat "$T/err")"
echo "# state: $(cat "$D/state")"
check "state tells the wrong password failed" grep -q "error" "$D/state"

if echo "no-colon-here" >"$D/wifi" 2>"$T/err"; then nok "malformed line fails"; else ok "malformed line fails"; fi
check "malformed line: Invalid argument" grep -q "Invalid argument" "$T/err"
check "state explains the malformed line" grep -q "ssid:password" "$D/state"
if echo ":nopass" >"$D/wifi" 2>/dev/null; then nok "empty SSID fails"; else ok "empty SSID fails"; fi
if echo "$(printf 'x%.0s' $(seq 33)):pw" >"$D/wifi" 2>/dev/null; then nok "33-byte SSID fails"; else ok "33-byte SSID fails"; fi

# JSON form, for SSIDs that contain ':'
if printf '{"ssid":"Home Net","password":"%s"}' "$PASS" >"$D/wifi" 2>"$T/err"; then ok "JSON form accepted"
else nok "JSON form accepted ($(cat "$T/err"))"; fi

# the secret is nowhere to be read
found=0
for f in "$D"/chip "$D"/mac "$D"/state "$D"/wifi "$D"/info.json "$LOG"; do
	grep -qF "$PASS" "$f" && { echo "# password found in $f"; found=1; }
	grep -qF "wrong-password" "$f" && { echo "# wrong password found in $f"; found=1; }
done
check "the password appears in no file and no log" [ $found = 0 ]
done_testing
