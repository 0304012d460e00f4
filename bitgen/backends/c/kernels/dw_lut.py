"""Plane (depthwise) convolutions without a multiplier (``bg_dw_lut.c``), for RV32EC: each tap's
product with an int8 input from two 16-entry tables (its low and high nibble), or with a
non-negative int32 input below 65536 (BitNetMCU's activations between convolutions) from one
table, a lookup per nibble; built once per channel; inside channel-by-channel steps like the other plane kernels, with the following ReLU /
requantization and a 2x2 max pool fused. Padding comes from a zero-bordered copy of the plane.
"""
from __future__ import annotations

import numpy as np

from .... import ir
from ....ir.bounds import partial_sum_bound
from ..literals import arena_ptr, int_lines
from .base import Choice, ModelSource, Pointers, Prologue, Refusal, Target
from .plane import post_stage

FILES = ["bg_dw_lut.c", "bg_dw_lut.h", "bg_conv2d_plane.c", "bg_conv2d_plane.h", "bg_conv2d_plane.inc", "bg_dsp.h"]
MAX_TAPS = 25  # tables of 64 bytes per tap: 1.6 KB for a 5x5 kernel


def applies(layer: ir.Layer, target: Target) -> bool:
    return target.dense_conv == "lut" and isinstance(layer, ir.Conv2d) and layer.weight.shape[1] == 1


def raster_in_place(out: tuple[int, int], stride: tuple[int, int], in_width: int, pool: bool,
                    e_in: int, e_out: int) -> bool:
    """Whether a kernel that computes the outputs of an unpadded plane in raster order (each
    stored after its own inputs are read; with a 2x2 pool, into its window's element) may store
    them over its input plane: no output reads a byte that an earlier output wrote. Outputs
    read from (oy sh) in_width + ox sw on, e_in bytes each; they write e_out bytes at their
    (pooled) index."""
    rows, cols = out
    oy, ox = np.divmod(np.arange(rows * cols), cols)
    first_read = (oy * stride[0] * in_width + ox * stride[1]) * e_in
    at = (oy // 2) * (cols // 2) + ox // 2 if pool else oy * cols + ox
    written = np.maximum.accumulate((at + 1) * e_out)  # bytes [0, written) may hold outputs so far
    return bool(np.all(written[:-1] <= first_read[1:]))


def plane_conv(layer: ir.Conv2d, t_in: ir.TensorType, t_out: ir.TensorType, fused: list[ir.Layer],
               fused_types: list[ir.TensorType], first: bool, lut_chunk: int | None = None) -> Choice | Refusal:
    """The kernel for a conv that runs on one plane (`first`: the first layer of its
    channel-by-channel step), with `fused` layers in its output stage. `lut_chunk` 1: int8
    inputs plus 128 through one table per tap (half the tables' bytes, more instructions)."""
    name = "dw_lut"
    kh, kw = layer.weight.shape[2:]
    # non-negative int32 inputs (after a ReLU): one table per tap, one lookup per nibble
    unsigned = t_in.dtype == "int32" and t_in.lo >= 0
    if t_in.dtype != "int8" and not unsigned:
        return Refusal(name, f"{t_in.dtype} inputs that may be negative (the tables take int8 inputs in two "
                             "nibbles, or non-negative ones a nibble at a time)")
    if unsigned and (layer.padding != (0, 0)):
        return Refusal(name, "padding of an int32 plane (only int8 planes are staged)")
    # int8 inputs without padding may trade the two tables per tap for one, of the input + 128
    can_offset = t_in.dtype == "int8" and layer.padding == (0, 0)
    offset = can_offset and lut_chunk == 1
    if kh * kw > MAX_TAPS:
        return Refusal(name, f"a {kh}x{kw} kernel (it takes up to {MAX_TAPS} taps)")
    if layer.weight.min() < -128 or layer.weight.max() > 127:
        return Refusal(name, "weights outside int8 (FP1.3.0's 128)")
    if max(*layer.stride, *layer.padding) > 255:
        return Refusal(name, "a stride or padding over 255")
    post = post_stage(fused, [t_out] + fused_types)
    if post is None:
        return Refusal(name, "cannot fuse these layers")
    bound = partial_sum_bound(layer.weight, layer.bias, 255, 128) if offset else \
        partial_sum_bound(layer.weight, layer.bias, t_in.amax)
    if bound > ir.INT32[1]:
        return Refusal(name, f"a partial sum may reach {bound}, outside int32")
    _, h, wd = t_in.shape
    co, oh, ow = t_out.shape
    ph, pw = layer.padding
    hs, ws = h + 2 * ph, wd + 2 * pw
    if max(h, wd, co, oh, ow, hs, ws) > 0xFFFF:
        return Refusal(name, "a dimension over 65535")
    rows, cols = (oh & ~1, ow & ~1) if post["pool"] else (oh, ow)
    if rows < 1 or cols < 1:
        return Refusal(name, "a pooled output of no rows or columns")
    staged = bool(ph or pw)  # the zero-bordered copy of the plane, after the tables
    tables = (32 if unsigned or offset else 64) * kh * kw
    top = 4 * ((max(int(t_in.hi) + 128 * offset, 1).bit_length() + 3) // 4 - 1)  # the highest nibble's shift
    stage_bytes = -(-hs * ws // 4) * 4 if staged else 0
    shared = staged and first and layer.groups == 1  # one input plane for every channel: staged once
    t_final = fused_types[-1] if fused else t_out
    rq_index = next((k for k, f in enumerate(fused) if isinstance(f, ir.Requant)), 0)

    def stage(x: str, scratch: int) -> str:
        return f"bg_stage_s8_s8({x}, {arena_ptr(scratch + tables + ph * ws + pw, 'int8_t')}, {h}u, {wd}u, {ws}u);"

    def prologue(src: ModelSource, i: int, scratch: int, x: str) -> str:
        zero = f"bg_zero_words({arena_ptr(scratch + tables, 'uint32_t')}, {stage_bytes // 4}u);"
        return zero + (" " + stage(x, scratch) if shared else "")

    def render(src: ModelSource, i: int, p: Pointers) -> str:
        c = p.channel
        x = p.x
        if not p.x_is_plane and layer.groups > 1:
            group = c if co == layer.groups else f"({c} / {co // layer.groups}u)"
            x = f"{x} + {group} * {h * wd}u"  # this channel's plane
        staging = stage(x, p.scratch) + " " if staged and not shared else ""
        if staged:
            x = arena_ptr(p.scratch + tables, "int8_t", const=True)
        w = src.array("int8_t", f"w{i}", int_lines(layer.weight.reshape(co, -1)), co * kh * kw, i)
        if offset:  # x w = (x + 128) w - 128 w: the channel's -128 sum w in its bias
            bias = (0 if layer.bias is None else layer.bias.astype(object)) - \
                128 * layer.weight.reshape(co, -1).astype(object).sum(axis=1)
            b = src.array("int32_t", f"b{i}", int_lines(bias), 4 * co, i)
        else:
            b = src.bias(i, layer)
        post_arg = "0"
        if fused:
            rq = post["requant"]
            m = sh = "0"
            if rq is not None:
                j = i + 1 + rq_index
                m = src.array("int32_t", f"m{j}", int_lines(rq.multiplier), 4 * rq.multiplier.size, j)
                sh = src.array("uint8_t", f"s{j}", int_lines(rq.shift), rq.shift.size, j)
            post_arg = "&" + src.struct("bg_post_t", f"post{i}", [
                m, sh, post["lo"], post["hi"], int(rq is not None and rq.multiplier.size > 1),
                post["relu_before"], int(rq is not None), post["relu_after"],
                int(rq is not None and rq.rounding == "half_up"), post["wide"], post["pool"]])
        out = 2 if p.y16 else int(t_final.dtype == "int8")  # int16 plane, int8, int32
        prm = src.struct("bg_dw_lut_t", f"dwlut{i}", [w, b, post_arg, ws if staged else wd, rows, cols, kh, kw,
                                                      *layer.stride, out, 0 if offset else 1 if p.x16 else 2,
                                                      top if unsigned or offset else 0,
                                                      kh * kw, layer.stride[0] * (ws if staged else wd)])
        fn = "bg_dwconv_lut_u" if unsigned or offset else "bg_dwconv_lut_s8"
        return staging + f"{fn}({x}, {p.y}, &{prm}, {c}, {w} + {c} * {kh * kw}u, {arena_ptr(p.scratch, 'int16_t')});"

    # In place on planes: raster order (a padded plane is read from its staged copy). Without a
    # staged copy the tables are all its scratch, rebuilt for every channel.
    return Choice(name + ("+padded" if staged else ""), FILES, render, per_channel=True, fuses=len(fused),
                  scratch=tables + stage_bytes, prologue=Prologue([], prologue) if staged else None, optional=True,
                  plane_in_place=lambda e_in, e_out: staged or raster_in_place(
                      (rows, cols), layer.stride, wd, bool(post["pool"]), e_in, e_out),
                  narrow=True, scratch_per_call=not staged, trades_scratch=can_offset)
