#!/usr/bin/env python3
"""Collect the TAP results of every test machine's serial log and cargo test's results,
print one line per test and a final `N passed, N failed[, N skipped]` line.

Usage: summarize.py --machine NAME SERIAL_LOG TEST[,TEST...] ... --cargo NAME OUTPUT ...
Each machine lists the test binaries it must have run: a binary that is missing, did not
finish, or exited non-zero without a failing TAP line counts as a failure, so a machine that
never booted cannot pass by running nothing.
"""
import argparse
import re
import sys

TAP = re.compile(r"^(not ok|ok)\s+\d+\s+(.*?)(?:\s+#\s*(SKIP|XFAIL|TODO)\b\s*(.*))?$")
CARGO_RESULT = re.compile(r"^test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored")
CONSOLE_SPLAT = re.compile(r"Kernel panic|BUG:|Oops|hard LOCKUP|soft lockup|blocked for more than")
CARGO_TEST = re.compile(r"^test (\S+) \.\.\. (ok|FAILED|ignored)")


class Tally:
    def __init__(self):
        self.passed = self.failed = self.skipped = 0

    def add(self, status, name, detail=""):
        if status == "pass":
            self.passed += 1
        elif status == "fail":
            self.failed += 1
        else:
            self.skipped += 1
        mark = {"pass": "ok  ", "fail": "FAIL", "skip": "skip"}[status]
        print(f"  {mark} {name}{(' -- ' + detail) if detail else ''}")


def machine(tally, name, path, expected):
    try:
        lines = open(path, errors="replace").read().splitlines()
    except OSError as e:
        for t in expected:
            tally.add("fail", f"{name}/{t}", f"no serial log ({e.strerror})")
        return
    print(f"{name}:")
    for line in lines:
        if "@@NVMX-BOOT" in line:
            print(f"  {line[line.index('@@NVMX-BOOT') + 2:]}")
    seen, current, failed_in = {}, None, set()
    for line in lines:
        line = line.rstrip("\r")
        # Firmware escape sequences may share the first console line with a marker.
        if "@@NVMX-" in line:
            line = line[line.index("@@NVMX-"):]
        m = re.match(r"^@@NVMX-TAP-BEGIN (\S+)", line)
        if m:
            current = m.group(1)
            seen[current] = None
            continue
        m = re.match(r"^@@NVMX-TAP-END (\S+) rc=(\d+)", line)
        if m:
            seen[m.group(1)] = int(m.group(2))
            current = None
            continue
        if line.startswith("@@NVMX-ERROR"):
            tally.add("fail", f"{name}/error", line[len("@@NVMX-ERROR "):])
            continue
        if current is None:
            continue
        m = TAP.match(line)
        if not m or m.group(2).startswith("selftests:"):
            continue
        test = f"{name}/{current}/{m.group(2)}"
        if m.group(3) == "SKIP":
            tally.add("skip", test, m.group(4) or "")
        elif m.group(1) == "ok":
            tally.add("pass", test)
        else:
            tally.add("fail", test)
            failed_in.add(current)
    for t in expected:
        if t not in seen:
            tally.add("fail", f"{name}/{t}", "did not run")
        elif seen[t] is None:
            tally.add("fail", f"{name}/{t}", "did not finish: the machine stopped answering in it")
        elif seen[t] != 0 and t not in failed_in:
            tally.add("fail", f"{name}/{t}", f"exited {seen[t]} without a failing test")
    # What the kernel printed on the console when it died (a panic, an oops at the console's
    # log level, a lockup detector's report): shown whether or not the boot finished.
    for i, line in enumerate(lines):
        if CONSOLE_SPLAT.search(line):
            print(f"  kernel console ({name}):")
            for l in lines[i:i + 40]:
                print(f"    {l.rstrip()}")
            break
    block = False
    for line in lines:
        if line.startswith("@@NVMX-DMESG-BEGIN"):
            block = True
            print(f"  dmesg ({name}):")
        elif line.startswith("@@NVMX-DMESG-END"):
            block = False
        elif block:
            print(f"    {line}")


def cargo(tally, name, path):
    print(f"{name}:")
    try:
        text = open(path, errors="replace").read().splitlines()
    except OSError as e:
        tally.add("fail", f"{name}", f"no output ({e.strerror})")
        return
    counted = 0
    for line in text:
        m = CARGO_TEST.match(line)
        if m:
            counted += 1
            status = {"ok": "pass", "FAILED": "fail", "ignored": "skip"}[m.group(2)]
            tally.add(status, f"{name}/{m.group(1)}")
    totals = [tuple(map(int, m.groups())) for m in map(CARGO_RESULT.match, text) if m]
    if not totals or counted != sum(sum(t) for t in totals):
        tally.add("fail", name, "cargo test did not complete (see its output)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--machine", nargs=3, action="append", default=[],
                    metavar=("NAME", "SERIAL", "TESTS"))
    ap.add_argument("--cargo", nargs=2, action="append", default=[], metavar=("NAME", "OUTPUT"))
    args = ap.parse_args()
    tally = Tally()
    for name, path in args.cargo:
        cargo(tally, name, path)
    for name, path, tests in args.machine:
        machine(tally, name, path, [t for t in tests.split(",") if t])
    if tally.passed + tally.failed == 0:
        tally.add("fail", "summary", "no test ran")
    line = f"{tally.passed} passed, {tally.failed} failed"
    if tally.skipped:
        line += f", {tally.skipped} skipped"
    print(line)
    return 1 if tally.failed else 0


if __name__ == "__main__":
    sys.exit(main())
