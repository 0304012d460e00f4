"""bitgen's size limits, checked in exact integers before anything is allocated or computed.

They lie far beyond any microcontroller bitgen targets (the largest has 512 KB of flash and
128 KB of SRAM) and low enough that emitting, checking and building a model within them takes
seconds to minutes and bounded memory on a computer. A declared shape such as (1, 2^32, 2^32)
is refused here with the number it would mean, instead of wrapping around in int64, filling
the memory or keeping a command busy for hours.
"""
from __future__ import annotations

import math

from .types import IRError

MAX_TENSOR_VALUES = 1 << 20  # values in one tensor: 1 Mi (4 MiB as int32)
MAX_WEIGHT_VALUES = 1 << 22  # weight values in the whole model: 4 Mi
MAX_MACS = 1 << 30  # multiply-accumulates per inference: about 1 G
MAX_NODES = 4096  # layers (nodes) of a model


def check_shape(shape: tuple[int, ...], what: str) -> int:
    """The number of values of ``shape`` (each size at least 1), within MAX_TENSOR_VALUES."""
    if not shape or min(shape) < 1:
        raise IRError(f"{what} has shape {tuple(shape)}: every size must be at least 1")
    n = math.prod(shape)  # Python integers: exact for any declared shape
    if n > MAX_TENSOR_VALUES:
        raise IRError(f"{what} has shape {tuple(shape)}, {n} values: over bitgen's limit of "
                      f"{MAX_TENSOR_VALUES} values per tensor (far beyond any microcontroller)")
    return n


def check_total(n: int, limit: int, what: str, where: str) -> None:
    if n > limit:
        raise IRError(f"{where}: {what} reach {n}, over bitgen's limit of {limit} (far beyond any microcontroller)")
