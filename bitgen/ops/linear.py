"""Fully connected layer."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..ir.types import IRError, TensorType, int_array
from .base import Op, accumulator_range, check_weights, fit, random_bias, random_weights


@dataclass(eq=False)
class Linear(Op):
    """y[o] = bias[o] + sum_i w[o, i] * x[i]   (int32 accumulator, int8 or int32 input)."""

    kind: ClassVar[str] = "linear"
    weight: np.ndarray  # (out, in) integer values of `encoding`
    encoding: str
    bias: np.ndarray | None = None  # (out,) int32
    name: str = ""

    def __post_init__(self) -> None:
        self.weight = int_array(self.weight, "linear weight")
        if self.bias is not None:
            self.bias = int_array(self.bias, "linear bias")

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    def infer(self, t: TensorType) -> TensorType:
        if len(t.shape) != 1:
            raise IRError(f"expects a vector input, got shape {t.shape} (add a flatten layer)")
        if self.weight.ndim != 2:
            raise IRError(f"weight must be 2-D (out, in), got shape {self.weight.shape}")
        if self.in_features != t.shape[0]:
            raise IRError(f"expects {self.in_features} inputs, previous layer gives {t.shape[0]}")
        check_weights(self.weight, self.encoding, self.bias)
        lo, hi = accumulator_range(self.weight, self.bias, t)
        return TensorType((self.out_features,), "int32", lo, hi)

    def golden(self, x: np.ndarray) -> np.ndarray:
        """``y[n, o] = bias[o] + sum_i w[o, i] * x[n, i]``, int32 result.

        Evaluated in float64, which is exact here: every product and partial sum is an integer
        of magnitude < 2**31 (proved by infer), far below 2**53."""
        acc = x.astype(np.float64) @ self.weight.astype(np.float64).T
        y = acc.astype(np.int64)
        if self.bias is not None:
            y += self.bias
        return fit(y, "int32", "linear")

    def macs(self, t_out: TensorType) -> int:
        return t_out.size * self.in_features

    @classmethod
    def random_weight(cls, t: TensorType) -> int:
        return (6 if t.binary else 3) if len(t.shape) == 1 else 0  # binary: the XNOR kernels

    @classmethod
    def random(cls, draw: Any, rng: np.random.Generator, t: TensorType) -> "Linear":
        from hypothesis import strategies as st

        wt, enc = random_weights(draw, rng, (draw(st.integers(1, 24)), t.shape[0]), t)
        return cls(weight=wt, encoding=enc, bias=random_bias(draw, rng, wt.shape[0]))
