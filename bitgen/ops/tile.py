"""Channels laid out as a grid of planes: PixelRNN's ``scamp_shape`` (scamp5.md §2.1)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..ir.types import IRError, TensorType
from .base import Op


@dataclass(eq=False)
class Tile(Op):
    """``(C, H, W) -> (1, rows * H, cols * W)`` with ``C = rows * cols``: channel ``k`` becomes
    the tile at tile row ``k % rows`` and tile column ``k // rows`` (column-major, as PixelRNN's
    ``scamp_shape`` puts its 16 CNN channels into one 64x64 image for the recurrent cell).

    ``y[0, (k % rows) * H + i, (k // rows) * W + j] = x[k, i, j]``; values, dtype and interval
    are kept (a pure rearrangement)."""

    kind: ClassVar[str] = "tile"
    rows: int = 1
    cols: int = 1
    name: str = ""

    def __post_init__(self) -> None:
        self.rows, self.cols = int(self.rows), int(self.cols)

    def infer(self, t: TensorType) -> TensorType:
        if len(t.shape) != 3:
            raise IRError(f"expects a (C, H, W) input, got shape {t.shape}")
        if not (1 <= self.rows <= 255 and 1 <= self.cols <= 255):
            raise IRError("rows and cols must be in 1..255")
        c, h, w = t.shape
        if c != self.rows * self.cols:
            raise IRError(f"a {self.rows}x{self.cols} grid holds {self.rows * self.cols} channels, the input has {c}")
        return TensorType((1, self.rows * h, self.cols * w), t.dtype, t.lo, t.hi, t.binary)

    def golden(self, x: np.ndarray) -> np.ndarray:
        """Channel ``k`` at tile ``(k % rows, k // rows)`` of one plane."""
        n, c, h, w = x.shape
        # k = row + rows * col: (n, cols, rows, h, w) -> (n, rows, h, cols, w)
        grid = x.reshape(n, self.cols, self.rows, h, w).transpose(0, 2, 3, 1, 4)
        return np.ascontiguousarray(grid.reshape(n, 1, self.rows * h, self.cols * w))

    @classmethod
    def random_weight(cls, t: TensorType) -> int:
        return 1 if len(t.shape) == 3 and t.shape[0] > 1 and t.size <= 4096 else 0

    @classmethod
    def random(cls, draw: Any, rng: np.random.Generator, t: TensorType) -> "Tile":
        from hypothesis import strategies as st

        c = t.shape[0]
        rows = draw(st.sampled_from([d for d in range(1, c + 1) if c % d == 0]))
        return cls(rows=rows, cols=c // rows)
