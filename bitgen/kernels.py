"""Which C kernel computes each layer, per target, and the code that calls it.

A target names a family of processors. Every target's kernels are portable C99 (so the host
check and the property tests run each of them through cffi); the target only decides which
one is fastest there:

* ``generic``: the reference kernels of ``c_runtime/bg_*.c``, one per op, no layout tricks.
* ``rv32ec``: no multiplier (CH32V003). Fully connected layers on int8 inputs use the nibble
  lookup-table kernel (``bg_linear_lut.c``): one table load and add per weight nibble.

A kernel is chosen in two steps: :func:`choose` (before arena planning: it says how much
scratch and output room the kernel needs) and :meth:`Choice.render` (after planning: the
constant data and the call).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from . import encodings, ir

TARGETS = ("generic", "rv32ec")
SUFFIX = {"int8": "s8", "int32": "s32"}
C_TYPE = {"int8": "int8_t", "int32": "int32_t"}
LUT_CHUNK = 16  # tables per pass of the LUT kernel: 17 * 2 * 16 = 544 bytes of scratch

GENERIC_FILES = {
    "linear": ["bg_linear.c", "bg_linear.inc"],
    "conv2d": ["bg_conv2d.c", "bg_conv2d.inc"],
    "maxpool2d": ["bg_pool.c", "bg_pool.inc"],
    "avgpool2d": ["bg_pool.c", "bg_pool.inc"],
    "relu": ["bg_elementwise.c", "bg_elementwise.inc"],
    "requant": ["bg_elementwise.c", "bg_elementwise.inc"],
    "shiftnorm": ["bg_elementwise.c", "bg_elementwise.inc"],
    "flatten": [],
}
LUT_FILES = ["bg_linear_lut.c", "bg_linear_lut.h"]


class KernelError(ValueError):
    pass


@dataclass
class Data:
    """One constant of the emitted source (flash)."""

    decl: str
    lines: list[str]
    nbytes: int
    layer: int


@dataclass
class Pointers:
    x: str  # input pointer expression (const)
    y: str  # output pointer expression
    scratch: str | None = None
    channel: str | None = None  # C expression of the channel, when computing one plane
    x_is_plane: bool = False  # with `channel`: x is that channel's plane, not the whole tensor


@dataclass
class Choice:
    kernel: str  # recorded in NAME.json
    files: list[str]
    render: Callable[["Emitter", int, Pointers], str | None]
    scratch: int = 0  # bytes of scratch in the arena while the layer runs
    out_region: int | None = None  # bytes the output needs, when more than the tensor
    in_place: bool = False  # may write its output over its input
    per_channel: bool = False  # render() can compute a single channel plane (Pointers.channel)


class Emitter:
    """Collects the constant data of one model's source."""

    def __init__(self, name: str):
        self.name = name
        self.data: list[Data] = []

    def array(self, ctype: str, ident: str, lines: list[str], nbytes: int, layer: int) -> str:
        full = f"{self.name}_{ident}"
        self.data.append(Data(f"static const {ctype} {full}[]", lines, nbytes, layer))
        return full

    def struct(self, ctype: str, ident: str, fields: list[Any]) -> str:
        full = f"{self.name}_{ident}"
        body = ", ".join(f if isinstance(f, str) else c_int(int(f)) for f in fields)
        self.data.append(Data(f"static const {ctype} {full}", [body], 0, -1))
        return full

    def flash_of_layer(self, layer: int) -> int:
        """Bytes of weights and parameters (arrays) emitted for one layer."""
        return sum(d.nbytes for d in self.data if d.layer == layer)

    def packed_weights(self, i: int, layer: ir.Linear | ir.Conv2d) -> tuple[str, str]:
        enc = encodings.get(layer.encoding)
        packed = enc.pack_rows(layer.weight.reshape(layer.weight.shape[0], -1))
        return self.array("uint8_t", f"w{i}", hex_lines(packed), len(packed), i), self.bias(i, layer)

    def bias(self, i: int, layer: ir.Linear | ir.Conv2d) -> str:
        if layer.bias is None:
            return "0"
        return self.array("int32_t", f"b{i}", int_lines(layer.bias), 4 * layer.bias.size, i)

    @property
    def flash_bytes(self) -> int:
        return sum(d.nbytes for d in self.data)


def hex_lines(data: bytes, per_line: int = 16) -> list[str]:
    return [" ".join(f"0x{b:02x}," for b in data[i : i + per_line]) for i in range(0, len(data), per_line)] or ["0"]


def int_lines(values: np.ndarray, per_line: int = 12) -> list[str]:
    vals = [int(v) for v in np.asarray(values).ravel()]
    return [", ".join(c_int(v) for v in vals[i : i + per_line]) + "," for i in range(0, len(vals), per_line)]


def word_lines(words: np.ndarray, per_line: int = 8) -> list[str]:
    vals = [int(v) for v in np.asarray(words, dtype=np.uint64).ravel()]
    return [" ".join(f"0x{v:08x}u," for v in vals[i : i + per_line]) for i in range(0, len(vals), per_line)]


def c_int(v: int) -> str:
    return "(-2147483647 - 1)" if v == -(2**31) else str(v)


def enc_id(layer: ir.Linear | ir.Conv2d) -> str:
    return f"BG_ENC_{encodings.get(layer.encoding).c_id}"


# ---------------------------------------------------------------- generic kernels
def _conv_call(em: Emitter, i: int, layer: ir.Conv2d, t_in: ir.TensorType, t_out: ir.TensorType,
               p: Pointers, fn: str) -> str:
    """Call of a conv kernel `fn` with the bg_conv2d_* signature, whole tensor or one channel."""
    c, h, wd = t_in.shape
    co, oh, ow = t_out.shape
    kh, kw = layer.weight.shape[2:]
    g = layer.groups
    w, b = em.packed_weights(i, layer)
    enc = encodings.get(layer.encoding)
    if p.channel is None:
        s = em.struct("bg_conv_shape_t", f"conv{i}", [c, h, wd, co, oh, ow, kh, kw, *layer.stride, *layer.padding, g])
        return f"{fn}({p.x}, {p.y}, &{s}, {w}, {enc_id(layer)}, {b});"
    cig = 1 if p.x_is_plane else c // g
    s = em.struct("bg_conv_shape_t", f"conv{i}", [cig, h, wd, 1, oh, ow, kh, kw, *layer.stride, *layer.padding, 1])
    x = p.x
    if not p.x_is_plane and g > 1:  # the input channels of this output channel's group
        group = p.channel if co == g else f"({p.channel} / {co // g}u)"
        x = f"{p.x} + {group} * {cig * h * wd}u"
    row = enc.row_bytes(int(np.prod(layer.weight.shape[1:])))
    bias = b if b == "0" else f"{b} + {p.channel}"
    return f"{fn}({x}, {p.y}, &{s}, {w} + {p.channel} * {row}u, {enc_id(layer)}, {bias});"


def _generic(layer: ir.Layer, t_in: ir.TensorType, t_out: ir.TensorType) -> Choice:
    sin = SUFFIX[t_in.dtype]
    files = GENERIC_FILES[layer.kind]

    def plane(p: Pointers, t: ir.TensorType) -> int:
        """Elements the kernel handles: the whole tensor, or one channel of it."""
        return t.size if p.channel is None else t.size // t.shape[0]

    if isinstance(layer, ir.Linear):
        def render(em: Emitter, i: int, p: Pointers) -> str:
            w, b = em.packed_weights(i, layer)
            return (f"bg_linear_{sin}({p.x}, {p.y}, {layer.in_features}, {layer.out_features}, "
                    f"{w}, {enc_id(layer)}, {b});")
        return Choice("generic", files, render)

    if isinstance(layer, ir.Conv2d):
        for v in (*t_in.shape, *t_out.shape, layer.groups):
            if v > 0xFFFF:
                raise KernelError(f"dimension {v} exceeds 65535")
        for v in (*layer.weight.shape[2:], *layer.stride, *layer.padding):
            if v > 255:
                raise KernelError(f"kernel, stride or padding {v} exceeds 255")
        return Choice("generic", files, lambda em, i, p: _conv_call(em, i, layer, t_in, t_out, p, f"bg_conv2d_{sin}"),
                      per_channel=True)

    if isinstance(layer, (ir.MaxPool2d, ir.AvgPool2d)):
        c, h, wd = t_in.shape
        _, oh, ow = t_out.shape

        def render(em: Emitter, i: int, p: Pointers) -> str:
            cc = c if p.channel is None else 1
            s = em.struct("bg_pool_shape_t", f"pool{i}", [cc, h, wd, oh, ow, *layer.kernel, *layer.stride])
            return f"bg_{layer.kind}_{sin}({p.x}, {p.y}, &{s});"
        return Choice("generic", files, render, in_place=True, per_channel=True)

    if isinstance(layer, ir.ReLU):
        return Choice("generic", files, lambda em, i, p: f"bg_relu_{sin}({p.x}, {p.y}, {plane(p, t_in)});",
                      in_place=True, per_channel=True)

    if isinstance(layer, ir.Requant):
        ch = layer.multiplier.size
        half_up = 1 if layer.rounding == "half_up" else 0
        lo, hi = c_int(layer.out_min), c_int(layer.out_max)

        def render(em: Emitter, i: int, p: Pointers) -> str:
            m = em.array("int32_t", f"m{i}", int_lines(layer.multiplier), 4 * ch, i)
            sh = em.array("uint8_t", f"s{i}", int_lines(layer.shift), ch, i)
            fn = f"bg_requant_to_{SUFFIX[t_out.dtype]}"
            if p.channel is not None and ch > 1:  # this channel's own multiplier and shift
                return (f"{{ const bg_requant_t q = {{{m} + {p.channel}, {sh} + {p.channel}, 1, {half_up}, {lo}, {hi}}};"
                        f" {fn}({p.x}, {p.y}, {plane(p, t_in)}, &q); }}")
            q = em.struct("bg_requant_t", f"q{i}", [m, sh, ch, half_up, layer.out_min, layer.out_max])
            n = plane(p, t_in) if p.channel is not None else t_in.size // ch
            return f"{fn}({p.x}, {p.y}, {n}, &{q});"
        return Choice("generic", files, render, in_place=True, per_channel=True)

    if isinstance(layer, ir.ShiftNorm):
        return Choice("generic", files, lambda em, i, p: f"bg_shiftnorm({p.x}, {p.y}, {t_in.size});", in_place=True)

    if isinstance(layer, ir.Flatten):
        return Choice("alias", files, lambda em, i, p: None, in_place=True)

    raise KernelError(f"no C kernel for {layer.kind}")


# ------------------------------------------------------------ nibble LUT (rv32ec)
def _lut_linear(layer: ir.Linear, t_in: ir.TensorType, offset: bool) -> Choice | None:
    """The LUT kernel for an int8-input linear layer, or None where it does not apply."""
    enc = encodings.get(layer.encoding)
    if t_in.dtype != "int8":
        return None
    n_out, n_in = layer.weight.shape
    n_cols = (n_in * enc.bits + 3) // 4
    if n_cols * 4 > 0x7FFF or n_in > 0xFFFF or n_out > 0xFFFF:
        return None
    # Exactness: every partial sum (tables hold partial column sums, in any order) must fit.
    w = np.abs(layer.weight.astype(object))
    span = (t_in.hi - t_in.lo) if offset else max(abs(t_in.lo), abs(t_in.hi))
    rowsum = layer.weight.astype(object).sum(axis=1)
    bias = np.zeros(n_out, dtype=object) if layer.bias is None else layer.bias.astype(object)
    zmax = max(abs(t_in.lo), abs(t_in.hi)) if offset else 0
    bound = max(np.abs(bias) + np.abs(rowsum) * zmax + w.sum(axis=1) * span)
    if bound > ir.INT32[1] or span * enc.max_abs * (4 // min(enc.bits, 4)) > 32767:
        return None
    n_blocks = (n_out + 7) // 8
    chunk = min(n_cols, LUT_CHUNK)

    def render(em: Emitter, i: int, p: Pointers) -> str:
        # nibble stream of each row, exactly as the packed format holds it
        packed = np.frombuffer(enc.pack_rows(layer.weight), dtype=np.uint8).reshape(n_out, -1)
        nibbles = np.stack([packed & 15, packed >> 4], axis=2).reshape(n_out, -1)[:, :n_cols]
        rows = np.zeros((n_blocks * 8, n_cols), dtype=np.uint64)
        rows[:n_out] = nibbles
        blocks = rows.reshape(n_blocks, 8, n_cols)
        words = np.zeros((n_blocks, n_cols), dtype=np.uint64)
        for r in range(8):
            words |= blocks[:, r, :] << np.uint64(4 * r)
        w_arr = em.array("uint32_t", f"w{i}", word_lines(words), 4 * words.size, i)
        b = em.bias(i, layer)
        rs = em.array("int32_t", f"r{i}", int_lines(np.array(rowsum, dtype=np.int64)), 4 * n_out, i) if offset else "0"
        prm = em.struct("bg_lut_fc_t", f"lut{i}", [w_arr, b, rs, n_in, n_out, chunk, enc_id(layer)])
        return f"bg_linear_lut_s8({p.x}, {p.y}, &{prm}, {p.scratch});"

    return Choice("lut", LUT_FILES, render, scratch=17 * 2 * (chunk + 1), out_region=n_blocks * 8 * 4)


def choose(layer: ir.Layer, t_in: ir.TensorType, t_out: ir.TensorType, target: str, index: int) -> Choice:
    if target not in TARGETS:
        raise KernelError(f"unknown target '{target}' (available: {', '.join(TARGETS)})")
    if target == "rv32ec" and isinstance(layer, ir.Linear):
        # Offsetting by the minimum pays where inputs are signed: the model input (images
        # have a constant background); ReLU-like outputs are already >= 0.
        lut = _lut_linear(layer, t_in, offset=index == 0 and t_in.lo < 0)
        if lut is not None:
            return lut
    return _generic(layer, t_in, t_out)
