"""Static arena planning for a sequential model.

Each layer's output lives from the layer that writes it to the layer that reads it. Layers that
may run in place (ReLU, requantization, ShiftNorm, pooling: each output is written after the
inputs it needs, walking forward, and is no wider than its input) reuse their input's bytes;
flatten is a pure alias. Every other layer writes to the opposite end of the arena from its
input ("ping-pong"), so input and output never overlap. The arena size is the largest
(input region + output region) over those layers, every region rounded up to 4 bytes so int32
tensors stay aligned. The model input is the caller's buffer and is never written.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import ir

IN_PLACE = (ir.ReLU, ir.Requant, ir.ShiftNorm, ir.MaxPool2d, ir.AvgPool2d)


@dataclass(frozen=True)
class Location:
    external: bool  # the caller's input buffer
    offset: int = 0  # byte offset in the arena
    region: int = 0  # bytes reserved at this place (>= the tensor, 4-aligned)
    top: bool = False  # at the high end of the arena


@dataclass
class Plan:
    arena_bytes: int
    locations: list[Location]  # [input, output of layer 0, output of layer 1, ...]


def _round4(n: int) -> int:
    return (n + 3) & ~3


def plan(layers: list[ir.Layer], types: list[ir.TensorType]) -> Plan:
    """`types` holds the input type followed by every layer's output type."""
    # Pass 1: which end each tensor sits at and how big the regions are.
    sides: list[Location] = [Location(external=True)]
    arena = 0
    for i, layer in enumerate(layers):
        prev, t_in, t_out = sides[-1], types[i], types[i + 1]
        if isinstance(layer, ir.Flatten):
            sides.append(prev)
        elif isinstance(layer, IN_PLACE) and not prev.external and t_out.nbytes <= t_in.nbytes:
            sides.append(prev)
        else:
            region = _round4(t_out.nbytes)
            top = not prev.top if not prev.external else False
            arena = max(arena, (0 if prev.external else prev.region) + region)
            sides.append(Location(external=False, region=region, top=top))
    # Pass 2: offsets, now that the arena size is known.
    locs = [
        s if s.external else Location(False, arena - s.region if s.top else 0, s.region, s.top)
        for s in sides
    ]
    return Plan(arena_bytes=arena, locations=locs)
