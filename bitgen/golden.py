"""The golden model: NumPy, integer-only, vectorized over a batch. It *is* the specification.

Every emitted kernel (generic C, target-specialized C, firmware) must produce exactly these
values for every input. Each op's semantics is its :meth:`~bitgen.ops.base.Op.golden` (in
its own module of :mod:`bitgen.ops`, with rounding, saturation and ties in its docstring);
this module runs a model through them. Conventions used by all ops:

* Tensors carry a leading batch axis: ``(N, C, H, W)`` or ``(N, F)``.
* Arithmetic is exact: values are held in int64 and every op checks that its result fits the
  output dtype (``int8`` or ``int32``); :meth:`bitgen.ir.Model.validate` proves this ahead of
  time, the check here is a second line of defence (:class:`GoldenOverflow`).
* ``>>`` is an arithmetic (floor) shift; "round half up" is ``(x + (1 << (s - 1))) >> s`` for
  ``s > 0`` and the identity for ``s == 0``. Division rounds toward minus infinity.
* ``argmax`` returns the *first* index of the maximum.
"""
from __future__ import annotations

import numpy as np

from . import ir
from .ops.base import NP_DTYPE, GoldenOverflow  # noqa: F401  (re-exported)


def apply(layer: ir.Layer, x: np.ndarray) -> np.ndarray:
    return layer.golden(x)


BATCH_BYTES = 256 << 20  # what one batch of the largest tensor may take, as int64 and float64 copies


def batch_size(model: ir.Model, batch: int = 512) -> int:
    """Samples per batch: at most ``batch``, fewer for a model with large tensors."""
    types = model.validate()
    largest = max([model.input.size] + [t.size for t in types])
    return max(1, min(batch, BATCH_BYTES // (32 * largest)))


def run(model: ir.Model, x: np.ndarray, *, all_layers: bool = False, batch: int = 512):
    """Run the model on int8 inputs ``x`` of shape ``(N, *input.shape)``.

    Returns the final output ``(N, ...)`` or, with ``all_layers=True``, a list holding every
    node's output in execution order. A model with states runs each sample as the first frame
    of a sequence (see :func:`run_sequence`). Processes ``batch`` samples at a time (fewer for
    large tensors: :func:`batch_size`) to bound memory.
    """
    batch = batch_size(model, batch)
    x = np.asarray(x)
    shape = (x.shape[0],) + model.input.shape
    if x.dtype != np.int8:
        if x.size and (x.min() < -128 or x.max() > 127):
            raise ValueError("golden.run expects int8 input values")
        x = x.astype(np.int8)
    x = x.reshape(shape)
    chunks: list[list[np.ndarray]] = []
    for start in range(0, max(x.shape[0], 1), batch):
        outs = _run_nodes(model, x[start : start + batch], initial_states(model, len(x[start : start + batch])))
        chunks.append(outs if all_layers else outs[-1:])
    joined = [np.concatenate([c[i] for c in chunks]) for i in range(len(chunks[0]))]
    return joined if all_layers else joined[0]


def _run_nodes(model: ir.Model, x: np.ndarray, states: dict[str, np.ndarray] | None = None) -> list[np.ndarray]:
    """Every node's output, in order, for one batch (one frame, with the states' values);
    a tensor is dropped after its last reader unless a state takes its value."""
    last_read = {name: i for i, node in enumerate(model.nodes) for name in node.inputs}
    keep = {st.source for st in model.states}
    env = {ir.INPUT: x, **(states or {})}
    outs = []
    for i, node in enumerate(model.nodes):
        y = node.op.golden(*(env[name] for name in node.inputs))
        for name in node.inputs:
            if last_read[name] == i and name != node.output and name not in keep:
                env.pop(name, None)
        env[node.output] = y
        outs.append(y)
    return outs


def initial_states(model: ir.Model, n: int) -> dict[str, np.ndarray]:
    """Every state's value before the first frame, for a batch of n sequences."""
    return {st.name: np.full((n,) + st.shape, st.init, dtype=NP_DTYPE[st.dtype]) for st in model.states}


def run_sequence(model: ir.Model, x: np.ndarray, *, all_layers: bool = False):
    """Run the model over sequences of frames ``x`` (N, T, *input.shape), int8; every sequence
    starts from the states' initial values. Returns the output of every frame (N, T, ...) or,
    with ``all_layers=True``, every node's output per frame: a list of (N, T, ...) arrays."""
    x = np.asarray(x)
    if x.ndim < 2 or x.shape[1] < 1:
        raise ValueError("run_sequence expects (N, T, *input shape) frames, T >= 1")
    if x.dtype != np.int8:
        if x.size and (x.min() < -128 or x.max() > 127):
            raise ValueError("golden.run_sequence expects int8 input values")
        x = x.astype(np.int8)
    n, frames = x.shape[:2]
    x = x.reshape((n, frames) + model.input.shape)
    batch = batch_size(model)  # validates the model
    chunks = []
    for start in range(0, max(n, 1), batch):  # sequences are independent: a batch at a time
        xs = x[start : start + batch]
        states = initial_states(model, len(xs))
        per_frame = []
        for t in range(frames):
            outs = _run_nodes(model, xs[:, t], states)
            by_name = {node.output: y for node, y in zip(model.nodes, outs)}
            states = {st.name: by_name[st.source] for st in model.states}
            per_frame.append(outs if all_layers else outs[-1:])
        chunks.append([np.stack([f[i] for f in per_frame], axis=1) for i in range(len(per_frame[0]))])
    stacked = [np.concatenate([c[i] for c in chunks]) for i in range(len(chunks[0]))]
    return stacked if all_layers else stacked[0]


def changed_pixels(model: ir.Model, x: np.ndarray) -> list[list[int]]:
    """Pixels changed per frame at each change gate, for the frames x (T, ...) run as one sequence
    from the reset: a pixel (a position with all its channels) changed where the gate's output
    differs from the reference it read (its output of the frame before, or the initial value).
    This is what the emitted code's ``NAME_changed`` counters must hold after each frame."""
    layers = run_sequence(model, x[None], all_layers=True)
    states = {st.name: st for st in model.states}
    out = []
    gate_nodes = [i for i, n in enumerate(model.nodes) if isinstance(n.op, ir.ChangeGate)]
    for t in range(len(x)):
        row = []
        for i in gate_nodes:
            y = layers[i][0, t].astype(np.int64)
            ref = layers[i][0, t - 1].astype(np.int64) if t else np.full_like(y, states[model.nodes[i].inputs[1]].init)
            d = y != ref
            row.append(int((d.any(axis=0) if y.ndim == 3 else d).sum()))
        out.append(row)
    return out


def argmax(logits: np.ndarray) -> np.ndarray:
    """Index of the first maximum of each sample's flattened output."""
    return np.argmax(logits.reshape(logits.shape[0], -1), axis=1)


def predict(model: ir.Model, x: np.ndarray) -> np.ndarray:
    """Classes of inputs (N, *input shape), or of clips (N, T, *input shape) by their last frame."""
    x = np.asarray(x)
    if x.ndim == len(model.input.shape) + 2:
        return argmax(run_sequence(model, x)[:, -1])
    return argmax(run(model, x))
