"""Run a firmware image built with the ``bench`` harness (templates/bench.c.j2) on a
Unicorn-emulated board, one input at a time, through memory instead of a serial port.

For each input the part starts from reset (start-up code, board init); when the CPU reaches
``main`` the input is written into ``bg_bench_input``; the run ends when the firmware stores
``bg_bench_done``. The firmware measures the model with the board's cycle counter (exact
retired instructions in the emulator); a ``bitgen.bench_marker`` peripheral, when the image was
built with layer marks, splits that count per layer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import unicorn as uc

from ..harness.boards import Board
from .machine import Machine, SimFault

MAX_INSTRUCTIONS = 500_000_000  # per input: a model that runs longer is stuck


@dataclass
class BenchRun:
    outputs: np.ndarray
    cls: int
    cycles: int
    layers: dict[int, int] = field(default_factory=dict)  # layer index -> instructions
    changed: list[int] = field(default_factory=list)  # pixels changed per change gate (streams)


def _symbols(firmware) -> dict[str, int]:
    sym = {n: firmware.symbol(n) for n in ("main", "bg_bench_input", "bg_bench_output", "bg_bench_class",
                                            "bg_bench_cycles", "bg_bench_done")}
    missing = [n for n, a in sym.items() if a is None]
    if missing:
        raise SimFault(f"{firmware.elf} is not a bench image (no {', '.join(missing)})")
    return sym


def _emulator(board: Board) -> dict:
    emu = board.emulator
    if not emu or emu.get("kind") != "unicorn":
        raise SimFault(f"board {board.name}: the bench harness needs a Unicorn-emulated board")
    return emu


def run_stream(board: Board, firmware, frames: np.ndarray, output_dtype: str, output_size: int,
               gates: int = 0, on_input=None, on_instruction=None) -> list[BenchRun]:
    """One BenchRun per frame of one sequence: the part starts from reset once (the model's
    reset starts the sequence), then runs the frames one after another, each measured on its
    own; `gates`: the model's change gates, whose changed-pixel counts each frame reports;
    `on_input()` after each frame (progress); `on_instruction` as for run()."""
    emu = _emulator(board)
    sym = _symbols(firmware)
    changed_at = firmware.symbol("bg_bench_changed") if gates else None
    np_out = np.int8 if output_dtype == "int8" else np.int32
    frames = np.asarray(frames, dtype=np.int8).reshape(len(frames), -1)
    m = Machine(emu, Path(firmware.image).read_bytes(), name=board.name)
    done: list[int] = []
    first = [True]

    def load_first(u, address, size, _user):
        if first[0]:
            u.mem_write(sym["bg_bench_input"], frames[0].tobytes())
            first[0] = False

    def finished(u, access, address, size, value, _user):
        # the firmware stores the number of frames done; stopping here leaves the store to run
        # again on resuming, with the count of the frame before, which is not a new frame
        if value == len(done) + 1:
            done.append(value)
            u.emu_stop()

    main = sym["main"] & ~1
    m.uc.hook_add(uc.UC_HOOK_CODE, load_first, begin=main, end=main)
    m.uc.hook_add(uc.UC_HOOK_MEM_WRITE, finished, begin=sym["bg_bench_done"], end=sym["bg_bench_done"] + 3)
    if on_instruction is not None:
        m.uc.hook_add(uc.UC_HOOK_CODE, lambda u, address, size, _user: on_instruction(address))
    marker = next((p for p in m.peripherals if hasattr(p, "layers")), None)
    runs = []
    for k in range(len(frames)):
        if k:
            m.uc.mem_write(sym["bg_bench_input"], frames[k].tobytes())
        m.run(MAX_INSTRUCTIONS, resume=k > 0)
        if len(done) != k + 1:
            raise SimFault(f"{board.name}: frame {k} did not finish within {MAX_INSTRUCTIONS} instructions")
        read = lambda name, n: bytes(m.uc.mem_read(sym[name], n))  # noqa: E731
        out = np.frombuffer(read("bg_bench_output", output_size * np.dtype(np_out).itemsize), dtype=np_out)
        counts = []
        if changed_at is not None:
            raw = bytes(m.uc.mem_read(changed_at, 4 * gates))
            counts = [int.from_bytes(raw[4 * g: 4 * g + 4], "little") for g in range(gates)]
        runs.append(BenchRun(outputs=out.copy(),
                             cls=int.from_bytes(read("bg_bench_class", 4), "little", signed=True),
                             cycles=int.from_bytes(read("bg_bench_cycles", 4), "little"),
                             layers=dict(marker.layers) if marker else {}, changed=counts))
        if marker:
            marker.layers.clear()
        if on_input is not None:
            on_input()
    return runs


def run(board: Board, firmware, inputs: np.ndarray, output_dtype: str, output_size: int,
        on_instruction=None, on_input=None) -> list[BenchRun]:
    """One BenchRun per input, each from reset. `on_instruction(address)`, if given, is called
    before every instruction the part executes (slow: a profile, not a benchmark); `on_input()`
    after each input (progress)."""
    emu = _emulator(board)
    image = Path(firmware.image).read_bytes()
    sym = _symbols(firmware)
    np_out = np.int8 if output_dtype == "int8" else np.int32
    runs = []
    for x in np.asarray(inputs, dtype=np.int8).reshape(len(inputs), -1):
        m = Machine(emu, image, name=board.name)
        done = []

        def load_input(u, address, size, _user, data=x.tobytes()):
            u.mem_write(sym["bg_bench_input"], data)

        def finished(u, access, address, size, value, _user):
            if value:  # not the start-up code zeroing .bss
                done.append(True)
                u.emu_stop()

        main = sym["main"] & ~1  # Thumb addresses carry bit 0
        m.uc.hook_add(uc.UC_HOOK_CODE, load_input, begin=main, end=main)
        m.uc.hook_add(uc.UC_HOOK_MEM_WRITE, finished, begin=sym["bg_bench_done"], end=sym["bg_bench_done"] + 3)
        if on_instruction is not None:
            m.uc.hook_add(uc.UC_HOOK_CODE, lambda _u, address, _size, _user: on_instruction(address))
        m.run(MAX_INSTRUCTIONS)
        if not done:
            raise SimFault(f"{board.name}: the bench image did not finish within {MAX_INSTRUCTIONS} instructions")
        read = lambda name, n: bytes(m.uc.mem_read(sym[name], n))  # noqa: E731
        out = np.frombuffer(read("bg_bench_output", output_size * np.dtype(np_out).itemsize), dtype=np_out)
        marker = next((p for p in m.peripherals if hasattr(p, "layers")), None)
        runs.append(BenchRun(
            outputs=out.copy(),
            cls=int.from_bytes(read("bg_bench_class", 4), "little", signed=True),
            cycles=int.from_bytes(read("bg_bench_cycles", 4), "little"),
            layers=dict(marker.layers) if marker else {},
        ))
        if on_input is not None:
            on_input()
    return runs
