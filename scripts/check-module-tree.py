#!/usr/bin/env python3
"""Checks that each crate's modules form a tree: no module imports, directly
or through others, a module that imports it back (docs/ARCHITECTURE.md,
"Layers"). Reads `crate::NAME` references (use lines and paths) of each
top-level module (src/NAME.rs, or src/NAME/ with its submodules), leaving
out comments, unit tests (`#[cfg(test)] mod tests`) and the crate root. Prints every
cycle it finds and exits 1 if there is one.

Usage: scripts/check-module-tree.py [CRATE_DIR...] (default: crates/*)
"""
import glob
import os
import re
import sys

REFERENCE = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")


def code_of(text):
    """The text without its unit tests and comments (a doc link to another
    module is not a dependency on it)."""
    cut = re.search(r"#\[cfg\(test\)\]\s*(pub(\([a-z]+\))?\s+)?mod tests\b", text)
    text = text[: cut.start()] if cut else text
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def modules(src):
    found = {}
    for path in glob.glob(os.path.join(src, "*.rs")):
        name = os.path.basename(path)[:-3]
        if name in ("lib", "main"):
            continue
        found.setdefault(name, []).append(path)
    for path in glob.glob(os.path.join(src, "*", "**", "*.rs"), recursive=True):
        name = os.path.relpath(path, src).split(os.sep)[0]
        found.setdefault(name, []).append(path)
    return found


def graph(src):
    mods = modules(src)
    edges = {name: set() for name in mods}
    for name, paths in mods.items():
        for path in paths:
            with open(path, encoding="utf-8") as f:
                text = code_of(f.read())
            for other in REFERENCE.findall(text):
                if other in mods and other != name:
                    edges[name].add(other)
    return edges


def cycles(edges):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main(argv):
    crates = argv or sorted(glob.glob("crates/*"))
    failed = False
    for crate in crates:
        src = os.path.join(crate, "src")
        if not os.path.isdir(src):
            continue
        edges = graph(src)
        for component in cycles(edges):
            failed = True
            links = [
                f"{a} -> {b}" for a in component for b in sorted(edges[a]) if b in component
            ]
            print(f"{crate}: modules import each other in a circle: {', '.join(links)}")
    if not failed:
        print(f"module tree: no import cycles in {len(crates)} crates")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
