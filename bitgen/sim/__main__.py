"""python -m bitgen.sim BOARD IMAGE [--socket PORT]

Runs a firmware image on an emulated board (a board whose board.toml has an [emulator] of kind
"unicorn") and serves its UART on a pseudo-terminal, or on TCP with --socket. Prints
"PORT <path or socket:// URL>" on stdout once a host can connect; any pyserial program (bitgen
run --port, an EEMBC runner) can then drive it. The emulation ends when stdin closes (or on
Ctrl-C); a fault is written to the UART as e-[sim fault: ...] and to stderr as "FAULT ...".
"""
from __future__ import annotations

import argparse
import os
import select
import sys
import time
from pathlib import Path

from ..harness import boards
from ..errors import BitgenError
from . import wire as wires
from .machine import Machine, SimFault

FAULT_LINGER_S = 60.0  # after a fault, keep the port open this long for the host to read it


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bitgen.sim", description=__doc__.split("\n\n")[1])
    ap.add_argument("board")
    ap.add_argument("image", help="firmware image (.bin) as a flasher would write it")
    ap.add_argument("--socket", type=int, metavar="PORT", help="serve on TCP PORT (0: any) instead of a pty")
    ap.add_argument("--max-instructions", type=int, default=0, help="stop after N instructions (0: never)")
    ap.add_argument("--stack-bottom", type=lambda v: int(v, 0), metavar="ADDR",
                    help="lowest address the stack may use (the end of .bss): report its high-water mark")
    args = ap.parse_args(argv)
    try:
        board = boards.get(args.board)
        emu = board.emulator
        if not emu or emu.get("kind") != "unicorn":
            raise BitgenError(f"board {board.name} is not a Unicorn-emulated board")
        machine = Machine(emu, Path(args.image).read_bytes(), name=board.name)
    except (BitgenError, OSError) as e:
        print(f"FAULT {e}", file=sys.stderr, flush=True)
        return 3
    control = wires.stdin_fd()
    if args.socket is not None:
        srv, port = wires.open_socket(args.socket)
        print(f"PORT socket://127.0.0.1:{port}", flush=True)
        machine.uart = wires.accept(srv, control)
    else:
        machine.uart, path, _slave = wires.open_pty(control)  # _slave stays open: no EIO between clients
        print(f"PORT {path}", flush=True)
    status = 0
    try:
        machine.run(args.max_instructions)
    except SimFault as e:
        status = 3
        print(f"FAULT {e}", file=sys.stderr, flush=True)
        machine.uart.write(f"\r\ne-[sim fault: {e}]\r\nm-ready\r\n".encode("ascii", "replace"))
        _linger(control)
    except KeyboardInterrupt:
        status = 130
    stats = f"instructions={machine.instructions}"
    if args.stack_bottom is not None:
        stats += f" stack_peak={machine.stack_peak(args.stack_bottom)}"
    for dev in machine.peripherals:
        if hasattr(dev, "stats"):
            stats += "".join(f" {k}={v}" for k, v in dev.stats().items())
    print(f"STATS {stats}", file=sys.stderr, flush=True)
    return status


def _linger(control: int | None) -> None:
    deadline = time.monotonic() + FAULT_LINGER_S
    while control is not None and time.monotonic() < deadline:
        if select.select([control], [], [], 0.5)[0] and not os.read(control, 4096):
            return


if __name__ == "__main__":
    sys.exit(main())
