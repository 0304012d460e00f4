"""How far the quantized model is from the float one, layer by layer.

For every int8 (or int32) tensor of the quantized model that stands for a tensor of the float
model, the golden model's values times their scale are compared with the float model's own
activations on the same inputs (the float model gets the raw inputs, golden their int8
quantization): the signal-to-quantization-noise ratio ``10 log10(sum f^2 / sum (f - s q)^2)``
in dB and the largest absolute error, also in units of the tensor's scale (LSB). With labels,
the accuracy of both models.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .. import golden, ir
from .calibrate import activations


@dataclass
class LayerError:
    name: str
    op: str
    scale: float
    sqnr_db: float
    max_abs_error: float

    @property
    def max_error_lsb(self) -> float:
        return self.max_abs_error / self.scale if self.scale else math.inf

    def to_json(self) -> dict:
        return {"name": self.name, "op": self.op, "scale": self.scale, "sqnr_db": _finite(self.sqnr_db),
                "max_abs_error": self.max_abs_error, "max_error_lsb": _finite(self.max_error_lsb)}


@dataclass
class Report:
    inputs: int
    layers: list[LayerError] = field(default_factory=list)
    float_accuracy: float | None = None
    golden_accuracy: float | None = None
    agreement: float = 0.0  # fraction of inputs where both models pick the same class

    def to_json(self) -> dict:
        return {"inputs": self.inputs, "layers": [layer.to_json() for layer in self.layers],
                "accuracy": {"float": self.float_accuracy, "golden": self.golden_accuracy},
                "same_class": self.agreement}

    def lines(self) -> list[str]:
        out = [f"  {'layer':24s} {'op':20s} {'scale':>10s} {'SQNR dB':>8s} {'max |err|':>10s} {'(LSB)':>7s}"]
        for e in self.layers:
            out.append(f"  {e.name[:24]:24s} {e.op:20s} {e.scale:10.4g} {e.sqnr_db:8.1f} {e.max_abs_error:10.4g} "
                       f"{e.max_error_lsb:7.1f}")
        if self.float_accuracy is not None:
            out.append(f"  accuracy  float {100 * self.float_accuracy:.2f} %  golden {100 * self.golden_accuracy:.2f} %"
                       f"  ({self.inputs} inputs, same class on {100 * self.agreement:.2f} %)")
        else:
            out.append(f"  same class on {100 * self.agreement:.2f} % of {self.inputs} inputs")
        return out


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


def compare(graph_module, model: ir.Model, x: np.ndarray, y: np.ndarray | None = None) -> Report:
    """Compare the traced float model (``trace(module, shape).module``) with the quantized
    ``model`` (made by :func:`bitgen.quantize`, whose ``meta["ptq"]`` maps its tensors to the
    float model's) on raw inputs ``x`` (N, *input shape), labels ``y`` optional."""
    entries = model.meta.get("ptq", {}).get("tensors")
    if not entries:
        raise ValueError("the model carries no post-training quantization map (meta['ptq'])")
    x = np.asarray(x, dtype=np.float64).reshape((-1,) + model.input.shape)
    wanted = {e["source"] for e in entries}
    signal = {e["node"]: 0.0 for e in entries}
    noise = dict(signal)
    worst = dict(signal)
    float_pred, gold_pred = [], []
    for start, seen, out in activations(graph_module, x, wanted):
        xb = x[start:start + len(out)]
        outs = golden.run(model, model.input.quantize(xb), all_layers=True)
        for e in entries:
            f = seen[e["source"]].reshape(len(xb), -1)
            q = outs[e["node"]].reshape(len(xb), -1).astype(np.float64) * e["scale"]
            signal[e["node"]] += float(np.sum(f * f))
            noise[e["node"]] += float(np.sum((f - q) ** 2))
            worst[e["node"]] = max(worst[e["node"]], float(np.abs(f - q).max(initial=0.0)))
        float_pred.append(np.argmax(out.reshape(len(xb), -1), axis=1))
        gold_pred.append(golden.argmax(outs[-1]))
    fp, gp = np.concatenate(float_pred), np.concatenate(gold_pred)
    rep = Report(inputs=len(x), agreement=float(np.mean(fp == gp)) if len(x) else 0.0)
    for e in entries:
        k = e["node"]
        sq = math.inf if noise[k] == 0 else 10 * math.log10(max(signal[k], 1e-300) / noise[k])
        rep.layers.append(LayerError(e["name"], e["op"], e["scale"], sq, worst[k]))
    if y is not None:
        y = np.asarray(y)
        rep.float_accuracy = float(np.mean(fp == y))
        rep.golden_accuracy = float(np.mean(gp == y))
    return rep
