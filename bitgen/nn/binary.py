"""The binary layers of PixelRNN (scamp5.md §2): a threshold to ±1 and the element-wise
product that gates a binary state (``h_t = f_t * h_{t-1}``).

Like every bitgen.nn layer they compute on integer values held in float tensors; in eval mode
the result equals the golden model of the IR op they export to (:class:`bitgen.ir.Sign`,
:class:`bitgen.ir.Mul`).
"""
from __future__ import annotations

from typing import Sequence

import torch

from .quantizers import ste

INT32 = (-(2**31), 2**31 - 1)


class Sign(torch.nn.Module):
    """``+1 if x > threshold else -1`` with integer thresholds, one per tensor or one per channel
    (dim 1 of the batch): :class:`bitgen.ir.Sign`. Strict, so a tie gives -1 (``torch.sign`` would
    give 0, which a binary tensor cannot hold).

    In training the forward pass is the same sign and the backward pass PixelRNN's tanh
    surrogate: ``d y / d x = m * (1 - tanh(m * (x - threshold))**2)`` (``m`` = 2 by default).
    The threshold is a buffer (no gradient), set here or by :meth:`set_threshold`.

    ``noise``: PixelRNN's noise-aware training (scamp5.md §2.5): in training, Gaussian noise of
    this standard deviation (in units of the input, i.e. of one ±1 product after a binary
    convolution) is added before the comparison, so the weights learn margins that survive the
    analog noise of a focal-plane array. Never in eval mode or export."""

    def __init__(self, threshold: int | Sequence[int] = 0, m: float = 2.0, noise: float = 0.0):
        super().__init__()
        self.m = float(m)
        self.noise = float(noise)
        if not self.noise >= 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        self.register_buffer("threshold", self._checked(threshold))

    @staticmethod
    def _checked(threshold: int | Sequence[int] | torch.Tensor) -> torch.Tensor:
        # on the CPU whatever the default device: the values are checked (a model file is first
        # rebuilt on the meta device, where tensors hold no values)
        t = torch.as_tensor(threshold, dtype=torch.float64, device="cpu").reshape(-1)
        if t.numel() == 0 or not torch.equal(t, torch.round(t)):
            raise ValueError("Sign thresholds must be one or more integers")
        if t.min() < INT32[0] or t.max() > INT32[1]:
            raise ValueError("Sign thresholds must be in the int32 range")
        return t.to(torch.int64)  # an integer buffer: .float() / .half() leave it exact

    def set_threshold(self, threshold: int | Sequence[int] | torch.Tensor) -> None:
        self.threshold = self._checked(threshold).to(self.threshold.device)

    def _broadcast(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return self.threshold.to(dtype).reshape((1, -1) + (1,) * (x.dim() - 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            x64 = x.to(torch.float64)  # exact for int32 values and thresholds
            return torch.where(x64 > self._broadcast(x, torch.float64), 1.0, -1.0).to(torch.float64)
        t = self._broadcast(x, x.dtype)
        if self.noise:
            x = x + self.noise * torch.randn_like(x)
        hard = torch.where(x > t, 1.0, -1.0).to(x.dtype)
        soft = torch.tanh(self.m * (x - t))
        return hard + (soft - soft.detach())  # value exactly ±1 (+ 0); gradient: tanh's

    def spec(self) -> dict:
        return {"threshold": [int(v) for v in self.threshold.tolist()], "m": self.m, "noise": self.noise}


class Mul(torch.nn.Module):
    """``clamp(round(a * b / 2**shift), out_min, out_max)`` (round half up), the integer op
    :class:`bitgen.ir.Mul`; the defaults (shift 0, int8 saturation) multiply two binary tensors
    exactly. In training: a straight-through gradient through the rounding, zero where it
    saturates."""

    def __init__(self, shift: int = 0, out_dtype: str = "int8", out_min: int | None = None,
                 out_max: int | None = None):
        super().__init__()
        if out_dtype not in ("int8", "int32"):
            raise ValueError(f"out_dtype must be int8 or int32, got '{out_dtype}'")
        lo, hi = (-128, 127) if out_dtype == "int8" else INT32
        self.shift, self.out_dtype = int(shift), out_dtype
        self.out_min = lo if out_min is None else int(out_min)
        self.out_max = hi if out_max is None else int(out_max)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        dtype = a.dtype if self.training else torch.float64  # int32 products are exact in float64
        v = a.to(dtype) * b.to(dtype)
        if self.shift:
            v = ste(v / 2**self.shift, torch.floor((v + 2 ** (self.shift - 1)) / 2**self.shift))
        return v.clamp(self.out_min, self.out_max)

    def spec(self) -> dict:
        return {"shift": self.shift, "out_dtype": self.out_dtype, "out_min": self.out_min,
                "out_max": self.out_max}


class Tile(torch.nn.Module):
    """``(N, C, H, W) -> (N, 1, rows * H, cols * W)``: channel ``k`` becomes the tile at tile row
    ``k % rows``, tile column ``k // rows`` (PixelRNN's ``scamp_shape``), :class:`bitgen.ir.Tile`."""

    def __init__(self, rows: int, cols: int):
        super().__init__()
        self.rows, self.cols = int(rows), int(cols)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        if c != self.rows * self.cols:
            raise ValueError(f"a {self.rows}x{self.cols} grid holds {self.rows * self.cols} channels, got {c}")
        grid = x.reshape(n, self.cols, self.rows, h, w).permute(0, 2, 3, 1, 4)
        return grid.reshape(n, 1, self.rows * h, self.cols * w)

    def spec(self) -> dict:
        return {"rows": self.rows, "cols": self.cols}
