"""An emulated microcontroller: Unicorn's CPU, the part's memory map, and models of only the
peripherals the firmware touches (:mod:`bitgen.sim.peripherals`).

Everything comes from the board's ``[emulator]`` table: CPU, reset, memory regions (with
aliases and exact sizes: a 2 KB SRAM faults at its 2049th byte although Unicorn maps 4 KB
pages), peripherals and the instruction rules. Any access the real part would not survive stops
the emulation with a :class:`SimFault` that says what, where and at which instruction:

* fetch, load or store outside the mapped memories and modelled peripheral registers,
* a store to flash,
* an instruction the CPU does not have (RV32M on an RV32EC part; undefined instructions),
* misuse of a modelled peripheral (clock off, baud rate wrong, pin not routed, ...).

``instructions`` counts every instruction executed (the hook in hooks.c); the modelled cycle
counters (SysTick, DWT) read it, so cycles in the emulated boards are exact retired-instruction
counts, not CPU cycles.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import unicorn as uc
from unicorn import arm_const, riscv_const
from unicorn.unicorn_py3.arch.types import uc_hook_h
from unicorn.unicorn_py3.unicorn import uclib

from ..errors import BitgenError
from . import native

PAGE = 0x1000


class SimFault(BitgenError):
    """The emulated CPU did something the real part would not survive."""

    exit_code = 3


class SimStop(Exception):
    """Raised inside a hook to end the emulation without a fault (the host went away)."""


@dataclass
class MappedRegion:
    name: str
    base: int
    size: int
    perms: str
    buffer: ctypes.Array
    mapped: int  # bytes mapped (size rounded up to pages)
    aliases: tuple[int, ...] = ()

    def contains(self, addr: int) -> bool:
        return any(b <= addr < b + self.size for b in (self.base, *self.aliases))


def _int(v: Any) -> int:
    return int(v, 0) if isinstance(v, str) else int(v)


def _page_up(n: int) -> int:
    return (n + PAGE - 1) & ~(PAGE - 1)


ARCHES = {
    "riscv32": (uc.UC_ARCH_RISCV, uc.UC_MODE_RISCV32, None),
    "armv7m": (uc.UC_ARCH_ARM, uc.UC_MODE_THUMB | uc.UC_MODE_MCLASS, arm_const.UC_CPU_ARM_CORTEX_M4),
}
PROT = {"r": uc.UC_PROT_READ, "w": uc.UC_PROT_WRITE, "x": uc.UC_PROT_EXEC}
ACCESS = {
    uc.UC_MEM_READ_UNMAPPED: "load from", uc.UC_MEM_WRITE_UNMAPPED: "store to",
    uc.UC_MEM_FETCH_UNMAPPED: "instruction fetch from", uc.UC_MEM_WRITE_PROT: "store to read-only",
    uc.UC_MEM_READ_PROT: "load from unreadable", uc.UC_MEM_FETCH_PROT: "instruction fetch from non-executable",
}


class Machine:
    def __init__(self, spec: dict[str, Any], image: bytes, *, name: str = "board", uart=None):
        from . import max78000_cnn  # noqa: F401 - adds the CNN accelerator's models to MODELS
        from .peripherals import MODELS  # the models import this module

        self.name = name
        self.spec = spec
        arch = spec.get("cpu", "riscv32")
        if arch not in ARCHES:
            raise SimFault(f"{name}: unknown emulator cpu '{arch}' (known: {', '.join(ARCHES)})")
        self.arch = arch
        a, mode, cpu = ARCHES[arch]
        self.uc = uc.Uc(a, mode, cpu) if cpu is not None else uc.Uc(a, mode)
        self.uart = uart  # the byte pipe the UART model talks to (bitgen.sim.wire)
        self.fault: str | None = None
        self._pending: Exception | None = None
        self.regions: list[MappedRegion] = []
        self._hooks: list[Any] = []  # keep ctypes callbacks alive

        image_loaded = False
        for m in spec.get("memory", []):
            region = self._map(m)
            if m.get("image"):
                if len(image) > region.size:
                    raise SimFault(f"{name}: image of {len(image)} bytes does not fit the "
                                   f"{region.size}-byte {region.name} at 0x{region.base:08x}")
                ctypes.memmove(region.buffer, image, len(image))
                image_loaded = True
        if not image_loaded:
            raise SimFault(f"{name}: no memory region of the emulator takes the image (image = true)")

        self.peripherals = []
        pages: dict[int, list] = {}
        for p in spec.get("peripherals", []):
            model = MODELS.get(p["model"])
            if model is None:
                raise SimFault(f"{name}: no peripheral model '{p['model']}' (known: {', '.join(sorted(MODELS))})")
            dev = model(self, p.get("name", p["model"]), _int(p["base"]), **p.get("params", {}))
            self.peripherals.append(dev)
            for lo, size in dev.windows():  # a model may answer several address ranges
                for page in range(lo & ~(PAGE - 1), _page_up(lo + size), PAGE):
                    if dev not in pages.setdefault(page, []):
                        pages[page].append(dev)
        for page, devs in sorted(pages.items()):
            self._map_mmio(page, devs)

        # C hook: instruction count, executable ranges, forbidden instructions
        self.state = native.State()
        self.state.stop = ctypes.cast(uclib.uc_emu_stop, ctypes.c_void_p).value
        self.state.forbid_rv_m = 1 if "rv32m" in spec.get("forbid", []) else 0
        ranges = [(b, r.size, r.buffer) for r in self.regions if "x" in r.perms for b in (r.base, *r.aliases)]
        if len(ranges) > native.MAX_RANGES:
            raise SimFault(f"{name}: at most {native.MAX_RANGES} executable ranges")
        for i, (base, size, buf) in enumerate(ranges):
            self.state.exec[i] = native.Range(base, size, ctypes.addressof(buf))
        self.state.n_ranges = len(ranges)
        lib = native.library()
        h = uc_hook_h()
        fn = ctypes.cast(lib.bg_sim_code_hook, ctypes.c_void_p)
        err = uclib.uc_hook_add(self.uc._uch, ctypes.byref(h), uc.UC_HOOK_CODE, fn,
                                ctypes.cast(ctypes.pointer(self.state), ctypes.c_void_p), 1, 0)
        if err:
            raise SimFault(f"{name}: cannot install the instruction hook ({uc.UcError(err)})")
        self.uc.hook_add(uc.UC_HOOK_MEM_UNMAPPED | uc.UC_HOOK_MEM_PROT, self._on_bad_access)
        self.uc.hook_add(uc.UC_HOOK_INTR, self._on_interrupt)

    # ------------------------------------------------------------------ memory
    def _map(self, m: dict[str, Any]) -> MappedRegion:
        base, size, perms = _int(m["base"]), _int(m["size"]), m.get("perms", "rwx")
        mapped = _page_up(size)
        buf = (ctypes.c_uint8 * mapped)()
        ctypes.memset(buf, _int(m.get("fill", 0)), mapped)
        prot = 0
        for c in perms:
            prot |= PROT[c]
        aliases = tuple(_int(a) for a in m.get("aliases", []))
        for b in (base, *aliases):
            if b % PAGE:
                raise SimFault(f"{self.name}: region {m['name']} at 0x{b:08x} is not 4 KB aligned")
            self.uc.mem_map_ptr(b, mapped, prot, ctypes.addressof(buf))
            if mapped > size:  # the part ends inside the page: accesses past it fault
                self._fault_range(b + size, b + mapped - 1, f"{m['name']} ({size} bytes at 0x{b:08x})")
        region = MappedRegion(m["name"], base, size, perms, buf, mapped, aliases)
        self.regions.append(region)
        return region

    def _fault_range(self, lo: int, hi: int, what: str) -> None:
        def hook(_uc, access, address, size, value, _user):
            kind = "store to" if access == uc.UC_MEM_WRITE else "load from"
            self._stop_fault(f"{kind} 0x{address:08x}, past the end of {what}")

        self.uc.hook_add(uc.UC_HOOK_MEM_READ | uc.UC_HOOK_MEM_WRITE, hook, begin=lo, end=hi)

    def _map_mmio(self, page: int, devs: list) -> None:
        def find(addr: int):
            for d in devs:
                if any(lo <= addr < lo + size for lo, size in d.windows()):
                    return d
            self._stop_fault(f"access to 0x{addr:08x}: no modelled peripheral register there")
            return None

        def read(_uc, offset, size, _user):
            try:
                addr = page + offset
                d = find(addr)
                return d.read(addr - d.base, size) & ((1 << (8 * size)) - 1) if d else 0
            except (SimFault, SimStop) as e:
                self._pend(e)
                return 0

        def write(_uc, offset, size, value, _user):
            try:
                addr = page + offset
                d = find(addr)
                if d:
                    d.write(addr - d.base, size, value)
            except (SimFault, SimStop) as e:
                self._pend(e)

        self.uc.mmio_map(page, PAGE, read, None, write, None)

    # ------------------------------------------------------------------ faults
    def _pend(self, e: Exception) -> None:
        """Stop at the end of this instruction and raise e from run() (an exception cannot
        cross Unicorn's MMIO callbacks cleanly)."""
        if self._pending is None:
            self._pending = e
        self.uc.emu_stop()

    def pc(self) -> int:
        reg = riscv_const.UC_RISCV_REG_PC if self.arch == "riscv32" else arm_const.UC_ARM_REG_PC
        return self.uc.reg_read(reg)

    def _stop_fault(self, msg: str) -> None:
        raise SimFault(f"{self.name}: {msg} (pc 0x{self.pc():08x}, after {self.instructions} instructions)")

    def _on_bad_access(self, _uc, access, address, size, value, _user):
        what = ACCESS.get(access, "access to")
        self.fault = f"{what} 0x{address:08x} ({size} bytes): outside {self._map_text()}"
        return False  # let Unicorn stop with the matching error

    def _on_interrupt(self, _uc, intno, _user):
        self.fault = f"CPU exception {intno}"
        self.uc.emu_stop()

    def _map_text(self) -> str:
        parts = [f"{r.name} 0x{r.base:08x}+{r.size}" for r in self.regions]
        return "the part's memory (" + ", ".join(parts) + ") and modelled peripherals"

    # ------------------------------------------------------------------ running
    @property
    def instructions(self) -> int:
        return int(self.state.count)

    def reset_pc(self) -> int:
        reset = self.spec.get("reset", {})
        if "vector" in reset:  # Cortex-M: initial SP and PC from the vector table
            vec = _int(reset["vector"])
            sp = int.from_bytes(self.uc.mem_read(vec, 4), "little")
            pc = int.from_bytes(self.uc.mem_read(vec + 4, 4), "little")
            self.uc.reg_write(arm_const.UC_ARM_REG_SP, sp)
            return pc
        return _int(reset.get("pc", 0))

    def run(self, max_instructions: int = 0, resume: bool = False) -> None:
        """Run from reset (or, with `resume`, on from where the last run stopped) until the
        firmware faults (SimFault), the host leaves (returns) or ``max_instructions`` more have
        run (returns)."""
        if resume:  # Thumb code (Cortex-M) resumes with bit 0 of the address set
            pc = self.pc() | (1 if self.arch != "riscv32" else 0)
        else:
            pc = self.reset_pc()
        try:
            self.uc.emu_start(pc, 0xFFFFFFF0, count=max_instructions)
            if self._pending is not None:
                raise self._pending
        except SimStop:
            return
        except SimFault:
            raise
        except uc.UcError as e:
            raise SimFault(f"{self.name}: {self._explain(e)} (pc 0x{self.pc():08x}, "
                           f"after {self.instructions} instructions)") from None
        self._check_native_fault()

    def _check_native_fault(self) -> None:
        s = self.state
        if s.fault == native.FAULT_RV_M:
            raise SimFault(
                f"{self.name}: multiply/divide instruction 0x{s.fault_insn:08x} at pc 0x{s.fault_pc:08x}: "
                f"the part has no M extension (after {self.instructions} instructions)")
        if s.fault == native.FAULT_FETCH:
            raise SimFault(f"{self.name}: instruction fetch from 0x{s.fault_pc:08x}, outside the "
                           f"executable memory (after {self.instructions} instructions)")
        if self.fault:
            raise SimFault(f"{self.name}: {self.fault} (pc 0x{self.pc():08x}, after {self.instructions} instructions)")

    def _explain(self, e: uc.UcError) -> str:
        s = self.state
        if s.fault:
            try:
                self._check_native_fault()
            except SimFault as f:
                return str(f).split(": ", 1)[1].rsplit(" (after", 1)[0]
        if self.fault:
            return self.fault
        if e.errno == uc.UC_ERR_INSN_INVALID:
            return "undefined instruction"
        return str(e)

    def stop(self) -> None:
        self.uc.emu_stop()

    def stack_peak(self, bottom: int) -> int:
        """Bytes of stack used at most: SRAM starts filled with a pattern, the stack grows down
        from the top of the region holding ``bottom``, so its deepest point is the lowest byte
        above ``bottom`` that no longer holds the pattern."""
        for r in self.regions:
            if r.base <= bottom < r.base + r.size:
                fill = next((int(m.get("fill", 0)) for m in self.spec["memory"] if m["name"] == r.name), 0)
                data = bytes(r.buffer)[bottom - r.base : r.size]
                changed = next((i for i, b in enumerate(data) if b != fill), len(data))
                return len(data) - changed
        raise SimFault(f"{self.name}: stack bottom 0x{bottom:08x} is in no memory region")

