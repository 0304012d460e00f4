"""bitgen train: train a quantization-aware model on a dataset and write model.pt.

Options come from the command line and, optionally, a JSON or TOML ``--config`` file whose
keys are the long option names (``arch``, ``weights``, ``norm``, ``epochs``, ``lr``, ...;
see ``bitgen.train.Recipe`` and ``LayerOptions``) and may hold ``layers``: an explicit stack
in the ``bitgen.nn`` spec format, e.g.
``[{"type": "Flatten"}, {"type": "QuantLinear", "args": {"in_features": 256, "out_features": 10}}]``,
or ``nodes``: a graph, the same entries with a ``name`` and the ``inputs`` they read (default:
the node before; ``"input"`` is the model input), e.g. a residual connection
``{"name": "sum", "type": "Add", "inputs": ["conv2_q", "block_in"]}`` (``bitgen.nn.graph``),
with ``states``: tensors carried from one frame to the next, e.g.
``{"name": "h", "source": "h_next", "shape": [1, 8, 8], "init": 1}``, for clip datasets.
``change_threshold`` (a whole number) stores every convolution change-based (``bitgen.ir.change``;
0: exactly the dense model). Options given on the command line win over the file.
``--target max78000-cnn`` trains a config of the accelerator's layers (``bitgen.nn.Max78000Layer``,
``Max78000Add``) on Q7 inputs and refuses, in one line, a layer the accelerator cannot take.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from .. import datasets, ir, schema
from ..errors import BitgenError
from ..train import NORMS, LayerOptions, Recipe, TrainError
from .common import SEED, count, number
from .outputs import output_file

ENCODINGS = ("binary", "ternary", "2bitsym", "4bitsym", "4bit", "fp130", "8bit")
SIGMA = number(0.0, 1e6)
TARGETS = ("max78000-cnn",)
DEFAULTS = {"arch": "mlp:64,64", "weights": "4bitsym", "norm": "static", "seed": 0, "threads": 2}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", choices=datasets.NAMES, help="dataset (digits needs no --data)")
    p.add_argument("--data", metavar="PATH", help="dataset folder or file")
    p.add_argument("--stream", metavar="FILE", help="a stream file (bitgen datasets make static-video): "
                                                    "train on its training frames, test on the stream")
    p.add_argument("--arch", help="mlp:W1,W2,... or cnn:TOKENS, e.g. cnn:c8,p2,dw,p2,fc64 "
                                  "(tokens cN, dw, pwN, pK, aK, fcN; default mlp:64,64)")
    p.add_argument("--weights", choices=ENCODINGS, help="weight encoding (default 4bitsym)")
    p.add_argument("--norm", choices=NORMS, help="static: calibrated multiplier+shift and ReLU; "
                                                 "shiftnorm: BitNetMCU's dynamic shift (default static)")
    p.add_argument("--target", choices=TARGETS, help="max78000-cnn: train a config of the MAX78000 accelerator's "
                   "layers (bitgen.nn.Max78000Layer / Max78000Add) on Q7 inputs; a layer it cannot take is refused")
    p.add_argument("--config", metavar="FILE", help="JSON or TOML file with options and/or 'layers'")
    p.add_argument("--epochs", type=count(1, 100000), help=f"training epochs (default {Recipe.epochs})")
    p.add_argument("--lr", type=_rate, help=f"peak learning rate of Adam (default {Recipe.lr})")
    p.add_argument("--batch-size", type=count(1, 1 << 20), help=f"default {Recipe.batch_size}")
    p.add_argument("--warmup", type=count(0, 100000), dest="float_warmup_epochs", metavar="EPOCHS",
                   help="float epochs (no rounding) before QAT (default 0)")
    p.add_argument("--augment", choices=("auto", "shift", "none"),
                   help="random 1-pixel shifts of image inputs (default auto: images of 16x16 or more)")
    p.add_argument("--weight-scale", choices=("absmean", "absmax", "mse"),
                   help="how float weights are scaled onto the levels (default absmean)")
    p.add_argument("--per-channel", action="store_true", default=None,
                   help="one weight scale per output channel")
    p.add_argument("--bias", action="store_true", default=None, help="give layers an integer bias")
    p.add_argument("--shift-only", action="store_true", default=None,
                   help="static norm as a pure shift (multiplier 1)")
    p.add_argument("--noise", type=SIGMA, metavar="SIGMA",
                   help="PixelRNN's noise-aware training: Gaussian noise of SIGMA (in ±1 products) before "
                        "every threshold after a sum of products, and noise_output (default 1) on recurrent "
                        "outputs (default 0: none)")
    p.add_argument("--seed", type=SEED, help="random seed (default 0); same seed, same model")
    p.add_argument("--threads", type=count(1, 256), help="CPU threads for PyTorch (default 2)")
    p.add_argument("--name", help="model name stored in the file (default: the output file's stem)")
    p.add_argument("-o", "--out", required=True, metavar="FILE", help="model file to write (model.pt)")


def _rate(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not 0 < v < 1e3:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"{text} is not a learning rate (a number above 0)")
    return v


@dataclass
class ConfigFile:
    """A --config file's keys besides the recipe's (Recipe) and the layers' (LayerOptions)."""

    arch: str | None = None
    layers: list[Any] | None = None  # bitgen.nn.sequential
    nodes: list[Any] | None = None  # bitgen.nn.graph
    states: list[Any] | None = None
    seed: int | None = None
    threads: int | None = None
    dataset: str | None = None
    data: str | None = None
    name: str | None = None
    change_threshold: int | None = None  # deploy every convolution change-based (bitgen.ir.change)
    task: str | None = None  # "classifier" (default) or "decoder": images from (class, latent), the die


def _read_config(path: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise TrainError(f"{path}: no such config file")
    try:
        if p.suffix.lower() == ".toml":
            import tomllib

            return tomllib.loads(p.read_text())
        d = json.loads(p.read_text())
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        raise TrainError(f"{path}: not valid {'TOML' if p.suffix.lower() == '.toml' else 'JSON'} "
                         f"({str(e).splitlines()[0]})") from None
    if not isinstance(d, dict):
        raise TrainError(f"{path}: the config must be an object of options")
    return d


_RECIPE_KEYS = ("epochs", "lr", "batch_size", "weight_decay", "schedule", "float_warmup_epochs",
                "augment", "calibrate", "noise", "noise_output")
_LAYER_KEYS = ("weights", "norm", "weight_scale", "per_channel", "bias", "multiplier_bits", "norm_per_channel",
               "statistic", "rms_factor", "first_weights", "last_weights")


def config_keys() -> frozenset[str]:
    """Every key a --config file may hold (bitgen sweep checks its spaces against them too)."""
    return frozenset(_RECIPE_KEYS + _LAYER_KEYS) | {f.name for f in fields(ConfigFile)}


def options(args: argparse.Namespace) -> dict[str, Any]:
    """Merge defaults, the config file and the command line (the command line wins)."""
    conf = _read_config(args.config) if args.config else {}
    # keys starting with "_" are comments (JSON has no other kind)
    conf = {k.replace("-", "_"): v for k, v in conf.items() if not k.startswith("_")}
    unknown = sorted(set(conf) - config_keys())
    if unknown:
        raise TrainError(f"{args.config}: unknown option(s) {', '.join(unknown)}")
    try:  # each value's type, against the dataclasses that declare them
        schema.check_fields({k: v for k, v in conf.items() if k in _RECIPE_KEYS}, Recipe)
        schema.check_fields({k: v for k, v in conf.items() if k in _LAYER_KEYS}, LayerOptions)
        schema.check_fields({k: v for k, v in conf.items() if k not in _RECIPE_KEYS and k not in _LAYER_KEYS},
                            ConfigFile)
    except schema.SchemaError as e:
        raise TrainError(f"{args.config}: {e}") from None
    merged = dict(DEFAULTS)
    merged.update(conf)
    if args.shift_only:
        merged["multiplier_bits"] = 0
    for key in ("dataset", "data", "arch", "weights", "norm", "epochs", "lr", "batch_size",
                "float_warmup_epochs", "augment", "weight_scale", "per_channel", "bias", "seed", "threads", "name",
                "noise"):
        v = getattr(args, key, None)
        if v is not None:
            merged[key] = v
    if "layers" in merged and "nodes" in merged:
        raise TrainError(f"{args.config}: give 'layers' (a stack) or 'nodes' (a graph), not both")
    if "states" in merged and "nodes" not in merged:
        raise TrainError(f"{args.config}: 'states' belong to a graph: give 'nodes' too")
    if args.arch is not None:
        merged.pop("layers", None)  # an explicit --arch replaces the file's stack
        merged.pop("nodes", None)
    if getattr(args, "stream", None) is not None:  # a stream file is an npz dataset
        if args.dataset not in (None, "npz") or args.data is not None:
            raise TrainError("--stream is the dataset: give it without --dataset/--data")
        merged["dataset"], merged["data"] = "npz", args.stream
    return merged


def recipe_of(opts: dict[str, Any]) -> Recipe:
    try:
        layer = LayerOptions(**{k: opts[k] for k in _LAYER_KEYS if k in opts})
        recipe = Recipe(layer=layer, **{k: opts[k] for k in _RECIPE_KEYS if k in opts})
    except TypeError as e:
        raise TrainError(f"bad training option ({e})") from None
    recipe.check()
    return recipe


def _build_model(opts: dict[str, Any], recipe: Recipe, spec: ir.InputSpec, n_classes: int):
    from .. import nn as bnn
    from .. import train

    for key, build in (("layers", bnn.sequential), ("nodes", lambda n: bnn.graph(n, opts.get("states")))):
        if key in opts:
            try:
                return build(opts[key])
            except (ValueError, TypeError) as e:
                raise TrainError(f"config '{key}': {str(e).splitlines()[0]}") from None
    return train.model_from_arch(str(opts["arch"]), spec.shape, n_classes, recipe.layer)


def run(args: argparse.Namespace) -> int:
    out = output_file(args.out, "-o")
    opts = options(args)
    recipe = recipe_of(opts)
    change = opts.get("change_threshold")
    if change is not None and (not isinstance(change, int) or isinstance(change, bool) or change < 0):
        raise TrainError(f"change_threshold must be a whole number 0 or more, got {change!r}")
    if not opts.get("dataset"):
        raise TrainError(f"--dataset is required ({', '.join(datasets.NAMES)})")
    if opts["dataset"] not in datasets.NAMES:
        raise TrainError(f"unknown dataset '{opts['dataset']}' (known: {', '.join(datasets.NAMES)})")
    if not 1 <= opts["threads"] <= 256 or not 0 <= opts["seed"] < 2**32:
        raise TrainError("threads must be in 1..256 and the seed in 0..2**32-1")
    task = opts.get("task") or "classifier"
    if task not in TASKS:
        raise TrainError(f"unknown task '{task}' (known: {', '.join(TASKS)})")
    target = getattr(args, "target", None)
    if target is not None and ("layers" not in opts and "nodes" not in opts or task != "classifier"):
        raise TrainError(f"--target {target} trains a classifier described by 'layers' or 'nodes' of "
                         "Max78000Layer / Max78000Add in a --config file (e.g. examples/ai8x-resnet.toml), "
                         "not an --arch string")
    if task == "decoder":
        return _run_decoder(args, opts, recipe, out)

    import torch

    from .. import golden, modelfile
    from ..nn import export
    from .. import train as tr

    torch.set_num_threads(int(opts["threads"]))
    name, data = opts["dataset"], opts.get("data")
    train_ds = datasets.load(name, data, split="train")
    test_ds = datasets.load(name, data, split="test")
    spec = train_ds.input if target is None else q7_input(train_ds)
    n_classes = len(train_ds.labels)
    held_out = test_ds.distinct_splits  # False: the reported figure is training accuracy

    with torch.device("meta"):  # its size first, without allocating it: mlp:99999999999 is refused, not built
        probe = _build_model(opts, recipe, spec, n_classes)
    params = sum(p.numel() for p in probe.parameters())
    if params > ir.limits.MAX_WEIGHT_VALUES:
        raise TrainError(f"the model has {params} parameters, over bitgen's limit of {ir.limits.MAX_WEIGHT_VALUES} "
                         "weight values (far beyond any microcontroller)")
    torch.manual_seed(int(opts["seed"]))  # initial weights
    model = _build_model(opts, recipe, spec, n_classes)
    model.input_spec = spec
    model.labels = list(train_ds.labels)
    first = export.to_ir(model)  # shapes chain and fit the data: fail before training, not after
    if target is not None:
        check_accelerator(first)
    datasets.check_fits(test_ds, spec)
    if bool(first.states) != bool(train_ds.frames):
        raise TrainError(f"dataset '{name}' holds clips of {train_ds.frames} frames; the model has no state"
                         if train_ds.frames else
                         f"the model has state (it runs over clips); dataset '{name}' holds single images "
                         "(use a clip dataset such as usps-clips)")

    x_train = train_ds.quantized(spec)
    x_test = test_ds.quantized(spec)
    clips = f" (clips of {train_ds.frames} frames)" if train_ds.frames else ""
    print(f"dataset {name}: {len(train_ds)} train, {len(test_ds)} test samples{clips}, input {spec.shape} "
          f"(scale {spec.scale:.6g}), {n_classes} classes")
    from_file = next((k for k in ("layers", "nodes") if k in opts), None)
    layer_kind = (f"weights {recipe.layer.weights}, norm {recipe.layer.norm}" if target is None else
                  f"{len(first.nodes)} accelerator layers ({target})")
    print(f"model: {opts.get('arch') if not from_file else from_file + ' from ' + str(args.config)}, "
          f"{layer_kind}, {sum(p.numel() for p in model.parameters())} parameters")
    start = time.perf_counter()
    hist = tr.fit(model, x_train, train_ds.y, recipe, seed=int(opts["seed"]))
    seconds = time.perf_counter() - start

    irm = export.to_ir(model)
    acc_torch = tr.accuracy(model, x_test, test_ds.y)
    acc_golden = float(np.mean(golden.predict(irm, x_test) == test_ds.y))
    which = "test" if held_out else "training (no separate test split)"
    meta = {
        "dataset": name, "data": None if data is None else str(data),
        "arch": opts.get("arch") if not from_file else "config",
        "weights": recipe.layer.weights, "norm": recipe.layer.norm, "seed": int(opts["seed"]),
        "recipe": recipe.to_dict(),
        "accuracy": {"torch": acc_torch, "golden": acc_golden, "split": "test" if held_out else "train",
                     "samples": len(test_ds)},
        "train_seconds": round(seconds, 2), "final_train_loss": hist.loss[-1],
    }
    if target is not None:
        meta["target"] = target
    change = opts.get("change_threshold")  # deploy every convolution change-based (bitgen.ir.change)
    try:
        saved = modelfile.save(model, out, name=opts.get("name") or _c_name(out.stem), meta=meta,
                               transform=None if change is None else lambda m: ir.change.with_thresholds(m, change))
    except OSError as e:
        raise BitgenError(f"cannot write {out}: {e.strerror or e}") from None
    print(f"accuracy on {len(test_ds)} {which} samples: torch {100 * acc_torch:.2f} %  "
          f"golden {100 * acc_golden:.2f} %   ({seconds:.1f} s)")
    print(f"wrote {out} (model {saved.digest()[:16]}, {len(saved.layers)} IR layers, "
          f"{saved.macs()} MACs)")
    return 0


TASKS = ("classifier", "decoder")


def q7_input(ds: datasets.Dataset) -> ir.InputSpec:
    """The accelerator's input: Q7 values, the dataset's full range onto -128..127. ai8x maps
    pixels p in 0..1 to round((p - 0.5) * 256) clamped (``ai8x.normalize``); a bitgen dataset's
    raw values span +-127 * scale (USPS: pixels -1..1, scale 1/127), so the same map is raw
    times 128 / (127 * scale) (USPS: round(128 * pixel), clamped to -128..127). A dataset that
    is already int8 (npz) is taken as it is."""
    if ds.prequantized:
        return ds.input
    return ir.InputSpec(ds.input.shape, scale=ds.input.scale * 127 / 128, zero_point=ds.input.zero_point)


def check_accelerator(model: ir.Model) -> None:
    """Refuse (one line) a model the MAX78000's accelerator cannot run: a layer that is not an
    accelerator layer, a sequential chain that bitgen's layer programs do not take or that does
    not fit (the allocator's own checks), a graph over the per-layer hardware limits."""
    from ..backends.max78000 import allocate, limits

    for node in model.nodes:
        if not isinstance(node.op, ir.Max78000Layer):
            raise TrainError(f"--target max78000-cnn: layer '{node.output}' is {node.op.kind}, not an accelerator "
                             "layer (use Max78000Layer and Max78000Add)")
    if model.is_sequential:
        allocate.plan(model)  # NotSupported / DoesNotFit: one line naming the layer and resource
        return
    # a graph (residual adds): the per-layer hardware limits; bitgen's layer programs run chains only yet
    types = model.validate()
    named = {ir.INPUT: model.input_type(), **{n.output: t for n, t in zip(model.nodes, types)}}
    shapes = []
    for i, (node, t) in enumerate(zip(model.nodes, types)):
        shape = tuple(named[node.inputs[0]].shape)
        if len(shape) != 3 or len(t.shape) != 3:
            raise TrainError(f"--target max78000-cnn: layer '{node.output}' reads or writes {shape} -> {t.shape}, "
                             "not (C, H, W)")
        for c, what in ((shape[0], "input"), (t.shape[0], "output")):
            if c > limits.PROCESSORS * 16:
                raise TrainError(f"--target max78000-cnn: layer '{node.output}' has {c} {what} channels (the "
                                 f"accelerator takes at most {limits.PROCESSORS * 16})")
        if t.dtype == "int32" and i != len(model.nodes) - 1:
            raise TrainError(f"--target max78000-cnn: layer '{node.output}' has a 32-bit output that feeds another "
                             "layer (only the last layer may be 32-bit)")
        shapes.append(limits.LayerShape(i, node.output, node.op, shape, node.op.pooled_shape(shape),
                                        tuple(t.shape)))
    report = limits.FitReport()
    limits.check(shapes, report)
    if not report.fits:
        raise TrainError(report.summary())


def _run_decoder(args: argparse.Namespace, opts: dict[str, Any], recipe: Recipe, out: Path) -> int:
    """Train a conditional decoder (``task = "decoder"``): its input is the one-hot class and
    the latent (bitgen.dice.decoder_inputs), its output the image, trained by the mean squared
    error against the data set's image of that class and latent."""
    if "nodes" not in opts and "layers" not in opts:
        raise TrainError("a decoder is described by its 'nodes' (or 'layers') in the --config file")
    if opts.get("change_threshold") is not None or opts.get("states"):
        raise TrainError("a decoder has neither change thresholds nor states")
    name, data = opts["dataset"], opts.get("data")
    train_ds = datasets.load(name, data, split="train")
    if train_ds.angle is None:
        raise TrainError(f"dataset '{name}' has no latent label to condition a decoder on (use --dataset dice)")
    test_ds = datasets.load(name, data, split="test")

    import torch

    from .. import dice, golden, modelfile
    from .. import train as tr
    from ..nn import export

    torch.set_num_threads(int(opts["threads"]))
    n_classes = len(train_ds.labels)
    spec = ir.InputSpec((n_classes + 1,), scale=dice.INPUT_SCALE)
    torch.manual_seed(int(opts["seed"]))
    model = _build_model(opts, recipe, spec, n_classes)
    params = sum(p.numel() for p in model.parameters())
    if params > ir.limits.MAX_WEIGHT_VALUES:
        raise TrainError(f"the model has {params} parameters, over bitgen's limit of {ir.limits.MAX_WEIGHT_VALUES}")
    model.input_spec = spec
    first = export.to_ir(model)
    image_shape = tuple(train_ds.x.shape[1:])
    got = first.validate()[-1].shape
    if math.prod(got) != math.prod(image_shape):
        raise TrainError(f"the decoder's output {tuple(got)} is not an image of the data set's shape {image_shape}")

    def pairs(ds: datasets.Dataset) -> tuple[np.ndarray, np.ndarray]:
        return dice.decoder_inputs(ds.y, dice.latent_of(ds.angle)), dice.pixels(ds.x).astype(np.float32)

    x_train, y_train = pairs(train_ds)
    x_test, y_test = pairs(test_ds)
    print(f"dataset {name}: {len(train_ds)} train, {len(test_ds)} test images {image_shape}, {n_classes} classes "
          f"and a latent: decoder input {spec.shape}")
    print(f"model: nodes from {args.config}, {params} parameters")
    start = time.perf_counter()
    hist = tr.fit_decoder(model, x_train, y_train, recipe, seed=int(opts["seed"]))
    seconds = time.perf_counter() - start
    irm = export.to_ir(model)
    made = golden.run(irm, x_test).reshape(y_test.shape).astype(np.float64)
    mse = float(np.mean(((made - y_test) / 127.0) ** 2))
    meta = {
        "task": "decoder", "dataset": name, "data": None if data is None else str(data), "arch": "config",
        "seed": int(opts["seed"]), "recipe": recipe.to_dict(),
        "decoder": {"labels": list(train_ds.labels), "latent": "angle", "image_shape": list(image_shape)},
        "test_mse": mse, "train_seconds": round(seconds, 2), "final_train_loss": hist.loss[-1],
    }
    try:
        saved = modelfile.save(model, out, name=opts.get("name") or _c_name(out.stem), meta=meta)
    except OSError as e:
        raise BitgenError(f"cannot write {out}: {e.strerror or e}") from None
    print(f"mean squared error on {len(test_ds)} test images (golden, pixels 0..1): {mse:.4f}   ({seconds:.1f} s)")
    print(f"wrote {out} (model {saved.digest()[:16]}, {len(saved.layers)} IR layers, {saved.macs()} MACs)")
    return 0


def _c_name(stem: str) -> str:
    """A C identifier from the file name ('model' when nothing usable is left)."""
    s = "".join(c if c.isalnum() or c == "_" else "_" for c in stem)
    return s if s and not s[0].isdigit() else "model"
