"""The check: what a back end emitted, executed on this machine, against the golden model, bit
for bit (for the C back end: the emitted C compiled with strict warnings and called through cffi).

Inputs compared: the dataset (when given), random int8 tensors, and extreme tensors (all -128,
all 127, all 0, alternating -128/127 both ways). Every output value of every input is compared;
on a mismatch the layer-by-layer traces name the first layer whose output differs.
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import backends, console, golden, ir, reports
from .backends.base import Artifact, Executor, Options


@dataclass
class InputSet:
    name: str
    x: np.ndarray  # int8 (N, *input.shape), or (N, T, *input.shape) for sequences
    y: np.ndarray | None = None  # labels, when known
    sequence: bool = False  # x holds N sequences of T frames (a model with state runs them in order)


@dataclass
class SetResult:
    name: str
    compared: int
    mismatches: int
    mismatched_values: int
    first_mismatch: dict[str, Any] | None = None


@dataclass
class CheckResult:
    model_hash: str
    sets: list[SetResult]
    accuracy: dict[str, float | None]
    report: dict[str, Any]  # the emitted NAME.json
    strict_compile: str = "ok"
    agreement: dict[str, float | None] = field(default_factory=dict)

    @property
    def compared(self) -> int:
        return sum(s.compared for s in self.sets)

    @property
    def mismatches(self) -> int:
        return sum(s.mismatches for s in self.sets)

    @property
    def first_mismatch(self) -> dict[str, Any] | None:
        return next((s.first_mismatch for s in self.sets if s.first_mismatch), None)

    def to_json(self) -> dict[str, Any]:
        return reports.header("check") | {
            "model_hash": self.model_hash,
            "compared": self.compared,
            "mismatches": self.mismatches,
            "first_mismatch": self.first_mismatch,
            "sets": {
                s.name: {"compared": s.compared, "mismatches": s.mismatches,
                         "mismatched_values": s.mismatched_values}
                for s in self.sets
            },
            "accuracy": self.accuracy,
            "argmax_agreement": self.agreement,
            "strict_compile": self.strict_compile,
            "target": "c",  # the back end
            "kernels": self.report["kernels"],
            "weight_bytes": self.report["weight_bytes"],
            "arena_bytes": self.report["arena_bytes"],
            "macs": self.report["macs"],
        }


def extreme_inputs(shape: tuple[int, ...]) -> np.ndarray:
    """All -128, all 127, all 0, and -128/127 alternating both ways."""
    n = math.prod(shape)
    alt = np.where(np.arange(n) % 2 == 0, -128, 127)
    rows = [np.full(n, -128), np.full(n, 127), np.zeros(n), alt, -alt - 1]
    return np.stack(rows).astype(np.int8).reshape((len(rows),) + tuple(shape))


def as_sequences(x: np.ndarray, frames: int) -> np.ndarray:
    """Inputs (N, *shape) as sequences: whole runs of `frames` consecutive inputs (N // frames, frames, *shape)."""
    n = (x.shape[0] // frames) * frames
    return x[:n].reshape((n // frames, frames) + x.shape[1:])


def held(x: np.ndarray, frames: int) -> np.ndarray:
    """Each input held still for `frames` frames: (N, frames, *shape)."""
    return np.repeat(x[:, None], frames, axis=1)


def random_inputs(shape: tuple[int, ...], count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(-128, 128, size=(count,) + tuple(shape), dtype=np.int64).astype(np.int8)


CHUNK_BYTES = 64 << 20  # inputs, outputs and traces of one chunk of a comparison


def _chunk(model: ir.Model, frames: int = 1) -> int:
    """Inputs (or sequences of `frames`) compared at a time: memory stays bounded, progress shows."""
    per = frames * (model.input.size + 8 * max(t.size for t in model.validate()))
    return max(1, min(4096, CHUNK_BYTES // per))


def compare(
    model: ir.Model, hm: Executor, inputs: InputSet, progress: Any = None
) -> tuple[SetResult, np.ndarray, np.ndarray]:
    """Run golden and an executor on one input set, a chunk at a time; returns the result,
    golden's and the executor's argmax. Sequences are compared frame by frame (each frame
    counts once). ``progress.update(n)`` is told of every n inputs (or frames) compared."""
    seq = inputs.sequence
    n = inputs.x.shape[0]
    frames = inputs.x.shape[1] if seq else 1
    chunk = _chunk(model, frames)
    bad: list[np.ndarray] = []
    want_pred, got_pred = [], []
    mismatched_values = 0
    for start in range(0, n, chunk):
        x = inputs.x[start : start + chunk]
        if seq:
            expected = golden.run_sequence(model, x).reshape(len(x) * frames, -1)
            got, pred, _ = hm.run_sequence(x)
        else:
            expected = golden.run(model, x).reshape(len(x), -1)
            got, pred, _ = hm.run(x)
        pred, want = np.asarray(pred).reshape(-1), golden.argmax(expected)
        diff = expected != got.reshape(expected.shape)
        bad.append(np.flatnonzero(diff.any(axis=1) | (pred != want)) + start * frames)
        mismatched_values += int(diff.sum())
        want_pred.append(want)
        got_pred.append(pred)
        if progress is not None:
            progress.update(len(x) * frames)
    bad_a = np.concatenate(bad) if bad else np.zeros(0, np.int64)
    first = None
    if bad_a.size:
        if seq:
            s, frame = divmod(int(bad_a[0]), frames)
            first = locate(model, hm, inputs.x[s : s + 1], frame=frame)
            first.update({"set": inputs.name, "input_index": s, "frame": frame})
        else:
            first = locate(model, hm, inputs.x[bad_a[0] : bad_a[0] + 1])
            first.update({"set": inputs.name, "input_index": int(bad_a[0])})
    join = lambda parts: np.concatenate(parts) if parts else np.zeros(0, np.int64)  # noqa: E731
    res = SetResult(inputs.name, n * frames, int(bad_a.size), mismatched_values, first)
    return res, join(want_pred), join(got_pred)


def locate(model: ir.Model, hm: Executor, x: np.ndarray, frame: int | None = None) -> dict[str, Any]:
    """Compare every layer's output for one input (or `frame` of one sequence); name the first
    layer that differs."""
    if frame is None:
        want = golden.run(model, x, all_layers=True)
        _, _, got = hm.run(x, trace=True)
    else:
        want = [w[:, frame] for w in golden.run_sequence(model, x, all_layers=True)]
        _, _, got = hm.run_sequence(x, trace=True)
        got = None if got is None else [None if g is None else g[:, frame] for g in got]
    if got is None:
        return {"layer": None, "op": None, "note": "this executor cannot trace layers"}
    for i, (w, g) in enumerate(zip(want, got)):
        if g is not None and not np.array_equal(w.reshape(g.shape), g):
            flat_w, flat_g = w.reshape(-1), g.reshape(-1)
            j = int(np.flatnonzero(flat_w != flat_g)[0])
            layer = model.layers[i]
            return {"layer": i, "op": layer.kind, "layer_name": layer.name or f"{layer.kind}{i}",
                    "element": j, "golden": int(flat_w[j]), "c": int(flat_g[j])}
    return {"layer": None, "op": None, "note": "every layer equal; final copy or argmax differs"}


def torch_predict(torch_model: Any, x: np.ndarray, batch: int = 1024) -> np.ndarray:
    """The PyTorch model's classes: of each input, or of each clip (N, T, ...) by its last frame."""
    import torch

    from .train import predict

    return predict(torch_model, torch.from_numpy(np.asarray(x, dtype=np.float32)), batch).numpy()


def run_check(
    model: ir.Model,
    sets: list[InputSet],
    torch_model: Any = None,
    workdir: str | Path | None = None,
    name: str = "model",
    kernels: str = "generic",
    max_arena: int | None = None,
    backend: str = "c",
) -> CheckResult:
    """Emit with `backend`, run its static check (C: a strict compile), build what it emitted
    for this machine and compare on every input set."""
    be = backends.get(backend)
    options = Options(name=name, kernels=kernels, max_arena=max_arena)
    with tempfile.TemporaryDirectory(prefix="bitgen-check-") as tmp:
        out = Path(workdir) if workdir else Path(tmp)
        em = be.emit(model, out / "c", options)
        static = be.static_check(em)
        hm = be.executor(em, out / "build")
        total = sum(s.x.shape[0] * (s.x.shape[1] if s.sequence else 1) for s in sets)
        bar = console.progress(total=total, desc="comparing with golden", unit="input")
        try:
            results, accuracy, agreement = [], {"torch": None, "golden": None, "c": None}, {}
            for s in sets:
                res, gold_pred, c_pred = compare(model, hm, s, bar)
                results.append(res)
                if s.sequence:  # a clip is classified by its last frame
                    gold_pred, c_pred = (p.reshape(s.x.shape[:2])[:, -1] for p in (gold_pred, c_pred))
                if s.y is not None:
                    accuracy["golden"] = float(np.mean(gold_pred == s.y))
                    accuracy["c"] = float(np.mean(c_pred == s.y))
                    if torch_model is not None:
                        t_pred = torch_predict(torch_model, s.x)
                        accuracy["torch"] = float(np.mean(t_pred == s.y))
                        agreement["torch_vs_golden"] = float(np.mean(t_pred == gold_pred))
        finally:
            bar.close()
            hm.close()
        return CheckResult(em.report["model_hash"], results, accuracy, em.report, static, agreement)


def check_emitted(
    model: ir.Model, artifact: Artifact, sets: list[InputSet], build_dir: str | Path | None = None,
    backend: str = "c",
) -> list[SetResult]:
    """Compare an artifact already emitted (the files on disk, not emitted again) with the
    golden model on every set: how `bitgen build` proves the very files it cross-compiles."""
    hm = backends.get(backend).executor(artifact, build_dir)
    try:
        return [compare(model, hm, s)[0] for s in sets]
    finally:
        hm.close()
