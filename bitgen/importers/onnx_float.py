"""A float ONNX model as a ``torch.nn`` module, so that post-training quantization
(:mod:`bitgen.ptq`) can calibrate and quantize it like a PyTorch model.

Each ONNX operator becomes the ``torch.nn`` layer of the same arithmetic (Conv -> Conv2d, Gemm and
MatMul with a constant matrix -> Linear, BatchNormalization -> BatchNorm2d (folded by PTQ),
Relu, Clip(0, 6) -> ReLU6, MaxPool / AveragePool, GlobalAveragePool -> AdaptiveAvgPool2d(1),
Flatten, Reshape to (N, -1), Add of two tensors, Concat along channels, Resize / Upsample
(nearest, integer factors), ConvTranspose, Softmax, Dropout, Identity). The module's ``forward``
walks the ONNX graph in order; torch.fx traces it like any user module. Anything else raises
:class:`~.errors.ModelImportError` naming the node.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .errors import ModelImportError

QUANTIZED_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger",
                 "MatMulInteger", "QLinearAdd", "QGemm", "DynamicQuantizeLinear"}


def is_float(model: Any) -> bool:
    """A model without any quantized operator."""
    return not any(n.op_type in QUANTIZED_OPS for n in model.graph.node)


class OnnxModule(torch.nn.Module):
    """The ONNX graph's layers (``layers``) and its wiring (``plan``: op, inputs, output, layer key)."""

    def __init__(self, plan: list[tuple[str, list[str], str, str | None]], layers: dict[str, torch.nn.Module],
                 input_name: str, output_name: str, input_shape: tuple[int, ...]):
        super().__init__()
        self.layers = torch.nn.ModuleDict(layers)
        self.plan, self.input_name, self.output_name = plan, input_name, output_name
        self.input_shape = input_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env = {self.input_name: x}
        for op, inputs, output, key in self.plan:
            args = [env[i] for i in inputs]
            if key is not None:
                env[output] = self.layers[key](*args)
            elif op == "Add":
                env[output] = args[0] + args[1]
            elif op == "Concat":
                env[output] = torch.cat(args, 1)
            elif op == "Reshape":
                env[output] = torch.flatten(args[0], 1)
            else:  # Identity, Dropout
                env[output] = args[0]
        return env[self.output_name]


def to_torch(model: Any, where: str) -> OnnxModule:
    import onnx
    from onnx import numpy_helper

    g = model.graph
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    inputs = [i for i in g.input if i.name not in consts]
    if len(inputs) != 1 or len(g.output) != 1:
        raise ModelImportError(f"{where}: a float model needs one input and one output")
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in inputs[0].type.tensor_type.shape.dim]
    shape = tuple(dims[1:])
    if not shape or min(shape) < 1:
        raise ModelImportError(f"{where}: the input needs a static shape (N, ...), got {dims}")
    plan: list[tuple[str, list[str], str, str | None]] = []
    layers: dict[str, torch.nn.Module] = {}
    producer: dict[str, int] = {}  # tensor -> index in plan

    def fail(node: Any, why: str) -> ModelImportError:
        return ModelImportError(f"{where}: node '{node.name}' ({node.op_type}): {why}")

    def t(a: np.ndarray) -> torch.nn.Parameter:
        return torch.nn.Parameter(torch.from_numpy(np.array(a, dtype=np.float32)), requires_grad=False)

    def const(node: Any, i: int) -> np.ndarray:
        if i >= len(node.input) or node.input[i] not in consts:
            raise fail(node, f"input {i} must be a constant")
        return consts[node.input[i]]

    for k, node in enumerate(g.node):
        a = {x.name: onnx.helper.get_attribute_value(x) for x in node.attribute}
        key = f"n{k}"
        op = node.op_type
        layer: torch.nn.Module | None = None
        ins = [node.input[0]] if node.input else []
        if op == "Constant":
            consts[node.output[0]] = numpy_helper.to_array(a["value"])
            continue
        if op in ("Conv", "ConvTranspose"):
            w = const(node, 1)
            pads = list(a.get("pads", [0, 0, 0, 0]))
            if len(pads) != 4 or pads[:2] != pads[2:] or any(d != 1 for d in a.get("dilations", [1, 1])) \
                    or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
                raise fail(node, "only 2-D convolutions with symmetric explicit pads and no dilation")
            bias = consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            g_ = int(a.get("group", 1))
            if op == "Conv":
                layer = torch.nn.Conv2d(w.shape[1] * g_, w.shape[0], tuple(w.shape[2:]), stride=tuple(a.get("strides", [1, 1])),
                                        padding=tuple(pads[:2]), groups=g_, bias=bias is not None)
            else:
                layer = torch.nn.ConvTranspose2d(w.shape[0], w.shape[1] * g_, tuple(w.shape[2:]),
                                                 stride=tuple(a.get("strides", [1, 1])), padding=tuple(pads[:2]),
                                                 output_padding=tuple(a.get("output_padding", [0, 0])), groups=g_,
                                                 bias=bias is not None)
            layer.weight = t(w)
            if bias is not None:
                layer.bias = t(bias)
        elif op in ("Gemm", "MatMul"):
            w = const(node, 1)
            if op == "Gemm" and (a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0):
                raise fail(node, "only Gemm with transA=0, alpha=1, beta=1")
            if w.ndim != 2:
                raise fail(node, "only products with a constant matrix")
            w = w if (op == "Gemm" and a.get("transB", 0)) else w.T
            bias = consts.get(node.input[2]) if op == "Gemm" and len(node.input) > 2 and node.input[2] else None
            layer = torch.nn.Linear(w.shape[1], w.shape[0], bias=bias is not None)
            layer.weight = t(w)
            if bias is not None:
                layer.bias = t(np.broadcast_to(bias, (w.shape[0],)))
        elif op == "BatchNormalization":
            scale, b, mean, var = (const(node, i) for i in (1, 2, 3, 4))
            layer = torch.nn.BatchNorm2d(len(scale), eps=float(a.get("epsilon", 1e-5)))
            layer.weight, layer.bias = t(scale), t(b)
            layer.running_mean.copy_(torch.from_numpy(mean.astype(np.float32)))
            layer.running_var.copy_(torch.from_numpy(var.astype(np.float32)))
        elif op == "Relu":
            layer = torch.nn.ReLU()
        elif op == "Clip":
            lo = consts.get(node.input[1]) if len(node.input) > 1 and node.input[1] else a.get("min")
            hi = consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else a.get("max")
            if lo is not None and float(lo) == 0.0 and hi is not None and float(hi) == 6.0:
                layer = torch.nn.ReLU6()
            elif lo is not None and float(lo) == 0.0 and hi is None:
                layer = torch.nn.ReLU()
            else:
                raise fail(node, "only Clip(0, 6) (ReLU6) or Clip(0, none) (ReLU)")
        elif op in ("MaxPool", "AveragePool"):
            if any(a.get("pads", [0])) or a.get("ceil_mode", 0):
                raise fail(node, "only pooling without padding or ceil_mode")
            kernel = tuple(a["kernel_shape"])
            stride = tuple(a.get("strides", kernel))
            layer = (torch.nn.MaxPool2d if op == "MaxPool" else torch.nn.AvgPool2d)(kernel, stride)
        elif op == "GlobalAveragePool":
            layer = torch.nn.AdaptiveAvgPool2d(1)
        elif op == "Flatten":
            if a.get("axis", 1) != 1:
                raise fail(node, "only Flatten with axis 1")
            layer = torch.nn.Flatten()
        elif op in ("Resize", "Upsample"):
            mode = a.get("mode", b"nearest")
            mode = mode.decode() if isinstance(mode, bytes) else mode
            scales = next((consts[n] for n in node.input[1:] if n in consts and consts[n].size == 4), None)
            if mode != "nearest" or scales is None or any(float(s) != int(s) for s in scales[2:]):
                raise fail(node, "only nearest resizing by constant integer scales")
            layer = torch.nn.Upsample(scale_factor=(float(scales[2]), float(scales[3])), mode="nearest")
        elif op == "Softmax":
            layer = torch.nn.Softmax(dim=1)
        elif op in ("Add", "Concat"):
            if op == "Concat" and a.get("axis") not in (1, -3):
                raise fail(node, "only Concat along axis 1")
            if op == "Add" and node.input[1] in consts:  # a constant bias after MatMul / Conv: fold it
                src = producer.get(node.input[0])
                prev = layers.get(plan[src][3]) if src is not None and plan[src][3] else None
                bias = consts[node.input[1]].reshape(-1)
                if not isinstance(prev, (torch.nn.Linear, torch.nn.Conv2d)) or bias.size != prev.weight.shape[0]:
                    raise fail(node, "adding a constant is only supported as the bias of the layer before it")
                prev.bias = t(bias if prev.bias is None else prev.bias.detach().numpy() + bias)
                plan.append(("Identity", [node.input[0]], node.output[0], None))
                producer[node.output[0]] = len(plan) - 1
                continue
            ins = list(node.input)
        elif op == "Reshape":
            target = const(node, 1)
            if target.size != 2 or (int(target[1]) != -1 and int(target[0]) not in (-1, 0, 1)):
                raise fail(node, f"only a reshape to (N, -1), got {target.tolist()}")
        elif op not in ("Identity", "Dropout"):
            raise fail(node, "unsupported operator for post-training quantization")
        if layer is not None:
            layers[key] = layer
        plan.append((op, ins, node.output[0], key if layer is not None else None))
        producer[node.output[0]] = len(plan) - 1
    return OnnxModule(plan, layers, inputs[0].name, g.output[0].name, shape).eval()
