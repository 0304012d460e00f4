"""Host side of the wire protocol (c_runtime/bg_protocol.h), over pyserial.

:class:`Link` speaks the MLPerf Tiny / EEMBC commands plus bitgen's extensions, and never
accepts a result it cannot prove: every input is sent with its CRC-32 (``db load N CRC``, which
the board checks before it computes), every results block carries a CRC-32 over the input and
the block's own bytes, and every reply must have exactly the lines the command calls for, in
order, ending with ``m-ready``.

When an exchange fails (no reply in time, a damaged or unexpected reply, an ``e-[...]`` error)
:meth:`Link.classify` resynchronises without resetting the board (a lone ``%`` ends whatever
partial command the board holds, then ``bg-sync TOKEN`` is answered with that token once
everything older has been discarded) and tries again, up to ``retries`` times; each recovery is
recorded in ``events``. A board that reports a CPU fault, or does not answer a resync, ends the
run with an error that says so. Every wait has a deadline.
"""
from __future__ import annotations

import math
import itertools
import re
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import BitgenError

READY = "m-ready"
DB_CHUNK = 32  # bytes per db line: "db " + 64 hex digits fits the 80-character command limit


class LinkError(BitgenError):
    """The exchange with the board failed."""


class LinkTimeout(LinkError):
    pass


class LinkCorrupt(LinkError):
    pass


class DeviceError(LinkError):
    """The board answered e-[...]."""


class BoardFault(LinkError):
    """The board (or its emulator) reported a CPU fault: it will not answer again."""


class IdentityError(LinkError):
    """The board runs another model, or one shaped differently."""


@dataclass
class BoardInfo:
    model: str
    hash: str
    input_dtype: str
    input_shape: tuple[int, ...]
    output_dtype: str
    output_shape: tuple[int, ...]
    board: str
    counter: str
    proto: int
    clock_hz: int
    flash_bytes: int
    sram_bytes: int

    @property
    def input_size(self) -> int:
        return math.prod(self.input_shape)

    @property
    def output_size(self) -> int:
        return math.prod(self.output_shape)


@dataclass
class Inference:
    outputs: np.ndarray
    cls: int
    cycles: int
    lap_us: tuple[int, int]
    attempts: int = 1


@dataclass
class Link:
    port: Any  # a pyserial port (or anything with read/write/reset_input_buffer/close)
    timeout: float = 3.0  # per command
    infer_timeout: float = 60.0  # per inference
    retries: int = 3
    log: Any = None  # callable(str) for a wire trace
    events: list[str] = field(default_factory=list)
    _buf: bytearray = field(default_factory=bytearray)
    _tokens: Any = field(default_factory=lambda: itertools.count(int(time.time()) % 100000))
    info_: BoardInfo | None = None

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, url: str, baud: int = 115200, connect_timeout: float = 10.0, **kw: Any) -> "Link":
        """Open a serial port (a device path, or a pyserial URL such as socket://host:port)."""
        import serial

        deadline = time.monotonic() + connect_timeout
        while True:
            try:
                port = serial.serial_for_url(url, baudrate=baud, timeout=0.05, write_timeout=5)
                break
            except (serial.SerialException, OSError) as e:
                if time.monotonic() > deadline:
                    raise LinkError(f"cannot open {url}: {e}") from None
                time.sleep(0.1)
        return cls(port, **kw)

    def close(self) -> None:
        try:
            self.port.close()
        except Exception:  # closing a dead port must not hide the real error
            pass

    def __enter__(self) -> "Link":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -------------------------------------------------------------- line level
    def _write(self, text: str) -> None:
        if self.log:
            self.log(f"> {text}")
        try:
            self.port.write(text.encode("ascii"))
            self.port.flush()
        except Exception as e:  # pyserial raises several types for a vanished port
            raise LinkError(f"writing to the board failed: {e}") from None

    def _read_line(self, deadline: float) -> str:
        while True:
            i = self._buf.find(b"\n")
            if i >= 0:
                raw = bytes(self._buf[:i]).rstrip(b"\r")
                del self._buf[: i + 1]
                text = raw.decode("ascii", errors="replace")
                if self.log:
                    self.log(f"< {text}")
                return text
            if time.monotonic() > deadline:
                raise LinkTimeout("the board stopped answering")
            try:
                chunk = self.port.read(1)  # waits up to the port timeout for a first byte
                if chunk:
                    chunk += self.port.read(self.port.in_waiting)
            except Exception as e:
                raise LinkError(f"reading from the board failed: {e}") from None
            if chunk:
                self._buf += chunk
                if len(self._buf) > 65536:  # a line that never ends is noise, not a reply
                    self._buf.clear()
                    raise LinkCorrupt("64 KB without a line end")

    def command(self, cmd: str, timeout: float | None = None) -> list[str]:
        """Send ``cmd%`` and return the m- lines of the reply (without m-ready)."""
        self._write(cmd + "%")
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        lines: list[str] = []
        while True:
            try:
                line = self._read_line(deadline)
            except LinkTimeout:
                raise LinkTimeout(f"no complete reply to '{_short(cmd)}' within "
                                  f"{self.timeout if timeout is None else timeout:g} s") from None
            if line == READY:
                break
            lines.append(line)
        errors = [ln for ln in lines if ln.startswith("e-")]
        for ln in errors:
            if ln.startswith(("e-[fault", "e-[sim fault")):
                raise BoardFault(f"the board faulted: {ln[3:].rstrip(']')}")
        if errors:
            raise DeviceError(f"board refused '{_short(cmd)}': {errors[0][3:].rstrip(']')}")
        for ln in lines:
            if not ln.startswith("m-") or "\ufffd" in ln:
                raise LinkCorrupt(f"damaged reply to '{_short(cmd)}': {ln!r}")
            if ln == "m-init-done":
                raise LinkCorrupt(f"the board restarted during '{_short(cmd)}'")
        return lines

    def sync(self, timeout: float | None = None) -> None:
        """Resynchronise: end any partial command, discard everything older, and confirm with a
        fresh token that replies belong to commands again.

        The lone '%' is answered (m-ready) before the token is sent: a part without a UART FIFO
        (CH32V003) loses bytes that arrive while it is still transmitting."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            self._drain()
            self._write("%")
            self._wait_for(READY, min(deadline, time.monotonic() + 0.5))
            token = f"s{next(self._tokens)}"
            self._write(f"bg-sync {token}%")
            if self._wait_for(f"m-bg-sync-[{token}]", deadline) and self._wait_for(READY, deadline):
                return
            if time.monotonic() >= deadline:
                raise LinkTimeout(f"the board does not answer (no reply to bg-sync within {timeout:g} s): "
                                  "check the port, the wiring and that the board runs bitgen firmware")

    def _wait_for(self, want: str, deadline: float) -> bool:
        """Read lines until ``want`` (True) or the deadline (False); a fault report raises."""
        try:
            while True:
                line = self._read_line(deadline)
                if line.startswith(("e-[fault", "e-[sim fault")):
                    raise BoardFault(f"the board faulted: {line[3:].rstrip(']')}")
                if line == want:
                    return True
        except LinkTimeout:
            return False

    def _drain(self) -> None:
        """Drop everything received so far, except that a fault report is raised."""
        try:
            while True:
                n = self.port.in_waiting
                if not n:
                    break
                self._buf += self.port.read(n)
        except Exception as e:
            raise LinkError(f"reading from the board failed: {e}") from None
        for raw in bytes(self._buf).split(b"\n"):
            line = raw.strip(b"\r").decode("ascii", errors="replace")
            if line.startswith(("e-[fault", "e-[sim fault")):
                self._buf.clear()
                raise BoardFault(f"the board faulted: {line[3:].rstrip(']')}")
        self._buf.clear()

    # ----------------------------------------------------------------- commands
    def info(self) -> BoardInfo:
        lines = self.command("bg-info")
        kv: dict[str, str] = {}
        for ln in lines:
            m = re.fullmatch(r"m-bg-([a-z]+)-\[(.*)\]", ln)
            if not m:
                raise LinkCorrupt(f"unexpected bg-info line {ln!r}")
            kv[m.group(1)] = m.group(2)
        try:
            in_dtype, in_shape = kv["input"].split()
            out_dtype, out_shape = kv["output"].split()
            info = BoardInfo(
                model=kv["model"], hash=kv["hash"], input_dtype=in_dtype,
                input_shape=tuple(int(v) for v in in_shape.split("x")),
                output_dtype=out_dtype, output_shape=tuple(int(v) for v in out_shape.split("x")),
                board=kv["board"], counter=kv["counter"], proto=int(kv["proto"]),
                clock_hz=int(kv["clock"]), flash_bytes=int(kv["flash"]), sram_bytes=int(kv["sram"]),
            )
        except (KeyError, ValueError) as e:
            raise LinkCorrupt(f"bg-info reply incomplete or malformed ({e}): {lines}") from None
        if not re.fullmatch(r"[0-9a-f]{64}", info.hash) or out_dtype not in ("int8", "int32"):
            raise LinkCorrupt(f"bg-info reply malformed: {lines}")
        self.info_ = info
        return info

    def load(self, x: bytes) -> int:
        """Send one input; returns its CRC-32."""
        crc = zlib.crc32(x)
        lines = self.command(f"db load {len(x)} {crc:08x}")
        if lines != [f"m-[Expecting {len(x)} bytes]"]:
            raise LinkCorrupt(f"unexpected reply to db load: {lines}")
        for i in range(0, len(x), DB_CHUNK):
            last = i + DB_CHUNK >= len(x)
            lines = self.command("db " + x[i : i + DB_CHUNK].hex())
            if lines != (["m-load-done"] if last else []):
                raise LinkCorrupt(f"unexpected reply to db data: {lines}")
        return crc

    def infer(self, crc: int, n: int = 1, warmup: int = 0) -> Inference:
        info = self.info_ or self.info()
        lines = self.command(f"infer {n} {warmup}", timeout=self.infer_timeout)
        pat = [rf"m-warmup-start-{warmup}", "m-warmup-done", rf"m-infer-start-{n}", r"m-lap-us-(\d+)",
               r"m-lap-us-(\d+)", "m-infer-done", r"m-results-\[(-?\d+(?:,-?\d+)*)\]",
               r"m-bg-class-\[(\d+)\]", r"m-bg-cycles-\[(\d+)\]", r"m-bg-crc-\[([0-9a-f]{8})\]"]
        if len(lines) != len(pat):
            raise LinkCorrupt(f"infer reply has {len(lines)} lines, expected {len(pat)}: {lines}")
        groups = []
        for ln, p in zip(lines, pat):
            m = re.fullmatch(p, ln)
            if not m:
                raise LinkCorrupt(f"unexpected line {ln!r} in the infer reply")
            groups.append(m.groups())
        block = "".join(ln + "\r\n" for ln in lines[6:9]).encode("ascii")
        if zlib.crc32(block, crc) != int(groups[9][0], 16):
            raise LinkCorrupt("results failed their CRC (damaged on the wire, or for another input)")
        values = np.array([int(v) for v in groups[6][0].split(",")], dtype=np.int64)
        if values.size != info.output_size:
            raise LinkCorrupt(f"{values.size} results, the model has {info.output_size} outputs")
        lo, hi = (-128, 127) if info.output_dtype == "int8" else (-(2**31), 2**31 - 1)
        if values.min() < lo or values.max() > hi:
            raise LinkCorrupt(f"results outside {info.output_dtype}")
        return Inference(
            outputs=values.astype(np.int8 if info.output_dtype == "int8" else np.int32),
            cls=int(groups[7][0]), cycles=int(groups[8][0]),
            lap_us=(int(groups[3][0]), int(groups[4][0])),
        )

    def classify(self, x: np.ndarray | bytes) -> Inference:
        """Send one input and run it once; retries with resynchronisation on any failure that
        leaves the board alive. Raises LinkError once retries are exhausted."""
        data = x if isinstance(x, (bytes, bytearray)) else np.ascontiguousarray(x, dtype=np.int8).tobytes()
        last: LinkError | None = None
        for attempt in range(1, self.retries + 2):
            try:
                if attempt > 1:
                    self.sync()
                crc = self.load(bytes(data))
                res = self.infer(crc)
                res.attempts = attempt
                return res
            except (BoardFault, IdentityError):
                raise
            except LinkError as e:
                last = e
                self.events.append(str(e))
        raise LinkError(f"no valid result after {self.retries + 1} attempts; last error: {last}")

    def reset(self) -> None:
        """Start a new sequence: a model with state goes back to its initial state."""
        lines = self.command("bg-reset")
        if lines != ["m-bg-reset-done"]:
            raise LinkCorrupt(f"unexpected reply to bg-reset: {lines[:2]}")

    def check_identity(self, model_hash: str, input_size: int, output_size: int) -> BoardInfo:
        info = self.info_ or self.info()
        if info.hash != model_hash:
            raise IdentityError(
                f"the board runs model '{info.model}' {info.hash[:16]}, the given model is "
                f"{model_hash[:16]}: build and flash this model first")
        if info.input_size != input_size or info.output_size != output_size:
            raise IdentityError(f"the board's model takes {info.input_size} inputs and gives "
                                f"{info.output_size} outputs, expected {input_size} and {output_size}")
        return info


def _short(cmd: str, n: int = 24) -> str:
    return cmd if len(cmd) <= n else cmd[: n - 3] + "..."
