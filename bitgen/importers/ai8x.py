"""ai8x networks (ADI's MAX78000 flow) as bitgen IR: an izer network YAML plus the hardware
integers of each layer (from a quantized ai8x checkpoint, or from izer's own logs) become a graph
of :class:`bitgen.ir.Max78000Layer` nodes with the accelerator's exact arithmetic.

The wiring follows izer: each layer reads the layer before it, or its ``in_sequences`` (``-1``:
the network input); several inputs of a layer without an element-wise op are concatenated along
channels; an element-wise layer's operands are its inputs, or, when it reads one tensor, that
tensor split into ``operands`` equal channel blocks (``packed_operands``).
"""
from __future__ import annotations

import collections
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import ir
from ..backends.max78000.network_yaml import LayerSpec, NetworkSpec
from .errors import ModelImportError


class Ai8xImportError(ModelImportError):
    pass


def layer_op(ly: LayerSpec, weight: np.ndarray | None, bias: np.ndarray | None, output_shift: int | None,
             avg_pool_rounding: bool, packed: bool) -> ir.Max78000Layer:
    """The op of one YAML layer with its hardware weight (conv2d (O, C, k, k), conv1d (O, C, k),
    linear (O, N)), bias bytes and the YAML/checkpoint output shift (None: 0)."""
    if ly.has_weights and weight is None:
        raise Ai8xImportError(f"layer {ly.index} ({ly.operation}) has no weights")
    pooling = ly.pool != "none" or ly.pool_stride != (1, 1)
    pool = ly.pool if ly.pool != "none" else ("max" if pooling else "none")
    return ir.Max78000Layer(
        operation=ly.operation, weight=weight if ly.has_weights else None, weight_bits=ly.quantization,
        bias=bias if ly.has_weights else None,
        output_shift=0 if (output_shift is None or not ly.has_weights) else int(output_shift),
        activation=ly.activation, output_width=ly.output_width, padding=ly.pad, dilation=ly.dilation,
        output_padding=ly.output_pad if ly.operation == "convtranspose2d" else 1,
        flatten=ly.flatten, pool=pool, pool_size=ly.pool_size if pooling else (1, 1),
        pool_stride=ly.pool_stride if pooling else (1, 1), avg_pool_rounding=avg_pool_rounding and ly.pool == "avg",
        eltwise=ly.eltwise, operands=ly.operands, pool_first=ly.pool_first, packed_operands=packed,
        name=ly.name or f"layer{ly.index}")


def build_model(net: NetworkSpec, input_shape: Sequence[int], weights: Sequence[np.ndarray | None],
                biases: Sequence[np.ndarray | None], output_shifts: Sequence[int | None] | None = None,
                avg_pool_rounding: bool = False, name: str = "ai8x", labels: list[str] | None = None) -> ir.Model:
    """The IR of ``net``: ``weights``/``biases`` per YAML layer (None for a passthrough layer).
    Raises Ai8xImportError naming the first layer bitgen cannot take."""
    refusals = net.refusals()
    if refusals:
        raise Ai8xImportError(f"not supported: {refusals[0]}")
    nodes: list[ir.Node] = []
    out_names = []
    shifts = list(output_shifts) if output_shifts is not None else [None] * len(net.layers)
    for ly in net.layers:
        i = ly.index
        if ly.in_sequences is not None:
            sources = ly.in_sequences
        else:
            sources = [i - 1] if i > 0 else [-1]
        names = []
        for s in sources:
            if s >= i or s < -1:
                raise Ai8xImportError(f"layer {i}: in_sequences {s} is not an earlier layer")
            names.append(ir.INPUT if s == -1 else out_names[s])
        packed = False
        if ly.eltwise != "none":
            if len(names) == 1:
                packed = ly.operands > 1
            elif len(names) != ly.operands:
                raise Ai8xImportError(f"layer {i}: {ly.operands} operands but {len(names)} in_sequences")
        elif len(names) > 1:  # concatenated along channels
            cur = names[0]
            for k, other in enumerate(names[1:]):
                out = f"layer{i}_concat{k}"
                nodes.append(ir.Node(ir.Concat(name=out), (cur, other), out))
                cur = out
            names = [cur]
        op = layer_op(ly, weights[i], biases[i], shifts[i], avg_pool_rounding, packed)
        out = f"layer{i}"
        nodes.append(ir.Node(op, tuple(names), out))
        out_names.append(out)
    # izer runs to the last layer; layers nothing reads besides it are an error in bitgen's IR
    model = ir.Model(ir.InputSpec(tuple(int(v) for v in input_shape), scale=1 / 128), nodes=nodes, name=name,
                     labels=labels)
    try:
        model.validate()
    except ir.IRError as e:
        raise Ai8xImportError(str(e)) from None
    return model


# ------------------------------------------------------------------ quantized ai8x checkpoints
class _Ignored:
    """Stands in for an object of a class the checkpoint names but bitgen does not need (the
    optimizer, a compression schedule): built and filled without running any code of that class."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __setstate__(self, state) -> None:
        pass

    def __call__(self, *args, **kwargs):
        return _Ignored()


# Plain containers a checkpoint's extras name (an optimizer's state): loaded as themselves
_CONTAINERS = {"builtins.dict": dict, "builtins.list": list, "builtins.set": set, "builtins.tuple": tuple,
               "collections.defaultdict": collections.defaultdict, "collections.OrderedDict": collections.OrderedDict}


def load_checkpoint(path: str | Path) -> dict:
    """The dict of a ``.pth.tar`` checkpoint, read with PyTorch's weights-only unpickler: tensors
    and plain containers load; an object of any other class the file names (an SGD optimizer,
    ...) becomes an inert placeholder, so no code from the file runs."""
    import pickle
    import warnings

    import torch
    import torch.serialization as ts

    path = Path(path)
    try:
        unsafe = ts.get_unsafe_globals_in_checkpoint(str(path))
    except Exception as e:  # not a torch.save archive
        raise Ai8xImportError(f"{path}: not a PyTorch checkpoint ({_first_line(e)})") from None
    stand_ins = [(_CONTAINERS.get(name) or type(f"_Ignored_{i}", (_Ignored,), {}), name)
                 for i, name in enumerate(unsafe)]
    try:
        with warnings.catch_warnings(), ts.safe_globals(stand_ins):
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, TypeError, AttributeError) as e:
        why = next((ln.strip() for ln in str(e).splitlines() if "GLOBAL" in ln), None) or _first_line(e)
        raise Ai8xImportError(f"{path}: the checkpoint does not load safely ({why[:200]})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
        raise Ai8xImportError(f"{path}: an ai8x checkpoint is a dict with a `state_dict`")
    return obj


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]


def _integers(t, what: str) -> np.ndarray:
    a = t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise Ai8xImportError(f"{what} holds non-integer values: give the quantized checkpoint "
                                  "(ai8x-synthesis quantize.py's output, the '-q' file)")
    elif a.dtype.kind not in "iub":
        raise Ai8xImportError(f"{what} is not numeric ({a.dtype})")
    return a.astype(np.int64)


def checkpoint_layers(state: dict, net: NetworkSpec, source: str) -> tuple[list, list, list]:
    """Hardware weights, bias bytes and output shifts per YAML layer from a quantized
    checkpoint's ``state_dict``, as izer pairs them (``../shared/reference/max78000.md`` sections
    1-2): the state dict's multi-dimensional ``weight`` entries, in order, go to the layers that
    have weights; a layer's ``weight_bits`` and ``output_shift`` sit beside it (``conv1.op.weight``
    -> ``conv1.weight_bits``); the bias is ``floor(bias / 2**(weight_bits - 1))``; the YAML's
    ``quantization`` and ``output_shift`` override the checkpoint's."""
    n = len(net.layers)
    weights: list = [None] * n
    biases: list = [None] * n
    shifts: list = [None] * n
    targets = iter([ly for ly in net.layers if ly.has_weights])
    for key, value in state.items():
        parts = key.rsplit(".", 2)
        if parts[-1] != "weight" or len(parts) < 2:
            continue
        if getattr(value, "ndim", 0) < 2:
            if len(parts) == 3 and parts[1] == "bn":
                raise Ai8xImportError(f"{source}: `{key}` is a batch-norm weight; fold batch norm into the "
                                      "convolutions before quantizing (ai8x-training --fuse-bn)")
            continue
        ly = next(targets, None)
        if ly is None:
            break  # izer ignores weights beyond the YAML's layers
        layer = parts[0]
        w = _integers(value, f"{source}: `{key}`")
        wb_key = f"{layer}.weight_bits"
        wb = int(_integers(state[wb_key], wb_key).reshape(-1)[0]) if wb_key in state else 8
        wb = wb or 8
        bits = ly.quantization if ly.quantization_given else (1 if not w.any() else wb)
        if bits not in (1, 2, 4, 8):
            raise Ai8xImportError(f"{source}: `{wb_key}` is {bits}; the MAX78000 takes 1, 2, 4 or 8-bit weights")
        ly.quantization = bits
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        if w.min() < lo or w.max() > hi:
            raise Ai8xImportError(f"{source}: `{key}` (layer {ly.index}) holds {w.min()}..{w.max()}, outside the "
                                  f"{bits}-bit range {lo}..{hi}")
        if ly.operation == "convtranspose2d":  # the hardware's kernel: flipped, in and out swapped
            w = np.flip(w, axis=(2, 3)).swapaxes(0, 1)
        want = {"linear": 2, "conv1d": 3}.get(ly.operation, 4)
        if w.ndim != want:
            raise Ai8xImportError(f"{source}: `{key}` has shape {tuple(w.shape)}; layer {ly.index} "
                                  f"({ly.operation}) needs a {want}-D weight")
        if ly.operation in ("conv2d", "convtranspose2d", "conv1d") and w.shape[2:] != (ly.kernel_size,) * (want - 2):
            raise Ai8xImportError(f"{source}: `{key}` has kernel {tuple(w.shape[2:])}; layer {ly.index}'s "
                                  f"kernel_size is {ly.kernel_size}")
        weights[ly.index] = np.ascontiguousarray(w)
        bias_key = key[: -len("weight")] + "bias"
        if bias_key in state:
            b = _integers(np.floor(state[bias_key].detach().cpu().numpy().astype(np.float64) / 2 ** (wb - 1)),
                          f"{source}: `{bias_key}`")
            if b.min() < -128 or b.max() > 127:
                raise Ai8xImportError(f"{source}: `{bias_key}` gives bias bytes {b.min()}..{b.max()}, outside "
                                      "-128..127")
            biases[ly.index] = b
        shift_key = f"{layer}.output_shift"
        if ly.output_shift is not None:
            shifts[ly.index] = ly.output_shift
        elif shift_key in state:
            shifts[ly.index] = int(_integers(state[shift_key], shift_key).reshape(-1)[0])
    missing = [ly.index for ly in net.layers if ly.has_weights and weights[ly.index] is None]
    if missing:
        raise Ai8xImportError(f"{source}: the checkpoint has no weights for layer {missing[0]} "
                              f"({sum(ly.has_weights for ly in net.layers)} layers with weights in the YAML)")
    return weights, biases, shifts


# ai8x-training's dataset input shapes (its datasets/*.py), for a YAML that names one
DATASET_SHAPES = {"mnist": (1, 28, 28), "fashionmnist": (1, 28, 28), "cifar10": (3, 32, 32),
                  "cifar100": (3, 32, 32)}


def read(checkpoint: str | Path, yaml_path: str | Path, input_shape: Sequence[int] | None = None,
         avg_pool_rounding: bool = False) -> ir.Model:
    """bitgen's IR of an ai8x network: a quantized checkpoint (quantize.py's output) and the
    izer network YAML that describes it. ``input_shape`` (C, H, W) or (C, L) is needed unless the
    YAML's ``dataset`` is one of DATASET_SHAPES."""
    from ..backends.max78000 import network_yaml

    checkpoint, yaml_path = Path(checkpoint), Path(yaml_path)
    for p in (checkpoint, yaml_path):
        if not p.is_file():
            raise Ai8xImportError(f"{p}: no such file")
    try:
        text = yaml_path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise Ai8xImportError(f"{yaml_path}: not readable ({_first_line(e)})") from None
    net = network_yaml.parse(text, str(yaml_path))
    refusals = net.refusals()
    if refusals:
        raise Ai8xImportError(f"{yaml_path}: not supported: {refusals[0]}")
    ck = load_checkpoint(checkpoint)
    arch = ck.get("arch")
    if isinstance(arch, str) and arch.lower() != net.arch.lower():
        raise Ai8xImportError(f"{yaml_path}: arch '{net.arch}' does not match the checkpoint's '{arch}'")
    weights, biases, shifts = checkpoint_layers(ck["state_dict"], net, str(checkpoint))
    if input_shape is None:
        input_shape = DATASET_SHAPES.get(net.dataset.lower().replace("_", ""))
        if input_shape is None:
            raise Ai8xImportError(f"{yaml_path}: dataset '{net.dataset}' has no known input shape; give "
                                  "--input-shape C,H,W (or C,L for conv1d)")
    return build_model(net, input_shape, weights, biases, shifts, avg_pool_rounding=avg_pool_rounding,
                       name=checkpoint.name.split(".")[0])
