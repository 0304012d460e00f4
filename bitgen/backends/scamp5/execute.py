"""Run a SCAMP-5 program in the simulator on clips, decode on the host, compare with golden."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ... import golden, ir
from .lower import Analysis
from .program import Program
from .simulator import NoiseModel, Simulator


@dataclass
class Result:
    readout: np.ndarray  # (N, *readout shape): what left the sensor after the last frame, in model units
    logits: np.ndarray  # (N, ...): the host's decoder on it (the readout itself without a decoder)
    classes: np.ndarray  # (N,)
    probes: dict[str, np.ndarray] = field(default_factory=dict)  # tensor name -> (N, T, ...)


def simulate(program: Program, a: Analysis, clips: np.ndarray, noise: NoiseModel | None = None,
             batch: int = 32) -> Result:
    """clips: int8 (N, T, 1, H, W) (T = 1 for a model without state). Sequences run `batch` at a
    time, each from the reset."""
    outs, probes = [], {}
    for s in range(0, len(clips), batch):
        part = clips[s:s + batch]
        sim = Simulator(program, len(part), noise)
        sim.run("init")
        sim.run("reset")
        for t in range(part.shape[1]):
            sim.run("frame", part[:, t, 0])
        sim.run("readout")
        outs.append(sim.readouts[-1])
        for name, frames in sim.probes.items():
            probes.setdefault(name, []).append(np.stack(frames, axis=1))
    raw = np.concatenate(outs)
    meta = program.meta["readout"]
    if meta["kind"] == "bits":
        readout = np.where(raw > 0, 1, -1)
    elif noise is None:
        unit = meta["divide"]
        if np.any(raw % unit):
            raise ValueError("a readout value is not a multiple of the output unit")
        readout = raw // unit
    else:  # the host rounds the noisy levels to the nearest output value
        readout = np.rint(raw / meta["divide"]).astype(np.int64)
    readout = np.clip(readout, -128, 127).astype(np.int8)
    x = readout.reshape((len(readout),) + tuple(a.types[a.readout].shape))
    logits = golden.run(a.host, x) if a.host is not None else x.astype(np.int64)
    return Result(readout=x, logits=logits, classes=golden.argmax(logits),
                  probes={k: np.concatenate(v) for k, v in probes.items()})


def compare(model: ir.Model, a: Analysis, clips: np.ndarray, res: Result) -> dict:
    """Every probed decision and value of every frame, and the readout, against golden."""
    if model.states:
        layers = golden.run_sequence(model, clips, all_layers=True)
    else:
        layers = [v[:, None] for v in golden.run(model, clips[:, 0], all_layers=True)]
    by_name = {n.output: v for n, v in zip(model.nodes, layers)}
    n = len(clips)
    bad_clips = np.zeros(n, bool)
    tensors = {}
    for name, got in res.probes.items():
        want = by_name[name].reshape(got.shape)
        diff = got != want
        bad_clips |= diff.reshape(n, -1).any(axis=1)
        tensors[name] = {"compared": int(diff.size), "mismatches": int(diff.sum())}
    want = by_name[a.readout][:, -1].reshape(res.readout.shape)
    diff = res.readout != want
    bad_clips |= diff.reshape(n, -1).any(axis=1)
    tensors["readout:" + a.readout] = {"compared": int(diff.size), "mismatches": int(diff.sum())}
    expect = golden.argmax(layers[-1][:, -1])
    return {"compared": n, "mismatches": int(bad_clips.sum()), "tensors": tensors,
            "mismatch_indices": np.flatnonzero(bad_clips)[:50].tolist(), "golden_classes": expect}


def decisions(model: ir.Model, a: Analysis, clips: np.ndarray, res: Result) -> dict:
    """Noisy mode: how many digital decisions differ from golden (flips, end to end: a flip
    changes what later frames see), and the margins of golden's decisions (|value - level| in
    ±1 products, the level halfway between integers) where noise must not reach."""
    layers = golden.run_sequence(model, clips, all_layers=True) if model.states else \
        [v[:, None] for v in golden.run(model, clips[:, 0], all_layers=True)]
    by_name = {n.output: v for n, v in zip(model.nodes, layers)}
    out, flips, total = {}, 0, 0
    for name, got in res.probes.items():
        want = by_name[name].reshape(got.shape)
        if not np.isin(want, (-1, 1)).all() or by_name[name].dtype != np.int8:
            continue  # values, not decisions
        f = int((got != want).sum())
        out[name] = {"decisions": int(want.size), "flips": f, "flip_rate": f / max(1, want.size)}
        flips += f
        total += int(want.size)
    margins = {}
    sources = [(a.conv.output, np.broadcast_to(np.asarray(a.sign1.op.threshold), (a.channels,)))]
    if a.rnn:
        sources.append((a.rnn["gate_sum"].output, np.asarray(a.rnn["gate"].op.threshold)))
    for name, thr in sources:
        v = by_name[name].astype(np.float64)
        t = thr.reshape((1, 1, -1) + (1,) * (v.ndim - 3)) if thr.size > 1 else float(thr[0])
        m = np.abs(v - (t + 0.5))
        margins[name] = {"min": float(m.min()), "mean": float(m.mean()),
                         "within_1": float((m < 1).mean())}
    return {"flips": flips, "decisions": total, "flip_rate": flips / max(1, total), "layers": out,
            "margins_products": margins}
