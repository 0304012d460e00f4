"""Dense convolutions over a window of transposed input rows (``bg_conv_rows.inc``), with the
following ReLU / requantization and a 2x2 max pool fused into the output stage.

Any kernel size, stride and zero padding, groups 1, several input channels. The kernel keeps
the input rows that an output row reads in a window transposed to [column][kernel row][channel]
and zero-padded, so that all the inputs of one output pixel are a contiguous vector: no im2col
copy, and each input row is transposed once. It computes whole tensors (the outputs of every
channel of a row at once), so it is the single kernel of its step (``Step.whole``), with the
layers it fuses; the channel-by-channel plane kernels keep the convolutions they take.

Two inner loops, by the kernel set's ``Target.dense_conv``:

* ``smlad`` (Cortex-M4): an int16 window and weights pre-widened to int16 pairs in flash,
  tiles of 2 channels x 2 pixels, two products per SMLAD, two words per LDRD;
* ``mul`` (RV32EMC): the narrowest window element that holds the input, int8 weights (int16
  for FP1.3.0's 128), tiles of 2 channels x 2 pixels, a mul and an add per product; a dot
  product of up to UNROLL_MAX elements is straight-line code whose weights come in per-tile
  blocks (``Geometry.blocks``), with the requantization's bias and rounding folded into one
  constant per channel where its product fits 32 bits (``fold_constants``).

The window is the kernel's scratch; the kernel is optional (Choice.optional): where the arena
must shrink, the generic kernel takes the layer instead.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .... import ir
from ....ir.bounds import partial_sum_bound
from ..literals import C_TYPE, arena_ptr, c_int, int_lines, word_lines
from .base import Choice, ModelSource, Pointers, Refusal, Target
from .plane import post_stage

FILES = ["bg_conv_rows.h", "bg_conv_rows.inc", "bg_dsp.h", "bg_conv2d_plane.h"]
FUSABLE = (ir.ReLU, ir.Requant, ir.MaxPool2d)
TILE_CHANNELS = {"smlad": 2, "mul": 2}  # output channels per tile (BG_CR_MC; measured: 3 spills on RV32E)
STEP = 4  # elements per step of the inner loop: a kernel row's span is padded to a multiple
# mul: dot products of at most this many elements are unrolled (no loop overhead, and the
# output stage folded: README "Convolution layers"); about 40 bytes of code per element and
# tile shape, so longer ones keep the loop
UNROLL_MAX = 128


def _fits(t: ir.TensorType, dtype_range: tuple[int, int]) -> bool:
    return dtype_range[0] <= t.lo and t.hi <= dtype_range[1]


def row_type(t_in: ir.TensorType, mode: str) -> str | None:
    """C type of the row buffers: what SMLAD reads (int16), or the narrowest that holds every
    input value (zero padding included)."""
    for ctype, rng in (("int8_t", ir.INT8), ("int16_t", (-(2**15), 2**15 - 1)), ("int32_t", ir.INT32)):
        if mode == "smlad" and ctype != "int16_t":
            continue
        if _fits(t_in, rng):
            return ctype
    return None


ELEM_BYTES = {"int8_t": 1, "int16_t": 2, "int32_t": 4}


class Geometry:
    """Sizes of the window and the weight layout of one layer (the C side's constants)."""

    def __init__(self, layer: ir.Conv2d, t_in: ir.TensorType, t_out: ir.TensorType, pool: bool, mode: str,
                 row: str):
        self.c, self.h, self.w = t_in.shape
        self.co, self.oh, self.ow = t_out.shape
        self.kh, self.kw = layer.weight.shape[2:]
        (self.sh, self.sw), (self.ph, self.pw) = layer.stride, layer.padding
        self.mode, self.row = mode, row
        self.cp = self.c + (self.c & 1) if mode == "smlad" else self.c  # everything starts on a word
        self.pixlen = self.kh * self.cp  # window elements per column
        self.span = -(-self.kw * self.pixlen // STEP) * STEP
        self.rows, self.cols = ((self.oh & ~1, self.ow & ~1) if pool else (self.oh, self.ow))
        cols_read = self.cols + (self.cols & 1)  # a last tile of one pixel reads a second one
        per_word = 4 // ELEM_BYTES[row]
        need = max((self.w + 2 * self.pw) * self.pixlen, (cols_read - 1) * self.sw * self.pixlen + self.span)
        self.winlen = -(-need // per_word) * per_word
        self.dot = self.kw * self.pixlen  # elements of one output's dot product (span: rounded up)
        # mul: a short dot product is straight-line code (no loop, immediate offsets)
        self.unroll = mode == "mul" and self.dot <= UNROLL_MAX
        self.mc = TILE_CHANNELS[mode]
        # Steps per turn of the inner loop: a divisor of the steps (no straight-line rest after
        # the loop), at least two turns where there are enough steps (GCC peels a loop that
        # runs once, and then schedules all the loads first), and with mul no more elements than
        # lie between the two pixels (else GCC keeps the first pixel's later inputs in registers
        # for the second: spills on RV32E).
        steps = self.span // STEP
        self.turn = next((t for t in (4, 3, 2) if steps % t == 0 and steps // t >= 2
                          and (mode == "smlad" or t * STEP <= self.sw * self.pixlen)), 1)

    @property
    def scratch(self) -> int:
        """Bytes of the window (C: BG_CR_WINLEN elements)."""
        return self.winlen * ELEM_BYTES[self.row]

    def blocks(self, weight: np.ndarray, wt: str, fold: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
        """The unrolled kernel's weight stream as little-endian words: per tile of mc channels its
        weights (layout(), as `wt`, padded to a word), then with `fold` (multipliers, folded
        constants) the tile's channels' multipliers and constants as int32."""
        per_tile = self.layout(weight).reshape(-1)
        out, at = [], 0
        for t0 in range(0, weight.shape[0], self.mc):
            n = min(self.mc, weight.shape[0] - t0)
            w = per_tile[at : at + n * self.dot].astype("<i1" if wt == "int8_t" else "<i2").tobytes()
            at += n * self.dot
            blk = w + bytes(-len(w) % 4)
            if fold is not None:
                blk += np.concatenate([fold[0][t0 : t0 + n], fold[1][t0 : t0 + n]]).astype("<i4").tobytes()
            out.append(blk)
        return np.frombuffer(b"".join(out), dtype="<u4")

    def layout(self, weight: np.ndarray) -> np.ndarray:
        """Weights in the order the tiles read them: per tile of mc channels, per step of 4 span
        elements, then (smlad) per channel its 4 elements, or (mul) per element its mc channels.
        Span element e is input channel e % cp of kernel row (e % pixlen) // cp and kernel
        column e // pixlen; padding elements are 0."""
        co, c, kh, kw = weight.shape
        span = np.zeros((co, kw, kh, self.cp), dtype=np.int64)
        span[..., :c] = weight.transpose(0, 3, 2, 1)
        flat = np.zeros((co, self.span), dtype=np.int64)
        flat[:, : kw * self.pixlen] = span.reshape(co, kw * self.pixlen)
        if self.unroll:
            flat = flat[:, : self.dot]
        parts = []
        for t0 in range(0, co, self.mc):
            if self.unroll:  # element by element, channel by channel
                parts.append(flat[t0 : t0 + self.mc].T.ravel())
                continue
            blk = flat[t0 : t0 + self.mc].reshape(-1, self.span // STEP, STEP)
            order = (1, 0, 2) if self.mode == "smlad" else (1, 2, 0)
            parts.append(blk.transpose(order).ravel())
        return np.concatenate(parts)


def applies(layer: ir.Layer, target: Target) -> bool:
    return bool(target.dense_conv) and target.dense_conv in TILE_CHANNELS and isinstance(layer, ir.Conv2d) \
        and layer.groups == 1


def choose(model: ir.Model, types: list[ir.TensorType], t_in: ir.TensorType, i: int, last: int,
           target: Target) -> Choice | Refusal | None:
    """For the dense conv at i of a step ending at `last` (types[j + 1]: layer j's output): the
    row kernel fused with as many of the following ReLU/Requant layers (and a 2x2 max pool
    after them) as it can take; why not (a Refusal); or None where the kernel set has none."""
    layer = model.layers[i]
    if not applies(layer, target):
        return None
    return fused_best(model, types, i, last, lambda fused, fused_types: _rows(
        layer, t_in, types[i + 1], fused, fused_types, target.dense_conv))


def fused_best(model: ir.Model, types: list[ir.TensorType], i: int, last: int, make) -> Choice | Refusal:
    """The choice of `make(fused, fused_types)` that fuses the most of the layers after i (up to
    `last`: ReLU and Requant, then at most a 2x2 max pool), or make's refusal without fusion."""
    best: Choice | Refusal = Refusal("", "")
    for n in range(0, min(4, last - i) + 1):
        fused = list(model.layers[i + 1 : i + 1 + n])
        if any(not isinstance(f, FUSABLE) for f in fused):
            break
        choice = make(fused, types[i + 2 : i + 2 + n])
        if isinstance(choice, Choice) or n == 0:
            best = choice
        if fused and isinstance(fused[-1], ir.MaxPool2d):  # nothing is fused after a pool
            break
    return best


def _rows(layer: ir.Conv2d, t_in: ir.TensorType, t_out: ir.TensorType, fused: list[ir.Layer],
          fused_types: list[ir.TensorType], mode: str, band: bool = False) -> Choice | Refusal:
    """The row kernel of this conv and its fused layers. With `band`, the instance computes the
    output rows it is given (BG_CR_BAND) and its call reads them as `oy0`, `oy1` and its window
    as `win`, and its columns `ox0` (even), `ox1`: a change-based step (change.py) calls it from a
    function of its own."""
    name = f"rows_{mode}"
    post = post_stage(fused, [t_out] + fused_types)
    if post is None:
        return Refusal(name, "cannot fuse these layers")
    row = row_type(t_in, mode)
    if row is None:
        return Refusal(name, f"inputs in [{t_in.lo}, {t_in.hi}] do not fit int16" if mode == "smlad"
                       else f"{t_in.dtype} inputs")
    for v in (*t_in.shape, *t_out.shape, *layer.weight.shape[2:], *layer.stride, *layer.padding):
        if v > 0xFFFF:
            return Refusal(name, f"dimension {v} over 65535")
    # Exactness: the products are golden's, summed in another order (and with products of
    # zero padding): every partial sum lies within |bias| + sum |w| * max |x|.
    bound = partial_sum_bound(layer.weight, layer.bias, t_in.amax)
    if bound > ir.INT32[1]:
        return Refusal(name, f"a partial sum may reach {bound}, outside int32")
    g = Geometry(layer, t_in, t_out, bool(post["pool"]), mode, row)
    if g.rows < 1 or g.cols < 1:
        return Refusal(name, "a pooled output of no rows or columns")
    t_final = fused_types[-1] if fused else t_out
    wt = "int8_t" if layer.weight.min() >= -128 and layer.weight.max() <= 127 else "int16_t"
    rq_index = next((k for k, f in enumerate(fused) if isinstance(f, ir.Requant)), None)

    def render(src: ModelSource, i: int, p: Pointers) -> str:
        params = post_params(post)
        fold = fold_constants(layer, t_out, post) if g.unroll else None
        packed = g.layout(layer.weight)
        if g.unroll:
            words = g.blocks(layer.weight, wt, fold)
            w = src.array("uint32_t", f"w{i}", word_lines(words), 4 * words.size, i)
        elif mode == "smlad":
            words = packed.astype("<i2").view("<u4")
            w = src.array("uint32_t", f"w{i}", word_lines(words), 4 * words.size, i)
        else:
            w = src.array(wt, f"w{i}", int_lines(packed), ELEM_BYTES[wt] * packed.size, i)
        b = "0" if fold is not None else src.bias(i, layer)
        m = sh = "0"
        if params["MULT_PER_CHANNEL"] and fold is None:
            rq, j = post["requant"], i + 1 + rq_index
            m = src.array("int32_t", f"m{j}", int_lines(rq.multiplier), 4 * rq.multiplier.size, j)
        if params["SHIFT_PER_CHANNEL"]:
            rq, j = post["requant"], i + 1 + rq_index
            sh = src.array("uint8_t", f"s{j}", int_lines(rq.shift), rq.shift.size, j)
        fn = f"{src.name}_conv_rows_{i}{'_band' if band else ''}"
        consts = {
            "NAME": fn, "IN": C_TYPE[t_in.dtype], "OUT": C_TYPE[t_final.dtype], "ROW": row, "WT": wt,
            "SIMD": int(mode == "smlad"), "C": g.c, "H": g.h, "W": g.w, "CO": g.co,
            "KH": g.kh, "SH": g.sh, "SW": g.sw, "PH": g.ph, "PW": g.pw, "CP": g.cp,
            "SPAN": g.span, "WINLEN": g.winlen, "MC": g.mc, "TURN": g.turn, "ROWS": g.rows, "COLS": g.cols,
            "POOL": post["pool"], "BIAS": int(b != "0"), "UNROLL": int(g.unroll), "DOT": g.dot,
            "FOLD": int(fold is not None),
        } | params
        lines = [f"/* layer {i}: {g.kh}x{g.kw} convolution over a window of transposed rows ({mode}) */"]
        lines += [f"#define BG_CR_{k} {v}" for k, v in consts.items() if not k.endswith("PER_CHANNEL")]
        lines += [f"#define BG_CR_{k}" for k in ("MULT_PER_CHANNEL", "SHIFT_PER_CHANNEL", "BAND")
                  if params.get(k, k == "BAND" and band)]
        lines.append('#include "bg_conv_rows.inc"')
        src.functions.append("\n".join(lines))
        if band:
            return f"{fn}({p.x}, {p.y}, ({row} *)win, {w}, {'0' if b == '0' else b}, {m}, {sh}, oy0, oy1, ox0, ox1);"
        return f"{fn}({p.x}, {p.y}, {arena_ptr(p.scratch, row)}, {w}, {'0' if b == '0' else b}, {m}, {sh});"

    return Choice(f"rows_{mode}", FILES, render, scratch=g.scratch, fuses=len(fused), optional=True)


def fold_constants(layer: ir.Conv2d, t_acc: ir.TensorType, post: dict[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """The multipliers m and, per output channel, k = bias * m + r modulo 2^32 as int32 (r: the
    rounding term) for the unrolled kernel's output stage bg_cr_fold, whose sums then start at
    0; None where it does not apply. It needs a requantization whose product of the raw
    accumulator (t_acc: the conv's output, before any ReLU) is proved to fit int32 (|acc| * m +
    2^shift, so the wrapped sum * m + k is the exact (bias + sum) * m + r), and a clamp that keeps
    0 (a ReLU before the requantization then acts after it: the requantization of 0 is 0)."""
    rq = post["requant"]
    if rq is None or not post["lo"] <= 0 <= post["hi"]:
        return None
    co = layer.weight.shape[0]
    m = np.broadcast_to(rq.multiplier.astype(np.int64), (co,))
    sh = np.broadcast_to(rq.shift.astype(np.int64), (co,))
    if any(t_acc.amax * int(mv) + (1 << int(s)) > ir.INT32[1] for mv, s in zip(m, sh)):
        return None
    r = np.where((sh > 0) & (rq.rounding == "half_up"), np.left_shift(1, np.maximum(sh - 1, 0)), 0)
    bias = np.zeros(co, dtype=np.int64) if layer.bias is None else layer.bias.astype(np.int64)
    k = (bias * m + r) & 0xFFFFFFFF  # |bias| < 2^31 and m < 2^31: no int64 overflow
    return m, np.where(k >= 2**31, k - 2**32, k)


def band_kernel(layer: ir.Conv2d, t_in: ir.TensorType, t_out: ir.TensorType, fused: list[ir.Layer],
                fused_types: list[ir.TensorType], target: Target) -> Choice | None:
    """The row kernel computing given output rows of this conv and its fused layers (a change-
    based step's dense part), or None where the target has none for them."""
    if not applies(layer, target):
        return None
    choice = _rows(layer, t_in, t_out, fused, fused_types, target.dense_conv, band=True)
    return choice if isinstance(choice, Choice) else None


def post_params(post: dict[str, Any]) -> dict[str, Any]:
    """The output stage's constants (BG_CR_RELU_BEFORE ... BG_CR_SHIFT). A multiplier or shift
    that differs between channels is read from an array (MULT_PER_CHANNEL, SHIFT_PER_CHANNEL);
    one that does not is a constant (a shift by a constant also folds its rounding term)."""
    rq = post["requant"]
    mult, shift, mult_pc, shift_pc = 1, 0, False, False
    if rq is not None:
        mults, shifts = {int(v) for v in rq.multiplier}, {int(v) for v in rq.shift}
        mult_pc, shift_pc = len(mults) > 1, len(shifts) > 1
        mult, shift = (0 if mult_pc else mults.pop()), (0 if shift_pc else shifts.pop())
    return {"RELU_BEFORE": post["relu_before"], "REQUANT": int(rq is not None), "WIDE": post["wide"],
            "HALF_UP": int(rq is not None and rq.rounding == "half_up"), "LO": c_int(post["lo"]),
            "HI": c_int(post["hi"]), "RELU_AFTER": post["relu_after"], "MULT": mult, "SHIFT": shift,
            "MULT_PER_CHANNEL": mult_pc, "SHIFT_PER_CHANNEL": shift_pc}
