"""The reference kernels of ``c_runtime/bg_*.c``: one per op, any shape, no layout tricks."""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from .... import encodings, ir
from ..literals import SUFFIX, hex_lines, int_lines
from .base import Choice, KernelError, ModelSource, Pointers, enc_id

ELTWISE = ["bg_eltwise.c", "bg_eltwise.h"]  # the element-wise ops of graphs
FILES = {
    "linear": ["bg_linear.c", "bg_linear.inc"],
    "conv2d": ["bg_conv2d.c", "bg_conv2d.inc"],
    "maxpool2d": ["bg_pool.c", "bg_pool.inc"],
    "avgpool2d": ["bg_pool.c", "bg_pool.inc"],
    "relu": ["bg_elementwise.c", "bg_elementwise.inc"],
    "requant": ["bg_elementwise.c", "bg_elementwise.inc"],
    "requant_modes": ["bg_requant_modes.c", "bg_requant_modes.h"],
    "shiftnorm": ["bg_elementwise.c", "bg_elementwise.inc"],
    "flatten": [],
    "unflatten": [],
    "add": ELTWISE,
    "sub": ELTWISE,
    "abs": ELTWISE,
    "concat": ELTWISE,
    "upsample": ["bg_upsample.c", "bg_upsample.h", "bg_upsample.inc"],
    "tile": ["bg_tile.c", "bg_tile.h", "bg_tile.inc"],
    "conv_transpose2d": ["bg_conv_transpose2d.c", "bg_conv_transpose2d.h", "bg_conv_transpose2d.inc"],
    "sign": ELTWISE,
    "mul": ELTWISE,
    "change_gate": ["bg_change.c", "bg_change.h", "bg_conv2d_plane.h"],  # the fused kernel's bg_post_t
}


def conv_call(src: ModelSource, i: int, layer: ir.Conv2d, t_in: ir.TensorType, t_out: ir.TensorType,
              p: Pointers, fn: str) -> str:
    """Call of a conv kernel `fn` with the bg_conv2d_* signature, whole tensor or one channel."""
    c, h, wd = t_in.shape
    co, oh, ow = t_out.shape
    kh, kw = layer.weight.shape[2:]
    g = layer.groups
    w, b = src.packed_weights(i, layer)
    enc = encodings.get(layer.encoding)
    if p.channel is None:
        s = src.struct("bg_conv_shape_t", f"conv{i}", [c, h, wd, co, oh, ow, kh, kw, *layer.stride, *layer.padding, g])
        return f"{fn}({p.x}, {p.y}, &{s}, {w}, {enc_id(layer)}, {b});"
    cig = 1 if p.x_is_plane else c // g
    s = src.struct("bg_conv_shape_t", f"conv{i}", [cig, h, wd, 1, oh, ow, kh, kw, *layer.stride, *layer.padding, 1])
    x = p.x
    if not p.x_is_plane and g > 1:  # the input channels of this output channel's group
        group = p.channel if co == g else f"({p.channel} / {co // g}u)"
        x = f"{p.x} + {group} * {cig * h * wd}u"
    row = enc.row_bytes(math.prod(layer.weight.shape[1:]))
    bias = b if b == "0" else f"{b} + {p.channel}"
    return f"{fn}({x}, {p.y}, &{s}, {w} + {p.channel} * {row}u, {enc_id(layer)}, {bias});"


def requant_fits_32(layer: ir.Requant, t_in: ir.TensorType) -> tuple[bool, bool]:
    """(32-bit arithmetic is exact, with the multiplier split in two 8-bit halves) for
    bg_requant32_to: |x| * m < 2^32 formed directly, or split when s >= 8 and |x| < 2^23; the
    result must fit int32. Otherwise the kernel forms 64-bit products."""
    amax = t_in.amax
    pairs = [(int(m), int(sh)) for m, sh in zip(layer.multiplier, layer.shift)]
    fits = all(m < 2**16 and sh <= 31 and (amax * m >> sh) + 1 < 2**31 for m, sh in pairs)
    direct = fits and all(amax * m < 2**32 for m, _ in pairs)
    split = fits and not direct and amax < 2**23 and all(sh >= 8 for _, sh in pairs)
    return direct or split, split


def _plane(p: Pointers, t: ir.TensorType) -> int | str:
    """Elements a kernel handles: the whole tensor, one channel of it, or a band of its rows."""
    if p.channel is not None and p.elements is not None:
        return p.elements
    return t.size if p.channel is None else t.size // t.shape[0]


def _linear(layer: ir.Linear, t_in: ir.TensorType, t_out: ir.TensorType, others: list[ir.TensorType]) -> Choice:
    sin = SUFFIX[t_in.dtype]

    def render(src: ModelSource, i: int, p: Pointers) -> str:
        w, b = src.packed_weights(i, layer)
        return (f"bg_linear_{sin}({p.x}, {p.y}, {layer.in_features}, {layer.out_features}, "
                f"{w}, {enc_id(layer)}, {b});")
    return Choice("generic", FILES["linear"], render)


def _conv2d(layer: ir.Conv2d, t_in: ir.TensorType, t_out: ir.TensorType, others: list[ir.TensorType]) -> Choice:
    for v in (*t_in.shape, *t_out.shape, layer.groups):
        if v > 0xFFFF:
            raise KernelError(f"dimension {v} exceeds 65535")
    for v in (*layer.weight.shape[2:], *layer.stride, *layer.padding):
        if v > 255:
            raise KernelError(f"kernel, stride or padding {v} exceeds 255")
    fn = f"bg_conv2d_{SUFFIX[t_in.dtype]}"
    # one output at a time in raster order, read before it is stored: without padding a plane
    # can overwrite its input plane
    return Choice("generic", FILES["conv2d"], lambda src, i, p: conv_call(src, i, layer, t_in, t_out, p, fn),
                  per_channel=True, plane_in_place=(lambda e_in, e_out: e_out <= e_in) if layer.padding == (0, 0) else None)


def _pool(layer: ir.MaxPool2d | ir.AvgPool2d, t_in: ir.TensorType, t_out: ir.TensorType, others: list[ir.TensorType]) -> Choice:
    c, h, wd = t_in.shape
    _, oh, ow = t_out.shape

    def render(src: ModelSource, i: int, p: Pointers) -> str:
        cc = c if p.channel is None else 1
        s = src.struct("bg_pool_shape_t", f"pool{i}", [cc, h, wd, oh, ow, *layer.kernel, *layer.stride])
        return f"bg_{layer.kind}_{SUFFIX[t_in.dtype]}({p.x}, {p.y}, &{s});"
    return Choice("generic", FILES[layer.kind], render, in_place=True, per_channel=True)


def _relu(layer: ir.ReLU, t_in: ir.TensorType, t_out: ir.TensorType, others: list[ir.TensorType]) -> Choice:
    sin = SUFFIX[t_in.dtype]
    return Choice("generic", FILES["relu"], lambda src, i, p: f"bg_relu_{sin}({p.x}, {p.y}, {_plane(p, t_in)});",
                  in_place=True, per_channel=True)


ROUNDING_IDS = {"half_up": 0, "floor": 1, "half_even": 2, "fp32": 3, "half_away": 4}  # BG_ROUND_* of bg_requant_modes.h


def _requant(layer: ir.Requant, t_in: ir.TensorType, t_out: ir.TensorType, others: list[ir.TensorType]) -> Choice:
    if not layer.is_plain:
        return _requant_modes(layer, t_in, t_out)
    ch = layer.multiplier.size
    half_up = 1 if layer.rounding == "half_up" else 0
    fits32, split = requant_fits_32(layer, t_in)
    width, mtype, mbytes = ("32", "uint16_t", 2) if fits32 else ("", "int32_t", 4)

    def render(src: ModelSource, i: int, p: Pointers) -> str:
        m = src.array(mtype, f"m{i}", int_lines(layer.multiplier), mbytes * ch, i)
        sh = src.array("uint8_t", f"s{i}", int_lines(layer.shift), ch, i)
        fields = [m, sh, ch, half_up] + ([int(split)] if fits32 else []) + [layer.out_min, layer.out_max]
        q = src.struct(f"bg_requant{width}_t", f"q{i}", fields)
        fn = f"bg_requant{width}_to_{SUFFIX[t_out.dtype]}"
        if p.channel is None:
            return f"{fn}({p.x}, {p.y}, {t_in.size // ch}, &{q}, 0, {ch});"
        first = p.channel if ch > 1 else "0"  # this channel's own multiplier and shift
        return f"{fn}({p.x}, {p.y}, {_plane(p, t_in)}, &{q}, {first}, 1);"
    return Choice("generic", FILES["requant"], render, in_place=True, per_channel=True)


def _requant_modes(layer: ir.Requant, t_in: ir.TensorType, t_out: ir.TensorType) -> Choice:
    """Ties to even, ONNX Runtime's float32 rounding or an output zero point: bg_requant_modes."""
    ch = layer.multiplier.size

    def render(src: ModelSource, i: int, p: Pointers) -> str:
        m = src.array("int32_t", f"m{i}", int_lines(layer.multiplier), 4 * ch, i)
        sh = src.array("uint8_t", f"s{i}", int_lines(layer.shift), ch, i)
        q = src.struct("bg_requant_modes_t", f"q{i}", [m, sh, ch, ROUNDING_IDS[layer.rounding], layer.zero_point,
                                                       layer.out_min, layer.out_max])
        fn = f"bg_requant_modes_to_{SUFFIX[t_out.dtype]}"
        if p.channel is None:
            return f"{fn}({p.x}, {p.y}, {t_in.size // ch}, &{q}, 0, {ch});"
        first = p.channel if ch > 1 else "0"
        return f"{fn}({p.x}, {p.y}, {_plane(p, t_in)}, &{q}, {first}, 1);"
    return Choice("generic", FILES["requant_modes"], render, in_place=True, per_channel=True)


def _shiftnorm(layer: ir.ShiftNorm, t_in: ir.TensorType, t_out: ir.TensorType, others: list[ir.TensorType]) -> Choice:
    return Choice("generic", FILES["shiftnorm"], lambda src, i, p: f"bg_shiftnorm({p.x}, {p.y}, {t_in.size});",
                  in_place=True)


def _flatten(layer: ir.Flatten | ir.Unflatten, t_in: ir.TensorType, t_out: ir.TensorType,
             others: list[ir.TensorType]) -> Choice:
    return Choice("alias", [], lambda src, i, p: None, in_place=True, alias=True)  # the bytes do not move


def _eltwise(layer: ir.Add | ir.Sub, t_in: ir.TensorType, t_out: ir.TensorType,
             others: list[ir.TensorType]) -> Choice:
    fn = f"bg_eltwise_{SUFFIX[t_in.dtype]}_{SUFFIX[others[0].dtype]}_to_{SUFFIX[t_out.dtype]}"

    def render(src: ModelSource, i: int, p: Pointers) -> str:
        prm = src.struct("bg_eltwise_t", f"elt{i}", [layer.scale_a, layer.sign * layer.scale_b, layer.shift,
                                                     layer.out_min, layer.out_max])
        return f"{fn}({p.x}, {p.others[0]}, {p.y}, {t_out.size}, &{prm});"
    return Choice("generic", FILES[layer.kind], render, in_place=True)


def _abs(layer: ir.Abs, t_in: ir.TensorType, t_out: ir.TensorType, others: list[ir.TensorType]) -> Choice:
    sin = SUFFIX[t_in.dtype]
    return Choice("generic", FILES["abs"], lambda src, i, p: f"bg_abs_{sin}({p.x}, {p.y}, {_plane(p, t_in)});",
                  in_place=True, per_channel=True)


def _concat(layer: ir.Concat, t_in: ir.TensorType, t_out: ir.TensorType, others: list[ir.TensorType]) -> Choice:
    def render(src: ModelSource, i: int, p: Pointers) -> str:
        return (f"bg_concat((const uint8_t *){p.x}, {t_in.nbytes}u, (const uint8_t *){p.others[0]}, "
                f"{others[0].nbytes}u, (uint8_t *){p.y});")
    return Choice("generic", FILES["concat"], render)


def _upsample(layer: ir.Upsample, t_in: ir.TensorType, t_out: ir.TensorType, others: list[ir.TensorType]) -> Choice:
    c, h, w = t_in.shape
    fh, fw = layer.factor
    return Choice("generic", FILES["upsample"],
                  lambda src, i, p: f"bg_upsample_{SUFFIX[t_in.dtype]}({p.x}, {p.y}, {c}u, {h}u, {w}u, {fh}u, {fw}u);")


def _tile(layer: ir.Tile, t_in: ir.TensorType, t_out: ir.TensorType, others: list[ir.TensorType]) -> Choice:
    _, h, w = t_in.shape
    return Choice("generic", FILES["tile"],
                  lambda src, i, p: f"bg_tile_{SUFFIX[t_in.dtype]}({p.x}, {p.y}, {layer.rows}u, {layer.cols}u, {h}u, {w}u);")


def _conv_transpose2d(layer: ir.ConvTranspose2d, t_in: ir.TensorType, t_out: ir.TensorType,
                      others: list[ir.TensorType]) -> Choice:
    for v in (*t_in.shape, *t_out.shape, layer.groups):
        if v > 0xFFFF:
            raise KernelError(f"dimension {v} exceeds 65535")
    rows = layer.output_rows()  # one packed row per output channel

    def render(src: ModelSource, i: int, p: Pointers) -> str:
        enc = encodings.get(layer.encoding)
        packed = enc.pack_rows(rows.reshape(rows.shape[0], -1))
        w = src.array("uint8_t", f"w{i}", hex_lines(packed), len(packed), i)
        b = src.bias(i, layer)
        c, h, wd = t_in.shape
        co, oh, ow = t_out.shape
        s = src.struct("bg_conv_shape_t", f"convt{i}", [c, h, wd, co, oh, ow, *rows.shape[2:], *layer.stride,
                                                       *layer.padding, layer.groups])
        return f"bg_conv_transpose2d_{SUFFIX[t_in.dtype]}({p.x}, {p.y}, &{s}, {w}, {enc_id(layer)}, {b});"
    return Choice("generic", FILES["conv_transpose2d"], render)


def _sign(layer: ir.Sign, t_in: ir.TensorType, t_out: ir.TensorType, others: list[ir.TensorType]) -> Choice:
    n = layer.threshold.size
    fn = f"bg_sign_{SUFFIX[t_in.dtype]}"

    def render(src: ModelSource, i: int, p: Pointers) -> str:
        t = src.array("int32_t", f"t{i}", int_lines(layer.threshold), 4 * n, i)
        if p.channel is None:
            return f"{fn}({p.x}, {p.y}, {t_in.size // n}u, {t}, {n}u);"
        own = f"{t} + {p.channel}" if n > 1 else t  # this channel's threshold
        return f"{fn}({p.x}, {p.y}, {_plane(p, t_in)}u, {own}, 1u);"
    return Choice("generic", FILES["sign"], render, in_place=True, per_channel=True)


def _mul(layer: ir.Mul, t_in: ir.TensorType, t_out: ir.TensorType, others: list[ir.TensorType]) -> Choice:
    fn = f"bg_mul_{SUFFIX[t_in.dtype]}_{SUFFIX[others[0].dtype]}_to_{SUFFIX[t_out.dtype]}"

    def render(src: ModelSource, i: int, p: Pointers) -> str:
        prm = src.struct("bg_mul_t", f"mul{i}", [layer.shift, layer.out_min, layer.out_max])
        return f"{fn}({p.x}, {p.others[0]}, {p.y}, {t_out.size}u, &{prm});"
    return Choice("generic", FILES["mul"], render, in_place=True)


def _change_gate(layer: ir.ChangeGate, t_in: ir.TensorType, t_out: ir.TensorType,
                 others: list[ir.TensorType]) -> Choice:
    channels = t_in.shape[0] if len(t_in.shape) == 3 else 1
    plane = t_in.size // channels

    def render(src: ModelSource, i: int, p: Pointers) -> str:
        return (f"{src.changed(i, plane)} = bg_change_gate_{SUFFIX[t_in.dtype]}({p.x}, {p.others[0]}, {p.y}, "
                f"{channels}u, {plane}u, {layer.threshold});")
    return Choice("generic", FILES["change_gate"], render)


# op kind -> its generic kernel (every op of bitgen.ops.registry has one)
KERNELS: dict[str, Callable[[Any, ir.TensorType, ir.TensorType, list[ir.TensorType]], Choice]] = {
    "linear": _linear, "conv2d": _conv2d, "maxpool2d": _pool, "avgpool2d": _pool, "relu": _relu,
    "requant": _requant, "shiftnorm": _shiftnorm, "flatten": _flatten, "unflatten": _flatten, "add": _eltwise, "sub": _eltwise,
    "abs": _abs, "concat": _concat, "upsample": _upsample, "tile": _tile, "conv_transpose2d": _conv_transpose2d,
    "sign": _sign, "mul": _mul, "change_gate": _change_gate,
}


def choose(layer: ir.Layer, t_in: ir.TensorType, t_out: ir.TensorType,
           others: list[ir.TensorType] | None = None) -> Choice:
    """The generic kernel of `layer`; `others`: the types of its inputs after the first."""
    if layer.kind not in KERNELS:
        raise KernelError(f"no C kernel for {layer.kind}")
    return KERNELS[layer.kind](layer, t_in, t_out, others or [])
