"""IR -> SCAMP-5 program: PixelRNN's in-pixel layers (``../shared/reference/scamp5.md`` §1.7-3, §2).

The sensor runs a prefix of the model that has this shape (what :func:`analyse` accepts):

    Sign(input)                      b0 = sgn(x - T0): the frame's bits
    Conv2d, binary ±1, 1 -> C        C <= 16 kernels, odd size k <= 7, same padding, no bias
    [ReLU] [MaxPool2d P]             P a power of two (kernel = stride)
    Sign                             b1: one threshold or one per channel
    [Tile rows x cols]               PixelRNN's scamp_shape (needed when C > 1)
    [BinaryConvRNN, 1 channel]       f = sgn(W_fi*x + W_fh*h - T), h = f*h, o = W_oi*x + W_oh*h

and everything after it (the decoder) runs on the host, from one readout: ``o`` at the last
frame (8-bit values), or the bits ``b1``.

Layout. Channel k's kernel runs in tile ``(k % rows, k // rows)`` of an array of tiles the size
of the frame, each holding a copy of the frame (the host uploads it as bit planes, as PixelRNN
does). The convolution is 25 tap steps for all kernels at once: per tap, the tile bit of each
kernel's weight (from the instruction stream as pattern loads, or stored in the pixels and
flooded over the tile, PixelRNN's way), an XNOR with the shifted input bits, and a masked
``add``/``sub`` of ``IW`` into the accumulator. Unlike PixelRNN, a per-tap mask keeps taps that
fall outside the tile out of the sum (PyTorch's zero padding, scamp5.md §2.7-2), so every
output equals the golden model's. The threshold compares with ``IW * T + IW / 2``: the integer
sum passes ``s > T`` exactly, with half a product of margin each side (§2.7-1); ReLU, max
pooling and threshold become one comparison and a digital OR over each P x P block, whose
result sits on the lattice of block corners. Because tile (tr, tc) holds channel tr + rows *
tc, that lattice *is* the tiled 64x64 map: pixel (I, J) at PE (P I, P J). The recurrent cell
runs on that lattice: its four kernels (fi on x, fh on h, oi on x, oh on h) at four phases of
each P x P block, all at once, shifting by P per tap; a neighbour read adds fh to fi (and oh to
oi) at the end.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ... import ir
from ...errors import BitgenError
from . import isa, patterns
from .program import Program


class Scamp5Error(BitgenError):
    """A model the SCAMP-5 back end cannot run (one-line message)."""


WEIGHTS = ("in-pixel", "streamed")


@dataclass(frozen=True)
class Options:
    weights: str = "in-pixel"  # the CNN's kernels: stored in the pixels (PixelRNN) or as pattern loads
    iw: int = 10  # analog levels per ±1 product in the accumulators that are thresholded (PixelRNN: 10)


@dataclass
class Analysis:
    """The sensor part of a model and what runs on the host."""

    sign0: ir.Node
    conv: ir.Node
    relu: ir.Node | None
    pool: ir.Node | None
    sign1: ir.Node
    tile: ir.Node | None
    rnn: dict[str, ir.Node] = field(default_factory=dict)  # fi fh gate_sum gate mul oi oh out
    state: ir.State | None = None
    readout: str = ""  # the tensor that leaves the sensor
    host: ir.Model | None = None  # the rest, reading the readout as its input
    frame: tuple[int, int] = (0, 0)
    channels: int = 1
    k: int = 1
    p: int = 1
    grid: tuple[int, int] = (1, 1)
    types: dict[str, ir.TensorType] = field(default_factory=dict)

    @property
    def lattice(self) -> tuple[int, int]:
        """Rows and columns of the tiled map (the recurrent cell's image)."""
        return self.grid[0] * self.frame[0] // self.p, self.grid[1] * self.frame[1] // self.p


def _pow2(v: int) -> bool:
    return v >= 1 and v & (v - 1) == 0


def _binary_conv(node: ir.Node, where: str, cin: int) -> tuple[int, np.ndarray]:
    op = node.op
    if not isinstance(op, ir.Conv2d):
        raise Scamp5Error(f"{where}: expected a binary convolution, found {op.describe()}")
    w = np.asarray(op.weight)
    co, ci, kh, kw = w.shape
    if not np.isin(w, (-1, 1)).all():
        raise Scamp5Error(f"{where} {op.describe()}: the weights must all be ±1 (binary kernels)")
    if op.bias is not None and np.any(op.bias):
        raise Scamp5Error(f"{where} {op.describe()}: a bias is not supported")
    if ci != cin or op.groups != 1 or kh != kw or kh % 2 == 0 or kh > 7:
        raise Scamp5Error(f"{where} {op.describe()}: needs {cin} input channel(s), an odd square kernel of at most 7")
    if tuple(op.stride) != (1, 1) or tuple(op.padding) != (kh // 2, kh // 2):
        raise Scamp5Error(f"{where} {op.describe()}: needs stride 1 and same padding ({kh // 2})")
    return kh, w


def analyse(model: ir.Model) -> Analysis:
    """Split `model` into the sensor part (the shape in the module docstring) and the host part;
    raise :class:`Scamp5Error` naming the first layer that does not fit."""
    types_list = model.validate()
    types = {n.output: t for n, t in zip(model.nodes, types_list)}
    nodes = list(model.nodes)
    if len(model.input.shape) != 3 or model.input.shape[0] != 1:
        raise Scamp5Error(f"the input must be one frame (1, H, W), got {model.input.shape}")
    _, h, w = model.input.shape
    if not (_pow2(h) and _pow2(w)):
        raise Scamp5Error(f"the frame must be a power of two in size (tiles are addressed by bits), got {h}x{w}")
    i = 0

    def take(kind: str | tuple[str, ...], reads: str | None, optional: bool = False) -> ir.Node | None:
        nonlocal i
        kinds = (kind,) if isinstance(kind, str) else kind
        if i < len(nodes) and nodes[i].op.kind in kinds and (reads is None or nodes[i].inputs == (reads,)):
            i += 1
            return nodes[i - 1]
        if optional:
            return None
        found = nodes[i].op.describe() if i < len(nodes) else "the end of the model"
        raise Scamp5Error(f"layer {i}: the SCAMP-5 program needs {' or '.join(kinds)} here, found {found}")

    sign0 = take("sign", ir.INPUT)
    conv = take("conv2d", sign0.output)
    k, _ = _binary_conv(conv, f"layer {i - 1}", 1)
    c = int(conv.op.weight.shape[0])
    prev = conv.output
    relu = take("relu", prev, optional=True)
    prev = relu.output if relu else prev
    pool = take("maxpool2d", prev, optional=True)
    p = 1
    if pool:
        kh, kw = pool.op.kernel
        if (kh, kw) != tuple(pool.op.stride) or kh != kw or not _pow2(kh) or h % kh:
            raise Scamp5Error(f"layer {i - 1} {pool.op.describe()}: needs a square power-of-two pool, stride = kernel")
        p = kh
        prev = pool.output
    sign1 = take("sign", prev)
    tile = take("tile", sign1.output, optional=True)
    grid = (tile.op.rows, tile.op.cols) if tile else (1, 1)
    if c > 16 or grid[0] > 4 or grid[1] > 4 or (c > 1 and not tile):
        raise Scamp5Error(f"the {c} channels must be tiled (a Tile of at most 4 x 4 after the threshold)")
    if max(grid[0] * h, grid[1] * w) > 256:
        raise Scamp5Error(f"{grid[0]}x{grid[1]} tiles of {h}x{w} do not fit the 256x256 array")
    a = Analysis(sign0, conv, relu, pool, sign1, tile, frame=(h, w), channels=c, k=k, p=p, grid=grid, types=types)
    prev = (tile or sign1).output
    a.readout = prev
    rnn = _match_rnn(model, nodes[i:i + 8], prev)
    if rnn:
        if p < 2:
            raise Scamp5Error("the recurrent cell runs on the lattice of pooling blocks: pool by 2 or more first")
        a.rnn, a.state = rnn
        i += 8
        a.readout = a.rnn["out"].output
        t = types[a.readout]
        if max(-t.lo, t.hi) > 127:
            raise Scamp5Error("the cell's output does not fit the 8-bit readout")
    elif model.states:
        raise Scamp5Error("the model's state is not a binary conv-RNN cell the SCAMP-5 program can run")
    a.host = _host_model(model, nodes[i:], a.readout, types)
    return a


def _match_rnn(model: ir.Model, cand: list[ir.Node], x: str):
    """The nodes of a BinaryConvRNN (as export writes them) reading `x`, and its state."""
    if len(cand) < 8 or len(model.states) != 1:
        return None
    st = model.states[0]
    by = {n.output: n for n in cand}
    mul = by.get(st.source)
    if mul is None or mul.op.kind != "mul" or st.init != 1 or st.shape[0] != 1:
        return None
    f = by.get(mul.inputs[0]) if mul.inputs[1] == st.name else None
    gsum = by.get(f.inputs[0]) if f is not None and f.op.kind == "sign" else None
    adds = [n for n in cand if n.op.kind == "add" and n is not gsum]
    if gsum is None or gsum.op.kind != "add" or len(adds) != 1:
        return None
    out = adds[0]
    parts = [by.get(v) for v in (*gsum.inputs, *out.inputs)]
    if any(n is None or n.op.kind != "conv2d" for n in parts):
        return None
    fi, fh, oi, oh = parts
    if (fi.inputs, fh.inputs, oi.inputs, oh.inputs) != ((x,), (st.name,), (x,), (st.name,)):
        return None
    for add in (gsum, out):
        o = add.op
        if (o.scale_a, o.scale_b, o.shift) != (1, 1, 0):
            return None
    if mul.op.shift != 0 or f.op.threshold.size != 1:
        return None
    k = None
    for n in (fi, fh, oi, oh):
        kk, _ = _binary_conv(n, "the recurrent cell", 1)
        if k not in (None, kk):
            raise Scamp5Error("the recurrent cell's four kernels must have one size")
        k = kk
    if set(by) != {fi.output, fh.output, gsum.output, f.output, mul.output, oi.output, oh.output, out.output}:
        return None
    return {"fi": fi, "fh": fh, "gate_sum": gsum, "gate": f, "mul": mul, "oi": oi, "oh": oh, "out": out}, st


def _host_model(model: ir.Model, rest: list[ir.Node], readout: str, types) -> ir.Model | None:
    if not rest:
        return None
    for n in rest:
        bad = [v for v in n.inputs if v != readout and v not in {m.output for m in rest}]
        if bad:
            raise Scamp5Error(f"{n.op.describe()} reads '{bad[0]}', which stays on the sensor (only "
                              f"'{readout}' leaves it)")
    t = types[readout]
    nodes = [ir.Node(n.op, [ir.INPUT if v == readout else v for v in n.inputs], n.output) for n in rest]
    host = ir.Model(ir.InputSpec(t.shape, scale=1.0), nodes=nodes, labels=model.labels,
                    name=f"{model.name}_decoder", meta={"source": model.name, "reads": readout})
    host.validate()
    return host


# ----------------------------------------------------------------------------- lowering
class Registers:
    """Digital registers for the roles of the moment, from R5..R11 (S0..S6)."""

    def __init__(self) -> None:
        self.free = list(isa.DATA_DREGS)
        self.role: dict[str, str] = {}
        self.peak = 0

    def __getitem__(self, role: str) -> str:
        return self.role[role]

    def get(self, *roles: str) -> list[str]:
        out = []
        for r in roles:
            if r not in self.role:
                if not self.free:
                    raise Scamp5Error(f"out of digital registers for '{r}' (7 data registers R5..R11)")
                self.role[r] = self.free.pop(0)
            out.append(self.role[r])
        self.peak = max(self.peak, len(self.role))
        return out

    def drop(self, *roles: str) -> None:
        for r in roles:
            if r in self.role:
                self.free.append(self.role.pop(r))

    def swap(self, a: str, b: str) -> None:
        self.role[a], self.role[b] = self.role[b], self.role[a]


def tap_paths(k: int) -> list[list[tuple[int, int]]]:
    """The k x k tap offsets as paths of single steps, each monotone on both axes from the
    centre: a shift toward the array's edge loses the bits that fall off it, so a plane may
    only move away from the centre, never back (each path starts from a fresh copy)."""
    half = k // 2
    paths = []
    for du in sorted(range(-half, half + 1), key=abs):
        paths.append([(du, dv) for dv in range(0, -half - 1, -1)])
        if half:
            paths.append([(du, dv) for dv in range(1, half + 1)])
    return paths


STEP_TOWARD = {(1, 0): "north", (-1, 0): "south", (0, 1): "west", (0, -1): "east"}  # X(p) = x(p + d): bits move back


class Lowering:
    def __init__(self, a: Analysis, opts: Options):
        if opts.weights not in WEIGHTS:
            raise Scamp5Error(f"unknown weights placement '{opts.weights}' (known: {', '.join(WEIGHTS)})")
        if opts.iw < 2 or opts.iw % 2:
            raise Scamp5Error("IW must be an even number of levels >= 2 (thresholds sit half a product between levels)")
        h, w = a.frame
        if opts.weights == "in-pixel" and (h < 8 or w < 8):
            raise Scamp5Error("in-pixel weights need tiles of at least 8x8 pixels; use streamed weights")
        self.a, self.o = a, opts
        size = max(8, 1 << int(np.ceil(np.log2(max(a.grid[0] * h, a.grid[1] * w)))))
        self.p = Program((size, size))
        self.regs = Registers()
        self.dirs: set[str] | None = None  # DNEWS directions set now (None: unknown)
        self.section = "frame"
        self.tile_bits = (int(np.log2(h)), int(np.log2(w)))

    # ------------------------------------------------------------ small helpers
    def e(self, op: str, *args, **extra) -> None:
        self.p.emit(self.section, op, *args)
        self.p.sections[self.section][-1].update(extra)

    def direction(self, d: str) -> None:
        """Select DNEWS0 direction d (bits move toward d)."""
        if self.dirs == {d}:
            return
        on = isa.DIRECTION_DREGS[d]
        off = [isa.DIRECTION_DREGS[x] for x in isa.DIRS if x != d and (self.dirs is None or x in self.dirs)]
        if off:
            self.e("CLR", *off)
        self.e("SET", on)
        self.dirs = {d}

    def move(self, role: str, d: str, n: int = 1, temp: str = "T1") -> None:
        """Move the bits of `role` n pixels toward d (through `temp`, whose register it may take)."""
        self.direction(d)
        for _ in range(n):
            src, dst = self.regs.get(role, temp)
            self.e("DNEWS0", dst, src)
            self.regs.swap(role, temp)

    def load_region(self, role: str, pats: list[tuple[int, int, int, int]], temp: str = "T2",
                    negate: bool = False) -> None:
        """role := the union of patterns (r, c, rx, cx) (its complement with `negate`)."""
        (reg,) = self.regs.get(role)
        if not pats:
            self.e("SET" if negate else "CLR", reg)
            return
        self.e("scamp5_load_pattern", reg, *pats[0])
        for pat in pats[1:]:
            (t,) = self.regs.get(temp)
            self.e("scamp5_load_pattern", t, *pat)
            self.e("OR", reg, t)
        if negate:
            self.e("NOT", reg, reg)

    def tiles(self, on: set[int]) -> list[tuple[int, int, int, int]]:
        """Patterns of the tiles of channels `on` (others of the C channels off, unused tiles free)."""
        gr = self.a.grid[0]
        hb, wb = self.tile_bits
        cell = lambda k: (k % gr, k // gr)  # noqa: E731
        on_c = {cell(k) for k in on}
        off_c = {cell(k) for k in range(self.a.channels)} - on_c
        if not off_c:
            return [(0, 0, 0xFF, 0xFF)]
        field = lambda b: 0xFF & ~(3 << b)  # noqa: E731  (every address bit but the tile index's two)
        return [((rv << hb) & 0xFF, (cv << wb) & 0xFF, field(hb) | ((rdc << hb) & 0xFF), field(wb) | ((cdc << wb) & 0xFF))
                for (rv, rdc), (cv, cdc) in patterns.cover(on_c, off_c, (2, 2))]

    def phases(self, on: set[tuple[int, int]]) -> list[tuple[int, int, int, int]]:
        """Patterns of the lattice phases `on` among (0|1, 0|1) (the other phases free)."""
        off = {(r, c) for r in (0, 1) for c in (0, 1)} - on
        if not off:
            return [(0, 0, 0xFF, 0xFF)]
        return [(rv, cv, 0xFE | rdc, 0xFE | cdc) for (rv, rdc), (cv, cdc) in patterns.cover(on, off, (1, 1))]

    def phase(self, r: int, c: int) -> tuple[int, int, int, int]:
        m = self.a.p - 1
        return (r, c, 0xFF & ~m, 0xFF & ~m)

    def constant(self, reg: str, value: int) -> None:
        """reg := value (masked by FLAG), in steps the 8-bit DAC can load."""
        first = max(-128, min(127, value))
        self.e("scamp5_in", reg, first)
        rest = value - first
        while rest:
            step = max(-128, min(127, rest))
            self.e("scamp5_load_in", step)
            self.e("add", reg, reg, "IN")
            rest -= step

    def invalid_taps(self, du: int, dv: int, used: tuple[int, int], tiled: bool) -> list:
        """Patterns of the PEs whose tap (du, dv) (in PEs) reads outside their tile (`tiled`: the
        used area repeats every tile) or outside the used area of the array."""
        pats = []
        for d, n, axis in ((du, used[0], 0), (dv, used[1], 1)):
            if d == 0:
                continue
            if tiled and n < self.p.array[axis]:  # the same strip in every tile
                strips = patterns.strip(*((n - d, n) if d > 0 else (0, -d)), n)
            else:  # the image's last (first) rows, and anything past its end
                strips = patterns.strip(*((n - d, self.p.array[axis]) if d > 0 else (0, -d)), 256)
            for v, dc in strips:
                pats.append((v, 0, dc, 0xFF) if axis == 0 else (0, v, 0xFF, dc))
        return pats

    # -------------------------------------------------------------------- layers
    def lower(self) -> Program:
        a, o = self.a, self.o
        h, w = a.frame
        gr, gc = a.grid
        cw = np.asarray(a.conv.op.weight)[:, 0]
        meta = self.p.meta
        meta.update({"input": {"shape": [h, w], "tiles": [gr, gc]}, "iw": o.iw, "weights": o.weights,
                     "pool": a.p, "kernel": a.k, "channels": a.channels, "probes": []})
        if o.weights == "in-pixel":
            self.section = "init"
            self.p.layer = a.conv.output
            self.init_weights(cw)
        if a.rnn:
            self.section = "reset"
            self.p.layer = a.rnn["mul"].output
            self.e("SET", self.regs.get("H")[0])
        self.section = "frame"
        self.dirs = None
        self.frame_input()
        self.binarize()
        self.convolve(cw)
        self.pool_threshold()
        if a.rnn:
            self.cell()
        self.p.layer = "refresh"
        for role in ("H",):
            if role in self.regs.role:
                self.e("REFRESH", self.regs[role])
        self.section = "readout"
        self.readout()
        meta["registers"] = {"digital_peak": self.regs.peak,
                             "analog": ["A", "B", "C", "D", "E", "F"] if o.weights == "in-pixel" else ["A", "C", "D", "E", "F"]}
        return self.p

    def probe(self, name: str, kind: str, registers: list[str], origin, step, shape, **extra) -> None:
        self.p.meta["probes"].append({"name": name, "section": self.section, "at": len(self.p.sections[self.section]),
                                      "kind": kind, "registers": registers, "origin": list(origin),
                                      "step": list(step), "shape": list(shape), **extra})

    def init_weights(self, cw: np.ndarray) -> None:
        """W: each kernel's weight bits at pixel (1 + a, 1 + b) of every 8x8 block of its tile."""
        (wreg,) = self.regs.get("W")
        self.e("CLR", wreg)
        k = self.a.k
        for ta in range(k):
            for tb in range(k):
                on = {ch for ch in range(self.a.channels) if cw[ch, ta, tb] > 0}
                if not on:
                    continue
                t1, t2 = self.regs.get("T1", "T2")
                self.e("scamp5_load_pattern", t1, 1 + ta, 1 + tb, 0xF8, 0xF8)
                self.load_region("K", self.tiles(on), temp="T2")
                self.e("AND", t2, t1, self.regs["K"])
                self.e("OR", wreg, t2)
        self.regs.drop("T1", "T2", "K")
        self.store_weights()
        self.regs.drop("W")

    WEIGHT_LEVEL = 100  # analog level of a stored +1 bit (-100 for a 0), far from the comparison at 0

    def store_weights(self) -> None:
        """B := +-WEIGHT_LEVEL from the bits W: PixelRNN keeps its weights as analog planes and
        snaps them back to their levels every frame (analog storage drifts)."""
        self.e("scamp5_in", "B", -self.WEIGHT_LEVEL)
        self.e("WHERE", self.regs["W"])
        self.e("scamp5_in", "B", self.WEIGHT_LEVEL)
        self.e("ALL")

    def frame_input(self) -> None:
        self.p.layer = "input"
        self.e("all")
        self.e("res", "A")
        (t,) = self.regs.get("T1")
        for bit in range(8):
            self.e("load_frame_bit", t, bit)
            self.e("scamp5_load_in", -128 if bit == 7 else 1 << bit)
            self.e("WHERE", t)
            self.e("add", "A", "A", "IN")
        self.e("ALL")
        self.regs.drop("T1")

    def binarize(self) -> None:
        node = self.a.sign0
        self.p.layer = node.output
        t0 = int(node.op.threshold[0])
        if -128 <= t0 < 127:
            self.constant("E", -t0)  # kept through the convolution: each tap path binarizes afresh
        self.fresh_x()
        h, w = self.a.frame
        self.probe(node.output, "bits", [self.regs["X"]], (0, 0), (1, 1), (h, w))

    def fresh_x(self) -> None:
        """X := the frame's bits b0 = A > T0 (or the recurrent cell's input plane XR0)."""
        (x,) = self.regs.get("X")
        if "XR0" in self.regs.role:
            self.e("MOV", x, self.regs["XR0"])
            return
        t0 = int(self.a.sign0.op.threshold[0])
        if t0 >= 127:
            self.e("CLR", x)
        elif t0 < -128:
            self.e("SET", x)
        else:
            self.e("where", "A", "E")
            self.e("MOV", x, "FLAG")
            self.e("all")

    def taps(self, k: int, step: int, tap) -> None:
        """Run tap(du, dv) for every offset of a k x k kernel, X holding the input moved by
        step * (du, dv) (X(p) = x(p + step * d))."""
        for path in tap_paths(k):
            self.fresh_x()
            du0, dv0 = path[0]
            if du0:
                self.move("X", STEP_TOWARD[(1 if du0 > 0 else -1, 0)], step * abs(du0))
            if dv0:
                self.move("X", STEP_TOWARD[(0, 1 if dv0 > 0 else -1)], step * abs(dv0))
            for n, (du, dv) in enumerate(path):
                tap(du, dv)
                self.regs.drop("T1", "T2", "K")
                if n + 1 < len(path):
                    nu, nv = path[n + 1]
                    self.move("X", STEP_TOWARD[(nu - du, nv - dv)], step)
        self.regs.drop("X", "T1")

    def tap_weights(self, on: set[int], ta: int, tb: int) -> None:
        """K := 1 on the tiles whose kernel has +1 at tap (ta, tb)."""
        if self.o.weights == "streamed":
            self.load_region("K", self.tiles(on))
            return
        r = self.regs
        k, t1, t2, mi = r.get("K", "T1", "T2", "M")
        w = r["W"]
        h, wd = self.a.frame
        self.e("scamp5_load_pattern", k, 1 + ta, 1 + tb, 0xF8, 0xF8)
        self.e("AND", t1, k, w)  # the seeds: this tap's +1 bits
        rows0 = patterns.strip(0, 1, h)[0]
        cols0 = patterns.strip(0, 1, wd)[0]
        self.e("scamp5_load_pattern", k, rows0[0], 0, rows0[1], 0xFF)
        self.e("scamp5_load_pattern", t2, 0, cols0[0], 0xFF, cols0[1])
        self.e("OR", k, t2)
        self.e("NOT", k, k)  # the flood stays inside each tile without its first row and column
        self.e("scamp5_flood", t1, k, 0, h + wd)
        for d, pat in (("north", (rows0[0], 0, rows0[1], 0xFF)), ("west", (0, cols0[0], 0xFF, cols0[1]))):
            self.direction(d)
            self.e("DNEWS0", t2, t1)  # row 1 (column 1) copied onto row 0 (column 0) of the tile
            self.e("scamp5_load_pattern", k, *pat)
            self.e("AND", mi, t2, k)
            self.e("OR", t1, mi)
        r.swap("K", "T1")

    def accumulate(self, invalid: list, acc: str, step: str) -> None:
        """acc += step where X agrees with K, -= where not; nothing where the tap is invalid."""
        r = self.regs
        x, k, t1, t2 = r.get("X", "K", "T1", "T2")
        if invalid:
            self.load_region("M", invalid, temp="T1")
        self.e("AND", t1, x, k)
        self.e("NOR", t2, x, k)
        self.e("OR", t1, t2)  # XNOR: the product is +1
        self.e("NOT", t2, t1)  # XOR: -1
        if invalid:
            m = r["M"]
            self.e("NOR", t2, m)  # +1 and inside: NOR(XOR, M)
            self.e("NOR", t1, m)  # -1 and inside: NOR(XNOR, M)
            plus, minus = t2, t1
        else:
            plus, minus = t1, t2
        self.e("WHERE", plus)
        self.e("add", acc, acc, step)
        self.e("WHERE", minus)
        self.e("sub", acc, acc, step)
        self.e("ALL")
        r.drop("M")

    def convolve(self, cw: np.ndarray) -> None:
        a, o = self.a, self.o
        node = a.conv
        self.p.layer = node.output
        h, w = a.frame
        iw = o.iw
        thr = np.broadcast_to(np.asarray(a.sign1.op.threshold), (a.channels,))
        levels = {int(iw * t + iw // 2) for t in thr}
        self.e("scamp5_in", "F", iw)
        if len(levels) == 1:
            self.constant("C", -levels.pop())
        else:
            for lv in sorted(levels):
                on = {ch for ch in range(a.channels) if iw * int(thr[ch]) + iw // 2 == lv}
                self.load_region("T1", self.tiles(on))
                self.e("WHERE", self.regs["T1"])
                self.constant("C", -lv)
            self.e("ALL")
            self.regs.drop("T1")
        half = a.k // 2
        if o.weights == "in-pixel":  # the stored weights, as bits for this layer
            (wreg,) = self.regs.get("W")
            self.e("where", "B")
            self.e("MOV", wreg, "FLAG")
            self.e("all")

        def tap(du: int, dv: int) -> None:
            on = {ch for ch in range(a.channels) if cw[ch, du + half, dv + half] > 0}
            self.tap_weights(on, du + half, dv + half)
            self.accumulate(self.invalid_taps(du, dv, (h, w), tiled=True), "C", "F")
        self.taps(a.k, 1, tap)
        if o.weights == "in-pixel":  # refresh the analog weight store (PixelRNN snaps it every frame)
            self.store_weights()
            self.regs.drop("W")
        offsets = [-(iw * int(t) + iw // 2) for t in thr]
        self.probe(node.output, "tiles", ["C"], (0, 0), (1, 1), (h, w), offsets=offsets, divide=iw,
                   grid=list(a.grid))

    def pool_threshold(self) -> None:
        a = self.a
        node = a.sign1
        self.p.layer = "/".join(n.output for n in (a.relu, a.pool, node) if n is not None)
        self.e("where", "C", unit=self.o.iw)  # C + L > L: s > T
        (b,) = self.regs.get("B1")
        self.e("MOV", b, "FLAG")
        self.e("all")
        steps, covered = [], 1
        while covered < a.p:
            s = min(covered, a.p - covered)
            steps.append(s)
            covered += s
        for d in ("west", "north"):  # each block's corner ORs its P x P block
            for s in steps:
                (t,) = self.regs.get("T")
                self.e("MOV", t, b)
                self.move("T", d, s, temp="T1")
                self.e("OR", b, self.regs["T"])
            self.regs.drop("T", "T1")
        thr = np.broadcast_to(np.asarray(node.op.threshold), (a.channels,))
        if a.relu is not None:
            always = {ch for ch in range(a.channels) if thr[ch] < 0}  # relu >= 0 > T
            if always:
                self.load_region("T1", self.tiles(always))
                self.e("OR", b, self.regs["T1"])
                self.regs.drop("T1")
        rr, rc = a.lattice
        self.probe((a.tile or node).output, "bits", [b], (0, 0), (a.p, a.p), (rr, rc))

    def cell(self) -> None:
        a, o, r = self.a, self.o, self.regs
        nodes = a.rnn
        P = a.p
        self.p.layer = nodes["out"].output
        b, hreg = r["B1"], r["H"]
        xr, t1, t2, k = r.get("XR", "T1", "T2", "K")
        # XR: x on phases (0, 0) and (1, 0), h on (0, 1) and (1, 1)
        self.e("scamp5_load_pattern", t2, *self.phase(0, 0))
        self.e("AND", xr, b, t2)
        self.move("B1", "south", 1, temp="T1")
        self.e("scamp5_load_pattern", t2, *self.phase(1, 0))
        self.e("AND", k, r["B1"], t2)
        self.e("OR", xr, k)
        r.drop("B1")
        t1 = r["T1"]
        self.direction("east")
        self.e("DNEWS0", t1, hreg)
        self.e("scamp5_load_pattern", t2, *self.phase(0, 1))
        self.e("AND", k, t1, t2)
        self.e("OR", xr, k)
        self.direction("south")
        self.e("DNEWS0", k, t1)
        self.e("scamp5_load_pattern", t2, *self.phase(1, 1))
        self.e("AND", t1, k, t2)
        self.e("OR", xr, t1)
        r.drop("T1", "T2", "K")
        r.role["XR0"] = r.role.pop("XR")
        thr = int(nodes["gate"].op.threshold[0])
        level = o.iw * thr + o.iw // 2
        t = a.types[nodes["out"].output]
        iwo = max(1, 127 // max(1, -t.lo, t.hi))
        self.p.meta["output_unit"] = iwo
        (t1,) = r.get("T1")
        self.e("scamp5_in", "C", 0)
        self.e("scamp5_load_pattern", t1, *self.phase(0, 0))
        self.e("WHERE", t1)
        self.constant("C", -level)
        self.e("ALL")
        self.e("scamp5_in", "F", o.iw)
        self.e("scamp5_load_pattern", t1, 1, 0, 0xFF & ~(P - 1), 0xFF)
        self.e("WHERE", t1)
        self.e("scamp5_in", "F", iwo)
        self.e("ALL")
        r.drop("T1")
        kern = {n: np.asarray(nodes[n].op.weight)[0, 0] for n in ("fi", "fh", "oi", "oh")}
        kr = kern["fi"].shape[0]
        half = kr // 2
        rr, rc = a.lattice

        def tap(du: int, dv: int) -> None:
            on = {ph for ph, name in (((0, 0), "fi"), ((0, 1), "fh"), ((1, 0), "oi"), ((1, 1), "oh"))
                  if kern[name][du + half, dv + half] > 0}
            self.load_region("K", self.phases(on))
            self.accumulate(self.invalid_taps(P * du, P * dv, (P * rr, P * rc), tiled=False), "C", "F")
        self.taps(kr, P, tap)
        r.drop("XR0")
        self.e("movx", "D", "C", "east")  # fh (oh) next to fi (oi)
        self.probe(nodes["gate_sum"].output, "values", ["C", "D"], (0, 0), (P, P), (rr, rc), offset=-level,
                   divide=o.iw)
        self.p.layer = nodes["gate"].output
        self.e("where", "C", "D", unit=o.iw)
        f, t2, k = r.get("G", "T2", "K")
        self.e("MOV", f, "FLAG")
        self.e("all")
        self.probe(nodes["gate"].output, "bits", [f], (0, 0), (P, P), (rr, rc))
        self.p.layer = nodes["mul"].output
        hreg = r["H"]
        self.e("AND", t2, f, hreg)
        self.e("NOR", k, f, hreg)
        self.e("OR", hreg, t2, k)  # h := f XNOR h, the product of two ±1 values
        self.probe(nodes["mul"].output, "bits", [hreg], (0, 0), (P, P), (rr, rc))
        self.probe(nodes["out"].output, "values", ["C", "D"], (1, 0), (P, P), (rr, rc), divide=iwo)
        r.drop("G", "T2", "K")

    def readout(self) -> None:
        a = self.a
        rr, rc = a.lattice
        P = a.p
        if a.rnn:
            self.p.layer = a.rnn["out"].output
            self.e("add", "E", "C", "D")
            self.e("scamp5_scan_areg", "E", 1, 0, 1 + P * (rr - 1), P * (rc - 1), P, P,
                   unit=self.p.meta["output_unit"])
            self.p.meta["readout"] = {"tensor": a.readout, "kind": "values", "shape": [rr, rc],
                                      "divide": self.p.meta["output_unit"], "bits": 8}
        else:
            self.p.layer = a.readout
            self.e("scamp5_scan_dreg", self.regs["B1"], 0, 0, P * (rr - 1), P * (rc - 1), P, P)
            self.p.meta["readout"] = {"tensor": a.readout, "kind": "bits", "shape": [rr, rc], "bits": 1}


def lower(model: ir.Model, opts: Options | None = None) -> tuple[Program, Analysis]:
    a = analyse(model)
    return Lowering(a, opts or Options()).lower(), a
