"""Depth-first row strips: a stack of spatial layers run one band of output rows at a time.

Layer by layer, a decoder that upsamples to 32x32 holds whole 32x32 tensors, int32 accumulators
included. Run depth-first instead (fused-layer execution; MCUNetV2, and
``../shared/reference/cbinfer_sinabs_tiling.md`` part C), the last layer's output is split into
strips of rows; for each strip every layer of the run computes only the rows that the strip
needs (its receptive field, derived backwards through the stack), into small strip buffers.
Neighbouring strips need some of the same rows (the halo): this planner *recomputes* them, so
no state is kept from one strip to the next and every strip is the same code; what that costs
in multiply-accumulates is reported (``recompute_macs``).

A *run* is a chain of :data:`SPATIAL` layers, each followed by any number of :data:`POINTWISE`
ones (a *stage*), in a sequential model. Within a strip a convolution computes one output
channel at a time into an int32 plane of the strip's rows and its pointwise layers finish that
plane into the stage's strip buffer, so the int32 accumulators of all channels are never alive
together. The strip height is chosen by :func:`choose` (fewest estimated instructions among
the heights whose arena fits the budget); the C is rendered by :mod:`.kernels.bands`.

A strip may also be cut into columns (2-D tiles, ``tile_cols``): each tile's columns are derived
backwards exactly like its rows, so a narrower tile holds smaller buffers at the price of a
halo recomputed in both directions. Tiles go row band by row band, left to right, so that a
one-channel output can leave the step one band of full rows at a time (``stream``: the rows go
to the BG_STREAM hook instead of a whole output tensor in the arena; the protocol firmware
sends them over the wire as they are computed).
"""
from __future__ import annotations

from dataclasses import dataclass

from ... import ir

SPATIAL = (ir.Conv2d, ir.ConvTranspose2d, ir.Upsample, ir.MaxPool2d, ir.AvgPool2d)
POINTWISE = (ir.ReLU, ir.Requant, ir.Abs)  # each output element from the same input element
MODES = ("auto", "rows", "off")  # emit/build --tiling
# Instruction estimate, to rank strip heights and kernels: per multiply-accumulate of a
# generic kernel and of a fused one (on rv32ec-sim, README "Convolution layers": 176 to 255 for
# the generic convolution, which multiplies through libgcc, 17 to 23 for the LUT convolution;
# 20 to 26 for the transposed one, lut_convt, in the die decoder, 27 to 42 with 8-bit weights),
# and per kernel call (set-up, loops, the copies of input and output rows)
GENERIC_MAC, FUSED_MAC, CALL_COST = 200, 20, 60


class TilingError(ValueError):
    pass


@dataclass(frozen=True)
class Stage:
    first: int  # the spatial layer
    last: int  # its last pointwise follower (== first without any)

    @property
    def layers(self) -> range:
        return range(self.first, self.last + 1)


@dataclass
class Tiling:
    """The plan of one tiled run: its stages and, per strip, the rows of every tensor between
    stages and each spatial kernel's shift (see :func:`_need`)."""

    stages: list[Stage]
    types: list[ir.TensorType]  # the run's input, then each stage's output
    strip_rows: int
    rows: list[list[tuple[int, int]]]  # per strip, per tensor of `types`: rows [lo, hi)
    shifts: list[list[int]]  # per strip, per stage
    buffers: dict[str, int]  # bytes of each strip buffer
    macs: int  # multiply-accumulates layer by layer
    strip_macs: int  # ... and as run strip by strip (halos recomputed)
    calls: int  # kernel calls per inference
    estimate: int  # instructions, roughly (GENERIC_MAC, FUSED_MAC, CALL_COST)
    direct: bool  # the last stage writes its rows straight into the run's output (one channel)
    fused: dict[int, int]  # stages (by first layer) whose kernel computes them whole, and its scratch
    tile_cols: int = 0  # columns of a tile (0: full width, row strips)
    cols: list[list[tuple[int, int]]] | None = None  # per tile, per tensor: columns [lo, hi)
    col_shifts: list[list[int]] | None = None  # per tile, per stage: the horizontal shift
    stream: bool = False  # the run's one-channel output leaves band by band (BG_STREAM), not held whole

    @property
    def first(self) -> int:
        return self.stages[0].first

    @property
    def last(self) -> int:
        return self.stages[-1].last

    @property
    def scratch(self) -> int:
        """Bytes of all strip buffers; a generic convolution's int32 plane and a fused kernel's
        scratch are never needed at once (one stage runs at a time): they share their bytes."""
        b = self.buffers
        return b["a"] + b["b"] + max(b["plane"], b["kernel"]) + b.get("band", 0)

    @property
    def recompute_macs(self) -> int:
        return self.strip_macs - self.macs

    @property
    def instructions(self) -> int:
        """A rough instruction estimate, to rank strip heights (not a measurement)."""
        return self.estimate

    def report(self) -> dict:
        return {"first_layer": self.first, "last_layer": self.last, "strip_rows": self.strip_rows,
                "tile_cols": self.tile_cols or self.types[-1].shape[2], "columns_tiled": bool(self.tile_cols),
                "stream": self.stream,
                "strips": len(self.rows), "strip_buffer_bytes": self.scratch, "buffers": dict(self.buffers),
                "macs": self.macs, "strip_macs": self.strip_macs, "recompute_macs": self.recompute_macs,
                "recompute_percent": round(100 * self.recompute_macs / self.macs, 1) if self.macs else 0.0}


def _round4(n: int) -> int:
    return (n + 3) & ~3


def _elem(dtype: str) -> int:
    return 1 if dtype == "int8" else 4


def _tileable(layer: ir.Layer, t_in: ir.TensorType, t_out: ir.TensorType) -> bool:
    if len(t_in.shape) != 3 or max(t_in.shape[1], t_out.shape[1]) > 255:  # row tables are uint8
        return False
    if isinstance(layer, ir.ConvTranspose2d):
        # a stride above the kernel leaves output rows with no input row at all
        return layer.stride[0] <= layer.weight.shape[2]
    if isinstance(layer, ir.Requant):
        return layer.multiplier.size in (1, t_in.shape[0])
    return isinstance(layer, SPATIAL + POINTWISE)


def runs(model: ir.Model, types: list[ir.TensorType]) -> list[list[Stage]]:
    """The runs of a sequential model that can be tiled: at least two spatial stages."""
    if not model.is_sequential or any(isinstance(layer, ir.ChangeGate) for layer in model.layers):
        return []  # (a change-based step keeps whole tensors from frame to frame)
    out: list[list[Stage]] = []
    cur: list[Stage] = []
    i, n = 0, len(model.layers)
    while i <= n:
        layer = model.layers[i] if i < n else None
        if layer is not None and isinstance(layer, SPATIAL) and _tileable(layer, types[i], types[i + 1]):
            j = i
            while (j + 1 < n and isinstance(model.layers[j + 1], POINTWISE)
                   and _tileable(model.layers[j + 1], types[j + 1], types[j + 2])):
                j += 1
            cur.append(Stage(i, j))
            i = j + 1
            continue
        if len(cur) >= 2:
            out.append(cur)
        cur = []
        i += 1
    return out


def _need(layer: ir.Layer, lo: int, hi: int, h_in: int, axis: int = 0) -> tuple[int, int, int]:
    """The input rows [r0, r1) that output rows [lo, hi) of `layer` read, and the kernel's
    shift: the vertical padding that makes the kernel, run on rows r0.. as if they were the
    whole input, compute rows lo.. (conv, transposed conv), or the first output row's phase
    within its input row (upsample). Derivation in the module's README section. `axis` 1: the
    same for columns (the horizontal padding)."""
    if isinstance(layer, ir.Upsample):
        f = layer.factor[axis]
        return lo // f, (hi - 1) // f + 1, lo % f
    if isinstance(layer, (ir.MaxPool2d, ir.AvgPool2d)):
        k, s = layer.kernel[axis], layer.stride[axis]
        return lo * s, min(h_in, (hi - 1) * s + k), 0
    k, s, p = layer.weight.shape[2 + axis], layer.stride[axis], layer.padding[axis]
    if isinstance(layer, ir.ConvTranspose2d):
        # output row oy = iy * s - p + ky for taps ky in [0, k)
        r0 = max(0, -(-(lo + p - k + 1) // s))
        r1 = min(h_in, (hi - 1 + p) // s + 1)
        return r0, r1, lo + p - r0 * s
    r0 = max(0, lo * s - p)
    r1 = min(h_in, (hi - 1) * s - p + k)
    return r0, r1, p + r0 - lo * s


def _bands(layers, stages, ttypes, lo: int, hi: int, axis: int) -> tuple[list[tuple[int, int]], list[int]]:
    """Per tensor of the run the rows (axis 0) or columns (axis 1) [lo, hi) of the run's output
    need, and each stage's shift."""
    band, sh = [(lo, hi)], []
    for k in range(len(stages) - 1, -1, -1):
        r0, r1, shift = _need(layers[stages[k].first], *band[0], ttypes[k].shape[1 + axis], axis)
        band.insert(0, (r0, r1))
        sh.insert(0, shift)
    if any(r1 <= r0 for r0, r1 in band):
        what = "rows" if axis == 0 else "columns"
        raise TilingError(f"a tile of {what} {band[-1]} reads no {what[:-1]} of some tensor")
    return band, sh


def plan(model: ir.Model, types: list[ir.TensorType], stages: list[Stage], strip_rows: int,
         fused: dict[int, int] | None = None, tile_cols: int | None = None, stream: bool = False) -> Tiling:
    """The tiles of `strip_rows` rows (the last may be shorter) and `tile_cols` columns (None:
    the full width, row strips) of a run. `fused`: stages (by first layer) that a kernel with
    its output stage fused computes, all channels at once, and the bytes of scratch it needs
    (kernels/bands.py: fused_choice); the others take the generic kernels, a convolution one
    channel at a time. `stream`: the run's output (one channel) is not held whole: each band of
    rows is assembled in a buffer of its own and handed to BG_STREAM."""
    fused = fused or {}
    layers = model.layers
    ttypes = [types[stages[0].first]] + [types[st.last + 1] for st in stages]
    out_c, out_h, out_w = ttypes[-1].shape
    if not 1 <= strip_rows <= out_h:
        raise TilingError(f"strip height {strip_rows} is not within 1..{out_h} (the run's output rows)")
    tile_cols = out_w if tile_cols is None else tile_cols
    if not 1 <= tile_cols <= out_w:
        raise TilingError(f"tile width {tile_cols} is not within 1..{out_w} (the run's output columns)")
    if tile_cols < out_w and any(isinstance(layers[st.first], ir.Upsample) for st in stages):
        raise TilingError("tiles narrower than the tensor through an upsampling are not supported (row strips are)")
    if stream and out_c != 1:
        raise TilingError(f"only a one-channel output can stream band by band (this one has {out_c})")
    rows, shifts, cols, col_shifts = [], [], [], []
    full = tile_cols == out_w
    for lo in range(0, out_h, strip_rows):
        band, sh = _bands(layers, stages, ttypes, lo, min(out_h, lo + strip_rows), 0)
        for c0 in range(0, out_w, tile_cols):
            if full:  # row strips: every tensor's whole width (the kernels' own horizontal padding)
                cband = [(0, t.shape[2]) for t in ttypes]
                csh = [getattr(layers[st.first], "padding", (0, 0))[1] for st in stages]
            else:
                cband, csh = _bands(layers, stages, ttypes, c0, min(out_w, c0 + tile_cols), 1)
            rows.append(band)
            shifts.append(sh)
            cols.append(cband)
            col_shifts.append(csh)
    maxrows = [max(r[t][1] - r[t][0] for r in rows) for t in range(len(ttypes))]
    maxcols = [max(r[t][1] - r[t][0] for r in cols) for t in range(len(ttypes))]

    def strip_bytes(t: int) -> int:
        c = ttypes[t].shape[0]
        elem = _elem(ttypes[t].dtype)
        if t and not isinstance(layers[stages[t - 1].first], (ir.Conv2d, ir.ConvTranspose2d)):
            elem = max(elem, _elem(types[stages[t - 1].first + 1].dtype))  # pooled, then requantized in place
        return _round4(maxrows[t] * maxcols[t] * c * elem)

    # the run's input rows are copied into a strip buffer; stages then alternate between two
    # (ping-pong); a convolution with pointwise layers after it computes each channel's int32
    # rows into a plane of its own first. A one-channel run output is written in place.
    even = [strip_bytes(t) for t in range(0, len(ttypes) - 1, 2)]
    odd = [strip_bytes(t) for t in range(1, len(ttypes) - 1, 2)]
    if ttypes[0].shape[0] == 1 and ttypes[0].shape[2] == maxcols[0]:  # one channel, whole rows: read in place
        even[0] = 0
    direct = out_c == 1 and full and strip_bytes(len(ttypes) - 1) == _round4(
        maxrows[-1] * out_w * _elem(ttypes[-1].dtype))
    if not direct:
        (even if (len(ttypes) - 1) % 2 == 0 else odd).append(strip_bytes(len(ttypes) - 1))
    planes = [_round4(maxrows[k + 1] * maxcols[k + 1] * 4) for k, st in enumerate(stages)
              if st.last > st.first and isinstance(layers[st.first], (ir.Conv2d, ir.ConvTranspose2d))
              and st.first not in fused]
    buffers = {"a": max(even, default=0), "b": max(odd, default=0), "plane": max(planes, default=0),
               "kernel": _round4(max(fused.values(), default=0))}
    if stream:  # one band of full output rows, sent when its last tile is done
        buffers["band"] = _round4(strip_rows * out_w * _elem(ttypes[-1].dtype))
    macs = strip_macs = estimate = 0
    calls = 2 * len(rows)  # the input and output row copies
    for k, st in enumerate(stages):
        t_out = types[st.first + 1]
        m = layers[st.first].macs(t_out)
        computed = sum((r[k + 1][1] - r[k + 1][0]) * (c[k + 1][1] - c[k + 1][0]) for r, c in zip(rows, cols))
        area = t_out.shape[1] * t_out.shape[2]
        macs += m
        strip_macs += m * computed // area
        estimate += m * computed // area * (FUSED_MAC if st.first in fused else GENERIC_MAC)
        if st.first in fused:
            calls += len(rows)
        else:
            per_strip = t_out.shape[0] if isinstance(layers[st.first], (ir.Conv2d, ir.ConvTranspose2d)) else 1
            calls += len(rows) * per_strip * (1 + st.last - st.first)
    return Tiling(stages, ttypes, strip_rows, rows, shifts, buffers, macs, strip_macs, calls,
                  estimate + CALL_COST * calls, direct, dict(fused), 0 if full else tile_cols, cols, col_shifts,
                  stream)


def heights(stages: list[Stage], types: list[ir.TensorType]) -> range:
    return range(1, types[stages[-1].last + 1].shape[1] + 1)


def widths(model: ir.Model, stages: list[Stage], types: list[ir.TensorType]) -> list[int]:
    """Tile widths to try: the full width, then halves of it down to 4 columns (only the full
    width through an upsampling: its column phase is not supported)."""
    w = types[stages[-1].last + 1].shape[2]
    if any(isinstance(model.layers[st.first], ir.Upsample) for st in stages):
        return [w]
    return [w] + [w >> k for k in range(1, 6) if (w >> k) >= 4]
