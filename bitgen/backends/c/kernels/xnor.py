"""XNOR-popcount kernels for binary x binary layers (``bg_xnor.c``), and the product of two
binary tensors (+1 where the signs agree).

A convolution or fully connected layer whose input is a binary tensor (every value ±1, proved by
``ir.TensorType.binary``: Sign outputs and what only moves or multiplies them) and whose weights
are all ±1 (whatever their encoding) sums ±1 products: ``n - 2 * (signs that differ)``, one XOR
and one population count per 32 products. The kernel packs its own operands as bits: the
weights in flash (one row of 32-bit words per output channel), the input in its scratch (a
convolution's *columns*, each output pixel's receptive field as words; see ``bg_xnor.h``).

Inside a channel-by-channel step the columns are built once, in the step's prologue, and each
output channel's call reads them.
"""
from __future__ import annotations

import numpy as np

from .... import ir
from ..literals import SUFFIX, arena_ptr, word_lines
from .base import Choice, ModelSource, Pointers, Prologue, Target

FILES = ["bg_xnor.c", "bg_xnor.h"]


def applies(layer: ir.Layer, t_in: ir.TensorType, target: Target, others: tuple[ir.TensorType, ...] = ()) -> bool:
    """Binary input, weights all ±1 (or a binary second operand), and a kernel set that prefers
    XNOR to multiplying."""
    if not target.xnor or not t_in.binary:
        return False
    if isinstance(layer, ir.Mul):  # a plain product: no shift, and a clamp that keeps ±1
        return (bool(others) and others[0].binary and layer.shift == 0 and layer.out_min <= -1 <= 1 <= layer.out_max
                and layer.out_dtype == "int8" and t_in.dtype == others[0].dtype == "int8")
    return isinstance(layer, (ir.Conv2d, ir.Linear)) and bool(np.all(np.abs(layer.weight) == 1))


def words(n: int) -> int:
    """32-bit words that hold n bits."""
    return (n + 31) // 32


def sign_rows(weight: np.ndarray) -> np.ndarray:
    """(rows, ...) of ±1 -> (rows, words) uint32: bit k of a row is 1 where weight k is +1."""
    rows = weight.reshape(weight.shape[0], -1) > 0
    n = rows.shape[1]
    bits = np.zeros((rows.shape[0], 32 * words(n)), dtype=np.uint8)
    bits[:, :n] = rows
    return np.packbits(bits, axis=1, bitorder="little").view("<u4")


# The columns' tap orders (bg_xnor.h: BG_XNOR_ROWS, BG_XNOR_PIXELS).
ROWS, PIXELS = 0, 1
ORDER_NAMES = {ROWS: "BG_XNOR_ROWS", PIXELS: "BG_XNOR_PIXELS"}


def order(layer: ir.Conv2d) -> int:
    """The tap order with fewer slices per receptive field: ROWS takes one slice per (input
    channel, kernel row), PIXELS one per kernel tap and 32 channels."""
    cig, kh, kw = layer.weight.shape[1:]
    return ROWS if kw <= 32 and cig * kh <= kh * kw * words(cig) else PIXELS


def weight_rows(layer: ir.Conv2d) -> np.ndarray:
    """The weights' signs in the columns' tap order."""
    w = layer.weight if order(layer) == ROWS else layer.weight.transpose(0, 2, 3, 1)
    return sign_rows(w)


def conv_params(layer: ir.Conv2d, t_in: ir.TensorType, t_out: ir.TensorType) -> dict[str, int]:
    """The fields of bg_xnor_conv_t (bg_xnor.h): every size the C needs, computed here once."""
    c, h, w = t_in.shape
    co, oh, ow = t_out.shape
    _, cig, kh, kw = layer.weight.shape
    (sh, sw), (ph, pw), g = layer.stride, layer.padding, layer.groups
    taps = cig * kh * kw
    nw, cw, rows = words(taps), words(c), order(layer) == ROWS
    line = words(w + 2 * pw) if rows else w * cw
    padded = bool(ph or pw)
    step = sw if rows else sw * cw
    # the output rows and columns whose receptive fields see no padding (xhi >= xlo: an empty
    # middle when the kernel overhangs both sides)
    ylo, xlo = min(-(-ph // sh), oh), min(-(-pw // sw), ow)
    yhi, xhi = max(min((h + ph - kh) // sh + 1, oh), ylo), max(min((w + pw - kw) // sw + 1, ow), xlo)
    return dict(ylo=ylo, yhi=yhi, xlo=xlo, xhi=xhi, c=c, h=h, w=w, oh=oh, ow=ow, kh=kh, kw=kw, sh=sh, sw=sw, ph=ph, pw=pw, order=order(layer),
                padded=int(padded), groups=g, cig=cig, cog=co // g, taps=taps, nw=nw, cw=cw, plane=h * w,
                pixels=oh * ow, row_words=ow * nw, group_words=oh * ow * nw, records=g * oh * ow * nw,
                mask_cols=oh * nw, line=line, line_step=sh * line,
                top=ph * line, left=0 if rows else pw * cw, channel=h * line, step=step, end=ow * step)


FIELDS = ["c", "h", "w", "oh", "ow", "kh", "kw", "sh", "sw", "ph", "pw", "order", "padded", "groups", "cig", "cog",
          "taps", "nw", "cw", "plane", "pixels", "row_words", "group_words", "records", "mask_cols", "ylo", "yhi",
          "xlo", "xhi", "line", "line_step", "top", "left", "channel", "step", "end"]  # bg_xnor_conv_t's after `masks`


def masks(layer: ir.Conv2d, t_in: ir.TensorType, t_out: ir.TensorType) -> np.ndarray:
    """A padded layer's mask tables (bg_xnor.h), (oh + ow, nw) words: per output row the taps
    whose kernel row is inside the image, per output column those whose kernel column is."""
    _, h, w = t_in.shape
    _, oh, ow = t_out.shape
    _, cig, kh, kw = layer.weight.shape
    (sh, sw), (ph, pw) = layer.stride, layer.padding
    ky, kx = np.meshgrid(np.arange(kh), np.arange(kw), indexing="ij")
    ky, kx = np.broadcast_to(ky, (cig, kh, kw)), np.broadcast_to(kx, (cig, kh, kw))
    if order(layer) == PIXELS:  # (kernel row, kernel column, input channel)
        ky, kx = ky.transpose(1, 2, 0), kx.transpose(1, 2, 0)
    ky, kx = ky.reshape(-1), kx.reshape(-1)
    iy = np.arange(oh)[:, None] * sh - ph + ky[None, :]
    ix = np.arange(ow)[:, None] * sw - pw + kx[None, :]
    return sign_rows(np.concatenate([np.where((iy >= 0) & (iy < h), 1, -1), np.where((ix >= 0) & (ix < w), 1, -1)]))


def scratch_bytes(layer: ir.Conv2d, t_in: ir.TensorType, t_out: ir.TensorType) -> int:
    """The records and the packed input (bg_xnor.h), in bytes."""
    prm = conv_params(layer, t_in, t_out)
    packed = prm["c"] * prm["channel"] if prm["order"] == ROWS else prm["plane"] * prm["cw"]
    return 4 * (prm["records"] + packed)


def choose(layer: ir.Layer, t_in: ir.TensorType, t_out: ir.TensorType, target: Target,
           others: tuple[ir.TensorType, ...] = ()) -> Choice | None:
    if not applies(layer, t_in, target, others):
        return None
    if isinstance(layer, ir.Mul):
        return Choice("xnor", FILES, lambda src, i, p: f"bg_xnor_mul_s8({p.x}, {p.others[0]}, {p.y}, {t_out.size}u);",
                      in_place=True)
    if isinstance(layer, ir.Linear):
        return _linear(layer, t_in)
    return _conv2d(layer, t_in, t_out)


def _weights(src: ModelSource, i: int, layer: ir.Conv2d | ir.Linear) -> tuple[str, str]:
    rows = weight_rows(layer) if isinstance(layer, ir.Conv2d) else sign_rows(layer.weight)
    return src.array("uint32_t", f"w{i}", word_lines(rows), 4 * rows.size, i), src.bias(i, layer)


def _linear(layer: ir.Linear, t_in: ir.TensorType) -> Choice | None:
    n_out, n_in = layer.weight.shape
    if n_in >= 2**30:  # n - 2 * count is formed in int32
        return None

    def render(src: ModelSource, i: int, p: Pointers) -> str:
        w, b = _weights(src, i, layer)
        return (f"bg_xnor_linear_{SUFFIX[t_in.dtype]}({p.x}, {p.y}, {n_in}u, {n_out}u, {w}, {b}, "
                f"{arena_ptr(p.scratch, 'uint32_t')});")
    return Choice("xnor", FILES, render, scratch=4 * words(n_in), optional=True)


def _conv2d(layer: ir.Conv2d, t_in: ir.TensorType, t_out: ir.TensorType) -> Choice | None:
    prm = conv_params(layer, t_in, t_out)
    limits = {"c": 0xFFFF, "h": 0xFFFF, "w": 0xFFFF, "oh": 0xFFFF, "ow": 0xFFFF, "kh": 255, "kw": 255, "sh": 255,
              "sw": 255, "ph": 255, "pw": 255, "groups": 0xFFFF, "cig": 0xFFFF, "cog": 0xFFFF, "taps": 0xFFFF,
              "nw": 0xFFFF, "cw": 0xFFFF}
    if any(prm[k] > v for k, v in limits.items()) or any(prm[k] >= 2**31 for k in FIELDS):
        return None  # the struct's field widths (offsets are formed in int32)
    columns = f"bg_xnor_columns_{SUFFIX[t_in.dtype]}"
    co = t_out.shape[0]

    def params(src: ModelSource, i: int) -> str:
        m = "0"
        if prm["padded"]:
            table = masks(layer, t_in, t_out)
            m = src.array("uint32_t", f"xmask{i}", word_lines(table), 4 * table.size, i)
        return src.struct("bg_xnor_conv_t", f"xconv{i}", [m] + [prm[k] for k in FIELDS])

    def gather(src: ModelSource, i: int, scratch: int, x: str) -> str:
        return f"{columns}({x}, &{params(src, i)}, {arena_ptr(scratch, 'uint32_t')});"

    def render(src: ModelSource, i: int, p: Pointers) -> str:
        w, b = _weights(src, i, layer)
        cols = arena_ptr(p.scratch, "uint32_t", const=True)
        if p.channel is None:  # the whole layer: gather the records, then every output channel
            return f"{gather(src, i, p.scratch, p.x)} bg_xnor_conv2d({cols}, {p.y}, &{params(src, i)}, {w}, {b}, {co}u);"
        # one output channel of a channel-by-channel step, from the records the prologue gathered
        c, nw, cog = p.channel, prm["nw"], prm["cog"]
        g = c if cog == 1 else f"({c} / {cog}u)"  # the channel's group
        group = cols if prm["groups"] == 1 else f"{cols} + {g} * {prm['group_words']}u"
        row = f"{w} + {c}" if nw == 1 else f"{w} + {c} * {nw}u"
        bias = b if b == "0" else f"{b} + {c}"
        return f"bg_xnor_conv2d({group}, {p.y}, &{params(src, i)}, {row}, {bias}, 1u);"

    return Choice("xnor", FILES, render, scratch=scratch_bytes(layer, t_in, t_out), per_channel=True,
                  prologue=Prologue([], gather), optional=True)
