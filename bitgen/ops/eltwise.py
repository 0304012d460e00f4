"""Element-wise ops of two tensors of one shape: Add and Sub (residual connections), with
per-input integer rescaling, rounding and saturation."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..ir.types import DTYPE_RANGE, INT32, IRError, TensorType
from .base import NP_DTYPE, Op, check_output, clamp_defaults, clamped_type, round_shift


@dataclass(eq=False)
class _Eltwise(Op):
    arity: ClassVar[int] = 2
    sign: ClassVar[int]  # +1: add, -1: subtract the second input
    scale_a: int = 1  # integer multiplier of the first input
    scale_b: int = 1  # ... and of the second
    shift: int = 0  # arithmetic right shift of the sum, rounded half up
    out_dtype: str = "int8"
    out_min: int | None = None  # default: dtype minimum
    out_max: int | None = None  # default: dtype maximum
    name: str = ""

    def __post_init__(self) -> None:
        self.scale_a, self.scale_b, self.shift = int(self.scale_a), int(self.scale_b), int(self.shift)
        self.out_min, self.out_max = clamp_defaults(self.out_dtype, self.out_min, self.out_max)

    def infer(self, a: TensorType, b: TensorType) -> TensorType:
        if a.shape != b.shape:
            raise IRError(f"inputs have shapes {a.shape} and {b.shape}; they must be equal")
        check_output(self.out_dtype, self.out_min, self.out_max)
        if not (0 <= self.scale_a <= INT32[1] and 0 <= self.scale_b <= INT32[1] and 0 <= self.shift <= 31):
            raise IRError("scales must be in 0..2**31-1 and the shift in 0..31")
        # The C kernel forms a * sa + sign * b * sb + rounding in int32.
        if a.amax * self.scale_a + b.amax * self.scale_b + (1 << self.shift) > INT32[1]:
            raise IRError("the scaled sum may overflow int32 (lower the scales)")
        if self.sign > 0:
            lo = a.lo * self.scale_a + b.lo * self.scale_b
            hi = a.hi * self.scale_a + b.hi * self.scale_b
        else:
            lo = a.lo * self.scale_a - b.hi * self.scale_b
            hi = a.hi * self.scale_a - b.lo * self.scale_b
        return clamped_type(a.shape, self.out_dtype, round_shift(lo, self.shift), round_shift(hi, self.shift),
                            self.out_min, self.out_max)

    def golden(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``clamp((a * scale_a ± b * scale_b + ((1 << shift) >> 1)) >> shift, out_min, out_max)``:
        one rounding, half up (toward +inf on ties), then saturation. The MAX78000's
        element-wise add/sub is scales 1, shift 0, int8."""
        v = a.astype(np.int64) * self.scale_a + self.sign * b.astype(np.int64) * self.scale_b
        v = np.right_shift(v + ((1 << self.shift) >> 1), self.shift)
        return np.clip(v, self.out_min, self.out_max).astype(NP_DTYPE[self.out_dtype])

    def channel_local(self, t_in: TensorType) -> bool:
        return False  # reads two tensors: never part of a one-input channel-by-channel step

    @classmethod
    def random_weight(cls, t: TensorType) -> int:
        return 0  # drawn by the graph strategy, which knows the other input

    @classmethod
    def random(cls, draw: Any, rng: np.random.Generator, t: TensorType) -> "_Eltwise":
        from hypothesis import strategies as st

        out_dtype = draw(st.sampled_from(["int8", "int8", "int32"]))
        lo, hi = DTYPE_RANGE[out_dtype]
        if draw(st.booleans()):
            lo, hi = draw(st.integers(lo, 0)), draw(st.integers(0, hi))
        big = min(2**15, max(1, (INT32[1] // 2 - 2**16) // max(t.amax, 1)))
        return cls(scale_a=draw(st.integers(0, big)), scale_b=draw(st.integers(0, big)),
                   shift=draw(st.integers(0, 16)), out_dtype=out_dtype, out_min=lo, out_max=hi)


@dataclass(eq=False)
class Add(_Eltwise):
    """``y = clamp(round((a * scale_a + b * scale_b) / 2**shift), out_min, out_max)``, round half up."""

    kind: ClassVar[str] = "add"
    sign: ClassVar[int] = 1


@dataclass(eq=False)
class Sub(_Eltwise):
    """``y = clamp(round((a * scale_a - b * scale_b) / 2**shift), out_min, out_max)``, round half up."""

    kind: ClassVar[str] = "sub"
    sign: ClassVar[int] = -1
