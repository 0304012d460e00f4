"""Target-specialized kernels against golden on shapes chosen to hit their edge cases."""
import numpy as np
import pytest

from bitgen import check, emit, encodings, golden, host, ir

ENCODINGS = sorted(encodings.ENCODINGS)


def _lut_model(enc: str, n_in: int, n_out: int, seed: int, first: bool) -> ir.Model:
    rng = np.random.default_rng(seed)
    values = np.array(encodings.get(enc).values)
    layers = [] if first else [ir.Linear(weight=rng.choice([-1, 1], (n_in, n_in)), encoding="binary"),
                               ir.ShiftNorm()]  # inputs >= 0 with many zeros: no offset path
    layers.append(ir.Linear(weight=rng.choice(values, (n_out, n_in)), encoding=enc,
                            bias=rng.integers(-5000, 5000, n_out)))
    return ir.Model(ir.InputSpec((n_in,)), layers)


@pytest.mark.parametrize("enc", ENCODINGS)
@pytest.mark.parametrize("first", [True, False], ids=["offset", "no-offset"])
@pytest.mark.parametrize("n_in, n_out", [(1, 1), (7, 9), (37, 8), (130, 17)])
def test_lut_linear_equals_golden(tmp_path, enc, first, n_in, n_out):
    m = _lut_model(enc, n_in, n_out, seed=n_in * 31 + n_out, first=first)
    assert emit.plan_model(m, "rv32ec").choices[-1].kernel == "lut"
    em = emit.emit(m, tmp_path, name="lut", target="rv32ec")
    hm = host.build(em, tmp_path / "b")
    rng = np.random.default_rng(0)
    x = np.concatenate([
        check.random_inputs(m.input.shape, 64),
        check.extreme_inputs(m.input.shape),
        # sparse inputs and a constant background: many skipped columns, several chunks
        np.where(rng.random((16, n_in)) < 0.7, -127, rng.integers(-128, 128, (16, n_in))).astype(np.int8),
        np.full((1, n_in), 5, dtype=np.int8),  # every input equal and positive: offset z > 0
    ])
    y, _, layers = hm.run(x, trace=True)
    want = golden.run(m, x, all_layers=True)
    for w, g in zip(want, layers):
        assert np.array_equal(w, g)
