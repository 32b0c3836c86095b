#!/bin/sh
# Installs what espfs needs to build, test and run on Debian 12 (as root).
# Safe to re-run: apt-get and npm skip what is already there.
set -e
PKGS="meson ninja-build pkg-config gcc libfuse3-dev fuse3 libserialport-dev libcjson-dev
      zlib1g-dev libdeflate-dev libmd-dev python3 nodejs npm rsync pv libglib2.0-bin
      clang libfuzzer-14-dev
      libglib2.0-0 libfdt1 libgcrypt20 zlib1g"
# (clang, libfuzzer: tests/fuzz; the last line: what ../shared/qemu's QEMU
# needs to run, for tests/qemu)
missing=""
for p in $PKGS; do
	dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
# node and npm may come from elsewhere than Debian: accept working binaries
command -v node >/dev/null 2>&1 && missing=$(echo "$missing" | sed 's/ nodejs//')
command -v npm >/dev/null 2>&1 && missing=$(echo "$missing" | sed 's/ npm//')
if [ -n "$missing" ]; then
	echo "installing:$missing"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
# Reference clients for the interop tests and the stub flasher JSON files
# (pinned by tests/interop/package-lock.json).
here=$(cd "$(dirname "$0")" && pwd)
if [ -f "$here/interop/package.json" ] && [ ! -d "$here/interop/node_modules" ]; then
	(cd "$here/interop" && npm ci --no-audit --no-fund --loglevel=error) ||
		echo "warning: npm install failed; interop tests will skip" >&2
fi
exit 0
