"""2-D transposed convolution (the gradient of a strided conv: upsampling with a learned kernel)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..ir.bounds import partial_sum_bound
from ..ir.types import INT32, IRError, TensorType, int_array, pair
from .base import Op, check_weights, fit, random_bias, random_weights


@dataclass(eq=False)
class ConvTranspose2d(Op):
    """Transposed convolution on CHW, PyTorch's definition, int32 accumulator.

    ``weight`` is (in, out // groups, kh, kw). Output size ``(H - 1) * s - 2 * p + k + output_padding``
    per axis. Each input value scatters ``x[c, h, w] * weight[c, o', u, v]`` to output
    ``(h * s + u - p, w * s + v - p)`` of output channel ``o = g * (out / groups) + o'`` for the
    group ``g`` of ``c``; positions outside the output are dropped. Exact integers, no rounding.
    """

    kind: ClassVar[str] = "conv_transpose2d"
    weight: np.ndarray
    encoding: str
    bias: np.ndarray | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    output_padding: tuple[int, int] = (0, 0)
    groups: int = 1
    name: str = ""

    def __post_init__(self) -> None:
        self.weight = int_array(self.weight, "conv_transpose2d weight")
        if self.bias is not None:
            self.bias = int_array(self.bias, "conv_transpose2d bias")
        self.stride, self.padding = pair(self.stride), pair(self.padding)
        self.output_padding = pair(self.output_padding)
        self.groups = int(self.groups)

    @property
    def out_channels(self) -> int:
        return int(self.weight.shape[1]) * self.groups

    def output_rows(self) -> np.ndarray:
        """The weights of each output channel, (out, in // groups, kh, kw): what one output
        value sums over (a subset of it, depending on the position)."""
        c, cog, kh, kw = self.weight.shape
        g = self.groups
        return self.weight.reshape(g, c // g, cog, kh, kw).transpose(0, 2, 1, 3, 4).reshape(g * cog, c // g, kh, kw)

    def infer(self, t: TensorType) -> TensorType:
        if len(t.shape) != 3:
            raise IRError(f"expects a (C, H, W) input, got shape {t.shape}")
        if self.weight.ndim != 4:
            raise IRError(f"weight must be 4-D (in, out/groups, kh, kw), got {self.weight.shape}")
        c, h, w = t.shape
        g = self.groups
        if g < 1 or c % g:
            raise IRError(f"groups={g} must divide input channels {c}")
        if self.weight.shape[0] != c:
            raise IRError(f"weight expects {self.weight.shape[0]} input channels, previous layer gives {c}")
        (sh, sw), (ph, pw), (oph, opw) = self.stride, self.padding, self.output_padding
        kh, kw = self.weight.shape[2:]
        if min(sh, sw, kh, kw) < 1 or min(ph, pw) < 0:
            raise IRError("stride must be >= 1, padding >= 0 and kernel >= 1")
        if not (0 <= oph < sh and 0 <= opw < sw):
            raise IRError("output_padding must be smaller than the stride")
        if max(sh, sw, kh, kw, ph, pw) > 255:
            raise IRError("kernel, stride and padding must be at most 255")
        oh, ow = (h - 1) * sh - 2 * ph + kh + oph, (w - 1) * sw - 2 * pw + kw + opw
        if oh < 1 or ow < 1:
            raise IRError(f"padding {ph},{pw} leaves no output for input {h}x{w}")
        rows = self.output_rows()
        check_weights(rows, self.encoding, self.bias)  # rows: one per output channel, as the bias
        bias = self.bias
        worst = partial_sum_bound(rows, bias, t.amax)
        if worst > INT32[1]:
            raise IRError(f"int32 accumulator may overflow (bound {worst} > {INT32[1]} for inputs in "
                          f"[{t.lo}, {t.hi}])")
        # An output sums a position-dependent subset of its row: bound each product by the
        # larger (and smaller) of w * lo, w * hi and 0 (a missing term).
        r = rows.reshape(rows.shape[0], -1).astype(object)
        top = np.maximum(np.maximum(r * t.lo, r * t.hi), 0).sum(axis=1)
        bot = np.minimum(np.minimum(r * t.lo, r * t.hi), 0).sum(axis=1)
        b = np.zeros(len(r), dtype=object) if bias is None else bias.astype(object)
        return TensorType((self.out_channels, oh, ow), "int32", int(min(b + bot)), int(max(b + top)))

    def golden(self, x: np.ndarray) -> np.ndarray:
        """The scatter of the class docstring, in float64 (exact: every partial sum is an
        integer below 2**31 in magnitude, proved by infer)."""
        n, c, h, w = x.shape
        _, cog, kh, kw = self.weight.shape
        (sh, sw), (ph, pw), g = self.stride, self.padding, self.groups
        oh, ow = (h - 1) * sh - 2 * ph + kh + self.output_padding[0], (w - 1) * sw - 2 * pw + kw + self.output_padding[1]
        full = np.zeros((n, g * cog, max((h - 1) * sh + kh, ph + oh), max((w - 1) * sw + kw, pw + ow)))
        xg = x.astype(np.float64).reshape(n, g, c // g, h, w)
        wg = self.weight.astype(np.float64).reshape(g, c // g, cog, kh, kw)
        for u in range(kh):
            for v in range(kw):
                contrib = np.einsum("ngchw,gco->ngohw", xg, wg[:, :, :, u, v]).reshape(n, g * cog, h, w)
                full[:, :, u : u + (h - 1) * sh + 1 : sh, v : v + (w - 1) * sw + 1 : sw] += contrib
        y = full[:, :, ph : ph + oh, pw : pw + ow].astype(np.int64)
        if self.bias is not None:
            y += self.bias[None, :, None, None]
        return fit(y, "int32", "conv_transpose2d")

    def macs(self, t_out: TensorType) -> int:
        """The products that land in the output (the others are never computed)."""
        c, _, kh, kw = self.weight.shape
        _, oh, ow = t_out.shape

        def pairs(out: int, k: int, s: int, p: int, op: int) -> int:  # (input index, tap) pairs inside
            n_in = (out - k - op + 2 * p) // s + 1
            return sum(1 for i in range(n_in) for u in range(k) if 0 <= i * s + u - p < out)

        rows = pairs(oh, kh, self.stride[0], self.padding[0], self.output_padding[0])
        cols = pairs(ow, kw, self.stride[1], self.padding[1], self.output_padding[1])
        return self.out_channels * (c // self.groups) * rows * cols

    def channel_local(self, t_in: TensorType) -> bool:
        return False

    @classmethod
    def random_weight(cls, t: TensorType) -> int:
        return 2 if len(t.shape) == 3 and t.shape[1] * t.shape[2] <= 30 else 0

    @classmethod
    def random(cls, draw: Any, rng: np.random.Generator, t: TensorType) -> "ConvTranspose2d":
        from hypothesis import strategies as st

        c = t.shape[0]
        groups = draw(st.sampled_from([g for g in range(1, c + 1) if c % g == 0]))
        cog = draw(st.integers(1, 3))
        kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
        sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
        ph, pw = draw(st.integers(0, min(2, kh - 1))), draw(st.integers(0, min(2, kw - 1)))
        oph, opw = draw(st.integers(0, sh - 1)), draw(st.integers(0, sw - 1))
        wt, enc = random_weights(draw, rng, (c, cog, kh, kw))
        return cls(weight=wt, encoding=enc, bias=random_bias(draw, rng, cog * groups), stride=(sh, sw),
                   padding=(ph, pw), output_padding=(oph, opw), groups=groups)
