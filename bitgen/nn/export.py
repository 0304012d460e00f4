"""PyTorch module -> :class:`bitgen.ir.Model` (integers only), validated.

Accepted: an ``nn.Sequential`` (nested ones are flattened) of ``bitgen.nn`` layers
(``QuantLinear``, ``QuantConv2d``, ``Requant``, ``Shift``, ``ShiftNorm``, ``AvgPool2d``) and the plain
``torch.nn`` layers ``ReLU``, ``MaxPool2d``, ``AvgPool2d``, ``Flatten`` (plus ``Dropout`` and
``Identity``, which do nothing at inference), or a single such layer. Anything else raises
:class:`ExportError` naming the layer and the op.

A static ``Requant`` directly followed by ``ReLU`` becomes one ``ir.Requant`` with
``out_min = 0``: ``max(clamp(v, -128, 127), 0) == clamp(v, 0, 127)``.

The input specification comes from ``input=`` or from the module's ``input_spec`` attribute;
without either, a model whose first layer is a ``QuantLinear`` takes its shape from that
layer, anything else is an error asking for the shape.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import ir
from .. import nn as bnn
from ..errors import BitgenError


class ExportError(BitgenError):
    """The module cannot be expressed in the integer IR (one-line message)."""


def _leaves(module: torch.nn.Module, prefix: str = "") -> list[tuple[str, torch.nn.Module]]:
    if type(module) is torch.nn.Sequential:
        out = []
        for name, child in module.named_children():
            out += _leaves(child, f"{prefix}.{name}" if prefix else name)
        return out
    return [(prefix, module)]


def _unsupported(index: int, name: str, module: torch.nn.Module, why: str = "") -> ExportError:
    op = type(module).__name__
    where = f"layer {index} '{name}'" if name else f"layer {index}"
    return ExportError(f"{where}: unsupported op {op}{' (' + why + ')' if why else ''}")


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _pool(index: int, name: str, m: torch.nn.Module) -> ir.Layer:
    kernel = _pair(m.kernel_size)
    stride = kernel if m.stride is None or m.stride == [] else _pair(m.stride)
    if getattr(m, "padding", 0) not in (0, (0, 0)):
        raise _unsupported(index, name, m, "padding is not supported")
    if getattr(m, "ceil_mode", False):
        raise _unsupported(index, name, m, "ceil_mode is not supported")
    if isinstance(m, torch.nn.MaxPool2d):
        if m.dilation not in (1, (1, 1)):
            raise _unsupported(index, name, m, "dilation is not supported")
        return ir.MaxPool2d(kernel, stride, name=name)
    if getattr(m, "divisor_override", None):
        raise _unsupported(index, name, m, "divisor_override is not supported")
    return ir.AvgPool2d(kernel, stride, name=name)


def _layer(index: int, name: str, m: torch.nn.Module) -> ir.Layer | None:
    """The IR layer for one module (None: nothing to do at inference)."""
    if isinstance(m, bnn.QuantLinear):
        b = m.integer_bias()
        return ir.Linear(weight=m.integer_weight().numpy(), encoding=m.encoding,
                         bias=None if b is None else b.numpy(), name=name)
    if isinstance(m, bnn.QuantConv2d):
        b = m.integer_bias()
        return ir.Conv2d(weight=m.integer_weight().numpy(), encoding=m.encoding,
                         bias=None if b is None else b.numpy(), stride=m.stride,
                         padding=m.padding, groups=m.groups, name=name)
    if isinstance(m, bnn.Requant):
        mult, shift = m.multipliers_shifts()
        return ir.Requant(multiplier=np.array(mult), shift=np.array(shift), name=name)
    if isinstance(m, bnn.ShiftNorm):
        return ir.ShiftNorm(name=name)
    if isinstance(m, bnn.Shift):
        return ir.Requant(multiplier=np.array([1]), shift=np.array([m.shift]), rounding="floor",
                          out_dtype="int32", name=name)
    if isinstance(m, bnn.AvgPool2d):
        return ir.AvgPool2d(m.kernel_size, m.stride, name=name)
    if type(m) is torch.nn.ReLU:
        return ir.ReLU(name=name)
    if type(m) in (torch.nn.MaxPool2d, torch.nn.AvgPool2d):
        return _pool(index, name, m)
    if type(m) is torch.nn.Flatten:
        if m.start_dim != 1 or m.end_dim != -1:
            raise _unsupported(index, name, m, "only Flatten(start_dim=1, end_dim=-1)")
        return ir.Flatten(name=name)
    if type(m) in (torch.nn.Dropout, torch.nn.Identity):
        return None
    hint = ""
    if type(m) in (torch.nn.Linear, torch.nn.Conv2d):
        hint = f"float weights; use bitgen.nn.Quant{type(m).__name__}"
    elif len(list(m.children())):
        hint = "only nn.Sequential containers can be exported"
    raise _unsupported(index, name, m, hint)


def _input_spec(module: torch.nn.Module, leaves: list[tuple[str, torch.nn.Module]],
                given: ir.InputSpec | None) -> ir.InputSpec:
    carried = bnn.input_spec_of(module)
    if given is not None:
        if carried is not None and given.scale == ir.InputSpec(given.shape).scale \
                and tuple(given.shape) == tuple(carried.shape):
            return carried  # a bare shape was given; keep the scale the model carries
        return given
    if carried is not None:
        return carried
    first = next((m for _, m in leaves if not isinstance(m, (torch.nn.Dropout, torch.nn.Identity))), None)
    if isinstance(first, bnn.QuantLinear):
        return ir.InputSpec((first.in_features,))
    raise ExportError("the model's input shape is unknown: pass input=ir.InputSpec(shape) "
                      "(on the command line --input-shape C,H,W) or set model.input_spec")


def to_ir(module: torch.nn.Module, input: ir.InputSpec | None = None,
          labels: list[str] | None = None, name: str | None = None) -> ir.Model:
    """Export ``module`` (see the module docstring); the result is validated."""
    if not isinstance(module, torch.nn.Module):
        raise ExportError(f"expected a torch.nn.Module, got {type(module).__name__}")
    leaves = _leaves(module)
    layers: list[ir.Layer] = []
    fused_prev = False
    for index, (lname, m) in enumerate(leaves):
        layer = _layer(index, lname, m)
        if layer is None:
            continue
        # Requant followed by ReLU: one clamp to [0, 127]
        if isinstance(layer, ir.ReLU) and layers and isinstance(layers[-1], ir.Requant) \
                and not fused_prev and layers[-1].out_min <= 0:
            layers[-1].out_min = 0
            fused_prev = True
            continue
        fused_prev = False
        layers.append(layer)
    if not layers:
        raise ExportError("the model has no layers to export")
    if labels is None and getattr(module, "labels", None) is not None:
        labels = [str(s) for s in module.labels]
    model = ir.Model(input=_input_spec(module, leaves, input), layers=layers,
                     labels=None if labels is None else [str(s) for s in labels],
                     name=name or getattr(module, "model_name", None) or "model")
    try:
        model.validate()
    except ir.IRError as e:
        raise ExportError(f"exported model is not valid: {e}") from None
    return model
