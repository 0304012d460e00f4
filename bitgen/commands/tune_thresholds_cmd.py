"""`bitgen tune-thresholds model.pt --stream FILE --tolerance P -o tuned.pt`: choose the change
threshold of every convolution, greedily from the first to the last (CBinfer's rule, in integer
steps; Cavigelli et al. 2017, ../shared/reference/cbinfer_sinabs_tiling.md A.3).

For each convolution in turn, with the ones before it at their chosen thresholds and the ones
after it at 0 (exactly dense), the threshold grows through 0, 1, 2, 3, 4, 6, 8, ... while the
stream's error stays within the tolerance of the dense model's: with labels, its accuracy
may drop by at most P (a fraction: 0.001 is 0.1 point); without, at most a fraction P of the
frames may change their class. Every evaluation is golden.run_sequence over the whole stream,
from the model's reset, so the tolerance holds on this stream (the tuning set), as CBinfer's does.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from .. import golden, ir, modelfile, reports, streams
from ..errors import BitgenError
from .bench_stream import frames_of
from .common import UsageError, load_model
from .outputs import STDOUT, output_file, write_json

STEPS = (0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 255)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model file (dense, or change-based already)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="also open a plain pickled nn.Module (this runs code from the file)")
    p.add_argument("--input-shape", metavar="C,H,W", help="input shape of a pickled module")
    p.add_argument("--stream", required=True, metavar="FILE", help="the stream to tune on (frames x, labels y)")
    p.add_argument("--tolerance", type=float, required=True, metavar="P",
                   help="allowed loss against the dense model, a fraction (0.001: 0.1 point of accuracy, "
                        "or of frames that change class without labels)")
    p.add_argument("--json", metavar="FILE", help="write the tuning report here ('-': to standard output, "
                                                  "instead of the text report)")
    p.add_argument("-o", "--out", required=True, metavar="FILE", help="the tuned model file to write")


def _error(model: ir.Model, x: np.ndarray, y: np.ndarray | None, dense_pred: np.ndarray) -> float:
    pred = golden.argmax(golden.run_sequence(model, x[None])[0])
    return float(np.mean(pred != y)) if y is not None else float(np.mean(pred != dense_pred))


def _changed(model: ir.Model, x: np.ndarray) -> float:
    """Pixels changed per frame at all gates together, a fraction (golden: where a gate's output
    differs from the reference it read)."""

    counts = np.array(golden.changed_pixels(model, x), dtype=np.float64)
    gates = [i for i, n in enumerate(model.nodes) if isinstance(n.op, ir.ChangeGate)]
    types = model.validate()
    pixels = sum(int(np.prod(types[i].shape[1:] if len(types[i].shape) == 3 else types[i].shape)) for i in gates)
    return float(counts.sum(axis=1).mean() / pixels) if pixels else 0.0


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.tolerance < 1:  # also refuses nan
        raise UsageError(f"--tolerance must be a fraction in [0, 1), got {args.tolerance}")
    out = output_file(args.out, "-o")
    json_to = output_file(args.json, "--json", stdout=True)
    say = (lambda *a: None) if json_to == STDOUT else print  # noqa: E731  (stdout holds the JSON)
    loaded = load_model(args)
    stream = streams.load(args.stream)
    dense = ir.change.dense(loaded.ir)
    convs = [i for i, n in enumerate(dense.nodes) if isinstance(n.op, ir.Conv2d)]
    if not convs:
        raise UsageError("the model has no convolution to make change-based")
    x = frames_of(stream, dense)
    y = stream.y
    start = time.perf_counter()
    dense_pred = golden.argmax(golden.run_sequence(dense, x[None])[0])
    base = float(np.mean(dense_pred != y)) if y is not None else 0.0
    chosen: dict[int, int] = {i: 0 for i in convs}
    trace = []
    for i in convs:  # front to back
        best = 0
        for t in STEPS[1:]:
            trial = ir.change.with_thresholds(dense, chosen | {i: t})
            err = _error(trial, x, y, dense_pred)
            trace.append({"layer": i, "threshold": t, "error": err})
            if err - base > args.tolerance:
                break
            best = t
        chosen[i] = best
    tuned = ir.change.with_thresholds(dense, chosen)
    err = _error(tuned, x, y, dense_pred)
    report = reports.header("tune-thresholds") | {
        "model_hash": dense.digest(), "tuned_model_hash": tuned.digest(), "stream": str(Path(args.stream).resolve()),
        "frames": int(len(x)), "tolerance": args.tolerance, "metric": "accuracy" if y is not None else "agreement",
        "thresholds": {str(i): t for i, t in chosen.items()},
        "dense": {"error": base, "changed_fraction": _changed(ir.change.with_thresholds(dense, 0), x)},
        "tuned": {"error": err, "changed_fraction": _changed(tuned, x)},
        "evaluations": trace, "seconds": round(time.perf_counter() - start, 2),
    }
    if y is not None:
        report["accuracy"] = {"dense": 1 - base, "tuned": 1 - err}
    tuned.meta = dict(tuned.meta) | {"change_thresholds": report["thresholds"], "tuned_on": report["stream"],
                                     "tolerance": args.tolerance}
    try:
        modelfile.save(tuned, out)
    except OSError as e:
        raise BitgenError(f"cannot write {out}: {e.strerror or e}") from None
    what = (f"accuracy {100 * (1 - base):.2f} % dense, {100 * (1 - err):.2f} % tuned" if y is not None
            else f"{100 * err:.2f} % of frames change class")
    say(f"thresholds {', '.join(f'layer {i}: {t}' for i, t in chosen.items())}; {what}; pixels changed per "
          f"frame {100 * report['dense']['changed_fraction']:.1f} % at 0, {100 * report['tuned']['changed_fraction']:.1f} % "
          f"tuned ({report['seconds']} s)")
    say(f"wrote {out} (model {tuned.digest()[:16]})")
    write_json(json_to, report)
    return 0
