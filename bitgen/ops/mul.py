"""Element-wise product of two tensors of one shape, with rounding and saturation: PixelRNN's
gate ``h_t = f_t * h_{t-1}`` (±1 times ±1), or any integer product that fits int32."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..ir.types import DTYPE_RANGE, INT32, IRError, TensorType
from .base import NP_DTYPE, Op, check_output, clamp_defaults, clamped_type, round_shift


@dataclass(eq=False)
class Mul(Op):
    """``y = clamp((a * b + ((1 << shift) >> 1)) >> shift, out_min, out_max)``: one rounding,
    half up (toward +inf on ties), then saturation. The C forms ``a * b`` and the rounding in
    int32, so infer refuses inputs where ``|a| * |b| + 2**shift`` could leave int32."""

    kind: ClassVar[str] = "mul"
    arity: ClassVar[int] = 2
    shift: int = 0  # arithmetic right shift of the product, rounded half up
    out_dtype: str = "int8"
    out_min: int | None = None  # default: dtype minimum
    out_max: int | None = None  # default: dtype maximum
    name: str = ""

    def __post_init__(self) -> None:
        self.shift = int(self.shift)
        self.out_min, self.out_max = clamp_defaults(self.out_dtype, self.out_min, self.out_max)

    def infer(self, a: TensorType, b: TensorType) -> TensorType:
        if a.shape != b.shape:
            raise IRError(f"inputs have shapes {a.shape} and {b.shape}; they must be equal")
        check_output(self.out_dtype, self.out_min, self.out_max)
        if not 0 <= self.shift <= 30:
            raise IRError(f"shift must be in 0..30, got {self.shift}")
        if a.amax * b.amax + (1 << self.shift) > INT32[1]:
            raise IRError(f"the product may overflow int32 (|a| <= {a.amax}, |b| <= {b.amax}, "
                          f"shift {self.shift})")
        corners = [x * y for x in (a.lo, a.hi) for y in (b.lo, b.hi)]
        # rounding is monotonic: the corners' rounded values bound every rounded product
        t = clamped_type(a.shape, self.out_dtype, round_shift(min(corners), self.shift),
                         round_shift(max(corners), self.shift), self.out_min, self.out_max)
        # ±1 times ±1 is ±1, kept exactly when nothing shifts or clamps it
        binary = a.binary and b.binary and self.shift == 0 and self.out_min <= -1 and self.out_max >= 1
        return TensorType(t.shape, t.dtype, t.lo, t.hi, binary)

    def golden(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``clamp((a * b + ((1 << shift) >> 1)) >> shift, out_min, out_max)``, exact in int64."""
        v = a.astype(np.int64) * b.astype(np.int64)
        v = np.right_shift(v + ((1 << self.shift) >> 1), self.shift)
        return np.clip(v, self.out_min, self.out_max).astype(NP_DTYPE[self.out_dtype])

    def channel_local(self, t_in: TensorType) -> bool:
        return False  # reads two tensors: never part of a one-input channel-by-channel step

    @classmethod
    def random_weight(cls, t: TensorType) -> int:
        return 0  # drawn by the graph strategy, which knows the other input

    @classmethod
    def random(cls, draw: Any, rng: np.random.Generator, t: TensorType) -> "Mul":
        """For inputs whose larger magnitude is t's: a shift around what brings the product
        to about 8 bits (or 0, the exact product), sometimes a narrower clamp."""
        from hypothesis import strategies as st

        out_dtype = draw(st.sampled_from(["int8", "int8", "int32"]))
        lo, hi = DTYPE_RANGE[out_dtype]
        if draw(st.booleans()):
            lo, hi = draw(st.integers(lo, 0)), draw(st.integers(0, hi))
        span = min(2 * max(t.amax, 1).bit_length(), 34)
        shift = draw(st.one_of(st.just(0), st.integers(max(span - 10, 0), min(max(span - 4, 0), 30))))
        return cls(shift=shift, out_dtype=out_dtype, out_min=lo, out_max=hi)
