"""2-D convolution (cross-correlation), dense, grouped or depthwise."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..ir.types import IRError, TensorType, int_array, pair
from .base import Op, accumulator_range, check_weights, fit, random_bias, random_weights


@dataclass(eq=False)
class Conv2d(Op):
    """2-D cross-correlation on CHW, zero padding, int32 accumulator. groups == in == out is depthwise."""

    kind: ClassVar[str] = "conv2d"
    weight: np.ndarray  # (out, in // groups, kh, kw)
    encoding: str
    bias: np.ndarray | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    name: str = ""

    def __post_init__(self) -> None:
        self.weight = int_array(self.weight, "conv2d weight")
        if self.bias is not None:
            self.bias = int_array(self.bias, "conv2d bias")
        self.stride = pair(self.stride)
        self.padding = pair(self.padding)
        self.groups = int(self.groups)

    def infer(self, t: TensorType) -> TensorType:
        if len(t.shape) != 3:
            raise IRError(f"expects a (C, H, W) input, got shape {t.shape}")
        if self.weight.ndim != 4:
            raise IRError(f"weight must be 4-D (out, in/groups, kh, kw), got {self.weight.shape}")
        c, h, w = t.shape
        co, ci_g, kh, kw = self.weight.shape
        g = self.groups
        if g < 1 or c % g or co % g:
            raise IRError(f"groups={g} must divide input channels {c} and output channels {co}")
        if ci_g != c // g:
            raise IRError(f"weight expects {ci_g * g} input channels, previous layer gives {c}")
        (sh, sw), (ph, pw) = self.stride, self.padding
        if sh < 1 or sw < 1 or ph < 0 or pw < 0 or kh < 1 or kw < 1:
            raise IRError("stride must be >= 1, padding >= 0 and kernel >= 1")
        oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        if oh < 1 or ow < 1:
            raise IRError(f"kernel {kh}x{kw} does not fit input {h}x{w} with padding {ph},{pw}")
        check_weights(self.weight, self.encoding, self.bias)
        t_in = t
        if ph or pw:  # zero padding: 0 joins the input interval
            t_in = TensorType(t.shape, t.dtype, min(t.lo, 0), max(t.hi, 0))
        lo, hi = accumulator_range(self.weight, self.bias, t_in)
        return TensorType((co, oh, ow), "int32", lo, hi)

    def golden(self, x: np.ndarray) -> np.ndarray:
        """Cross-correlation with zero padding, stride and groups; int32 result.

        ``y[n, o, i, j] = bias[o] + sum_{c, u, v} w[o, c, u, v] * xp[n, g*Cg + c, i*sh + u, j*sw + v]``
        where ``g = o // (O / groups)``, ``Cg = C / groups`` and ``xp`` is ``x`` padded with zeros.
        Evaluated in float64: exact, as for :class:`~bitgen.ops.linear.Linear`.
        """
        n, c, h, w = x.shape
        co, cig, kh, kw = self.weight.shape
        (sh, sw), (ph, pw), g = self.stride, self.padding, self.groups
        xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        win = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]  # N C OH OW kh kw
        oh, ow = win.shape[2], win.shape[3]
        win = win.reshape(n, g, cig, oh, ow, kh, kw)
        wt = self.weight.astype(np.float64).reshape(g, co // g, cig, kh, kw)
        acc = np.einsum("ngcijuv,gocuv->ngoij", win, wt, optimize=True).reshape(n, co, oh, ow)
        y = acc.astype(np.int64)
        if self.bias is not None:
            y += self.bias[None, :, None, None]
        return fit(y, "int32", "conv2d")

    def macs(self, t_out: TensorType) -> int:
        return t_out.size * math.prod(self.weight.shape[1:])

    def channel_local(self, t_in: TensorType) -> bool:
        c = t_in.shape[0]
        return len(t_in.shape) == 3 and self.groups == c and self.weight.shape[0] == c

    @classmethod
    def random_weight(cls, t: TensorType) -> int:
        return (8 if t.binary else 4) if len(t.shape) == 3 else 0  # binary: the XNOR kernels

    @classmethod
    def random(cls, draw: Any, rng: np.random.Generator, t: TensorType) -> "Conv2d":
        from hypothesis import strategies as st

        c, h, w = t.shape
        style = draw(st.sampled_from(["dense", "depthwise", "grouped"]))
        divisors = [g for g in range(1, c + 1) if c % g == 0]
        groups = {"dense": 1, "depthwise": c}.get(style) or draw(st.sampled_from(divisors))
        co = groups * draw(st.integers(1, 3))
        ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
        # Half of them 3x3 and stride 1 where they fit, the shapes the specialized kernels take
        # (plane kernels: stride 1; bg_conv3x3.inc: 3x3); the rest anything.
        common = draw(st.booleans()) and h + 2 * ph >= 3 and w + 2 * pw >= 3
        kh = 3 if common else draw(st.integers(1, min(4, h + 2 * ph)))
        kw = 3 if common else draw(st.integers(1, min(4, w + 2 * pw)))
        stride = (1, 1) if common else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        wt, enc = random_weights(draw, rng, (co, c // groups, kh, kw), t)
        return cls(weight=wt, encoding=enc, bias=random_bias(draw, rng, co), stride=stride,
                   padding=(ph, pw), groups=groups)
