"""The C of a tiled step (:mod:`..tiling`): the kernels of its layers, each run on a band of rows.

Per strip, a table row gives every tensor's first row and row count and each spatial kernel's
shift. A strip buffer holds a band of rows of every channel (CHW with that band's height), so a
generic kernel run on it sees a smaller tensor: a convolution's or transposed convolution's
shape gets the band's heights and the shift as its vertical padding (tiling._need), a pool the
band's heights, an upsampling bg_upsample_rows with the phase. Convolutions run one output
channel at a time (their int32 rows into a plane, finished by their pointwise layers into the
stage's buffer); other stages run whole, their pointwise layers then finish each channel in
place. On RV32EC a convolution or a transposed convolution with its pointwise layers may take the
LUT convolution instead (:func:`fused_choice`; kernels/convt_lut.py for the transposed one), whose shape takes the band the same way (Pointers.band). The arithmetic
is the kernels' own: the same products and sums, over fewer rows.
"""
from __future__ import annotations

import math
import re

from .... import encodings, ir
from ..literals import C_TYPE, SUFFIX, hex_lines, int_lines
from ..tiling import Stage, Tiling
from . import conv_lut, convt_lut
from .base import Choice, ModelSource, Pointers, Target, enc_id

FILES = ["bg_rows.c", "bg_rows.h", "bg_rows.inc"]


def fused_choice(model: ir.Model, types: list[ir.TensorType], stage: Stage, target: Target) -> Choice | None:
    """A kernel that computes a whole stage on a band, all channels with its pointwise layers
    fused, where the kernel set has one: the LUT convolution of RV32EC (no multiplier; the
    generic kernel multiplies through libgcc there). None: the generic kernels."""
    layer = model.layers[stage.first]
    family = conv_lut if conv_lut.applies(layer, target) else convt_lut if convt_lut.applies(layer, target) else None
    if family is None or types[stage.first].dtype != "int8":
        return None
    follow = [model.layers[j] for j in range(stage.first + 1, stage.last + 1)]
    make = conv_lut.lut_conv if family is conv_lut else convt_lut.lut_convt
    choice = make(layer, types[stage.first], types[stage.first + 1], follow,
                  [types[j + 1] for j in range(stage.first + 1, stage.last + 1)], target.lut_chunk)
    return choice if isinstance(choice, Choice) and choice.fuses == len(follow) else None


def _typed(base: str, dtype: str, const: bool) -> str:
    """`base` (a byte pointer expression) as a pointer to elements of `dtype`."""
    return f"(({'const ' if const else ''}{C_TYPE[dtype]} *)({base}))"


def render(model: ir.Model, types: list[ir.TensorType], choices: list[Choice], tiling: Tiling,
           src: ModelSource, x: str, y: str, scratch: int) -> list[str]:
    """C lines of one tiled step: `x`, `y` the byte pointers (uint8_t *) of the run's input and
    output (`y` unused where the output streams); the strip buffers from arena offset `scratch`."""
    layers, tt = model.layers, tiling.types
    n_t, n_s = len(tt), len(tiling.stages)
    two_d = bool(tiling.tile_cols)
    # per tile: each tensor's first row and row count (and first column and column count),
    # then each spatial kernel's shift (and horizontal shift)
    if two_d:
        per_strip = 4 * n_t + 2 * n_s
        table = [v for rows, cols, shifts, cshifts in zip(tiling.rows, tiling.cols, tiling.shifts, tiling.col_shifts)
                 for v in [n for (r0, r1), (c0, c1) in zip(rows, cols) for n in (r0, r1 - r0, c0, c1 - c0)]
                 + [n for sh, csh in zip(shifts, cshifts) for n in (sh, csh)]]
    else:
        per_strip = 2 * n_t + n_s
        table = [v for rows, shifts in zip(tiling.rows, tiling.shifts)
                 for v in [n for r0, r1 in rows for n in (r0, r1 - r0)] + shifts]
    tab = src.array("uint8_t", f"tile{tiling.first}", int_lines(table), len(table), tiling.first)
    buf = {"a": scratch, "b": scratch + tiling.buffers["a"],
           "plane": scratch + tiling.buffers["a"] + tiling.buffers["b"]}
    buf["kernel"] = buf["plane"]  # (one stage at a time: a plane or a fused kernel's scratch)
    buf["band"] = buf["plane"] + max(tiling.buffers["plane"], tiling.buffers["kernel"])
    lines = ["{", "    uint32_t s, c;", f"    for (s = 0; s < {len(tiling.rows)}u; s++) {{",
             f"        const uint8_t *r = {tab} + s * {per_strip}u;"]
    body: list[str] = []

    def r0(t: int) -> str:
        return f"r[{(4 if two_d else 2) * t}]"

    def nr(t: int) -> str:
        return f"r[{(4 if two_d else 2) * t + 1}]"

    def c0(t: int) -> str:
        return f"r[{4 * t + 2}]" if two_d else "0"

    def nc(t: int) -> str:
        return f"r[{4 * t + 3}]" if two_d else f"{tt[t].shape[2]}u"

    def shift(k: int) -> str:
        return f"r[{4 * n_t + 2 * k}]" if two_d else f"r[{2 * n_t + k}]"

    def cshift(k: int, layer: ir.Layer) -> str:
        return f"r[{4 * n_t + 2 * k + 1}]" if two_d else str(layer.padding[1])

    def elem(t: int) -> int:
        return 1 if tt[t].dtype == "int8" else 4

    last = n_t - 1
    ct, ht, wt = tt[last].shape
    # where the run's output goes: the whole tensor, or (streaming) one band of full rows
    out_base, out_row0 = (f"(arena + {buf['band']})", None) if tiling.stream else (y, r0(last))
    out_plane = f"{tiling.strip_rows * wt * elem(last)}u" if tiling.stream else f"{ht * wt * elem(last)}u"

    def at(t: int) -> str:
        """Byte pointer to the tile of tensor t (in its buffer, or in place)."""
        c, h, w = tt[t].shape
        if t == 0 and c == 1 and not two_d:
            return f"({x} + (uint32_t){r0(0)} * {w * elem(0)}u)"
        if t == last and tiling.direct:
            return (f"({out_base} + (uint32_t){out_row0} * {w * elem(t)}u)" if out_row0 else out_base)
        return f"(arena + {buf['a' if t % 2 == 0 else 'b']})"

    c0_, h0, w0 = tt[0].shape
    e0 = elem(0)
    if not (c0_ == 1 and not two_d):  # the tile the run reads of its input, into a strip buffer
        body.append(f"bg_copy_rect({x} + ((uint32_t){r0(0)} * {w0}u + {c0(0)}) * {e0}u, {at(0)}, {c0_}u, {nr(0)}, "
                    f"(uint32_t){nc(0)} * {e0}u, {w0 * e0}u, {h0 * w0 * e0}u, (uint32_t){nc(0)} * {e0}u, "
                    f"(uint32_t){nr(0)} * {nc(0)} * {e0}u);")
    for k, st in enumerate(tiling.stages):
        i = st.first
        layer, t_in, t_mid = layers[i], types[i], types[i + 1]
        n_in, n_out = nr(k), nr(k + 1)
        w_in, w_out = nc(k), nc(k + 1)
        c, _, w = t_in.shape
        co, _, ow = t_mid.shape
        xin, yout = at(k), at(k + 1)
        out_elems = f"(uint32_t){n_out} * {w_out}"
        follow = list(range(st.first + 1, st.last + 1))
        if i in tiling.fused:  # one call: every channel, the pointwise layers fused
            p = Pointers(x=_typed(xin, t_in.dtype, True), y=f"(void *){yout}", scratch=buf["kernel"],
                         band=(n_in, n_out, shift(k), w_in, w_out, cshift(k, layer)))
            body.append(choices[i].render(src, i, p))
            continue
        if isinstance(layer, (ir.Conv2d, ir.ConvTranspose2d)):
            g = layer.groups
            cig, cog = c // g, co // g
            enc = encodings.get(layer.encoding)
            if isinstance(layer, ir.Conv2d):
                kh, kw = layer.weight.shape[2:]
                w_name, b_name = src.packed_weights(i, layer)
                row = enc.row_bytes(math.prod(layer.weight.shape[1:]))
                fn = f"bg_conv2d_{SUFFIX[t_in.dtype]}"
            else:
                rows = layer.output_rows()
                kh, kw = rows.shape[2:]
                packed = enc.pack_rows(rows.reshape(rows.shape[0], -1))
                w_name = src.array("uint8_t", f"w{i}", hex_lines(packed), len(packed), i)
                b_name = src.bias(i, layer)
                row = enc.row_bytes(math.prod(rows.shape[1:]))
                fn = f"bg_conv_transpose2d_{SUFFIX[t_in.dtype]}"
            # the shape of the tile (built in place: a struct copy would call memcpy)
            shape = ", ".join(str(v) for v in [cig, n_in, w_in, 1, n_out, w_out, kh, kw, *layer.stride, shift(k),
                                               cshift(k, layer), 1])
            group = "c" if cog == 1 else f"(c / {cog}u)"
            xg = _typed(xin, t_in.dtype, True) + ("" if g == 1 else f" + {group} * {cig}u * {n_in} * {w_in}")
            plane = f"(arena + {buf['plane']})" if follow else None
            ydst = _typed(plane or yout, "int32", False) + ("" if plane else f" + c * {out_elems}")
            bias = b_name if b_name == "0" else f"{b_name} + c"
            body += [f"{{ const bg_conv_shape_t g = {{{shape}}};",
                     f"  for (c = 0; c < {co}u; c++) {{",
                     f"    {fn}({xg}, {ydst}, &g, {w_name} + c * {row}u, {enc_id(layer)}, {bias});"]
            src_ptr = _typed(plane, "int32", True) if plane else None
            for j in follow:
                dst_t = types[j + 1]
                here = _typed(yout, types[j].dtype, True) + f" + c * {out_elems}"  # in place
                p = Pointers(x=src_ptr if j == follow[0] else here,
                             y=_typed(yout, dst_t.dtype, False) + f" + c * {out_elems}",
                             channel="c", x_is_plane=True, elements=out_elems)
                body.append("    " + choices[j].render(src, j, p))
            body += ["  }", "}"]
            continue
        if isinstance(layer, ir.Upsample):  # (full-width tiles only: tiling.plan)
            fh, fw = layer.factor
            body.append(f"bg_upsample_rows_{SUFFIX[t_in.dtype]}({_typed(xin, t_in.dtype, True)}, "
                        f"{_typed(yout, t_mid.dtype, False)}, {c}u, {n_in}, {w}u, {fh}u, {fw}u, {shift(k)}, {n_out});")
        else:  # pooling
            shape = ", ".join(str(v) for v in [c, n_in, w_in, n_out, w_out, *layer.kernel, *layer.stride])
            body.append(f"{{ const bg_pool_shape_t g = {{{shape}}}; "
                        f"bg_{layer.kind}_{SUFFIX[t_in.dtype]}({_typed(xin, t_in.dtype, True)}, "
                        f"{_typed(yout, t_mid.dtype, False)}, &g); }}")
        if follow:  # channel by channel, in place (each output no wider than its input)
            body.append(f"for (c = 0; c < {co}u; c++) {{")
            for j in follow:
                p = Pointers(x=_typed(yout, types[j].dtype, True) + f" + c * {out_elems}",
                             y=_typed(yout, types[j + 1].dtype, False) + f" + c * {out_elems}",
                             channel="c", x_is_plane=True, elements=out_elems)
                body.append("    " + choices[j].render(src, j, p))
            body.append("}")
    et = elem(last)
    if not tiling.direct:  # the tile into the run's output (or the band being streamed)
        row0 = f"(uint32_t){out_row0} * {wt}u + " if out_row0 else ""
        body.append(f"bg_copy_rect({at(last)}, {out_base} + ({row0}{c0(last)}) * {et}u, {ct}u, {nr(last)}, "
                    f"(uint32_t){nc(last)} * {et}u, (uint32_t){nc(last)} * {et}u, (uint32_t){nr(last)} * {nc(last)} * {et}u, "
                    f"{wt * et}u, {out_plane});")
    if tiling.stream:  # a band of full rows is done: it leaves now (one channel: rows in output order)
        done = f"{c0(last)} + {nc(last)} == {wt}u" if two_d else None
        send = [f"BG_STREAM((uint32_t){r0(last)} * {wt * et}u, {out_base}, (uint32_t){nr(last)} * {wt * et}u);",
                f"BG_LAYER_PART({tiling.last}, (uint32_t){r0(last)} * {wt * et}u, {out_base}, "
                f"(uint32_t){nr(last)} * {wt * et}u);"]
        body += ([f"if ({done}) {{"] + ["    " + ln for ln in send] + ["}"]) if done else send
    if not any(re.search(r"\bc\b", b) for b in body):  # every stage fused: no channel loop
        lines[1] = "    uint32_t s;"
    lines += ["        " + b for b in body]
    lines += ["    }", "}"]
    return lines
