"""Average pooling that rounds like the integer model.

``torch.nn.AvgPool2d`` returns the exact mean, a fraction; the golden model returns the mean
rounded half up, ``floor((2 * sum + k) / (2 * k))`` with ``k = kh * kw``. This module
computes the latter (straight-through gradient in training), so the QAT model and the
exported model agree. (A plain ``torch.nn.AvgPool2d`` exports too, to the same IR layer.)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .quantizers import ste


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


class AvgPool2d(torch.nn.Module):
    def __init__(self, kernel_size=2, stride=None):
        super().__init__()
        self.kernel_size = _pair(kernel_size)
        self.stride = self.kernel_size if stride is None else _pair(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size[0] * self.kernel_size[1]
        if self.training:
            mean = F.avg_pool2d(x, self.kernel_size, self.stride)
            return ste(mean, torch.floor(mean.detach() + 0.5))
        x = x.to(torch.float64)  # window sums of integers are exact in float64
        total = F.avg_pool2d(x, self.kernel_size, self.stride, divisor_override=1)
        return torch.div(2 * total + k, 2 * k, rounding_mode="floor")

    def spec(self) -> dict:
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride)}

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"
