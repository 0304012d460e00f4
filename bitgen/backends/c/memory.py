"""Static arena planning for a sequential model.

Each layer's output lives from the layer that writes it to the layer that reads it. A layer
whose kernel may run in place (ReLU, requantization, ShiftNorm, pooling: each output is
written after the inputs it needs, walking forward, and is no wider than its input) reuses its
input's bytes, unless writing its smaller output elsewhere lowers the peak of this layer and
the next; flatten is a pure alias. Every other layer writes to the opposite end of the
arena from its input ("ping-pong"), with its scratch (if the kernel needs any) in between, so
input, output and scratch never overlap. The arena size is the largest
input region + scratch + output region over those layers, each rounded up to 4 bytes so int32
tensors stay aligned. The model input is the caller's buffer and is never written.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    external: bool  # the caller's input buffer
    offset: int = 0  # byte offset in the arena
    region: int = 0  # bytes reserved at this place (>= the tensor, 4-aligned)
    top: bool = False  # at the high end of the arena


@dataclass(frozen=True)
class Need:
    """What one layer's kernel asks of the planner."""

    out_bytes: int  # bytes of the output tensor
    in_bytes: int
    in_place: bool = False  # the kernel may write its output over its input
    out_region: int | None = None  # room the kernel writes, if more than the tensor
    scratch: int = 0  # bytes of scratch while the layer runs
    alias: bool = False  # no code: the output is the input (flatten)


@dataclass
class Plan:
    arena_bytes: int
    locations: list[Location]  # [input, output of layer 0, output of layer 1, ...]
    scratch: list[int | None]  # scratch offset of each layer, or None


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
    arena = 0
    for i, need in enumerate(needs):
        prev = sides[-1]
        can_stay = need.in_place and not prev.external and need.out_bytes <= need.in_bytes and not need.scratch
        if can_stay and need.out_bytes < need.in_bytes:
            # A layer that shrinks its tensor (int32 -> int8, pooling) may still be better out of
            # place: its small output then frees the big region for the next layer.
            nxt = needs[i + 1] if i + 1 < len(needs) else None
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
            arena = max(arena, (0 if prev.external else prev.region) + _round4(need.scratch) + region)
            sides.append(Location(external=False, region=region, top=top))
    # Pass 2: offsets, now that the arena size is known; scratch sits next to the output.
    locs = [s if s.external else Location(False, arena - s.region if s.top else 0, s.region, s.top) for s in sides]
    scratch: list[int | None] = []
    for need, out in zip(needs, locs[1:]):
        if not need.scratch:
            scratch.append(None)
        else:
            scratch.append(out.offset - _round4(need.scratch) if out.top else out.offset + out.region)
    return Plan(arena_bytes=arena, locations=locs, scratch=scratch)
