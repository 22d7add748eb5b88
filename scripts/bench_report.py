#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""The benchmark's report (make bench; make check's smoke run): reads the @@BENCH lines of
a Bochs serial log (selftests/upstream-lib/x86/nvmx_bench.c run against kvm_intel and then
nvmx in one boot), writes results.json, results.md and ratios.svg into OUT_DIR, prints the
markdown table, and with --readme replaces the table between the bench markers of README.md.

Every metric is the median of the repeats, with the smallest and largest sample as the
spread; ratios are nvmx / kvm_intel of the medians (below 1: nvmx's path is shorter).

Usage: bench_report.py SERIAL OUT_DIR [--machine TEXT] [--readme README.md] [--publish DIR]
"""
import argparse
import datetime
import html
import json
import os
import statistics
import sys

COLUMNS = ("kvm_intel", "nvmx")

# (key, label, unit, goal for nvmx/kvm_intel or None)
METRICS = [
    ("p1_l1_cpuid_cycles", "P1 L1 CPUID exit round trip", "cycles", 0.37),
    ("p1_l1_cpuid_exits", "P1 host exits per L1 CPUID", "exits", None),
    ("p2_l2_cpuid_cycles", "P2 L2 CPUID reflected to L1 and resumed", "cycles", 0.45),
    ("p2_l2_cpuid_exits", "P2 host exits per L2 CPUID", "exits", None),
    ("p3_nested_single", "P3 nested / single (P2 / P1)", "ratio", 1.0),
    ("p4_l1_touch_cycles", "P4 first touch of a 4 KiB page, L1", "cycles/page", None),
    ("p4_l1_touch_exits", "P4 host exits per page, L1", "exits", None),
    ("p4_l2_touch_cycles", "P4 first touch of a 4 KiB page, L2", "cycles/page", None),
    ("p4_l2_touch_exits", "P4 host exits per page, L2", "exits", None),
    ("p5_create_cycles", "P5 VM create -> first exit", "cycles", None),
    ("p5_vm_kib", "P5 kernel memory per VM", "KiB", None),
    ("p5_vcpu_kib", "P5 kernel memory per vCPU", "KiB", None),
    ("p6_vmread_cycles", "P6 L1 VMREAD", "cycles", None),
    ("p6_vmread_exits", "P6 host exits per VMREAD", "exits", None),
    ("p6_vmwrite_cycles", "P6 L1 VMWRITE", "cycles", None),
    ("p6_vmwrite_exits", "P6 host exits per VMWRITE", "exits", None),
    ("p1_l1_cpuid_vmxon_per_1000_exits", "VMXON/VMXOFF pairs per 1,000 exits (P1)", "pairs", None),
    ("p2_l2_cpuid_vmxon_per_1000_exits", "VMXON/VMXOFF pairs per 1,000 exits (P2)", "pairs", None),
    # The whole chain (vm/init's qemu_l1): test-machine seconds from QEMU's start.
    ("chain_l1_first_line_s", "Chain: QEMU start -> L1 Linux's first line", "s", 0.8),
    ("chain_kvm_intel_loaded_s", "Chain: -> L1's kvm_intel loaded", "s", None),
    ("chain_l1_tests_done_s", "Chain: -> L1's selftests (L2, L3) done", "s", None),
    ("chain_l2_first_line_s", "Chain: -> L2 Linux's first line (QEMU in L1)", "s", 0.7),
    ("chain_l2_up_s", "Chain: -> L2's init runs", "s", None),
]
# KVM stays in VMX operation: it pays no VMXON/VMXOFF pairs at all.
ZERO_FOR_KVM = {"p1_l1_cpuid_vmxon_per_1000_exits", "p2_l2_cpuid_vmxon_per_1000_exits"}
# Goals on nvmx's own figure (no ratio: KVM's is 0).
NVMX_GOALS = {"p2_l2_cpuid_vmxon_per_1000_exits": 1.0}


def parse(serial):
    samples = {c: {} for c in COLUMNS}
    info, done = {}, set()
    with open(serial, errors="replace") as f:
        for line in f:
            line = line.strip()
            if line.startswith("@@BENCH-INFO "):
                _, key, *rest = line.split(" ")
                info[key] = " ".join(rest).strip()
            elif line.startswith("@@BENCH "):
                parts = line.split()
                if len(parts) != 4 or parts[1] not in COLUMNS:
                    continue
                col, key, value = parts[1], parts[2], float(parts[3])
                if key == "done":
                    done.add(col)
                else:
                    samples[col].setdefault(key, []).append(value)
    return samples, info, done


def summary(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "samples": values}


def build(samples, info, done, machine, date):
    metrics = {}
    for key, label, unit, goal in METRICS:
        m = {"label": label, "unit": unit, "goal": goal}
        for col in COLUMNS:
            vals = samples[col].get(key)
            if key == "p3_nested_single":
                p1, p2 = samples[col].get("p1_l1_cpuid_cycles"), samples[col].get("p2_l2_cpuid_cycles")
                if p1 and p2:
                    v = statistics.median(p2) / statistics.median(p1)
                    m[col] = {"median": v, "min": v, "max": v, "samples": [v]}
            elif vals:
                m[col] = summary(vals)
            elif col == "kvm_intel" and key in ZERO_FOR_KVM and col in done:
                m[col] = {"median": 0.0, "min": 0.0, "max": 0.0, "samples": [], "note": "stays in VMX operation"}
        k, n = m.get("kvm_intel"), m.get("nvmx")
        if k and n and k["median"] > 0:
            m["ratio"] = n["median"] / k["median"]
        metrics[key] = m
    return {
        "date": date,
        "machine": machine,
        "emulated_cpu": info.get("cpu", "?"),
        "cpus": info.get("cpus", "?"),
        "kernel": info.get("kernel", "?"),
        "vmx": info.get("vmx", "?"),
        "arguments": info.get("args", ""),
        "complete": sorted(done),
        "metrics": metrics,
    }


def fmt(v):
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if v != 0 and abs(v) < 0.1:
        return f"{v:.2g}"
    return f"{v:.2f}"


def cell(m):
    if not m:
        return "-"
    if m["min"] == m["max"]:
        return fmt(m["median"])
    return f"{fmt(m['median'])} ({fmt(m['min'])}–{fmt(m['max'])})"


def markdown(r):
    out = [f"Benchmark of {r['date']} on {r['machine']}; emulated CPU {r['emulated_cpu']}, "
           f"{r['cpus']} CPUs, Linux {r['kernel']}; arguments `{r['arguments']}`. "
           "Median of the repeats (smallest–largest). Ratio = nvmx / kvm_intel.", "",
           "| metric | unit | kvm_intel | nvmx | nvmx/kvm_intel | goal |",
           "|---|---|---:|---:|---:|---:|"]
    for key, m in r["metrics"].items():
        ratio = m.get("ratio")
        goal = m["goal"]
        if key == "p3_nested_single":
            # P3's goal: nvmx's nested/single no worse than KVM's.
            goal_txt = "≤ kvm_intel's"
        else:
            goal_txt = f"≤ {goal}" if goal else ""
        ok = ""
        if goal and ratio is not None:
            ok = " ✓" if ratio <= goal else " ✗"
        own = m.get("nvmx")
        if key in NVMX_GOALS and own is not None:
            goal_txt = f"nvmx ≤ {fmt(NVMX_GOALS[key])}"
            ok = " ✓" if own["median"] <= NVMX_GOALS[key] else " ✗"
        out.append(f"| {m['label']} | {m['unit']} | {cell(m.get('kvm_intel'))} | {cell(m.get('nvmx'))} | "
                   f"{fmt(ratio) if ratio is not None else '-'}{ok} | {goal_txt} |")
    return "\n".join(out) + "\n"


def svg(r):
    """Horizontal bars of nvmx/kvm_intel per cycle metric, on a log scale, with 1.0 marked."""
    import math
    rows = [(m["label"], m["ratio"], m["goal"]) for k, m in r["metrics"].items()
            if m.get("ratio") and m["unit"] in ("cycles", "cycles/page", "ratio", "KiB") and m["ratio"] > 0]
    w, left, top, bar, gap = 760, 330, 40, 18, 8
    h = top + len(rows) * (bar + gap) + 40
    lo, hi = math.log10(0.01), math.log10(100)
    x = lambda v: left + (min(max(math.log10(v), lo), hi) - lo) / (hi - lo) * (w - left - 20)
    s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
         f'<text x="10" y="20" font-size="14">nvmx / kvm_intel, same Bochs boot ({r["date"]}); left of 1: nvmx shorter</text>']
    for t in (0.01, 0.1, 0.5, 1, 2, 10, 100):
        s.append(f'<line x1="{x(t):.1f}" y1="{top - 5}" x2="{x(t):.1f}" y2="{h - 30}" stroke="{"#000" if t == 1 else "#ccc"}"/>')
        s.append(f'<text x="{x(t):.1f}" y="{h - 15}" text-anchor="middle">{t:g}</text>')
    for i, (label, ratio, goal) in enumerate(rows):
        y = top + i * (bar + gap)
        color = "#2a7" if ratio <= (goal or 1.0) else "#c44"
        x0, x1 = sorted((x(1), x(ratio)))
        s.append(f'<text x="{left - 8}" y="{y + bar - 4}" text-anchor="end">{html.escape(label)}</text>')
        s.append(f'<rect x="{x0:.1f}" y="{y}" width="{max(x1 - x0, 1):.1f}" height="{bar}" fill="{color}"/>')
        s.append(f'<text x="{x1 + 4:.1f}" y="{y + bar - 4}">{fmt(ratio)}</text>')
        if goal:
            s.append(f'<line x1="{x(goal):.1f}" y1="{y - 2}" x2="{x(goal):.1f}" y2="{y + bar + 2}" stroke="#000" stroke-dasharray="3,2"/>')
    s.append("</svg>")
    return "\n".join(s) + "\n"


BEGIN, END = "<!-- bench:begin (make bench writes this) -->", "<!-- bench:end -->"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("serial")
    ap.add_argument("out_dir")
    ap.add_argument("--machine", default="?")
    ap.add_argument("--readme")
    ap.add_argument("--publish", help="also copy the three files here (the README links the chart there)")
    a = ap.parse_args()
    samples, info, done = parse(a.serial)
    # The run's date: when its console log was last written.
    date = datetime.datetime.fromtimestamp(os.path.getmtime(a.serial), datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    r = build(samples, info, done, a.machine, date)
    os.makedirs(a.out_dir, exist_ok=True)
    md = markdown(r)
    with open(os.path.join(a.out_dir, "results.json"), "w") as f:
        json.dump(r, f, indent=1)
    with open(os.path.join(a.out_dir, "results.md"), "w") as f:
        f.write(md)
    with open(os.path.join(a.out_dir, "ratios.svg"), "w") as f:
        f.write(svg(r))
    print(md)
    missing = [c for c in COLUMNS if c not in done]
    if missing:
        print(f"bench: no complete run for {', '.join(missing)} (see {a.serial})", file=sys.stderr)
        return 1
    chart_dir = a.out_dir
    if a.publish:
        os.makedirs(a.publish, exist_ok=True)
        for name in ("results.json", "results.md", "ratios.svg"):
            with open(os.path.join(a.out_dir, name)) as src, open(os.path.join(a.publish, name), "w") as dst:
                dst.write(src.read())
        chart_dir = a.publish
    if a.readme:
        text = open(a.readme).read()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            _, tail = rest.split(END, 1)
            chart = os.path.relpath(os.path.join(chart_dir, "ratios.svg"), os.path.dirname(os.path.abspath(a.readme)))
            with open(a.readme, "w") as f:
                f.write(head + BEGIN + "\n" + md + f"\n![nvmx / kvm_intel]({chart})\n" + END + tail)
    return 0


if __name__ == "__main__":
    sys.exit(main())
