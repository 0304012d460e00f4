"""Models of the peripherals bitgen's board support touches, and nothing more.

Each model knows its registers; an access to any other offset of its window faults, and so does
a use the real part would not survive (a peripheral used with its clock off, a UART at a baud
rate the host would not understand, a TX pin not routed to the UART). The facts are those of
reference/boards.md (CH32V003) and the MAX78000 register headers cited in boards/max78000.

Boards pick models by name in their ``[emulator]`` table (``model = "ch32v003.usart"``), so a new
board built from known parts needs no code.
"""
from __future__ import annotations

from typing import Any

from .machine import Machine

BAUD_TOLERANCE = 0.025  # a UART more than 2.5 % off the host's rate garbles bytes


class Peripheral:
    size = 0x400  # bytes of address space the model answers

    def __init__(self, machine: Machine, name: str, base: int, **params: Any):
        self.m = machine
        self.name = name
        self.base = base
        self.params = params
        self.regs: dict[int, int] = {}

    def windows(self) -> list[tuple[int, int]]:
        """The address ranges (base, size) the model answers; offsets are from ``base``."""
        return [(self.base, self.size)]

    def fault(self, msg: str) -> None:
        self.m._stop_fault(f"{self.name}: {msg}")

    def unknown(self, off: int, write: bool) -> int:
        self.fault(f"{'store to' if write else 'load from'} 0x{self.base + off:08x}: "
                   f"no modelled register at offset 0x{off:02x}")
        return 0

    def read(self, off: int, size: int) -> int:
        if off not in self.regs:
            return self.unknown(off, False)
        return self.regs[off]

    def write(self, off: int, size: int, value: int) -> None:
        if off not in self.regs:
            self.unknown(off, True)
            return
        self.regs[off] = value

    def peer(self, model_name: str) -> "Peripheral":
        for p in self.m.peripherals:
            if p.name == model_name or type(p).__name__ == model_name:
                return p
        self.fault(f"needs the peripheral {model_name}, which this board does not model")
        raise AssertionError  # unreachable: fault raises


class UartPort:
    """The byte pipe to the host, shared by the UART models: nonblocking reads, and after many
    empty polls in a row (the firmware is waiting for a command) a short blocking wait, so an
    idle emulated board does not spin a host CPU."""

    IDLE_POLLS = 64
    IDLE_WAIT_S = 0.02

    def __init__(self, machine: Machine):
        self.m = machine
        self.rx = bytearray()
        self.empty_polls = 0

    def rx_ready(self) -> bool:
        if self.rx:
            return True
        wire = self.m.uart
        if wire is None:
            return False
        self.empty_polls += 1
        wait = self.IDLE_WAIT_S if self.empty_polls > self.IDLE_POLLS else 0.0
        self.rx += wire.read(wait)
        return bool(self.rx)

    def rx_pop(self) -> int:
        self.empty_polls = 0
        if not self.rx and not self.rx_ready():
            return 0
        b = self.rx[0]
        del self.rx[0]
        return b

    def tx(self, b: int) -> None:
        self.empty_polls = 0
        if self.m.uart is not None:
            self.m.uart.write(bytes([b & 0xFF]))


# ---------------------------------------------------------------------------- CH32V003
class Ch32Rcc(Peripheral):
    """RCC: CTLR 0x00, CFGR0 0x04, INTR 0x08, APB2PRSTR 0x0C, APB1PRSTR 0x10, AHBPCENR 0x14,
    APB2PCENR 0x18, APB1PCENR 0x1C, RSTSCKR 0x24. Oscillators and the PLL lock at once."""

    HSI_HZ = 24_000_000

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.regs = {0x00: 0x1 | (0x10 << 3), 0x04: 0, 0x08: 0, 0x0C: 0, 0x10: 0, 0x14: 0x14,
                     0x18: 0, 0x1C: 0, 0x24: 0}

    def read(self, off, size):
        v = super().read(off, size)
        if off == 0x00:  # HSIRDY follows HSION, PLLRDY follows PLLON
            v |= (v & 1) << 1
            v |= ((v >> 24) & 1) << 25
        elif off == 0x04:  # SWS follows SW
            v = (v & ~0xC) | ((v & 3) << 2)
        return v

    def write(self, off, size, value):
        if off == 0x04 and (value & 3) == 2:
            if not (self.regs[0x00] >> 24) & 1:
                self.fault("system clock switched to the PLL while the PLL is off")
            flash = self.peer("flash")
            if flash.regs[0x00] & 3 == 0:
                self.fault("48 MHz from flash needs one wait state: set FLASH_ACTLR first")
        super().write(off, size, value)

    def hclk(self) -> int | None:
        cfgr = self.regs[0x04]
        sysclk = self.HSI_HZ * 2 if (cfgr & 3) == 2 else self.HSI_HZ if (cfgr & 3) == 0 else None
        if sysclk is None or (cfgr >> 4) & 0xF:  # HSE or an HCLK prescaler: not modelled
            return None
        return sysclk

    def clock_on(self, bit: int) -> bool:
        return bool(self.regs[0x18] >> bit & 1)


class Ch32Flash(Peripheral):
    """Flash interface: only ACTLR (0x00, wait states) is modelled; programming is not."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.regs = {0x00: 0}


class Ch32Gpio(Peripheral):
    """GPIO port: CFGLR 0x00, INDR 0x08, OUTDR 0x0C, BSHR 0x10, BCR 0x14, LCKR 0x18."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.regs = {0x00: 0x44444444, 0x08: 0, 0x0C: 0, 0x10: 0, 0x14: 0, 0x18: 0}
        self.clock_bit = int(self.params.get("clock_bit", 5))

    def _clock(self):
        if not self.peer("rcc").clock_on(self.clock_bit):
            self.fault(f"accessed with its clock off (RCC APB2PCENR bit {self.clock_bit})")

    def read(self, off, size):
        self._clock()
        return super().read(off, size)

    def write(self, off, size, value):
        self._clock()
        if off == 0x10:  # BSHR: set the low half, reset the high half
            self.regs[0x0C] = (self.regs[0x0C] | (value & 0xFFFF)) & ~(value >> 16)
            return
        if off == 0x14:
            self.regs[0x0C] &= ~(value & 0xFFFF)
            return
        super().write(off, size, value)

    def pin_mode(self, pin: int) -> int:
        return (self.regs[0x00] >> (4 * pin)) & 0xF


class Ch32Usart(Peripheral):
    """USART: STATR 0x00 (RXNE 0x20, TC 0x40, TXE 0x80), DATAR 0x04, BRR 0x08, CTLR1 0x0C
    (RE 0x4, TE 0x8, UE 0x2000), CTLR2 0x10, CTLR3 0x14, GPR 0x18. Transmits at once; checks the
    clock, the enables, the baud rate and the TX pin on the first byte."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.regs = {0x00: 0xC0, 0x04: 0, 0x08: 0, 0x0C: 0, 0x10: 0, 0x14: 0, 0x18: 0}
        self.port = UartPort(self.m)
        self.baud = int(self.params.get("baud", 115200))
        self.clock_bit = int(self.params.get("clock_bit", 14))
        self.tx_pin = self.params.get("tx_pin")  # [gpio peripheral name, pin]
        self.checked = False

    def _clock(self):
        if not self.peer("rcc").clock_on(self.clock_bit):
            self.fault(f"accessed with its clock off (RCC APB2PCENR bit {self.clock_bit})")

    def _check_line(self):
        if self.checked:
            return
        ctl = self.regs[0x0C]
        if not (ctl & 0x2000 and ctl & 0x8):
            self.fault(f"byte written with the transmitter off (CTLR1=0x{ctl:04x}, needs UE and TE)")
        hclk = self.peer("rcc").hclk()
        brr = self.regs[0x08]
        if hclk is not None:
            if brr == 0:
                self.fault("BRR is 0")
            baud = hclk / brr
            if abs(baud - self.baud) > BAUD_TOLERANCE * self.baud:
                self.fault(f"sends at {baud:.0f} baud (HCLK {hclk} Hz / BRR {brr}), the host expects {self.baud}")
        if self.tx_pin:
            gpio_name, pin = self.tx_pin
            mode = self.peer(gpio_name).pin_mode(int(pin))
            if not (mode & 0x8 and mode & 0x3):
                self.fault(f"TX pin {gpio_name} {pin} is not an alternate-function output "
                           f"(CFGLR nibble 0x{mode:x}, needs 0x9..0xB)")
        self.checked = True

    def read(self, off, size):
        self._clock()
        if off == 0x00:
            v = 0xC0  # TXE | TC: transmission is instantaneous
            if self.regs[0x0C] & 0x4 and self.port.rx_ready():  # RE
                v |= 0x20
            return v
        if off == 0x04:
            return self.port.rx_pop()
        return super().read(off, size)

    def write(self, off, size, value):
        self._clock()
        if off == 0x04:
            self._check_line()
            self.port.tx(value)
            return
        if off == 0x00:
            return  # flags are cleared by writing 0; nothing to keep
        super().write(off, size, value)


class Ch32SysTick(Peripheral):
    """SysTick: CTLR 0x00 (STE bit 0, STCLK bit 2: 1 = HCLK, 0 = HCLK/8), SR 0x04, CNT 0x08
    (32-bit up-counter), CMP 0x10. In the emulator one HCLK tick is one retired instruction."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.regs = {0x00: 0, 0x04: 0, 0x08: 0, 0x10: 0}
        self.start = 0  # instruction count at which CNT was last set or started

    def _ticks(self) -> int:
        ctl = self.regs[0x00]
        if not ctl & 1:
            return self.regs[0x08]
        n = self.m.instructions - self.start
        return (self.regs[0x08] + (n if ctl & 4 else n // 8)) & 0xFFFFFFFF

    def read(self, off, size):
        if off == 0x08:
            return self._ticks()
        return super().read(off, size)

    def write(self, off, size, value):
        if off == 0x00:
            self.regs[0x08] = self._ticks()
            self.start = self.m.instructions
            if value & 2:
                self.fault("SysTick interrupt enabled: interrupts are not modelled")
        elif off == 0x08:
            self.start = self.m.instructions
        super().write(off, size, value)


# ---------------------------------------------------------------------------- MAX78000
class MaxGcr(Peripheral):
    """Global control: SYSCTRL 0x00, RST0 0x04, CLKCTRL 0x08 (SYSCLK_DIV 8:6, SYSCLK_SEL 11:9,
    SYSCLK_RDY 13, *_EN 17..20, *_RDY 25..29), PM 0x0C, PCLKDIV 0x18, PCLKDIS0 0x24 (GPIO0 bit 0,
    UART0 bit 9), MEMCTRL 0x28, PCLKDIS1 0x48. Oscillators are ready at once."""

    size = 0x400
    FREQ = {0: 60_000_000, 3: 30_000, 4: 100_000_000, 5: 7_372_800}  # ISO, INRO, IPO, IBRO

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        # reset: running on ISO, ISO enabled; peripheral clocks off
        self.regs = {0x00: 0, 0x04: 0, 0x08: (1 << 18), 0x0C: 0, 0x18: 0, 0x24: 0xFFFFFFFF,
                     0x28: 0, 0x48: 0xFFFFFFFF}

    def read(self, off, size):
        v = super().read(off, size)
        if off == 0x08:
            en = (v >> 17) & 0xF  # ERTCO, ISO, IPO, IBRO enables -> ready bits 25..28
            v = (v & ~(0x1F << 25)) | (en << 25) | (1 << 29) | (1 << 13)
        return v

    def write(self, off, size, value):
        if off == 0x08:
            sel = (value >> 9) & 7
            enable_bit = {0: 18, 4: 19, 5: 20}.get(sel)
            if sel not in self.FREQ:
                self.fault(f"SYSCLK_SEL {sel} is not a modelled clock source")
            if enable_bit is not None and not (value >> enable_bit) & 1:
                self.fault(f"system clock switched to source {sel} while that oscillator is off")
        super().write(off, size, value)

    def sysclk(self) -> int:
        v = self.regs[0x08]
        return self.FREQ[(v >> 9) & 7] >> ((v >> 6) & 7)

    def clock_on(self, bit: int) -> bool:
        return not (self.regs[0x24] >> bit) & 1


class MaxGpio(Peripheral):
    """GPIO port: EN0 0x00 (+SET 0x04, CLR 0x08), OUTEN 0x0C.., EN1 0x68 (+0x6C, 0x70), EN2 0x74
    (+0x78, 0x7C). A pin is on alternate function 1 when its EN0, EN1 and EN2 bits are 0."""

    size = 0x1000
    GROUPS = {0x00: 0x00, 0x0C: 0x0C, 0x18: 0x18, 0x68: 0x68, 0x74: 0x74}  # reg -> base of SET/CLR trio

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.regs = {0x00: 0xFFFFFFFF, 0x0C: 0, 0x18: 0, 0x30: 0, 0x68: 0, 0x74: 0}
        self.clock_bit = int(self.params.get("clock_bit", 0))

    def _clock(self):
        if not self.peer("gcr").clock_on(self.clock_bit):
            self.fault(f"accessed with its clock off (GCR PCLKDIS0 bit {self.clock_bit})")

    def write(self, off, size, value):
        self._clock()
        for reg in self.GROUPS:
            if off == reg + 4:
                self.regs[reg] |= value
                return
            if off == reg + 8:
                self.regs[reg] &= ~value
                return
        super().write(off, size, value)

    def read(self, off, size):
        self._clock()
        return super().read(off, size)

    def is_af1(self, pin: int) -> bool:
        return not any((self.regs[r] >> pin) & 1 for r in (0x00, 0x68, 0x74))


class MaxUart(Peripheral):
    """UART (rev B): CTRL 0x00 (CHAR_SIZE 11:10, BCLKEN 15, BCLKRDY 19), STATUS 0x04 (RX_EM 4,
    TX_EM 6, TX_FULL 7, RX_LVL 11:8), INT_EN 0x08, INT_FL 0x0C (write 1 to clear), CLKDIV 0x10,
    OSR 0x14, FIFO 0x20. Baud = PCLK / CLKDIV with PCLK = SYSCLK / 2."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.regs = {0x00: 0, 0x04: 0, 0x08: 0, 0x0C: 0, 0x10: 0, 0x14: 0, 0x1C: 0, 0x20: 0}
        self.port = UartPort(self.m)
        self.baud = int(self.params.get("baud", 115200))
        self.clock_bit = int(self.params.get("clock_bit", 9))
        self.tx_pin = self.params.get("tx_pin")
        self.checked = False

    def _clock(self):
        if not self.peer("gcr").clock_on(self.clock_bit):
            self.fault(f"accessed with its clock off (GCR PCLKDIS0 bit {self.clock_bit})")

    def _check_line(self):
        if self.checked:
            return
        ctrl = self.regs[0x00]
        if not ctrl & (1 << 15):
            self.fault("byte written with the baud clock off (CTRL.BCLKEN)")
        if (ctrl >> 10) & 3 != 3:
            self.fault("character size is not 8 bits (CTRL.CHAR_SIZE)")
        div = self.regs[0x10]
        pclk = self.peer("gcr").sysclk() // 2
        if div == 0:
            self.fault("CLKDIV is 0")
        baud = pclk / div
        if abs(baud - self.baud) > BAUD_TOLERANCE * self.baud:
            self.fault(f"sends at {baud:.0f} baud (PCLK {pclk} Hz / CLKDIV {div}), the host expects {self.baud}")
        if self.tx_pin:
            gpio_name, pin = self.tx_pin
            if not self.peer(gpio_name).is_af1(int(pin)):
                self.fault(f"TX pin {gpio_name} {pin} is not on alternate function 1")
        self.checked = True

    def read(self, off, size):
        self._clock()
        if off == 0x00:
            v = self.regs[0x00]
            return v | (1 << 19) if v & (1 << 15) else v
        if off == 0x04:
            ready = self.port.rx_ready()
            return (1 << 6) | (0 if ready else 1 << 4) | ((min(len(self.port.rx), 8) if ready else 0) << 8)
        if off == 0x20:
            return self.port.rx_pop()
        return super().read(off, size)

    def write(self, off, size, value):
        self._clock()
        if off == 0x20:
            self._check_line()
            self.port.tx(value)
            return
        if off == 0x0C:
            self.regs[0x0C] &= ~value
            return
        super().write(off, size, value)


# ---------------------------------------------------------------------------- Cortex-M core
class ArmScs(Peripheral):
    """System control space: only VTOR (0xE000ED08), CPACR (0xE000ED88) and DEMCR (0xE000EDFC;
    TRCENA bit 24 powers the DWT) are modelled."""

    size = 0x1000

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.regs = {0xD08: 0, 0xD88: 0, 0xDFC: 0}  # VTOR, CPACR, DEMCR


class ArmDwt(Peripheral):
    """DWT: CTRL 0x00 (CYCCNTENA bit 0), CYCCNT 0x04. In the emulator CYCCNT counts retired
    instructions. Needs DEMCR.TRCENA, as on the part."""

    size = 0x1000

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.regs = {0x00: 0, 0x04: 0}
        self.start = 0

    def _trcena(self):
        if not (self.peer("scs").regs[0xDFC] >> 24) & 1:
            self.fault("DWT used without DEMCR.TRCENA")

    def _count(self) -> int:
        if not self.regs[0x00] & 1:
            return self.regs[0x04]
        return (self.regs[0x04] + self.m.instructions - self.start) & 0xFFFFFFFF

    def read(self, off, size):
        self._trcena()
        if off == 0x04:
            return self._count()
        return super().read(off, size)

    def write(self, off, size, value):
        self._trcena()
        if off in (0x00, 0x04):
            self.regs[0x04] = self._count()
            self.start = self.m.instructions
        super().write(off, size, value)


# ---------------------------------------------------------------------------- bench
class BenchMarker(Peripheral):
    """Exists only in the emulator, for ``bitgen bench``: firmware built with BG_BENCH_MARKER
    stores 0xFFFFFFFF here before each inference and the index of each layer as soon as its
    output (or a channel plane of it) is complete. The instructions retired since the previous
    store are added to that layer, so per-layer counts are exact (each store costs the
    firmware 2 to 3 instructions, counted in the layer)."""

    size = 4

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.last = 0
        self.layers: dict[int, int] = {}
        self.runs = 0

    def read(self, off, size):
        return self.unknown(off, False)

    def write(self, off, size, value):
        if off != 0:
            self.unknown(off, True)
            return
        now = self.m.instructions
        if value == 0xFFFFFFFF:
            self.runs += 1
        else:
            self.layers[value] = self.layers.get(value, 0) + now - self.last
        self.last = now

    def stats(self) -> dict[str, int]:
        out = {"bench_runs": self.runs}
        out.update({f"layer{i}": n for i, n in sorted(self.layers.items())})
        return out


MODELS: dict[str, type[Peripheral]] = {
    "bitgen.bench_marker": BenchMarker,
    "ch32v003.rcc": Ch32Rcc,
    "ch32v003.flash": Ch32Flash,
    "ch32v003.gpio": Ch32Gpio,
    "ch32v003.usart": Ch32Usart,
    "ch32v003.systick": Ch32SysTick,
    "max78000.gcr": MaxGcr,
    "max78000.gpio": MaxGpio,
    "max78000.uart": MaxUart,
    "armv7m.scs": ArmScs,
    "armv7m.dwt": ArmDwt,
}
# The CNN accelerator and its power control live in max78000_cnn.py, which adds them here.
