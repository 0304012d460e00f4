"""Rectified linear unit."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..ir.types import TensorType
from .base import Op


@dataclass(eq=False)
class ReLU(Op):
    """y = max(x, 0); dtype kept."""

    kind: ClassVar[str] = "relu"
    name: str = ""

    def infer(self, t: TensorType) -> TensorType:
        return TensorType(t.shape, t.dtype, max(t.lo, 0), max(t.hi, 0))

    def golden(self, x: np.ndarray) -> np.ndarray:
        """``max(x, 0)``; dtype kept."""
        return np.maximum(x, 0).astype(x.dtype)

    def channel_local(self, t_in: TensorType) -> bool:
        return len(t_in.shape) == 3

    @classmethod
    def random_weight(cls, t: TensorType) -> int:
        return 1

    @classmethod
    def random(cls, draw: Any, rng: np.random.Generator, t: TensorType) -> "ReLU":
        return cls()
