"""Post-training quantization: a float ``torch.nn`` model and calibration inputs -> an integer
:class:`bitgen.ir.Model`.

::

    import bitgen
    model = bitgen.quantize(float_module, calib_x, weights="8bit")   # calib_x: (N, C, H, W) floats
    bitgen.save(model, "q.pt")
    print("\\n".join(bitgen.ptq.error_report(float_module, model, test_x, test_y).lines()))

Steps: :mod:`.trace` (torch.fx; BatchNorm folded, ReLU fused), :mod:`.calibrate` (activation
ranges: ``minmax``, ``percentile`` or ``mse``), :mod:`.lower` (per-channel weight scales in a
bitgen encoding, int32 bias, integer requantization), :mod:`.report` (error per layer against
the float model, accuracy of both). The float model itself is never stored: the result is an
ordinary bitgen model file that loads with ``weights_only=True``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import encodings, ir
from .calibrate import METHODS, clip_value, observe
from .lower import lower
from .report import LayerError, Report, compare
from .trace import FloatGraph, PTQError, trace

WEIGHT_SCALES = ("mse", "absmax", "absmean")

__all__ = ["METHODS", "WEIGHT_SCALES", "FloatGraph", "LayerError", "PTQError", "Report", "error_report", "quantize",
           "trace"]


def _as_array(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def quantize(module: Any, calib_data: Any, *, weights: str = "8bit", activations: str = "minmax",
             percentile: float = 99.99, weight_scale: str = "mse", labels: list[str] | None = None,
             name: str = "model") -> ir.Model:
    """Quantize the float ``module`` with activation ranges measured on ``calib_data``
    (raw inputs, (N, *input shape), as the float model takes them).

    ``weights``: a bitgen encoding (``8bit``, ``4bit``, ``4bitsym``, ``2bitsym``, ``ternary``,
    ``binary``, ``fp130``), one scale per output channel chosen by ``weight_scale``;
    ``activations``: ``minmax``, ``percentile`` (at ``percentile``) or ``mse``. Raises
    :class:`PTQError` (one line) for a model outside the supported layers. The result is
    validated; ``result.meta["ptq"]`` records the options and which float tensor each quantized
    tensor stands for (what :func:`error_report` reads)."""
    try:
        encodings.get(weights)
    except ValueError as e:
        raise PTQError(str(e)) from None
    if activations not in METHODS:
        raise PTQError(f"unknown activation range method '{activations}' (known: {', '.join(METHODS)})")
    if weight_scale not in WEIGHT_SCALES:
        raise PTQError(f"unknown weight scale '{weight_scale}' (known: {', '.join(WEIGHT_SCALES)})")
    if not 0 < percentile <= 100:
        raise PTQError("the percentile must be in (0, 100]")
    x = _as_array(calib_data)
    if x.ndim < 2 or len(x) == 0:
        raise PTQError("calibration data must be a non-empty batch (N, *input shape)")
    if not np.all(np.isfinite(x)):
        raise PTQError("calibration data holds NaN or infinite values")
    graph = trace(module, tuple(x.shape[1:]))
    values = {graph.input_value} | {n.value for n in graph.nodes}
    stats = observe(graph.module, x, values)
    clip = {k: clip_value(o, activations, percentile) for k, o in stats.items()}
    model, tensors = lower(graph, clip, weights, weight_scale, labels=labels, name=name)
    model.meta["ptq"] = {"weights": weights, "activations": activations, "weight_scale": weight_scale,
                         "percentile": percentile if activations == "percentile" else None,
                         "calibration_inputs": int(len(x)), "dropped": list(graph.dropped), "tensors": tensors}
    return model


def error_report(module: Any, model: ir.Model, x: Any, y: Any = None) -> Report:
    """The quantization error of ``model`` (from :func:`quantize`) against the float ``module``,
    per layer, on raw inputs ``x``; with labels ``y``, the accuracy of both."""
    graph = trace(module, model.input.shape)
    return compare(graph.module, model, _as_array(x), None if y is None else np.asarray(y))
