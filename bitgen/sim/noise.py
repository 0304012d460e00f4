"""python -m bitgen.sim.noise PORT [--flip P] [--seed S]

A noisy serial line for testing a host against a board: it opens PORT (the pseudo-terminal of an
emulated board, from ``python -m bitgen.sim``, or any serial device), makes a new
pseudo-terminal for the host and copies bytes between the two, flipping one random bit of each
byte with probability P, in both directions, from a seeded generator (the same seed, the same
damage to the same byte stream). Prints "PORT <path>" once the host can connect, and counts
what it did on stderr ("FLIPPED to_board=N from_board=M bytes=...") when it ends (stdin closed
or Ctrl-C).

    python -m bitgen.sim ch32v003-sim build/ch32v003/firmware.bin          # PORT /dev/pts/3
    python -m bitgen.sim.noise /dev/pts/3 --flip 0.002                    # PORT /dev/pts/5
    bitgen run --board ch32v003 --port /dev/pts/5 model.pt --random 500

:class:`NoisyLine` does the same in a thread, for tests.
"""
from __future__ import annotations

import argparse
import os
import select
import sys
import threading
import tty

import numpy as np


class NoisyLine:
    """Relays bytes between the serial port at ``path`` and a new pseudo-terminal
    (``self.port``), flipping one random bit of a byte with probability ``flip``."""

    def __init__(self, path: str, flip: float, seed: int = 0):
        if not 0 <= flip <= 1:
            raise ValueError("flip must be a probability in 0..1")
        self.flip = flip
        self.rng = np.random.default_rng(seed)
        self.board = os.open(path, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.board)
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.port = os.ttyname(self._slave)
        self.counts = {"to_board": 0, "from_board": 0, "bytes": 0}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _damage(self, data: bytes, way: str) -> bytes:
        hit = self.rng.random(len(data)) < self.flip
        self.counts["bytes"] += len(data)
        if not hit.any():
            return data
        out = np.frombuffer(data, dtype=np.uint8).copy()
        bits = self.rng.integers(0, 8, int(hit.sum()))
        out[hit] ^= (1 << bits).astype(np.uint8)
        self.counts[way] += int(hit.sum())
        return out.tobytes()

    def pump(self, timeout: float = 0.05) -> None:
        """Move whatever is waiting, once."""
        ready, _, _ = select.select([self.board, self.master], [], [], timeout)
        for fd in ready:
            try:
                data = os.read(fd, 4096)
            except OSError:  # no one on the host side yet (EIO), or the board went away
                continue
            if fd == self.board:
                _write_all(self.master, self._damage(data, "from_board"))
            else:
                _write_all(self.board, self._damage(data, "to_board"))

    def start(self) -> "NoisyLine":
        def loop() -> None:
            while not self._stop.is_set():
                self.pump()

        self._thread = threading.Thread(target=loop, daemon=True, name="noisy-line")
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)
        for fd in (self.board, self.master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> "NoisyLine":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [], 0.2)
            continue
        except OSError:  # the other side is gone: the bytes are lost, as on a cut line
            return
        view = view[n:]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bitgen.sim.noise", description=__doc__.split("\n\n")[1])
    ap.add_argument("port", help="the board's serial port (a pty path)")
    ap.add_argument("--flip", type=float, default=0.002, help="probability that a byte has one bit flipped")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    line = NoisyLine(args.port, args.flip, args.seed)
    print(f"PORT {line.port}", flush=True)
    try:
        stdin = sys.stdin.fileno()
        while True:
            line.pump()
            if select.select([stdin], [], [], 0)[0] and not os.read(stdin, 4096):
                break
    except KeyboardInterrupt:
        pass
    finally:
        c = line.counts
        print(f"FLIPPED to_board={c['to_board']} from_board={c['from_board']} bytes={c['bytes']}",
              file=sys.stderr, flush=True)
        line.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
