"""bitgen run: stream inputs to a board (real or emulated), compare every output with the golden
model bit for bit, report accuracy and cycles."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from .. import console, golden, ir, reports, streams
from ..harness import boards
from ..harness.link import LinkError
from ..harness.session import Session
from . import bench_stream
from .build_cmd import default_dir
from .common import (CNN_TARGET, SEED, UsageError, add_dataset_arguments, add_kernels_argument, check_memory, cnn_target,
                     count, is_clips, load_dataset, load_model, resolve_kernels, seconds)
from .emit_cmd import default_name
from .outputs import STDOUT, output_dir, output_file, write_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--board", required=True,
                   help=f"board (available: {', '.join(boards.available())}, scamp5-sim: the SCAMP-5 simulator)")
    p.add_argument("--port", help="serial port of a real board (a path or a pyserial URL)")
    p.add_argument("model", nargs="?",
                   help="model file (default: the model of the last bitgen build for this board)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="also open a plain pickled nn.Module (this runs code from the file)")
    p.add_argument("--input-shape", metavar="C,H,W", help="input shape of a pickled module")
    add_dataset_arguments(p)
    p.add_argument("--stream", metavar="FILE",
                   help="a stream file (bitgen datasets make static-video): its frames as one sequence from "
                        "the reset, each compared with golden, with the pixels a change-based model found changed")
    p.add_argument("--random", type=count(0), default=0, metavar="N", help="also run N random int8 inputs")
    p.add_argument("--seed", type=SEED, default=0, help="seed of the random inputs")
    p.add_argument("--frames", type=count(1, 100000), metavar="T",
                   help="models with state: consecutive inputs form sequences of T frames (default: the "
                        "length of a clip dataset's clips, else 16)")
    p.add_argument("--json", metavar="FILE", help="write the run report (run.json) here ('-': to standard "
                                                  "output, instead of the text report)")
    p.add_argument("--timeout", type=seconds(3600), default=3.0, metavar="S", help="seconds per command (default 3)")
    p.add_argument("--infer-timeout", type=seconds(), default=60.0, metavar="S",
                   help="seconds per inference (default 60)")
    p.add_argument("--retries", type=count(0, 100), default=3,
                   help="attempts after a failed exchange, per input (default 3)")
    p.add_argument("--keep", metavar="DIR", help="emulated boards: keep the firmware built for the run here")
    add_kernels_argument(p, "emulated boards: kernel set of the firmware built for the run "
                            "(default: the board's fastest that fits)")
    p.add_argument("--trace", action="store_true", help="print every line on the wire")
    from .scamp5_cmd import add_run_arguments

    add_run_arguments(p)


def _default_model(board: boards.Board) -> str:
    meta = default_dir(board) / "build.json"
    try:
        path = json.loads(meta.read_text())["model"]["path"]
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        path = None
    if not isinstance(path, str) or not path:
        raise UsageError(f"give the model file (no model path in {meta} from a bitgen build to take it from)")
    return path


def _accuracy(classes: np.ndarray, labels: np.ndarray | None, per_clip: int) -> float | None:
    """Accuracy of the dataset's inputs (first in `classes`): per input, or per clip of
    `per_clip` frames by its last frame."""
    if labels is None:
        return None
    last = np.asarray(classes)[: len(labels) * per_clip][per_clip - 1::per_clip]
    return float(np.mean(last == labels))


def _changes(model: ir.Model, x: np.ndarray, reported: list) -> dict | None:
    """The board's changed-pixel counts per frame against golden's (a model with change gates)."""
    pixels = ir.change.gate_pixels(model)
    if not pixels:
        return None
    if any(c is None for c in reported):
        return {"reported": False, "count_mismatches": 0}
    got = np.array(reported, dtype=np.int64)
    want = np.array(golden.changed_pixels(model, x), dtype=np.int64)
    return {"reported": True, "gate_pixels": pixels, "per_frame": got.tolist(),
            "changed_fraction": float(got.sum(axis=1).mean() / sum(pixels)),
            "count_mismatches": int(np.sum(got != want))}


def run(args: argparse.Namespace) -> int:
    from . import scamp5_cmd

    if args.board == scamp5_cmd.BOARD:
        return scamp5_cmd.run_sim(args)
    target = CNN_TARGET if cnn_target(args) else "c"
    kernels = None if target == CNN_TARGET else resolve_kernels(args)
    board = boards.get(args.board)
    json_to = output_file(args.json, "--json", stdout=True)
    keep = output_dir(args.keep, "--keep")
    say = (lambda *a: None) if json_to == STDOUT else print  # noqa: E731  (stdout holds the JSON)
    if kernels and not board.is_emulated:
        raise UsageError(f"--kernels builds the firmware of an emulated board; {board.name} runs the image "
                         "bitgen flash wrote (choose its kernels with bitgen build --kernels)")
    if args.model is None:
        args.model = _default_model(board)
    loaded = load_model(args)
    model = loaded.ir
    check_memory(args.random * model.input.size, f"{args.random} random inputs of {model.input.size} values",
                 "--random")
    sets = []
    if args.stream is not None:
        if args.dataset is not None or args.data is not None or args.random or args.frames is not None:
            raise UsageError("--stream is the input, one sequence of its frames: give it without "
                             "--dataset, --data, --random or --frames")
        stream = streams.load(args.stream)
        frames_x = bench_stream.frames_of(stream, model)
        data = (frames_x, stream.y)
        args.frames = len(frames_x)
    else:
        data = load_dataset(args, model)
    per_clip = 1  # inputs per label: a clip dataset has one label per sequence of frames
    if data is not None and is_clips(data[0], model):
        per_clip = data[0].shape[1]
        if args.frames not in (None, per_clip):
            raise UsageError(f"the dataset's clips have {per_clip} frames, not --frames {args.frames}")
        data = (data[0].reshape((-1,) + model.input.shape), data[1])
    frames = args.frames if args.frames is not None else (per_clip if per_clip > 1 else 16)
    if data is not None:
        sets.append(("dataset", data[0], data[1]))
    if args.random > 0:
        rng = np.random.default_rng(args.seed)
        sets.append(("random", rng.integers(-128, 128, (args.random,) + model.input.shape).astype(np.int8), None))
    if not sets:
        raise UsageError("nothing to run: give --dataset/--data, or --random N")
    x = np.concatenate([s[1] for s in sets])
    labels = data[1] if data is not None else None
    if model.states:  # consecutive inputs are the frames of sequences of --frames each
        if frames < 1 or len(x) % frames:
            raise UsageError(f"a model with state runs sequences of --frames {frames}: "
                             f"{len(x)} inputs are not whole sequences")
        seqs = x.reshape((-1, frames) + x.shape[1:])
        expect = golden.run_sequence(model, seqs).reshape((len(x),) + golden.run(model, x[:1]).shape[1:])
    else:
        expect = golden.run(model, x)
    expect_cls = golden.argmax(expect)

    bar = console.progress(total=len(x), unit="input", desc=board.name)
    log = bar.write if args.trace else None
    t_start = time.monotonic()
    outputs, classes, cycles, attempts, changed = [], [], [], [], []
    mismatches: list[int] = []
    with Session(board, model, port=args.port, name=default_name(model.name), workdir=keep,
                 timeout=args.timeout, infer_timeout=args.infer_timeout, retries=args.retries,
                 log=log, kernels=kernels, target=target) as s:
        info = s.info
        say(f"{board.name}: model {info.model} {info.hash[:16]} (matches), board reports flash "
            f"{info.flash_bytes} B, SRAM {info.sram_bytes} B, clock {info.clock_hz} Hz")
        results = iter(())
        try:
            for i in range(len(x)):
                try:
                    if not model.states:
                        r = s.link.classify(x[i])
                    else:  # a whole sequence at a time, from the reset
                        if i % frames == 0:
                            results = iter(s.run_frames(x[i : i + frames]))
                        r = next(results)
                except LinkError as e:
                    raise s.explain(e) from None
                same = np.array_equal(r.outputs.reshape(expect[i].shape), expect[i]) and r.cls == expect_cls[i]
                if not same:
                    mismatches.append(i)
                outputs.append(r.outputs)
                classes.append(r.cls)
                cycles.append(r.cycles)
                attempts.append(r.attempts)
                changed.append(r.changed)
                bar.set_postfix(mismatches=len(mismatches), instructions=r.cycles, refresh=False)
                bar.update(1)
        finally:
            bar.close()
        events = list(s.link.events)
        fw = s.firmware.report if s.firmware else None
        emulation = s.emulation
    stats = dict(emulation.stats) if emulation else {}

    n = len(x)
    classes_a = np.asarray(classes)
    changes = _changes(model, x, changed) if args.stream is not None else None
    rep = reports.header("run") | {
        "model_hash": info.hash,
        "board": board.name,
        "image_board": board.image_board.name,
        "port": args.port,
        "kernels": fw.get("kernels") if fw else None,  # a real board: those bitgen build chose
        "target": target,  # c, or max78000-cnn: the model on the MAX78000's CNN accelerator
        "model": {"name": info.model, "path": str(Path(args.model).resolve())},
        "dataset": {"name": args.dataset, "path": args.data, "limit": args.limit}
        if data is not None and args.stream is None else None,
        "stream": None if args.stream is None else str(Path(args.stream).resolve()),
        "random": args.random,
        "compared": n,
        "mismatches": len(mismatches),
        "mismatch_indices": mismatches[:50],
        "accuracy": _accuracy(classes_a, labels, per_clip),
        "golden_accuracy": _accuracy(expect_cls, labels, per_clip),
        "instructions": reports.count_stats(cycles),
        "instruction_source": board.cycle_source,
        "per_frame": cycles if args.stream is not None else None,
        "changes": changes,
        "counter": info.counter,
        "clock_hz": info.clock_hz,
        "board_flash_bytes": info.flash_bytes,
        "board_sram_bytes": info.sram_bytes,
        "build": {k: fw.get(k) for k in ("kernels", "flash_bytes", "sram_bytes", "flash_budget", "sram_budget",
                                          "stack")}
        if fw else None,
        "retried_inputs": int(sum(a > 1 for a in attempts)),
        "failed_exchanges": len(events),
        "link_events": events[:50],
        "emulator": stats or None,  # e.g. instructions the emulated CPU ran in all
        "elapsed_s": round(time.monotonic() - t_start, 3),
    }
    c = rep["instructions"]
    acc = "" if rep["accuracy"] is None else f"  accuracy {100 * rep['accuracy']:.2f} % (golden {100 * rep['golden_accuracy']:.2f} %)"
    say(f"compared {n} inputs: {len(mismatches)} mismatches{acc}")
    if c:
        say(f"instructions min {c['min']} median {c['median']} max {c['max']} ({rep['instruction_source']})")
    if stats.get("stack_peak") is not None:
        bound = ((fw or {}).get("stack") or {}).get("bytes")
        say(f"stack peak {stats['stack_peak']} B (reserved {board.stack_bytes} B"
              + ("" if bound is None else f", call-graph bound {bound} B") + ")")
    if changes:
        say(f"pixels changed per frame: {100 * changes['changed_fraction']:.1f} % "
            f"({changes['count_mismatches']} counts differ from golden's)" if changes["reported"] else
            "the board's firmware reports no changed-pixel counts (bitgen protocol 3 does)")
    if events:
        say(f"recovered from {len(events)} failed exchanges ({rep['retried_inputs']} inputs retried)")
    write_json(json_to, rep)
    if mismatches:
        i = mismatches[0]
        say(f"MISMATCH at input {i}: golden {expect[i].ravel().tolist()} (class {expect_cls[i]}), "
              f"board {outputs[i].ravel().tolist()} (class {classes[i]})")
        return 1
    if changes and changes["count_mismatches"]:
        say(f"MISMATCH: {changes['count_mismatches']} changed-pixel counts differ from golden's")
        return 1
    say(f"bit-exact: every output of {n} inputs equals the golden model"
        + (", and every changed-pixel count golden's" if changes and changes["reported"] else ""))
    return 0
