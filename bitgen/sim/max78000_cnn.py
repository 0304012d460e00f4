"""The MAX78000's CNN accelerator as an emulated peripheral of ``max78000-sim``.

The firmware powers it (GCFR, GCR clock), writes its global and per-layer registers, its kernel
memories (MRAM: directly, four stores per 72-bit word, or as a byte stream in "express" mode),
its bias memories and its data memories (the four 128 KB SRAM regions, mapped as plain memory
by the board), then starts it by writing the master quadrant's control register. The emulator
then runs every layer from those contents (:mod:`bitgen.sim.max78000_layers`: nothing here sees
the IR) and sets the done flag (CTL bit 12). A setting the model does not support, or one that
contradicts another, stops the run with a fault that names the register.

Addresses (``../shared/reference/max78000.md`` section 4): quadrant q's block at
``0x50100000 + q * 0x400000``: CTL +0, SRAM +4, LCNT_MAX +8, SRAM_TEST +0xC, layer register r
of layer l at ``+0x10 + r * 0x80 + l * 4``, bias bytes at +0x8000 (one per word), TRAM at
+0x10000, kernel memory of processor p at ``+0x80000 + p * 0x4000``, word k at ``+ k * 16``;
the data memories at ``0x50400000 + q * 0x400000``; AON control at 0x50001000.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .machine import SimFault
from .max78000_layers import BIAS_BYTES, KERNEL_WORDS, REGS, WORDS, CnnFault, State, decode, execute
from .peripherals import MODELS, Peripheral

BASE = 0x50000000
QUAD = 0x400000  # quadrant stride
CTL_BLOCK = 0x100000  # quadrant block offset from BASE
BIAS_OFF, TRAM_OFF, MRAM_OFF = 0x8000, 0x10000, 0x80000
MRAM_SIZE = 16 * 0x4000
TRAM_SIZE = 16 * 0x4000
AON = 0x1000
LREG_FIRST, LREG_STRIDE, LAYERS = 0x10, 0x80, 32
CTL_UNSUPPORTED = {8: "one-shot mode", 14: "streaming", 15: "FIFO input", 21: "simple 1-bit (XOR) weights",
                   30: "binary weights (MAX78002)", 31: "fast FIFO quad mode", 4: "external ready"}


class Max78000Cnn(Peripheral):
    size = 0  # answers several windows (windows())

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.lregs = np.zeros((4, 21, LAYERS), dtype=np.uint64)
        self.ctl = np.zeros((4, 4), dtype=np.uint64)
        self.mram = np.zeros((64, KERNEL_WORDS, 9), dtype=np.uint8)
        self.bias = np.zeros((4, BIAS_BYTES), dtype=np.uint8)
        self.aon = 0
        self.express: dict[int, Any] = {}  # quadrant -> (processor, word, next address, pending bytes)
        self.direct: dict[tuple[int, int], list[int]] = {}  # (processor, word) -> the words of a direct store
        self.runs = 0
        self.layers_run = 0
        self._sram: list[np.ndarray] | None = None

    def windows(self) -> list[tuple[int, int]]:
        w = [(BASE + AON, 4)]
        for q in range(4):
            qb = BASE + CTL_BLOCK + q * QUAD
            w += [(qb, LREG_FIRST + 21 * LREG_STRIDE), (qb + BIAS_OFF, 4 * BIAS_BYTES), (qb + TRAM_OFF, TRAM_SIZE),
                  (qb + MRAM_OFF, MRAM_SIZE)]
        return w

    # ------------------------------------------------------------------ power and clocks
    def _check_power(self, q: int, what: str, mask_memory: bool = False) -> None:
        if not self.peer("gcr").clock_on(25):
            self.fault(f"{what} accessed with the CNN clock off (GCR PCLKDIS0 bit 25)")
        gcfr = self.peer("gcfr")
        if not gcfr.powered(q):
            self.fault(f"{what} accessed with quadrant {q} unpowered, isolated or in reset (GCFR {gcfr.describe()})")
        if mask_memory and not gcfr.mask_memory(q):
            self.fault(f"{what} accessed with quadrant {q}'s kernel memory off (GCFR reg1 bit {q})")

    def reset_quadrant(self, q: int) -> None:
        """GCFR reset of quadrant q: its registers to 0 (memories keep their contents)."""
        self.lregs[q] = 0
        self.ctl[q] = 0
        self.express.pop(q, None)

    # ------------------------------------------------------------------ access
    def _where(self, off: int) -> tuple[str, int, int]:
        addr = BASE + off
        if addr == BASE + AON:
            return "aon", -1, 0
        q, rel = divmod(addr - BASE - CTL_BLOCK, QUAD)
        if rel < LREG_FIRST + 21 * LREG_STRIDE:
            return "regs", q, rel
        if BIAS_OFF <= rel < BIAS_OFF + 4 * BIAS_BYTES:
            return "bias", q, rel - BIAS_OFF
        if TRAM_OFF <= rel < TRAM_OFF + TRAM_SIZE:
            return "tram", q, rel - TRAM_OFF
        return "mram", q, rel - MRAM_OFF

    def read(self, off, size):
        kind, q, rel = self._where(off)
        if kind == "aon":
            return self.aon
        self._check_power(q, f"CNN quadrant {q} {kind}", kind == "mram")
        if kind == "regs":
            if rel < LREG_FIRST:
                return int(self.ctl[q, rel // 4])
            reg, layer = divmod(rel - LREG_FIRST, LREG_STRIDE)
            return int(self.lregs[q, reg, layer // 4])
        if kind == "bias":
            return int(self.bias[q, rel // 4])
        if kind == "tram":
            return 0
        p, w = divmod(rel, 0x4000)
        word, part = divmod(w, 16)
        k = self.mram[16 * q + p, word]
        if part == 0:
            return int(k[0])
        if part == 4:
            return int.from_bytes(bytes(k[1:5]), "big")
        if part == 8:
            return int.from_bytes(bytes(k[5:9]), "big")
        return 0

    def write(self, off, size, value):
        kind, q, rel = self._where(off)
        if kind == "aon":
            self.aon = value
            return
        self._check_power(q, f"CNN quadrant {q} {kind}", kind == "mram")
        if kind == "regs":
            if size != 4 or rel % 4:
                self.fault(f"{size}-byte store to CNN register offset 0x{rel:x} of quadrant {q}")
            if rel < LREG_FIRST:
                self.ctl[q, rel // 4] = value
                if rel == 0 and value & 1 and not value & (1 << 11):
                    self._start(q)
                return
            reg, layer = divmod(rel - LREG_FIRST, LREG_STRIDE)
            if reg not in REGS.values():
                self.fault(f"store to CNN layer register {reg} (reserved) of quadrant {q}")
            self.lregs[q, reg, layer // 4] = value
            return
        if kind == "bias":
            if size != 4 or rel % 4:
                self.fault(f"{size}-byte store into the bias memory of quadrant {q} (one byte per 32-bit word)")
            self.bias[q, rel // 4] = value & 0xFF
            return
        if kind == "tram":
            return  # the TRAM is the processors' scratch: what the firmware writes there is not used
        self._kernel_write(q, rel, size, value)

    # ------------------------------------------------------------------ kernel memory
    def _kernel_write(self, q: int, rel: int, size: int, value: int) -> None:
        p, w = divmod(rel, 0x4000)
        proc = 16 * q + p
        express = bool(int(self.ctl[q, 0]) >> 20 & 1)
        if express:
            if size == 1 and w % 4 == 1:  # "set address": the word is the encoded address >> 2
                if value != 1:
                    self.fault(f"kernel memory express address write of 0x{value:02x} (expected 0x01)")
                word = (w - 1) // 4
                if word >= KERNEL_WORDS:
                    self.fault(f"kernel memory express address: word {word} of processor {proc} (max {KERNEL_WORDS - 1})")
                self.express[q] = [proc, word, rel - 1, b""]
                return
            st = self.express.get(q)
            if size != 4 or st is None:
                self.fault(f"{size}-byte store to kernel memory 0x{BASE + CTL_BLOCK + q * QUAD + MRAM_OFF + rel:08x} in "
                           "express mode without an address set first")
            if rel != st[2]:
                self.fault(f"express kernel stream: store to offset 0x{rel:x} where 0x{st[2]:x} comes next")
            st[2] += 4
            st[3] += value.to_bytes(4, "big")
            while len(st[3]) >= 9:
                if st[1] >= KERNEL_WORDS:
                    self.fault(f"express kernel stream passes word {KERNEL_WORDS - 1} of processor {st[0]}")
                self.mram[st[0], st[1]] = np.frombuffer(st[3][:9], dtype=np.uint8)
                st[1] += 1
                st[3] = st[3][9:]
            return
        word, part = divmod(w, 16)
        if size != 4 or part % 4 or word >= KERNEL_WORDS:
            self.fault(f"{size}-byte store to kernel memory offset 0x{rel:x} of quadrant {q}")
        parts = self.direct.setdefault((proc, word), [0, 0, 0])
        if part < 12:
            parts[part // 4] = value
            return
        k = bytes([parts[0] & 0xFF]) + parts[1].to_bytes(4, "big") + parts[2].to_bytes(4, "big")
        self.mram[proc, word] = np.frombuffer(k, dtype=np.uint8)
        del self.direct[(proc, word)]

    # ------------------------------------------------------------------ running
    def sram(self) -> list[np.ndarray]:
        """The 16 data memory instances as bytes (views of the board's SRAM regions)."""
        if self._sram is None:
            out = []
            for q in range(4):
                base = BASE + 0x400000 + q * QUAD
                region = next((r for r in self.m.regions if r.base == base), None)
                if region is None:
                    raise SimFault(f"{self.m.name}: no memory region at 0x{base:08x} for CNN data memory {q}")
                buf = np.frombuffer(region.buffer, dtype=np.uint8)
                out += [buf[i * WORDS * 4:(i + 1) * WORDS * 4] for i in range(4)]
            self._sram = out
        return self._sram

    def _start(self, master: int) -> None:
        ctl = int(self.ctl[master, 0])
        if not ctl & (1 << 3):
            self.fault(f"CNN started with its clocks off (CTL 0x{ctl:08x}, bit 3)")
        for bit, what in CTL_UNSUPPORTED.items():
            if ctl >> bit & 1:
                self.fault(f"CNN started with {what} (CTL 0x{ctl:08x} bit {bit}): not modelled")
        lcnt = int(self.ctl[master, 2])
        if lcnt & ~0x1F:
            self.fault(f"LCNT_MAX 0x{lcnt:08x}: a start layer other than 0 is not modelled")
        rounding = bool(ctl >> 13 & 1)
        state = State(self.lregs, self.ctl, self.mram, self.bias, self.sram())
        for layer in range(lcnt + 1):
            try:
                ly = decode(state, layer, rounding)
                for q in range(4):
                    used = (ly.procs >> (16 * q)) & 0xFFFF
                    if used and q != master and not int(self.ctl[q, 0]) & 1:
                        raise CnnFault(f"layer {layer} uses quadrant {q}, which is not enabled (CTL bit 0)")
                execute(state, ly, rounding)
            except CnnFault as e:
                self.fault(f"CNN {e}")
        self.runs += 1
        self.layers_run += lcnt + 1
        self.ctl[master, 0] = int(self.ctl[master, 0]) | (1 << 12)  # done (the interrupt flag)

    def stats(self) -> dict[str, int]:
        return {"cnn_runs": self.runs, "cnn_layers": self.layers_run}


class Max78000Gcfr(Peripheral):
    """GCFR (0x40005800): reg0 power, reg1 kernel (mask) memory, reg2 isolation, reg3 reset of
    the CNN's four quadrants, one bit each. Setting a reset bit clears that quadrant's
    registers."""

    size = 0x400

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.regs = {0x00: 0, 0x04: 0, 0x08: 0xF, 0x0C: 0xF}

    def write(self, off, size, value):
        super().write(off, size, value)
        if off == 0x0C:
            cnn = next((p for p in self.m.peripherals if isinstance(p, Max78000Cnn)), None)
            for q in range(4):
                if value >> q & 1 and cnn is not None:
                    cnn.reset_quadrant(q)

    def powered(self, q: int) -> bool:
        r = self.regs
        return bool(r[0x00] >> q & 1) and not r[0x08] >> q & 1 and not r[0x0C] >> q & 1

    def mask_memory(self, q: int) -> bool:
        return bool(self.regs[0x04] >> q & 1)

    def describe(self) -> str:
        r = self.regs
        return f"power 0x{r[0x00]:x}, iso 0x{r[0x08]:x}, reset 0x{r[0x0C]:x}"


MODELS["max78000.cnn"] = Max78000Cnn
MODELS["max78000.gcfr"] = Max78000Gcfr
