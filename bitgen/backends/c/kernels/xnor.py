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


def scratch_bytes(layer: ir.Conv2d, t_in: ir.TensorType, t_out: ir.TensorType) -> int:
    """Columns, the masks of a padded layer and the packed input (bg_xnor.h), in bytes."""
    c, h, w = t_in.shape
    _, oh, ow = t_out.shape
    nw = words(int(np.prod(layer.weight.shape[1:])))
    masks = (oh + ow) * nw if any(layer.padding) else 0
    packed = c * h * words(w + 2 * layer.padding[1]) if order(layer) == ROWS else h * w * words(c)
    return 4 * (layer.groups * oh * ow * nw + masks + packed)


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
    return Choice("xnor", FILES, render, scratch=4 * words(n_in))


def _conv2d(layer: ir.Conv2d, t_in: ir.TensorType, t_out: ir.TensorType) -> Choice | None:
    for v in (*t_in.shape, *t_out.shape, layer.groups):
        if v > 0xFFFF:
            return None
    for v in (*layer.weight.shape[2:], *layer.stride, *layer.padding):
        if v > 255:
            return None
    c, h, wd = t_in.shape
    co, oh, ow = t_out.shape
    kh, kw = layer.weight.shape[2:]
    fields = [c, h, wd, co, oh, ow, kh, kw, *layer.stride, *layer.padding, layer.groups]
    columns = f"bg_xnor_columns_{SUFFIX[t_in.dtype]}"

    def shape(src: ModelSource, i: int) -> str:
        return src.struct("bg_conv_shape_t", f"xconv{i}", fields)

    def gather(src: ModelSource, i: int, scratch: int, x: str) -> str:
        return f"{columns}({x}, &{shape(src, i)}, {ORDER_NAMES[order(layer)]}, {arena_ptr(scratch, 'uint32_t')});"

    def render(src: ModelSource, i: int, p: Pointers) -> str:
        w, b = _weights(src, i, layer)
        cols = arena_ptr(p.scratch, "uint32_t", const=True)
        if p.channel is None:  # the whole layer: gather the columns, then every output channel
            return f"{gather(src, i, p.scratch, p.x)} bg_xnor_conv2d({cols}, {p.y}, &{shape(src, i)}, {w}, {b}, 0u, {co}u);"
        # one output channel of a channel-by-channel step, from the columns the prologue gathered
        return f"bg_xnor_conv2d({cols}, {p.y}, &{shape(src, i)}, {w}, {b}, {p.channel}, 1u);"

    return Choice("xnor", FILES, render, scratch=scratch_bytes(layer, t_in, t_out), per_channel=True,
                  prologue=Prologue([], gather))
