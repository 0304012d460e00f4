"""Change detection with a feedback-loop reference: the integer form of CBinfer's change-based
inference (Cavigelli et al., ICDSC 2017; ../shared/reference/cbinfer_sinabs_tiling.md A.5).

A gate sits before a convolution and reads the frame's input x and a reference r, a model
:class:`~bitgen.ir.State` whose source is the gate's own output. A pixel *changed* when one of
its channels moved by more than the threshold T since the reference; the gate passes the new
values of changed pixels and the reference's values elsewhere, and the reference takes them at
the end of the frame. The convolution reading the gate is then, exactly, the dense layer of the
reference, and the reference never strays from the input by more than T in any value: T = 0 is
the dense model bit for bit. A back end may recompute only the outputs whose receptive field
holds a changed pixel and keep the rest from the frame before: the same values.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..ir.types import INT32, IRError, TensorType
from .base import NP_DTYPE, Op


@dataclass(eq=False)
class ChangeGate(Op):
    """``y[:, i, j] = x[:, i, j] if max_c |x[c, i, j] - r[c, i, j]| > threshold else r[:, i, j]``.

    Inputs: x (the frame's tensor) and r (the reference, a state whose source is y); a pixel is
    one position of a (C, H, W) tensor with all its channels, or one element of a vector. The
    comparison is strict, so a pixel that moved by exactly the threshold keeps its reference,
    and threshold 0 passes every pixel that differs at all (y equals x). The difference is taken
    in exact integers (no wrap-around); the output has x's dtype, and values from x or r."""

    kind: ClassVar[str] = "change_gate"
    arity: ClassVar[int] = 2
    threshold: int = 0
    name: str = ""

    def __post_init__(self) -> None:
        self.threshold = int(self.threshold)

    def infer(self, x: TensorType, r: TensorType) -> TensorType:
        if x.shape != r.shape or x.dtype != r.dtype:
            raise IRError(f"the reference must be the input's type: {x.dtype} {x.shape}, "
                          f"got {r.dtype} {r.shape}")
        if not 0 <= self.threshold <= INT32[1]:
            raise IRError(f"change threshold must be 0 or more, got {self.threshold}")
        return TensorType(x.shape, x.dtype, min(x.lo, r.lo), max(x.hi, r.hi), x.binary and r.binary)

    def golden(self, x: np.ndarray, r: np.ndarray) -> np.ndarray:
        """Per pixel (all channels together): the input where it changed by more than the
        threshold, else the reference."""
        d = np.abs(x.astype(np.int64) - r.astype(np.int64))
        changed = d.max(axis=1, keepdims=True) > self.threshold if x.ndim == 4 else d > self.threshold
        return np.where(changed, x, r).astype(NP_DTYPE["int8" if x.dtype == np.int8 else "int32"])

    def changed(self, x: np.ndarray, r: np.ndarray) -> np.ndarray:
        """The changed pixels of each sample: (N, H, W) or (N, F) booleans."""
        d = np.abs(x.astype(np.int64) - r.astype(np.int64))
        return d.max(axis=1) > self.threshold if x.ndim == 4 else d > self.threshold

    @classmethod
    def random_weight(cls, t: TensorType) -> int:
        return 0  # drawn by the graph strategy, which adds the reference state

    @classmethod
    def random(cls, draw: Any, rng: np.random.Generator, t: TensorType) -> "ChangeGate":
        from hypothesis import strategies as st

        return cls(threshold=draw(st.sampled_from([0, 0, 1, 2, 5, 40, 300])))
