"""Normalization layers that turn an int32 accumulator into int8 activations.

Both compute, in eval mode, exactly what the golden model computes for the IR layer they
export to (integer arithmetic in int64). In training the same function runs with a
straight-through gradient through the rounding (zero gradient where the output is clamped).

* :class:`Requant` (static) -> :class:`bitgen.ir.Requant`:
  ``y = clamp((acc * M + 2**(S-1)) >> S, -128, 127)`` with integer ``M`` and ``S`` fixed at
  export time, per tensor or per channel. ``M / 2**S`` approximates ``127 / range`` where
  ``range`` is a calibrated statistic of the accumulator (an exponential moving average over
  training batches, or :func:`bitgen.nn.calibrate` over a data set). ``multiplier_bits=0``
  restricts it to a pure shift (``M = 1``).
* :class:`Shift` -> :class:`bitgen.ir.Requant` (multiplier 1, floor, int32, no clamp):
  ``y = acc >> shift``, the 32-bit activations BitNetMCU's CNNs keep between convolutions.
* :class:`ShiftNorm` (dynamic, BitNetMCU) -> :class:`bitgen.ir.ShiftNorm`, no parameters:
  per sample ``s`` = bit length of ``max(max(acc) >> 7, 0)``;
  ``y = 0 if acc < 0 else min((acc + ((1 << s) >> 1)) >> s, 127)``.
"""
from __future__ import annotations

import math

import torch

from .quantizers import ste

STATISTICS = ("absmax", "rms")


def _channel_view(t: torch.Tensor, n: int, ndim: int) -> torch.Tensor:
    """Shape a (1,) or (C,) parameter to broadcast over axis 1 of an ``ndim`` tensor."""
    return t.reshape((1, n) + (1,) * (ndim - 2)) if n > 1 else t.reshape((1,) * ndim)


def multiplier_shift(ratio: float, multiplier_bits: int) -> tuple[int, int]:
    """Integers ``(M, S)`` with ``M / 2**S`` close to ``ratio > 0``.

    ``M`` has at most ``multiplier_bits`` bits (more only when ``ratio`` itself is larger);
    ``0`` means the nearest power of two in the log domain (``M = 1``, or ``S = 0`` and
    ``M = 2**k`` when ``ratio > 1``). ``S`` stays in 0..62.
    """
    if not math.isfinite(ratio) or ratio <= 0:
        ratio = 1.0
    if multiplier_bits <= 0:  # nearest power of two: a right shift, or a left one (M = 2**k)
        e = math.floor(math.log2(ratio) + 0.5)
        return (1, min(-e, 62)) if e <= 0 else (min(1 << e, 1 << 30), 0)
    top = 1 << multiplier_bits
    # largest S with round(ratio * 2**S) < 2**bits: the most precise multiplier that fits
    s = int(min(max(multiplier_bits - 1 - math.floor(math.log2(ratio)), 0), 62))
    m = int(math.floor(ratio * 2**s + 0.5))
    while m >= top and s > 0:
        s -= 1
        m = int(math.floor(ratio * 2**s + 0.5))
    return int(min(max(m, 1), 2**31 - 1)), s


class Requant(torch.nn.Module):
    """Static requantization to int8 (calibrated multiplier + shift, or a pure shift).

    ``channels``: number of channels for per-channel parameters (axis 1 of the input), or
    ``None`` for one multiplier/shift for the whole tensor. ``statistic``: how the
    accumulator's range is measured per batch (``absmax``, or ``rms`` times ``rms_factor``).
    ``momentum``: weight of each new training batch in the moving average.
    """

    def __init__(self, channels: int | None = None, multiplier_bits: int = 15,
                 statistic: str = "rms", rms_factor: float = 4.0, momentum: float = 0.1):
        super().__init__()
        if statistic not in STATISTICS:
            raise ValueError(f"unknown statistic '{statistic}' (known: {', '.join(STATISTICS)})")
        if not 0 <= int(multiplier_bits) <= 31:
            raise ValueError("multiplier_bits must be in 0..31")
        self.channels = None if channels is None else int(channels)
        self.multiplier_bits = int(multiplier_bits)
        self.statistic = statistic
        self.rms_factor = float(rms_factor)
        self.momentum = float(momentum)
        self.enabled = True  # False: no rounding (float warm-up)
        # True: training passes gradients through the batch's own range (batch renormalization):
        # set by bitgen.train.fit_decoder, see forward; training only, the export is the same
        self.range_gradient = False
        n = self.channels or 1
        self.register_buffer("running_range", torch.ones(n, dtype=torch.float64))
        self.register_buffer("calibrated", torch.zeros((), dtype=torch.bool))

    @property
    def per_channel(self) -> bool:
        return self.channels is not None

    def statistics(self, acc: torch.Tensor) -> torch.Tensor:
        """Per channel ``[sum of squares, count, max |acc|]`` of one batch (float64, (n, 3));
        statistics of several batches combine by adding the first two and maxing the last."""
        a = acc.detach().to(torch.float64)
        a = a.transpose(0, 1).reshape(a.shape[1], -1) if self.per_channel else a.reshape(1, -1)
        return torch.stack([a.pow(2).sum(dim=1), torch.full((a.shape[0],), float(a.shape[1]),
                            dtype=torch.float64), a.abs().amax(dim=1)], dim=1)

    def range_from(self, stats: torch.Tensor) -> torch.Tensor:
        """The accumulator range that maps to 127, from :meth:`statistics`."""
        if self.statistic == "absmax":
            r = stats[:, 2]
        else:
            r = (stats[:, 0] / stats[:, 1].clamp_min(1)).sqrt() * self.rms_factor
        return r.clamp_min(1.0)

    def range_of(self, acc: torch.Tensor) -> torch.Tensor:
        """This batch's range, differentiable, shaped to broadcast over ``acc``."""
        a = acc.transpose(0, 1).reshape(acc.shape[1], -1) if self.per_channel else acc.reshape(1, -1)
        r = a.abs().amax(dim=1) if self.statistic == "absmax" else a.pow(2).mean(dim=1).sqrt() * self.rms_factor
        return _channel_view(r.clamp_min(1.0), self.channels or 1, acc.dim())

    def observe(self, acc: torch.Tensor, momentum: float | None = None) -> None:
        """Fold one batch's range into the running estimate (the first batch sets it)."""
        self.set_range(self.range_from(self.statistics(acc)), momentum)

    def set_range(self, r: torch.Tensor, momentum: float | None = None) -> None:
        if not bool(self.calibrated):
            self.running_range.copy_(r)
            self.calibrated.fill_(True)
        else:
            m = self.momentum if momentum is None else momentum
            self.running_range.mul_(1 - m).add_(m * r)

    def multipliers_shifts(self) -> tuple[list[int], list[int]]:
        """The integer ``(M, S)`` per channel (one entry when per tensor), as exported."""
        ms = [multiplier_shift(127.0 / float(r), self.multiplier_bits) for r in self.running_range]
        return [m for m, _ in ms], [s for _, s in ms]

    def ratio(self) -> torch.Tensor:
        m, s = self.multipliers_shifts()
        return torch.tensor([mi / 2.0**si for mi, si in zip(m, s)], dtype=torch.float64)

    def forward(self, acc: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.observe(acc)
            r = _channel_view(self.ratio().to(acc.dtype), self.channels or 1, acc.dim())
            v = acc * r
            if self.range_gradient:
                # the same value, but differentiated as if the batch were scaled by its own
                # range (Ioffe 2017, batch renormalization): without it the gradient asks for
                # larger sums that the range then cancels, so weights grow along themselves,
                # the integer biases (in units of the weight scale) shrink, and a decoder falls
                # apart after a few epochs
                b = self.range_of(acc)
                v = v * (b.detach() / b)
            if not self.enabled:
                return v.clamp(-128, 127)
            return ste(v, torch.floor(v.detach() + 0.5)).clamp(-128, 127)
        m, s = self.multipliers_shifts()
        n = len(m)
        mt = _channel_view(torch.tensor(m, dtype=torch.int64), n, acc.dim())
        st = _channel_view(torch.tensor(s, dtype=torch.int64), n, acc.dim())
        half = torch.where(st > 0, torch.ones_like(st) << (st - 1).clamp_min(0), torch.zeros_like(st))
        y = (acc.to(torch.int64) * mt + half) >> st
        return y.clamp(-128, 127).to(torch.float64)

    def spec(self) -> dict:
        return {"channels": self.channels, "multiplier_bits": self.multiplier_bits,
                "statistic": self.statistic, "rms_factor": self.rms_factor,
                "momentum": self.momentum}

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, multiplier_bits={self.multiplier_bits}, "
                f"statistic={self.statistic}")


def shiftnorm_shift(acc: torch.Tensor) -> torch.Tensor:
    """Per sample: bit length of ``max(max(acc) >> 7, 0)`` (int64, shape (N,))."""
    m = acc.detach().reshape(acc.shape[0], -1).amax(dim=1).to(torch.int64)
    v = (m >> 7).clamp_min(0)
    _, e = torch.frexp(v.to(torch.float64))  # v = f * 2**e, f in [0.5, 1): e = bit length
    return torch.where(v > 0, e.to(torch.int64), torch.zeros_like(v))


class ShiftNorm(torch.nn.Module):
    """BitNetMCU's dynamic normalization with its built-in ReLU; output int8 in [0, 127]."""

    def __init__(self) -> None:
        super().__init__()
        self.enabled = True

    def forward(self, acc: torch.Tensor) -> torch.Tensor:
        s = shiftnorm_shift(acc).reshape((-1,) + (1,) * (acc.dim() - 1))
        if self.training:
            v = acc * torch.exp2(-s.to(acc.dtype))
            if not self.enabled:
                return v.clamp(0, 127)
            return ste(v, torch.floor(v.detach() + 0.5)).clamp(0, 127)
        a = acc.to(torch.int64)
        y = (a + ((torch.ones_like(s) << s) >> 1)) >> s
        return torch.where(a < 0, torch.zeros_like(y), y.clamp(max=127)).to(torch.float64)

    def spec(self) -> dict:
        return {}


class Shift(torch.nn.Module):
    """Arithmetic right shift of the int32 accumulator, rounding down, no clamp: the output
    stays 32-bit (BitNetMCU's CNNs: ReLU, then ``>> 4``, between convolutions)."""

    def __init__(self, shift: int = 4) -> None:
        super().__init__()
        if not 0 <= int(shift) <= 31:
            raise ValueError("shift must be in 0..31")
        self.shift = int(shift)

    def forward(self, acc: torch.Tensor) -> torch.Tensor:
        if self.training:
            v = acc * 2.0 ** -self.shift
            return ste(v, torch.floor(v.detach()))
        return (acc.to(torch.int64) >> self.shift).to(torch.float64)

    def spec(self) -> dict:
        return {"shift": self.shift}

    def extra_repr(self) -> str:
        return f"shift={self.shift}"
