"""In which order the layers run: one after the other, or depth-first one channel at a time.

A convolution followed by layers that never mix channels (depthwise convolutions, ReLU,
requantization, pooling) can run *channel by channel*: compute output channel c of the
convolution, push that single plane through every following channel-local layer, and write
it into channel c of the last layer's output. Only two planes are alive at a time instead of
whole tensors, which is what lets a 64-channel CNN run in the 2 KB of a CH32V003-class part
(the int32 output of a 16x16x64 convolution alone is 64 KB). The arithmetic is unchanged: the
same kernels compute the same values, on a plane at a time.

Such a step still writes its whole output, and a BitNetMCU CNN ends in one that is large: the
int32 output of its last pooling (64 channels x 2 x 2: 1 KB) feeds a ShiftNorm, which needs the
maximum over all of it before it can write a single int8. Where the SRAM demands it, the step
takes the ShiftNorm (and the Flatten before it) in and runs its channels *twice*: the first pass
only keeps the running maximum, the second computes every plane again and writes it normalized,
so the step's output is the int8 tensor (a quarter of the bytes) at twice the instructions.
"""
from __future__ import annotations

from dataclasses import dataclass

from ... import ir


@dataclass(frozen=True)
class Step:
    first: int  # index of the first layer
    last: int  # index of the last layer (== first for a single layer)
    whole: bool = False  # one kernel computes all its layers on whole tensors (a fused output stage)
    change: bool = False  # a change gate and the layers after it in one change-based kernel
    tiled: bool = False  # depth-first row strips through all its layers (tiling.py)
    norm_first: int | None = None  # two passes: the step ends in [Flatten,] ShiftNorm from this layer on

    @property
    def planes_last(self) -> int:
        """The last layer computed plane by plane (before a two-pass step's ShiftNorm)."""
        return self.last if self.norm_first is None else self.norm_first - 1

    @property
    def channelwise(self) -> bool:
        return self.last > self.first and not self.whole and not self.change and not self.tiled

    @property
    def layers(self) -> range:
        return range(self.first, self.last + 1)


def readers_of(model: ir.Model) -> dict[str, int]:
    """How many nodes (and states) read each tensor."""
    readers: dict[str, int] = {st.source: 1 for st in model.states}  # a state reads it after the frame
    for node in model.nodes:
        for name in node.inputs:
            readers[name] = readers.get(name, 0) + 1
    return readers


def norm_tail(model: ir.Model, last: int, readers: dict[str, int] | None = None) -> tuple[int, int] | None:
    """The first and last layer of a [Flatten,] ShiftNorm that follows layer `last` and reads
    only it, in a chain nothing else reads (so a two-pass step can take it in), or None."""
    readers = readers if readers is not None else readers_of(model)
    nodes, j = model.nodes, last
    while j + 1 < len(nodes) and j - last < 2:
        if nodes[j + 1].inputs != (nodes[j].output,) or readers[nodes[j].output] != 1:
            return None
        if isinstance(nodes[j + 1].op, ir.ShiftNorm):
            return last + 1, j + 1
        if j > last or not isinstance(nodes[j + 1].op, ir.Flatten):
            return None
        j += 1
    return None


def steps(model: ir.Model, types: list[ir.TensorType], change: dict[int, int] | None = None,
          whole: dict[int, int] | None = None, two_pass: frozenset[int] = frozenset(),
          tiled: dict[int, int] | None = None) -> list[Step]:
    """Group the layers: each convolution with the channel-local layers that follow it, as long
    as each reads the one before it and nothing else reads what they pass on (in a graph).
    `change`: change gates whose kernel computes the layers after them up to the given one.
    `whole`: convolutions whose kernel computes whole tensors, and how many of the layers after
    each it fuses (taken from what this grouping gave it): they form a step of their own.
    `two_pass`: channel-by-channel steps (by first layer) that take in the ShiftNorm after them.
    `tiled`: runs of layers (first -> last) computed strip by strip, each one step."""
    readers = readers_of(model)
    nodes = model.nodes
    out: list[Step] = []
    i, n = 0, len(nodes)
    while i < n:
        j = i
        if change and i in change:
            out.append(Step(i, change[i], change=True))
            i = change[i] + 1
            continue
        if tiled and i in tiled:
            out.append(Step(i, tiled[i], tiled=True))
            i = tiled[i] + 1
            continue
        if whole and i in whole:
            out.append(Step(i, i + whole[i], whole=True))
            i += whole[i] + 1
            continue
        if isinstance(nodes[i].op, ir.Conv2d):
            while (j + 1 < n and nodes[j + 1].inputs == (nodes[j].output,) and readers[nodes[j].output] == 1
                   and nodes[j + 1].op.channel_local(types[j + 1])):
                j += 1
            tail = norm_tail(model, j, readers) if i in two_pass and j > i else None
            if tail is not None:
                out.append(Step(i, tail[1], norm_first=tail[0]))
                i = tail[1] + 1
                continue
        out.append(Step(i, j))
        i = j + 1
    return out
