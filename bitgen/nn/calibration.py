"""Whole-model switches used by training: float warm-up and static-norm calibration."""
from __future__ import annotations

import torch

from .max78000 import Max78000Layer
from .norms import Requant, ShiftNorm
from .quantizers import WeightQuantizer


def set_quantization(model: torch.nn.Module, enabled: bool) -> None:
    """Turn weight rounding and activation rounding on (QAT) or off (float warm-up).

    Off, weights are ``w / s`` unrounded and norms scale and clamp without rounding; the
    eval-mode model (and the export) always uses the integers.
    """
    for m in model.modules():
        if isinstance(m, (WeightQuantizer, Requant, ShiftNorm, Max78000Layer)):
            m.enabled = bool(enabled)


def set_range_gradient(model: torch.nn.Module, enabled: bool) -> None:
    """Train every static :class:`Requant` with the gradient through its batch's range (or not)."""
    for m in model.modules():
        if isinstance(m, Requant):
            m.range_gradient = bool(enabled)


@torch.no_grad()
def calibrate(model: torch.nn.Module, x: torch.Tensor, batch: int = 1024) -> None:
    """Set every static :class:`Requant` from the statistics of ``x`` (int8 model inputs; clips
    (N, T, ...) for a model with state, every frame counted).

    Layers are calibrated in order, each one seeing the exact integer outputs of the layers
    before it (already calibrated), so the result is what the exported model will compute.
    """
    from .recurrent import run_clips, stateful

    run = (lambda xb: run_clips(model, xb)) if stateful(model) else model
    was_training = model.training
    model.eval()
    try:
        for norm in [m for m in model.modules() if isinstance(m, Requant)]:
            stats: list[torch.Tensor] = []
            handle = norm.register_forward_pre_hook(
                lambda m, args: stats.append(m.statistics(args[0])))
            try:
                for start in range(0, x.shape[0], batch):
                    run(x[start:start + batch])
            finally:
                handle.remove()
            total = torch.stack(stats)
            combined = torch.stack([total[:, :, 0].sum(0), total[:, :, 1].sum(0),
                                    total[:, :, 2].amax(0)], dim=1)
            norm.calibrated.fill_(False)
            norm.set_range(norm.range_from(combined))
    finally:
        model.train(was_training)
