"""Threshold to a binary tensor: PixelRNN's sign activation (scamp5.md §2)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..ir.types import INT32, IRError, TensorType, int_array
from .base import Op
from .requant import per_channel


@dataclass(eq=False)
class Sign(Op):
    """``y = +1 if x > threshold[c] else -1``, per tensor (1 threshold) or per channel (one per
    entry of axis 0 of the sample: the channels of a CHW tensor, the elements of a vector).

    The comparison is strict, so a tie (``x == threshold``) gives -1, and 0 is never an output
    (unlike ``torch.sign``, which is ternary). Strict is what PixelRNN's SCAMP comparison is:
    for an integer ``s * IW`` and ``T = floor(theta * IW)``, ``s * IW > theta * IW`` holds
    exactly when ``s * IW > T``. Thresholds are integers in the int32 range, whatever the input
    dtype (the C compares in int32); one outside the input's values gives a constant output.
    The output is int8 (a binary tensor is an int8 tensor of ±1) with the interval [-1, 1].
    """

    kind: ClassVar[str] = "sign"
    threshold: np.ndarray = field(default_factory=lambda: np.array([0]))
    name: str = ""

    def __post_init__(self) -> None:
        self.threshold = int_array(np.atleast_1d(self.threshold), "sign threshold").reshape(-1)

    def infer(self, t: TensorType) -> TensorType:
        n = self.threshold.size
        if n not in (1, t.shape[0]):
            raise IRError(f"threshold must have 1 or {t.shape[0]} (channel) entries, got {n}")
        if self.threshold.min() < INT32[0] or self.threshold.max() > INT32[1]:
            raise IRError("thresholds must be in the int32 range")
        return TensorType(t.shape, "int8", -1, 1, binary=True)

    def golden(self, x: np.ndarray) -> np.ndarray:
        """``where(x > threshold[c], 1, -1)`` as int8; strict, so ``x == threshold`` gives -1."""
        t = per_channel(self.threshold, x.ndim)
        return np.where(x.astype(np.int64) > t, 1, -1).astype(np.int8)

    def channel_local(self, t_in: TensorType) -> bool:
        return len(t_in.shape) == 3

    @classmethod
    def random_weight(cls, t: TensorType) -> int:
        return 1 if t.binary else 2

    @classmethod
    def random(cls, draw: Any, rng: np.random.Generator, t: TensorType) -> "Sign":
        from hypothesis import strategies as st

        n = t.shape[0] if draw(st.booleans()) else 1
        # ties need thresholds the input can equal: its bounds, values next to them and just
        # outside (constant outputs), small values (where typical data lies), any in between
        lo, hi = max(t.lo - 1, INT32[0]), min(t.hi + 1, INT32[1])
        edges = np.array([t.lo, t.hi, t.lo - 1, t.hi - 1, t.lo + 1, lo, hi])
        how = rng.integers(0, 3, n)
        thr = np.where(how == 0, rng.choice(edges, n),
                       np.where(how == 1, np.clip(rng.integers(-8, 9, n), lo, hi), rng.integers(lo, hi + 1, n)))
        return cls(threshold=np.clip(thr, INT32[0], INT32[1]))
