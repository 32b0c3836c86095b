#!/bin/sh
# Builds the libFuzzer targets with clang into OUT (default: the meson
# build dir's fuzz/), apart from the gcc ASan build: clang
# -fsanitize=fuzzer,address,undefined over the parser sources.
#   tests/fuzz/build.sh SRC_DIR OUT_DIR
# Exits 77 (skip) when clang or its libFuzzer runtime is missing
# (Debian: clang, libfuzzer-14-dev; tests/deps.sh installs them).
set -e
src=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
out=${2:-$src/build-test/fuzz}
CC=${FUZZ_CC:-clang}
TARGETS="slip loader improv improv_line image partition stub attrs closer"
mkdir -p "$out"
command -v "$CC" >/dev/null 2>&1 || { echo "SKIP: $CC not installed (apt-get install clang libfuzzer-14-dev)"; exit 77; }
# one build at a time (meson runs the fuzz tests one by one, but be safe)
exec 9>"$out/.lock"
flock 9
cat > "$out/probe.c" <<'P'
#include <stdint.h>
#include <stddef.h>
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }
P
if ! "$CC" -fsanitize=fuzzer "$out/probe.c" -o "$out/probe" 2>"$out/probe.log"; then
	echo "SKIP: $CC cannot link -fsanitize=fuzzer (libFuzzer runtime missing: $(head -c 200 "$out/probe.log"))"
	exit 77
fi
SOURCES="src/common/chip.c src/common/clock.c src/common/slip.c src/common/log.c src/common/text.c
	src/proto/image.c src/proto/image_classify.c src/proto/partition.c src/proto/improv_codec.c
	src/proto/loader.c src/proto/loader_link.c src/proto/loader_chip.c src/proto/loader_flash.c
	src/proto/loader_skip.c src/proto/loader_baud.c src/proto/loader_blocks.c src/proto/stub.c
	src/proto/status.c src/fs/parse.c src/fs/closer.c"
CFLAGS="-g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined
	-fno-sanitize-recover=undefined -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -std=gnu11
	-I$src/include -I$src/src/fs -I/usr/include/cjson -Wall -Wextra -Wno-unused-parameter"
objs=""
for s in $SOURCES; do
	o="$out/obj/$(echo "$s" | tr / _).o"
	mkdir -p "$out/obj"
	if [ ! -f "$o" ] || [ "$src/$s" -nt "$o" ] || [ -n "$(find "$src/include" "$src/src/proto" "$src/src/fs" -name '*.h' -newer "$o" 2>/dev/null | head -1)" ]; then
		$CC $CFLAGS -c "$src/$s" -o "$o"
	fi
	objs="$objs $o"
done
for t in $TARGETS; do
	f="$src/tests/fuzz/fuzz_$t.c"
	b="$out/fuzz_$t"
	need=0
	[ -f "$b" ] || need=1
	for x in $objs "$f"; do [ "$x" -nt "$b" ] && need=1; done
	if [ $need = 1 ]; then
		$CC $CFLAGS -fsanitize=fuzzer "$f" $objs -o "$b" -lcjson -lz -lmd -lpthread
	fi
done
echo "built: $(cd "$out" && ls fuzz_* | tr '\n' ' ')"
