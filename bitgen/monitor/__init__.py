"""`bitgen monitor`: a live web page for a model running on a board, frame by frame.

The board (real, or emulated: the very firmware `bitgen flash` writes) computes each frame of a
stream or a dataset; every result is compared with the golden model as it arrives, and the page
shows, as the frames come: the input frame, the class scores over time, the predicted class
read out with a threshold, a default class and low/high limits (the options of SynSense's
DynapcnnVisualizer, ../shared/reference/cbinfer_sinabs_tiling.md part B), instructions and
latency per frame, the pixels a change-based model found changed, and the mismatches against
golden so far. A board that reports no power has no power chart.

The server is Python's own (http.server, one thread per client); the page gets every result as
it happens through Server-Sent Events (/events) and the whole history from /frames; its charts
are drawn by Plotly's JavaScript library, served from the installed `plotly` Python package
(nothing comes from a CDN). The server binds to 127.0.0.1 unless told otherwise.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .. import golden, ir

PAGE = Path(__file__).with_name("page.html")


@dataclass
class Readout:
    """How the predicted class is read out: the top score must lie within [low, high] and be
    at least `threshold`, else the readout is the default class (the visualizer's options)."""

    threshold: int | None = None
    default: str = "none"
    low: int | None = None
    high: int | None = None

    def __call__(self, scores: list[int], labels: list[str]) -> str:
        top = int(np.argmax(scores))
        best = scores[top]
        if (self.threshold is not None and best < self.threshold) or (self.low is not None and best < self.low) \
                or (self.high is not None and best > self.high):
            return self.default
        return labels[top] if top < len(labels) else str(top)

    def options(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "default": self.default, "low": self.low, "high": self.high}


@dataclass
class FrameResult:
    """One frame as the board computed it (and what golden says of it)."""

    frame: int
    input: list[int]  # the int8 input, flattened (C, H, W) order
    scores: list[int]  # the model's outputs
    cls: int
    readout: str
    label: int | None
    instructions: int  # the board's count for this frame
    latency_us: float | None  # instructions / clock, where the board counts cycles of a clock
    changed: list[int] | None  # pixels changed per change gate, where the board reports them
    changed_fraction: float | None
    golden_cls: int
    mismatch: bool  # outputs or class differ from golden

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass
class Monitor:
    """The results so far and the clients waiting for the next one."""

    model: ir.Model
    labels: list[str]
    board: str
    readout: Readout
    window: int = 100  # frames shown by the line charts
    shape: tuple[int, ...] = ()
    frames: list[FrameResult] = field(default_factory=list)
    finished: bool = False
    error: str | None = None
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def add(self, r: FrameResult) -> None:
        with self._cond:
            self.frames.append(r)
            self._cond.notify_all()

    def finish(self, error: str | None = None) -> None:
        with self._cond:
            self.finished, self.error = True, error
            self._cond.notify_all()

    def wait(self, seen: int, timeout: float) -> list[FrameResult]:
        """The results after the first `seen`, waiting up to `timeout` s for one."""
        with self._cond:
            self._cond.wait_for(lambda: len(self.frames) > seen or self.finished, timeout)
            return self.frames[seen:]

    def config(self) -> dict[str, Any]:
        return {"model": {"name": self.model.name, "hash": self.model.digest()[:16]}, "board": self.board,
                "labels": self.labels, "shape": list(self.shape), "readout": self.readout.options(),
                "window": self.window, "gates": sum(isinstance(n.op, ir.ChangeGate) for n in self.model.nodes)}

    def summary(self) -> dict[str, Any]:
        with self._cond:
            done = list(self.frames)
        return {"frames": len(done), "mismatches": sum(f.mismatch for f in done), "finished": self.finished,
                "error": self.error}


def run_frames(monitor: Monitor, results: Iterable[tuple[int, Any]], frames: np.ndarray, labels: np.ndarray | None,
               clock_hz: int | None, interval: float = 0.0) -> None:
    """Feed the monitor: `results` yields (frame index, board result) in order; every result is
    compared with golden (the frames as one sequence from the model's reset)."""
    pixels = ir.change.gate_pixels(monitor.model)
    expect = golden.run_sequence(monitor.model, frames[None])[0]
    want_cls = golden.argmax(expect)
    try:
        for k, r in results:
            outputs = np.asarray(r.outputs).reshape(-1)
            changed = getattr(r, "changed", None)
            monitor.add(FrameResult(
                frame=k, input=frames[k].reshape(-1).astype(int).tolist(), scores=outputs.astype(int).tolist(),
                cls=int(r.cls), readout=monitor.readout(outputs.astype(int).tolist(), monitor.labels),
                label=None if labels is None else int(labels[k]), instructions=int(r.cycles),
                latency_us=None if not clock_hz else round(r.cycles / clock_hz * 1e6, 1),
                changed=None if changed is None else [int(c) for c in changed],
                changed_fraction=None if changed is None or not pixels else sum(changed) / sum(pixels),
                golden_cls=int(want_cls[k]),
                mismatch=not (np.array_equal(outputs, expect[k].reshape(-1)) and int(r.cls) == int(want_cls[k]))))
            if interval:
                time.sleep(interval)
    except Exception as e:  # shown on the page and returned by the command
        monitor.finish(" ".join(str(e).split()))
        raise
    monitor.finish()


def _handler(monitor: Monitor, plotly_js: Path):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet: the command prints what matters
            pass

        def _send(self, body: bytes, ctype: str, status: int = 200) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            if path == "/":
                self._send(PAGE.read_bytes(), "text/html; charset=utf-8")
            elif path == "/plotly.min.js":
                self._send(plotly_js.read_bytes(), "application/javascript")
            elif path == "/config":
                self._send(json.dumps(monitor.config()).encode(), "application/json")
            elif path == "/frames":
                self._send(json.dumps({"summary": monitor.summary(), "frames": [f.to_json() for f in monitor.frames]})
                           .encode(), "application/json")
            elif path == "/events":
                self._events()
            else:
                self._send(b"not found\n", "text/plain", 404)

        def _events(self) -> None:
            """Server-Sent Events: one `frame` event per result, then `end`."""
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            seen = 0
            try:
                while True:
                    new = monitor.wait(seen, timeout=15.0)
                    for f in new:
                        self.wfile.write(f"event: frame\ndata: {json.dumps(f.to_json())}\n\n".encode())
                    seen += len(new)
                    if not new:
                        if monitor.finished and seen >= len(monitor.frames):
                            self.wfile.write(f"event: end\ndata: {json.dumps(monitor.summary())}\n\n".encode())
                            self.wfile.flush()
                            return
                        self.wfile.write(b": keep-alive\n\n")
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                return

    return Handler


def plotly_js() -> Path:
    """Plotly's JavaScript bundle, as the `plotly` Python package ships it."""
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the plotly package has no JavaScript bundle")
    return path


def serve(monitor: Monitor, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    """Start the page's server in a thread; returns it (server.server_address, .shutdown())."""
    server = ThreadingHTTPServer((host, port), _handler(monitor, plotly_js()))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="bitgen-monitor", daemon=True).start()
    return server
