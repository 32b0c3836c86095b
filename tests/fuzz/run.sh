#!/bin/sh
# One short fuzz run (the meson suite `fuzz`), or a long one by hand:
#   tests/fuzz/run.sh SRC_DIR BUILD_DIR TARGET SECONDS [libFuzzer options...]
# Builds the fuzzers first (build.sh; exit 77 = skip when clang/libFuzzer
# is missing).  Starts from the seed corpus in the repo plus what earlier
# runs found (BUILD_DIR/fuzz/corpus/TARGET); a crash leaves its input in
# BUILD_DIR/fuzz/crash-TARGET-* and fails.
src=$1 build=$2 t=$3 secs=${4:-5}
shift 4 2>/dev/null || shift $#
out=$build/fuzz
sh "$src/tests/fuzz/build.sh" "$src" "$out" >"$out.build.log" 2>&1
rc=$?
if [ $rc = 77 ]; then
	echo "1..0 # SKIP $(grep SKIP "$out.build.log" | head -1)"
	exit 77
elif [ $rc != 0 ]; then
	echo "fuzzer build failed:"; tail -20 "$out.build.log"
	exit 1
fi
mkdir -p "$out/corpus/$t"
# ASan: leaks are bugs too; UBSan stops at the first report (build flags)
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 nice "$out/fuzz_$t" -max_total_time="$secs" \
	-timeout=10 -rss_limit_mb=2048 -max_len=70000 -print_final_stats=1 \
	-artifact_prefix="$out/crash-$t-" "$@" "$out/corpus/$t" "$src/tests/fuzz/corpus/$t" 2>"$out/$t.log"
rc=$?
grep -E "^(stat::number_of_executed_units|stat::peak_rss)|Done [0-9]+ runs" "$out/$t.log" | sed 's/^/# /'
if [ $rc != 0 ]; then
	grep -A30 -E "ERROR|runtime error|SUMMARY" "$out/$t.log" | head -60
	echo "fuzz_$t failed (rc $rc); input in $(ls "$out"/crash-"$t"-* 2>/dev/null | head -1)"
	exit 1
fi
echo "fuzz_$t: no crash in ${secs} s"
