"""Architecture <-> plain data, so a QAT model can be stored without pickling code.

:func:`to_spec` describes a module tree as dicts, lists, strings and numbers (safe for
``torch.load(weights_only=True)``); :func:`from_spec` rebuilds the same modules, whose
``state_dict`` then loads the tensors. Only known layer types are accepted, so a file can
never name a class to instantiate.

Format::

    {"format": "bitgen-nn", "version": 1,
     "module": {"type": "Sequential", "names": [...], "layers": [<module>, ...]}
             | {"type": "Graph", "nodes": [{"name": str, "inputs": [str, ...], "module": <module>}, ...],
                "states": [{"name": str, "source": str, "shape": [...], "init": int, "dtype": str}, ...]},
     "input": {"shape": [...], "scale": float, "zero_point": int} | None,
     "labels": [str, ...] | None}

and each ``<module>`` is ``{"type": NAME, "args": {constructor keyword arguments}}`` (or a
Sequential or Graph).
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from .. import ir
from .binary import Mul, Sign, Tile
from .graph import Add, Concat, Graph, GraphState, Sub
from .max78000 import Max78000Add, Max78000Layer
from .layers import QuantConv2d, QuantConvTranspose2d, QuantLinear
from .recurrent import BinaryConvRNN
from .norms import Requant, Shift, ShiftNorm
from .pooling import AvgPool2d

FORMAT = "bitgen-nn"
VERSION = 1


def _torch_args(m: torch.nn.Module) -> dict:
    def plain(v: Any) -> Any:
        return list(v) if isinstance(v, tuple) else v

    if isinstance(m, torch.nn.MaxPool2d):
        keys = ("kernel_size", "stride", "padding", "dilation", "ceil_mode")
    elif isinstance(m, torch.nn.AvgPool2d):
        keys = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")
    elif isinstance(m, torch.nn.Flatten):
        keys = ("start_dim", "end_dim")
    elif isinstance(m, torch.nn.Dropout):
        keys = ("p",)
    elif isinstance(m, torch.nn.Upsample):
        keys = ("scale_factor", "mode")
    elif isinstance(m, torch.nn.Unflatten):
        keys = ("dim", "unflattened_size")
    else:
        keys = ()
    return {k: plain(getattr(m, k)) for k in keys}


# type name -> (class, how to read its constructor arguments)
_TYPES: dict[str, tuple[type, Callable[[Any], dict]]] = {
    "QuantLinear": (QuantLinear, lambda m: m.spec()),
    "QuantConv2d": (QuantConv2d, lambda m: m.spec()),
    "QuantConvTranspose2d": (QuantConvTranspose2d, lambda m: m.spec()),
    "Max78000Layer": (Max78000Layer, lambda m: m.spec()),
    "Max78000Add": (Max78000Add, lambda m: m.spec()),
    "Add": (Add, lambda m: m.spec()),
    "Sub": (Sub, lambda m: m.spec()),
    "Concat": (Concat, lambda m: {}),
    "Sign": (Sign, lambda m: m.spec()),
    "Mul": (Mul, lambda m: m.spec()),
    "Tile": (Tile, lambda m: m.spec()),
    "BinaryConvRNN": (BinaryConvRNN, lambda m: m.spec()),
    "Upsample": (torch.nn.Upsample, _torch_args),
    "Unflatten": (torch.nn.Unflatten, _torch_args),
    "Requant": (Requant, lambda m: m.spec()),
    "ShiftNorm": (ShiftNorm, lambda m: m.spec()),
    "Shift": (Shift, lambda m: m.spec()),
    "RoundingAvgPool2d": (AvgPool2d, lambda m: m.spec()),
    "ReLU": (torch.nn.ReLU, lambda m: {}),
    "MaxPool2d": (torch.nn.MaxPool2d, _torch_args),
    "AvgPool2d": (torch.nn.AvgPool2d, _torch_args),
    "Flatten": (torch.nn.Flatten, _torch_args),
    "Identity": (torch.nn.Identity, lambda m: {}),
    "Dropout": (torch.nn.Dropout, _torch_args),
}
_NAME_OF = {cls: name for name, (cls, _) in _TYPES.items()}


def _module_spec(m: torch.nn.Module, where: str) -> dict:
    if type(m) is Graph:
        return {"type": "Graph", "nodes": [
            {"name": name, "inputs": list(inputs), "module": _module_spec(m.layers[name], f"{where}.{name}" if where else name)}
            for name, inputs in m.wiring], "states": [st.spec() for st in m.states]}
    if type(m) is torch.nn.Sequential:
        names = [n for n, _ in m.named_children()]
        return {"type": "Sequential", "names": names,
                "layers": [_module_spec(c, f"{where}.{n}" if where else n) for n, c in m.named_children()]}
    name = _NAME_OF.get(type(m))
    if name is None:
        from .export import ExportError

        raise ExportError(f"layer '{where}': cannot describe {type(m).__name__} as plain data "
                          "(only bitgen.nn layers, ReLU, MaxPool2d, AvgPool2d, Flatten, Upsample, "
                          "Dropout, Identity, nn.Sequential and bitgen.nn.Graph)")
    return {"type": name, "args": _TYPES[name][1](m)}


def input_spec_of(module: torch.nn.Module) -> ir.InputSpec | None:
    """The input specification a module carries in its ``input_spec`` attribute, if any."""
    spec = getattr(module, "input_spec", None)
    if spec is None or isinstance(spec, ir.InputSpec):
        return spec
    if isinstance(spec, dict):
        return ir.InputSpec(tuple(spec["shape"]), spec.get("scale", 1 / 127), spec.get("zero_point", 0))
    return ir.InputSpec(tuple(spec))  # a bare shape


def to_spec(module: torch.nn.Module) -> dict:
    """Plain-data description of ``module`` (see the module docstring)."""
    spec = input_spec_of(module)
    labels = getattr(module, "labels", None)
    return {
        "format": FORMAT,
        "version": VERSION,
        "module": _module_spec(module, ""),
        "input": None if spec is None else {"shape": list(spec.shape), "scale": spec.scale,
                                            "zero_point": spec.zero_point},
        "labels": None if labels is None else [str(s) for s in labels],
    }


def _build(d: dict) -> torch.nn.Module:
    kind = d["type"]
    if kind == "Graph":
        return Graph([(n["name"], _build(n["module"]), list(n["inputs"])) for n in d["nodes"]],
                     states=_states(d.get("states") or []))
    if kind == "Sequential":
        from collections import OrderedDict

        return torch.nn.Sequential(OrderedDict(
            (str(n), _build(c)) for n, c in zip(d["names"], d["layers"])))
    if kind not in _TYPES:
        raise ValueError(f"unknown layer type '{kind}' in the architecture")
    args = {k: (tuple(v) if isinstance(v, list) else v) for k, v in (d.get("args") or {}).items()}
    return _TYPES[kind][0](**args)


def sequential(layers: list[dict]) -> torch.nn.Sequential:
    """An ``nn.Sequential`` from a list of ``{"type": NAME, "args": {...}}`` (optional
    ``"name"``), the per-module format above; raises ValueError/TypeError on a bad entry."""
    if not isinstance(layers, list) or not layers:
        raise ValueError("'layers' must be a non-empty list of {\"type\": ..., \"args\": {...}}")
    names = [str(d.get("name", i)) if isinstance(d, dict) else str(i) for i, d in enumerate(layers)]
    for d in layers:
        if not isinstance(d, dict) or "type" not in d:
            raise ValueError(f"layer entry {d!r} has no 'type'")
    return _build({"type": "Sequential", "names": names,
                   "layers": [{k: v for k, v in d.items() if k != "name"} for d in layers]})


def _states(states: list) -> list[GraphState]:
    if not isinstance(states, list):
        raise ValueError("'states' must be a list of {\"name\": ..., \"source\": ..., \"shape\": [...], \"init\": ...}")
    out = []
    for d in states:
        if not isinstance(d, dict) or not {"name", "source", "shape"} <= set(d):
            raise ValueError(f"state entry {d!r} needs 'name', 'source' and 'shape'")
        unknown = sorted(set(d) - {"name", "source", "shape", "init", "dtype"})
        if unknown:
            raise ValueError(f"state '{d['name']}': unknown key(s) {', '.join(unknown)}")
        if not isinstance(d["shape"], list) or not all(isinstance(v, int) for v in d["shape"]):
            raise ValueError(f"state '{d['name']}': 'shape' must be a list of integers")
        if not isinstance(d.get("init", 0), int):
            raise ValueError(f"state '{d['name']}': 'init' must be an integer")
        out.append(GraphState(**d))
    return out


def graph(nodes: list[dict], states: list[dict] | None = None) -> Graph:
    """A :class:`Graph` from a list of ``{"name": ..., "type": NAME, "args": {...}, "inputs": [...]}``
    (a config file's ``nodes``): ``inputs`` defaults to the node before (the first: ``input``),
    ``name`` to the node's index; ``states`` as :class:`GraphState`'s keyword dicts (a config
    file's ``states``). Raises ValueError/TypeError on a bad entry."""
    if not isinstance(nodes, list) or not nodes:
        raise ValueError("'nodes' must be a non-empty list of {\"name\": ..., \"type\": ..., \"inputs\": [...]}")
    built, prev = [], "input"
    for i, d in enumerate(nodes):
        if not isinstance(d, dict) or "type" not in d:
            raise ValueError(f"node entry {d!r} has no 'type'")
        name = str(d.get("name", i))
        inputs = d.get("inputs", [prev])
        if isinstance(inputs, str) or not isinstance(inputs, list):
            raise ValueError(f"node '{name}': 'inputs' must be a list of tensor names")
        module = _build({k: v for k, v in d.items() if k not in ("name", "inputs")})
        built.append((name, module, [str(v) for v in inputs]))
        prev = name
    return Graph(built, states=_states(states or []))


def from_spec(spec: dict) -> torch.nn.Module:
    """Rebuild the module described by :func:`to_spec` (weights untrained: load a state_dict)."""
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise ValueError("not a bitgen.nn architecture description")
    if int(spec.get("version", 0)) > VERSION:
        raise ValueError(f"architecture format version {spec.get('version')} is newer than this bitgen")
    module = _build(spec["module"])
    if spec.get("input"):
        i = spec["input"]
        module.input_spec = ir.InputSpec(tuple(i["shape"]), i["scale"], i["zero_point"])
    if spec.get("labels") is not None:
        module.labels = list(spec["labels"])
    return module
