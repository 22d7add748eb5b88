#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""The module's import graph: which files of rust/ (nvmx.ko's crate, rust/core excluded: it
imports nothing of the module) name which, from their `use crate::...` lines and `crate::x::`
paths. Prints the import circles (strongly connected components of more than one file).

    scripts/layers.py          # the circles, exit 1 if any
    scripts/layers.py --tap    # one TAP result (make check)
    scripts/layers.py --graph  # every file and what it imports
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent / "rust"
# Names a file may use that are not files of the module.
NOT_FILES = {"vmx_core", "HOST", "HostInfo", "self", "super", "crate"}


def modules():
    return {p.stem: p for p in ROOT.glob("*.rs")}


def imports(path, names):
    text = path.read_text()
    # Comments name files too ("rust/run.rs"); only code counts.
    text = re.sub(r"//.*", "", text)
    found = set()
    for m in re.finditer(r"\bcrate::(\w+)", text):
        found.add(m.group(1))
    for m in re.finditer(r"\bcrate::\{([^}]*)\}", text):
        for part in m.group(1).split(","):
            found.add(part.strip().split("::")[0].split(" ")[0])
    return {n for n in found if n in names and n not in NOT_FILES and n != path.stem}


def circles(graph):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main():
    names = modules()
    graph = {n: imports(p, names) for n, p in names.items()}
    found = circles(graph)
    if "--graph" in sys.argv:
        for n in sorted(graph):
            print(f"{n}.rs -> {', '.join(sorted(graph[n])) or '-'}")
    if "--tap" in sys.argv:
        print("1..1")
        if found:
            for c in found:
                print(f"# circle: {' <-> '.join(c)}")
                for a in c:
                    print(f"#   {a}.rs -> {', '.join(sorted(graph[a] & set(c)))}")
            print("not ok 1 - layers: no import circle among rust/*.rs")
        else:
            print("ok 1 - layers: no import circle among rust/*.rs")
        return 0
    for c in found:
        print("circle:", " <-> ".join(f"{a}.rs" for a in c))
        for a in c:
            print(f"  {a}.rs -> {', '.join(sorted(graph[a] & set(c)))}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
