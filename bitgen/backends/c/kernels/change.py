"""Change-based convolution steps: a change gate, the convolution reading it, its output stage
(ReLU / requantization) and a P x P stride-P max pool, in one kernel that computes only what a
changed pixel reaches. Two kernels, both writing golden's values every frame:

* by deltas (``bg_change_delta.inc``, instantiated per step with its shapes; targets with a
  multiplier): the step keeps the convolution's accumulators (bias + the sums over the gate's
  reference), a value of the reference that changed by d adds d x its taps to them, exactly, and
  the pool windows holding a moved accumulator get their maximum and output stage again. A
  changed value costs kh x kw x co products however scattered the changes are. Where every
  partial sum fits int16 and the output channels pair up, two accumulators share a word and one
  multiply updates both. A classifier reading the step (Flatten, Linear) joins it: the step
  keeps the Linear's sums as well and adds (new - old) x the weights of each pooled value that
  changed. The accumulators are SRAM the step keeps (in the memory report);
* recomputing (``bg_change_conv_s8_*`` in ``bg_change.c``; RV32EC, or `recompute`): the outputs
  whose receptive field holds a changed pixel are computed again from the reference, the others
  kept; where the target has the dense row kernel (conv_rows.py) busy runs of rows are recomputed
  by it (``BG_CR_BAND``), at its cost per product, scattered outputs one by one. It keeps no
  accumulators.

Either way the step's output lives in a buffer of its own outside the arena (it keeps the frame
before's values), and the gate's reference state is updated in place, so neither the gate's
output nor the convolution's is ever stored. After a reset the first frame computes every output.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .... import ir
from ....ir.bounds import partial_sum_bound
from .. import schedule
from ..literals import C_TYPE, SUFFIX, arena_ptr, c_int, int_lines
from . import conv_rows
from .base import Choice, ModelSource, Pointers, Target
from .plane import post_stage

FILES = ["bg_change.c", "bg_change.h", "bg_conv2d_plane.h"]
DENSE_ABOVE = 0.75  # recompute every output when more than this share of them is touched
# Where the target has a dense row kernel (conv_rows.py), it recomputes a run of rows with
# touched outputs as their bounding rectangle when that holds at most BAND_RATIO times as many
# outputs as are touched, and else the rows with more than 1/BAND_RATIO of their outputs
# touched: recomputing output by output (a copied receptive field, then a dot product per
# output channel) costs about this many times more per product. The best of the ratios
# tried on examples/video-cnn.toml's stream at T = 0 and tuned (mul: 1.2, 2, 2.5, 3.5, 5, 8;
# smlad: 2.5, 4, 8), on rv32emc-sim and max78000-sim.
BAND_RATIO = {"mul": 3.5, "smlad": 2.5}


def _by_deltas(types: list[ir.TensorType], i: int, target: Target, recompute: bool) -> bool:
    """Whether the step of gate i goes by deltas (its list holds accumulator indices in 16 bits)."""
    return target.change_delta and not recompute and types[i + 2].shape[1] * types[i + 2].shape[2] <= 0xFFFF


def fused_last(model: ir.Model, types: list[ir.TensorType], i: int, target: Target,
               recompute: bool = False) -> int | None:
    """For a change gate at node i: the last node of its change-based step (the convolution,
    then a ReLU / requantization stage and a square max pool as far as they go), or None where
    the fused kernel does not apply."""
    nodes = model.nodes
    if not target.change_conv or not isinstance(nodes[i].op, ir.ChangeGate) or i + 1 >= len(nodes):
        return None
    gate, conv = nodes[i], nodes[i + 1]
    readers = schedule.readers_of(model)
    states = {st.name: st for st in model.states}
    ref = states.get(gate.inputs[1])
    if ref is None or ref.source != gate.output or readers[gate.output] != 2:  # the conv and the state
        return None
    if not isinstance(conv.op, ir.Conv2d) or conv.inputs != (gate.output,) or conv.op.groups != 1:
        return None
    t_in = types[i + 1]  # the gate's output: the conv's input
    if t_in.dtype != "int8" or len(t_in.shape) != 3:
        return None
    w = conv.op.weight
    if w.min() < -128 or w.max() > 127 or any(v > 255 for v in (*w.shape[2:], *conv.op.stride, *conv.op.padding)):
        return None
    if max(*t_in.shape, w.shape[0]) > 0xFFFF or partial_sum_bound(w, conv.op.bias, t_in.amax) > ir.INT32[1]:
        return None
    last = i + 1
    while last + 1 < len(nodes) and nodes[last + 1].inputs == (nodes[last].output,) \
            and readers[nodes[last].output] == 1 and isinstance(nodes[last + 1].op, (ir.ReLU, ir.Requant, ir.MaxPool2d)):
        last += 1
        if isinstance(nodes[last].op, ir.MaxPool2d):
            break
    while last > i + 1 and _stage(model, types, i + 1, last) is None:
        last -= 1
    if _stage(model, types, i + 1, last) is None:
        return None
    if _by_deltas(types, i, target, recompute) and (fc := _classifier(model, types, last, readers)) is not None:
        return fc
    return last


def _classifier(model: ir.Model, types: list[ir.TensorType], last: int, readers: dict[str, int]) -> int | None:
    """A Flatten and a Linear (int8 weights and input) reading the step's output and nothing else:
    the step by deltas then keeps the Linear's sums too, and adds (new - old) x the weights of
    each output value that changed (the Linear's node index), else None."""
    nodes = model.nodes
    if last + 2 >= len(nodes) or types[last + 1].dtype != "int8":
        return None
    flat, fc = nodes[last + 1], nodes[last + 2]
    if not (isinstance(flat.op, ir.Flatten) and flat.inputs == (nodes[last].output,) and isinstance(fc.op, ir.Linear)
            and fc.inputs == (flat.output,) and readers[nodes[last].output] == 1 and readers[flat.output] == 1):
        return None
    w = fc.op.weight
    if w.min() < -128 or w.max() > 127 or partial_sum_bound(w, fc.op.bias, types[last + 1].amax) > ir.INT32[1]:
        return None
    return last + 2


def _stage(model: ir.Model, types: list[ir.TensorType], conv: int, last: int) -> dict[str, Any] | None:
    """The output stage of the layers after the conv up to `last` (a bg_post_t and the pool), or None."""
    fused = model.layers[conv + 1: last + 1]
    pool = 1
    if fused and isinstance(fused[-1], ir.MaxPool2d):
        mp = fused[-1]
        if mp.kernel[0] != mp.kernel[1] or mp.kernel != mp.stride or mp.kernel[0] > 255:
            return None
        pool, fused = mp.kernel[0], fused[:-1]
    if any(isinstance(f, ir.Requant) and f.rounding not in ("half_up", "floor") for f in fused):
        return None
    post = post_stage(list(fused), types[conv + 1: conv + 1 + len(fused)])
    if post is None:
        return None
    _, oh, ow = types[conv + 1].shape
    if oh // pool < 1 or ow // pool < 1 or (oh // pool) * (ow // pool) > 0xFFFF:  # offsets in uint16
        return None
    requant_layer = next((n for n in range(conv + 1, last + 1) if model.layers[n].kind == "requant"), conv)
    return post | {"pool_size": pool, "fused": len(fused) + (pool > 1), "requant_layer": requant_layer}


def _acc_reach(size: int, out: int, k: int, s: int, p: int) -> np.ndarray:
    """Per input index along one axis: (first convolution output whose window holds it, how
    many, the kernel index there)."""
    rows = []
    for i in range(size):
        lo = max(0, -(-(i + p - k + 1) // s))
        hi = min(out - 1, (i + p) // s)
        rows.append((lo, hi - lo + 1, i + p - lo * s) if hi >= lo else (0, 0, 0))
    return np.array(rows, dtype=np.int64)


def _reach(size: int, out: int, k: int, s: int, p: int, pool: int, y_size: int) -> np.ndarray:
    """Per input index along one axis: (first output of the pooled plane it reaches, how many)."""
    rows = []
    for lo, n, _ in _acc_reach(size, out, k, s, p):
        first, stop = lo // pool, min((lo + n - 1) // pool, y_size - 1)
        rows.append((first, max(0, stop - first + 1)) if n and first < y_size else (0, 0))
    return np.array(rows, dtype=np.int64)


@dataclass(frozen=True)
class _Step:
    """A change-based step's shapes: the gate's input (c, h, w), the convolution's output (co,
    oh, ow), kernel, stride, padding, and its pooled plane (yh, yw)."""

    c: int
    h: int
    w: int
    co: int
    oh: int
    ow: int
    kh: int
    kw: int
    sh: int
    sw: int
    ph: int
    pw: int
    pool: int

    @classmethod
    def of(cls, types: list[ir.TensorType], i: int, conv: ir.Conv2d, pool: int) -> "_Step":
        (c, h, w), (co, oh, ow) = types[i + 1].shape, types[i + 2].shape
        return cls(c, h, w, co, oh, ow, *conv.weight.shape[2:], *conv.stride, *conv.padding, pool)

    @property
    def yh(self) -> int:
        return self.oh // self.pool

    @property
    def yw(self) -> int:
        return self.ow // self.pool

    def pool_tables(self, src: ModelSource, k: int) -> list[str]:
        """Per input row (first pooled row it reaches * yw, how many, that row) and per input
        column (first pooled column, how many): the uint16 tables both kernels mark with."""
        reach = _reach(self.h, self.oh, self.kh, self.sh, self.ph, self.pool, self.yh)
        rows = np.stack([reach[:, 0] * self.yw, reach[:, 1], reach[:, 0]], axis=1)  # its offset in the plane too
        cols = _reach(self.w, self.ow, self.kw, self.sw, self.pw, self.pool, self.yw)
        return [src.array("uint16_t", f"{name}{k}", int_lines(a.reshape(-1)), 2 * a.size, k)
                for name, a in (("cr", rows), ("cc", cols))]


def choose(model: ir.Model, types: list[ir.TensorType], i: int, last: int, target: Target,
           delta: bool | None = None) -> Choice:
    """The kernel of the change-based step from gate i to `last` (fused_last said it applies):
    by deltas where the target has a multiplier (unless `delta` is False), else recomputing."""
    if _by_deltas(types, i, target, delta is False):
        return _choose_delta(model, types, i, last)
    gate_t, conv = types[i + 1], model.layers[i + 1]
    stage = _stage(model, types, i + 1, last)
    assert stage is not None
    g = _Step.of(types, i, conv, stage["pool_size"])
    t_out = types[last + 1]
    outputs = g.yh * g.yw
    field = g.c * g.kh * g.kw
    # marks per output, 3 uint16 row statistics per row, a receptive field, co results (bg_change.h)
    scratch = _round4(outputs) + _round4(2 * 3 * g.yh) + _round4(2 * field) + 4 * g.co
    band = conv_rows.band_kernel(conv, gate_t, types[i + 2], model.layers[i + 2: last + 1], types[i + 3: last + 2],
                                 target) if g.pool <= 2 else None
    band_gain4 = round(4 * BAND_RATIO[target.dense_conv]) if band is not None else 0

    def render(src: ModelSource, k: int, p: Pointers) -> str:
        weight = src.array("int8_t", f"cw{k}", int_lines(conv.weight.reshape(-1)), conv.weight.size, k)
        bias = src.bias(k + 1, conv)
        tables = g.pool_tables(src, k)
        post = _post(src, k, stage)
        prm = src.struct("bg_change_conv_t", f"change{k}", [
            weight, bias, *tables, post, g.c, g.h, g.w, g.co, g.yh, g.yw, g.kh, g.kw, g.sh, g.sw,
            g.ph, g.pw, g.pool, model.layers[k].threshold, int(DENSE_ABOVE * outputs), band_gain4])
        fn = f"bg_change_conv_s8_{SUFFIX[t_out.dtype]}"
        counter = src.changed(k, g.h * g.w)
        band_fn = "0"
        if band is not None:
            call = band.render(src, k + 1, Pointers(x="ref", y=f"({C_TYPE[t_out.dtype]} *)y"))
            band_fn = f"{src.name}_band{k}"
            src.functions.append(
                f"/* layer {k}'s change-based step: rows y0 .. y1 - 1, columns x0 .. x1 - 1 of its output by the "
                f"row kernel */\n"
                f"static void {band_fn}(const int8_t *ref, void *y, void *win, uint32_t y0, uint32_t y1, "
                f"uint32_t x0, uint32_t x1)\n{{\n"
                f"    const uint32_t oy0 = y0 * {g.pool}u, oy1 = y1 * {g.pool}u, ox0 = x0 * {g.pool}u & ~1u, "
                f"ox1 = x1 * {g.pool}u;\n    {call}\n}}")
        return (f"{counter} = {fn}({p.x}, {p.others[0]}, {p.y}, &{prm}, {arena_ptr(p.scratch, 'uint8_t')}, "
                f"{src.name}_fresh, {band_fn});")

    files = FILES + [f for f in (band.files if band else []) if f not in FILES]
    return Choice("change", files, render, scratch=scratch + (band.scratch if band else 0), fuses=last - i,
                  persistent=True)


def _round4(n: int) -> int:
    return (n + 3) & ~3


def _choose_delta(model: ir.Model, types: list[ir.TensorType], i: int, last: int) -> Choice:
    """The change-based step by deltas (bg_change_delta.inc, instantiated with the step's
    shapes): it keeps the convolution's accumulators, two int16 per word where every partial
    sum fits and the output channels pair up, else int32."""
    gate_t, conv = types[i + 1], model.layers[i + 1]
    fc = model.layers[last] if isinstance(model.layers[last], ir.Linear) else None  # (_classifier)
    pooled = last - 2 if fc is not None else last  # the node whose output is the pooled plane
    stage = _stage(model, types, i + 1, pooled)
    assert stage is not None
    g = _Step.of(types, i, conv, stage["pool_size"])
    t_out = types[pooled + 1]
    packed = g.co % 2 == 0 and _fits_int16(conv, gate_t)
    accumulators = g.oh * g.ow * g.co // (2 if packed else 1)  # uint32 pairs, or int32
    scratch = _round4(g.yh * g.yw) + 4 * g.yh * g.yw  # marks, then the list of windows to recompute

    def render(src: ModelSource, k: int, p: Pointers) -> str:
        # [c][kh][kw][co], each kernel row reversed (bg_change.h)
        taps = conv.weight.transpose(1, 2, 3, 0)[:, :, ::-1, :].astype(np.int64)
        if packed:  # w[2j] + w[2j + 1] * 2^16 modulo 2^32, as int32
            pairs = (taps[..., 0::2] + taps[..., 1::2] * 65536 + 2**31) % 2**32 - 2**31
            weight = src.array("int32_t", f"dw{k}", int_lines(pairs.reshape(-1)), 4 * pairs.size, k)
        else:
            weight = src.array("int8_t", f"dw{k}", int_lines(taps.reshape(-1)), taps.size, k)
        bias = src.bias(k + 1, conv)
        arrays = g.pool_tables(src, k) + [
            src.array("uint16_t", f"{name}{k}", int_lines(a.reshape(-1)), 2 * a.size, k) for name, a in (
                ("ar", _acc_reach(g.h, g.oh, g.kh, g.sh, g.ph)), ("ac", _acc_reach(g.w, g.ow, g.kw, g.sw, g.pw)))]
        fc_weight = fc_bias = "0"
        if fc is not None:  # [input][output]: one changed input's weights together
            fc_weight = src.array("int8_t", f"fcw{last}", int_lines(fc.weight.T.reshape(-1)), fc.weight.size, last)
            fc_bias = src.bias(last, fc)
        prm = src.struct("bg_change_delta_t", f"delta{k}", [weight, bias, *arrays, fc_weight, fc_bias])
        acc = src.buffer("uint32_t" if packed else "int32_t", f"acc{k}", accumulators, 4,
                         f"layer {k + 1}'s accumulators, [{g.oh}][{g.ow}][{g.co}]{', two per word' if packed else ''}")
        m = shift = "0"
        consts: dict[str, Any] = {"POST": int(stage["fused"] - (g.pool > 1) > 0)}
        if consts["POST"]:
            params = conv_rows.post_params(stage)
            rq, j = stage["requant"], stage["requant_layer"]
            if params["MULT_PER_CHANNEL"]:
                m = src.array("int32_t", f"m{j}", int_lines(rq.multiplier), 4 * rq.multiplier.size, j)
            if params["SHIFT_PER_CHANNEL"]:
                shift = src.array("uint8_t", f"s{j}", int_lines(rq.shift), rq.shift.size, j)
            consts |= params
        fn = f"{src.name}_change_delta_{k}"
        consts |= {"NAME": fn, "OUT": C_TYPE[t_out.dtype], "PACKED": int(packed), "C": g.c, "H": g.h, "W": g.w,
                   "CO": g.co, "OH": g.oh, "OW": g.ow, "KH": g.kh, "KW": g.kw, "SH": g.sh, "SW": g.sw, "POOL": g.pool,
                   "THRESHOLD": min(model.layers[k].threshold, 255),  # |x - ref| of int8 is at most 255
                   "FC": int(fc is not None), "FO": fc.weight.shape[0] if fc is not None else 0}
        lines = [f"/* layer {k}: change gate and {g.kh}x{g.kw} convolution by deltas */"]
        lines += [f"#define BG_CD_{name} {v}" for name, v in consts.items() if not name.endswith("PER_CHANNEL")]
        lines += [f"#define BG_CD_{name}" for name in ("MULT_PER_CHANNEL", "SHIFT_PER_CHANNEL") if consts.get(name)]
        lines.append('#include "bg_change_delta.inc"')
        src.functions.append("\n".join(lines))
        counter = src.changed(k, g.h * g.w)
        y, out = p.y, "0"
        if fc is not None:  # the pooled plane is the step's own; its output is the Linear's sums
            y = src.buffer(C_TYPE[t_out.dtype], f"pooled{k}", t_out.size, 1 if t_out.dtype == "int8" else 4,
                           f"layer {pooled}'s output, read by layer {last}")
            out = p.y
        return (f"{counter} = {fn}({p.x}, {p.others[0]}, {acc}, {y}, {out}, &{prm}, {m}, {shift}, "
                f"{arena_ptr(p.scratch, 'uint8_t')}, {src.name}_fresh);")

    return Choice("change-delta", FILES + ["bg_change_delta.inc"], render, scratch=scratch, fuses=last - i,
                  persistent=True)


def _fits_int16(conv: ir.Conv2d, t_in: ir.TensorType) -> bool:
    """Whether every partial sum of the convolution fits int16: bias plus any subset of its
    products, for inputs in t_in's range (a subset: the other inputs 0, so the range is widened
    to hold 0). Exact Python integers."""
    lo, hi = min(int(t_in.lo), 0), max(int(t_in.hi), 0)
    w = conv.weight.reshape(conv.weight.shape[0], -1).astype(object)
    pos, neg = np.where(w > 0, w, 0).sum(axis=1), np.where(w < 0, w, 0).sum(axis=1)
    bias = np.zeros(len(w), dtype=object) if conv.bias is None else conv.bias.astype(object)
    return bool(all(-32768 <= b + p * lo + n * hi and b + p * hi + n * lo <= 32767 for b, p, n in zip(bias, pos, neg)))


def _post(src: ModelSource, k: int, stage: dict[str, Any]) -> str:
    """The step's output stage as a bg_post_t (its address), or "0" where there is none."""
    if not stage["fused"] - (stage["pool_size"] > 1):
        return "0"
    rq, j = stage["requant"], stage["requant_layer"]
    m = sh_ = "0"
    if rq is not None:
        m = src.array("int32_t", f"m{j}", int_lines(rq.multiplier), 4 * rq.multiplier.size, j)
        sh_ = src.array("uint8_t", f"s{j}", int_lines(rq.shift), rq.shift.size, j)
    return "&" + src.struct("bg_post_t", f"cpost{k}", [
        m, sh_, c_int(stage["lo"]), c_int(stage["hi"]), int(rq is not None and rq.multiplier.size > 1),
        stage["relu_before"], int(rq is not None), stage["relu_after"],
        int(rq is not None and rq.rounding == "half_up"), stage["wide"], 0])
