"""Plane convolutions: a conv that runs one channel plane at a time (inside a channel-by-channel
step, :mod:`..schedule`), with the ReLU / requantization after it and a 2x2 stride-2 max pool
fused into its output stage. 3x3 kernels use ``bg_conv3x3.inc``, instantiated in the model
source once per layer with the layer's shapes and output stage as constants; other sizes use
``bg_conv2d_plane.c``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .... import encodings, ir
from ....ir.bounds import partial_sum_bound
from ..literals import C_TYPE, SUFFIX, arena_ptr, c_int, int_lines
from . import xnor
from .base import Choice, ModelSource, Pointers, Prologue, Refusal, Target, enc_id

PLANE_FILES = ["bg_conv2d_plane.c", "bg_conv2d_plane.h", "bg_conv2d_plane.inc"]
# bg_conv3x3.inc instances use bg_post_t's output stage, and bg_stage_* / bg_min_s8 from bg_conv2d_plane.c
CONV3X3_FILES = PLANE_FILES + ["bg_conv3x3.h", "bg_conv3x3.inc"]


def model_input_only_before(model: ir.Model, index: int) -> bool:
    """Whether layer `index` reads the model's input (through flattens only)."""
    by_output = {n.output: n for n in model.nodes}
    name = model.nodes[index].inputs[0]
    while name != ir.INPUT:
        node = by_output.get(name)  # None: a state
        if node is None or not isinstance(node.op, ir.Flatten):
            return False
        name = node.inputs[0]
    return True


def post_stage(fused: list[ir.Layer], types: list[ir.TensorType]) -> dict[str, Any] | None:
    """The bg_post_t of the layers fused after a conv (ReLU? Requant? ReLU? then a 2x2 stride-2
    MaxPool2d?), or None if the sequence cannot be fused. `types[k]` is the input type of fused[k]."""
    pool = bool(fused) and isinstance(fused[-1], ir.MaxPool2d)
    if pool:
        if fused[-1].kernel != (2, 2) or fused[-1].stride != (2, 2):
            return None
        fused, types = fused[:-1], types[:-1]
    kinds = [layer.kind for layer in fused]
    if kinds not in ([], ["relu"], ["requant"], ["relu", "requant"], ["requant", "relu"], ["relu", "requant", "relu"]):
        return None
    rq = next((layer for layer in fused if isinstance(layer, ir.Requant)), None)
    if rq is not None and not rq.is_plain:  # the output stage rounds half up or down, no zero point
        return None
    post = {"requant": rq, "lo": ir.INT32[0], "hi": ir.INT32[1], "wide": 0, "pool": int(pool),
            "relu_before": int(bool(kinds) and kinds[0] == "relu"),
            "relu_after": int(bool(kinds) and kinds[-1] == "relu" and rq is not None)}
    if rq is not None:
        t_in = types[fused.index(rq)]  # the requant's input range decides 32 or 64 bits
        amax = max(abs(t_in.lo), abs(t_in.hi))
        post.update(lo=rq.out_min, hi=rq.out_max, wide=int(any(
            amax * int(m) + (1 << int(sh)) > ir.INT32[1] for m, sh in zip(rq.multiplier, rq.shift))))
    return post


def _plane_conv(layer: ir.Conv2d, t_in: ir.TensorType, t_out: ir.TensorType,
                fused: list[ir.Layer], fused_types: list[ir.TensorType], offset: bool, first: bool) -> Choice | Refusal:
    """The sliding-window kernel for a conv that runs on one plane, with `fused` layers (their
    output types in `fused_types`) applied in its output stage; None where it does not apply.
    `first`: the conv is the first layer of its channel-by-channel step (it reads the step's
    input tensor, not a plane of it)."""
    kh, kw = layer.weight.shape[2:]
    if layer.stride != (1, 1):
        return Refusal("plane", f"stride {layer.stride[0]}x{layer.stride[1]} (the plane kernels take 1)")
    if kh * kw > 49:
        return Refusal("plane", f"a {kh}x{kw} kernel (the plane kernels take up to 49 taps)")
    for v in (*t_in.shape, *t_out.shape):
        if v > 0xFFFF:
            return Refusal("plane", f"dimension {v} over 65535")
    post = post_stage(fused, [t_out] + fused_types)
    if post is None:
        return Refusal("plane", "cannot fuse these layers")
    t_final = fused_types[-1] if fused else t_out
    ph, pw = layer.padding
    # Padding would have to be -z with the offset (and then is not skipped): no offset there.
    offset = offset and not (ph or pw)
    # Exactness with the offset: sums of w * (x - z) plus bias + z * sum(w) must fit int32.
    wsum = layer.weight.astype(object).reshape(layer.weight.shape[0], -1).sum(axis=1)
    if offset and partial_sum_bound(layer.weight, layer.bias, t_in.hi - t_in.lo, zero=t_in.amax) > ir.INT32[1]:
        offset = False
    # Any order of the sums is exact: every partial sum lies within |bias| + sum |w| * max |x|
    # (ir.validate's bound; with the offset, the check above; padding adds products of 0). A
    # fused pool compares the values golden's pool compares (the kernel may take the maximum
    # before a ReLU and floor shift, which are non-decreasing: the same result).
    sparse = offset or t_in.lo >= 0
    # The kernels take neither padding nor an offset: a padded layer reads its plane from a
    # zero-bordered copy, an offset one from the int32 copy x - z ("staged", in its scratch).
    t_x = "int32" if offset else t_in.dtype
    staged = offset or bool(ph or pw)
    _, h, wd = t_in.shape
    # The staged plane: rows of `ws` elements, the interior `lead` elements from a row's start
    # (int8: rows and interior on whole words, so that staging copies words); the kernel reads
    # hs rows of ws elements from `lead - pw`.
    elem = 4 if t_x == "int32" else 1
    lead = pw if elem == 4 or not staged else -(-pw // 4) * 4
    ws = wd + 2 * pw if elem == 4 or not staged else -(-(lead + wd + pw) // 4) * 4
    hs = h + 2 * ph
    stage_bytes = -(-hs * ws * elem // 4) * 4 if staged else 0
    # A first layer with one input channel (groups 1): every output channel reads the same
    # plane, staged once before the channels.
    shared = staged and first and layer.groups == 1
    fixed = conv3x3_extent(layer, t_out, post)

    def stage(x: str, scratch: int) -> str:
        fn = f"bg_stage_{SUFFIX[t_in.dtype]}_{SUFFIX[t_x]}"
        z = ", z" if offset else ""
        interior = arena_ptr(scratch + (ph * ws + lead) * elem, C_TYPE[t_x])
        return f"{fn}({x}, {interior}, {h}u, {wd}u, {ws}u{z});"

    def prologue(src: ModelSource, i: int, scratch: int, x: str) -> str:
        lines = []
        if offset:
            lines.append(f"z = bg_min_s8({x}, {t_in.size}u);")
        if ph or pw:  # the border stays zero: the channels only write the interior
            lines.append(f"bg_zero_words({arena_ptr(scratch, 'uint32_t')}, {stage_bytes // 4}u);")
        if shared:
            lines.append(stage(x, scratch))
        return " ".join(lines)

    def render(src: ModelSource, i: int, p: Pointers) -> str:
        c = p.channel  # the C expression of the channel this call computes
        co, oh, ow = t_out.shape
        x = p.x
        if not p.x_is_plane and layer.groups > 1:
            group = c if co == layer.groups else f"({c} / {co // layer.groups}u)"
            x = f"{x} + {group} * {h * wd}u"  # this channel's plane
        staging = ""
        if staged:
            staging = "" if shared else stage(x, p.scratch) + " "
            x = arena_ptr(p.scratch + (lead - pw) * elem, C_TYPE[t_x], const=True)
        b = src.bias(i, layer)
        bias_expr = "0" if b == "0" else f"{b}[{c}]"
        if offset:  # sum w x = sum w (x - z) + z * sum w
            wsa = src.array("int32_t", f"ws{i}", int_lines(np.array(wsum, dtype=np.int64)), 4 * len(wsum), i)
            bias_expr = f"{bias_expr} + z * {wsa}[{c}]"
        rq_index = i + 1 + next((k for k, f in enumerate(fused) if f.kind == "requant"), 0)
        if fixed:
            return staging + _conv3x3_call(src, i, layer, t_x, t_final.dtype, ws, fixed, post, rq_index, sparse,
                                           bias_expr, x, p.y, c)
        fn = f"bg_conv2d_plane_{SUFFIX[t_x]}_{SUFFIX[t_final.dtype]}"
        w = src.weights(i, layer)
        shape = src.struct("bg_conv_shape_t", f"conv{i}", [1, hs, ws, 1, oh, ow, kh, kw, 1, 1, 0, 0, 1])
        row = encodings.get(layer.encoding).row_bytes(kh * kw)
        post_arg = "0"
        if fused:
            rq, j = post["requant"], rq_index
            m = sh = "0"
            if rq is not None:
                m = src.array("int32_t", f"m{j}", int_lines(rq.multiplier), 4 * rq.multiplier.size, j)
                sh = src.array("uint8_t", f"s{j}", int_lines(rq.shift), rq.shift.size, j)
            post_arg = "&" + src.struct("bg_post_t", f"post{i}", [
                m, sh, post["lo"], post["hi"], int(rq is not None and rq.multiplier.size > 1),
                post["relu_before"], int(rq is not None), post["relu_after"],
                int(rq is not None and rq.rounding == "half_up"), post["wide"], post["pool"]])
        return (staging + f"{fn}({x}, {p.y}, &{shape}, {w} + {c} * {row}u, {enc_id(layer)}, {bias_expr}, "
                f"{post_arg}, {c});")

    name = ("conv3x3" if fixed else "plane") + ("+offset" if offset else "") + ("+padded" if ph or pw else "")
    return Choice(name, CONV3X3_FILES if fixed else PLANE_FILES, render, per_channel=True,
                  fuses=len(fused), scratch=stage_bytes, optional=stage_bytes > 0,
                  prologue=Prologue(["int32_t z"] if offset else [], prologue) if offset or ph or pw else None)


def conv3x3_extent(layer: ir.Conv2d, t_out: ir.TensorType, post: dict[str, Any]) -> tuple[int, int] | None:
    """(rows, columns) of outputs that the fixed-shape 3x3 kernel computes for this layer, or
    None where it does not apply (other kernel sizes, planes under 2 columns or 1 row)."""
    if layer.weight.shape[2:] != (3, 3):
        return None
    _, oh, ow = t_out.shape
    rows, cols = (oh & ~1, ow & ~1) if post["pool"] else (oh, ow)
    return (rows, cols) if rows >= 1 and cols >= 2 else None


def _conv3x3_call(src: ModelSource, i: int, layer: ir.Conv2d, in_dtype: str, out_dtype: str, width: int,
                  extent: tuple[int, int], post: dict[str, Any], rq_index: int, sparse: bool,
                  bias_expr: str, x: str, y: str, c: str) -> str:
    """An instance of bg_conv3x3.inc for layer i (its shapes and output stage as constants),
    added to the emitted source, and the call that computes channel c with it. rq_index: the
    fused requantization's layer (its parameters are attributed to it)."""
    co = layer.weight.shape[0]
    tap = "int8_t" if layer.weight.min() >= -128 and layer.weight.max() <= 127 else "int16_t"  # FP1.3.0: 128
    taps = src.array(tap, f"k{i}", int_lines(layer.weight.reshape(co, 9)), 9 * co * (1 if tap == "int8_t" else 2), i)
    rq = post["requant"]
    m_expr = sh_expr = "0"
    mult, shift = 1, 0
    mult_pc = shift_pc = False
    if rq is not None:  # a value shared by every channel is a constant, else the channel's own
        mults, shifts = {int(v) for v in rq.multiplier}, {int(v) for v in rq.shift}
        mult_pc, shift_pc = len(mults) > 1, len(shifts) > 1
        if mult_pc:
            m = src.array("int32_t", f"m{rq_index}", int_lines(rq.multiplier), 4 * rq.multiplier.size, rq_index)
            m_expr = f"{m}[{c}]"
        else:
            mult = mults.pop()
        if shift_pc:
            sh = src.array("uint8_t", f"s{rq_index}", int_lines(rq.shift), rq.shift.size, rq_index)
            sh_expr = f"{sh}[{c}]"
        else:
            shift = shifts.pop()
    fn = f"{src.name}_conv3x3_{i}"
    params = {
        "NAME": fn, "IN": C_TYPE[in_dtype], "OUT": C_TYPE[out_dtype], "TAP": tap, "W": width,
        "ROWS": extent[0], "COLS": extent[1], "POOL": post["pool"], "SPARSE": int(sparse),
        "BIAS": int(bias_expr != "0"),
        "RELU_BEFORE": post["relu_before"], "REQUANT": int(rq is not None), "WIDE": post["wide"],
        "HALF_UP": int(rq is not None and rq.rounding == "half_up"),
        "LO": c_int(post["lo"]), "HI": c_int(post["hi"]), "RELU_AFTER": post["relu_after"],
        "MULT": mult, "SHIFT": shift,
    }
    lines = [f"/* layer {i}: 3x3 convolution, {extent[0]}x{extent[1]} outputs of one channel per call */"]
    lines += [f"#define BG_C3_{k} {v}" for k, v in params.items()]
    lines += [f"#define BG_C3_{k}_PER_CHANNEL" for k, on in (("MULT", mult_pc), ("SHIFT", shift_pc)) if on]
    lines.append('#include "bg_conv3x3.inc"')
    src.functions.append("\n".join(lines))
    return f"{fn}({x}, {y}, {taps} + {c} * 9u, {bias_expr}, {m_expr}, {sh_expr});"


def choose_group(model: ir.Model, t_in: ir.TensorType, types: list[ir.TensorType], i: int, last: int,
                 target: Target, first: bool) -> Choice | Refusal | None:
    """For a conv at i inside a channel-by-channel step ending at `last` (`first`: the step's
    first layer, which reads whole tensors): the XNOR kernel for a binary x binary first layer
    (its columns are gathered once, in the step's prologue), else the plane kernel fused with as
    many following ReLU/Requant layers (and a 2x2 max pool after them) as it can take; why not (a
    Refusal); or None where the kernel set has no plane kernels or the conv reads several input
    planes per output plane."""
    layer = model.layers[i]
    if first and (choice := xnor.choose(layer, t_in, types[i + 1], target)) is not None:
        return choice
    if not target.plane_conv or layer.weight.shape[1] != 1:
        return None
    offset = model_input_only_before(model, i) and types[0].lo < 0 and types[0].dtype == "int8"
    best: Choice | Refusal = Refusal("plane", "")
    for n in range(0, 5):
        if i + n > last:
            break
        fused = model.layers[i + 1 : i + 1 + n]
        if any(not isinstance(f, (ir.ReLU, ir.Requant, ir.MaxPool2d)) for f in fused):
            break
        choice = _plane_conv(layer, t_in, types[i + 1], list(fused), types[i + 2 : i + 2 + n], offset, first)
        if isinstance(choice, Choice) or n == 0:
            best = choice
        if fused and isinstance(fused[-1], ir.MaxPool2d):  # nothing is fused after a pool
            break
    return best
