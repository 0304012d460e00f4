"""Static requantization: multiply, shift with rounding, add a zero point, clamp."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..ir.types import DTYPE_RANGE, INT32, IRError, TensorType, int_array
from .base import NP_DTYPE, Op, check_output, clamp_defaults, clamped_type

ROUNDINGS = ("half_up", "floor", "half_even", "half_away", "fp32")
PLAIN = ("half_up", "floor")  # what every kernel set's fused output stages implement
FP32_BITS = 24  # significant bits of a float32


def per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    """Shape a per-tensor (1,) or per-channel (C,) parameter to broadcast over axis 1."""
    return v.astype(np.int64).reshape((1, -1) + (1,) * (ndim - 2))


def bit_length(a: np.ndarray) -> np.ndarray:
    """Bits of each value of ``a`` (int64, >= 0, < 2**62), exactly."""
    _, e = np.frexp(a.astype(np.float64))  # a < 2**(e) ... off by one where the float rounded up
    e = e.astype(np.int64)
    low = (e > 0) & ((a >> np.maximum(e - 1, 0)) == 0)
    return np.where(a == 0, 0, e - low)


def round_significant(v: np.ndarray, bits: int = FP32_BITS) -> np.ndarray:
    """``v`` (int64) rounded to ``bits`` significant bits, ties to even: the value a float with a
    ``bits``-bit significand holds (float32: 24), as the FPU rounds it."""
    a = np.abs(v)
    d = np.maximum(bit_length(a) - bits, 0)
    q, r = a >> d, a & ((np.int64(1) << d) - 1)
    half = np.where(d > 0, np.int64(1) << np.maximum(d - 1, 0), 0)
    up = (d > 0) & ((r > half) | ((r == half) & ((q & 1) == 1)))
    return np.sign(v) * ((q + up) << d)


def shift_half_even(v: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``v / 2**s`` rounded to the nearest integer, ties to the even one (``s >= 0``)."""
    q = np.right_shift(v, s)
    r = v - np.left_shift(q, s)
    half = np.where(s > 0, np.left_shift(np.int64(1), np.maximum(s - 1, 0)), 0)
    return q + ((s > 0) & ((r > half) | ((r == half) & ((q & 1) == 1))))


def shift_half_away(v: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``v / 2**s`` rounded to the nearest integer, ties away from zero (``s >= 0``)."""
    q = np.right_shift(v, s)
    r = v - np.left_shift(q, s)
    half = np.where(s > 0, np.left_shift(np.int64(1), np.maximum(s - 1, 0)), 0)
    return q + ((s > 0) & ((r > half) | ((r == half) & (v >= 0))))


def _one(x: int, m: int, s: int, rounding: str) -> int:
    """One value of the rounding stage, in Python integers (for the proof of the range)."""
    xv, mv, sv = np.array([x], dtype=np.int64), np.int64(m), np.array([s], dtype=np.int64)
    if rounding == "fp32":
        return int(shift_half_even(round_significant(round_significant(xv) * mv), sv)[0])
    if rounding == "half_even":
        return int(shift_half_even(xv * mv, sv)[0])
    if rounding == "half_away":
        return int(shift_half_away(xv * mv, sv)[0])
    return (x * m + ((1 << s) >> 1 if rounding == "half_up" else 0)) >> s


@dataclass(eq=False)
class Requant(Op):
    """Static requantization, per tensor or per channel (axis 0):

    ``y = clamp(round(x * multiplier[c] / 2**shift[c]) + zero_point, out_min, out_max)``
    with ``round`` one of: ``half_up`` (``+ 2**(shift-1)`` then arithmetic shift), ``floor``
    (plain shift), ``half_even`` (the exact quotient, ties to even), ``half_away`` (ties away from
    zero, the fixed-point rounding of ONNX Runtime's QLinearAdd) or ``fp32`` (ONNX Runtime's
    float requantization: x and then the product rounded to float32, ties to even, then to an
    integer, ties to even; the multiplier holds a float32 significand, < 2**24). The product
    is formed in 64 bits. A pure shift is multiplier 1.
    """

    kind: ClassVar[str] = "requant"
    multiplier: np.ndarray = field(default_factory=lambda: np.array([1]))
    shift: np.ndarray = field(default_factory=lambda: np.array([0]))
    rounding: str = "half_up"  # or "floor", "half_even", "half_away", "fp32"
    out_dtype: str = "int8"
    out_min: int | None = None  # default: dtype minimum
    out_max: int | None = None  # default: dtype maximum
    name: str = ""
    zero_point: int = 0  # added after the rounding (an asymmetric output's zero point)

    def __post_init__(self) -> None:
        self.multiplier = int_array(np.atleast_1d(self.multiplier), "requant multiplier")
        self.shift = int_array(np.atleast_1d(self.shift), "requant shift")
        self.zero_point = int(self.zero_point)
        self.out_min, self.out_max = clamp_defaults(self.out_dtype, self.out_min, self.out_max)

    def params(self) -> dict[str, Any]:
        p = super().params()
        if not self.zero_point:  # models without one keep the file layout (and identity) they had
            p.pop("zero_point")
        return p

    @property
    def is_pure_shift(self) -> bool:
        return bool(np.all(self.multiplier == 1))

    @property
    def is_plain(self) -> bool:
        """Rounds half up or down and adds no zero point: what fused output stages implement."""
        return self.rounding in PLAIN and self.zero_point == 0

    def infer(self, t: TensorType) -> TensorType:
        if t.dtype != "int32":
            raise IRError("expects an int32 input (an accumulator)")
        if self.rounding not in ROUNDINGS:
            raise IRError(f"rounding must be one of {', '.join(ROUNDINGS)}; got '{self.rounding}'")
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
        if self.rounding == "fp32" and self.multiplier.max() >= 2**FP32_BITS:
            raise IRError("fp32 rounding takes a float32 significand: multipliers below 2**24")
        if abs(self.zero_point) > INT32[1]:
            raise IRError("zero_point must fit int32")
        # every rounding is monotonic in x: the ends of the input interval bound the output
        pairs = list(zip(self.multiplier.tolist(), self.shift.tolist()))
        lo = min(_one(t.lo, m, s, self.rounding) for m, s in pairs) + self.zero_point
        hi = max(_one(t.hi, m, s, self.rounding) for m, s in pairs) + self.zero_point
        return clamped_type(t.shape, self.out_dtype, lo, hi, self.out_min, self.out_max)

    def golden(self, x: np.ndarray) -> np.ndarray:
        """``clamp(round(x * m / 2**s) + zero_point, out_min, out_max)`` per tensor or per channel.

        ``x * m`` is exact in 64 bits (proved by infer). Rounding: ``half_up`` adds
        ``1 << (s - 1)`` when ``s > 0`` before the arithmetic right shift; ``floor`` adds nothing;
        ``half_even`` rounds the exact quotient to the nearest integer, ties to the even one;
        ``half_away`` the same with ties away from zero;
        ``fp32`` first rounds ``x`` to 24 significant bits (ties to even: int32 -> float32), then
        ``x * m`` to 24 significant bits (the float32 product of x and the scale ``m / 2**s``),
        then rounds that to an integer, ties to even: ONNX Runtime's ``nearbyint(float(x) * scale)``.
        """
        m = per_channel(self.multiplier, x.ndim)
        s = per_channel(self.shift, x.ndim)
        xi = x.astype(np.int64)
        if self.rounding == "fp32":
            y = shift_half_even(round_significant(round_significant(xi) * m), s)
        elif self.rounding == "half_even":
            y = shift_half_even(xi * m, s)
        elif self.rounding == "half_away":
            y = shift_half_away(xi * m, s)
        else:
            y = xi * m
            if self.rounding == "half_up":
                y += np.where(s > 0, np.left_shift(1, np.maximum(s - 1, 0)), 0)
            y = np.right_shift(y, s)
        y = np.clip(y + self.zero_point, self.out_min, self.out_max)
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
        if rounding == "fp32":
            mult = np.minimum(mult, 2**FP32_BITS - 1)
        zero_point = 0 if rounding in PLAIN and draw(st.booleans()) else draw(st.integers(-128, 127))
        return cls(multiplier=mult, shift=shift, rounding=rounding, out_dtype=out_dtype,
                   out_min=lo, out_max=hi, zero_point=zero_point)
