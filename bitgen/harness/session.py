"""A board ready to classify, whatever it is: for an emulated board the firmware is built and
the emulator started; for a real one its serial port is opened. Either way the result is a
:class:`~bitgen.harness.link.Link` to a board whose model identity has been checked.

The wire protocol itself (:mod:`bitgen.harness.link`) knows nothing of building or emulating.
"""
from __future__ import annotations

import math
import tempfile
from typing import Any

import numpy as np

from .. import sim
from . import firmware
from .link import BoardFault, BoardInfo, Inference, Link, LinkError

class Session:
    """A board ready to classify: for an emulated board, the firmware built and the emulator
    started; for a real one, its serial port opened. The board's model identity is checked.

    ``with Session(board, model, port=...) as s: s.link.classify(x)``
    """

    def __init__(self, board: Any, model: Any, *, port: str | None = None, name: str = "model",
                 workdir: str | None = None, timeout: float = 3.0, infer_timeout: float = 60.0,
                 retries: int = 3, boot_timeout: float = 15.0, log: Any = None,
                 extra_cflags: list[str] | None = None, kernels: str | None = None,
                 max_arena: int | None = None, target: str = "c", tiles: str = "auto",
                 strip_rows: int | None = None):
        self.board, self.model, self.port = board, model, port
        self.name, self.workdir = name, workdir
        self.kw = dict(timeout=timeout, infer_timeout=infer_timeout, retries=retries, log=log)
        self.boot_timeout = boot_timeout
        self.extra_cflags = extra_cflags
        self.kernels = kernels
        self.max_arena = max_arena
        self.target = target  # the back end (firmware.TARGETS)
        self.tiles, self.strip_rows = tiles, strip_rows  # row strips (emit.plan_within)
        self.firmware = None
        self.emulation = None
        self.link: Link | None = None
        self.info: BoardInfo | None = None
        self._tmp = None

    def __enter__(self) -> "Session":
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        return self

    def _open(self) -> None:
        if self.board.is_emulated:
            if self.workdir is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="bitgen-fw-")
                self.workdir = self._tmp.name
            # no host proof: every output of the run is compared with golden on this very image
            # (so the image is marked unproved, and `bitgen flash` refuses it)
            self.firmware = firmware.build(self.model, self.board, self.workdir, name=self.name,
                                        extra_cflags=self.extra_cflags, kernels=self.kernels,
                                        max_arena=self.max_arena, prove=0, target=self.target,
                                        tiles=self.tiles, strip_rows=self.strip_rows)
            bottom = self.firmware.symbol("__bss_end") if self.board.emulator.get("kind") == "unicorn" else None
            self.emulation = sim.start(self.board, self.firmware, stack_bottom=bottom)
            url = self.emulation.url
        elif not self.port:
            raise LinkError(f"board {self.board.name} is real hardware: give its serial port "
                            "(--port /dev/ttyACM0, or a pyserial URL)")
        else:
            url = self.port
        self.link = Link.open(url, baud=int(self.board.uart.get("baud", 115200)), **self.kw)
        # an image that streams its output computes it again for each results block
        self.link.streams = bool(self.firmware and (self.firmware.report.get("model") or {}).get("stream"))
        try:
            self.link.sync(timeout=self.boot_timeout)
            out_size = math.prod(self.model.validate()[-1].shape)
            self.info = self.link.check_identity(self.model.digest(), self.model.input.size, out_size)
        except LinkError as e:
            raise self.explain(e) from None

    def run(self, x: np.ndarray, trace: bool = False) -> tuple[np.ndarray, np.ndarray, None]:
        """The board as an executor (:class:`bitgen.backends.base.Executor`): classify each
        input of ``x`` (N, *input shape); a board cannot trace its layers."""
        assert self.link is not None and self.info is not None, "use the session inside `with`"
        x = np.asarray(x, dtype=np.int8).reshape((-1, self.model.input.size))
        outs, preds = [], []
        for row in x:
            try:
                res = self.link.classify(row)
            except LinkError as e:
                raise self.explain(e) from None
            outs.append(res.outputs)
            preds.append(res.cls)
        dtype = np.int8 if self.info.output_dtype == "int8" else np.int32
        y = np.stack(outs) if outs else np.zeros((0, self.info.output_size), dtype=dtype)
        return y, np.asarray(preds, dtype=np.int32), None

    def run_frames(self, frames: np.ndarray) -> list[Inference]:
        """One sequence of frames (T, *input shape) on a model with state: bg-reset, then each
        frame loaded and run once. A failed exchange cannot be retried frame by frame (the
        board may already have advanced its state), so the whole sequence is replayed from the
        reset, up to the link's retries; each result's ``attempts`` says how many runs it took."""
        assert self.link is not None, "use the session inside `with`"
        link = self.link
        frames = np.asarray(frames, dtype=np.int8).reshape(len(frames), self.model.input.size)
        for attempt in range(1, link.retries + 2):
            try:
                if attempt > 1:
                    link.sync()
                link.reset()
                out = [link.infer(link.load(f.tobytes())) for f in frames]
                for r in out:
                    r.attempts = attempt
                return out
            except BoardFault as e:
                raise self.explain(e) from None
            except LinkError as e:
                link.events.append(f"sequence replayed: {e}")
                last = e
        raise self.explain(LinkError(f"no valid run of the sequence after {link.retries + 1} attempts; "
                                     f"last error: {last}"))

    def stream_frames(self, frames: np.ndarray):
        """One sequence of frames, yielded frame by frame as the board computes them (a live
        monitor): bg-reset, then each frame loaded and run. After a failed exchange the board
        is reset and the frames already shown are run again, unseen, to bring its state back
        (they must give the same results: else LinkError), up to the link's retries in a row."""
        assert self.link is not None, "use the session inside `with`"
        link = self.link
        frames = np.asarray(frames, dtype=np.int8).reshape(len(frames), self.model.input.size)
        done: list[Inference] = []
        failures = 0
        restart = True
        while len(done) < len(frames):
            try:
                if restart:
                    if failures:
                        link.sync()
                    link.reset()
                    for k, seen in enumerate(done):  # the board's state back to where it was
                        again = link.infer(link.load(frames[k].tobytes()))
                        if not np.array_equal(again.outputs, seen.outputs):
                            raise LinkError(f"frame {k} gave other outputs when run again")
                    restart = False
                r = link.infer(link.load(frames[len(done)].tobytes()))
            except BoardFault as e:
                raise self.explain(e) from None
            except LinkError as e:
                failures += 1
                link.events.append(f"stream resumed after: {e}")
                if failures > link.retries:
                    raise self.explain(LinkError(f"no valid run of frame {len(done)} after {failures} attempts; "
                                                 f"last error: {e}")) from None
                restart = True
                continue
            failures = 0
            done.append(r)
            yield r

    def run_sequence(self, x: np.ndarray, trace: bool = False) -> tuple[np.ndarray, np.ndarray, None]:
        """The board as an executor for sequences (N, T, *input shape): :meth:`run_frames` each."""
        assert self.info is not None, "use the session inside `with`"
        x = np.asarray(x, dtype=np.int8)
        n, frames = x.shape[:2]
        dtype = np.int8 if self.info.output_dtype == "int8" else np.int32
        y = np.zeros((n, frames, self.info.output_size), dtype=dtype)
        pred = np.zeros((n, frames), dtype=np.int32)
        for i in range(n):
            for t, r in enumerate(self.run_frames(x[i])):
                y[i, t], pred[i, t] = r.outputs, r.cls
        return y, pred, None

    def explain(self, e: LinkError) -> LinkError:
        """The emulator's own account of a failure, when it has one."""
        why = self.emulation.failure() if self.emulation else None
        if why and not isinstance(e, BoardFault):
            return BoardFault(f"{e}; the emulator stopped: {why}")
        return e

    def close(self) -> None:
        if self.link:
            self.link.close()
        if self.emulation:
            self.emulation.close()
        if self._tmp:
            self._tmp.cleanup()
            self._tmp = None

    def __exit__(self, *exc: Any) -> None:
        self.close()
