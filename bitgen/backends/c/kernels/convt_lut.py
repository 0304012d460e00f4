"""Transposed convolutions without a multiplier (``bg_convt_lut.c``): the stride-s transposed
convolution as s x s phase sub-convolutions, each output pixel's taps gathered and fed to the
nibble lookup-table fully connected kernel (:mod:`.lut`), with the following ReLU /
requantization fused into the output stage.

For RV32EC parts (the CH32V003), where the generic kernel multiplies through libgcc. Output
pixels of one phase (oy + ph, ox + pw modulo the stride) sum the same taps of the kernel, so
each phase's weights are one fully connected layer in the LUT kernel's layout: together they
hold each weight once (flash as the packed weights). The scratch is one phase's receptive
field, one pixel's sums and the tables. The same call runs on a band or a tile of a tiled step
(``Pointers.band``: the band's shape, the shifts as paddings).
"""
from __future__ import annotations

import numpy as np

from .... import ir
from ..literals import arena_ptr, c_int, int_lines
from . import lut
from .base import Choice, ModelSource, Pointers, Refusal, Target
from .conv_rows import fused_best
from .plane import post_stage

FILES = ["bg_convt_lut.c", "bg_convt_lut.h", "bg_linear_lut.c", "bg_linear_lut.h", "bg_conv2d_plane.h"]
NAME = "lut_convt"


def applies(layer: ir.Layer, target: Target) -> bool:
    return target.dense_conv == "lut" and isinstance(layer, ir.ConvTranspose2d) and layer.groups == 1


def pointwise_last(model: ir.Model, i: int) -> int:
    """The last of the ReLU / Requant layers that follow layer i, each reading only the one
    before it, in a chain nothing else reads (what this kernel may fuse); i without any."""
    nodes, readers = model.nodes, {}
    for node in model.nodes:
        for name in node.inputs:
            readers[name] = readers.get(name, 0) + 1
    for st in model.states:
        readers[st.source] = readers.get(st.source, 0) + 1
    j = i
    while (j + 1 < len(nodes) and j - i < 3 and nodes[j + 1].inputs == (nodes[j].output,)
           and readers.get(nodes[j].output, 0) == 1 and isinstance(nodes[j + 1].op, (ir.ReLU, ir.Requant))):
        j += 1
    return j


def choose(model: ir.Model, types: list[ir.TensorType], t_in: ir.TensorType, i: int, last: int,
           target: Target, lut_chunk: int | None = None) -> Choice | Refusal | None:
    """For the transposed conv at i: the LUT kernel fused with as many of the following
    ReLU/Requant layers (up to `last`) as it can take; why not; or None where the kernel set
    has none. `lut_chunk`: tables per pass, if not the kernel set's default."""
    layer = model.layers[i]
    if not applies(layer, target):
        return None
    return fused_best(model, types, i, last, lambda fused, fused_types: lut_convt(
        layer, t_in, types[i + 1], fused, fused_types, lut_chunk or target.lut_chunk))


def _round4(n: int) -> int:
    return (n + 3) & ~3


def phase_weights(layer: ir.ConvTranspose2d) -> list[np.ndarray]:
    """Per phase (py, px), row-major: the weights of taps ky = py + j sh, kx = px + i sw as a
    fully connected layer (co, c * taps) in the order bg_convt_lut.c gathers (channel, j, i)."""
    rows = layer.output_rows()  # (co, c, kh, kw)
    (sh, sw), co = layer.stride, rows.shape[0]
    return [np.ascontiguousarray(rows[:, :, py::sh, px::sw]).reshape(co, -1) for py in range(sh) for px in range(sw)]


def lut_convt(layer: ir.ConvTranspose2d, t_in: ir.TensorType, t_out: ir.TensorType, fused: list[ir.Layer],
              fused_types: list[ir.TensorType], chunk: int) -> Choice | Refusal:
    post = post_stage(fused, [t_out] + fused_types)
    if post is None or post["pool"]:
        return Refusal(NAME, "cannot fuse these layers")
    if t_in.dtype != "int8":
        return Refusal(NAME, f"{t_in.dtype} inputs (the LUT kernel reads int8)")
    c, h, w = t_in.shape
    co, oh, ow = t_out.shape
    kh, kw = layer.weight.shape[2:]
    (sh, sw), (ph, pw) = layer.stride, layer.padding
    for v in (c, h, w, co, oh, ow):
        if v > 0xFFFF:
            return Refusal(NAME, f"dimension {v} over 65535")
    if sh > kh or sw > kw:
        return Refusal(NAME, f"stride {sh}x{sw} over the {kh}x{kw} kernel (output pixels without a tap)")
    # Each phase as a fully connected layer over its gathered taps (zeros outside the input);
    # the LUT kernel proves its own exactness for each.
    t_col = ir.TensorType((c * kh * kw,), "int8", min(t_in.lo, 0), max(t_in.hi, 0))
    phases = []
    for wp in phase_weights(layer):
        fc = lut.lut_params(ir.Linear(weight=wp, encoding=layer.encoding, bias=layer.bias),
                            ir.TensorType((wp.shape[1],), "int8", t_col.lo, t_col.hi), offset=False, max_chunk=chunk)
        if fc is None:
            return Refusal(NAME, "a partial sum or a table entry may leave its range (int32, int16)")
        phases.append((wp.shape[1], fc))
    t_final = fused_types[-1] if fused else t_out
    rq_index = next((k for k, f in enumerate(fused) if isinstance(f, ir.Requant)), None)
    col_bytes = _round4(max(n for n, _ in phases))
    acc_bytes = 4 * max(fc.rows for _, fc in phases)
    table_bytes = lut.scratch_bytes(max(fc.chunk for _, fc in phases))

    def render(src: ModelSource, i: int, p: Pointers) -> str:
        entries = ["{" + ", ".join(f if isinstance(f, str) else c_int(int(f)) for f in fc.fields(src, i, f"p{k}")) + "},"
                   for k, (_, fc) in enumerate(phases)]
        fcs = src.array("bg_lut_fc_t", f"lutt{i}", entries, 0, i)
        post_arg = "0"
        if fused:
            rq = post["requant"]
            m = shv = "0"
            if rq is not None:
                j = i + 1 + rq_index
                m = src.array("int32_t", f"m{j}", int_lines(rq.multiplier), 4 * rq.multiplier.size, j)
                shv = src.array("uint8_t", f"s{j}", int_lines(rq.shift), rq.shift.size, j)
            post_arg = "&" + src.struct("bg_post_t", f"post{i}", [
                m, shv, post["lo"], post["hi"], int(rq is not None and rq.multiplier.size > 1),
                post["relu_before"], int(rq is not None), post["relu_after"],
                int(rq is not None and rq.rounding == "half_up"), post["wide"], 0])
        col = arena_ptr(p.scratch, "int8_t")
        acc = arena_ptr(p.scratch + col_bytes, "int32_t")
        tables = arena_ptr(p.scratch + col_bytes + acc_bytes, "int16_t")
        out8 = int(t_final.dtype == "int8")
        if p.band is not None:  # a band of rows or a tile (a tiled step): the shape built in place
            n_in, n_out, pad, w_in, w_out, pad_w = p.band
            g = ", ".join(str(v) for v in [c, n_in, w_in, co, n_out, w_out, kh, kw, sh, sw, pad, pad_w, 1])
            return (f"{{ const bg_conv_shape_t g = {{{g}}}; const bg_convt_lut_t q = {{{fcs}, &g, {post_arg}, "
                    f"{out8}}}; bg_convt_lut_s8({p.x}, {p.y}, &q, {col}, {acc}, {tables}); }}")
        shape = src.struct("bg_conv_shape_t", f"conv{i}", [c, h, w, co, oh, ow, kh, kw, sh, sw, ph, pw, 1])
        params = src.struct("bg_convt_lut_t", f"convtlut{i}", [fcs, f"&{shape}", post_arg, out8])
        return f"bg_convt_lut_s8({p.x}, {p.y}, &{params}, {col}, {acc}, {tables});"

    return Choice(NAME, FILES, render, scratch=col_bytes + acc_bytes + table_bytes,
                  fuses=len(fused), trades_scratch=True, optional=True)
