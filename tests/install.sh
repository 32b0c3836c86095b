#!/bin/bash
# meson install (into a --destdir): the programs, both man pages (which
# man renders without warnings), the udev rule and the systemd user unit
# pointing at the installed espfs.
BUILD=${ESPFS_BUILD:?}
T=$(mktemp -d /tmp/espfs-install.XXXXXX)
trap 'rm -rf "$T"' EXIT
n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
nok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; }
check() { local name=$1; shift; if "$@"; then ok "$name"; else nok "$name"; fi; }

if ! meson install --no-rebuild -C "$BUILD" --destdir "$T" --quiet >"$T.log" 2>&1; then
	echo "not ok 1 - meson install --destdir"; sed 's/^/# /' "$T.log"; rm -f "$T.log"; echo 1..1; exit 1
fi
rm -f "$T.log"
ok "meson install --destdir"
prefix=$(meson introspect --buildoptions "$BUILD" | python3 -c 'import json,sys
print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "prefix"))')
R=$T$prefix
check "espfs in bin" [ -x "$R/bin/espfs" ]
check "espsim in bin" [ -x "$R/bin/espsim" ]
check "espfs.1 in the man path" [ -f "$R/share/man/man1/espfs.1" ]
check "espsim.1 in the man path" [ -f "$R/share/man/man1/espsim.1" ]
for p in espfs espsim; do
	if command -v groff >/dev/null; then
		w=$(groff -man -ww -z "$R/share/man/man1/$p.1" 2>&1)
		check "$p.1 renders without warnings${w:+: $w}" [ -z "$w" ]
	fi
	if command -v man >/dev/null; then
		check "man -l $p.1 shows its NAME" bash -c "MANWIDTH=80 man -l '$R/share/man/man1/$p.1' 2>/dev/null | grep -q '^NAME'"
	fi
done
rules=$(find "$T" -name 70-espfs.rules)
check "the udev rule is installed ($rules)" [ -n "$rules" ]
case "$rules" in
$T/usr/lib/udev/rules.d/*|$T/lib/udev/rules.d/*|$T/etc/udev/rules.d/*) ok "in a directory udev reads" ;;
*) nok "in a directory udev reads" ;;
esac
for id in '"303a"' '"10c4", ATTRS{idProduct}=="ea60"' '7523|5523|55d4|55d3' '6001|6010|6011|6014|6015'; do
	check "the rule covers $id" grep -qF "$id" "$rules"
done
check "the rule tags uaccess" grep -q 'TAG+="uaccess"' "$rules"
check "the rule keeps ModemManager off" grep -q 'ENV{ID_MM_DEVICE_IGNORE}="1"' "$rules"
if command -v udevadm >/dev/null && udevadm verify --help >/dev/null 2>&1; then
	check "udevadm verify accepts the rule" udevadm verify "$rules"
fi
unit=$(find "$T" -path '*systemd/user/espfs.service')
check "the systemd user unit is installed ($unit)" [ -n "$unit" ]
check "it runs the installed espfs" grep -q "^ExecStart=$prefix/bin/espfs -f %h/esp$" "$unit"
check "it is installed, not enabled (no wants link)" bash -c "! find '$T' -path '*default.target.wants*' | grep -q ."
if command -v systemd-analyze >/dev/null; then
	v=$(systemd-analyze --user verify "$unit" 2>&1 | grep -v -e 'Failed to' -e 'bus' || true)
	check "systemd-analyze verify has nothing to say${v:+: $v}" [ -z "$v" ]
fi
echo "1..$n"
[ $failed = 0 ]
