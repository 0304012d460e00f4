"""Nearest-neighbour upsampling by integer factors."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..ir.types import IRError, TensorType, pair
from .base import Op


@dataclass(eq=False)
class Upsample(Op):
    """``y[c, i, j] = x[c, i // fh, j // fw]`` (nearest neighbour, integer factors); dtype kept."""

    kind: ClassVar[str] = "upsample"
    factor: tuple[int, int] = (2, 2)
    name: str = ""

    def __post_init__(self) -> None:
        self.factor = pair(self.factor)

    def infer(self, t: TensorType) -> TensorType:
        if len(t.shape) != 3:
            raise IRError(f"expects a (C, H, W) input, got shape {t.shape}")
        fh, fw = self.factor
        if not (1 <= fh <= 255 and 1 <= fw <= 255):
            raise IRError("factors must be in 1..255")
        c, h, w = t.shape
        return TensorType((c, h * fh, w * fw), t.dtype, t.lo, t.hi, t.binary)

    def golden(self, x: np.ndarray) -> np.ndarray:
        """Each value repeated ``fh`` times down and ``fw`` times across."""
        return np.repeat(np.repeat(x, self.factor[0], axis=2), self.factor[1], axis=3)

    def channel_local(self, t_in: TensorType) -> bool:
        return False  # its planes grow: the plane buffers of a step are sized for shrinking ones

    @classmethod
    def random_weight(cls, t: TensorType) -> int:
        return 1 if len(t.shape) == 3 and t.shape[1] * t.shape[2] <= 36 else 0

    @classmethod
    def random(cls, draw: Any, rng: np.random.Generator, t: TensorType) -> "Upsample":
        from hypothesis import strategies as st

        return cls(factor=(draw(st.integers(1, 3)), draw(st.integers(1, 3))))
