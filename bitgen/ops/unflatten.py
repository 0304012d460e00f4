"""Reshape a vector into a CHW tensor (a decoder's ``Linear -> C x H x W``)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..ir.types import IRError, TensorType
from .base import Op


@dataclass(eq=False)
class Unflatten(Op):
    """(C*H*W,) -> (C, H, W) in C order; the bytes do not move (the inverse of Flatten)."""

    kind: ClassVar[str] = "unflatten"
    shape: tuple[int, int, int] = (1, 1, 1)
    name: str = ""

    def __post_init__(self) -> None:
        self.shape = tuple(int(v) for v in self.shape)

    def infer(self, t: TensorType) -> TensorType:
        if len(t.shape) != 1:
            raise IRError(f"expects a vector input, got shape {t.shape}")
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise IRError(f"shape must be three positive sizes (C, H, W), got {self.shape}")
        if math.prod(self.shape) != t.size:
            raise IRError(f"shape {self.shape} holds {math.prod(self.shape)} values, the input has {t.size}")
        return TensorType(self.shape, t.dtype, t.lo, t.hi, t.binary)

    def golden(self, x: np.ndarray) -> np.ndarray:
        """``(N, C*H*W) -> (N, C, H, W)``, C order (memory does not move)."""
        return x.reshape((x.shape[0],) + self.shape)

    @classmethod
    def random_weight(cls, t: TensorType) -> int:
        return 1 if len(t.shape) == 1 and t.size > 1 else 0

    @classmethod
    def random(cls, draw: Any, rng: np.random.Generator, t: TensorType) -> "Unflatten":
        from hypothesis import strategies as st

        n = t.size
        c = draw(st.sampled_from([d for d in range(1, n + 1) if n % d == 0]))
        h = draw(st.sampled_from([d for d in range(1, n // c + 1) if (n // c) % d == 0]))
        return cls(shape=(c, h, n // c // h))
