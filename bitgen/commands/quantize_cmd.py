"""bitgen quantize: post-training quantization of a float PyTorch model into a bitgen model file.

Calibration inputs come from the dataset's training split (``--calib N`` spread over it), the
error report and the accuracy of float and golden from its test split (``--limit N``).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from .. import datasets, modelfile, reports
from ..encodings import ENCODINGS
from .common import UsageError, count
from .outputs import STDOUT, output_file, write_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="float model: a state_dict (with --arch) or a pickled nn.Module (with --trust-pickle)")
    p.add_argument("--arch", metavar="MODULE:CLASS",
                   help="the class (or function) that builds the network, imported from your code, e.g. "
                        "mypkg.models:Net; the model file then holds its state_dict")
    p.add_argument("--arch-args", metavar="JSON", help="keyword arguments for --arch, as a JSON object")
    p.add_argument("--trust-pickle", action="store_true",
                   help="open a pickled nn.Module (this runs code from the file)")
    add_ptq_arguments(p, dataset_required=True)
    p.add_argument("--name", help="model name stored in the file (default: the output file's stem)")
    p.add_argument("-o", "--out", required=True, metavar="FILE", help="bitgen model file to write")


def add_ptq_arguments(p: argparse.ArgumentParser, dataset_required: bool) -> None:
    """Calibration data and quantization options (bitgen quantize; bitgen import of float ONNX)."""
    from ..ptq import METHODS, WEIGHT_SCALES

    p.add_argument("--dataset", choices=datasets.NAMES, required=dataset_required,
                   help="calibration (training split) and test data")
    p.add_argument("--data", metavar="PATH", help="dataset folder or file")
    p.add_argument("--calib", type=count(1), default=1000, metavar="N",
                   help="calibration inputs, spread over the training split (default 1000)")
    p.add_argument("--limit", type=count(1), metavar="N", help="test inputs for the report (default: all)")
    p.add_argument("--input-shape", metavar="C,H,W", help="reshape the dataset's samples to this shape")
    p.add_argument("--weights", choices=list(ENCODINGS), default="8bit", help="weight encoding (default 8bit)")
    p.add_argument("--weight-scale", choices=WEIGHT_SCALES, default="mse",
                   help="per-channel weight scale: mse (default), absmax or absmean")
    p.add_argument("--activations", choices=METHODS, default="minmax",
                   help="activation ranges: minmax (default), percentile or mse")
    p.add_argument("--percentile", type=_percentile, default=99.99,
                   help="with --activations percentile (default 99.99)")
    p.add_argument("--json", metavar="FILE", help="write the per-layer error report as JSON ('-': to standard "
                                                  "output, instead of the text report)")


def _percentile(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not (math.isfinite(v) and 0 < v <= 100):
        raise argparse.ArgumentTypeError(f"{text} is not a percentile in (0, 100]")
    return v


def _shape(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"--input-shape '{text}' is not a comma-separated list of integers") from None


def _samples(ds: datasets.Dataset, shape: tuple[int, ...] | None, what: str) -> np.ndarray:
    if ds.frames:
        raise UsageError(f"dataset '{ds.name}' holds clips; post-training quantization takes single inputs")
    x = ds.x.astype(np.float64)
    if shape is not None:
        if int(np.prod(shape)) != x[0].size:
            raise UsageError(f"--input-shape {shape} does not hold the {x[0].size} values of a {what} sample")
        x = x.reshape((-1,) + shape)
    return x


def run(args: argparse.Namespace) -> int:
    from ..ptq.source import load_float_model

    arch_args = None
    if args.arch_args:
        try:
            arch_args = json.loads(args.arch_args)
        except ValueError:
            raise UsageError("--arch-args must be a JSON object") from None
        if not isinstance(arch_args, dict):
            raise UsageError("--arch-args must be a JSON object")
    module = load_float_model(args.model, arch=args.arch, arch_args=arch_args, trust_pickle=args.trust_pickle)
    return quantize_and_report(module, args)


def quantize_and_report(module, args: argparse.Namespace, shape: tuple[int, ...] | None = None) -> int:
    """Calibrate on the dataset's training split, quantize, report against its test split, save."""
    from .. import ptq

    out = output_file(args.out, "-o")
    json_to = output_file(args.json, "--json", stdout=True)
    say = (lambda *a: None) if json_to == STDOUT else print  # noqa: E731  (stdout holds the JSON)
    shape = _shape(args.input_shape) or shape
    train = datasets.load(args.dataset, args.data, split="train")
    test = datasets.load(args.dataset, args.data, split="test")
    xt = _samples(train, shape, "training")
    pick = np.unique(np.linspace(0, len(xt) - 1, min(args.calib, len(xt))).round().astype(int))
    calib = xt[pick]
    xs, ys = _samples(test, shape, "test"), np.asarray(test.y)
    if args.limit is not None:
        xs, ys = xs[:args.limit], ys[:args.limit]
    name = args.name or Path(args.out).stem
    t0 = time.time()
    model = ptq.quantize(module, calib, weights=args.weights, activations=args.activations,
                         percentile=args.percentile, weight_scale=args.weight_scale, labels=test.labels, name=name)
    report = ptq.error_report(module, model, xs, ys)
    model.meta["ptq"]["report"] = report.to_json()
    modelfile.save(model, out)
    say(f"quantized {args.model}: {args.weights} weights ({args.weight_scale} scales per channel), "
          f"{args.activations} activation ranges from {len(calib)} {args.dataset} training inputs "
          f"({time.time() - t0:.1f} s)")
    for dropped in model.meta["ptq"]["dropped"]:
        say(f"  left out: {dropped}")
    say(f"error against the float model on {len(xs)} {args.dataset} test inputs:")
    say("\n".join(report.lines()))
    say(f"wrote {out} (model {model.digest()[:16]}, {len(model.layers)} layers, MACs {model.macs()})")
    write_json(json_to, reports.header("quantize") | {"model_hash": model.digest(), "model": str(out), "options": {
        k: model.meta["ptq"][k] for k in ("weights", "activations", "weight_scale", "percentile",
                                           "calibration_inputs")}, **report.to_json()})
    return 0
