# Shared helpers for the mount tests (sourced by bash scripts).
# Usage: source lib.sh "$@"   (args: ESPFS_BIN MKIMAGE)
# Provides: T (temp dir), MNT, ok/nok/check/skip_all, start_espfs, mkimg,
# and a trap that always unmounts, kills espfs and removes T.

ESPFS_BIN=$1
MKIMAGE=$2
T=$(mktemp -d /tmp/espfs-mount.XXXXXX)
MNT=$T/mnt
LOG=$T/espfs.log
mkdir -p "$MNT"
# espfs's journals of unfinished writes (real ports, QEMU: keyed by MAC,
# which QEMU's eFuse files make the same every run) stay in this test
export XDG_STATE_HOME=$T/state
n=0
failed=0
ESPFS_PID=

cleanup() {
	if mountpoint -q "$MNT" 2>/dev/null; then
		fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT" 2>/dev/null
	fi
	if [ -n "$ESPFS_PID" ] && kill -0 "$ESPFS_PID" 2>/dev/null; then
		# espfs exits by itself once unmounted; give it a moment
		for _ in $(seq 50); do kill -0 "$ESPFS_PID" 2>/dev/null || break; sleep 0.1; done
		kill "$ESPFS_PID" 2>/dev/null
		wait "$ESPFS_PID" 2>/dev/null
	fi
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ok() { n=$((n + 1)); echo "ok $n - $1"; }
nok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; }
# check NAME CMD...: one TAP line from a command's status
check() { local name=$1; shift; if "$@"; then ok "$name"; else nok "$name"; fi; }
# TAP: a plan of 0 with SKIP and status 0 is how meson counts a skip (77
# is a skip only for the exitcode protocol)
skip_all() { echo "1..0 # SKIP $1"; exit 0; }
# Unmount, let espfs exit, and check it left no sanitizer report.
stop_espfs() {
	[ -n "$ESPFS_PID" ] || return 0
	fusermount3 -u "$MNT" 2>/dev/null
	local rc=0
	for _ in $(seq 100); do kill -0 "$ESPFS_PID" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$ESPFS_PID" 2>/dev/null; then
		nok "espfs exits after unmount"
		return
	fi
	wait "$ESPFS_PID"; rc=$?
	ESPFS_PID=
	if [ $rc = 0 ] && ! grep -qE "Sanitizer|runtime error" "$LOG"; then
		ok "espfs exited cleanly after unmount (no sanitizer reports)"
	else
		nok "espfs exited cleanly after unmount (rc $rc)"
		grep -A20 -E "Sanitizer|runtime error" "$LOG" | head -40 | sed 's/^/# /'
	fi
}

done_testing() {
	stop_espfs
	echo "1..$n"
	if [ "$failed" -gt 0 ]; then
		echo "# espfs log (tail):"; tail -n 30 "$LOG" | sed 's/^/# /'
		exit 1
	fi
	exit 0
}

need_fuse() {
	[ -e /dev/fuse ] || skip_all "/dev/fuse is missing"
	command -v fusermount3 >/dev/null || skip_all "fusermount3 is not installed"
	[ -x "$ESPFS_BIN" ] || skip_all "espfs binary not built"
}

# The stub flasher JSON files (esptool-js), when the interop deps are installed.
STUB_DIR=
if [ -n "$ESPFS_SOURCE" ] && [ -d "$ESPFS_SOURCE/tests/interop/node_modules/esptool-js/lib/targets/stub_flasher" ]; then
	STUB_DIR=$ESPFS_SOURCE/tests/interop/node_modules/esptool-js/lib/targets/stub_flasher
fi

# start_espfs ARGS...: mount in the background and wait for the tree.
start_espfs() {
	local extra=()
	[ -n "$STUB_DIR" ] && extra+=(--stub-dir "$STUB_DIR")
	"$ESPFS_BIN" -f --no-scan -v "${extra[@]}" "$@" "$MNT" >"$LOG" 2>&1 &
	ESPFS_PID=$!
	for _ in $(seq 300); do
		if mountpoint -q "$MNT" 2>/dev/null && [ -n "$(ls "$MNT" 2>/dev/null)" ]; then
			return 0
		fi
		kill -0 "$ESPFS_PID" 2>/dev/null || break
		sleep 0.1
	done
	if ! kill -0 "$ESPFS_PID" 2>/dev/null && grep -qiE "fuse|mount|permission" "$LOG"; then
		skip_all "mounting failed: $(head -c 200 "$LOG" | tr '\n' ' ')"
	fi
	return 1
}

# mkimg CHIP KIND OUT [PROJECT]
mkimg() { "$MKIMAGE" "$@"; }

# json_get FILE KEY.PATH: a value from info.json
json_get() { python3 -c 'import json,sys
v=json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."): v=v[k]
print(v)' "$1" "$2"; }

ms_now() { date +%s%3N; }

shared() { [ -n "$ESPFS_SHARED" ] && [ -f "$ESPFS_SHARED/firmware/$1" ] && echo "$ESPFS_SHARED/firmware/$1"; }
