"""Random valid integer models, and the exactness property over them: the emitted C equals the
golden model on every layer's output.

The hypothesis strategies :func:`models` (sequential stacks) and :func:`graphs` (branches that
rejoin through Add, Sub, Mul and Concat, recurrences, change-based convolutions) draw a random
instance of each op (:meth:`bitgen.ops.base.Op.random`), which says how often it is picked after
a tensor of a given type (``random_weight``): a new op in the registry joins by itself.
Structure is drawn through hypothesis so failures shrink; weight values come from a NumPy
generator seeded by a drawn integer (drawing thousands of weights one by one would be slow).

``tests/test_property.py`` runs the property under pytest; :func:`run_batch` runs a batch of
seeded examples without pytest and keeps every mismatch with its model and inputs, which is how
``bitgen sweep --fuzz N`` spreads the property over many machines (:mod:`bitgen.sweep.fuzzing`).
"""
from __future__ import annotations

import io
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from . import check, golden, ir
from .ops import OPS


def _candidates(t: ir.TensorType) -> list[str]:
    return [kind for kind, op in OPS.items() for _ in range(op.random_weight(t))]


@st.composite
def models(draw, max_layers=6):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if draw(st.integers(0, 2)):  # images two times in three
        shape = (draw(st.integers(1, 6)), draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    else:
        shape = (draw(st.integers(1, 40)),)
    t = ir.TensorType(shape, "int8", *ir.INT8)
    layers = []
    for _ in range(draw(st.integers(1, max_layers))):
        kind = draw(st.sampled_from(_candidates(t)))
        layer = OPS[kind].random(draw, rng, t)
        try:
            t_next = ir.infer_type(layer, t)
        except ir.IRError:  # e.g. an accumulator that could overflow: leave this layer out
            continue
        layers.append(layer)
        t = t_next
    assume(layers)
    return ir.Model(ir.InputSpec(shape), layers)


def _binary(draw, rng, available):
    """An Add, Sub, Mul or Concat over two available tensors that fit it, or None."""
    pairs = [(a, b) for a in available for b in available if a[1].shape == b[1].shape]
    cat = [(a, b) for a in available for b in available
           if len(a[1].shape) == len(b[1].shape) and a[1].shape[1:] == b[1].shape[1:] and a[1].dtype == b[1].dtype]
    kinds = (["add", "sub", "mul"] if pairs else []) + (["concat"] if cat else [])
    if not kinds:
        return None
    kind = draw(st.sampled_from(kinds))
    a, b = draw(st.sampled_from(pairs if kind != "concat" else cat))
    return OPS[kind].random(draw, rng, a[1] if a[1].amax >= b[1].amax else b[1]), (a[0], b[0])


@st.composite
def graphs(draw, max_nodes=8):
    """Random graphs: chains with branches that rejoin through Add, Sub, Mul and Concat."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if draw(st.integers(0, 3)):
        shape = (draw(st.integers(1, 4)), draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    else:
        shape = (draw(st.integers(1, 24)),)
    available = [(ir.INPUT, ir.TensorType(shape, "int8", *ir.INT8))]
    nodes = []
    for k in range(draw(st.integers(1, max_nodes))):
        made = _binary(draw, rng, available) if len(available) > 1 and draw(st.booleans()) else None
        if made is None:
            # mostly continue from the newest tensor, sometimes branch off an older one
            src = available[-1] if draw(st.integers(0, 2)) else draw(st.sampled_from(available))
            kind = draw(st.sampled_from(_candidates(src[1])))
            made = OPS[kind].random(draw, rng, src[1]), (src[0],)
        op, inputs = made
        types = dict(available)
        try:
            t = op.infer(*(types[name] for name in inputs))
        except ir.IRError:
            continue
        name = f"n{k}"
        nodes.append(ir.Node(op, inputs, name))
        available.append((name, t))
    assume(nodes)
    states = []
    if draw(st.integers(0, 2)) == 0:  # a recurrence: u = f(t, s); s takes u's value each frame
        name, t = draw(st.sampled_from(available[1:]))
        lo, hi = ir.DTYPE_RANGE[t.dtype]
        init = draw(st.integers(lo, hi))
        op = OPS[draw(st.sampled_from(["add", "sub"]))].random(draw, rng, ir.TensorType(t.shape, t.dtype, lo, hi))
        op.out_dtype, op.out_min, op.out_max = t.dtype, lo, hi  # u has the state's type
        nodes.append(ir.Node(op, (name, "s") if draw(st.booleans()) else ("s", name), "u"))
        states.append(ir.State("s", t.shape, t.dtype, "u", init=init))
    # keep what the last node needs (every other tensor must be read)
    needed, kept = {nodes[-1].output}, []
    for node in reversed(nodes):
        if node.output in needed:
            kept.append(node)
            needed.update(node.inputs)
    model = ir.Model(ir.InputSpec(shape), nodes=kept[::-1], states=states)
    try:
        model.validate()
    except ir.IRError:  # e.g. a recurrence whose scaled sum could overflow int32
        assume(False)
    convs = [i for i, n in enumerate(model.nodes) if isinstance(n.op, ir.Conv2d)]
    if convs and draw(st.integers(0, 2)) == 0:  # change-based convolutions: a gate and its reference
        chosen = draw(st.lists(st.sampled_from(convs), min_size=1, max_size=len(convs), unique=True))
        model = ir.change.with_thresholds(model, {i: OPS["change_gate"].random(draw, rng, None).threshold
                                                  for i in chosen})
    return model


STRATEGIES = {"sequential": models, "graph": graphs}


# ------------------------------------------------------------------------------ the property
def property_inputs(model: ir.Model) -> list[np.ndarray]:
    """What each random model is run on: 48 random int8 inputs and the extreme ones as one batch;
    a model with state runs them as one sequence, and then each extreme input held for 4 frames
    (arrays of shape (sequences, frames, *input))."""
    shape = model.input.shape
    x = np.concatenate([check.random_inputs(shape, 48, seed=len(model.layers)), check.extreme_inputs(shape)])
    if not model.states:
        return [x]
    return [x[None], np.repeat(check.extreme_inputs(shape)[:, None], 4, axis=1)]


def first_difference(model: ir.Model, c_dir: Path, kernels: str, build: Callable,
                     on_emit: Callable | None = None) -> dict[str, Any] | None:
    """Emit ``model`` with ``kernels`` into ``c_dir``, build it with ``build(emitted, dir)`` and
    compare every layer's output, the model output and the argmax with golden on
    :func:`property_inputs`. None when all are equal, else where they first differ.
    ``on_emit(emitted)`` sees the emitted model first (the tests count the kernels reached)."""
    from .backends.c import emit

    em = emit.emit(model, c_dir, name="prop", kernels=kernels)
    if on_emit is not None:
        on_emit(em)
    hm = build(em, c_dir / "build")
    try:
        for x in property_inputs(model):
            if not model.states:
                diff = _difference(model, golden.run(model, x, all_layers=True), *hm.run(x, trace=True))
            else:
                frames = x.shape[0] * x.shape[1]
                want = [w.reshape((frames,) + w.shape[2:]) for w in golden.run_sequence(model, x, all_layers=True)]
                y, pred, got = hm.run_sequence(x, trace=True)
                diff = _difference(model, want, y.reshape(frames, -1), pred.reshape(-1),
                                   [None if g is None else g.reshape((frames,) + g.shape[2:]) for g in got])
            if diff is not None:
                return diff | {"inputs": x}
        return None
    finally:
        hm.close()


def _difference(model: ir.Model, want, y, pred, got) -> dict[str, Any] | None:
    """Every layer's output, the model output and the argmax, frame by frame."""
    for i, (w, g) in enumerate(zip(want, got)):
        if g is not None and not np.array_equal(w.reshape(g.shape), g):  # None: fused, never in memory
            return {"what": f"layer {i} ({model.layers[i].kind}) differs", "layer": i, "op": model.layers[i].kind}
    if got[-1] is None:
        return {"what": "the last layer is not traced", "layer": None, "op": None}
    if not np.array_equal(y.reshape(want[-1].shape), want[-1]):
        return {"what": "the model output differs", "layer": len(want) - 1, "op": model.layers[-1].kind}
    if not np.array_equal(pred, golden.argmax(want[-1])):
        return {"what": "the class (argmax) differs", "layer": None, "op": None}
    return None


# ------------------------------------------------------------------------------ one batch
def run_batch(seed: int, count: int, kernel_sets: list[str], runtime_dir: str | Path | None = None) -> dict[str, Any]:
    """Draw ``count`` random models (sequential and graphs, one hypothesis run seeded with
    ``seed``: the same seed draws the same models) and compare each with golden on every kernel
    set. Returns counts and every mismatch with its model file's bytes (``bitgen.save``) and the
    inputs it was run on; an exception while emitting, compiling or running a model is kept
    the same way (it is a bug too)."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed

    from . import modelfile
    from .backends.c import host

    runtime = host.HostRuntime(runtime_dir)
    counts = {"models": 0, "comparisons": 0, "inputs": 0}
    mismatches: list[dict[str, Any]] = []
    start = time.perf_counter()

    def keep(model: ir.Model, kernels: str, found: dict[str, Any]) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.pt"
            modelfile.save(model, path)
            data = path.read_bytes()
        mismatches.append({"seed": seed, "model_index": counts["models"] - 1, "kernels": kernels,
                           "model_hash": model.digest(), "model_file": data} | found)

    @hypothesis_seed(seed)
    @settings(max_examples=count, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def prop(data):
        model = data.draw(st.one_of(models(), graphs()))
        counts["models"] += 1
        inputs = property_inputs(model)
        frames = sum(int(np.prod(x.shape[: x.ndim - len(model.input.shape)])) for x in inputs)
        for kernels in kernel_sets:
            with tempfile.TemporaryDirectory(prefix="bitgen-fuzz-") as tmp:
                try:
                    found = first_difference(model, Path(tmp), kernels, lambda em, d: host.build(em, d, runtime=runtime))
                except Exception as e:  # an emitter or compiler failure on a valid model
                    found = {"what": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                             "layer": None, "op": None, "traceback": traceback.format_exc(),
                             "inputs": np.concatenate([x.reshape((-1,) + model.input.shape) for x in inputs])}
            counts["comparisons"] += 1
            counts["inputs"] += frames
            if found is not None:
                keep(model, kernels, found)

    try:
        prop()
    finally:
        runtime.close()
    return counts | {"seed": seed, "kernels": list(kernel_sets), "mismatches": mismatches,
                     "seconds": round(time.perf_counter() - start, 3)}


def save_mismatch(found: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Write a mismatch of :func:`run_batch` as ``model.pt``, ``inputs.npy`` and
    ``mismatch.json`` in ``folder``; returns its JSON summary (paths instead of bytes)."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.pt").write_bytes(found["model_file"])
    buf = io.BytesIO()
    np.save(buf, found["inputs"])
    (folder / "inputs.npy").write_bytes(buf.getvalue())
    summary = {k: v for k, v in found.items() if k not in ("model_file", "inputs")}
    summary |= {"model": str(folder / "model.pt"), "inputs": str(folder / "inputs.npy"),
                "input_shape": list(found["inputs"].shape)}
    (folder / "mismatch.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
