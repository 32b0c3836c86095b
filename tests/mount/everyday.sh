#!/bin/bash
# Everyday use (issue 12): paths on the command line mean what they mean
# where espfs was started, even once it daemonized (a relative --stub-dir
# used to be looked up from "/" and the ROM loader ran without a word);
# a --stub-dir without stubs is refused; info.json names the stub; mount(8)
# through mount.fuse3 works; an ordinary user mounts and flashes.
source "$(dirname "$0")/lib.sh" "$@"
need_fuse
[ -n "$STUB_DIR" ] || skip_all "no stub flasher JSON (run tests/deps.sh)"
BIN=$(cd "$(dirname "$ESPFS_BIN")" && pwd)/$(basename "$ESPFS_BIN")
USER_T=espfs-test
ACL_SET=
FUSE_MODE=
U=
finish() {
	mountpoint -q "$MNT" 2>/dev/null && { fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT"; }
	[ -n "$ACL_SET" ] && setfacl -x "u:$USER_T" /dev/fuse 2>/dev/null
	[ -n "$FUSE_MODE" ] && chmod "$FUSE_MODE" /dev/fuse
	if [ -n "$U" ]; then
		mountpoint -q "$U/esp" 2>/dev/null && fusermount3 -u "$U/esp"
		sleep 0.3
		rm -rf "$U"
	fi
	cleanup
}
trap finish EXIT

wait_mount() {
	for _ in $(seq 300); do
		[ -f "$MNT/$1/chip" ] && return 0
		sleep 0.1
	done
	return 1
}
unmount_wait() {
	fusermount3 -u "$MNT" 2>/dev/null || umount "$MNT" 2>/dev/null
	for _ in $(seq 100); do mountpoint -q "$MNT" || break; sleep 0.1; done
	sleep 0.3  # the daemon exits after the unmount
}

# 1. A relative --stub-dir, espfs in the background (daemonized: it changes
#    to "/"), an ESP32-C3 whose ROM cannot read flash without the stub.
#    (run from the stub directory's parent: "stub_flasher" means nothing
#    from "/")
mkimg esp32c3 factory "$T/c3.bin"
SD=$(realpath "$STUB_DIR")
(cd "$SD/.." && "$BIN" --no-scan --sim "esp32c3,name=c3,flash=$T/c3.flash" \
	--stub-dir "$(basename "$SD")" "$MNT")
check "espfs daemonized with a relative --stub-dir" wait_mount c3
check "info.json: the stub was loaded" [ "$(json_get "$MNT/c3/info.json" stub.status)" = loaded ]
f=$(json_get "$MNT/c3/info.json" stub.file 2>/dev/null)
check "info.json names the stub file ($f)" [ "$f" = "$SD/esp32c3.json" ]
check "state says stub" grep -q '^stub' "$MNT/c3/state"
check "a cp to a C3 works (needs the stub's reads)" cp "$T/c3.bin" "$MNT/c3/flash.bin"
check "the flash file holds it" cmp -n "$(stat -c %s "$T/c3.bin")" "$T/c3.bin" "$T/c3.flash"
unmount_wait

# 2. No stub anywhere it looks (--stub-dir given, nothing for the chip):
#    info.json says so and where it searched.
mkdir -p "$T/only32"
cp "$STUB_DIR/esp32.json" "$T/only32/"
"$BIN" -f --no-scan --sim esp32c3,name=c3 --stub-dir "$T/only32" "$MNT" >"$LOG" 2>&1 &
ESPFS_PID=$!
check "mount with a stub dir lacking the C3's stub" wait_mount c3
check "info.json: stub not found" [ "$(json_get "$MNT/c3/info.json" stub.status)" = "not found" ]
check "info.json: where it searched" [ "$(json_get "$MNT/c3/info.json" stub.searched)" = "$T/only32" ]
check "the log says the ROM loader runs and why" grep -q "no stub flasher for ESP32-C3 (searched $T/only32)" "$LOG"
stop_espfs

# 3. A --stub-dir with no stub for any chip is refused at start.
mkdir -p "$T/empty"
"$BIN" -f --no-scan --sim esp32 --stub-dir "$T/empty" "$MNT" >"$T/refuse.log" 2>&1
rc=$?
check "a --stub-dir without stubs is refused (exit $rc)" [ "$rc" = 2 ]
check "... saying where stubs come from" grep -q "holds no stub flasher.*esptool (pip install esptool" "$T/refuse.log"
check "... and nothing was mounted" bash -c "! mountpoint -q '$MNT'"

# 4. mount(8) through mount.fuse3, which runs "espfs SOURCE MOUNTPOINT -o
#    opts".  "-t fuse.espfs none" finds espfs in the standard PATH (an
#    installed espfs); the built one is named with the "-t fuse PROG#SOURCE"
#    form, which mount.fuse3 runs the same way.
if command -v mount.fuse3 >/dev/null; then
	if mount -t fuse "$BIN#none" "$MNT" -o nosuid,nodev 2>"$T/mount.err"; then
		ok "mount -t fuse espfs#none MNT (mount.fuse3)"
		check "the root is served (by-mac is there)" [ -d "$MNT/by-mac" ]
		check "the mount is espfs's" bash -c "grep -q '^espfs $MNT fuse.espfs ' /proc/mounts"
		umount "$MNT"
		check "umount ends it" bash -c "! mountpoint -q '$MNT'"
	else
		nok "mount -t fuse espfs#none MNT ($(head -c 200 "$T/mount.err"))"
	fi
else
	ok "# SKIP mount.fuse3 is not installed"
fi

# 5. An ordinary user: mounts, reads, flashes, watches the console.
skip_user=
if [ "$(id -u)" != 0 ]; then
	skip_user="not root: cannot create the test user"
elif ! command -v useradd >/dev/null || ! command -v runuser >/dev/null; then
	skip_user="useradd/runuser missing"
elif [ ! -u "$(command -v fusermount3)" ]; then
	skip_user="fusermount3 is not setuid root"
fi
if [ -z "$skip_user" ] && ! id "$USER_T" >/dev/null 2>&1; then
	useradd --system --no-create-home --shell /usr/sbin/nologin "$USER_T" 2>/dev/null ||
		skip_user="useradd failed"
fi
if [ -z "$skip_user" ] && ! runuser -u "$USER_T" -- test -r /dev/fuse -a -w /dev/fuse; then
	# desktop systems have /dev/fuse 0666; a container may not: lend it
	# to the test user for this test only (an ACL, removed at the end)
	if command -v setfacl >/dev/null && setfacl -m "u:$USER_T:rw" /dev/fuse 2>/dev/null; then
		ACL_SET=yes
	else
		# no ACLs: the desktop default (0666) for the test's duration
		FUSE_MODE=$(stat -c %a /dev/fuse)
		chmod 0666 /dev/fuse || skip_user="/dev/fuse is not open to other users ($FUSE_MODE)"
	fi
fi
# the test user must reach the programs and its mount point
if [ -z "$skip_user" ] && ! runuser -u "$USER_T" -- test -x "$BIN"; then
	skip_user="the build directory is not readable by other users"
fi
if [ -n "$skip_user" ]; then
	ok "# SKIP an ordinary user mounts: $skip_user"
else
	U=$(mktemp -d /tmp/espfs-user.XXXXXX)
	chown "$USER_T" "$U"
	mkimg esp32 factory "$U/f.bin" user-built
	chmod 644 "$U/f.bin"
	runuser -u "$USER_T" -- mkdir "$U/esp"
	runuser -u "$USER_T" -- "$BIN" --no-scan --sim "esp32,app,name=u0,flash=$U/u0.flash" \
		--stub-dir "$STUB_DIR" "$U/esp" 2>"$U/err"
	ok_mount=
	# (root does not see into a user's FUSE mount without allow_other)
	for _ in $(seq 300); do runuser -u "$USER_T" -- test -f "$U/esp/u0/chip" && { ok_mount=yes; break; }; sleep 0.1; done
	check "an ordinary user ($USER_T) mounts espfs" [ "$ok_mount" = yes ]
	[ "$ok_mount" = yes ] || sed "s/^/# /" "$U/err"
	check "the mount is the user's" bash -c "grep ' $U/esp fuse.espfs ' /proc/mounts | grep -q 'user_id=$(id -u "$USER_T")'"
	check "the user reads chip" [ "$(runuser -u "$USER_T" -- cat "$U/esp/u0/chip")" = ESP32 ]
	check "the user flashes" runuser -u "$USER_T" -- cp "$U/f.bin" "$U/esp/u0/flash.bin"
	got=
	for _ in $(seq 60); do
		runuser -u "$USER_T" -- timeout 0.5 cat "$U/esp/u0/console" 2>/dev/null | grep -q 'Project name:     user-built' && { got=yes; break; }
	done
	check "the user's console shows the new firmware booting" [ "$got" = yes ]
	runuser -u "$USER_T" -- fusermount3 -u "$U/esp"
	check "the user unmounts" bash -c "! mountpoint -q '$U/esp'"
fi
done_testing
