"""Max and average pooling over windows (no padding, floor output size)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..ir.types import INT32, IRError, TensorType, pair
from .base import Op


def _windows(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int]) -> np.ndarray:
    win = sliding_window_view(x, kernel, axis=(2, 3))[:, :, :: stride[0], :: stride[1]]
    return win.reshape(win.shape[:4] + (-1,))


@dataclass(eq=False)
class _Pool(Op):
    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] | None = None  # default: = kernel
    name: str = ""

    def __post_init__(self) -> None:
        self.kernel = pair(self.kernel)
        self.stride = pair(self.stride) if self.stride is not None else self.kernel

    def infer(self, t: TensorType) -> TensorType:
        if len(t.shape) != 3:
            raise IRError(f"expects a (C, H, W) input, got shape {t.shape}")
        c, h, w = t.shape
        (kh, kw), (sh, sw) = self.kernel, self.stride
        if min(kh, kw, sh, sw) < 1:
            raise IRError("kernel and stride must be >= 1")
        if kh > h or kw > w:
            raise IRError(f"window {kh}x{kw} is larger than input {h}x{w}")
        binary = t.binary and self.kind == "maxpool2d"  # a max of ±1 is ±1; a mean need not be
        return TensorType((c, (h - kh) // sh + 1, (w - kw) // sw + 1), t.dtype, t.lo, t.hi, binary)

    def channel_local(self, t_in: TensorType) -> bool:
        return len(t_in.shape) == 3

    @classmethod
    def random_weight(cls, t: TensorType) -> int:
        return 1 if len(t.shape) == 3 else 0

    @classmethod
    def random(cls, draw: Any, rng: np.random.Generator, t: TensorType) -> "_Pool":
        from hypothesis import strategies as st

        _, h, w = t.shape
        kernel = (draw(st.integers(1, min(3, h))), draw(st.integers(1, min(3, w))))
        return cls(kernel=kernel, stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))))


@dataclass(eq=False)
class MaxPool2d(_Pool):
    """Max over each window, no padding, output size floor((H - k) / s) + 1; dtype kept."""

    kind: ClassVar[str] = "maxpool2d"

    def golden(self, x: np.ndarray) -> np.ndarray:
        """Maximum of each ``kh x kw`` window (no padding, floor output size); dtype kept."""
        return _windows(x, self.kernel, self.stride).max(axis=-1).astype(x.dtype)


@dataclass(eq=False)
class AvgPool2d(_Pool):
    """Mean over each window rounded half up: floor((2*sum + n) / (2*n)), n = kh*kw; dtype kept."""

    kind: ClassVar[str] = "avgpool2d"

    def infer(self, t: TensorType) -> TensorType:
        out = super().infer(t)
        n = self.kernel[0] * self.kernel[1]
        if t.dtype == "int32" and 2 * t.amax * n + n > INT32[1]:
            raise IRError("window sum may overflow int32")
        return out

    def golden(self, x: np.ndarray) -> np.ndarray:
        """Window mean rounded half up: ``floor((2 * sum + k) / (2 * k))`` with ``k = kh * kw``."""
        k = self.kernel[0] * self.kernel[1]
        s = _windows(x, self.kernel, self.stride).astype(np.int64).sum(axis=-1)
        return np.floor_divide(2 * s + k, 2 * k).astype(x.dtype)
