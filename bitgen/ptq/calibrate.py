"""Activation ranges of a float model over a calibration set.

The traced model runs over the calibration inputs; every tensor that becomes an int8 tensor of
the quantized model is observed: its largest magnitude and a sample of its magnitudes (at most
:data:`SAMPLE` values, drawn evenly from every batch). :func:`clip_value` turns them into the
value the int8 grid's end (127) stands for, by one of :data:`METHODS`:

* ``minmax``: the largest magnitude seen (nothing is clipped);
* ``percentile``: the given percentile of the magnitudes (clips rare outliers);
* ``mse``: the clip value out of a grid from 0.3 to 1.0 times the largest magnitude that
  minimises the squared error of quantizing the sample (rounding and clipping error together).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.fx

METHODS = ("minmax", "percentile", "mse")
SAMPLE = 1 << 20  # magnitudes kept per tensor
BATCH = 256


@dataclass
class Observed:
    absmax: float = 0.0
    samples: list[np.ndarray] = field(default_factory=list)

    def sample(self) -> np.ndarray:
        return np.concatenate(self.samples) if self.samples else np.zeros(1)


class _Recorder(torch.fx.Interpreter):
    """Runs the traced model and keeps the outputs of the fx nodes named in ``names``."""

    def __init__(self, gm: torch.fx.GraphModule, names: set[str]):
        super().__init__(gm)
        self.names, self.seen = names, {}

    def run_node(self, n: torch.fx.Node):
        out = super().run_node(n)
        if n.name in self.names:
            self.seen[n.name] = out.detach()
        return out


def activations(gm: torch.fx.GraphModule, x: np.ndarray, names: set[str], batch: int = BATCH):
    """Yield (start index, {fx node name: float64 numpy output}) over batches of ``x``."""
    from .. import console

    with torch.no_grad():
        for start in console.progress(range(0, len(x), batch), desc="calibrating", unit="batch"):
            xb = torch.from_numpy(np.ascontiguousarray(x[start:start + batch], dtype=np.float32))
            rec = _Recorder(gm, names)
            out = rec.run(xb)
            seen = {k: v.double().numpy() for k, v in rec.seen.items()}
            yield start, seen, out.detach().double().numpy()


def observe(gm: torch.fx.GraphModule, x: np.ndarray, names: set[str]) -> dict[str, Observed]:
    """Statistics of every named fx node's output over the calibration inputs ``x``."""
    obs = {name: Observed() for name in names}
    batches = max(1, -(-len(x) // BATCH))
    for _, seen, _ in activations(gm, x, names):
        for name, v in seen.items():
            mag = np.abs(v).ravel()
            o = obs[name]
            o.absmax = max(o.absmax, float(mag.max(initial=0.0)))
            step = max(1, len(mag) * batches // SAMPLE)
            o.samples.append(mag[::step].astype(np.float32))
    return obs


def clip_value(o: Observed, method: str = "minmax", percentile: float = 99.99) -> float:
    """The magnitude that maps to 127 (see the module docstring); > 0."""
    if method not in METHODS:
        raise ValueError(f"unknown activation range method '{method}' (known: {', '.join(METHODS)})")
    top = max(o.absmax, 1e-8)
    if method == "minmax":
        return top
    mag = o.sample().astype(np.float64)
    if method == "percentile":
        return max(float(np.percentile(mag, percentile)), 1e-8)
    best, best_err = top, None
    for c in top * np.linspace(0.3, 1.0, 36):
        s = c / 127.0
        err = float(np.mean((mag - np.minimum(np.floor(mag / s + 0.5), 127) * s) ** 2))
        if best_err is None or err < best_err:
            best, best_err = float(c), err
    return best
