"""Property: for random architectures over every op and encoding, the emitted C equals golden
on every layer's output, for random and extreme inputs."""
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings

import pytest

from bitgen import check, golden
from bitgen.backends.c import emit, host, kernels

from random_models import models

EXAMPLES = 200


def _compare_all_layers(model, c_dir: Path, target: str):
    em = emit.emit(model, c_dir, name="prop", kernels=target)
    hm = host.build(em, c_dir / "build")
    try:
        x = np.concatenate([
            check.random_inputs(model.input.shape, 48, seed=len(model.layers)),
            check.extreme_inputs(model.input.shape),
        ])
        want = golden.run(model, x, all_layers=True)
        y, pred, got = hm.run(x, trace=True)
    finally:
        hm.close()
    for i, (w, g) in enumerate(zip(want, got)):
        if g is not None:  # None: fused into an earlier kernel, never in memory
            assert np.array_equal(w.reshape(g.shape), g), f"layer {i} ({model.layers[i].kind}) differs"
    assert got[-1] is not None
    assert np.array_equal(y.reshape(want[-1].shape), want[-1])
    assert np.array_equal(pred, golden.argmax(want[-1]))


@pytest.mark.parametrize("target", kernels.TARGETS)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=models())
def test_random_architectures_are_bit_exact(target, model):
    """Every kernel variant (each target picks different kernels) against golden."""
    with tempfile.TemporaryDirectory() as tmp:
        _compare_all_layers(model, Path(tmp), target)
