#!/usr/bin/env python3
"""Counts test cases from meson's testlog.json: each TAP 'ok'/'not ok' line is
one case; a program that failed without reporting a failing case counts as one
failed case itself.  Prints failures, then 'N passed, N failed, N skipped'."""
import json, re, sys

passed = failed = skipped = 0
failures = []
with open(sys.argv[1]) as f:
    for line in f:
        t = json.loads(line)
        out = t.get("stdout", "") or ""
        cases = re.findall(r"^(ok|not ok)\b[^\n]*", out, re.M)
        lines = re.findall(r"^(?:ok|not ok)\b.*$", out, re.M)
        prog_failed = t["result"] not in ("OK", "SKIP", "EXPECTEDFAIL")
        case_failed = 0
        for l in lines:
            if l.startswith("not ok"):
                failed += 1; case_failed += 1
                failures.append(f"{t['name']}: {l}")
            elif "# SKIP" in l:
                skipped += 1
            else:
                passed += 1
        if not lines and t["result"] == "SKIP":
            skipped += 1
        elif prog_failed and case_failed == 0:
            failed += 1
            failures.append(f"{t['name']}: program result {t['result']} (rc {t.get('returncode')})")
            tail = "\n".join(out.splitlines()[-15:] + (t.get("stderr") or "").splitlines()[-15:])
            failures.append(tail)
for f in failures:
    print("FAILED", f)
print(f"{passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed else 0)
