"""Static arena planning: a sequential model (:func:`plan`) and a graph (:func:`plan_graph`).

Each layer's output lives from the layer that writes it to the layer that reads it. A layer
whose kernel may run in place (ReLU, requantization, ShiftNorm, pooling: each output is
written after the inputs it needs, walking forward, and is no wider than its input) reuses its
input's bytes, unless writing its smaller output elsewhere lowers the peak of this layer and
the next; flatten is a pure alias. Every other layer writes to the opposite end of the
arena from its input ("ping-pong"), with its scratch (if the kernel needs any) in between, so
input, output and scratch never overlap. The arena size is the largest
input region + scratch + output region over those layers, each rounded up to 4 bytes so int32
tensors stay aligned. The model input is the caller's buffer and is never written.

A graph (residual branches, concatenations) has tensors that outlive the next step. There each
step output is a buffer alive from the step that writes it to the last step that reads it
(the model output to the end); an in-place kernel or an alias shares its input's buffer when
nothing reads that buffer later; buffers, and each step's scratch (alive during its step), are
then placed greedily, largest first, at the lowest offset that overlaps no buffer alive at the
same time (the "greedy by size" planner of TFLite Micro and others).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    external: bool  # outside the arena: the caller's input buffer, or a state's own buffer
    offset: int = 0  # byte offset in the arena
    region: int = 0  # bytes reserved at this place (>= the tensor, 4-aligned)
    top: bool = False  # at the high end of the arena
    state: int | None = None  # external: the index of the state whose buffer this is
    keep: int | None = None  # external: the index of a kept output's buffer (GraphNeed.persistent)


@dataclass(frozen=True)
class Need:
    """What one layer's kernel asks of the planner."""

    out_bytes: int  # bytes of the output tensor
    in_bytes: int
    in_place: bool = False  # the kernel may write its output over its input
    out_region: int | None = None  # room the kernel writes, if more than the tensor
    scratch: int = 0  # bytes of scratch while the layer runs
    alias: bool = False  # no code: the output is the input (flatten)


@dataclass(frozen=True)
class GraphNeed:
    """What one step of a graph asks of the planner."""

    out_bytes: int
    inputs: tuple[int, ...]  # the steps whose outputs it reads, in order (-1: the model input,
    # -2 - k: state k)
    in_place: bool = False  # the kernel may write its output over its first input
    out_region: int | None = None
    scratch: int = 0
    alias: bool = False  # no code: the output is the first input's bytes
    keep: bool = False  # alive to the end of the run (a state takes its value then)
    persistent: bool = False  # in a buffer of its own outside the arena, kept from frame to frame


@dataclass
class Plan:
    arena_bytes: int
    inputs: list[list[Location]]  # per step: where each of its inputs is
    outputs: list[Location]  # per step: where its output goes
    scratch: list[int | None]  # scratch offset of each step, or None
    peak_step: int = 0  # the step during which the most arena bytes are in use (what sets its size)
    peak_bytes: int = 0  # ... and how many
    peak_parts: dict[str, int] | None = None  # what they hold: input, scratch, output (a graph: tensors, scratch)

    @property
    def locations(self) -> list[Location]:
        """A sequential model's tensors: [input, output of step 0, output of step 1, ...]."""
        return [self.inputs[0][0]] + self.outputs if self.inputs else []


def _round4(n: int) -> int:
    return (n + 3) & ~3


def _cost(need: Need | None, in_region: int) -> int:
    """Bytes a layer needs at once when it writes out of place after an input of in_region."""
    if need is None or need.alias:
        return 0
    return in_region + _round4(need.scratch) + _round4(max(need.out_bytes, need.out_region or 0))


def plan(needs: list[Need]) -> Plan:
    # Pass 1: which end each tensor sits at, how big the regions are, the arena size.
    sides: list[Location] = [Location(external=True)]
    arena = peak_step = 0
    parts: dict[str, int] = {}
    for i, need in enumerate(needs):
        prev = sides[-1]
        can_stay = need.in_place and not prev.external and need.out_bytes <= need.in_bytes and not need.scratch
        if can_stay and need.out_bytes < need.in_bytes:
            # A layer that shrinks its tensor (int32 -> int8, pooling) may still be better out of
            # place: its small output then frees the big region for the next layer.
            # (the next layer that needs room of its own: ReLUs in place and flattens keep the region)
            nxt = next((n for n in needs[i + 1:] if not (n.alias or (n.in_place and not n.scratch and n.out_bytes
                                                                        == n.in_bytes == need.out_bytes))), None)
            stay = _cost(nxt, prev.region)
            move = max(prev.region + _round4(need.out_bytes), _cost(nxt, _round4(need.out_bytes)))
            can_stay = stay <= move
        if need.alias:
            sides.append(prev)
        elif can_stay:
            sides.append(prev)
        else:
            region = _round4(max(need.out_bytes, need.out_region or 0))
            top = not prev.top if not prev.external else False
            here = (0 if prev.external else prev.region) + _round4(need.scratch) + region
            if here > arena:
                arena, peak_step = here, i
                parts = {"input": 0 if prev.external else prev.region, "scratch": _round4(need.scratch),
                         "output": region}
            sides.append(Location(external=False, region=region, top=top))
    # Pass 2: offsets, now that the arena size is known; scratch sits next to the output.
    locs = [s if s.external else Location(False, arena - s.region if s.top else 0, s.region, s.top) for s in sides]
    scratch: list[int | None] = []
    for need, out in zip(needs, locs[1:]):
        if not need.scratch:
            scratch.append(None)
        else:
            scratch.append(out.offset - _round4(need.scratch) if out.top else out.offset + out.region)
    return Plan(arena_bytes=arena, inputs=[[loc] for loc in locs[:-1]], outputs=locs[1:], scratch=scratch,
                peak_step=peak_step, peak_bytes=arena, peak_parts=parts)


def plan_graph(needs: list[GraphNeed]) -> Plan:
    external = Location(external=True)
    buffer_of: list[int | None] = []  # per step: its output's buffer (None: outside the arena)
    external_of: dict[int, int] = {}  # such a step's output: whose bytes (-1: the input, -2 - k: state k)
    tensors: list[list[int]] = []  # per buffer: the steps whose outputs live in it
    end = len(needs) - 1
    last_read = {j: k for k, need in enumerate(needs) for j in need.inputs}
    last_read |= {k: end for k, need in enumerate(needs) if need.keep}
    region: list[int] = []
    kept_buffer: dict[int, int] = {}  # step -> its persistent buffer
    for k, need in enumerate(needs):
        if need.persistent:
            buffer_of.append(None)
            kept_buffer[k] = len(kept_buffer)
            continue
        src = need.inputs[0] if need.inputs else -1
        src_buf = buffer_of[src] if src >= 0 else None
        shared = None
        if need.alias:
            shared = src_buf if src >= 0 else -1
        elif need.in_place and src_buf is not None and not need.scratch \
                and need.out_bytes <= needs[src].out_bytes \
                and all(last_read.get(t, -1) <= k for t in tensors[src_buf]) \
                and need.inputs.count(src) == 1:
            shared = src_buf  # nothing reads the input's bytes after this step
        if shared == -1 or (need.alias and src_buf is None):
            buffer_of.append(None)  # an alias of the model input or of a state: not in the arena
            external_of[k] = src
            continue
        if shared is None:
            tensors.append([])
            region.append(0)
            shared = len(tensors) - 1
        buffer_of.append(shared)
        tensors[shared].append(k)
        region[shared] = max(region[shared], _round4(max(need.out_bytes, need.out_region or 0)))
    # lifetimes [first write, last read]; the model output lives to the end
    spans = []
    for b, ts in enumerate(tensors):
        last = max(max(last_read.get(t, t) for t in ts), max(ts))
        spans.append((min(ts), end if end in ts else last, region[b]))
    spans += [(k, k, _round4(n.scratch)) for k, n in enumerate(needs) if n.scratch]
    offsets: dict[int, int] = {}
    order = sorted(range(len(spans)), key=lambda b: (-spans[b][2], spans[b][0], b))
    for b in order:
        lo, hi, size = spans[b]
        busy = sorted((offsets[o], offsets[o] + spans[o][2]) for o in offsets
                      if spans[o][0] <= hi and lo <= spans[o][1])
        at = 0
        for start, stop in busy:
            if at + size <= start:
                break
            at = max(at, stop)
        offsets[b] = at
    arena = max((offsets[b] + spans[b][2] for b in offsets), default=0)

    def loc(step: int) -> Location:
        while step >= 0 and buffer_of[step] is None:
            if step in kept_buffer:
                return Location(external=True, keep=kept_buffer[step])
            step = external_of[step]
        if step < -1:
            return Location(external=True, state=-2 - step)
        if step < 0:
            return external
        b = buffer_of[step]
        return Location(external=False, offset=offsets[b], region=region[b])

    scratch_at = iter(range(len(tensors), len(spans)))
    scratch = [offsets[next(scratch_at)] if n.scratch else None for n in needs]
    live = [sum(size for lo, hi, size in spans if lo <= k <= hi) for k in range(len(needs))]
    peak = max(range(len(needs)), key=lambda k: live[k], default=0)
    peak_scratch = _round4(needs[peak].scratch) if needs else 0
    return Plan(arena_bytes=arena, inputs=[[loc(j) for j in n.inputs] for n in needs],
                outputs=[loc(k) for k in range(len(needs))], scratch=scratch, peak_step=peak,
                peak_bytes=live[peak] if live else 0,
                peak_parts={"tensors": (live[peak] if live else 0) - peak_scratch, "scratch": peak_scratch})
