"""The model: an input specification and its layers, validation and the model file's data."""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import schema
from . import limits
from ..ops.base import Op
from ..ops.registry import OPS
from .types import DTYPE_RANGE, INT8, IRError, TensorType

FORMAT = "bitgen-ir"
VERSION = 2  # 1: a list of layers (sequential); 2: a graph of nodes


@dataclass
class InputSpec:
    """How raw values become the model's int8 input.

    ``q = clamp(floor(raw / scale + 0.5) + zero_point, -128, 127)``, raw reshaped to ``shape``.
    ``scale`` is the only float in a model and is not part of the integer computation.
    """

    shape: tuple[int, ...]
    scale: float = 1.0 / 127.0
    zero_point: int = 0

    def __post_init__(self) -> None:
        self.shape = tuple(int(s) for s in self.shape)
        self.scale = float(self.scale)
        self.zero_point = int(self.zero_point)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def quantize(self, raw: np.ndarray) -> np.ndarray:
        """Raw samples (N, ...) with prod(...) == size -> int8 array (N, *shape)."""
        raw = np.asarray(raw, dtype=np.float64)
        if raw.ndim == 0 or raw[0].size != self.size:
            got = raw.shape[1:] if raw.ndim else ()
            raise IRError(
                f"input has {math.prod(got)} values per sample {tuple(got)}, "
                f"the model expects {self.size} {self.shape}"
            )
        q = np.floor(raw / self.scale + 0.5) + self.zero_point
        return np.clip(q, -128, 127).astype(np.int8).reshape((raw.shape[0],) + self.shape)


INPUT = "input"  # the name of the model input tensor


@dataclass
class IRFile:
    """What :meth:`Model.to_dict` writes and :meth:`Model.from_dict` accepts (a schema for
    :mod:`bitgen.schema`; each layer is checked against its op's own fields)."""

    format: str
    input: dict[str, Any]  # InputSpec's fields
    version: int = 1
    name: str = "model"
    labels: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    layers: list[Any] | None = None  # version 1: a sequence, each {"kind": ..., op fields}
    nodes: list[Any] | None = None  # version 2: a graph, each also {"inputs": [...], "output": ...}
    states: list[Any] | None = None  # State's fields


@dataclass
class Wiring:
    """The tensors a graph node reads and writes (beside its op's fields)."""

    inputs: tuple[str, ...]
    output: str


@dataclass(eq=False)
class Node:
    """One op of a graph, the tensors it reads (by name, in the order the op takes them) and
    the name of the tensor it writes."""

    op: Op
    inputs: tuple[str, ...]
    output: str

    def __post_init__(self) -> None:
        self.inputs = tuple(str(v) for v in self.inputs)
        self.output = str(self.output)


@dataclass(eq=False)
class State:
    """A tensor read in frame t that was written in frame t - 1: recurrent cells, stream models.

    Nodes read it by ``name`` like any tensor. Before the first frame every element is
    ``init``; at the end of each frame it takes the value of tensor ``source`` (which must have
    its ``shape`` and ``dtype``). A cycle in a model is only possible through a state.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    source: str
    init: int = 0

    def __post_init__(self) -> None:
        self.name, self.source, self.dtype = str(self.name), str(self.source), str(self.dtype)
        self.shape = tuple(int(v) for v in self.shape)
        self.init = int(self.init)


class Model:
    """An input specification and a graph of integer ops over named tensors.

    The nodes are in execution order; each reads the model input (``"input"``), a
    :class:`State`, or tensors that earlier nodes wrote, and the last node writes the model
    output. A sequential model is the special case where each node reads the one before it:
    ``Model(input, layers=[...])`` builds it, and ``model.layers`` lists the ops of any model in
    execution order. A model with states runs over sequences of frames (``golden.run_sequence``).
    """

    def __init__(self, input: InputSpec, layers: list[Op] | None = None, labels: list[str] | None = None,
                 name: str = "model", meta: dict[str, Any] | None = None, *, nodes: list[Node] | None = None,
                 states: list[State] | None = None):
        if (layers is None) == (nodes is None):
            raise IRError("give a model either layers (a sequence) or nodes (a graph)")
        self.input = input
        self.nodes = list(nodes) if nodes is not None else chain(layers or [])
        self.states = list(states or [])
        self.labels = labels
        self.name = name
        self.meta = dict(meta or {})

    @property
    def layers(self) -> list[Op]:
        return [n.op for n in self.nodes]

    @layers.setter
    def layers(self, ops: list[Op]) -> None:
        if not self.is_sequential:
            raise IRError("a graph's ops cannot be replaced by a sequence; edit model.nodes")
        self.nodes = chain(list(ops))

    @property
    def is_sequential(self) -> bool:
        """Each node reads the output of the node before it (the first: the model input)."""
        prev = INPUT
        for n in self.nodes:
            if n.inputs != (prev,):
                return False
            prev = n.output
        return not self.states

    # ---------------------------------------------------------------- checking
    def validate(self) -> list[TensorType]:
        """Infer and check the type of every node's output, in order; raises IRError (one line)."""
        return self.infer_types()[0]

    def infer_types(self) -> tuple[list[TensorType], dict[str, TensorType]]:
        """(every node's output type, every state's type). A state's interval holds its initial
        value and every value its source can take, found by iterating to a fixed point (after 16
        rounds without one, the whole range of its dtype)."""
        if not self.nodes:
            raise IRError("model has no layers")
        limits.check_total(len(self.nodes), limits.MAX_NODES, "layers", "model")
        states = self._check_states()
        for rounds in range(18):
            out = self._infer(states)
            sources = {n.output: t for n, t in zip(self.nodes, out)}
            grown = {}
            for st in self.states:
                t, src = states[st.name], sources[st.source]
                if src.shape != st.shape or src.dtype != st.dtype:
                    raise IRError(f"state '{st.name}' is {st.dtype} {st.shape}, its source '{st.source}' is "
                                  f"{src.dtype} {src.shape}")
                lo, hi = min(t.lo, src.lo), max(t.hi, src.hi)
                binary = t.binary and src.binary
                if rounds == 16 and (lo, hi, binary) != (t.lo, t.hi, t.binary):
                    lo, hi, binary = *DTYPE_RANGE[st.dtype], False  # no fixed point in sight: widen once
                grown[st.name] = TensorType(st.shape, st.dtype, lo, hi, binary)
            if grown == states:
                return out, states
            states = grown
        raise IRError("state intervals do not settle")  # unreachable: widened to the dtype range

    def _check_states(self) -> dict[str, TensorType]:
        outputs = {n.output for n in self.nodes}
        types: dict[str, TensorType] = {}
        for st in self.states:
            if st.name in types or st.name == INPUT or st.name in outputs:
                raise IRError(f"state '{st.name}' is named like another tensor")
            if st.dtype not in DTYPE_RANGE:
                raise IRError(f"state '{st.name}': dtype must be int8 or int32, got '{st.dtype}'")
            lo, hi = DTYPE_RANGE[st.dtype]
            if not lo <= st.init <= hi:
                raise IRError(f"state '{st.name}': initial value {st.init} is outside {st.dtype}")
            if st.source not in outputs:
                raise IRError(f"state '{st.name}': no node writes its source '{st.source}'")
            limits.check_shape(st.shape, f"state '{st.name}'")
            # binary (±1) until a source that is not binary says otherwise
            types[st.name] = TensorType(st.shape, st.dtype, st.init, st.init, st.init in (-1, 1))
        return types

    def _infer(self, states: dict[str, TensorType]) -> list[TensorType]:
        types = {INPUT: self.input_type(), **states}
        readers: dict[str, int] = {}
        out = []
        weights = macs = 0
        for i, node in enumerate(self.nodes):
            layer = node.op
            where = f"layer {i} {layer.describe()}" if isinstance(layer, Op) else f"layer {i}"
            if not isinstance(layer, Op):
                raise IRError(f"{where}: unsupported layer type {type(layer).__name__}")
            w = getattr(layer, "weight", None)
            weights += 0 if w is None else int(w.size)  # before infer, which reads every weight
            limits.check_total(weights, limits.MAX_WEIGHT_VALUES, "weight values", where)
            if node.output in types:
                raise IRError(f"{where}: writes tensor '{node.output}', which already exists")
            missing = [t for t in node.inputs if t not in types]
            if missing:
                raise IRError(f"{where}: reads tensor '{missing[0]}' before any node writes it")
            if len(node.inputs) != layer.arity:
                raise IRError(f"{where}: takes {layer.arity} input(s), given {len(node.inputs)}")
            try:
                t = layer.infer(*(types[name] for name in node.inputs))
            except IRError as e:
                raise IRError(f"{where}: {e}") from None
            limits.check_shape(t.shape, f"{where}: its output")
            macs += layer.macs(t)
            limits.check_total(macs, limits.MAX_MACS, "multiply-accumulates per inference", where)
            for name in node.inputs:
                readers[name] = readers.get(name, 0) + 1
            types[node.output] = t
            out.append(t)
        sources = {st.source for st in self.states}
        unused = [n.output for n in self.nodes[:-1] if n.output not in readers and n.output not in sources]
        if unused:
            raise IRError(f"tensor '{unused[0]}' is never read (the last layer writes the model output)")
        if self.labels is not None and len(self.labels) != out[-1].size:
            raise IRError(
                f"{len(self.labels)} labels given but the model has {out[-1].size} outputs"
            )
        return out

    def input_type(self) -> TensorType:
        limits.check_shape(self.input.shape, "the model input")
        if not (math.isfinite(self.input.scale) and self.input.scale > 0):
            raise IRError(f"the input scale must be a positive number, got {self.input.scale}")
        if not INT8[0] <= self.input.zero_point <= INT8[1]:
            raise IRError(f"the input zero point must be in -128..127, got {self.input.zero_point}")
        return TensorType(self.input.shape, "int8", *INT8)

    # ----------------------------------------------------------- serialization
    def to_dict(self) -> dict[str, Any]:
        """Plain data (dicts, lists, str, int, float, numpy int arrays): safe to store.

        A sequential model is written as IR version 1 (a list of layers, as every bitgen before
        graphs wrote it, so its identity does not change); a graph as version 2 (nodes with
        their inputs and output)."""
        layers = []
        for node in self.nodes:
            d: dict[str, Any] = {"kind": node.op.kind}
            for k, v in node.op.params().items():
                if isinstance(v, np.ndarray):
                    v = v.astype(np.int32 if k != "weight" else _weight_dtype(v))
                elif isinstance(v, tuple):
                    v = list(v)
                d[k] = v
            layers.append(d)
        graph = not self.is_sequential
        d = {
            "format": FORMAT,
            "version": VERSION if graph else 1,
            "name": self.name,
            "input": {
                "shape": list(self.input.shape),
                "scale": self.input.scale,
                "zero_point": self.input.zero_point,
            },
            "labels": None if self.labels is None else [str(s) for s in self.labels],
            "meta": dict(self.meta),
        }
        if graph:
            d["nodes"] = [ld | {"inputs": list(n.inputs), "output": n.output} for ld, n in zip(layers, self.nodes)]
            if self.states:
                d["states"] = [{"name": st.name, "shape": list(st.shape), "dtype": st.dtype, "source": st.source,
                                "init": st.init} for st in self.states]
        else:
            d["layers"] = layers
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Model":
        """The model of :meth:`to_dict`'s data, checked field by field against :class:`IRFile`
        and each op's own fields (:mod:`bitgen.schema`) before anything is built; raises
        IRError naming the field."""
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise IRError("not a bitgen IR (missing format tag)")
        try:
            f = IRFile(**schema.check_fields(d, IRFile)[0])
            if f.version > VERSION:
                raise IRError(f"IR version {f.version} is newer than this bitgen ({VERSION})")
            if (f.layers is None) == (f.nodes is None):
                raise IRError("the IR must hold either 'layers' (a sequence) or 'nodes' (a graph)")
            graph = f.nodes is not None
            where = "nodes" if graph else "layers"
            ops, wiring = [], []
            for i, ld in enumerate(f.nodes if graph else f.layers):
                here = f"{where}[{i}]"
                if not isinstance(ld, dict):
                    raise schema.SchemaError(f"{here}: expected a dict of fields, got {type(ld).__name__}")
                kind = ld.get("kind")
                if not isinstance(kind, str) or kind not in OPS:
                    raise IRError(f"{here}: unknown layer kind {kind!r} (known: {', '.join(OPS)})")
                wired = ("inputs", "output") if graph else ()
                args, _ = schema.check_fields(ld, OPS[kind], here, ignore=("kind",) + wired)
                if graph:
                    w = schema.check_fields({k: ld.get(k) for k in wired}, Wiring, here)[0]
                    wiring.append((w["inputs"], w["output"]))
                ops.append(OPS[kind](**args))
            common = dict(input=InputSpec(**schema.check_fields(f.input, InputSpec, "input")[0]),
                          labels=f.labels, name=f.name, meta=f.meta)
            if graph:
                states = [State(**schema.check_fields(sd, State, f"states[{i}]")[0])
                          for i, sd in enumerate(f.states or [])]
                return cls(nodes=[Node(op, ins, out) for op, (ins, out) in zip(ops, wiring)], states=states, **common)
            if f.states:
                raise IRError("states belong to a graph ('nodes'), not to a sequence of layers")
            return cls(layers=ops, **common)
        except schema.SchemaError as e:
            raise IRError(f"malformed IR: {e}") from None

    def digest(self) -> str:
        """SHA-256 of the canonical content (name and meta excluded): the model's identity."""
        h = hashlib.sha256()
        d = self.to_dict()
        d.pop("meta")
        d.pop("name")

        def enc(v: Any) -> Any:
            if isinstance(v, np.ndarray):
                h.update(np.ascontiguousarray(v.astype("<i8")).tobytes())
                return ["array", list(v.shape)]
            if isinstance(v, dict):
                return {k: enc(x) for k, x in sorted(v.items())}
            if isinstance(v, list):
                return [enc(x) for x in v]
            return v

        h.update(json.dumps(enc(d), sort_keys=True).encode())
        return h.hexdigest()

    def macs(self) -> int:
        """Multiply-accumulates per inference."""
        types = self.validate()
        return sum(layer.macs(t_out) for layer, t_out in zip(self.layers, types))


def chain(layers: list[Op]) -> list[Node]:
    """The nodes of a sequential model: layer i reads layer i - 1's output."""
    nodes, prev = [], INPUT
    for i, op in enumerate(layers):
        nodes.append(Node(op, (prev,), f"t{i}"))
        prev = f"t{i}"
    return nodes


def _weight_dtype(w: np.ndarray) -> type:
    return np.int8 if w.size == 0 or (w.min() >= -128 and w.max() <= 127) else np.int32


def infer_type(layer: Op, t: TensorType) -> TensorType:
    """Output type of `layer` applied to a tensor of type `t` (raises IRError)."""
    if not isinstance(layer, Op):
        raise IRError(f"unsupported layer type {type(layer).__name__}")
    return layer.infer(t)
