"""Graphs of layers: residual connections, concatenations, decoders.

:class:`Add` and :class:`Concat` are the layers that join two tensors; :class:`Graph` is a
module whose layers read named tensors, described by plain data (so a trained graph is stored
without pickling code, and a config file can describe one). A user's own ``nn.Module`` with a
``forward`` that adds or concatenates is traced with torch.fx by :mod:`bitgen.nn.export`.

Like every bitgen.nn layer these compute on integer values held in float tensors; in eval mode
the result equals the golden model of the IR op they export to.
"""
from __future__ import annotations

import torch

from .quantizers import ste

INT32 = (-(2**31), 2**31 - 1)
INPUT = "input"


class Add(torch.nn.Module):
    """``clamp(round((a * scale_a + b * scale_b) / 2**shift), out_min, out_max)`` (round half
    up), the integer op :class:`bitgen.ir.Add`. The defaults (scales 1, shift 0, int8
    saturation) are a residual connection of two int8 tensors as the MAX78000 adds them.
    In training: a straight-through gradient through the rounding, zero where it saturates."""

    sign = 1

    def __init__(self, scale_a: int = 1, scale_b: int = 1, shift: int = 0, out_dtype: str = "int8",
                 out_min: int | None = None, out_max: int | None = None):
        super().__init__()
        if out_dtype not in ("int8", "int32"):
            raise ValueError(f"out_dtype must be int8 or int32, got '{out_dtype}'")
        lo, hi = (-128, 127) if out_dtype == "int8" else INT32
        self.scale_a, self.scale_b, self.shift = int(scale_a), int(scale_b), int(shift)
        self.out_dtype = out_dtype
        self.out_min = lo if out_min is None else int(out_min)
        self.out_max = hi if out_max is None else int(out_max)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        dtype = a.dtype if self.training else torch.float64
        v = a.to(dtype) * self.scale_a + self.sign * b.to(dtype) * self.scale_b
        if self.shift:
            scaled = v / 2**self.shift
            v = ste(scaled, torch.floor((v + 2 ** (self.shift - 1)) / 2**self.shift))
        return v.clamp(self.out_min, self.out_max)

    def spec(self) -> dict:
        return {"scale_a": self.scale_a, "scale_b": self.scale_b, "shift": self.shift,
                "out_dtype": self.out_dtype, "out_min": self.out_min, "out_max": self.out_max}


class Sub(Add):
    """``clamp(round((a * scale_a - b * scale_b) / 2**shift), out_min, out_max)``: :class:`bitgen.ir.Sub`."""

    sign = -1


class Concat(torch.nn.Module):
    """``torch.cat([a, b], dim=1)``: the channels (or vector elements) of a, then of b."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.cat([a, b], dim=1)

    def spec(self) -> dict:
        return {}


class GraphState:
    """A tensor of a :class:`Graph` that carries over between frames: read as ``name`` in frame
    t, it holds what node ``source`` wrote in frame t - 1 (``init`` everywhere in the first
    frame). ``shape`` is per sample; ``dtype`` is the IR dtype of the source (int8 or int32)."""

    def __init__(self, name: str, source: str, shape, init: int = 0, dtype: str = "int8"):
        self.name, self.source, self.init, self.dtype = str(name), str(source), int(init), str(dtype)
        self.shape = tuple(int(v) for v in shape)
        if not self.shape or min(self.shape) < 1:
            raise ValueError(f"state '{self.name}': shape {list(self.shape)} must be positive sizes")
        if self.dtype not in ("int8", "int32"):
            raise ValueError(f"state '{self.name}': dtype must be int8 or int32, got '{self.dtype}'")

    def spec(self) -> dict:
        return {"name": self.name, "source": self.source, "shape": list(self.shape), "init": self.init,
                "dtype": self.dtype}


class Graph(torch.nn.Module):
    """Layers over named tensors: ``nodes`` is a list of ``(name, module, inputs)``; each
    module reads the tensors named in ``inputs`` (``"input"``: the model input; an earlier
    node's name; a state's name) and its output is named ``name``. The last node's output is
    the result.

    ``states`` (:class:`GraphState` or their keyword dicts) make it a recurrence: one call is
    one frame, and the graph keeps its states between calls (:func:`bitgen.nn.reset_states`
    starts a new clip; :func:`bitgen.nn.run_clips` runs whole clips)."""

    def __init__(self, nodes: list[tuple[str, torch.nn.Module, list[str]]], states: list | None = None):
        super().__init__()
        if not nodes:
            raise ValueError("a graph needs at least one node")
        self.states = [s if isinstance(s, GraphState) else GraphState(**s) for s in (states or [])]
        self.layers = torch.nn.ModuleDict()
        self.wiring: list[tuple[str, tuple[str, ...]]] = []
        known = {INPUT}
        for st in self.states:
            if st.name in known:
                raise ValueError(f"state name '{st.name}' is used twice")
            known.add(st.name)
        for name, module, inputs in nodes:
            name = str(name)
            if name in known or "." in name or not name:
                raise ValueError(f"node name '{name}' is empty, has a '.' or is used twice")
            missing = [i for i in inputs if i not in known]
            if missing:
                raise ValueError(f"node '{name}' reads '{missing[0]}' before any node writes it")
            self.layers[name] = module
            self.wiring.append((name, tuple(str(i) for i in inputs)))
            known.add(name)
        written = {name for name, _ in self.wiring}
        for st in self.states:
            if st.source not in written:
                raise ValueError(f"state '{st.name}': no node writes its source '{st.source}'")
        self.values: dict[str, torch.Tensor] = {}  # the states of the last frame; empty: a new clip

    def reset_state(self) -> None:
        self.values = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env = {INPUT: x}
        for st in self.states:
            v = self.values.get(st.name)
            if v is None:
                v = torch.full((x.shape[0],) + st.shape, float(st.init), dtype=x.dtype, device=x.device)
            elif v.shape[0] != x.shape[0]:
                raise ValueError(f"a batch of {x.shape[0]} frames after batches of {v.shape[0]}: "
                                 "call bitgen.nn.reset_states(model) before a new clip")
            env[st.name] = v
        for name, inputs in self.wiring:
            env[name] = self.layers[name](*(env[i] for i in inputs))
        if self.states:
            self.values = {st.name: env[st.source] for st in self.states}
        return env[self.wiring[-1][0]]
