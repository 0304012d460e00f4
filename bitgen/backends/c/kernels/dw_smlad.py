"""3x3 plane convolutions with the dual 16-bit multiply-accumulate (``bg_dw3x3_smlad.inc``):
depthwise layers (and single-input-channel ones) with any padding, stride 1, on the Cortex-M4,
inside channel-by-channel steps like the other plane kernels, with the following ReLU /
requantization and a 2x2 max pool fused.

Each channel's input plane is staged as int16 with its zero padding (the border is zeroed once
before the channels), then tiles of 4 outputs take 24 SMLADs for their 36 multiply-accumulates.
"""
from __future__ import annotations

import numpy as np

from .... import ir
from ....ir.bounds import partial_sum_bound
from ..literals import C_TYPE, SUFFIX, arena_ptr, int_lines, word_lines
from .base import Choice, ModelSource, Pointers, Prologue, Refusal, Target
from .conv_rows import post_params
from .plane import post_stage

FILES = ["bg_dw3x3_smlad.inc", "bg_conv_rows.h", "bg_dsp.h", "bg_conv2d_plane.c", "bg_conv2d_plane.h",
         "bg_conv2d_plane.inc"]  # bg_conv2d_plane.c: the staging functions
INT16 = (-(2**15), 2**15 - 1)


def applies(layer: ir.Layer, target: Target) -> bool:
    return target.dense_conv == "smlad" and isinstance(layer, ir.Conv2d) and layer.weight.shape[1] == 1 \
        and layer.weight.shape[2:] == (3, 3)


def weight_words(weight: np.ndarray) -> np.ndarray:
    """Per output channel, per kernel row (w0, w1, w2): the int16 pairs (w0, w1), (w2, 0),
    (0, w0), (w1, w2) as little-endian words (the low half first)."""
    w = weight.reshape(weight.shape[0], 3, 3).astype(np.int64)
    z = np.zeros_like(w[..., 0])
    halves = np.stack([w[..., 0], w[..., 1], w[..., 2], z, z, w[..., 0], w[..., 1], w[..., 2]], axis=-1)
    return halves.astype("<i2").view("<u4").reshape(weight.shape[0], 12)


def plane_conv(layer: ir.Conv2d, t_in: ir.TensorType, t_out: ir.TensorType, fused: list[ir.Layer],
               fused_types: list[ir.TensorType], first: bool) -> Choice | Refusal:
    """The kernel for a conv that runs on one plane (`first`: the first layer of its
    channel-by-channel step), with `fused` layers in its output stage."""
    name = "dw3x3_smlad"
    if layer.stride != (1, 1):
        return Refusal(name, f"stride {layer.stride[0]}x{layer.stride[1]} (it takes 1)")
    if not (INT16[0] <= t_in.lo and t_in.hi <= INT16[1]) or t_in.dtype not in ("int8", "int32"):
        return Refusal(name, f"inputs in [{t_in.lo}, {t_in.hi}] do not fit int16")
    if layer.weight.min() < INT16[0] or layer.weight.max() > INT16[1]:
        return Refusal(name, "weights outside int16")
    post = post_stage(fused, [t_out] + fused_types)
    if post is None:
        return Refusal(name, "cannot fuse these layers")
    bound = partial_sum_bound(layer.weight, layer.bias, t_in.amax)
    if bound > ir.INT32[1]:
        return Refusal(name, f"a partial sum may reach {bound}, outside int32")
    _, h, wd = t_in.shape
    co, oh, ow = t_out.shape
    if max(h, wd, co, oh, ow) > 0xFFFF:
        return Refusal(name, "a dimension over 65535")
    ph, pw = layer.padding
    rows, cols = (oh & ~1, ow & ~1) if post["pool"] else (oh, ow)
    if rows < 1 or cols < 1:
        return Refusal(name, "a pooled output of no rows or columns")
    # The staged plane: hs rows of ws int16 (even: rows on words), room for the last tile's
    # 6 inputs; the interior at (ph, pw).
    hs = h + 2 * ph
    ws = max(wd + 2 * pw, -(-cols // 4) * 4 + 2)
    ws += ws & 1
    stage_bytes = 2 * hs * ws
    shared = first and layer.groups == 1  # one input plane for every output channel: staged once
    t_final = fused_types[-1] if fused else t_out
    rq_index = next((k for k, f in enumerate(fused) if isinstance(f, ir.Requant)), 0)

    def stage(x: str, scratch: int) -> str:
        interior = arena_ptr(scratch + 2 * (ph * ws + pw), "int16_t")
        return f"bg_stage_{SUFFIX[t_in.dtype]}_s16({x}, {interior}, {h}u, {wd}u, {ws}u);"

    def prologue(src: ModelSource, i: int, scratch: int, x: str) -> str:
        zero = f"bg_zero_words({arena_ptr(scratch, 'uint32_t')}, {stage_bytes // 4}u);"
        return zero + (" " + stage(x, scratch) if shared else "")

    def render(src: ModelSource, i: int, p: Pointers) -> str:
        c = p.channel
        x = p.x
        if not p.x_is_plane and layer.groups > 1:
            group = c if co == layer.groups else f"({c} / {co // layer.groups}u)"
            x = f"{x} + {group} * {h * wd}u"  # this channel's plane
        staging = "" if shared else stage(x, p.scratch) + " "
        words = weight_words(layer.weight)
        w = src.array("uint32_t", f"w{i}", word_lines(words), 4 * words.size, i)
        b = src.bias(i, layer)
        params = post_params(post)
        m_expr = sh_expr = "0"
        rq = post["requant"]
        if params["MULT_PER_CHANNEL"]:
            j = i + 1 + rq_index
            m_expr = f"{src.array('int32_t', f'm{j}', int_lines(rq.multiplier), 4 * rq.multiplier.size, j)}[{c}]"
        if params["SHIFT_PER_CHANNEL"]:
            j = i + 1 + rq_index
            sh_expr = f"{src.array('uint8_t', f's{j}', int_lines(rq.shift), rq.shift.size, j)}[{c}]"
        fn = f"{src.name}_dw3x3_{i}"
        consts = {"NAME": fn, "OUT": C_TYPE[t_final.dtype], "WS": ws, "ROWS": rows, "COLS": cols,
                  "POOL": post["pool"], "BIAS": int(b != "0")} | params
        lines = [f"/* layer {i}: 3x3 plane convolution with SMLAD, {rows}x{cols} outputs of one channel per call */"]
        lines += [f"#define BG_D3_{k} {v}" for k, v in consts.items() if not k.endswith("PER_CHANNEL")]
        lines += [f"#define BG_D3_{k}" for k in ("MULT_PER_CHANNEL", "SHIFT_PER_CHANNEL") if params[k]]
        lines.append('#include "bg_dw3x3_smlad.inc"')
        src.functions.append("\n".join(lines))
        bias = "0" if b == "0" else f"{b}[{c}]"
        xs = arena_ptr(p.scratch, "int16_t", const=True)
        return staging + f"{fn}({xs}, {p.y}, {w} + {c} * 12u, {bias}, {m_expr}, {sh_expr});"

    return Choice(name + ("+padded" if ph or pw else ""), FILES, render, per_channel=True, fuses=len(fused),
                  scratch=stage_bytes, prologue=Prologue([], prologue), optional=True)
