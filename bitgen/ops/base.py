"""What every op of the IR provides. One op, one module of :mod:`bitgen.ops`:

* its IR fields (a dataclass; integers only),
* :meth:`Op.infer`: the output type and the proved value interval, or an :class:`IRError`,
* :meth:`Op.golden`: its exact integer semantics in NumPy (the specification; the docstring
  states rounding, saturation and ties),
* :meth:`Op.macs` and :meth:`Op.channel_local` (what planners ask of it),
* :meth:`Op.random`: a random valid instance for the property tests.

The torch side (:mod:`bitgen.nn.export`) and the back ends (:mod:`bitgen.backends`) map ops
to and from their own worlds; they never need to know more of an op than this.
"""
from __future__ import annotations

from dataclasses import fields
from typing import Any, ClassVar

import numpy as np

from .. import encodings
from ..ir.types import DTYPE_RANGE, INT32, IRError, TensorType

NP_DTYPE = {"int8": np.int8, "int32": np.int32}


class GoldenOverflow(ArithmeticError):
    """A golden result left its dtype: validate's proof was wrong (a bug, never user input)."""


def fit(y: np.ndarray, dtype: str, what: str) -> np.ndarray:
    """``y`` as `dtype`, after checking every value fits (golden's second line of defence)."""
    lo, hi = DTYPE_RANGE[dtype]
    if y.size and (y.min() < lo or y.max() > hi):
        raise GoldenOverflow(f"{what}: result leaves {dtype}")
    return y.astype(NP_DTYPE[dtype])


class Op:
    kind: ClassVar[str]
    arity: ClassVar[int] = 1  # how many tensors the op reads
    name: str

    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    def describe(self) -> str:
        return f"'{self.name}' ({self.kind})" if self.name else self.kind

    def infer(self, *ts: TensorType) -> TensorType:
        """The output type for inputs of types `ts` (one per input; raises IRError, one line)."""
        raise NotImplementedError

    def golden(self, *xs: np.ndarray) -> np.ndarray:
        """The output for batches ``xs`` (N, *input shape), one per input."""
        raise NotImplementedError

    def macs(self, t_out: TensorType) -> int:
        """Multiply-accumulates per inference."""
        return 0

    def channel_local(self, t_in: TensorType) -> bool:
        """True when output channel c depends on input channel c alone (a CHW input)."""
        return False

    @classmethod
    def random_weight(cls, t: TensorType) -> int:
        """How often the property tests' random models pick this op after a tensor of type t
        (0: never)."""
        return 0

    @classmethod
    def random(cls, draw: Any, rng: np.random.Generator, t: TensorType) -> "Op":
        """A random instance for an input of type `t`; `draw` is hypothesis's, `rng` draws
        bulk values (weights)."""
        raise NotImplementedError


# ------------------------------------------------ the output stage: rounding and a clamp range
def clamp_defaults(out_dtype: str, out_min: int | None, out_max: int | None) -> tuple[int, int]:
    """The clamp range of an output stage: the dtype's whole range where not given."""
    lo, hi = DTYPE_RANGE.get(out_dtype, DTYPE_RANGE["int8"])
    return (lo if out_min is None else int(out_min)), (hi if out_max is None else int(out_max))


def check_output(out_dtype: str, out_min: int, out_max: int) -> None:
    if out_dtype not in DTYPE_RANGE:
        raise IRError(f"out_dtype must be int8 or int32, got '{out_dtype}'")
    dlo, dhi = DTYPE_RANGE[out_dtype]
    if not dlo <= out_min <= out_max <= dhi:
        raise IRError(f"clamp range [{out_min}, {out_max}] outside {out_dtype}")


def clamped_type(shape: tuple[int, ...], out_dtype: str, lo: int, hi: int, out_min: int, out_max: int) -> TensorType:
    """The output type of values in [lo, hi] clamped to [out_min, out_max]."""
    return TensorType(shape, out_dtype, min(max(lo, out_min), out_max), max(min(hi, out_max), out_min))


def round_shift(v: int, shift: int) -> int:
    """``v / 2**shift`` rounded half up (toward +inf on ties): ``(v + ((1 << s) >> 1)) >> s``."""
    return (v + ((1 << shift) >> 1)) >> shift


# ------------------------------------------------------------- shared by the weighted ops
def check_weights(weight: np.ndarray, encoding: str, bias: np.ndarray | None) -> encodings.Encoding:
    try:
        enc = encodings.get(encoding)
        enc.encode(weight)
    except ValueError as e:
        raise IRError(str(e)) from None
    if bias is not None:
        if bias.shape != (weight.shape[0],):
            raise IRError(f"bias has shape {tuple(bias.shape)}, expected ({weight.shape[0]},)")
        if bias.min(initial=0) < INT32[0] or bias.max(initial=0) > INT32[1]:
            raise IRError("bias does not fit int32")
    return enc


def accumulator_range(w: np.ndarray, bias: np.ndarray | None, t_in: TensorType) -> tuple[int, int]:
    """Exact output interval of ``bias + sum w x`` over inputs in [lo, hi], after proving that
    every partial sum fits int32 (:func:`bitgen.ir.bounds.partial_sum_bound`)."""
    from ..ir.bounds import partial_sum_bound

    worst = partial_sum_bound(w, bias, t_in.amax)
    if worst > INT32[1]:
        raise IRError(f"int32 accumulator may overflow (bound {worst} > {INT32[1]} for inputs in "
                      f"[{t_in.lo}, {t_in.hi}])")
    w2 = w.reshape(w.shape[0], -1).astype(object)  # Python ints: no overflow in the proof itself
    b = np.zeros(w.shape[0], dtype=object) if bias is None else bias.astype(object)
    pos, neg = np.where(w2 > 0, w2, 0), np.where(w2 < 0, w2, 0)
    out_hi = b + (pos * t_in.hi).sum(axis=1) + (neg * t_in.lo).sum(axis=1)
    out_lo = b + (pos * t_in.lo).sum(axis=1) + (neg * t_in.hi).sum(axis=1)
    return int(min(out_lo)), int(max(out_hi))


def random_weights(draw: Any, rng: np.random.Generator, shape: tuple[int, ...],
                   t_in: TensorType | None = None) -> tuple[np.ndarray, str]:
    """Random weights of a random encoding; after a binary input `t_in`, half the time all ±1
    (every encoding holds them), the binary x binary products of XNOR kernels."""
    from hypothesis import strategies as st

    enc = draw(st.sampled_from(sorted(encodings.ENCODINGS)))
    values = np.array([-1, 1]) if t_in is not None and t_in.binary and draw(st.booleans()) else \
        np.array(encodings.get(enc).values)
    return rng.choice(values, size=shape), enc


def random_bias(draw: Any, rng: np.random.Generator, n: int) -> np.ndarray | None:
    from hypothesis import strategies as st

    if not draw(st.booleans()):
        return None
    return rng.integers(-(2 ** draw(st.integers(0, 20))), 2 ** draw(st.integers(0, 20)) + 1, n)
