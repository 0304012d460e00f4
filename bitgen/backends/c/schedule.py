"""In which order the layers run: one after the other, or depth-first one channel at a time.

A convolution followed by layers that never mix channels (depthwise convolutions, ReLU,
requantization, pooling) can run *channel by channel*: compute output channel c of the
convolution, push that single plane through every following channel-local layer, and write
it into channel c of the last layer's output. Only two planes are alive at a time instead of
whole tensors, which is what lets a 64-channel CNN run in the 2 KB of a CH32V003-class part
(the int32 output of a 16x16x64 convolution alone is 64 KB). The arithmetic is unchanged: the
same kernels compute the same values, on a plane at a time.
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

    @property
    def channelwise(self) -> bool:
        return self.last > self.first and not self.whole and not self.change and not self.tiled

    @property
    def layers(self) -> range:
        return range(self.first, self.last + 1)


def steps(model: ir.Model, types: list[ir.TensorType], change: dict[int, int] | None = None,
          whole: dict[int, int] | None = None, tiled: dict[int, int] | None = None) -> list[Step]:
    """Group the layers: each convolution with the channel-local layers that follow it, as long
    as each reads the one before it and nothing else reads what they pass on (in a graph).
    `change`: change gates whose kernel computes the layers after them up to the given one.
    `whole`: convolutions whose kernel computes whole tensors, and how many of the layers after
    each it fuses (taken from what this grouping gave it): they form a step of their own.
    `tiled`: runs of layers (first -> last) computed strip by strip, each one step."""
    readers: dict[str, int] = {st.source: 1 for st in model.states}  # a state reads it after the frame
    for node in model.nodes:
        for name in node.inputs:
            readers[name] = readers.get(name, 0) + 1
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
        out.append(Step(i, j))
        i = j + 1
    return out
