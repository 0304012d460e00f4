"""Dense convolutions without a multiplier (``bg_conv_lut.c``): each output pixel's receptive
field gathered and fed to the nibble lookup-table fully connected kernel (:mod:`.lut`), with the
following ReLU / requantization and a 2x2 max pool fused into the output stage.

For RV32EC parts (the CH32V003), where the generic kernel multiplies through libgcc. The
weights stay packed at their own width (the LUT kernel reads nibbles), so flash is what the
generic kernel takes; the scratch is one receptive field, one pixel's sums and the tables.
"""
from __future__ import annotations

from .... import ir
from ..literals import arena_ptr, int_lines
from . import lut
from .base import Choice, ModelSource, Pointers, Refusal, Target
from .conv_rows import fused_best
from .plane import post_stage

FILES = ["bg_conv_lut.c", "bg_conv_lut.h", "bg_linear_lut.c", "bg_linear_lut.h", "bg_conv2d_plane.h"]


def applies(layer: ir.Layer, target: Target) -> bool:
    return target.dense_conv == "lut" and isinstance(layer, ir.Conv2d) and layer.groups == 1


def choose(model: ir.Model, types: list[ir.TensorType], t_in: ir.TensorType, i: int, last: int,
           target: Target, lut_chunk: int | None = None) -> Choice | Refusal | None:
    """For the dense conv at i of a step ending at `last`: the LUT convolution fused with as many
    of the following ReLU/Requant layers (and a 2x2 max pool) as it can take; why not; or None
    where the kernel set has none. `lut_chunk`: tables per pass, if not the kernel set's default."""
    layer = model.layers[i]
    if not applies(layer, target):
        return None
    return fused_best(model, types, i, last, lambda fused, fused_types: lut_conv(
        layer, t_in, types[i + 1], fused, fused_types, lut_chunk or target.lut_chunk))


def _round4(n: int) -> int:
    return (n + 3) & ~3


def lut_conv(layer: ir.Conv2d, t_in: ir.TensorType, t_out: ir.TensorType, fused: list[ir.Layer],
              fused_types: list[ir.TensorType], chunk: int) -> Choice | Refusal:
    name = "lut_conv"
    post = post_stage(fused, [t_out] + fused_types)
    if post is None:
        return Refusal(name, "cannot fuse these layers")
    if t_in.dtype != "int8":
        return Refusal(name, f"{t_in.dtype} inputs (the LUT kernel reads int8)")
    c, h, w = t_in.shape
    co, oh, ow = t_out.shape
    kh, kw = layer.weight.shape[2:]
    for v in (c, h, w, co, oh, ow):
        if v > 0xFFFF:
            return Refusal(name, f"dimension {v} over 65535")
    if max(kh, kw, *layer.stride, *layer.padding) > 255:
        return Refusal(name, "a kernel size, stride or padding over 255")
    rows, cols = (oh & ~1, ow & ~1) if post["pool"] else (oh, ow)
    if rows < 1 or cols < 1:
        return Refusal(name, "a pooled output of no rows or columns")
    # The layer as a fully connected one over a receptive field (golden's weight order), whose
    # inputs are the layer's, and zeros where the window covers padding.
    fc_layer = ir.Linear(weight=layer.weight.reshape(co, -1), encoding=layer.encoding, bias=layer.bias)
    n_in = fc_layer.weight.shape[1]
    t_col = ir.TensorType((n_in,), "int8", min(t_in.lo, 0), max(t_in.hi, 0))
    fc = lut.lut_params(fc_layer, t_col, offset=False, max_chunk=chunk)
    if fc is None:
        return Refusal(name, "a partial sum or a table entry may leave its range (int32, int16)")
    t_final = fused_types[-1] if fused else t_out
    rq_index = next((k for k, f in enumerate(fused) if isinstance(f, ir.Requant)), None)
    col_bytes, acc_bytes = _round4(n_in), 4 * fc.rows

    def render(src: ModelSource, i: int, p: Pointers) -> str:
        prm = fc.render(src, i)
        shape = None if p.band else src.struct("bg_conv_shape_t", f"conv{i}", [c, h, w, co, oh, ow, kh, kw,
                                                                                *layer.stride, *layer.padding, 1])
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
        col = arena_ptr(p.scratch, "int8_t")
        acc = arena_ptr(p.scratch + col_bytes, "int32_t")
        tables = arena_ptr(p.scratch + col_bytes + acc_bytes, "int16_t")
        if p.band is not None:  # a band of rows (a tiled step): shapes built in place, no pool
            n_in, n_out, pad, w_in, w_out, pad_w = p.band  # (a tile: its columns too)
            g = ", ".join(str(v) for v in [c, n_in, w_in, co, n_out, w_out, kh, kw, *layer.stride, pad, pad_w, 1])
            q = f"&{prm}, &g, {post_arg}, {n_out}, {w_out}, {int(t_final.dtype == 'int8')}"
            return (f"{{ const bg_conv_shape_t g = {{{g}}}; const bg_conv_lut_t q = {{{q}}}; "
                    f"bg_conv_lut_s8({p.x}, {p.y}, &q, {col}, {acc}, {tables}); }}")
        params = src.struct("bg_conv_lut_t", f"convlut{i}", [f"&{prm}", f"&{shape}", post_arg, rows, cols,
                                                             int(t_final.dtype == "int8")])
        return f"bg_conv_lut_s8({p.x}, {p.y}, &{params}, {col}, {acc}, {tables});"

    return Choice("lut_conv", FILES, render, scratch=col_bytes + acc_bytes + lut.scratch_bytes(fc.chunk),
                  fuses=len(fused), trades_scratch=True, optional=True)
