"""Regions of the pixel array as ``scamp5_load_pattern`` calls.

A pattern ``(r, c, rx, cx)`` selects the PEs whose address matches ``r``/``c`` outside the
don't-care bits ``rx``/``cx`` (8-bit addresses). A set of tiles, a set of lattice phases or a
strip of rows repeated in every tile is a union of such cubes; :func:`cover` finds a small
union (prime implicants, greedy set cover: the sets here have at most 16 cells).
"""
from __future__ import annotations

from itertools import product

ALL_BITS = 0xFF


def aligned_blocks(lo: int, hi: int) -> list[tuple[int, int]]:
    """[lo, hi) as aligned power-of-two blocks: (first, size - 1) each."""
    out = []
    while lo < hi:
        size = 1
        while lo % (size * 2) == 0 and lo + size * 2 <= hi:
            size *= 2
        out.append((lo, size - 1))
        lo += size
    return out


def strip(lo: int, hi: int, period: int) -> list[tuple[int, int]]:
    """(value, don't-care) address patterns of ``{a : lo <= a mod period < hi}``; period a power
    of two (the tile size) or 256 (the whole array)."""
    high = ALL_BITS & ~(period - 1)  # the tile index bits: any
    return [(v, (dc | high) & ALL_BITS) for v, dc in aligned_blocks(max(lo, 0), min(hi, period))]


def cover(on: set[tuple[int, ...]], off: set[tuple[int, ...]], nbits: tuple[int, ...]) -> list[tuple[tuple[int, int], ...]]:
    """A small set of cubes covering every cell of `on` and none of `off` (cells in neither
    are don't-care). A cell is a tuple of fields of ``nbits`` bits; a cube is, per field, a
    (value, don't-care mask) pair."""
    if not on:
        return []
    fields = [list(product(range(1 << n), range(1 << n))) for n in nbits]
    cubes = []
    for choice in product(*fields):
        if any(v & dc for v, dc in choice):
            continue
        cells = _cells(choice, nbits)
        if cells & off or not cells & on:
            continue
        cubes.append((choice, cells))
    # keep the prime ones (not inside a larger valid cube), then cover greedily
    primes = [c for c in cubes if not any(c[1] < d[1] for d in cubes)]
    todo, chosen = set(on), []
    while todo:
        best = max(primes, key=lambda c: (len(c[1] & todo), len(c[1])))
        chosen.append(best[0])
        todo -= best[1]
    return chosen


def _cells(choice, nbits) -> set[tuple[int, ...]]:
    axes = []
    for (v, dc), n in zip(choice, nbits):
        axes.append([x for x in range(1 << n) if x & ~dc == v])
    return set(product(*axes))
