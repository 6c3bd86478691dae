#!/usr/bin/env python3
"""Lists import circles between the modules of src/: `crate::`, `super::` and child-module
paths are resolved to the file of the longest module prefix; the file graph is collapsed to
top-level modules (`src/x.rs` or `src/x/`), and its strongly connected components are
printed with the file edges that make them. Exit status 1 when there is a circle.
`--files` checks single files instead (a parent and its children then count too).
`--skip-tests` leaves out `#[cfg(test)]` files (tests.rs, fixtures.rs, *_tests.rs) and
inline `mod tests` blocks.

    python3 tools/import-cycles.py [--skip-tests] [--files]
"""
import os
import re
import sys

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
skip_tests = "--skip-tests" in sys.argv


def module_of(path):
    rel = os.path.relpath(path, SRC)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return tuple(rel)


files = {}
for root, _, names in os.walk(SRC):
    for n in names:
        if n.endswith(".rs"):
            p = os.path.join(root, n)
            files[module_of(p)] = p


def resolve(parts):
    for k in range(len(parts), -1, -1):
        if tuple(parts[:k]) in files:
            return tuple(parts[:k])
    return None


def strip_tests(text):
    m = re.search(r"#\[cfg\(test\)\]\s*mod \w+\s*\{", text)
    return text[: m.start()] if m else text


def expand(prefix, body):
    """`a::{b, c::{d}}` → [a::b, a::c::d] (one path per leaf)."""
    out, depth, cur = [], 0, ""
    for ch in body + ",":
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            item = cur.strip()
            cur = ""
            if not item:
                continue
            m = re.match(r"^([\w:]*?)::\{(.*)\}$", item, re.S)
            if m:
                out += expand(prefix + m.group(1).split("::"), m.group(2))
            else:
                out.append(prefix + item.split(" as ")[0].split("::"))
        else:
            cur += ch
    return out


edges = {m: set() for m in files}
for mod, path in files.items():
    name = os.path.basename(path)
    if skip_tests and (name in ("tests.rs", "fixtures.rs") or name.endswith("_tests.rs")):
        continue
    text = open(path, encoding="utf-8").read()
    text = re.sub(r"//[^\n]*", "", text)
    if skip_tests:
        text = strip_tests(text)
    here = list(mod)  # `super::` from module a::b is a
    paths = []
    for m in re.finditer(r"\b(crate|super)::\{([^;]*?)\};", text, re.S):
        paths += expand(["crate"] if m.group(1) == "crate" else ["super"], m.group(2))
    for m in re.finditer(r"\b((?:crate|super)(?:::super)*::[\w:]*\w)(::\{([^;]*?)\})?", text, re.S):
        segs = m.group(1).split("::")
        paths += expand(segs, m.group(3)) if m.group(3) else [segs]
    # Child modules named by a relative path (`clip::build`, `self::clip::build`).
    for child in re.findall(r"^\s*(?:pub(?:\([\w:]+\))? )?mod (\w+);", text, re.M):
        kid = mod + (child,)
        if kid in files and re.search(r"(?<![\w:])(?:self::)?" + child + r"::", text):
            edges[mod].add(kid)
    for segs in paths:
        if segs[0] == "crate":
            target = segs[1:]
        else:
            base = here
            while segs and segs[0] == "super":
                base = base[:-1]
                segs = segs[1:]
            target = list(base) + segs
        t = resolve(target)
        if t is not None and t != mod and t != ():
            edges[mod].add(t)

# Between top-level modules (`src/x.rs` or `src/x/`): a parent and its own children may
# refer to each other (a registry naming its kinds, the kinds using the parent's trait), but
# no circle may run through two different top-level modules. `--files` checks single files.
if "--files" not in sys.argv:
    top = {}
    for a, bs in edges.items():
        for b in bs:
            if a[:1] != b[:1] and a and b:
                top.setdefault(a[:1], set()).add(b[:1])
        top.setdefault(a[:1], set())
    detail = edges
    edges = top

# Tarjan's strongly connected components.
index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]


def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in edges[v]:
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
            sccs.append(comp)


sys.setrecursionlimit(10000)
for v in sorted(edges):
    if v not in index:
        visit(v)
name = lambda m: "::".join(m) or "crate"
for comp in sccs:
    members = sorted(comp)
    print("circle:", ", ".join(name(m) for m in members))
    for a in members:
        for b in sorted(edges[a] & set(comp)):
            print(f"    {name(a)} -> {name(b)}")
            if "--files" not in sys.argv:  # the files that make the edge
                for fa in sorted(m for m in detail if m[:1] == a):
                    for fb in sorted(m for m in detail[fa] if m[:1] == b):
                        print(f"        {name(fa)} -> {name(fb)}")
print(f"{len(edges)} modules, {sum(len(e) for e in edges.values())} edges, {len(sccs)} circle(s)")
sys.exit(1 if sccs else 0)
