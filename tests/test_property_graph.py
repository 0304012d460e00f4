"""Property: random graphs (residual branches, concatenations, transposed convolutions,
upsampling, every op and encoding), emitted for every kernel set, equal golden on every
node's output for random and extreme inputs."""
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from bitgen import check, golden
from bitgen.backends.c import emit, host, kernels

from random_models import graphs

EXAMPLES = int(os.environ.get("BITGEN_EXAMPLES", "200")) // 2  # graphs take longer to compile


def _compare_all_nodes(model, c_dir: Path, kernel_set: str):
    em = emit.emit(model, c_dir, name="graph", kernels=kernel_set)
    hm = host.build(em, c_dir / "build")
    try:
        x = np.concatenate([
            check.random_inputs(model.input.shape, 32, seed=len(model.nodes)),
            check.extreme_inputs(model.input.shape),
        ])
        want = golden.run(model, x, all_layers=True)
        y, pred, got = hm.run(x, trace=True)
    finally:
        hm.close()
    for i, (w, g) in enumerate(zip(want, got)):
        if g is not None:  # None: fused into an earlier kernel, never in memory
            assert np.array_equal(w.reshape(g.shape), g), f"node {i} ({model.nodes[i].op.kind}) differs"
    assert np.array_equal(y.reshape(want[-1].shape), want[-1])
    assert np.array_equal(pred, golden.argmax(want[-1]))


@pytest.mark.parametrize("kernel_set", kernels.TARGETS)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=graphs())
def test_random_graphs_are_bit_exact(kernel_set, model):
    with tempfile.TemporaryDirectory() as tmp:
        _compare_all_nodes(model, Path(tmp), kernel_set)
