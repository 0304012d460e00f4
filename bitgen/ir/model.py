"""The model: an input specification and its layers, validation and the model file's data."""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..ops.base import Op
from ..ops.registry import OPS
from .types import INT8, IRError, TensorType

FORMAT = "bitgen-ir"
VERSION = 1


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
                f"input has {int(np.prod(got))} values per sample {tuple(got)}, "
                f"the model expects {self.size} {self.shape}"
            )
        q = np.floor(raw / self.scale + 0.5) + self.zero_point
        return np.clip(q, -128, 127).astype(np.int8).reshape((raw.shape[0],) + self.shape)


@dataclass(eq=False)
class Model:
    input: InputSpec
    layers: list[Op]
    labels: list[str] | None = None
    name: str = "model"
    meta: dict[str, Any] = field(default_factory=dict)

    # ---------------------------------------------------------------- checking
    def validate(self) -> list[TensorType]:
        """Infer and check the type of every layer output; raises IRError (one line)."""
        if not self.layers:
            raise IRError("model has no layers")
        t = TensorType(self.input.shape, "int8", *INT8)
        out = []
        for i, layer in enumerate(self.layers):
            try:
                t = infer_type(layer, t)
            except IRError as e:
                raise IRError(f"layer {i} {layer.describe()}: {e}") from None
            out.append(t)
        if self.labels is not None and len(self.labels) != out[-1].size:
            raise IRError(
                f"{len(self.labels)} labels given but the model has {out[-1].size} outputs"
            )
        return out

    def input_type(self) -> TensorType:
        return TensorType(self.input.shape, "int8", *INT8)

    # ----------------------------------------------------------- serialization
    def to_dict(self) -> dict[str, Any]:
        """Plain data (dicts, lists, str, int, float, numpy int arrays): safe to store."""
        layers = []
        for layer in self.layers:
            d: dict[str, Any] = {"kind": layer.kind}
            for k, v in layer.params().items():
                if isinstance(v, np.ndarray):
                    v = v.astype(np.int32 if k != "weight" else _weight_dtype(v))
                elif isinstance(v, tuple):
                    v = list(v)
                d[k] = v
            layers.append(d)
        return {
            "format": FORMAT,
            "version": VERSION,
            "name": self.name,
            "input": {
                "shape": list(self.input.shape),
                "scale": self.input.scale,
                "zero_point": self.input.zero_point,
            },
            "labels": None if self.labels is None else [str(s) for s in self.labels],
            "meta": dict(self.meta),
            "layers": layers,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Model":
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise IRError("not a bitgen IR (missing format tag)")
        if int(d.get("version", -1)) > VERSION:
            raise IRError(f"IR version {d.get('version')} is newer than this bitgen ({VERSION})")
        try:
            layers = []
            for ld in d["layers"]:
                ld = dict(ld)
                kind = ld.pop("kind")
                if kind not in OPS:
                    raise IRError(f"unknown layer kind '{kind}'")
                args = {k: (np.asarray(v) if hasattr(v, "shape") else v) for k, v in ld.items()}
                if isinstance(args.get("stride"), list):
                    args["stride"] = tuple(args["stride"])
                layers.append(OPS[kind](**args))
            inp = d["input"]
            return cls(
                input=InputSpec(tuple(inp["shape"]), inp["scale"], inp["zero_point"]),
                layers=layers,
                labels=d.get("labels"),
                name=str(d.get("name", "model")),
                meta=dict(d.get("meta") or {}),
            )
        except (KeyError, TypeError) as e:
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


def _weight_dtype(w: np.ndarray) -> type:
    return np.int8 if w.size == 0 or (w.min() >= -128 and w.max() <= 127) else np.int32


def infer_type(layer: Op, t: TensorType) -> TensorType:
    """Output type of `layer` applied to a tensor of type `t` (raises IRError)."""
    if not isinstance(layer, Op):
        raise IRError(f"unsupported layer type {type(layer).__name__}")
    return layer.infer(t)
