"""Nibble lookup-table kernel for int8-input fully connected layers (``bg_linear_lut.c``).

For each group of 4 input columns it builds a table of the 16 possible partial sums, then
every weight nibble costs one table load and add: no multiplier needed (RV32EC), and cheaper
than decoding a weight and multiplying on parts that have one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .... import encodings, ir
from ....ir.bounds import partial_sum_bound
from ..literals import arena_ptr, int_lines, word_lines
from .base import Choice, Context, ModelSource, Pointers, enc_id

FILES = ["bg_linear_lut.c", "bg_linear_lut.h"]


def scratch_bytes(chunk: int) -> int:
    """Scratch of one pass over `chunk` tables: 17 int16 entries each, and one more (the C side:
    BG_LUT_SCRATCH_BYTES in bg_linear_lut.h; tests/test_c_facts.py checks they agree)."""
    return 2 * (17 * chunk + 1)


def choose(layer: ir.Layer, t_in: ir.TensorType, t_out: ir.TensorType, ctx: Context) -> Choice | None:
    if not isinstance(layer, ir.Linear) or encodings.get(layer.encoding).bits > ctx.target.lut_max_bits:
        return None
    # Offsetting by the minimum pays where inputs are signed: the model input (images have a
    # constant background); ReLU-like outputs are already >= 0.
    return _lut(layer, t_in, offset=ctx.reads_input and t_in.lo < 0,
                max_chunk=ctx.lut_chunk or ctx.target.lut_chunk)


def _lut(layer: ir.Linear, t_in: ir.TensorType, offset: bool, max_chunk: int) -> Choice | None:
    fc = lut_params(layer, t_in, offset, max_chunk)
    if fc is None:
        return None

    def render(src: ModelSource, i: int, p: Pointers) -> str:
        return f"bg_linear_lut_s8({p.x}, {p.y}, &{fc.render(src, i)}, {arena_ptr(p.scratch, 'int16_t')});"

    return Choice("lut", FILES, render, scratch=scratch_bytes(fc.chunk), out_region=fc.rows * 4,
                  trades_scratch=True)


@dataclass
class LutParams:
    """The bg_lut_fc_t of a layer: `render` adds its weights and the struct to the source and
    returns the struct's name; the output buffer holds `rows` int32 (n_out rounded up to the
    tail block); `chunk` tables per pass."""

    fields: Callable[[ModelSource, int, str], list]  # the struct's fields (arrays named with a tag)
    rows: int
    chunk: int

    def render(self, src: ModelSource, i: int) -> str:
        return src.struct("bg_lut_fc_t", f"lut{i}", self.fields(src, i, ""))


def lut_params(layer: ir.Linear, t_in: ir.TensorType, offset: bool, max_chunk: int) -> LutParams | None:
    """The LUT kernel's parameters for `layer` on int8 inputs of type t_in, or None where its
    exactness precondition or its sizes do not hold (offset: subtract the inputs' minimum)."""
    enc = encodings.get(layer.encoding)
    if t_in.dtype != "int8":
        return None
    n_out, n_in = layer.weight.shape
    n_cols = (n_in * enc.bits + 3) // 4
    if n_cols * 4 > 0x7FFF or n_in > 0xFFFF or n_out > 0xFFFF:
        return None
    # Exactness: every partial sum (tables hold partial column sums, in any order) must fit.
    span = (t_in.hi - t_in.lo) if offset else t_in.amax
    rowsum = layer.weight.astype(object).sum(axis=1)
    if offset and max(abs(v) for v in rowsum) > 32767:  # row sums are stored as int16
        return lut_params(layer, t_in, offset=False, max_chunk=max_chunk)
    bound = partial_sum_bound(layer.weight, layer.bias, span, zero=t_in.amax if offset else 0)
    if bound > ir.INT32[1] or span * enc.max_abs * (4 // min(enc.bits, 4)) > 32767:
        return None
    full = n_out // 8
    rest = n_out - 8 * full
    tail_rows = 0 if rest == 0 else 2 if rest <= 2 else 4 if rest <= 4 else 8
    if tail_rows == 8:  # 5..7 rows left: one more padded block of 32-bit words
        full, tail_rows = full + 1, 0
    rows = 8 * full + tail_rows
    chunk = min(n_cols, max_chunk)

    def fields(src: ModelSource, i: int, tag: str) -> list:
        # nibble stream of each row, exactly as the packed format holds it
        packed = np.frombuffer(enc.pack_rows(layer.weight), dtype=np.uint8).reshape(n_out, -1)
        nibbles = np.zeros((rows, n_cols), dtype=np.uint64)
        nibbles[:n_out] = np.stack([packed & 15, packed >> 4], axis=2).reshape(n_out, -1)[:, :n_cols]

        def words(block_rows: np.ndarray) -> np.ndarray:  # (blocks, r, n_cols) -> (blocks, n_cols)
            out = np.zeros((block_rows.shape[0], n_cols), dtype=np.uint64)
            for r in range(block_rows.shape[1]):
                out |= block_rows[:, r, :] << np.uint64(4 * r)
            return out

        w_full = words(nibbles[: 8 * full].reshape(full, 8, n_cols))
        w_arr = src.array("uint32_t", f"w{i}{tag}", word_lines(w_full), 4 * w_full.size, i) if full else "0"
        tail = "0"
        if tail_rows:
            w_tail = words(nibbles[8 * full :].reshape(1, tail_rows, n_cols))[0]
            ctype = "uint16_t" if tail_rows == 4 else "uint8_t"
            tail = src.array(ctype, f"t{i}{tag}", int_lines(w_tail), w_tail.size * tail_rows // 2, i)
        b = src.bias(i, layer)
        rs = src.array("int16_t", f"r{i}{tag}", int_lines(np.array(rowsum, dtype=np.int64)), 2 * n_out, i) if offset else "0"
        return [w_arr, tail, b, rs, n_in, n_out, chunk, enc_id(layer), tail_rows]

    return LutParams(fields, rows, chunk)
