"""Host side of the wire protocol (c_runtime/bg_protocol.h), over pyserial.

:class:`Link` speaks the MLPerf Tiny / EEMBC commands plus bitgen's extensions, and never
accepts a result it cannot prove: every input is sent with its CRC-32 (``db load N CRC``, which
the board checks before it computes), every results block carries a CRC-32 over the input and
the block's own bytes, and every reply must have exactly the lines the command calls for, in
order, ending with ``m-ready``.

When an exchange fails (no reply in time, a damaged or unexpected reply, an ``e-[...]`` error)
the link resynchronises without resetting the board (a lone ``%`` ends whatever partial command
the board holds, then ``bg-sync TOKEN`` is answered with that token once everything older has
been discarded, each try bounded, until the deadline) and repeats the smallest exchange that
can be repeated safely:

* an input goes in lines ``db @OFFSET HEX`` that carry their own CRC-32; the board takes nothing
  of a damaged line and keeps the bytes it already has, so one line is sent again, never the
  whole input (and a line sent twice, because its reply was lost, does no harm);
* a damaged infer reply is followed by ``results``: the board sends the block of its last
  inference again, bound by its CRC to the input it was computed on, so a block that belongs
  to another input is refused (for models without state only: a state advances per inference);
* ``bg-info`` carries a CRC of its lines and is asked again when the reply was damaged.

Cheap repeats (a line, ``results``, ``bg-info``) are tried up to ``4 * (retries + 1)`` times;
whole attempts at an input (load and infer) ``retries + 1`` times, each recovery recorded in
``events``. A board that reports a CPU fault, or does not answer a resync, ends the run with an
error that says so. Every wait has a deadline.
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
# bytes per db @ line: "db @OFFSET " and 2 * (28 + 4) hex digits (the bytes and their CRC) fit the
# 80-character command limit for inputs up to 10 MB
DB_CHUNK = 28
SYNC_TRY_S = 1.0  # one try of a resync waits this long at most for its token


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


class BoardSilent(LinkError):
    """The board did not answer a resync at all: it is gone (unplugged, stopped, another program)."""


class InputLost(LinkError):
    """The board no longer holds the input being loaded: it must be loaded again from the start."""


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
    changed: tuple[int, ...] | None = None  # pixels changed per change gate (change-based models)


@dataclass
class Link:
    port: Any  # a pyserial port (or anything with read/write/reset_input_buffer/close)
    timeout: float = 3.0  # per command
    infer_timeout: float = 60.0  # per inference
    retries: int = 3
    log: Any = None  # callable(str) for a wire trace
    # the image streams its output (a tiled step, c_runtime/bg_protocol.h): a results block
    # asked again computes the model again, so it may take as long as an inference
    streams: bool = False
    events: list[str] = field(default_factory=list)
    _buf: bytearray = field(default_factory=bytearray)
    _last_raw: bytes = b""
    _received: int = 0  # bytes read from the board so far
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
                raw = bytes(self._buf[:i])
                raw = raw[:-1] if raw.endswith(b"\r") else raw
                self._last_raw = raw
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
                self._received += len(chunk)
                self._buf += chunk
                if len(self._buf) > 65536:  # a line that never ends is noise, not a reply
                    self._buf.clear()
                    raise LinkCorrupt("64 KB without a line end")

    def command(self, cmd: str, timeout: float | None = None, slow_after: tuple[str, ...] = ()) -> list[str]:
        """Send ``cmd%`` and return the m- lines of the reply (without m-ready). Each line must
        come within ``timeout`` of the one before, except after a line that holds one of
        ``slow_after`` (the board computes then): within ``infer_timeout``."""
        self._write(cmd + "%")
        timeout = self.timeout if timeout is None else timeout
        wait = timeout
        lines: list[str] = []
        while True:
            try:
                line = self._read_line(time.monotonic() + wait)
            except LinkTimeout:
                raise LinkTimeout(f"no complete reply to '{_short(cmd)}' (nothing for {wait:g} s)") from None
            if line == READY:
                break
            if _damaged_ready(self._last_raw):  # the reply ended, damaged: no need to wait for the deadline
                raise LinkCorrupt(f"damaged reply to '{_short(cmd)}' (its m-ready)")
            lines.append(line)
            wait = self.infer_timeout if any(w in line for w in slow_after) else timeout
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
        (CH32V003) loses bytes that arrive while it is still transmitting. Each try waits at most
        SYNC_TRY_S for its token, and there are at least three tries. A board that sent nothing
        at all meanwhile is gone (BoardSilent); one that answered, never cleanly, is a
        LinkTimeout (a line too noisy for now)."""
        timeout = max(self.timeout if timeout is None else timeout, 3 * SYNC_TRY_S)
        deadline = time.monotonic() + timeout
        heard = self._received
        while True:
            self._drain()
            self._write("%")
            self._wait_for(READY, min(deadline, time.monotonic() + 0.5))
            token = f"s{next(self._tokens)}"
            self._write(f"bg-sync {token}%")
            # each try is bounded: a token damaged on the wire costs one try, not the whole deadline
            try_end = min(deadline, time.monotonic() + SYNC_TRY_S)
            if self._wait_for(f"m-bg-sync-[{token}]", try_end) and self._wait_for(READY, try_end):
                return
            if time.monotonic() >= deadline:
                if self._received == heard:
                    raise BoardSilent(f"the board does not answer (no reply to bg-sync within {timeout:g} s): "
                                      "check the port, the wiring and that the board runs bitgen firmware")
                raise LinkTimeout(f"the board answers, but no reply to bg-sync came intact within {timeout:g} s: "
                                  "the line is too noisy (check the wiring, the ground and the baud rate)")

    def _wait_for(self, want: str, deadline: float) -> bool:
        """Read lines until ``want`` (True) or the deadline (False); a fault report raises."""
        try:
            while True:
                line = self._read_line(deadline)
                if line.startswith(("e-[fault", "e-[sim fault")):
                    raise BoardFault(f"the board faulted: {line[3:].rstrip(']')}")
                if line == want or (want == READY and _damaged_ready(self._last_raw)):
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
                chunk = self.port.read(n)
                self._received += len(chunk)
                self._buf += chunk
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
        """The board's bg-info, its CRC checked; asked again, after a resync, when damaged."""
        return self._repeat("bg-info", self._info_once)

    def _info_once(self) -> BoardInfo:
        lines = self.command("bg-info")
        if not lines or not re.fullmatch(r"m-bg-crc-\[[0-9a-f]{8}\]", lines[-1]):
            if any(ln == "m-bg-proto-[1]" for ln in lines):
                raise IdentityError("the board runs firmware of an older bitgen (protocol 1): build and flash it "
                                    "again with this bitgen")
            raise LinkCorrupt(f"bg-info reply without its CRC: {lines}")
        block = "".join(ln + "\r\n" for ln in lines[:-1]).encode("ascii", "replace")
        if zlib.crc32(block) != int(lines[-1][10:18], 16):
            raise LinkCorrupt("bg-info reply failed its CRC (damaged on the wire)")
        kv: dict[str, str] = {}
        for ln in lines[:-1]:
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

    def _repeat(self, what: str, exchange):
        """Run an exchange that may be repeated (it changes nothing on the board) until its
        reply is intact, resynchronising after a failure; up to 4 * (retries + 1) tries."""
        last: LinkError | None = None
        for attempt in range(4 * (self.retries + 1)):
            try:
                if attempt:
                    self.sync()
                return exchange()
            except (BoardFault, BoardSilent, IdentityError, InputLost):
                raise
            except LinkError as e:
                last = e
                self.events.append(f"{what}: {e}")
        raise LinkError(f"no intact reply to {what} after {4 * (self.retries + 1)} tries; last error: {last}")

    def load(self, x: bytes) -> int:
        """Send one input, a line at a time, each line sent again until the board took it;
        returns the input's CRC-32 (the board checks the whole input against it at infer)."""
        crc = zlib.crc32(x)

        def announce() -> None:
            lines = self.command(f"db load {len(x)} {crc:08x}")
            if lines != [f"m-[Expecting {len(x)} bytes]"]:
                raise LinkCorrupt(f"unexpected reply to db load: {lines}")

        self._repeat("db load", announce)
        for i in range(0, len(x), DB_CHUNK):
            chunk = x[i : i + DB_CHUNK]
            line = f"db @{i} {(chunk + zlib.crc32(chunk).to_bytes(4, 'little')).hex()}"
            want = ["m-load-done"] if i + DB_CHUNK >= len(x) else []

            def send(line: str = line, want: list[str] = want) -> None:
                try:
                    lines = self.command(line)
                except DeviceError as e:
                    if "no db load" in str(e):  # the board dropped the input: start again
                        raise InputLost(f"the board dropped the input during the load ({e})") from None
                    raise
                if lines != want:
                    raise LinkCorrupt(f"unexpected reply to db data: {lines}")

            self._repeat(f"db line {i // DB_CHUNK}", send)
        return crc

    def infer(self, crc: int, n: int = 1, warmup: int = 0) -> Inference:
        """Run the loaded input (one exchange, no repeat)."""
        # the board computes after m-warmup-start (the warm-ups) and after the first m-lap-us
        # (and after m-infer-done: an image whose output streams computes it again for the
        # results block; a real board's link cannot know that it does)
        lines = self.command(f"infer {n} {warmup}", slow_after=("warmup-st", "lap", "infer-done"))
        pat = [rf"m-warmup-start-{warmup}", "m-warmup-done", rf"m-infer-start-{n}", r"m-lap-us-(\d+)",
               r"m-lap-us-(\d+)", "m-infer-done"]
        if len(lines) not in (len(pat) + 4, len(pat) + 5):  # + m-bg-changed for change-based models
            raise LinkCorrupt(f"infer reply has {len(lines)} lines, expected {len(pat) + 4} or {len(pat) + 5}: "
                              f"{lines}")
        laps = []
        for ln, p in zip(lines, pat):
            m = re.fullmatch(p, ln)
            if not m:
                raise LinkCorrupt(f"unexpected line {ln!r} in the infer reply")
            laps += [int(v) for v in m.groups()]
        res = self._results_block(lines[len(pat):], crc)
        res.lap_us = (laps[0], laps[1])
        return res

    def results(self, crc: int) -> Inference:
        """The results block of the board's last inference again, only if it belongs to the
        input of CRC ``crc`` (LinkCorrupt otherwise, DeviceError if there is none)."""
        return self._results_block(self.command("results", timeout=self.infer_timeout if self.streams else None), crc)

    def _results_block(self, lines: list[str], crc: int) -> Inference:
        """m-results, m-bg-class, m-bg-cycles, m-bg-changed (change-based models only),
        m-bg-crc: checked against the CRC of the input."""
        info = self.info_ or self.info()
        pat = [r"m-results-\[(-?\d+(?:,-?\d+)*)\]", r"m-bg-class-\[(\d+)\]", r"m-bg-cycles-\[(\d+)\]"]
        if len(lines) == 5:
            pat.append(r"m-bg-changed-\[(\d+(?:,\d+)*)\]")
        pat.append(r"m-bg-crc-\[([0-9a-f]{8})\]")
        if len(lines) != len(pat):
            raise LinkCorrupt(f"results block has {len(lines)} lines, expected 4 or 5: {lines}")
        groups = []
        for ln, p in zip(lines, pat):
            m = re.fullmatch(p, ln)
            if not m:
                raise LinkCorrupt(f"unexpected line {ln!r} in the results block")
            groups.append(m.groups())
        block = "".join(ln + "\r\n" for ln in lines[:-1]).encode("ascii")
        if zlib.crc32(block, crc) != int(groups[-1][0], 16):
            raise LinkCorrupt("results failed their CRC (damaged on the wire, or for another input)")
        values = np.array([int(v) for v in groups[0][0].split(",")], dtype=np.int64)
        if values.size != info.output_size:
            raise LinkCorrupt(f"{values.size} results, the model has {info.output_size} outputs")
        lo, hi = (-128, 127) if info.output_dtype == "int8" else (-(2**31), 2**31 - 1)
        if values.min() < lo or values.max() > hi:
            raise LinkCorrupt(f"results outside {info.output_dtype}")
        return Inference(
            outputs=values.astype(np.int8 if info.output_dtype == "int8" else np.int32),
            cls=int(groups[1][0]), cycles=int(groups[2][0]), lap_us=(0, 0),
            changed=tuple(int(v) for v in groups[3][0].split(",")) if len(lines) == 5 else None,
        )

    def _result_again(self, crc: int, tries: int = 2) -> Inference:
        """The results block again, after a resync; after ``tries`` failures (the infer may not
        have run at all: then the board's block is another input's) the caller runs it again."""
        for i in range(tries):
            self.sync()
            try:
                return self.results(crc)
            except (LinkCorrupt, LinkTimeout, DeviceError) as e:
                self.events.append(f"results: {e}")
                if i == tries - 1:
                    raise

    def classify(self, x: np.ndarray | bytes) -> Inference:
        """Send one input and run it once (a model without state: the same input always gives
        the same result). A damaged reply is followed by ``results`` (the block the board keeps,
        bound to this input by its CRC), a refused or lost infer by another infer, a refused
        input by another load; each after a resync. Raises LinkError after ``retries + 1``
        attempts that each failed for good."""
        data = bytes(x) if isinstance(x, (bytes, bytearray)) else np.ascontiguousarray(x, dtype=np.int8).tobytes()
        crc = None
        last: LinkError | None = None
        for attempt in range(1, self.retries + 2):
            try:
                if attempt > 1:
                    self.sync()
                if crc is None:
                    crc = self.load(data)
                try:
                    res = self.infer(crc)
                except (LinkCorrupt, LinkTimeout) as e:  # the result may be on the board, intact
                    self.events.append(f"infer: {e}")
                    res = self._result_again(crc)
                res.attempts = attempt
                return res
            except (BoardFault, BoardSilent, IdentityError):
                raise
            except (DeviceError, InputLost) as e:
                if isinstance(e, InputLost) or "input" in str(e):  # incomplete, corrupt, crc mismatch: again
                    crc = None
                last = e
                self.events.append(str(e))
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


def _damaged_ready(raw: bytes) -> bool:
    """The bytes of a line (its \\r kept if it was damaged) are ``m-ready\\r`` with one bit
    flipped: the end of a reply that was damaged on the wire."""
    want = b"m-ready\r"[: len(raw)]
    return len(raw) in (7, 8) and sum(bin(a ^ b).count("1") for a, b in zip(raw, want)) == 1


def _short(cmd: str, n: int = 24) -> str:
    return cmd if len(cmd) <= n else cmd[: n - 3] + "..."
