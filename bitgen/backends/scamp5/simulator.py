"""A NumPy simulator of the SCAMP-5 pixel array that runs a :class:`~.program.Program`,
vectorized over the array and over a batch of sequences.

*Ideal* mode (``noise=None``) is exact: analog registers hold integers, every bus macro is its
exact integer meaning, ``divq`` of an odd value is an error, and a readout outside the 8-bit
range is an error. It must equal the golden model on every digital decision and every readout.

*Noisy* mode (:class:`NoiseModel`) adds, per analog instruction (each an assumption: no per-op
figure is published, scamp5.md §1.6):

* Cain's emulator's write error: Gaussian, ``op_rel`` (0.5 %) of the sum of the operands'
  magnitudes per bus operation, plus ``op_abs`` levels per bus operation;
* a fixed-pattern offset per PE and destination register, drawn once from N(0, fixed_pattern)
  levels and added at every bus operation that writes that register (device mismatch);
* PixelRNN's training noise: N(0, threshold) ±1-products (times the decision's analog unit)
  added to the value a ``where`` compares, for decisions on sums of products, and
  N(0, output) products on every readout value;
* optional soft saturation: values pass through ``s * tanh(v / s)`` after each write.

Planes that are the same for every sequence of the batch (weights, masks, constants) are kept
with a batch axis of 1, so they cost one plane, not a batch of them.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from . import isa
from .program import Program


class SimulationError(ValueError):
    """The program did something the hardware cannot (one-line message)."""


@dataclass
class NoiseModel:
    threshold: float = 0.6  # ±1 products, before each threshold on a sum of products
    output: float = 1.0  # ±1 products, on each readout value
    op_rel: float = 0.005  # of the operands' magnitude, per bus operation (Cain)
    op_abs: float = 0.0  # analog levels per bus operation
    fixed_pattern: float = 0.1  # analog levels per bus operation, fixed per PE and register
    saturation: float | None = None  # analog levels; None: no saturation
    seed: int = 0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class Simulator:
    def __init__(self, program: Program, batch: int, noise: NoiseModel | None = None):
        self.program = program
        self.batch = int(batch)
        self.shape = tuple(program.array)
        self.noise = noise
        self.rng = np.random.default_rng(noise.seed if noise else 0)
        dt = np.float32 if noise else np.int64  # float32: noise, not exactness, sets the precision
        self.a = {r: np.zeros((1,) + self.shape, dt) for r in isa.ANALOG_SOURCES}
        self.d = {r: np.zeros((1,) + self.shape, bool) for r in isa.DREGS + ("FLAG",)}
        self.d["FLAG"] = np.ones((1,) + self.shape, bool)
        self.undefined: set[str] = set()
        self.fpn: dict[str, np.ndarray] = {}
        rows, cols = np.indices(self.shape)
        self.rows, self.cols = rows, cols
        self.frames: np.ndarray | None = None
        self.readouts: list[np.ndarray] = []
        self.probes: dict[str, np.ndarray] = {}

    # ---------------------------------------------------------------- helpers
    def _shift(self, x: np.ndarray, dr: int, dc: int, fill=0) -> np.ndarray:
        """out(r, c) = x(r + dr, c + dc); `fill` off the array."""
        out = np.full_like(x, fill)
        r, c = self.shape
        src = x[:, max(dr, 0):r + min(dr, 0), max(dc, 0):c + min(dc, 0)]
        out[:, max(-dr, 0):r + min(-dr, 0), max(-dc, 0):c + min(-dc, 0)] = src
        return out

    def _read_a(self, name) -> np.ndarray:
        if not isa.is_areg(name):
            raise SimulationError(f"'{name}' is not an analog register")
        return self.a[name]

    def _read_d(self, name) -> np.ndarray:
        if not isa.is_dreg(name):
            raise SimulationError(f"'{name}' is not a digital register")
        if name in self.undefined:
            raise SimulationError(f"{name} is read after an instruction clobbered it")
        return self.d[name]

    def _write_a(self, name: str, value, operands: list, bus: int) -> None:
        if name not in isa.AREGS:
            raise SimulationError(f"'{name}' is not a writable analog register")
        value = np.asarray(value)
        if self.noise is not None and bus:
            nz = self.noise
            mag = sum(np.abs(o) for o in operands) if operands else 0.0
            sigma = np.sqrt(bus) * (nz.op_rel * mag + nz.op_abs)
            value = value + sigma * self.rng.standard_normal(
                np.broadcast_shapes(np.shape(value), (self.batch,) + self.shape), dtype=np.float32)
            if nz.fixed_pattern:
                if name not in self.fpn:
                    self.fpn[name] = self.rng.normal(0.0, nz.fixed_pattern, (1,) + self.shape).astype(np.float32)
                value = value + bus * self.fpn[name]
            if nz.saturation:
                value = nz.saturation * np.tanh(value / nz.saturation)
        flag = self.d["FLAG"]
        if flag.all():
            new = np.broadcast_to(value, np.broadcast_shapes(value.shape, (1,) + self.shape))
        else:
            new = np.where(flag, value, self.a[name])
        self.a[name] = np.array(new, dtype=self.a[name].dtype, copy=True)

    def _write_d(self, name: str, value) -> None:
        if name not in isa.DREGS:
            raise SimulationError(f"'{name}' is not a writable digital register")
        self.d[name] = np.array(np.broadcast_to(value, np.broadcast_shapes(np.shape(value), (1,) + self.shape)), bool)
        self.undefined.discard(name)

    def _dir(self, d: str) -> tuple[int, int]:
        if d not in isa.DIRS:
            raise SimulationError(f"unknown direction '{d}'")
        return isa.DIRS[d]

    def _neighbour(self, x: np.ndarray, *dirs: str) -> np.ndarray:
        """x0_dir(_dir2): the value of the neighbour (1 or 2 hops) in those directions."""
        dr = sum(self._dir(d)[0] for d in dirs)
        dc = sum(self._dir(d)[1] for d in dirs)
        return self._shift(x, dr, dc)

    def _pattern(self, r: int, c: int, rx: int, cx: int) -> np.ndarray:
        return (((self.rows & ~rx) == (r & ~rx)) & ((self.cols & ~cx) == (c & ~cx)))[None]

    # ------------------------------------------------------------------ run
    def run(self, section: str, frames: np.ndarray | None = None) -> None:
        """Execute one section; `frames`: (batch, H, W) int8 for the section's frame uploads."""
        self.frames = frames
        probes = [p for p in self.program.meta.get("probes", []) if p["section"] == section]
        code = self.program.sections[section]
        for i, ins in enumerate(code):
            for p in probes:
                if p["at"] == i:
                    self._probe(p)
            try:
                self.execute(ins)
            except SimulationError as e:
                raise SimulationError(f"{section}[{i}] {ins['op']}({', '.join(map(str, ins['args']))}): {e}") from None
        for p in probes:
            if p["at"] == len(code):
                self._probe(p)

    def _probe(self, p: dict) -> None:
        (r0, c0), (rs, cs), (h, w) = p["origin"], p["step"], p["shape"]
        sl = (slice(None), slice(r0, r0 + rs * h, rs), slice(c0, c0 + cs * w, cs))
        if p["kind"] == "bits":
            v = np.where(self._read_d(p["registers"][0])[sl], 1, -1)
        elif p["kind"] == "tiles":  # one channel per tile: (C, h, w)
            gr = p["grid"][0]
            planes = sum(self._read_a(r) for r in p["registers"])
            v = np.stack([planes[:, (k % gr) * h:(k % gr + 1) * h, (k // gr) * w:(k // gr + 1) * w] - off
                          for k, off in enumerate(p["offsets"])], axis=1)
            v = v // p["divide"] if self.noise is None else v / p["divide"]
            self.probes.setdefault(p["name"], []).append(np.broadcast_to(v, (self.batch,) + v.shape[1:]).copy())
            return
        else:
            v = sum(self._read_a(r)[sl] for r in p["registers"]) - p.get("offset", 0)
            d = p.get("divide", 1)
            if self.noise is None:
                if np.any(v % d):
                    raise SimulationError(f"probe {p['name']}: a value is not a multiple of its unit {d}")
                v = v // d
            else:
                v = v / d
        self.probes.setdefault(p["name"], []).append(np.broadcast_to(v, (self.batch, h, w)).copy())

    def execute(self, ins: dict) -> None:
        op, a = ins["op"], ins["args"]
        spec = isa.SPECS.get(op)
        if spec is None:
            raise SimulationError(f"unknown instruction '{op}'")
        try:
            isa.check(ins)
        except ValueError as e:
            raise SimulationError(str(e)) from None
        ideal = self.noise is None
        if op in ("mov", "res", "add", "sub", "neg", "divq", "movx", "mov2x", "addx", "add2x", "subx", "sub2x"):
            if op == "res":
                self._write_a(a[0], 0, [], 2)
                return
            if op in ("mov", "neg", "divq"):
                x = self._read_a(a[1])
                v = {"mov": x, "neg": -x, "divq": x // 2 if ideal else x / 2}[op]
                if op == "divq" and ideal and np.any(x % 2):
                    raise SimulationError("divq of an odd value is not exact")
                self._write_a(a[0], v, [x], 2)
            elif op == "add":
                xs = [self._read_a(r) for r in a[1:]]
                self._write_a(a[0], sum(xs), xs, 2)
            elif op == "sub":
                x0, x1 = self._read_a(a[1]), self._read_a(a[2])
                self._write_a(a[0], x0 - x1, [x0, x1], 2)
            elif op in ("movx", "mov2x"):
                x = self._neighbour(self._read_a(a[1]), *a[2:])
                self._write_a(a[0], x, [x], 2)
            elif op in ("addx", "add2x"):
                x0, x1 = self._read_a(a[1]), self._read_a(a[2])
                s = self._neighbour(x0 + x1, *a[3:])
                self._write_a(a[0], s, [s], 2)
            else:  # subx(y, x0, dir, x1), sub2x(y, x0, dir, dir2, x1)
                x0, x1 = self._neighbour(self._read_a(a[1]), *a[2:-1]), self._read_a(a[-1])
                self._write_a(a[0], x0 - x1, [x0, x1], 2)
        elif op == "where":
            v = sum(self._read_a(r) for r in a)
            unit = ins.get("unit")
            if not ideal and unit:
                v = v + self.noise.threshold * unit * self.rng.standard_normal((self.batch,) + self.shape,
                                                                               dtype=np.float32)
            self.d["FLAG"] = np.asarray(v > 0)
        elif op in ("all", "ALL"):
            self.d["FLAG"] = np.ones((1,) + self.shape, bool)
        elif op == "WHERE":
            self.d["FLAG"] = self._read_d(a[0]).copy()
        elif op == "MOV":
            self._write_d(a[0], self._read_d(a[1]))
        elif op == "NOT":
            self._write_d(a[0], ~self._read_d(a[1] if len(a) > 1 else a[0]))
        elif op in ("OR", "NOR"):
            srcs = a[1:] if len(a) > 2 else a[:2]  # OR(d, d0): d := d | d0
            v = functools.reduce(np.logical_or, [self._read_d(r) for r in srcs])
            self._write_d(a[0], v if op == "OR" else ~v)
        elif op == "AND":
            v = self._read_d(a[1]) & self._read_d(a[2])
            self._write_d(a[0], v)
            self.undefined.update(isa.CLOBBERS["AND"])
        elif op in ("CLR", "SET"):
            for r in a:
                self._write_d(r, op == "SET")
        elif op == "REFRESH":
            self._read_d(a[0])
        elif op == "DNEWS0":
            src = self._read_d(a[1])
            out = np.zeros(np.broadcast_shapes(src.shape, (1,) + self.shape), bool)
            for d, reg in isa.DIRECTION_DREGS.items():
                sel = self._read_d(reg)
                if sel.any():
                    dr, dc = isa.DIRS[d]
                    out |= sel & self._shift(src, -dr, -dc)  # bits move toward d
            self._write_d(a[0], out)
        elif op == "scamp5_load_in":
            v = int(a[0])
            if not -128 <= v <= 127:
                raise SimulationError(f"scamp5_load_in({v}) is outside -128..127")
            self.a["IN"] = np.full((1,) + self.shape, v, self.a["IN"].dtype)
        elif op == "scamp5_in":
            v = int(a[1])
            if not -128 <= v <= 127:
                raise SimulationError(f"scamp5_in({v}) is outside -128..127")
            self._write_a(a[0], np.full((1,) + self.shape, v), [abs(v)], 2)
        elif op == "scamp5_load_pattern":
            self._write_d(a[0], self._pattern(*(int(v) for v in a[1:5])))
        elif op == "scamp5_flood":
            self._write_d(a[0], self._flood(self._read_d(a[0]), self._read_d(a[1])))
        elif op == "load_frame_bit":
            self._write_d(a[0], self._frame_bit(int(a[1])))
        elif op in ("scamp5_scan_areg", "scamp5_scan_dreg"):
            r0, c0, r1, c1, rs, cs = (int(v) for v in a[1:7])
            sl = (slice(None), slice(r0, r1 + 1, rs), slice(c0, c1 + 1, cs))
            if op == "scamp5_scan_dreg":
                v = np.broadcast_to(self._read_d(a[0])[sl], (self.batch,) + self._read_d(a[0])[sl].shape[1:])
                self.readouts.append(v.astype(np.int64))
                return
            v = np.broadcast_to(self._read_a(a[0])[sl], (self.batch,) + self._read_a(a[0])[sl].shape[1:])
            if ideal:
                if v.min() < -128 or v.max() > 127:
                    raise SimulationError("a readout value is outside the 8-bit range -128..127")
                self.readouts.append(v.astype(np.int64).copy())
            else:
                unit = ins.get("unit", 1)
                v = v + self.noise.output * unit * self.rng.standard_normal(v.shape)
                self.readouts.append(np.clip(np.rint(v), -128, 127).astype(np.int64))
        else:  # pragma: no cover - every op of isa.SPECS is handled above
            raise SimulationError(f"no semantics for '{op}'")

    def _flood(self, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Fill every 4-connected region of `mask` that holds a set bit of `target`."""
        from scipy import ndimage

        shape = np.broadcast_shapes(target.shape, mask.shape)
        t, m = np.broadcast_to(target, shape), np.broadcast_to(mask, shape)
        out = np.empty(shape, bool)
        for b in range(shape[0]):
            labels, _ = ndimage.label(m[b])
            hit = np.unique(labels[t[b] & m[b]])
            out[b] = t[b] | np.isin(labels, hit[hit > 0])
        return out

    def _frame_bit(self, bit: int) -> np.ndarray:
        """Bit `bit` (two's complement) of every frame, copied into each tile of the layout."""
        if self.frames is None:
            raise SimulationError("the section uploads a frame but none was given")
        h, w = self.program.meta["input"]["shape"]
        gr, gc = self.program.meta["input"]["tiles"]
        bits = ((self.frames.astype(np.int64) & 0xFF) >> bit) & 1
        out = np.zeros((len(self.frames),) + self.shape, bool)
        out[:, :gr * h, :gc * w] = np.tile(bits.astype(bool), (1, gr, gc))
        return out
