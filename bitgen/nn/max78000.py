"""Quantization-aware training for the MAX78000's CNN accelerator: one module per accelerator
layer, computing exactly what the hardware computes (the golden op ``max78000_layer``).

:class:`Max78000Layer` is one fused accelerator layer, in the hardware's order: an element-wise
add or sub over several operands (residual connections; before or after the pooling), max or
average pooling (no padding), then conv2d 3x3 / 1x1 (stride 1, padding 0..2), flatten + linear,
or nothing (passthrough), then the output stage (shift with one rounding, clamp, ReLU / Abs /
none) or the raw 32-bit sum. :class:`Max78000Add` is a passthrough element-wise add: a residual
join that writes its own tensor.

Like every ``bitgen.nn`` layer it computes on integer values held in float tensors: the input
and output are Q7 int8 values (``v / 128``), in eval mode bit for bit what
``bitgen.golden`` computes for the exported ``max78000_layer`` (float64, exact). In training the
same function runs in float32 with straight-through gradients through every rounding, as
ai8x-training's QAT does (facts: ``../shared/reference/max78000.md`` section 2).

The float parameter ``weight`` is the layer's real weight (a product ``x * w`` of Q7 values
adds ``x * w`` to the Q7 output); the hardware integers come from it:

* ``output_shift`` (the YAML's and checkpoint's; the hardware shifts by
  ``s = output_shift + 8 - weight_bits``) is derived from the weights, as ai8x does:
  the smallest ``output_shift`` with ``max|w| <= 2**output_shift`` (and the bias in its range),
  within the hardware's range; or fixed by the ``output_shift`` argument.
* One integer weight step is ``2**s / 128``: ``W = clamp(round(w / step), weight range)``;
  the bias byte ``B = clamp(round(b / step), -128, 127)`` (it enters the sum as ``128 * B``).
* ``acc = sum(x * W) + 128 * B``; ``y = clamp(floor(acc * 2**s / 128 + 1/2), -128, 127)``, then
  the activation; ``output_width = 32``: ``y = acc``.

:func:`set_quantization` (``bitgen.nn``) off: the float warm-up, weights and outputs unrounded
(the clamps stay, like ai8x's Hardtanh).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .quantizers import ste

WEIGHT_RANGE = {8: (-128, 127), 4: (-8, 7), 2: (-2, 1), 1: (-1, 0)}
SHIFT_RANGE = (-15, 15)  # of the effective shift s (the POST register)
OPERATIONS = ("conv2d", "linear", "passthrough")
POOLS = ("none", "max", "avg")
ACTIVATIONS = ("none", "relu", "abs")
ELTWISE = ("none", "add", "sub")  # xor / or exist in hardware but have no gradient to train


def _round(training: bool, v: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``q`` with a straight-through gradient in training; exactly ``q`` in eval."""
    return ste(v, q) if training else q


class Max78000Layer(torch.nn.Module):
    """One accelerator layer (see the module docstring).

    ``in_channels``: input channels (``linear``: the input features, C*H*W when ``flatten``).
    ``kernel_size`` 3 or 1, ``padding`` 0..2 (default: 1 for 3x3, 0 for 1x1), stride 1.
    ``pool`` 'max' / 'avg' (``pool_size``, ``pool_stride`` 1..16; the stride defaults to the size),
    ``avg_pool_rounding`` (izer's ``--avg-pool-rounding``: half away from zero; else truncated).
    ``eltwise`` 'add' / 'sub' over ``operands`` (2..16) inputs of one shape, after the pooling
    (``pool_first``, the default) or before it. ``weight_bits`` 1, 2, 4 or 8; ``bias``: a bias
    byte per output channel; ``output_width`` 8 or 32 (32: the raw sum, no activation)."""

    def __init__(self, in_channels: int = 0, out_channels: int = 0, operation: str = "conv2d",
                 kernel_size: int = 3, padding: int | None = None, pool: str = "none", pool_size: int = 2,
                 pool_stride: int | None = None, avg_pool_rounding: bool = False, eltwise: str = "none",
                 operands: int = 1, pool_first: bool = True, activation: str = "relu", weight_bits: int = 8,
                 bias: bool = True, output_width: int = 8, flatten: bool = False,
                 output_shift: int | None = None):
        super().__init__()
        operation, pool, eltwise = str(operation).lower(), str(pool).lower(), str(eltwise).lower()
        activation = str(activation).lower()
        for what, v, known in (("operation", operation, OPERATIONS), ("pool", pool, POOLS),
                               ("eltwise", eltwise, ELTWISE), ("activation", activation, ACTIVATIONS)):
            if v not in known:
                extra = " (xor and or have no gradient to train)" if v in ("xor", "or") else ""
                raise ValueError(f"{what} '{v}' is not one of {', '.join(known)}{extra}")
        if int(weight_bits) not in WEIGHT_RANGE:
            raise ValueError(f"weight_bits must be 1, 2, 4 or 8 (MAX78000), not {weight_bits}")
        if int(output_width) not in (8, 32):
            raise ValueError(f"output_width must be 8 or 32, not {output_width}")
        operands = int(operands)
        if (eltwise == "none") != (operands == 1) or not 1 <= operands <= 16:
            raise ValueError(f"an element-wise op takes 2..16 operands, a layer without one takes 1 "
                             f"(eltwise '{eltwise}', operands {operands})")
        pool_size = int(pool_size)
        pool_stride = pool_size if pool_stride is None else int(pool_stride)
        if pool != "none" and not (1 <= pool_size <= 16 and 1 <= pool_stride <= 16):
            raise ValueError(f"pool size and stride must be 1..16, not {pool_size} and {pool_stride}")
        if not pool_first and (eltwise == "none" or pool == "none"):
            raise ValueError("pool_first false needs both pooling and an element-wise op")
        kernel_size = int(kernel_size)
        if operation == "conv2d":
            if kernel_size not in (1, 3):
                raise ValueError(f"the accelerator's conv2d kernels are 3x3 or 1x1, not {kernel_size}x{kernel_size}")
            padding = kernel_size // 2 if padding is None else int(padding)
            if not 0 <= padding <= 2 or (kernel_size == 1 and padding):
                raise ValueError(f"padding {padding}: 0..2 for a 3x3 kernel, 0 for 1x1")
        else:
            padding = 0
        if operation == "passthrough":
            if activation != "none" or int(output_width) != 8 or flatten or output_shift not in (None, 0):
                raise ValueError("a passthrough layer has no activation, 32-bit output, flatten or output_shift")
            if pool == "none" and eltwise == "none":
                raise ValueError("a passthrough layer needs pooling or an element-wise op")
            bias = False
        if int(output_width) == 32 and activation != "none":
            raise ValueError("a 32-bit output has no activation (activation 'none')")
        if flatten and (operation != "linear" or pool != "none"):
            raise ValueError("flatten is for a linear layer without pooling")
        if operation != "passthrough" and (int(in_channels) < 1 or int(out_channels) < 1):
            raise ValueError(f"{operation} needs in_channels and out_channels >= 1")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.operation, self.kernel_size, self.padding = operation, kernel_size, padding
        self.pool, self.pool_size, self.pool_stride = pool, pool_size, pool_stride
        self.avg_pool_rounding, self.eltwise, self.operands = bool(avg_pool_rounding), eltwise, operands
        self.pool_first, self.activation, self.weight_bits = bool(pool_first), activation, int(weight_bits)
        self.output_width, self.flatten = int(output_width), bool(flatten)
        self.fixed_shift = None if output_shift is None else int(output_shift)
        if self.fixed_shift is not None:
            lo, hi = self.shift_range
            if not lo <= self.fixed_shift <= hi:
                raise ValueError(f"output_shift {self.fixed_shift} with {self.weight_bits}-bit weights: "
                                 f"{lo}..{hi}")
        self.enabled = True  # rounding on (QAT); off: the float warm-up (bitgen.nn.set_quantization)
        if operation == "passthrough":
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
            return
        shape = ((self.out_channels, self.in_channels) if operation == "linear" else
                 (self.out_channels, self.in_channels, kernel_size, kernel_size))
        self.weight = torch.nn.Parameter(torch.empty(shape))
        torch.nn.init.kaiming_uniform_(self.weight, nonlinearity="relu" if activation != "none" else "linear")
        self.bias = torch.nn.Parameter(torch.zeros(self.out_channels)) if bias else None

    # ------------------------------------------------------------------ plain data
    def spec(self) -> dict:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels, "operation": self.operation,
                "kernel_size": self.kernel_size, "padding": self.padding, "pool": self.pool,
                "pool_size": self.pool_size, "pool_stride": self.pool_stride,
                "avg_pool_rounding": self.avg_pool_rounding, "eltwise": self.eltwise, "operands": self.operands,
                "pool_first": self.pool_first, "activation": self.activation, "weight_bits": self.weight_bits,
                "bias": self.bias is not None, "output_width": self.output_width, "flatten": self.flatten,
                "output_shift": self.fixed_shift}

    # ------------------------------------------------------------------ integers
    @property
    def shift_range(self) -> tuple[int, int]:
        """The output_shift values whose effective shift ``output_shift + 8 - weight_bits`` the
        hardware takes."""
        return SHIFT_RANGE[0] - 8 + self.weight_bits, SHIFT_RANGE[1] - 8 + self.weight_bits

    def output_shift(self) -> int:
        """The layer's output_shift: fixed, or the smallest with every weight within
        ``2**output_shift`` and every bias within its byte (see the module docstring)."""
        if self.fixed_shift is not None:
            return self.fixed_shift
        with torch.no_grad():
            m = float(self.weight.detach().abs().max())
            if self.bias is not None:  # the bias byte's range is 2**(8 - bits) times the weights'
                m = max(m, float(self.bias.detach().abs().max()) * 2.0 ** (self.weight_bits - 8))
        lo, hi = self.shift_range
        if not m > 0 or not math.isfinite(m):
            return lo if m == 0 else hi
        return min(max(math.ceil(math.log2(m)), lo), hi)

    def step(self) -> float:
        """The real value of one integer weight (and bias) step: ``2**s / 128``."""
        return 2.0 ** (self.output_shift() + 8 - self.weight_bits) / 128

    def _integers(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The weights and bias bytes as integers (held in ``dtype``; unrounded in the warm-up)."""
        step = self.step()
        lo, hi = WEIGHT_RANGE[self.weight_bits]
        v = self.weight.to(dtype) / step
        w = v.clamp(lo, hi) if not self.enabled else _round(self.training, v, torch.round(v).clamp(lo, hi))
        if self.bias is None:
            return w, None
        vb = self.bias.to(dtype) / step
        b = vb.clamp(-128, 127) if not self.enabled else _round(self.training, vb, torch.round(vb).clamp(-128, 127))
        return w, b

    @torch.no_grad()
    def integer_weight(self) -> np.ndarray:
        w, _ = self._integers(torch.float64)
        return torch.round(w).to(torch.int64).numpy()

    @torch.no_grad()
    def integer_bias(self) -> np.ndarray | None:
        _, b = self._integers(torch.float64)
        return None if b is None else torch.round(b).to(torch.int64).numpy()

    # ------------------------------------------------------------------ forward
    def _eltwise(self, xs: list[torch.Tensor]) -> torch.Tensor:
        y = xs[0]
        for x in xs[1:]:
            y = y + x if self.eltwise == "add" else y - x
        return y.clamp(-128, 127)  # saturating, once

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.pool_size, self.pool_stride
        if self.pool == "max":
            return F.max_pool2d(x, k, s)
        total = F.avg_pool2d(x, k, s, divisor_override=1)  # the exact window sum
        n = k * k
        if not self.enabled:
            return total / n
        if self.avg_pool_rounding:  # half away from zero
            q = torch.sign(total) * torch.div(2 * total.abs() + n, 2 * n, rounding_mode="floor")
        else:  # truncated toward zero
            q = torch.trunc(total / n)
        return _round(self.training, total / n, q)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        if len(xs) != self.operands:
            raise ValueError(f"this layer takes {self.operands} operand(s), given {len(xs)}")
        dtype = xs[0].dtype if self.training else torch.float64
        data = [x.to(dtype) for x in xs]
        if self.eltwise != "none" and not self.pool_first:
            data = [self._eltwise(data)]
        if self.pool != "none":
            data = [self._pool(x) for x in data]
        x = self._eltwise(data) if self.eltwise != "none" and self.pool_first else data[0]
        if self.operation == "passthrough":
            return x
        w, b = self._integers(dtype)
        if self.operation == "linear":
            acc = F.linear(x.flatten(1), w)  # without flatten the data is (C, 1, 1)
            acc = acc.reshape(acc.shape[0], -1, 1, 1)
        else:
            acc = F.conv2d(x, w, padding=self.padding)
        if b is not None:
            acc = acc + 128 * b.reshape(1, -1, 1, 1)
        if self.output_width == 32:
            return acc
        scaled = acc * (2.0 ** (self.output_shift() + 8 - self.weight_bits) / 128)
        y = scaled if not self.enabled else _round(self.training, scaled, torch.floor(scaled + 0.5))
        y = y.clamp(-128, 127)
        if self.activation == "relu":
            y = y.clamp(0, 127)
        elif self.activation == "abs":
            y = y.abs().clamp(0, 127)
        return y

    # ------------------------------------------------------------------ export
    def to_ir(self, name: str = ""):
        """The golden op of this layer, with the integers the forward pass uses."""
        from .. import ir

        linear = self.operation == "linear"
        return ir.Max78000Layer(
            operation=self.operation,
            weight=None if self.weight is None else self.integer_weight(),
            bias=None if self.bias is None else self.integer_bias(),
            weight_bits=self.weight_bits,
            output_shift=0 if self.operation == "passthrough" else self.output_shift(),
            activation=self.activation, output_width=self.output_width,
            padding=0 if linear or self.operation == "passthrough" else self.padding,
            flatten=self.flatten, pool=self.pool,
            pool_size=(self.pool_size,) * 2 if self.pool != "none" else (1, 1),
            pool_stride=(self.pool_stride,) * 2 if self.pool != "none" else (1, 1),
            avg_pool_rounding=self.avg_pool_rounding, eltwise=self.eltwise, operands=self.operands,
            pool_first=self.pool_first, name=name)


class Max78000Add(Max78000Layer):
    """A passthrough element-wise add of ``operands`` tensors (a residual join): saturating
    int8, no shift, no activation; optionally pooled (``pool``, before the add by default)."""

    def __init__(self, operands: int = 2, pool: str = "none", pool_size: int = 2, pool_stride: int | None = None,
                 avg_pool_rounding: bool = False, pool_first: bool = True):
        super().__init__(operation="passthrough", eltwise="add", operands=operands, pool=pool, pool_size=pool_size,
                         pool_stride=pool_stride, avg_pool_rounding=avg_pool_rounding, pool_first=pool_first,
                         activation="none", bias=False)

    def spec(self) -> dict:
        return {"operands": self.operands, "pool": self.pool, "pool_size": self.pool_size,
                "pool_stride": self.pool_stride, "avg_pool_rounding": self.avg_pool_rounding,
                "pool_first": self.pool_first}
