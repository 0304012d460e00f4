"""Worst-case stack depth of a firmware image, from the compiler's own call graph.

Every source is compiled with GCC's ``-fcallgraph-info=su``, which writes next to each object
a ``.ci`` file (VCG graph): one node per function defined there, with the bytes of its stack
frame ("N bytes (static)"), and one edge per call. The deepest path from the entry function
through the graph of all objects is the stack the image can need. This is static analysis
of the code as compiled, so it covers inputs the emulator never ran.

Calls through a pointer are resolved from a list the caller knows (the firmware's protocol
calls the model through one: ``bg_run``). What it cannot see is named in the result instead of
guessed: functions with no call-graph node (libgcc helpers, assembly), frames of dynamic size,
other calls through pointers, recursion.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

CFLAG = "-fcallgraph-info=su"

_NODE = re.compile(r'node: \{ title: "([^"]+)" label: "[^"\\]*(?:\\n[^"\\]*)*?\\n(\d+) bytes \(([a-z,]+)\)"')
_EDGE = re.compile(r'edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"')


@dataclass
class StackEstimate:
    entry: str
    bytes: int  # deepest path from `entry`, counting the functions with known frames
    path: list[str]  # that path, entry first
    unknown: list[str] = field(default_factory=list)  # callees without a frame size (0 counted)
    bounded: bool = True  # False: recursion, a call through a pointer, or a dynamic frame

    def report(self) -> dict:
        return {"entry": self.entry, "bytes": self.bytes, "path": self.path,
                "not_analysed": self.unknown, "bounded": self.bounded}


def _short(title: str) -> str:
    """A static function's node is "/path/to/file.c:name": keep "file.c:name"."""
    path, sep, name = title.rpartition(":")
    return f"{Path(path).name}:{name}" if sep else title


def read_graph(ci_files: list[Path]) -> tuple[dict[str, tuple[int, str]], dict[str, set[str]]]:
    """Frames {function: (bytes, qualifier)} and calls {function: callees} of all files."""
    frames: dict[str, tuple[int, str]] = {}
    calls: dict[str, set[str]] = {}
    for f in ci_files:
        text = f.read_text()
        for name, size, kind in _NODE.findall(text):
            frames[_short(name)] = (int(size), kind)
        for src, dst in _EDGE.findall(text):
            calls.setdefault(_short(src), set()).add(_short(dst))
    return frames, calls


def estimate(ci_files: list[Path], entry: str = "main", indirect: tuple[str, ...] = ()) -> StackEstimate:
    """Deepest stack from `entry`; a call through a pointer may reach any of `indirect`
    (function names; a static function's node is "file.c:name")."""
    frames, calls = read_graph(ci_files)
    if entry not in frames:
        raise ValueError(f"no call-graph information for '{entry}'")
    targets = sorted(f for f in frames if f.rsplit(":", 1)[-1] in indirect)
    for callees in calls.values():
        if "__indirect_call" in callees and targets:
            callees.discard("__indirect_call")
            callees.update(targets)
    unknown: set[str] = set()
    bounded = True
    memo: dict[str, tuple[int, list[str]]] = {}

    def deepest(fn: str, active: tuple[str, ...]) -> tuple[int, list[str]]:
        nonlocal bounded
        if fn in memo:
            return memo[fn]
        if fn in active or fn == "__indirect_call":  # recursion, or a callee GCC cannot name
            bounded = False
            return 0, [fn]
        if fn not in frames:
            unknown.add(fn)
            return 0, [fn]
        size, kind = frames[fn]
        if kind != "static" and "bounded" not in kind:
            bounded = False
        best = (0, [])
        for callee in sorted(calls.get(fn, ())):
            d = deepest(callee, active + (fn,))
            if d[0] > best[0]:
                best = d
        memo[fn] = (size + best[0], [fn] + best[1])
        return memo[fn]

    total, path = deepest(entry, ())
    return StackEstimate(entry, total, path, sorted(unknown), bounded)
