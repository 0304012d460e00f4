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

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import pytest

from bitgen import fuzz
from bitgen.backends.c import host, kernels

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
    """bitgen.fuzz's property (also what `bitgen sweep --fuzz` runs): every layer's output, the
    model output and the argmax equal golden, frame by frame."""
    def kernels_reached(em):  # which kernels the examples ran: --hypothesis-show-statistics
        for kernel in sorted({lay["kernel"].split("/")[0] for lay in em.report["layers"]}):
            event(f"kernel {kernel}")

    diff = fuzz.first_difference(model, c_dir, target, build, on_emit=kernels_reached)
    assert diff is None, diff["what"]


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
