#!/usr/bin/env python3
"""Fails if two modules of a crate import from each other, directly or around a loop.

A module is a file (`a/b.rs` or `a/b/mod.rs`). For every parent module, its child modules are
the nodes of one graph; child X has an edge to child Y when any file below X names a path that
resolves below Y (`use crate::...`, `super::...`, `self::...` in `use` trees and inline paths).
A parent and its own children may refer to each other freely (a child is part of its parent),
and test-only files (`tests.rs`, `testing.rs`, `fuzzing.rs`) are left out: tests may reach
anything. Any strongly connected group of two or more children is reported.

    .ci/module_cycles.py [crate-src-dir ...]   (default: every workspace crate's src/)
"""

import re
import sys
from pathlib import Path

SKIP = {"tests.rs", "testing.rs", "fuzzing.rs"}
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def modules(src: Path):
    """Module path (tuple) -> file, for every file module below src."""
    mods = {}
    for f in src.rglob("*.rs"):
        rel = f.relative_to(src)
        if rel.parts[0] == "bin" or f.name in SKIP:
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "mod":
            parts.pop()
        if parts in (["lib"], ["main"]):
            parts = []
        mods[tuple(parts)] = f
    return mods


def strip(text: str) -> str:
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    # string literals: paths inside them are not imports
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)


def use_paths(tree: str, prefix=()):
    """Expand a `use` tree into paths."""
    tree = tree.strip()
    depth, split = 0, []
    start = 0
    for i, c in enumerate(tree):
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        elif c == "," and depth == 0:
            split.append(tree[start:i])
            start = i + 1
    split.append(tree[start:])
    if len(split) > 1:
        for s in split:
            yield from use_paths(s, prefix)
        return
    m = re.match(r"^((?:" + IDENT + r"\s*::\s*)*)\{(.*)\}$", tree, re.S)
    if m:
        head = tuple(p.strip() for p in m.group(1).split("::") if p.strip())
        yield from use_paths(m.group(2), prefix + head)
        return
    tree = re.sub(r"\s+as\s+" + IDENT + "$", "", tree)
    parts = tuple(p.strip() for p in tree.split("::") if p.strip())
    if parts:
        yield prefix + parts


def references(text: str):
    text = strip(text)
    for m in re.finditer(r"\buse\s+([^;]*);", text):
        yield from use_paths(m.group(1))
    for m in re.finditer(r"\b((?:crate|super|self)(?:\s*::\s*" + IDENT + r")+)", text):
        yield tuple(p.strip() for p in m.group(1).split("::"))


def resolve(path, here, mods):
    """The deepest module a path from module `here` names, or None if outside the crate."""
    if not path:
        return None
    if path[0] == "crate":
        base, rest = (), path[1:]
    elif path[0] in ("super", "self"):
        base, rest = here, path
        while rest and rest[0] in ("super", "self"):
            if rest[0] == "super":
                base = base[:-1]
            rest = rest[1:]
    else:
        return None
    cur = base
    for seg in rest:
        if cur + (seg,) in mods:
            cur = cur + (seg,)
        else:
            break
    return cur


def sccs(nodes, edges):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
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
            out.append(comp)

    for v in nodes:
        if v not in index:
            visit(v)
    return out


def check(src: Path):
    mods = modules(src)
    # edges between files: from module A to the module B a path resolves to
    uses = {}
    for here, f in mods.items():
        targets = set()
        for p in references(f.read_text()):
            t = resolve(p, here, mods)
            if t is not None and t != here:
                targets.add(t)
        uses[here] = targets
    problems = []
    for parent in mods:
        children = [m for m in mods if len(m) == len(parent) + 1 and m[: len(parent)] == parent]
        if len(children) < 2:
            continue
        edges = {}
        for a in children:
            for here, targets in uses.items():
                if here[: len(a)] != a:
                    continue
                for t in targets:
                    if len(t) > len(parent) and t[: len(parent)] == parent:
                        b = t[: len(parent) + 1]
                        if b != a:
                            edges.setdefault(a, set()).add(b)
        for comp in sccs(children, edges):
            if len(comp) > 1:
                names = sorted("::".join(c) for c in comp)
                detail = []
                for a in comp:
                    for b in comp:
                        if b in edges.get(a, ()):
                            detail.append(f"{'::'.join(a)} -> {'::'.join(b)}")
                problems.append(f"{src}: cycle among {', '.join(names)} ({'; '.join(sorted(detail))})")
    return problems


def main():
    root = Path(__file__).resolve().parent.parent
    dirs = [Path(a) for a in sys.argv[1:]] or sorted(
        p.parent for p in root.glob("*/Cargo.toml") if (p.parent / "src").is_dir()
    )
    problems = []
    for d in dirs:
        src = d / "src" if (d / "src").is_dir() else d
        problems += check(src)
    for p in problems:
        print(p)
    if problems:
        print(f"module cycles: {len(problems)}", file=sys.stderr)
        return 1
    print(f"module cycles: none in {len(dirs)} crates")
    return 0


if __name__ == "__main__":
    sys.exit(main())
