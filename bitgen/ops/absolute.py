"""Absolute value with saturation (a MAX78000 activation)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..ir.types import DTYPE_RANGE, TensorType
from .base import Op


@dataclass(eq=False)
class Abs(Op):
    """``y = min(|x|, dtype max)``: saturating, so int8 -128 gives 127 (as the MAX78000's Abs
    does) and int32 -2**31 gives 2**31 - 1; dtype kept."""

    kind: ClassVar[str] = "abs"
    name: str = ""

    def infer(self, t: TensorType) -> TensorType:
        top = DTYPE_RANGE[t.dtype][1]
        lo = 0 if t.lo <= 0 <= t.hi else min(abs(t.lo), abs(t.hi))
        return TensorType(t.shape, t.dtype, min(lo, top), min(t.amax, top))

    def golden(self, x: np.ndarray) -> np.ndarray:
        top = DTYPE_RANGE["int8" if x.dtype == np.int8 else "int32"][1]
        return np.minimum(np.abs(x.astype(np.int64)), top).astype(x.dtype)

    def channel_local(self, t_in: TensorType) -> bool:
        return len(t_in.shape) == 3

    @classmethod
    def random_weight(cls, t: TensorType) -> int:
        return 1

    @classmethod
    def random(cls, draw: Any, rng: np.random.Generator, t: TensorType) -> "Abs":
        return cls()
