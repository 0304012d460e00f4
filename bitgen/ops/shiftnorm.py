"""BitNetMCU's ShiftNorm: a per-sample dynamic shift to int8, with ReLU."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..ir.types import INT32, IRError, TensorType
from .base import Op


def dynamic_shift(x: np.ndarray) -> np.ndarray:
    """Per sample: the number of bits of ``max(max(x) >> 7, 0)`` (BitNetMCU's dynamic shift)."""
    m = x.reshape(x.shape[0], -1).astype(np.int64).max(axis=1)
    v = np.maximum(m >> 7, 0)
    shift = np.zeros_like(v)
    while np.any(v > 0):
        shift += v > 0
        v >>= 1
    return shift


@dataclass(eq=False)
class ShiftNorm(Op):
    """Dynamic normalization of BitNetMCU, per sample: find m = max(x) over the whole tensor,
    ``shift`` = number of bits of ``max(m >> 7, 0)``; then each element:
    ``x < 0 -> 0``, else ``min((x + ((1 << shift) >> 1)) >> shift, 127)``. Output int8 in [0, 127].
    """

    kind: ClassVar[str] = "shiftnorm"
    name: str = ""

    def infer(self, t: TensorType) -> TensorType:
        if t.dtype != "int32":
            raise IRError("expects an int32 input (an accumulator)")
        if t.hi + (max(t.hi, 0) >> 7) + 1 > INT32[1]:
            raise IRError("rounding term may overflow int32")
        return TensorType(t.shape, "int8", 0, 127)

    def golden(self, x: np.ndarray) -> np.ndarray:
        """``x < 0 -> 0``; else ``min((x + ((1 << s) >> 1)) >> s, 127)`` with ``s`` =
        :func:`dynamic_shift` of the sample. int8 result in [0, 127]."""
        s = dynamic_shift(x).reshape((-1,) + (1,) * (x.ndim - 1))
        xi = x.astype(np.int64)
        y = np.right_shift(xi + (np.left_shift(1, s) >> 1), s)
        y = np.where(xi < 0, 0, np.minimum(y, 127))
        return y.astype(np.int8)

    @classmethod
    def random_weight(cls, t: TensorType) -> int:
        return 1 if t.dtype == "int32" else 0

    @classmethod
    def random(cls, draw: Any, rng: np.random.Generator, t: TensorType) -> "ShiftNorm":
        return cls()
