"""A traced float graph and its activation ranges -> the integer IR.

Every tensor between layers is int8 with a scale and zero point 0 (``real = q * scale``, so
zero padding stays exact). Tensors that must share a scale do: pooling, flatten, upsampling and
a standalone ReLU pass their input's scale on, and a concatenation's inputs and output share one
(the layers that produce them requantize straight to it); each such group takes its scale from
the largest calibrated range among its members (``clip / 127``).

* Convolution / linear: weights per output channel ``w ≈ s_w[o] * q`` with ``q`` in the chosen
  encoding's values (:func:`bitgen.nn.quantizers.weight_scale`), bias ``round(b / (s_in s_w[o]))``
  in int32, then an :class:`~bitgen.ir.Requant` per channel with ``M[o] = s_in s_w[o] / s_out``
  as a 15-bit multiplier and a shift, round half up, clamped to [0, 127] after a fused ReLU and
  to ``round(6 / s_out)`` after a ReLU6. The model's last layer, when weighted, requantizes to
  int32 with ``s_out = clip / 2**16`` (fine logits for the class decision).
* ``a + b``: :class:`~bitgen.ir.Add` with integer scales ``round(s_a / s_out * 2**S)``,
  ``round(s_b / s_out * 2**S)`` and shift ``S`` (16 bits of precision), round half up.
* Pooling, flatten, upsampling, concatenation and ReLU are exact on int8 at a shared scale.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .. import ir
from ..nn.norms import multiplier_shift
from ..nn.quantizers import to_levels, weight_scale
from .trace import INPUT, WEIGHTED, FloatGraph, FloatNode, PTQError

MULTIPLIER_BITS = 15
ADD_BITS = 16
LOGIT_BITS = 16


class _Groups:
    """Union-find over tensor names: the tensors that share one scale."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, a: str) -> str:
        self.parent.setdefault(a, a)
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: str, b: str) -> None:
        self.parent[self.find(a)] = self.find(b)


def scales(graph: FloatGraph, clip: dict[str, float]) -> dict[str, float]:
    """The scale of every tensor (FloatNode names and "input"), from the clip values of the fx
    nodes they stand for (``clip[fx name]``)."""
    groups = _Groups()
    value = {INPUT: graph.input_value, **{n.name: n.value for n in graph.nodes}}
    groups.find(INPUT)
    for n in graph.nodes:
        groups.find(n.name)
        if n.op in ("maxpool", "avgpool", "flatten", "upsample", "relu"):
            groups.union(n.name, n.inputs[0])
        elif n.op == "cat":
            for i in n.inputs:
                groups.union(n.name, i)
    top: dict[str, float] = {}
    for name, fx in value.items():
        root = groups.find(name)
        top[root] = max(top.get(root, 0.0), clip.get(fx, 0.0))
    return {name: max(top[groups.find(name)], 1e-8) / 127.0 for name in value}


def _rows(node: FloatNode) -> np.ndarray:
    """The weights of each output channel as rows (out, K)."""
    w = node.weight
    if node.op == "conv_transpose":  # (in, out/g, kh, kw) -> (out, in/g, kh, kw)
        g = node.attrs["groups"]
        c, cog = w.shape[:2]
        w = w.reshape(g, c // g, cog, *w.shape[2:]).transpose(0, 2, 1, 3, 4).reshape(g * cog, c // g, *w.shape[2:])
    return w.reshape(w.shape[0], -1)


def _from_rows(node: FloatNode, rows: np.ndarray) -> np.ndarray:
    w = node.weight
    if node.op == "conv_transpose":
        g = node.attrs["groups"]
        c, cog = w.shape[:2]
        r = rows.reshape(g, cog, c // g, *w.shape[2:]).transpose(0, 2, 1, 3, 4)
        return r.reshape(w.shape)
    return rows.reshape(w.shape)


def quantize_weights(node: FloatNode, encoding: str, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """(integer weights in the layer's own layout, the scale of each output channel)."""
    rows = torch.from_numpy(_rows(node))
    s = weight_scale(rows, encoding, mode, per_channel=True)
    q = to_levels(rows / s, encoding).to(torch.int64).numpy()
    return _from_rows(node, q), s.reshape(-1).double().numpy()


def _clamp(act: str | None, s_out: float, dtype: str) -> tuple[int | None, int | None]:
    if act is None:
        return None, None
    hi = None if act == "relu" else min(int(math.floor(6.0 / s_out + 0.5)), ir.DTYPE_RANGE[dtype][1])
    return 0, hi


def _requant(ratio: np.ndarray, act: str | None, s_out: float, dtype: str, name: str) -> ir.Requant:
    pairs = [multiplier_shift(float(r), MULTIPLIER_BITS) for r in ratio]
    lo, hi = _clamp(act, s_out, dtype)
    return ir.Requant(multiplier=np.array([m for m, _ in pairs]), shift=np.array([s for _, s in pairs]),
                      out_dtype=dtype, out_min=lo, out_max=hi, name=name)


def lower(graph: FloatGraph, clip: dict[str, float], encoding: str = "8bit", weight_mode: str = "mse",
          labels: list[str] | None = None, name: str = "model") -> tuple[ir.Model, list[dict]]:
    """The integer model and, for each of its nodes that stands for a float tensor, the entry
    ``{"node": index, "source": fx node, "scale": s}`` (the error report's map)."""
    s = scales(graph, clip)
    nodes: list[ir.Node] = []
    tensors: list[dict] = []

    def emit(op: ir.Op, inputs: list[str], output: str, source: FloatNode | None = None, scale: float = 0.0) -> None:
        if source is not None:  # the float tensor this one stands for
            what = source.op + (f"+{source.act}" if source.act else "")
            tensors.append({"node": len(nodes), "name": source.label or source.name, "op": what, "source": source.value,
                            "scale": scale})
        nodes.append(ir.Node(op, inputs, output))

    last = graph.output.name
    for n in graph.nodes:
        ins = list(n.inputs)
        if n.op in WEIGHTED:
            _weighted(n, ins, s, clip, encoding, weight_mode, n.name == last, emit)
        elif n.op == "add":
            a, b = ins
            s_out = s[n.name]
            ra, rb = s[a] / s_out, s[b] / s_out
            shift = int(min(max(ADD_BITS - math.ceil(math.log2(max(ra, rb))), 0), 24))
            lo, hi = _clamp(n.act, s_out, "int8")
            emit(ir.Add(scale_a=int(round(ra * 2**shift)), scale_b=int(round(rb * 2**shift)), shift=shift,
                        out_min=lo, out_max=hi, name=n.name), ins, n.name, n, s_out)
        elif n.op == "cat":
            prev = ins[0]
            for k, other in enumerate(ins[1:], 1):
                out = n.name if k == len(ins) - 1 else f"{n.name}_{k}"
                emit(ir.Concat(name=out), [prev, other], out, n if out == n.name else None, s[n.name])
                prev = out
        elif n.op == "relu":
            emit(ir.ReLU(name=n.name), ins, n.name, n, s[n.name])
        elif n.op in ("maxpool", "avgpool"):
            kernel, stride = _pool_window(n, graph)
            op = (ir.MaxPool2d if n.op == "maxpool" else ir.AvgPool2d)(kernel, stride, name=n.name)
            emit(op, ins, n.name, n, s[n.name])
        elif n.op == "flatten":
            emit(ir.Flatten(name=n.name), ins, n.name, n, s[n.name])
        elif n.op == "upsample":
            emit(ir.Upsample(factor=_factor(n, graph), name=n.name), ins, n.name, n, s[n.name])
        else:  # unreachable: trace only makes the ops above
            raise PTQError(f"'{n.name}': no integer form for {n.op}")
    spec = ir.InputSpec(graph.input_shape, scale=s[INPUT])
    outputs = int(np.prod(graph.output.shape))
    if labels is not None and len(labels) != outputs:  # a dataset with fewer classes than outputs
        labels = [str(i) for i in range(outputs)]
    model = ir.Model(input=spec, nodes=nodes, labels=labels, name=name)
    try:
        model.validate()
    except ir.IRError as e:
        raise PTQError(f"the quantized model is not valid: {e}") from None
    if model.is_sequential:  # a chain: the same model as a sequence (channel-by-channel schedules)
        model = ir.Model(input=model.input, layers=model.layers, labels=model.labels, name=model.name)
    return model, tensors


def _weighted(n: FloatNode, ins: list[str], s: dict[str, float], clip: dict[str, float], encoding: str,
              weight_mode: str, is_last: bool, emit) -> None:
    q, s_w = quantize_weights(n, encoding, weight_mode)
    s_in = s[ins[0]]
    s_acc = s_in * s_w
    bias = None
    if n.bias is not None:
        bias = np.floor(n.bias / s_acc + 0.5)
        if np.abs(bias).max(initial=0) > ir.INT32[1]:
            raise PTQError(f"layer '{n.name}': its bias does not fit int32 at this scale")
        bias = bias.astype(np.int64)
    a = n.attrs
    if n.op == "conv":
        op = ir.Conv2d(weight=q, encoding=encoding, bias=bias, stride=a["stride"], padding=a["padding"],
                       groups=a["groups"], name=n.name)
    elif n.op == "conv_transpose":
        op = ir.ConvTranspose2d(weight=q, encoding=encoding, bias=bias, stride=a["stride"], padding=a["padding"],
                                output_padding=a["output_padding"], groups=a["groups"], name=n.name)
    else:
        op = ir.Linear(weight=q, encoding=encoding, bias=bias, name=n.name)
    emit(op, ins, f"{n.name}_acc")
    if is_last:  # int32 logits at a fine scale
        s_out = max(clip.get(n.value, 0.0), 1e-8) / 2**LOGIT_BITS
        emit(_requant(s_acc / s_out, n.act, s_out, "int32", f"{n.name}_requant"), [f"{n.name}_acc"], n.name, n, s_out)
    else:
        s_out = s[n.name]
        emit(_requant(s_acc / s_out, n.act, s_out, "int8", f"{n.name}_requant"), [f"{n.name}_acc"], n.name, n, s_out)


def _in_shape(n: FloatNode, graph: FloatGraph) -> tuple[int, ...]:
    src = n.inputs[0]
    if src == INPUT:
        return graph.input_shape
    return next(m.shape for m in graph.nodes if m.name == src)


def _pool_window(n: FloatNode, graph: FloatGraph) -> tuple[tuple[int, int], tuple[int, int]]:
    if "adaptive" not in n.attrs:
        return n.attrs["kernel"], n.attrs["stride"]
    c, h, w = _in_shape(n, graph)
    size = n.attrs["adaptive"]
    oh, ow = (size, size) if isinstance(size, int) else size
    oh, ow = oh or h, ow or w
    if h % oh or w % ow:
        raise PTQError(f"'{n.name}': adaptive pooling from {h}x{w} to {oh}x{ow} is not a fixed window")
    return (h // oh, w // ow), (h // oh, w // ow)


def _factor(n: FloatNode, graph: FloatGraph) -> tuple[int, int]:
    _, h, w = _in_shape(n, graph)
    _, oh, ow = n.shape
    if oh % h or ow % w:
        raise PTQError(f"'{n.name}': upsampling from {h}x{w} to {oh}x{ow} is not by integer factors")
    return oh // h, ow // w
