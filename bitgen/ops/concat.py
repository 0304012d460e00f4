"""Concatenation of two tensors along their first axis (channels of CHW, or vectors)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..ir.types import IRError, TensorType
from .base import Op


@dataclass(eq=False)
class Concat(Op):
    """``y = [a; b]`` along axis 0 of the sample (the channels of CHW tensors, the elements of
    vectors): in memory, a's bytes then b's. Values are copied unchanged; both inputs have one dtype."""

    kind: ClassVar[str] = "concat"
    arity: ClassVar[int] = 2
    name: str = ""

    def infer(self, a: TensorType, b: TensorType) -> TensorType:
        if len(a.shape) != len(b.shape) or a.shape[1:] != b.shape[1:]:
            raise IRError(f"inputs of shapes {a.shape} and {b.shape} differ beyond the first axis")
        if a.dtype != b.dtype:
            raise IRError(f"inputs are {a.dtype} and {b.dtype}; requantize one of them first")
        return TensorType((a.shape[0] + b.shape[0],) + a.shape[1:], a.dtype, min(a.lo, b.lo), max(a.hi, b.hi),
                          a.binary and b.binary)

    def golden(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``np.concatenate([a, b], axis=1)`` (axis 0 of each sample)."""
        return np.concatenate([a, b], axis=1)

    @classmethod
    def random(cls, draw: Any, rng: np.random.Generator, t: TensorType) -> "Concat":
        return cls()
