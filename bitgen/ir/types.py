"""Tensor types and integer ranges: the vocabulary every op and back end shares."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import BitgenError

INT8 = (-128, 127)
INT32 = (-(2**31), 2**31 - 1)
DTYPE_RANGE = {"int8": INT8, "int32": INT32}
DTYPE_BYTES = {"int8": 1, "int32": 4}


class IRError(BitgenError, ValueError):
    """A model that is not well formed (shapes, values, overflow). The message is one line."""


@dataclass(frozen=True)
class TensorType:
    """A per-sample tensor: shape, dtype and the proved interval [lo, hi] of its values.

    ``binary``: every value is -1 or +1, never 0 (an interval [-1, 1] alone allows 0). Sign
    outputs are binary, and ops that only move or multiply binary values keep them so; kernels
    that pack a binary tensor as bits (XNOR-popcount) rely on it."""

    shape: tuple[int, ...]
    dtype: str
    lo: int
    hi: int
    binary: bool = False

    @property
    def size(self) -> int:
        return math.prod(self.shape)  # exact: no int64 wrap-around for absurd shapes

    @property
    def nbytes(self) -> int:
        return self.size * DTYPE_BYTES[self.dtype]

    @property
    def amax(self) -> int:
        """The largest magnitude a value can have."""
        return max(abs(self.lo), abs(self.hi))


def pair(v: Any) -> tuple[int, int]:
    """An int or a pair of ints -> a pair (kernel sizes, strides, paddings)."""
    if isinstance(v, (int, np.integer)):
        return (int(v), int(v))
    a, b = v
    return (int(a), int(b))


def int_array(v: Any, what: str) -> np.ndarray:
    """An array of integer values (floats that are whole numbers are accepted) as int64."""
    a = np.asarray(v)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise IRError(f"{what} must hold integers")
    elif a.dtype.kind not in "iub":
        raise IRError(f"{what} must hold integers, got dtype {a.dtype}")
    return a.astype(np.int64)
