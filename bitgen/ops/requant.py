"""Static requantization: multiply, shift with rounding, clamp."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..ir.types import DTYPE_RANGE, INT32, IRError, TensorType, int_array
from .base import NP_DTYPE, Op, check_output, clamp_defaults, clamped_type

ROUNDINGS = ("half_up", "floor")


def per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    """Shape a per-tensor (1,) or per-channel (C,) parameter to broadcast over axis 1."""
    return v.astype(np.int64).reshape((1, -1) + (1,) * (ndim - 2))


@dataclass(eq=False)
class Requant(Op):
    """Static requantization, per tensor or per channel (axis 0):

    ``y = clamp(round(x * multiplier[c] / 2**shift[c]), out_min, out_max)``
    with ``round`` = half up (``+ 2**(shift-1)`` then arithmetic shift) or floor (plain shift).
    The product is formed in 64 bits. A pure shift is multiplier 1.
    """

    kind: ClassVar[str] = "requant"
    multiplier: np.ndarray = field(default_factory=lambda: np.array([1]))
    shift: np.ndarray = field(default_factory=lambda: np.array([0]))
    rounding: str = "half_up"  # or "floor"
    out_dtype: str = "int8"
    out_min: int | None = None  # default: dtype minimum
    out_max: int | None = None  # default: dtype maximum
    name: str = ""

    def __post_init__(self) -> None:
        self.multiplier = int_array(np.atleast_1d(self.multiplier), "requant multiplier")
        self.shift = int_array(np.atleast_1d(self.shift), "requant shift")
        self.out_min, self.out_max = clamp_defaults(self.out_dtype, self.out_min, self.out_max)

    @property
    def is_pure_shift(self) -> bool:
        return bool(np.all(self.multiplier == 1))

    def infer(self, t: TensorType) -> TensorType:
        if t.dtype != "int32":
            raise IRError("expects an int32 input (an accumulator)")
        if self.rounding not in ROUNDINGS:
            raise IRError(f"rounding must be 'half_up' or 'floor', got '{self.rounding}'")
        check_output(self.out_dtype, self.out_min, self.out_max)
        n = self.multiplier.size
        if self.shift.size != n or n not in (1, t.shape[0]):
            raise IRError(f"multiplier/shift must have 1 or {t.shape[0]} (channel) entries, "
                          f"got {self.multiplier.size}/{self.shift.size}")
        if self.shift.min() < 0 or self.shift.max() > 62:
            raise IRError("shift must be in 0..62")
        if self.multiplier.min() < 1 or self.multiplier.max() > INT32[1]:
            raise IRError("multiplier must be in 1..2**31-1")
        if t.amax * int(self.multiplier.max()) + (1 << int(self.shift.max())) >= 2**63:
            raise IRError("64-bit product may overflow")
        m, s = self.multiplier.astype(object), self.shift.astype(object)
        lo = min((t.lo * mi) >> si for mi, si in zip(m, s))
        hi = max((t.hi * mi + (1 << si)) >> si for mi, si in zip(m, s))
        return clamped_type(t.shape, self.out_dtype, lo, hi, self.out_min, self.out_max)

    def golden(self, x: np.ndarray) -> np.ndarray:
        """``clamp(round(x * m / 2**s), out_min, out_max)`` per tensor or per channel.

        ``x * m`` is exact in 64 bits (proved by infer). Rounding: ``half_up`` adds
        ``1 << (s - 1)`` when ``s > 0`` before the arithmetic right shift; ``floor`` adds nothing.
        """
        m = per_channel(self.multiplier, x.ndim)
        s = per_channel(self.shift, x.ndim)
        y = x.astype(np.int64) * m
        if self.rounding == "half_up":
            y += np.where(s > 0, np.left_shift(1, np.maximum(s - 1, 0)), 0)
        y = np.right_shift(y, s)
        y = np.clip(y, self.out_min, self.out_max)
        return y.astype(NP_DTYPE[self.out_dtype])

    def channel_local(self, t_in: TensorType) -> bool:
        return len(t_in.shape) == 3

    @classmethod
    def random_weight(cls, t: TensorType) -> int:
        return 2 if t.dtype == "int32" else 0

    @classmethod
    def random(cls, draw: Any, rng: np.random.Generator, t: TensorType) -> "Requant":
        from hypothesis import strategies as st

        c = t.shape[0]
        n = c if draw(st.booleans()) else 1
        mbits = draw(st.integers(0, 16))
        mult = rng.integers(1, 2**mbits + 1, n)
        # centre the shift on what brings the proved range to about 8 bits, then perturb it
        span = max(t.amax, 1).bit_length() + mbits
        shift = np.clip(span - 7 + rng.integers(-3, 4, n), 0, 62)
        out_dtype = draw(st.sampled_from(["int8", "int8", "int32"]))
        lo, hi = DTYPE_RANGE[out_dtype]
        if draw(st.booleans()):  # a narrower clamp range, e.g. ReLU-like [0, 127]
            lo = draw(st.integers(lo, 0))
            hi = draw(st.integers(max(lo, 0), hi))
        rounding = draw(st.sampled_from(list(ROUNDINGS)))
        return cls(multiplier=mult, shift=shift, rounding=rounding, out_dtype=out_dtype,
                   out_min=lo, out_max=hi)
