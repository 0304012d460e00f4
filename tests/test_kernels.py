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
# n_out covers every tail: none (8), 2 rows (1, 9, 17), 4 rows (3, 12), a padded block (6, 13)
@pytest.mark.parametrize("n_in, n_out", [(1, 1), (7, 9), (37, 8), (130, 17), (5, 3), (20, 6), (33, 12), (9, 13)])
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
        assert g is None or np.array_equal(w, g)


def _cnn_model(enc: str, kh: int, kw: int, seed: int) -> ir.Model:
    """conv (1 input channel) -> ReLU -> floor shift to int32 -> depthwise conv on int32 planes."""
    rng = np.random.default_rng(seed)
    values = np.array(encodings.get(enc).values)
    return ir.Model(ir.InputSpec((1, 9, 8)), [
        ir.Conv2d(weight=rng.choice(values, (5, 1, kh, kw)), encoding=enc, bias=rng.integers(-999, 999, 5)),
        ir.ReLU(),
        ir.Requant(multiplier=[1], shift=[2], rounding="floor", out_dtype="int32"),
        ir.Conv2d(weight=rng.choice(values, (5, 1, kh, kw)), encoding=enc, groups=5),
        ir.MaxPool2d(2, stride=1),
    ])


@pytest.mark.parametrize("target", ["rv32emc", "cortex-m4"])
@pytest.mark.parametrize("enc", ["8bit", "4bit", "binary"])
@pytest.mark.parametrize("kh, kw", [(3, 3), (1, 1), (2, 3), (3, 1)])
def test_plane_conv_equals_golden(tmp_path, target, enc, kh, kw):
    m = _cnn_model(enc, kh, kw, seed=kh * 7 + kw)
    mp = emit.plan_model(m, target)
    # first conv: offset by the input minimum, ReLU and shift fused; then a plane conv on int32
    assert [c.kernel for c in mp.choices] == ["plane+offset", "fused", "fused", "plane", "generic"]
    assert mp.steps[0].channelwise
    em = emit.emit(m, tmp_path, name="cnn", target=target)
    hm = host.build(em, tmp_path / "b")
    x = np.concatenate([check.random_inputs(m.input.shape, 64), check.extreme_inputs(m.input.shape)])
    _, _, layers = hm.run(x, trace=True)
    traced = [i for i, g in enumerate(layers) if g is not None]
    assert traced[-1] == len(m.layers) - 1
    for i in traced:
        assert np.array_equal(golden.run(m, x, all_layers=True)[i], layers[i]), f"layer {i}"


@pytest.mark.parametrize("rounding", ["half_up", "floor"])
@pytest.mark.parametrize("mult, shift, mode", [
    ([3, 1, 40000, 65535], [2, 0, 24, 31], "64-bit"),       # shift 0 with a big product: 64-bit
    ([3, 1, 255, 200], [2, 0, 9, 31], "direct"),             # |x| * m < 2^32
    ([40000, 65535, 300, 1 << 15], [30, 31, 8, 20], "split"),  # |x| * m up to 2^38, s >= 8
])
def test_requant_arithmetic_modes_equal_golden(tmp_path, rounding, mult, shift, mode):
    """32-bit requantization (direct and split products) and the 64-bit one, per channel,
    on accumulators up to +-4.2 million (8-bit weights, 256 inputs)."""
    rng = np.random.default_rng(len(mode))
    w = rng.integers(-128, 128, (4, 256))
    w[0], w[1] = 127, -128  # the extremes of the proved range are reached
    m = ir.Model(ir.InputSpec((256,)), [
        ir.Linear(weight=w, encoding="8bit"),
        ir.Requant(multiplier=mult, shift=shift, rounding=rounding, out_dtype="int32"),
    ])
    em = emit.emit(m, tmp_path, name="rq")
    src = (tmp_path / "rq.c").read_text()
    assert ("bg_requant32_to" in src) == (mode != "64-bit")
    if mode != "64-bit":  # fields: multiplier, shift, channels, half_up, split, lo, hi
        fields = src.split("bg_requant32_t rq_q1 = {", 1)[1].split("}", 1)[0].split(",")
        assert int(fields[4]) == (mode == "split")
    hm = host.build(em, tmp_path / "b")
    x = np.concatenate([check.random_inputs(m.input.shape, 300), check.extreme_inputs(m.input.shape)])
    y, _, _ = hm.run(x)
    assert np.array_equal(y, golden.run(m, x))
