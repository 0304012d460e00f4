"""Weight quantizers: float weights -> integer values of a :mod:`bitgen.encodings` encoding.

A quantizer divides the float weights by a scale (per tensor, or per output channel), maps the
result onto the encoding's integer levels and passes gradients straight through (STE): the
forward pass sees the integers, the backward pass treats the rounding as the identity.

The scale never reaches the integer model. It only decides where the rounding boundaries sit
relative to the float weights, so the choice of scale is a training detail:

* ``absmax``: the largest weight maps to the largest level (nothing is clipped);
* ``absmean`` (default): ``mean|w|`` maps to a fixed level per encoding (BitNet-style; clips
  outliers; measured at least as good as absmax for every encoding on USPS, far better for
  ternary, where absmax rounds most weights to 0);
* ``mse``: the scale out of a small grid that minimises ``||w - s * q(w / s)||^2``.

Rounding is "half up" (``floor(v + 0.5)``) everywhere so it is the same on every machine.
"""
from __future__ import annotations

import torch

from .. import encodings

SCALES = ("absmax", "absmean", "mse")

# Largest level of each encoding (the absmax scale maps max|w| onto it).
_QMAX = {"binary": 1, "ternary": 1, "2bitsym": 3, "4bitsym": 15, "4bit": 7, "fp130": 128, "8bit": 127}

# absmean: mean|w| / s. For symmetric grids this places typical weights a few levels out and
# clips the tail (BitNet b1.58 uses 1.0 for ternary); fp130 is logarithmic, so 2**3 is mid-range.
_ABSMEAN_LEVEL = {"binary": 1.0, "ternary": 1.0, "2bitsym": 1.2, "4bitsym": 5.0, "4bit": 2.5,
                  "fp130": 8.0, "8bit": 40.0}


def round_half_up(v: torch.Tensor) -> torch.Tensor:
    return torch.floor(v + 0.5)


def ste(v: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Forward: ``q``; backward: the identity to ``v`` (straight-through estimator)."""
    return v + (q - v).detach()


def to_levels(v: torch.Tensor, encoding: str) -> torch.Tensor:
    """Map scaled weights ``v`` to the nearest integer values of ``encoding`` (no gradient)."""
    if encoding == "binary":
        return torch.where(v >= 0, 1.0, -1.0).to(v.dtype)
    if encoding == "ternary":
        return round_half_up(v).clamp(-1, 1)
    if encoding in ("2bitsym", "4bitsym"):
        q = _QMAX[encoding]
        return (2 * torch.floor(v / 2) + 1).clamp(-q, q)  # nearest odd integer
    if encoding == "4bit":
        return round_half_up(v).clamp(-8, 7)
    if encoding == "8bit":
        return round_half_up(v).clamp(-128, 127)
    if encoding == "fp130":
        # sign * 2**e, e = nearest integer to log2|v| in 0..7; zero becomes +1
        e = round_half_up(torch.log2(v.abs().clamp_min(1e-30))).clamp(0, 7)
        return torch.where(v >= 0, 1.0, -1.0).to(v.dtype) * torch.exp2(e)
    encodings.get(encoding)  # raises the standard "unknown encoding" error
    raise ValueError(f"no quantizer for encoding '{encoding}'")


def _reduce(w: torch.Tensor, per_channel: bool, fn) -> torch.Tensor:
    """Apply ``fn`` over all weights (per tensor) or over each output channel; keep dims."""
    if per_channel:
        return fn(w.reshape(w.shape[0], -1), dim=1).reshape((-1,) + (1,) * (w.dim() - 1))
    return fn(w.reshape(1, -1), dim=1).reshape((1,) * w.dim())


def weight_scale(w: torch.Tensor, encoding: str, mode: str = "absmean",
                 per_channel: bool = False) -> torch.Tensor:
    """The scale ``s`` (no gradient), broadcastable against ``w``; never zero."""
    w = w.detach()
    if mode == "absmax":
        s = _reduce(w.abs(), per_channel, lambda t, dim: t.amax(dim=dim)) / _QMAX[encoding]
    elif mode == "absmean":
        s = _reduce(w.abs(), per_channel, lambda t, dim: t.mean(dim=dim)) / _ABSMEAN_LEVEL[encoding]
    elif mode == "mse":
        s = _mse_scale(w, encoding, per_channel)
    else:
        raise ValueError(f"unknown weight scale '{mode}' (known: {', '.join(SCALES)})")
    return s.clamp_min(1e-12)


def _mse_scale(w: torch.Tensor, encoding: str, per_channel: bool) -> torch.Tensor:
    base = _reduce(w.abs(), per_channel, lambda t, dim: t.amax(dim=dim)) / _QMAX[encoding]
    base = base.clamp_min(1e-12)
    best_s, best_err = base, None
    for f in torch.linspace(0.2, 1.0, 17, dtype=w.dtype):
        s = base * f
        err = _reduce((w - s * to_levels(w / s, encoding)) ** 2, per_channel,
                      lambda t, dim: t.sum(dim=dim))
        if best_err is None:
            best_s, best_err = s, err
        else:
            better = err < best_err
            best_s = torch.where(better, s, best_s)
            best_err = torch.where(better, err, best_err)
    return best_s


class WeightQuantizer(torch.nn.Module):
    """``forward(w) -> (q, s)``: ``q`` holds the integer weight values (straight-through
    gradient to ``w / s``), ``s`` the scale. With ``enabled = False`` (float warm-up) a
    training-mode ``q`` is ``w / s`` unrounded."""

    def __init__(self, encoding: str = "4bitsym", scale: str = "absmean", per_channel: bool = False):
        super().__init__()
        encodings.get(encoding)
        if encoding not in _QMAX:
            raise ValueError(f"no quantizer for encoding '{encoding}'")
        if scale not in SCALES:
            raise ValueError(f"unknown weight scale '{scale}' (known: {', '.join(SCALES)})")
        self.encoding = encoding
        self.scale_mode = scale
        self.per_channel = bool(per_channel)
        self.enabled = True

    def forward(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = weight_scale(w, self.encoding, self.scale_mode, self.per_channel)
        v = w / s
        if not self.rounds:
            return v, s
        return ste(v, to_levels(v.detach(), self.encoding)), s

    @property
    def rounds(self) -> bool:
        """Rounding is on, except during a float warm-up; an eval-mode model always rounds."""
        return self.enabled or not self.training

    def integers(self, w: torch.Tensor) -> torch.Tensor:
        """The integer weight values (int64), exactly as the forward pass uses them."""
        s = weight_scale(w, self.encoding, self.scale_mode, self.per_channel)
        return to_levels(w.detach() / s, self.encoding).to(torch.int64)

    def extra_repr(self) -> str:
        return f"{self.encoding}, scale={self.scale_mode}, per_channel={self.per_channel}"
