"""Dual multiply-accumulate (SMLAD) kernel for int8 fully connected layers on Cortex-M4
(``bg_linear_simd.c``): weights stored one byte each, four rows and four inputs per word group."""
from __future__ import annotations

import numpy as np

from .... import ir
from ..literals import int_lines, word_lines
from .base import Choice, Context, ModelSource, Pointers

FILES = ["bg_linear_simd.c", "bg_linear_simd.h", "bg_dsp.h"]


def choose(layer: ir.Layer, t_in: ir.TensorType, t_out: ir.TensorType, ctx: Context) -> Choice | None:
    if not isinstance(layer, ir.Linear):
        return None
    n_out, n_in = layer.weight.shape
    if t_in.dtype != "int8" or n_in > 0xFFFF or n_out > 0xFFFF:
        return None
    if layer.weight.min() < -128 or layer.weight.max() > 127:  # FP1.3.0's +128: no int8
        return None
    # Exactness: the products and sums are golden's, in another order; ir.validate has proved
    # every partial sum (ir.bounds.partial_sum_bound, no offset) fits int32 in any order.
    rows, cols = -(-n_out // 4) * 4, -(-n_in // 4) * 4

    def render(src: ModelSource, i: int, p: Pointers) -> str:
        w = np.zeros((rows, cols), dtype=np.int8)
        w[:n_out, :n_in] = layer.weight
        # (block, row, group, input) -> (block, group, row, input): one word per row and group
        words = w.reshape(rows // 4, 4, cols // 4, 4).transpose(0, 2, 1, 3).copy().view("<u4")
        w_arr = src.array("uint32_t", f"w{i}", word_lines(words), words.size * 4, i)
        b = "0"
        if layer.bias is not None:
            padded = np.zeros(rows, dtype=np.int64)
            padded[:n_out] = layer.bias
            b = src.array("int32_t", f"b{i}", int_lines(padded), 4 * rows, i)
        prm = src.struct("bg_simd_fc_t", f"simd{i}", [w_arr, b, n_in, n_out])
        return f"bg_linear_simd_s8({p.x}, {p.y}, &{prm});"

    return Choice("simd", FILES, render, out_region=rows * 4)
