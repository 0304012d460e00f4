"""bitgen monitor: run a model on a board frame by frame and show it live in the browser
(bitgen/monitor). The frames are a stream file (--stream, one sequence) or a dataset's test
inputs (--dataset); the page is served on http://HOST:PORT/ until the frames are done (and
after, with --keep-serving, until interrupted)."""
from __future__ import annotations

import argparse
import time

import numpy as np

from .. import reports, streams
from ..harness import boards
from ..harness.link import LinkError
from ..harness.session import Session
from ..monitor import Monitor, Readout, run_frames, serve
from .bench_stream import frames_of, with_threshold
from .common import (UsageError, add_dataset_arguments, add_kernels_argument, add_model_argument, count,
                     load_dataset, load_model, resolve_kernels)
from .emit_cmd import default_name
from .outputs import output_file, write_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--board", required=True, help=f"board (available: {', '.join(boards.available())})")
    p.add_argument("--port", help="serial port of a real board")
    add_model_argument(p)
    p.add_argument("--stream", metavar="FILE", help="a stream file: its frames as one sequence")
    add_dataset_arguments(p)
    add_kernels_argument(p, "kernel set (default: the board's fastest that fits)")
    p.add_argument("--change-threshold", type=count(0, 2**31 - 1), metavar="T",
                   help="make every convolution change-based")
    p.add_argument("--host", default="127.0.0.1", help="address to serve the page on (default 127.0.0.1)")
    p.add_argument("--port-http", type=count(0, 65535), default=8765, help="port of the page (default 8765)")
    p.add_argument("--interval", type=_interval, default=0.0, metavar="S",
                   help="seconds to wait after each frame, to watch a fast board (default 0)")
    p.add_argument("--window", type=count(1, 100000), default=100, help="frames the line charts show (default 100)")
    p.add_argument("--readout-threshold", type=int, metavar="SCORE",
                   help="the top score needed to read out a class (below: the default class)")
    p.add_argument("--default-class", default="none", help="what the readout shows below the threshold")
    p.add_argument("--low", type=int, help="scores below this read out the default class")
    p.add_argument("--high", type=int, help="scores above this read out the default class")
    p.add_argument("--keep-serving", action="store_true", help="keep the page up after the last frame")
    p.add_argument("--json", metavar="FILE", help="write every frame's result here at the end")


def _interval(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds") from None
    if not 0 <= v <= 3600:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds in [0, 3600]")
    return v


def _frames(args: argparse.Namespace, model) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    labels = model.labels or [str(i) for i in range(int(np.prod(model.validate()[-1].shape)))]
    if args.stream:
        if args.dataset:
            raise UsageError("give --stream or --dataset, not both")
        s = streams.load(args.stream)
        return frames_of(s, model), s.y, s.labels or labels
    data = load_dataset(args, model)
    if data is None:
        raise UsageError("nothing to show: give --stream FILE or --dataset/--data")
    x, y = data[0], data[1]
    if x.ndim == len(model.input.shape) + 2:  # clips: one after another
        y = np.repeat(y, x.shape[1]) if y is not None else None
        x = x.reshape((-1,) + model.input.shape)
    return x, y, labels


def run(args: argparse.Namespace) -> int:
    args.kernels = resolve_kernels(args)
    board = boards.get(args.board)
    json_to = output_file(args.json, "--json")
    model = with_threshold(load_model(args).ir, args.change_threshold)
    frames, labels, names = _frames(args, model)
    monitor = Monitor(model, names, board.name, Readout(args.readout_threshold, args.default_class, args.low,
                                                         args.high), window=args.window, shape=model.input.shape)
    try:
        server = serve(monitor, args.host, args.port_http)
    except OSError as e:
        raise UsageError(f"cannot serve on {args.host}:{args.port_http} ({e.strerror or e})") from None
    host, port = server.server_address[:2]
    print(f"bitgen monitor: http://{host}:{port}/  ({len(frames)} frames on {board.name})", flush=True)
    try:
        with Session(board, model, port=args.port, name=default_name(model.name), kernels=args.kernels) as s:
            clock = s.info.clock_hz if s.info else None
            results = s.stream_frames(frames) if model.states else (s.link.classify(f) for f in frames)
            run_frames(monitor, enumerate(results), frames, labels, clock, args.interval)
    except LinkError as e:
        monitor.finish(str(e))
        raise
    finally:
        summary = monitor.summary()
        write_json(json_to, reports.header("monitor") | {"model_hash": model.digest(), "summary": summary,
                                                          "config": monitor.config(),
                                                          "frames": [f.to_json() for f in monitor.frames]})
        if not args.keep_serving:
            server.shutdown()
    print(f"{summary['frames']} frames, {summary['mismatches']} mismatches against the golden model")
    if args.keep_serving:
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            server.shutdown()
    return 1 if summary["mismatches"] else 0
