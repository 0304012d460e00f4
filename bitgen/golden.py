"""The golden model: NumPy, integer-only, vectorized over a batch. It *is* the specification.

Every emitted kernel (generic C, target-specialized C, firmware) must produce exactly these
values for every input. Conventions used by all ops:

* Tensors carry a leading batch axis: ``(N, C, H, W)`` or ``(N, F)``.
* Arithmetic is exact: values are held in int64 and every op checks that its result fits the
  output dtype (``int8`` or ``int32``); :meth:`bitgen.ir.Model.validate` proves this ahead of
  time, the check here is a second line of defence (:class:`GoldenOverflow`).
* ``>>`` is an arithmetic (floor) shift; "round half up" is ``(x + (1 << (s - 1))) >> s`` for
  ``s > 0`` and the identity for ``s == 0``. Division rounds toward minus infinity.
* ``argmax`` returns the *first* index of the maximum.

Dot products are evaluated in float64. That is exact here: every product and every partial
sum is an integer of magnitude < 2**31 (proved by ``validate``), far below 2**53.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import ir

NP_DTYPE = {"int8": np.int8, "int32": np.int32}


class GoldenOverflow(ArithmeticError):
    pass


def _fit(y: np.ndarray, dtype: str, what: str) -> np.ndarray:
    lo, hi = ir.DTYPE_RANGE[dtype]
    if y.size and (y.min() < lo or y.max() > hi):
        raise GoldenOverflow(f"{what}: result leaves {dtype}")
    return y.astype(NP_DTYPE[dtype])


def linear(x: np.ndarray, layer: ir.Linear) -> np.ndarray:
    """``y[n, o] = bias[o] + sum_i w[o, i] * x[n, i]``, int32 result."""
    acc = x.astype(np.float64) @ layer.weight.astype(np.float64).T
    y = acc.astype(np.int64)
    if layer.bias is not None:
        y += layer.bias
    return _fit(y, "int32", "linear")


def conv2d(x: np.ndarray, layer: ir.Conv2d) -> np.ndarray:
    """Cross-correlation with zero padding, stride and groups; int32 result.

    ``y[n, o, i, j] = bias[o] + sum_{c, u, v} w[o, c, u, v] * xp[n, g*Cg + c, i*sh + u, j*sw + v]``
    where ``g = o // (O / groups)``, ``Cg = C / groups`` and ``xp`` is ``x`` padded with zeros.
    """
    n, c, h, w = x.shape
    co, cig, kh, kw = layer.weight.shape
    (sh, sw), (ph, pw), g = layer.stride, layer.padding, layer.groups
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    win = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]  # N C OH OW kh kw
    oh, ow = win.shape[2], win.shape[3]
    win = win.reshape(n, g, cig, oh, ow, kh, kw)
    wt = layer.weight.astype(np.float64).reshape(g, co // g, cig, kh, kw)
    acc = np.einsum("ngcijuv,gocuv->ngoij", win, wt, optimize=True).reshape(n, co, oh, ow)
    y = acc.astype(np.int64)
    if layer.bias is not None:
        y += layer.bias[None, :, None, None]
    return _fit(y, "int32", "conv2d")


def relu(x: np.ndarray, layer: ir.ReLU | None = None) -> np.ndarray:
    """``max(x, 0)``; dtype kept."""
    return np.maximum(x, 0).astype(x.dtype)


def _windows(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int]) -> np.ndarray:
    win = sliding_window_view(x, kernel, axis=(2, 3))[:, :, :: stride[0], :: stride[1]]
    return win.reshape(win.shape[:4] + (-1,))


def maxpool2d(x: np.ndarray, layer: ir.MaxPool2d) -> np.ndarray:
    """Maximum of each ``kh x kw`` window (no padding, floor output size); dtype kept."""
    return _windows(x, layer.kernel, layer.stride).max(axis=-1).astype(x.dtype)


def avgpool2d(x: np.ndarray, layer: ir.AvgPool2d) -> np.ndarray:
    """Window mean rounded half up: ``floor((2 * sum + k) / (2 * k))`` with ``k = kh * kw``."""
    k = layer.kernel[0] * layer.kernel[1]
    s = _windows(x, layer.kernel, layer.stride).astype(np.int64).sum(axis=-1)
    return np.floor_divide(2 * s + k, 2 * k).astype(x.dtype)


def flatten(x: np.ndarray, layer: ir.Flatten | None = None) -> np.ndarray:
    """``(N, C, H, W) -> (N, C*H*W)``, C order (memory does not move)."""
    return x.reshape(x.shape[0], -1)


def _per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    """Shape a per-tensor (1,) or per-channel (C,) parameter to broadcast over axis 1."""
    return v.astype(np.int64).reshape((1, -1) + (1,) * (ndim - 2))


def requant(x: np.ndarray, layer: ir.Requant) -> np.ndarray:
    """``clamp(round(x * m / 2**s), out_min, out_max)`` per tensor or per channel.

    ``x * m`` is exact in 64 bits (proved by validate). Rounding: ``half_up`` adds
    ``1 << (s - 1)`` when ``s > 0`` before the arithmetic right shift; ``floor`` adds nothing.
    """
    m = _per_channel(layer.multiplier, x.ndim)
    s = _per_channel(layer.shift, x.ndim)
    y = x.astype(np.int64) * m
    if layer.rounding == "half_up":
        y += np.where(s > 0, np.left_shift(1, np.maximum(s - 1, 0)), 0)
    y = np.right_shift(y, s)
    y = np.clip(y, layer.out_min, layer.out_max)
    return y.astype(NP_DTYPE[layer.out_dtype])


def shiftnorm_shift(x: np.ndarray) -> np.ndarray:
    """Per sample: the number of bits of ``max(max(x) >> 7, 0)`` (BitNetMCU's dynamic shift)."""
    m = x.reshape(x.shape[0], -1).astype(np.int64).max(axis=1)
    v = np.maximum(m >> 7, 0)
    shift = np.zeros_like(v)
    while np.any(v > 0):
        shift += v > 0
        v >>= 1
    return shift


def shiftnorm(x: np.ndarray, layer: ir.ShiftNorm | None = None) -> np.ndarray:
    """BitNetMCU ShiftNorm with ReLU: ``x < 0 -> 0``; else ``min((x + ((1 << s) >> 1)) >> s, 127)``
    with ``s`` = :func:`shiftnorm_shift` of the sample. int8 result in [0, 127]."""
    s = shiftnorm_shift(x).reshape((-1,) + (1,) * (x.ndim - 1))
    xi = x.astype(np.int64)
    y = np.right_shift(xi + (np.left_shift(1, s) >> 1), s)
    y = np.where(xi < 0, 0, np.minimum(y, 127))
    return y.astype(np.int8)


OPS = {
    ir.Linear: linear,
    ir.Conv2d: conv2d,
    ir.ReLU: relu,
    ir.MaxPool2d: maxpool2d,
    ir.AvgPool2d: avgpool2d,
    ir.Flatten: flatten,
    ir.Requant: requant,
    ir.ShiftNorm: shiftnorm,
}


def apply(layer: ir.Layer, x: np.ndarray) -> np.ndarray:
    return OPS[type(layer)](x, layer)


def run(model: ir.Model, x: np.ndarray, *, all_layers: bool = False, batch: int = 512):
    """Run the model on int8 inputs ``x`` of shape ``(N, *input.shape)``.

    Returns the final output ``(N, ...)`` or, with ``all_layers=True``, a list holding every
    layer's output in order. Processes ``batch`` samples at a time to bound memory.
    """
    model.validate()
    x = np.asarray(x)
    shape = (x.shape[0],) + model.input.shape
    if x.dtype != np.int8:
        if x.size and (x.min() < -128 or x.max() > 127):
            raise ValueError("golden.run expects int8 input values")
        x = x.astype(np.int8)
    x = x.reshape(shape)
    chunks: list[list[np.ndarray]] = []
    for start in range(0, max(x.shape[0], 1), batch):
        t = x[start : start + batch]
        outs = []
        for layer in model.layers:
            t = apply(layer, t)
            outs.append(t)
        chunks.append(outs if all_layers else [t])
    joined = [np.concatenate([c[i] for c in chunks]) for i in range(len(chunks[0]))]
    return joined if all_layers else joined[0]


def argmax(logits: np.ndarray) -> np.ndarray:
    """Index of the first maximum of each sample's flattened output."""
    return np.argmax(logits.reshape(logits.shape[0], -1), axis=1)


def predict(model: ir.Model, x: np.ndarray) -> np.ndarray:
    return argmax(run(model, x))
