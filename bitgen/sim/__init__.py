"""Emulated boards, reached through a serial port like real ones.

:func:`start` runs a built firmware on the emulator its board names and returns an
:class:`Emulation` whose ``url`` pyserial opens (a pty path or ``socket://host:port``):

* ``unicorn``: the image a flasher would write, on Unicorn with the part's memory map and
  peripheral models (``ch32v003-sim``, ``max78000-sim``; see :mod:`bitgen.sim.machine`), in a
  child process (``python -m bitgen.sim``);
* ``qemu``: a QEMU machine from the board's command line (``mps2-an386``), UART on a socket;
* ``native``: the firmware compiled for this computer (``host``), on a pty.
"""
from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

from ..harness.boards import Board
from ..errors import BitgenError
from .machine import SimFault

__all__ = ["Emulation", "EmulatorError", "SimFault", "start"]


class EmulatorError(BitgenError):
    pass


@dataclass
class Emulation:
    board: Board
    url: str
    proc: subprocess.Popen
    fds: list[int] = field(default_factory=list)
    terminate: bool = False  # stop it with SIGTERM (QEMU does not watch its stdin)
    _stderr: str = ""

    def failure(self) -> str | None:
        """The emulator's account of a fault (it keeps running a while after one, so that the
        host can read the fault from the UART), or why it exited; None while all is well."""
        self._collect()
        faults = [ln[6:] for ln in self._stderr.splitlines() if ln.startswith("FAULT ")]
        if faults:
            return faults[-1]
        if self.proc.poll() is None:
            return None
        return f"emulator exited with status {self.proc.returncode}: {self._stderr.strip()[-300:]}"

    def _collect(self) -> None:
        """Take what the emulator wrote to stderr so far, without waiting."""
        err = self.proc.stderr
        if not err or err.closed:
            return
        fd = err.fileno()
        os.set_blocking(fd, False)
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                return
            if not chunk:
                return
            self._stderr += chunk.decode(errors="replace")

    @property
    def stats(self) -> dict[str, int]:
        out = {}
        for ln in self._stderr.splitlines():
            if ln.startswith("STATS "):
                for kv in ln[6:].split():
                    k, _, v = kv.partition("=")
                    out[k] = int(v)
        return out

    def close(self) -> None:
        try:
            if self.proc.stdin:
                self.proc.stdin.close()  # the emulator's signal to stop
        except OSError:
            pass
        for fd in self.fds:  # the native firmware stops when its pty goes away
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds.clear()
        if self.terminate and self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._collect()

    def __enter__(self) -> "Emulation":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _first_line(proc: subprocess.Popen, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    buf = b""
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.poll() is not None else ""
            proc.kill()
            faults = [ln[6:] for ln in err.splitlines() if ln.startswith("FAULT ")]
            raise EmulatorError(faults[-1] if faults else f"emulator did not start: {err.strip()[-300:]}")
        if select.select([proc.stdout], [], [], left)[0]:
            chunk = os.read(proc.stdout.fileno(), 256)
            if not chunk:
                continue
            buf += chunk
    return buf.split(b"\n")[0].decode()


def start(board: Board, firmware, *, socket_port: int | None = None, timeout: float = 20.0,
          stack_bottom: int | None = None) -> Emulation:
    """Run ``firmware`` (a bitgen.harness.firmware.Firmware) on ``board``'s emulator. With ``stack_bottom``
    (the end of .bss) a Unicorn emulator reports the stack's high-water mark in ``stats``."""
    emu = board.emulator
    if not emu:
        raise EmulatorError(f"board {board.name} is real hardware: give --port")
    kind = emu.get("kind")
    if kind == "unicorn":
        cmd = [sys.executable, "-m", "bitgen.sim", board.name, str(firmware.image)]
        if socket_port is not None:
            cmd += ["--socket", str(socket_port)]
        if stack_bottom is not None:
            cmd += ["--stack-bottom", hex(stack_bottom)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = _first_line(proc, timeout)
        if not line.startswith("PORT "):
            proc.kill()
            raise EmulatorError(f"emulator said {line!r}")
        return Emulation(board, line[5:], proc)
    if kind == "qemu":
        exe = emu["command"][0]
        if shutil.which(exe) is None:
            pkg = emu.get("package", "qemu-system-arm")
            raise EmulatorError(f"board {board.name} needs '{exe}' (Debian: apt-get install {pkg})")
        port = socket_port or _free_port()
        cmd = [a.format(elf=firmware.elf, bin=firmware.image, port=port) for a in emu["command"]]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return Emulation(board, f"socket://127.0.0.1:{port}", proc, terminate=True)
    if kind == "native":
        import tty

        master, slave = os.openpty()
        tty.setraw(slave)
        proc = subprocess.Popen([str(firmware.elf)], stdin=master, stdout=master, stderr=subprocess.PIPE,
                                close_fds=True)
        os.close(master)
        return Emulation(board, os.ttyname(slave), proc, fds=[slave])
    raise EmulatorError(f"board {board.name}: unknown emulator kind '{kind}'")
