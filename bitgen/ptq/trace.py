"""A float ``torch.nn`` model as the small graph of layers post-training quantization knows.

The model is traced with torch.fx (:func:`trace`) and every fx node is mapped to a
:class:`FloatNode`: a convolution, transposed convolution or linear layer (a BatchNorm right after
it folded into its weights and bias, a ReLU or ReLU6 right after it fused as its activation), a
residual ``+`` (with a fused activation), ``torch.cat`` along channels, max / average pooling
(adaptive pooling to an output size that divides the input), flatten (``nn.Flatten``,
``torch.flatten(x, 1)``, ``x.view(x.size(0), -1)``, ``x.mean((2, 3))``), nearest upsampling by
integer factors, and a standalone ReLU. Dropout, Identity and a final Softmax / LogSoftmax do
nothing to the class the model picks and are dropped. Anything else raises :class:`PTQError`
naming the layer.

Each FloatNode names the fx node whose output equals its own float result (``value``): the
calibration and the error report read the float model's activations there, so they measure the
user's own model, not a re-implementation of it.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.fx
from torch.fx.passes.shape_prop import ShapeProp

from ..errors import BitgenError

INPUT = "input"
WEIGHTED = ("conv", "conv_transpose", "linear")


class PTQError(BitgenError):
    """The float model cannot be quantized as it is (one-line message)."""


@dataclass
class FloatNode:
    """One layer of the float model: ``op`` reads the FloatNodes named in ``inputs``."""

    name: str
    op: str  # conv, conv_transpose, linear, add, cat, relu, maxpool, avgpool, flatten, upsample
    inputs: list[str]
    value: str  # the fx node whose output this node's float output is
    shape: tuple[int, ...] = ()  # per sample
    weight: np.ndarray | None = None  # float64, BatchNorm folded in
    bias: np.ndarray | None = None
    act: str | None = None  # "relu" or "relu6", fused into the output
    label: str = ""  # what the report calls it: the module's path in the model, or the fx name
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class FloatGraph:
    module: torch.fx.GraphModule
    input_shape: tuple[int, ...]
    nodes: list[FloatNode]
    dropped: list[str]  # what was left out (a final softmax)
    input_value: str  # the fx placeholder: the model input

    @property
    def output(self) -> FloatNode:
        return self.nodes[-1]


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    return int(v[0]), int(v[1])


def _fold_bn(node: FloatNode, bn: torch.nn.modules.batchnorm._BatchNorm, where: str) -> None:
    if bn.running_mean is None or bn.running_var is None:
        raise PTQError(f"{where}: BatchNorm without running statistics (track_running_stats=False) cannot be folded")
    gamma = bn.weight.detach().double().numpy() if bn.weight is not None else np.ones(bn.num_features)
    beta = bn.bias.detach().double().numpy() if bn.bias is not None else np.zeros(bn.num_features)
    mean = bn.running_mean.detach().double().numpy()
    k = gamma / np.sqrt(bn.running_var.detach().double().numpy() + bn.eps)
    bias = node.bias if node.bias is not None else np.zeros(len(k))
    w = node.weight
    if node.op == "conv_transpose":  # (in, out / groups, kh, kw): output channels on axis 1 per group
        g = node.attrs["groups"]
        cin, cog = w.shape[:2]
        w = (w.reshape(g, cin // g, cog, *w.shape[2:]) * k.reshape(g, 1, cog, 1, 1)).reshape(w.shape)
    else:
        w = w * k.reshape((-1,) + (1,) * (w.ndim - 1))
    if len(k) != len(bias):
        raise PTQError(f"{where}: BatchNorm has {len(k)} channels, the layer before it {len(bias)}")
    node.weight, node.bias = w, (bias - mean) * k + beta


def _module_node(name: str, m: torch.nn.Module, where: str) -> FloatNode | str:
    """The FloatNode of a leaf module, or a word for what the caller does with it."""
    w = lambda t: t.detach().double().numpy().copy()  # noqa: E731
    if type(m) is torch.nn.Conv2d:
        if m.padding_mode != "zeros" or _pair(m.dilation) != (1, 1):
            raise PTQError(f"{where}: only zero padding and dilation 1 (got {m.padding_mode}, {m.dilation})")
        pad = m.padding
        if isinstance(pad, str):  # 'valid' or 'same' (stride 1, odd kernels)
            k = _pair(m.kernel_size)
            if pad == "same" and all(v % 2 for v in k):
                pad = (k[0] // 2, k[1] // 2)
            elif pad == "valid":
                pad = (0, 0)
            else:
                raise PTQError(f"{where}: padding='{pad}' with an even kernel is not supported")
        return FloatNode(name, "conv", [], name, weight=w(m.weight), bias=None if m.bias is None else w(m.bias),
                         attrs={"stride": _pair(m.stride), "padding": _pair(pad), "groups": int(m.groups)})
    if type(m) is torch.nn.ConvTranspose2d:
        if m.padding_mode != "zeros" or _pair(m.dilation) != (1, 1):
            raise PTQError(f"{where}: only zero padding and dilation 1")
        return FloatNode(name, "conv_transpose", [], name, weight=w(m.weight),
                         bias=None if m.bias is None else w(m.bias),
                         attrs={"stride": _pair(m.stride), "padding": _pair(m.padding),
                                "output_padding": _pair(m.output_padding), "groups": int(m.groups)})
    if type(m) is torch.nn.Linear:
        return FloatNode(name, "linear", [], name, weight=w(m.weight), bias=None if m.bias is None else w(m.bias))
    if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
        return "batchnorm"
    if type(m) is torch.nn.ReLU:
        return "relu"
    if type(m) is torch.nn.ReLU6 or (type(m) is torch.nn.Hardtanh and (m.min_val, m.max_val) == (0.0, 6.0)):
        return "relu6"
    if type(m) in (torch.nn.Dropout, torch.nn.Dropout2d, torch.nn.Identity):
        return "pass"
    if type(m) in (torch.nn.Softmax, torch.nn.LogSoftmax):
        return "softmax"
    if type(m) in (torch.nn.MaxPool2d, torch.nn.AvgPool2d):
        kernel = _pair(m.kernel_size)
        stride = kernel if m.stride in (None, []) else _pair(m.stride)
        if _pair(m.padding) != (0, 0) or m.ceil_mode:
            raise PTQError(f"{where}: pooling with padding or ceil_mode is not supported")
        if type(m) is torch.nn.MaxPool2d and _pair(m.dilation) != (1, 1):
            raise PTQError(f"{where}: max pooling with dilation is not supported")
        if type(m) is torch.nn.AvgPool2d and m.divisor_override:
            raise PTQError(f"{where}: divisor_override is not supported")
        op = "maxpool" if type(m) is torch.nn.MaxPool2d else "avgpool"
        return FloatNode(name, op, [], name, attrs={"kernel": kernel, "stride": stride})
    if type(m) in (torch.nn.AdaptiveAvgPool2d, torch.nn.AdaptiveMaxPool2d):
        op = "maxpool" if type(m) is torch.nn.AdaptiveMaxPool2d else "avgpool"
        return FloatNode(name, op, [], name, attrs={"adaptive": m.output_size})
    if type(m) is torch.nn.Flatten:
        if m.start_dim != 1 or m.end_dim != -1:
            raise PTQError(f"{where}: only Flatten(start_dim=1, end_dim=-1)")
        return FloatNode(name, "flatten", [], name)
    if type(m) is torch.nn.Upsample:
        if m.mode != "nearest":
            raise PTQError(f"{where}: only nearest upsampling (got mode '{m.mode}')")
        return FloatNode(name, "upsample", [], name, attrs={"scale_factor": m.scale_factor, "size": m.size})
    raise PTQError(f"{where}: unsupported layer {type(m).__name__}")


_ADD = (operator.add, torch.add)
_RELU = (torch.relu, torch.nn.functional.relu)
_FUNCTION_POOL = {torch.nn.functional.max_pool2d: "maxpool", torch.nn.functional.avg_pool2d: "avgpool"}
_ADAPTIVE = {torch.nn.functional.adaptive_avg_pool2d: "avgpool", torch.nn.functional.adaptive_max_pool2d: "maxpool"}
_SOFTMAX = (torch.softmax, torch.log_softmax, torch.nn.functional.softmax, torch.nn.functional.log_softmax)


def trace(module: torch.nn.Module, input_shape: tuple[int, ...]) -> FloatGraph:
    """Trace ``module`` (eval mode) for inputs of per-sample ``input_shape`` (raises PTQError)."""
    if not isinstance(module, torch.nn.Module):
        raise PTQError(f"expected a torch.nn.Module, got {type(module).__name__}")
    module = module.eval()
    try:
        gm = torch.fx.symbolic_trace(module)
    except Exception as e:  # torch.fx raises many kinds (data-dependent control flow, ...)
        raise PTQError(f"cannot trace {type(module).__name__} with torch.fx ({_first_line(e)})") from None
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(torch.zeros((2,) + tuple(input_shape), dtype=torch.float32))
    except Exception as e:
        raise PTQError(f"the model does not run on inputs of shape {tuple(input_shape)} ({_first_line(e)})") from None
    return _Builder(gm, tuple(input_shape)).build()


class _Builder:
    def __init__(self, gm: torch.fx.GraphModule, input_shape: tuple[int, ...]):
        self.gm, self.input_shape = gm, input_shape
        self.nodes: list[FloatNode] = []
        self.by_name: dict[str, FloatNode] = {}
        self.alias: dict[str, str] = {}  # fx node -> the FloatNode (or "input") holding its value
        self.dropped: list[str] = []
        self.input_value = ""

    @staticmethod
    def shape(n: torch.fx.Node) -> tuple[int, ...] | None:
        meta = n.meta.get("tensor_meta")
        return tuple(meta.shape[1:]) if meta is not None and hasattr(meta, "shape") else None

    def src(self, a: Any, where: str) -> str:
        if not isinstance(a, torch.fx.Node) or a.name not in self.alias:
            raise PTQError(f"{where}: only tensors can flow between layers, got {a!r}")
        return self.alias[a.name]

    def add(self, node: FloatNode, n: torch.fx.Node, inputs: list[str]) -> None:
        node.name, node.value, node.inputs = n.name, n.name, inputs
        node.label = str(n.target) if n.op == "call_module" else n.name
        node.shape = self.shape(n) or ()
        self.nodes.append(node)
        self.by_name[node.name] = node
        self.alias[n.name] = node.name

    def producer(self, a: Any, where: str) -> FloatNode | None:
        """The FloatNode that wrote fx value `a`, when `a` is its output and nothing else reads it."""
        name = self.src(a, where)
        node = self.by_name.get(name)
        if node is not None and node.value == a.name and len(a.users) == 1:
            return node
        return None

    def activation(self, kind: str, n: torch.fx.Node, arg: Any, where: str) -> None:
        """A ReLU / ReLU6: fused into the layer before it where that layer's output has no other
        reader, else a layer of its own (ReLU6 only fused)."""
        p = self.producer(arg, where)
        if p is not None and p.op in WEIGHTED + ("add",) and p.act is None:
            p.act, p.value = kind, n.name
            self.alias[n.name] = p.name
            return
        if kind == "relu6":
            raise PTQError(f"{where}: a ReLU6 must directly follow a Conv2d, Linear or +")
        self.add(FloatNode("", "relu", [], ""), n, [self.src(arg, where)])

    def build(self) -> FloatGraph:
        out = None
        for n in self.gm.graph.nodes:
            where = f"'{n.name}'"
            if n.op == "placeholder":
                if self.alias:
                    raise PTQError("the model's forward takes more than one input")
                self.alias[n.name] = INPUT
                self.input_value = n.name
            elif n.op == "output":
                out = n.args[0]
                if not isinstance(out, torch.fx.Node):
                    raise PTQError("the model's forward must return one tensor")
            elif n.op == "get_attr":
                raise PTQError(f"{where}: a parameter used outside its layer ({n.target}); use nn.Conv2d / nn.Linear")
            elif self.shape(n) is None:  # sizes and other non-tensors (x.size(0) for a view)
                continue
            elif n.op == "call_module":
                self.module(n, where)
            elif n.op == "call_function":
                self.function(n, where)
            elif n.op == "call_method":
                self.method(n, where)
        if out is None or out.name not in self.alias:
            raise PTQError("the model returns nothing bitgen can quantize")
        final = self.alias[out.name]
        if final == INPUT or not self.nodes:
            raise PTQError("the model has no layers to quantize")
        if self.nodes[-1].name != final:
            raise PTQError("the model's output is not its last layer")
        return FloatGraph(self.gm, self.input_shape, self.nodes, self.dropped, self.input_value)

    def module(self, n: torch.fx.Node, where: str) -> None:
        m = self.gm.get_submodule(n.target)
        where = f"layer '{n.target}'"
        kind = _module_node(n.name, m, where)
        arg = n.args[0] if n.args else None
        if isinstance(kind, FloatNode):
            self.add(kind, n, [self.src(arg, where)])
        elif kind == "batchnorm":
            p = self.producer(arg, where)
            if p is None or p.op not in WEIGHTED or p.act is not None:
                raise PTQError(f"{where}: a BatchNorm must directly follow a Conv2d, ConvTranspose2d or Linear "
                               "whose output nothing else reads (it is folded into that layer)")
            _fold_bn(p, m, where)
            p.value = n.name
            self.alias[n.name] = p.name
        elif kind in ("relu", "relu6"):
            self.activation(kind, n, arg, where)
        elif kind == "pass":
            self.alias[n.name] = self.src(arg, where)
        elif kind == "softmax":
            self.softmax(n, arg, where)

    def softmax(self, n: torch.fx.Node, arg: Any, where: str) -> None:
        if any(u.op != "output" for u in n.users):
            raise PTQError(f"{where}: a softmax is only supported as the model's last operation")
        self.alias[n.name] = self.src(arg, where)  # monotonic: the class the model picks is the same
        self.dropped.append(f"{n.name} (softmax: the same class)")

    def function(self, n: torch.fx.Node, where: str) -> None:
        f, args, kw = n.target, n.args, n.kwargs
        name = getattr(f, "__name__", str(f))
        if f in _ADD:
            if len(args) != 2 or not all(isinstance(a, torch.fx.Node) for a in args) or kw.get("alpha", 1) != 1:
                raise PTQError(f"{where}: only the sum of two tensors is supported")
            self.add(FloatNode("", "add", [], ""), n, [self.src(a, where) for a in args])
        elif f is torch.cat:
            tensors, dim = args[0], args[1] if len(args) > 1 else kw.get("dim", 0)
            if dim not in (1, -3) or len(tensors) < 2:
                raise PTQError(f"{where}: only torch.cat of tensors along dim 1")
            self.add(FloatNode("", "cat", [], ""), n, [self.src(a, where) for a in tensors])
        elif f is torch.flatten:
            if (args[1] if len(args) > 1 else kw.get("start_dim", 0)) != 1:
                raise PTQError(f"{where}: only torch.flatten(x, 1)")
            self.flatten(n, args[0], where)
        elif f in _RELU:
            self.activation("relu", n, args[0], where)
        elif f is torch.nn.functional.relu6:
            self.activation("relu6", n, args[0], where)
        elif f in _FUNCTION_POOL:
            kernel = _pair(args[1] if len(args) > 1 else kw["kernel_size"])
            stride = args[2] if len(args) > 2 else kw.get("stride")
            padding = args[3] if len(args) > 3 else kw.get("padding", 0)
            if _pair(padding) != (0, 0) or kw.get("ceil_mode", False):
                raise PTQError(f"{where}: pooling with padding or ceil_mode is not supported")
            stride = kernel if stride in (None, []) else _pair(stride)
            self.add(FloatNode("", _FUNCTION_POOL[f], [], "", attrs={"kernel": kernel, "stride": stride}), n,
                     [self.src(args[0], where)])
        elif f in _ADAPTIVE:
            size = args[1] if len(args) > 1 else kw["output_size"]
            self.add(FloatNode("", _ADAPTIVE[f], [], "", attrs={"adaptive": size}), n, [self.src(args[0], where)])
        elif f is torch.nn.functional.interpolate:
            mode = kw.get("mode", args[3] if len(args) > 3 else "nearest")
            if mode != "nearest":
                raise PTQError(f"{where}: only nearest interpolation (got mode '{mode}')")
            self.add(FloatNode("", "upsample", [], "", attrs={}), n, [self.src(args[0], where)])
        elif f in (torch.nn.functional.dropout, torch.nn.functional.dropout2d):
            self.alias[n.name] = self.src(args[0], where)
        elif f in _SOFTMAX:
            self.softmax(n, args[0], where)
        else:
            raise PTQError(f"{where}: unsupported operation {name}")

    def method(self, n: torch.fx.Node, where: str) -> None:
        m, args = n.target, n.args
        if m in ("view", "reshape", "flatten"):
            self.flatten(n, args[0], where)
        elif m == "relu":
            self.activation("relu", n, args[0], where)
        elif m in ("contiguous", "clone"):
            self.alias[n.name] = self.src(args[0], where)
        elif m == "add" and len(args) == 2 and isinstance(args[1], torch.fx.Node):
            self.add(FloatNode("", "add", [], ""), n, [self.src(a, where) for a in args])
        elif m == "mean":  # global average pooling: x.mean((2, 3)) / x.mean([-2, -1])
            dims = args[1] if len(args) > 1 else n.kwargs.get("dim")
            shape = self.shape(args[0])
            if shape is None or len(shape) != 3 or sorted(int(d) % 4 for d in dims) != [2, 3]:
                raise PTQError(f"{where}: only a mean over the two spatial axes of (N, C, H, W)")
            self.add(FloatNode("", "avgpool", [], "", attrs={"adaptive": 1}), n, [self.src(args[0], where)])
            node = self.nodes[-1]
            node.shape = (shape[0], 1, 1)
            if not n.kwargs.get("keepdim", False) and not (len(args) > 2 and args[2]):
                flat = FloatNode(f"{n.name}_flat", "flatten", [node.name], n.name, shape=(shape[0],),
                                 label=f"{n.name}_flat")
                self.nodes.append(flat)
                self.by_name[flat.name] = flat
                self.alias[n.name] = flat.name
        else:
            raise PTQError(f"{where}: unsupported tensor method .{m}()")

    def flatten(self, n: torch.fx.Node, arg: Any, where: str) -> None:
        src_shape, out_shape = self.shape(arg), self.shape(n)
        if src_shape == out_shape:
            self.alias[n.name] = self.src(arg, where)
        elif out_shape is not None and len(out_shape) == 1 and src_shape is not None \
                and out_shape[0] == int(np.prod(src_shape)):
            self.add(FloatNode("", "flatten", [], ""), n, [self.src(arg, where)])
        else:
            raise PTQError(f"{where}: only a reshape to (N, -1) is supported (from {src_shape} to {out_shape})")


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
