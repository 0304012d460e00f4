"""The one exactness bound of a weighted sum, shared by ir.validate and every C kernel.

A kernel that computes ``bias + sum_k w[k] * x[k]`` may add the products in any order, and may
first subtract an offset ``z`` from the inputs (``sum w (x - z)``, then ``bias + z * sum w``,
which the lookup-table and plane kernels do to skip a constant background). Every partial sum
then lies within ``|bias| + |sum w| * |z| + sum |w| * max |x - z|``; where that fits int32, int32
arithmetic is exact in any order.
"""
from __future__ import annotations

import numpy as np

from .types import INT32


def partial_sum_bound(weight: np.ndarray, bias: np.ndarray | None, span: int, zero: int = 0) -> int:
    """Largest |partial sum| over the output rows of ``weight`` (out, ...), for inputs with
    ``|x - z| <= span`` and an offset ``|z| <= zero`` (0: no offset). Python integers: exact."""
    w = weight.reshape(weight.shape[0], -1).astype(object)
    b = np.zeros(w.shape[0], dtype=object) if bias is None else bias.astype(object)
    rows = np.abs(b) + np.abs(w.sum(axis=1)) * zero + np.abs(w).sum(axis=1) * span
    return int(max(rows)) if len(rows) else 0


def fits_int32(bound: int) -> bool:
    return bound <= INT32[1]
