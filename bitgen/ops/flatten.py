"""Flatten a CHW tensor to a vector."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..ir.types import TensorType
from .base import Op


@dataclass(eq=False)
class Flatten(Op):
    """(C, H, W) -> (C*H*W,) in C order; the bytes do not move."""

    kind: ClassVar[str] = "flatten"
    name: str = ""

    def infer(self, t: TensorType) -> TensorType:
        return TensorType((t.size,), t.dtype, t.lo, t.hi, t.binary)

    def golden(self, x: np.ndarray) -> np.ndarray:
        """``(N, C, H, W) -> (N, C*H*W)``, C order (memory does not move)."""
        return x.reshape(x.shape[0], -1)

    @classmethod
    def random_weight(cls, t: TensorType) -> int:
        return 1 if len(t.shape) == 3 else 0

    @classmethod
    def random(cls, draw: Any, rng: np.random.Generator, t: TensorType) -> "Flatten":
        return cls()
