#!/usr/bin/env python3
"""Checks every #include under src/ and include/pmprof/ against src/layers.conf.

Usage: check_layers.py [REPO_ROOT]. Prints one line per violation (file:line: why) and exits 1
when there is any, 0 otherwise. The rules are stated at the top of src/layers.conf.
"""
import os
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')


def read_table(path):
    layers, uses, confines = {}, set(), []
    with open(path, encoding="utf-8") as f:
        for n, raw in enumerate(f, 1):
            line = raw.split("#", 1)[0].split()
            if not line:
                continue
            if line[0] == "uses" and len(line) == 3:
                uses.add((line[1], line[2]))
            elif line[0] == "confine" and len(line) >= 3:
                confines.append((line[1], set(line[2:])))
            elif len(line) == 2 and line[1].isdigit():
                layers[line[0]] = int(line[1])
            else:
                sys.exit(f"{path}:{n}: cannot read this line")
    return layers, uses, confines


def module_of(rel):
    """('src'|'include', module) for a file of the tree, or None for one outside any module."""
    parts = rel.split("/")
    if parts[0] == "src" and len(parts) >= 3:
        return "src", parts[1]
    if parts[:2] == ["include", "pmprof"] and len(parts) >= 4:
        return "include", parts[2]
    return None


def check(root):
    layers, uses, confines = read_table(os.path.join(root, "src", "layers.conf"))
    problems = []
    for top in ("src", os.path.join("include", "pmprof")):
        for dirpath, _, names in os.walk(os.path.join(root, top)):
            for name in sorted(names):
                if not name.endswith((".cpp", ".h")):
                    continue
                rel = os.path.relpath(os.path.join(dirpath, name), root)
                where = module_of(rel)
                if where is None:
                    problems.append(f"{rel}: not inside a module folder")
                    continue
                kind, mod = where
                if mod not in layers:
                    problems.append(f"{rel}: module '{mod}' is not in src/layers.conf")
                    continue
                with open(os.path.join(root, rel), encoding="utf-8") as f:
                    for n, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        if m:
                            why = judge(root, kind, mod, m.group(1), m.group(2), layers, uses,
                                        confines)
                            if why:
                                problems.append(f"{rel}:{n}: {why}")
    return problems


def judge(root, kind, mod, bracket, target, layers, uses, confines):
    if bracket == "<":
        for prefix, allowed in confines:
            if target.startswith(prefix) and mod not in allowed:
                return f"<{target}> is confined to {', '.join(sorted(allowed))}"
        return None
    for prefix, allowed in confines:
        if target.startswith(prefix) and mod not in allowed:
            return f'"{target}" is confined to {", ".join(sorted(allowed))}'
    parts = target.split("/")
    if parts[0] == "pmprof" and len(parts) >= 3:
        other = parts[1]
        if not os.path.isfile(os.path.join(root, "include", target)):
            return f'"{target}" does not exist'
        if other not in layers:
            return f'"{target}": module \'{other}\' is not in src/layers.conf'
        if other == mod or (mod, other) in uses:
            return None
        if layers[other] < layers[mod]:
            return None
        side = "sideways" if layers[other] == layers[mod] else "up"
        return (f'"{target}" goes {side}: {mod} (layer {layers[mod]}) may not use {other} '
                f"(layer {layers[other]})")
    if len(parts) >= 2 and os.path.isfile(os.path.join(root, "src", target)):
        other = parts[0]
        if kind == "include":
            return f'public header includes private "{target}"'
        if other != mod:
            return f'"{target}" is private to module {other}'
        return None
    if parts[0] == "pmprof":
        return f'"{target}" is not under a module folder'
    # Generated files and third-party headers included with quotes.
    if target.endswith(".inc"):
        return None
    return f'"{target}": unknown header (write "pmprof/<module>/x.h" or "<module>/x.h")'


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
    problems = check(os.path.abspath(root))
    for p in problems:
        print(p)
    if problems:
        print(f"check-layers: {len(problems)} violation(s) of src/layers.conf", file=sys.stderr)
        return 1
    print("check-layers: every include follows src/layers.conf")
    return 0


if __name__ == "__main__":
    sys.exit(main())
