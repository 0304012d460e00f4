"""The integer IR: the one data structure every back end reads.

A :class:`Model` is an input specification plus a sequence of integer layers. Everything in it
is an integer except the input scale, which only says how raw sensor values become int8 and
never enters the integer computation. Exact per-op semantics live in :mod:`bitgen.golden`.

Tensors are per-sample: ``(C, H, W)`` for images (channel-major, "CHW", the same memory order
as PyTorch) or ``(N,)`` for vectors. Every tensor has a dtype (``int8`` or ``int32``) and a
proved value interval ``[lo, hi]``; :meth:`Model.validate` derives both for every layer and
refuses a model whose accumulators could leave int32 for *some* input in the input interval,
so the C never overflows silently.

A user can build a model by hand::

    from bitgen import ir
    m = ir.Model(
        input=ir.InputSpec(shape=(16,), scale=1 / 127),
        layers=[
            ir.Linear(weight=w_int, encoding="4bitsym"),   # w_int: (10, 16) odd ints in -15..15
            ir.Requant(multiplier=[1], shift=[6]),          # int32 -> int8, round half up
        ],
        labels=[str(i) for i in range(10)],
    )
    m.validate()
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

from .. import encodings
from ..errors import BitgenError

INT8 = (-128, 127)
INT32 = (-(2**31), 2**31 - 1)
DTYPE_RANGE = {"int8": INT8, "int32": INT32}
FORMAT = "bitgen-ir"
VERSION = 1


class IRError(BitgenError, ValueError):
    """A model that is not well formed (shapes, values, overflow). The message is one line."""


@dataclass(frozen=True)
class TensorType:
    shape: tuple[int, ...]
    dtype: str
    lo: int
    hi: int

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * (1 if self.dtype == "int8" else 4)


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return (int(v), int(v))
    a, b = v
    return (int(a), int(b))


def _int_array(v: Any, what: str) -> np.ndarray:
    a = np.asarray(v)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise IRError(f"{what} must hold integers")
    elif a.dtype.kind not in "iub":
        raise IRError(f"{what} must hold integers, got dtype {a.dtype}")
    return a.astype(np.int64)


class Layer:
    kind: ClassVar[str]
    name: str

    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    def describe(self) -> str:
        return f"'{self.name}' ({self.kind})" if self.name else self.kind


@dataclass(eq=False)
class Linear(Layer):
    """y[o] = bias[o] + sum_i w[o, i] * x[i]   (int32 accumulator, int8 or int32 input)."""

    kind: ClassVar[str] = "linear"
    weight: np.ndarray  # (out, in) integer values of `encoding`
    encoding: str
    bias: np.ndarray | None = None  # (out,) int32
    name: str = ""

    def __post_init__(self) -> None:
        self.weight = _int_array(self.weight, "linear weight")
        if self.bias is not None:
            self.bias = _int_array(self.bias, "linear bias")

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])


@dataclass(eq=False)
class Conv2d(Layer):
    """2-D cross-correlation on CHW, zero padding, int32 accumulator. groups == in == out is depthwise."""

    kind: ClassVar[str] = "conv2d"
    weight: np.ndarray  # (out, in // groups, kh, kw)
    encoding: str
    bias: np.ndarray | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    name: str = ""

    def __post_init__(self) -> None:
        self.weight = _int_array(self.weight, "conv2d weight")
        if self.bias is not None:
            self.bias = _int_array(self.bias, "conv2d bias")
        self.stride = _pair(self.stride)
        self.padding = _pair(self.padding)
        self.groups = int(self.groups)


@dataclass(eq=False)
class ReLU(Layer):
    """y = max(x, 0); dtype kept."""

    kind: ClassVar[str] = "relu"
    name: str = ""


@dataclass(eq=False)
class MaxPool2d(Layer):
    """Max over each window, no padding, output size floor((H - k) / s) + 1; dtype kept."""

    kind: ClassVar[str] = "maxpool2d"
    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] | None = None  # default: = kernel
    name: str = ""

    def __post_init__(self) -> None:
        self.kernel = _pair(self.kernel)
        self.stride = _pair(self.stride) if self.stride is not None else self.kernel


@dataclass(eq=False)
class AvgPool2d(Layer):
    """Mean over each window rounded half up: floor((2*sum + n) / (2*n)), n = kh*kw; dtype kept."""

    kind: ClassVar[str] = "avgpool2d"
    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] | None = None
    name: str = ""

    def __post_init__(self) -> None:
        self.kernel = _pair(self.kernel)
        self.stride = _pair(self.stride) if self.stride is not None else self.kernel


@dataclass(eq=False)
class Flatten(Layer):
    """(C, H, W) -> (C*H*W,) in C order; the bytes do not move."""

    kind: ClassVar[str] = "flatten"
    name: str = ""


@dataclass(eq=False)
class Requant(Layer):
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
        self.multiplier = _int_array(np.atleast_1d(self.multiplier), "requant multiplier")
        self.shift = _int_array(np.atleast_1d(self.shift), "requant shift")
        lo, hi = DTYPE_RANGE.get(self.out_dtype, INT8)
        self.out_min = lo if self.out_min is None else int(self.out_min)
        self.out_max = hi if self.out_max is None else int(self.out_max)

    @property
    def is_pure_shift(self) -> bool:
        return bool(np.all(self.multiplier == 1))


@dataclass(eq=False)
class ShiftNorm(Layer):
    """Dynamic normalization of BitNetMCU, per sample: find m = max(x) over the whole tensor,
    ``shift`` = number of bits of ``max(m >> 7, 0)``; then each element:
    ``x < 0 -> 0``, else ``min((x + ((1 << shift) >> 1)) >> shift, 127)``. Output int8 in [0, 127].
    """

    kind: ClassVar[str] = "shiftnorm"
    name: str = ""


LAYER_TYPES: dict[str, type[Layer]] = {
    t.kind: t for t in (Linear, Conv2d, ReLU, MaxPool2d, AvgPool2d, Flatten, Requant, ShiftNorm)
}


@dataclass
class InputSpec:
    """How raw values become the model's int8 input.

    ``q = clamp(floor(raw / scale + 0.5) + zero_point, -128, 127)``, raw reshaped to ``shape``.
    ``scale`` is the only float in a model and is not part of the integer computation.
    """

    shape: tuple[int, ...]
    scale: float = 1.0 / 127.0
    zero_point: int = 0

    def __post_init__(self) -> None:
        self.shape = tuple(int(s) for s in self.shape)
        self.scale = float(self.scale)
        self.zero_point = int(self.zero_point)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def quantize(self, raw: np.ndarray) -> np.ndarray:
        """Raw samples (N, ...) with prod(...) == size -> int8 array (N, *shape)."""
        raw = np.asarray(raw, dtype=np.float64)
        if raw.ndim == 0 or raw[0].size != self.size:
            got = raw.shape[1:] if raw.ndim else ()
            raise IRError(
                f"input has {int(np.prod(got))} values per sample {tuple(got)}, "
                f"the model expects {self.size} {self.shape}"
            )
        q = np.floor(raw / self.scale + 0.5) + self.zero_point
        return np.clip(q, -128, 127).astype(np.int8).reshape((raw.shape[0],) + self.shape)


@dataclass(eq=False)
class Model:
    input: InputSpec
    layers: list[Layer]
    labels: list[str] | None = None
    name: str = "model"
    meta: dict[str, Any] = field(default_factory=dict)

    # ---------------------------------------------------------------- checking
    def validate(self) -> list[TensorType]:
        """Infer and check the type of every layer output; raises IRError (one line)."""
        if not self.layers:
            raise IRError("model has no layers")
        t = TensorType(self.input.shape, "int8", *INT8)
        out = []
        for i, layer in enumerate(self.layers):
            try:
                t = infer_type(layer, t)
            except IRError as e:
                raise IRError(f"layer {i} {layer.describe()}: {e}") from None
            out.append(t)
        if self.labels is not None and len(self.labels) != out[-1].size:
            raise IRError(
                f"{len(self.labels)} labels given but the model has {out[-1].size} outputs"
            )
        return out

    def input_type(self) -> TensorType:
        return TensorType(self.input.shape, "int8", *INT8)

    # ----------------------------------------------------------- serialization
    def to_dict(self) -> dict[str, Any]:
        """Plain data (dicts, lists, str, int, float, numpy int arrays): safe to store."""
        layers = []
        for layer in self.layers:
            d: dict[str, Any] = {"kind": layer.kind}
            for k, v in layer.params().items():
                if isinstance(v, np.ndarray):
                    v = v.astype(np.int32 if k != "weight" else _weight_dtype(v))
                elif isinstance(v, tuple):
                    v = list(v)
                d[k] = v
            layers.append(d)
        return {
            "format": FORMAT,
            "version": VERSION,
            "name": self.name,
            "input": {
                "shape": list(self.input.shape),
                "scale": self.input.scale,
                "zero_point": self.input.zero_point,
            },
            "labels": None if self.labels is None else [str(s) for s in self.labels],
            "meta": dict(self.meta),
            "layers": layers,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Model":
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise IRError("not a bitgen IR (missing format tag)")
        if int(d.get("version", -1)) > VERSION:
            raise IRError(f"IR version {d.get('version')} is newer than this bitgen ({VERSION})")
        try:
            layers = []
            for ld in d["layers"]:
                ld = dict(ld)
                kind = ld.pop("kind")
                if kind not in LAYER_TYPES:
                    raise IRError(f"unknown layer kind '{kind}'")
                args = {k: (np.asarray(v) if hasattr(v, "shape") else v) for k, v in ld.items()}
                if isinstance(args.get("stride"), list):
                    args["stride"] = tuple(args["stride"])
                layers.append(LAYER_TYPES[kind](**args))
            inp = d["input"]
            return cls(
                input=InputSpec(tuple(inp["shape"]), inp["scale"], inp["zero_point"]),
                layers=layers,
                labels=d.get("labels"),
                name=str(d.get("name", "model")),
                meta=dict(d.get("meta") or {}),
            )
        except (KeyError, TypeError) as e:
            raise IRError(f"malformed IR: {e}") from None

    def digest(self) -> str:
        """SHA-256 of the canonical content (name and meta excluded): the model's identity."""
        h = hashlib.sha256()
        d = self.to_dict()
        d.pop("meta")
        d.pop("name")

        def enc(v: Any) -> Any:
            if isinstance(v, np.ndarray):
                h.update(np.ascontiguousarray(v.astype("<i8")).tobytes())
                return ["array", list(v.shape)]
            if isinstance(v, dict):
                return {k: enc(x) for k, x in sorted(v.items())}
            if isinstance(v, list):
                return [enc(x) for x in v]
            return v

        h.update(json.dumps(enc(d), sort_keys=True).encode())
        return h.hexdigest()

    def macs(self) -> int:
        """Multiply-accumulates per inference (linear and conv layers)."""
        total = 0
        types = [self.input_type()] + self.validate()
        for layer, t_out in zip(self.layers, types[1:]):
            if isinstance(layer, (Linear, Conv2d)):
                total += t_out.size * int(np.prod(layer.weight.shape[1:]))
        return total


def _weight_dtype(w: np.ndarray) -> type:
    return np.int8 if w.size == 0 or (w.min() >= -128 and w.max() <= 127) else np.int32


# ------------------------------------------------------------------------ type inference
def _check_weights(layer: Linear | Conv2d) -> encodings.Encoding:
    try:
        enc = encodings.get(layer.encoding)
        enc.encode(layer.weight)
    except ValueError as e:
        raise IRError(str(e)) from None
    if layer.bias is not None:
        if layer.bias.shape != (layer.weight.shape[0],):
            raise IRError(
                f"bias has shape {tuple(layer.bias.shape)}, expected ({layer.weight.shape[0]},)"
            )
        if layer.bias.min(initial=0) < INT32[0] or layer.bias.max(initial=0) > INT32[1]:
            raise IRError("bias does not fit int32")
    return enc


def _accumulator_bound(w: np.ndarray, bias: np.ndarray | None, t_in: TensorType) -> tuple[int, int]:
    """Exact output interval and a bound on every partial sum, per output channel.

    Every partial sum, in any order, lies within |bias| + sum |w| * max(|lo|, |hi|); that bound
    must fit int32. The returned interval is the exact range of the final sum (used downstream).
    """
    w2 = w.reshape(w.shape[0], -1).astype(object)  # Python ints: no overflow in the proof itself
    lo, hi = t_in.lo, t_in.hi
    b = np.zeros(w.shape[0], dtype=object) if bias is None else bias.astype(object)
    amax = max(abs(lo), abs(hi))
    partial = np.abs(b) + np.abs(w2).sum(axis=1) * amax
    worst = max(partial) if len(partial) else 0
    if worst > INT32[1]:
        raise IRError(
            f"int32 accumulator may overflow (bound {worst} > {INT32[1]} for inputs in [{lo}, {hi}])"
        )
    pos = np.where(w2 > 0, w2, 0)
    neg = np.where(w2 < 0, w2, 0)
    out_hi = b + (pos * hi).sum(axis=1) + (neg * lo).sum(axis=1)
    out_lo = b + (pos * lo).sum(axis=1) + (neg * hi).sum(axis=1)
    return int(min(out_lo)), int(max(out_hi))


def infer_type(layer: Layer, t: TensorType) -> TensorType:
    """Output type of `layer` applied to a tensor of type `t` (raises IRError)."""
    if isinstance(layer, Linear):
        if len(t.shape) != 1:
            raise IRError(f"expects a vector input, got shape {t.shape} (add a flatten layer)")
        if layer.weight.ndim != 2:
            raise IRError(f"weight must be 2-D (out, in), got shape {layer.weight.shape}")
        if layer.in_features != t.shape[0]:
            raise IRError(f"expects {layer.in_features} inputs, previous layer gives {t.shape[0]}")
        _check_weights(layer)
        lo, hi = _accumulator_bound(layer.weight, layer.bias, t)
        return TensorType((layer.out_features,), "int32", lo, hi)

    if isinstance(layer, Conv2d):
        if len(t.shape) != 3:
            raise IRError(f"expects a (C, H, W) input, got shape {t.shape}")
        if layer.weight.ndim != 4:
            raise IRError(f"weight must be 4-D (out, in/groups, kh, kw), got {layer.weight.shape}")
        c, h, w = t.shape
        co, ci_g, kh, kw = layer.weight.shape
        g = layer.groups
        if g < 1 or c % g or co % g:
            raise IRError(f"groups={g} must divide input channels {c} and output channels {co}")
        if ci_g != c // g:
            raise IRError(f"weight expects {ci_g * g} input channels, previous layer gives {c}")
        (sh, sw), (ph, pw) = layer.stride, layer.padding
        if sh < 1 or sw < 1 or ph < 0 or pw < 0 or kh < 1 or kw < 1:
            raise IRError("stride must be >= 1, padding >= 0 and kernel >= 1")
        oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        if oh < 1 or ow < 1:
            raise IRError(f"kernel {kh}x{kw} does not fit input {h}x{w} with padding {ph},{pw}")
        _check_weights(layer)
        t_in = t
        if ph or pw:  # zero padding: 0 joins the input interval
            t_in = TensorType(t.shape, t.dtype, min(t.lo, 0), max(t.hi, 0))
        lo, hi = _accumulator_bound(layer.weight, layer.bias, t_in)
        return TensorType((co, oh, ow), "int32", lo, hi)

    if isinstance(layer, ReLU):
        return TensorType(t.shape, t.dtype, max(t.lo, 0), max(t.hi, 0))

    if isinstance(layer, (MaxPool2d, AvgPool2d)):
        if len(t.shape) != 3:
            raise IRError(f"expects a (C, H, W) input, got shape {t.shape}")
        c, h, w = t.shape
        (kh, kw), (sh, sw) = layer.kernel, layer.stride
        if min(kh, kw, sh, sw) < 1:
            raise IRError("kernel and stride must be >= 1")
        if kh > h or kw > w:
            raise IRError(f"window {kh}x{kw} is larger than input {h}x{w}")
        if isinstance(layer, AvgPool2d) and t.dtype == "int32":
            n = kh * kw
            if 2 * max(abs(t.lo), abs(t.hi)) * n + n > INT32[1]:
                raise IRError("window sum may overflow int32")
        return TensorType((c, (h - kh) // sh + 1, (w - kw) // sw + 1), t.dtype, t.lo, t.hi)

    if isinstance(layer, Flatten):
        return TensorType((t.size,), t.dtype, t.lo, t.hi)

    if isinstance(layer, Requant):
        if t.dtype != "int32":
            raise IRError("expects an int32 input (an accumulator)")
        if layer.rounding not in ("half_up", "floor"):
            raise IRError(f"rounding must be 'half_up' or 'floor', got '{layer.rounding}'")
        if layer.out_dtype not in DTYPE_RANGE:
            raise IRError(f"out_dtype must be int8 or int32, got '{layer.out_dtype}'")
        dlo, dhi = DTYPE_RANGE[layer.out_dtype]
        if not dlo <= layer.out_min <= layer.out_max <= dhi:
            raise IRError(f"clamp range [{layer.out_min}, {layer.out_max}] outside {layer.out_dtype}")
        n = layer.multiplier.size
        if layer.shift.size != n or n not in (1, t.shape[0]):
            raise IRError(
                f"multiplier/shift must have 1 or {t.shape[0]} (channel) entries, "
                f"got {layer.multiplier.size}/{layer.shift.size}"
            )
        if layer.shift.min() < 0 or layer.shift.max() > 62:
            raise IRError("shift must be in 0..62")
        if layer.multiplier.min() < 1 or layer.multiplier.max() > INT32[1]:
            raise IRError("multiplier must be in 1..2**31-1")
        amax = max(abs(t.lo), abs(t.hi))
        if amax * int(layer.multiplier.max()) + (1 << int(layer.shift.max())) >= 2**63:
            raise IRError("64-bit product may overflow")
        m, s = layer.multiplier.astype(object), layer.shift.astype(object)
        lo = min((t.lo * mi) >> si for mi, si in zip(m, s))
        hi = max((t.hi * mi + (1 << si)) >> si for mi, si in zip(m, s))
        return TensorType(
            t.shape,
            layer.out_dtype,
            min(max(lo, layer.out_min), layer.out_max),
            max(min(hi, layer.out_max), layer.out_min),
        )

    if isinstance(layer, ShiftNorm):
        if t.dtype != "int32":
            raise IRError("expects an int32 input (an accumulator)")
        if t.hi + (max(t.hi, 0) >> 7) + 1 > INT32[1]:
            raise IRError("rounding term may overflow int32")
        return TensorType(t.shape, "int8", 0, 127)

    raise IRError(f"unsupported layer type {type(layer).__name__}")
