"""Property: for random architectures over every op and encoding, sequential models and graphs
(residual branches, concatenations, transposed convolutions, upsampling), the emitted C equals
golden on every layer's output, for random and extreme inputs.

Examples per target: BITGEN_EXAMPLES (default 200), e.g. BITGEN_EXAMPLES=2000 for a long run.
A quarter as many more per target run in the ASan + UBSan build, where any out-of-bounds access
or undefined behaviour fails the example. Both link the runtime compiled once per session
(every encoding enabled); `bitgen check` and test_check cover the exact emitted sources."""
import os
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import pytest

from bitgen import check, golden
from bitgen.backends.c import emit, host, kernels

from random_models import graphs, models


def _examples() -> int:
    text = os.environ.get("BITGEN_EXAMPLES", "200")
    if not text.isdigit() or int(text) < 1:
        raise pytest.UsageError(f"BITGEN_EXAMPLES={text!r}: expected a positive whole number of examples")
    return int(text)


EXAMPLES = _examples()
SANITIZED_EXAMPLES = max(1, EXAMPLES // 4)
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _compare_all_layers(model, c_dir: Path, target: str, build):
    em = emit.emit(model, c_dir, name="prop", kernels=target)
    for kernel in sorted({lay["kernel"].split("/")[0] for lay in em.report["layers"]}):
        event(f"kernel {kernel}")  # which kernels the examples ran: --hypothesis-show-statistics
    hm = build(em, c_dir / "build")
    try:
        x = np.concatenate([
            check.random_inputs(model.input.shape, 48, seed=len(model.layers)),
            check.extreme_inputs(model.input.shape),
        ])
        if not model.states:
            _same(model, golden.run(model, x, all_layers=True), *hm.run(x, trace=True))
            return
        # with state: the 53 inputs as one sequence, and each extreme input held for 4 frames
        for seq in (x[None], np.repeat(check.extreme_inputs(model.input.shape)[:, None], 4, axis=1)):
            frames = seq.shape[0] * seq.shape[1]
            want = [w.reshape((frames,) + w.shape[2:]) for w in golden.run_sequence(model, seq, all_layers=True)]
            y, pred, got = hm.run_sequence(seq, trace=True)
            _same(model, want, y.reshape(frames, -1), pred.reshape(-1),
                  [None if g is None else g.reshape((frames,) + g.shape[2:]) for g in got])
    finally:
        hm.close()


def _same(model, want, y, pred, got):
    """Every layer's output, the model output and the argmax, frame by frame."""
    for i, (w, g) in enumerate(zip(want, got)):
        if g is not None:  # None: fused into an earlier kernel, never in memory
            assert np.array_equal(w.reshape(g.shape), g), f"layer {i} ({model.layers[i].kind}) differs"
    assert got[-1] is not None
    assert np.array_equal(y.reshape(want[-1].shape), want[-1])
    assert np.array_equal(pred, golden.argmax(want[-1]))


MODELS = {"sequential": models(), "graph": graphs()}


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("target", kernels.TARGETS)
@PROPERTY
@given(data=st.data())
def test_random_models_are_bit_exact(host_runtime, target, kind, data):
    """Every kernel variant (each target picks different kernels) against golden, on random
    sequential models and on graphs (tensors read by several layers, planned by lifetime,
    joined by Add/Sub/Concat)."""
    model = data.draw(MODELS[kind])
    with tempfile.TemporaryDirectory() as tmp:
        _compare_all_layers(model, Path(tmp), target,
                            lambda em, d: host.build(em, d, runtime=host_runtime))


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("target", kernels.TARGETS)
@settings(PROPERTY, max_examples=SANITIZED_EXAMPLES)
@given(data=st.data())
def test_random_models_are_clean_under_sanitizers(sanitized_runtime, target, kind, data):
    """The same comparison in the ASan + UBSan build: bit-exact and no invalid access."""
    model = data.draw(MODELS[kind])
    with tempfile.TemporaryDirectory() as tmp:
        _compare_all_layers(model, Path(tmp), target,
                            lambda em, d: host.build_sanitized(em, d, runtime=sanitized_runtime))
