"""bitgen quantize: post-training quantization of a float PyTorch model into a bitgen model file.

Calibration inputs come from the dataset's training split (``--calib N`` spread over it), the
error report and the accuracy of float and golden from its test split (``--limit N``).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from .. import datasets, modelfile
from ..encodings import ENCODINGS
from .common import UsageError


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
    p.add_argument("--calib", type=int, default=1000, metavar="N",
                   help="calibration inputs, spread over the training split (default 1000)")
    p.add_argument("--limit", type=int, metavar="N", help="test inputs for the report (default: all)")
    p.add_argument("--input-shape", metavar="C,H,W", help="reshape the dataset's samples to this shape")
    p.add_argument("--weights", choices=list(ENCODINGS), default="8bit", help="weight encoding (default 8bit)")
    p.add_argument("--weight-scale", choices=WEIGHT_SCALES, default="mse",
                   help="per-channel weight scale: mse (default), absmax or absmean")
    p.add_argument("--activations", choices=METHODS, default="minmax",
                   help="activation ranges: minmax (default), percentile or mse")
    p.add_argument("--percentile", type=float, default=99.99, help="with --activations percentile (default 99.99)")
    p.add_argument("--json", metavar="FILE", help="write the per-layer error report as JSON")


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

    if args.calib < 1:
        raise UsageError("--calib must be at least 1")
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
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
    modelfile.save(model, args.out)
    print(f"quantized {args.model}: {args.weights} weights ({args.weight_scale} scales per channel), "
          f"{args.activations} activation ranges from {len(calib)} {args.dataset} training inputs "
          f"({time.time() - t0:.1f} s)")
    for dropped in model.meta["ptq"]["dropped"]:
        print(f"  left out: {dropped}")
    print(f"error against the float model on {len(xs)} {args.dataset} test inputs:")
    print("\n".join(report.lines()))
    print(f"wrote {args.out} (model {model.digest()[:16]}, {len(model.layers)} layers, MACs {model.macs()})")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"model": str(args.out), "options": {
            k: model.meta["ptq"][k] for k in ("weights", "activations", "weight_scale", "percentile",
                                               "calibration_inputs")}, **report.to_json()}, indent=2) + "\n")
    return 0
