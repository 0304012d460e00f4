"""The emulated boards: the CH32V003's memory map and rules are enforced, its cycle counter counts
retired instructions, and firmware runs end to end bit-exact against the golden model."""
from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from bitgen.harness import boards
from bitgen import golden, ir
from bitgen.harness.link import BoardFault, Link
from bitgen.harness.session import Session
from bitgen.sim import start
from bitgen.sim.machine import Machine, SimFault
from models_for_tests import every_kernel_model, mlp

RV = "riscv64-unknown-elf-"
needs_rv = pytest.mark.skipif(shutil.which(RV + "gcc") is None, reason="needs gcc-riscv64-unknown-elf")
needs_arm = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="needs gcc-arm-none-eabi")


def rv_image(tmp_path, asm: str, march: str = "rv32ec") -> bytes:
    """Assemble a bare RV32E program linked at 0x0 (where the CH32V003 boots)."""
    src = tmp_path / "t.S"
    src.write_text(".globl _start\n_start:\n" + asm + "\n")
    elf, binf = tmp_path / "t.elf", tmp_path / "t.bin"
    subprocess.run([RV + "gcc", f"-march={march}", "-mabi=ilp32e", "-nostdlib", "-Wl,-Ttext=0",
                    str(src), "-o", str(elf)], check=True, capture_output=True)
    subprocess.run([RV + "objcopy", "-O", "binary", str(elf), str(binf)], check=True)
    return binf.read_bytes()


class Wire:
    """In-process stand-in for the pty: what the firmware sends lands in .out."""

    def __init__(self, data: bytes = b""):
        self.inp, self.out = bytearray(data), bytearray()

    def read(self, wait):
        data = bytes(self.inp)
        self.inp.clear()
        return data

    def write(self, data):
        self.out += data


def ch32(image: bytes, wire=None) -> Machine:
    b = boards.get("ch32v003-sim")
    return Machine(b.emulator, image, name=b.name, uart=wire or Wire())


# ----------------------------------------------------------------- the memory map is enforced
@needs_rv
@pytest.mark.parametrize("asm, words", [
    ("li a0, 0x20000800\n lw a1, 0(a0)", ["load", "0x20000800", "past the end of sram"]),
    ("li a0, 0x200007fc\n sw a0, 4(a0)", ["store", "0x20000800", "past the end of sram"]),
    ("li a0, 0x08004000\n lw a1, 0(a0)", ["load", "0x08004000", "outside"]),
    ("li a0, 0x00000100\n sw a0, 0(a0)", ["store", "read-only", "0x00000100"]),
    ("li a0, 0x40013c00\n lw a1, 0(a0)", ["0x40013c00", "no modelled peripheral register"]),
    ("li a0, 0x30000000\n jr a0", ["fetch", "0x30000000"]),
])
def test_ch32v003_faults_outside_its_memory(tmp_path, asm, words):
    m = ch32(rv_image(tmp_path, asm + "\n1: j 1b"))
    with pytest.raises(SimFault) as e:
        m.run(max_instructions=1000)
    msg = str(e.value)
    for w in words:
        assert w in msg, msg


@needs_rv
def test_ch32v003_accepts_the_last_sram_word(tmp_path):
    m = ch32(rv_image(tmp_path, "li a0, 0x200007fc\n sw a0, 0(a0)\n lw a1, 0(a0)\n1: j 1b"))
    m.run(max_instructions=100)  # runs out of instructions, no fault
    assert m.instructions == 100


@needs_rv
def test_ch32v003_faults_on_mul(tmp_path):
    image = rv_image(tmp_path, "li a0, 6\n li a1, 7\n mul a2, a0, a1\n1: j 1b", march="rv32emc")
    m = ch32(image)
    with pytest.raises(SimFault, match=r"multiply/divide instruction 0x02b50633 at pc 0x00000004"):
        m.run(max_instructions=1000)
    assert m.instructions == 3  # stopped before the mul retired


@needs_rv
def test_systick_counts_retired_instructions(tmp_path):
    nops = 37
    asm = f"""
        li a0, 0x40021018
        li a1, 0
        li t0, 0xE000F000
        li t1, 5
        sw t1, 0(t0)       # STE | STCLK = HCLK
        lw a2, 8(t0)       # CNT
        {'nop;' * nops}
        lw a3, 8(t0)
        sub a4, a3, a2
    1:  j 1b"""
    m = ch32(rv_image(tmp_path, asm))
    m.run(max_instructions=200)
    from unicorn.riscv_const import UC_RISCV_REG_A4

    assert m.uc.reg_read(UC_RISCV_REG_A4) == nops + 1  # the nops and the second load


@needs_rv
def test_usart_used_with_its_clock_off_faults(tmp_path):
    m = ch32(rv_image(tmp_path, "li a0, 0x40013800\n li a1, 65\n sw a1, 4(a0)\n1: j 1b"))
    with pytest.raises(SimFault, match="clock off"):
        m.run(max_instructions=100)


@needs_rv
def test_usart_at_the_wrong_baud_rate_faults(tmp_path):
    asm = """
        li a0, 0x40021018
        li a1, 0x4020      # USART1 and GPIOD clocks
        sw a1, 0(a0)
        li a0, 0x40011400
        li a1, 0x00900000  # PD5 alternate-function push-pull
        sw a1, 0(a0)
        li a0, 0x40013800
        li a1, 208         # 24 MHz / 208 = 115384 baud: right at 24 MHz ...
        sw a1, 8(a0)
        li a1, 0x200C
        sw a1, 12(a0)
        li a1, 65
        sw a1, 4(a0)
    1:  j 1b"""
    wire = Wire()
    ch32(rv_image(tmp_path, asm), wire).run(max_instructions=100)
    assert wire.out == b"A"
    wrong = asm.replace("li a1, 208 ", "li a1, 417 ")  # ... and half speed: the BRR for 48 MHz
    with pytest.raises(SimFault, match="57554 baud"):
        ch32(rv_image(tmp_path, wrong)).run(max_instructions=100)


# ------------------------------------------------------------------- firmware end to end
def _check(session, model, x):
    expect = golden.run(model, x)
    for i in range(len(x)):
        r = session.link.classify(x[i])
        assert np.array_equal(r.outputs.reshape(expect[i].shape), expect[i]), i
        assert r.cls == golden.argmax(expect[i : i + 1])[0]
        assert r.cycles > 0


@needs_rv
def test_ch32v003_sim_matches_golden(tmp_path):
    model = mlp(seed=3, widths=(256, 64, 64, 10))
    x = np.random.default_rng(0).integers(-128, 128, (12, 256)).astype(np.int8)
    x[0] = -128
    x[1] = 127
    with Session(boards.get("ch32v003-sim"), model, workdir=str(tmp_path)) as s:
        assert s.info.board == "ch32v003" and s.info.flash_bytes <= 16384 and s.info.sram_bytes <= 2048
        _check(s, model, x)
        assert not s.link.events
    stats = s.emulation.stats
    assert stats["instructions"] > 0
    assert 0 < stats["stack_peak"] <= boards.get("ch32v003").stack_bytes  # the reserve holds


@needs_rv
def test_ch32v003_sim_computes_what_the_c_computes_for_every_kernel(tmp_path):
    """Every kernel through the firmware path: the emulated MCU gives exactly the outputs of the
    same emitted C compiled for this computer (whether that C equals golden is the host check's
    job, bitgen check)."""
    from bitgen.backends.c import emit, host

    model = every_kernel_model(seed=1)
    x = np.random.default_rng(1).integers(-128, 128, (6,) + model.input.shape).astype(np.int8)
    board = boards.get("ch32v003-sim")
    hm = host.build(emit.emit(model, tmp_path / "host", name="model", kernels=board.kernels[0]))
    expect, expect_cls, _ = hm.run(x)
    with Session(board, model, workdir=str(tmp_path / "fw")) as s:
        for i in range(len(x)):
            r = s.link.classify(x[i])
            assert np.array_equal(r.outputs, expect[i]) and r.cls == expect_cls[i], i


@needs_rv
def test_firmware_built_with_a_multiplier_faults_on_the_sim(tmp_path):
    """The same firmware compiled for RV32EM: the emulated CH32V003 stops at its first mul or div
    (in the model's kernels: the protocol divides without one) and the host is told why."""
    model = mlp(seed=2, widths=(16, 8))
    x = np.random.default_rng(2).integers(-128, 128, model.input.shape).astype(np.int8)
    with pytest.raises(BoardFault, match="multiply/divide instruction"):
        with Session(boards.get("ch32v003-sim"), model, workdir=str(tmp_path), retries=0, boot_timeout=5,
                     extra_cflags=["-march=rv32emc", "-mabi=ilp32e"]) as s:
            s.link.classify(x)


@needs_arm
def test_max78000_sim_matches_golden(tmp_path):
    model = mlp(seed=4, widths=(64, 32, 10))
    x = np.random.default_rng(4).integers(-128, 128, (5,) + model.input.shape).astype(np.int8)
    with Session(boards.get("max78000-sim"), model, workdir=str(tmp_path)) as s:
        assert s.info.board == "max78000" and s.info.counter == "dwt"
        _check(s, model, x)


@needs_rv
def test_sim_serves_a_socket_for_any_pyserial_host(tmp_path):
    from bitgen.harness import firmware

    model = mlp(seed=5, widths=(16, 8, 4))
    fw = firmware.build(model, boards.get("ch32v003"), tmp_path, name="model")
    with start(boards.get("ch32v003-sim"), fw, socket_port=0) as em:
        assert em.url.startswith("socket://127.0.0.1:")
        with Link.open(em.url) as link:
            link.sync(timeout=10)
            assert link.command("name") == ["m-name-dut-[bitgen ch32v003]"]
            x = np.arange(16, dtype=np.int8)
            assert np.array_equal(link.classify(x).outputs, golden.run(model, x[None])[0])


def test_sim_refuses_an_image_larger_than_flash():
    with pytest.raises(SimFault, match="does not fit"):
        ch32(b"\0" * 16385)


def test_sim_cli_reports_a_bad_board(tmp_path):
    r = subprocess.run([sys.executable, "-m", "bitgen.sim", "ch32v003", str(tmp_path / "x.bin")],
                       capture_output=True, text=True)
    assert r.returncode == 3 and "not a Unicorn-emulated board" in r.stderr


@needs_rv
def test_static_norm_usps_mlp_on_ch32v003_sim(tmp_path):
    """The trained USPS MLP's shape and requantization (per-channel multipliers, products of up
    to 2^33 formed exactly in 32 bits): bit-exact on the emulated part, fast kernels fitting."""
    from test_build import static_norm_mlp

    model = static_norm_mlp(seed=1)
    x = np.random.default_rng(2).integers(-128, 128, (3, 256)).astype(np.int8)
    with Session(boards.get("ch32v003-sim"), model, workdir=str(tmp_path)) as s:
        assert s.firmware.report["kernels"] == "rv32ec" and s.firmware.report["fits"]
        _check(s, model, x)


@needs_rv
def test_64bit_requantization_through_libgcc_on_ch32v003_sim(tmp_path):
    """A requantization only 64-bit products can do (shift 0, products past 2^32): libgcc's
    64-bit helpers for RV32EC, bit-exact on the emulated part."""
    rng = np.random.default_rng(3)
    model = ir.Model(ir.InputSpec((64,)), [
        ir.Linear(weight=rng.integers(-128, 128, (4, 64)), encoding="8bit"),
        ir.Requant(multiplier=[3, 40000, 65535, 7], shift=[0, 24, 31, 1], rounding="half_up", out_dtype="int32"),
    ])
    x = np.concatenate([np.full((1, 64), 127), np.full((1, 64), -128),
                        rng.integers(-128, 128, (2, 64))]).astype(np.int8)
    with Session(boards.get("ch32v003-sim"), model, workdir=str(tmp_path)) as s:
        assert "bg_requant_to_s32" in (s.firmware.outdir / "src" / "model.c").read_text()
        _check(s, model, x)
