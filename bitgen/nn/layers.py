"""Quantized Linear and Conv2d that compute in the integer domain.

Their input holds integer values (the int8 model input from ``InputSpec.quantize``, or the
int8 output of a norm layer) stored in a float tensor. The output is the exact integer
accumulator ``x @ Wq^T + bias`` of :func:`bitgen.golden.linear` / :func:`bitgen.golden.conv2d`:
``Wq`` are the integer weight values, the float scale only shapes the gradient.

In training the arithmetic is float32 (gradients flow through the quantizer's STE); in eval
mode it is float64, where every partial sum of integers below 2**31 is exact, so the result
equals the golden model bit for bit.

An optional bias is an integer added to the accumulator. It is trained as a float ``b`` in
the units of a float layer whose inputs were ``x / 128``: ``bias = round(b * 128 / s)``, so a
bias learns at the same pace as the weights whatever the weight scale.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .quantizers import WeightQuantizer, round_half_up, ste

INT32_MAX = 2**31 - 1
ACTIVATION_UNIT = 128.0  # the float value an int8 activation of 128 stands for in bias units


class _QuantMixin:
    weight: torch.nn.Parameter
    bias: torch.nn.Parameter | None
    quant: WeightQuantizer

    @property
    def encoding(self) -> str:
        return self.quant.encoding

    def _quantized(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
        q, s = self.quant(self.weight)
        b = None
        if self.bias is not None:
            sb = s.reshape(-1)
            v = self.bias * (ACTIVATION_UNIT / sb)
            b = ste(v, round_half_up(v.detach()).clamp(-INT32_MAX, INT32_MAX)) if self.quant.rounds else v
        if not self.training:
            q = q.detach().to(dtype)
            b = None if b is None else b.detach().to(dtype)
        return q, b

    def integer_weight(self) -> torch.Tensor:
        """The integer weight values (int64) the forward pass uses."""
        return self.quant.integers(self.weight)

    def integer_bias(self) -> torch.Tensor | None:
        """The integer bias (int64) the forward pass adds, or None."""
        if self.bias is None:
            return None
        s = self.quant(self.weight)[1].reshape(-1)
        v = self.bias.detach() * (ACTIVATION_UNIT / s)
        return round_half_up(v).clamp(-INT32_MAX, INT32_MAX).to(torch.int64)

    def _compute_dtype(self, x: torch.Tensor) -> torch.dtype:
        # eval: float64 makes integer sums exact; training: whatever the input is (float32)
        return x.dtype if self.training else torch.float64


def _init_weight(w: torch.Tensor, fan_in: int) -> None:
    bound = 1.0 / math.sqrt(fan_in)  # the default of torch.nn.Linear / Conv2d
    torch.nn.init.uniform_(w, -bound, bound)


class QuantLinear(_QuantMixin, torch.nn.Module):
    """``y = x @ Wq^T (+ bias)`` with ``Wq`` the integer values of ``encoding``.

    Exports to :class:`bitgen.ir.Linear`.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = False,
                 encoding: str = "4bitsym", scale: str = "absmean", per_channel: bool = False):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.weight = torch.nn.Parameter(torch.empty(self.out_features, self.in_features))
        self.bias = torch.nn.Parameter(torch.zeros(self.out_features)) if bias else None
        self.quant = WeightQuantizer(encoding, scale, per_channel)
        _init_weight(self.weight, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = self._compute_dtype(x)
        q, b = self._quantized(dtype)
        return F.linear(x.to(dtype), q, b)

    def spec(self) -> dict:
        return {"in_features": self.in_features, "out_features": self.out_features,
                "bias": self.bias is not None, "encoding": self.quant.encoding,
                "scale": self.quant.scale_mode, "per_channel": self.quant.per_channel}

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _conv_geometry(m: torch.nn.Module, in_channels: int, out_channels: int, kernel_size, stride, padding,
                   groups: int) -> None:
    """The fields every convolution keeps, checked (groups must divide both channel counts)."""
    m.in_channels, m.out_channels = int(in_channels), int(out_channels)
    m.kernel_size, m.stride, m.padding = _pair(kernel_size), _pair(stride), _pair(padding)
    m.groups = int(groups)
    if m.in_channels % m.groups or m.out_channels % m.groups:
        raise ValueError(f"groups={groups} must divide in_channels={in_channels} "
                         f"and out_channels={out_channels}")


class QuantConv2d(_QuantMixin, torch.nn.Module):
    """2-D convolution with integer weights, zero padding, stride and groups
    (``groups == in_channels == out_channels`` is depthwise). Exports to :class:`bitgen.ir.Conv2d`.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1, padding=0,
                 groups: int = 1, bias: bool = False, encoding: str = "4bitsym",
                 scale: str = "absmean", per_channel: bool = False):
        super().__init__()
        _conv_geometry(self, in_channels, out_channels, kernel_size, stride, padding, groups)
        kh, kw = self.kernel_size
        self.weight = torch.nn.Parameter(
            torch.empty(self.out_channels, self.in_channels // self.groups, kh, kw))
        self.bias = torch.nn.Parameter(torch.zeros(self.out_channels)) if bias else None
        self.quant = WeightQuantizer(encoding, scale, per_channel)
        _init_weight(self.weight, self.in_channels // self.groups * kh * kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = self._compute_dtype(x)
        q, b = self._quantized(dtype)
        return F.conv2d(x.to(dtype), q, b, self.stride, self.padding, 1, self.groups)

    def spec(self) -> dict:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": list(self.padding), "groups": self.groups,
                "bias": self.bias is not None, "encoding": self.quant.encoding,
                "scale": self.quant.scale_mode, "per_channel": self.quant.per_channel}

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, groups={self.groups}, "
                f"bias={self.bias is not None}")


class QuantConvTranspose2d(_QuantMixin, torch.nn.Module):
    """Transposed 2-D convolution with integer weights (PyTorch's definition: weight
    ``(in, out // groups, kh, kw)``, stride, padding, output_padding, groups). One weight scale
    for the whole tensor. Exports to :class:`bitgen.ir.ConvTranspose2d`.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1, padding=0,
                 output_padding=0, groups: int = 1, bias: bool = False, encoding: str = "4bitsym",
                 scale: str = "absmean", per_channel: bool = False):
        super().__init__()
        if per_channel:
            raise ValueError("QuantConvTranspose2d has one weight scale (per_channel=False)")
        _conv_geometry(self, in_channels, out_channels, kernel_size, stride, padding, groups)
        self.output_padding = _pair(output_padding)
        kh, kw = self.kernel_size
        self.weight = torch.nn.Parameter(
            torch.empty(self.in_channels, self.out_channels // self.groups, kh, kw))
        self.bias = torch.nn.Parameter(torch.zeros(self.out_channels)) if bias else None
        self.quant = WeightQuantizer(encoding, scale, False)
        _init_weight(self.weight, self.in_channels // self.groups * kh * kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = self._compute_dtype(x)
        q, b = self._quantized(dtype)
        if b is not None:
            b = b.expand(self.out_channels)  # one scale: the bias units are per tensor
        return F.conv_transpose2d(x.to(dtype), q, b, self.stride, self.padding, self.output_padding, self.groups)

    def integer_bias(self) -> torch.Tensor | None:
        b = super().integer_bias()
        return None if b is None else b.expand(self.out_channels).clone()

    def spec(self) -> dict:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": list(self.padding), "output_padding": list(self.output_padding),
                "groups": self.groups, "bias": self.bias is not None, "encoding": self.quant.encoding,
                "scale": self.quant.scale_mode}

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, output_padding={self.output_padding}, "
                f"groups={self.groups}, bias={self.bias is not None}")
