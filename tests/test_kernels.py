"""Target-specialized kernels against golden on shapes chosen to hit their edge cases."""
import numpy as np
import pytest

from bitgen import check, encodings, golden, ir
from bitgen.backends.c import emit, host

ENCODINGS = sorted(encodings.ENCODINGS)
ROWS = {"cortex-m4": "rows_smlad", "rv32emc": "rows_mul"}  # the dense row kernel of each kernel set


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
    em = emit.emit(m, tmp_path, name="lut", kernels="rv32ec")
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


@pytest.mark.parametrize("enc", ENCODINGS)
# n_in: partial groups of 1..3 inputs, an odd number of groups; n_out: blocks with 1..3 padding rows
@pytest.mark.parametrize("n_in, n_out", [(1, 1), (3, 4), (4, 5), (5, 7), (9, 8), (130, 6), (257, 3)])
def test_simd_linear_equals_golden(tmp_path, enc, n_in, n_out):
    m = _lut_model(enc, n_in, n_out, seed=n_in * 7 + n_out, first=True)
    fits_int8 = m.layers[-1].weight.max() <= 127  # FP1.3.0's +128 has no int8 code
    assert emit.plan_model(m, "cortex-m4").choices[-1].kernel == ("simd" if fits_int8 else "lut")
    em = emit.emit(m, tmp_path, name="simd", kernels="cortex-m4")
    hm = host.build(em, tmp_path / "b")
    x = np.concatenate([check.random_inputs(m.input.shape, 64), check.extreme_inputs(m.input.shape)])
    assert np.array_equal(golden.run(m, x), hm.run(x)[0])  # rows of 5 inputs: unaligned words


def test_simd_linear_extreme_products(tmp_path):
    """-128 * -128 in every lane: each SMLAD adds two products of 2^14."""
    m = ir.Model(ir.InputSpec((12,)), [ir.Linear(weight=np.full((5, 12), -128), encoding="8bit")])
    em = emit.emit(m, tmp_path, name="simd", kernels="cortex-m4")
    assert em.report["layers"][0]["kernel"] == "simd"
    x = check.extreme_inputs(m.input.shape)
    assert np.array_equal(golden.run(m, x), host.build(em, tmp_path / "b").run(x)[0])


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
    # (both skip zero inputs, so the Cortex-M4 keeps them too, not the SMLAD 3x3 kernel)
    plane = "conv3x3" if (kh, kw) == (3, 3) else "plane"
    assert [c.kernel for c in mp.choices] == [plane + "+offset", "fused", "fused", plane, "generic"]
    assert mp.steps[0].channelwise
    em = emit.emit(m, tmp_path, name="cnn", kernels=target)
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


def _pooled_cnn(h: int, w: int, kh: int, kw: int, out: str, relu: bool, seed: int) -> ir.Model:
    """conv (1 input channel) -> [ReLU] -> requant -> depthwise conv -> ReLU -> requant ->
    MaxPool2d(2): both convs run on planes, the second with the pool fused into its stage.
    out "int32": BitNetMCU's ReLU and floor shift; "int8": a rounding multiplier and a clamp
    (the general output stage); "none": the first conv's sums go straight to the pool."""
    rng = np.random.default_rng(seed)
    c = 3
    w8 = lambda shape: rng.integers(-128, 128, shape)  # noqa: E731
    if out == "int32":
        rq = lambda: ir.Requant(multiplier=[1], shift=[4], rounding="floor", out_dtype="int32")  # noqa: E731
    else:
        rq = lambda: ir.Requant(multiplier=rng.integers(1, 300, c), shift=rng.integers(8, 14, c),  # noqa: E731
                                rounding="half_up", out_dtype="int8")
    layers = [ir.Conv2d(weight=w8((c, 1, kh, kw)), encoding="8bit", bias=rng.integers(-9999, 9999, c))]
    if out == "none":
        return ir.Model(ir.InputSpec((1, h, w)), layers + [ir.MaxPool2d(2), ir.Flatten()])
    layers += ([ir.ReLU()] if relu else []) + [rq()]
    layers += [ir.Conv2d(weight=w8((c, 1, kh, kw)), encoding="8bit", groups=c, bias=rng.integers(-999, 999, c)),
               ir.ReLU(), rq(), ir.MaxPool2d(2), ir.Flatten()]
    return ir.Model(ir.InputSpec((1, h, w)), layers)


@pytest.mark.parametrize("target", ["rv32emc", "cortex-m4"])
@pytest.mark.parametrize("h, w, kh, kw, out, relu", [
    (16, 16, 3, 3, "int32", True),   # BitNetMCU's layout: rows of 14 (tiles of 5, 5, 4), pooled 12
    (12, 13, 3, 3, "int32", True),   # odd sizes: 11-wide rows (5, 5, overlapping 2), pool floor 4x5
    (9, 8, 3, 3, "int32", False),    # first conv without ReLU: signed inputs, no zero skipping after it
    (8, 9, 3, 3, "int8", True),      # general output stage, int8 planes, int8 pooled output
    (11, 10, 3, 3, "int8", False),   # rows of 8: 5 and an overlapping 4
    (10, 7, 3, 3, "int32", True),    # rows of 5 and 3 (two overlapping tiles of 2), pooled 1 wide
    (9, 6, 3, 3, "int32", True),     # rows of 4 and 2 (a pooled row of one tile of 2)
    (10, 9, 2, 3, "int32", True),    # kernels other than 3x3: one output at a time
    (9, 9, 1, 1, "int8", True),
    (12, 11, 5, 5, "int32", True),
    (13, 12, 3, 3, "none", True),    # conv straight into the pool (no output stage), 10x10 -> 5x5
])
def test_plane_conv_fused_maxpool_equals_golden(tmp_path, target, h, w, kh, kw, out, relu):
    m = _pooled_cnn(h, w, kh, kw, out, relu, seed=h * 31 + w * 7 + kh)
    mp = emit.plan_model(m, target)
    pool = next(i for i, layer in enumerate(m.layers) if layer.kind == "maxpool2d")
    conv = max(i for i, layer in enumerate(m.layers[:pool]) if layer.kind == "conv2d")
    kernel = ("dw3x3_smlad", "conv3x3") if (kh, kw) == (3, 3) else ("plane",)
    assert mp.choices[conv].kernel.startswith(kernel) and mp.choices[conv].fuses == pool - conv
    assert mp.choices[pool].kernel == "fused"
    em = emit.emit(m, tmp_path, name="cnn", kernels=target)
    hm = host.build(em, tmp_path / "b")
    rng = np.random.default_rng(h * w)
    x = np.concatenate([
        check.random_inputs(m.input.shape, 48),
        check.extreme_inputs(m.input.shape),
        # images: a constant background with sparse strokes (the zero-skipping path)
        np.where(rng.random((16, 1, h, w)) < 0.6, -127, rng.integers(-128, 128, (16, 1, h, w))).astype(np.int8),
    ])
    y, _, layers = hm.run(x, trace=True)
    want = golden.run(m, x, all_layers=True)
    traced = [i for i, g in enumerate(layers) if g is not None]
    assert pool in traced
    for i in traced:
        assert np.array_equal(want[i].reshape(layers[i].shape), layers[i]), f"layer {i} ({m.layers[i].kind})"
    assert np.array_equal(want[-1].reshape(y.shape), y)


def test_maxpool_other_than_2x2_stride_2_is_not_fused():
    m = _cnn_model("8bit", 3, 3, seed=1)  # ends in MaxPool2d(2, stride=1)
    m.nodes[-1].op = ir.MaxPool2d(3, stride=2)
    mp = emit.plan_model(m, "rv32emc")
    assert [c.kernel for c in mp.choices][-2:] == ["conv3x3", "generic"]


@pytest.mark.parametrize("target", ["rv32emc", "cortex-m4"])
def test_plane_conv_on_the_model_input_per_channel(tmp_path, target):
    """A depthwise first layer reads its channel's plane of the input, offset (a copy of one
    plane: its scratch is a plane, not the whole input); a conv that mixes input channels is not
    a plane conv (the row kernel takes it)."""
    rng = np.random.default_rng(5)
    models = [
        ir.Model(ir.InputSpec((3, 7, 9)), [
            ir.Conv2d(weight=rng.integers(-128, 128, (3, 1, 3, 3)), encoding="8bit", groups=3), ir.ReLU(),
            ir.MaxPool2d(2)]),
        ir.Model(ir.InputSpec((2, 5, 6)), [
            ir.Conv2d(weight=rng.integers(-128, 128, (3, 2, 3, 3)), encoding="8bit"), ir.ReLU()]),
    ]
    for k, m in enumerate(models):
        choice = emit.plan_model(m, target).choices[0]
        assert choice.kernel == ("conv3x3+offset" if k == 0 else ROWS[target])
        if k == 0:
            assert choice.scratch == 4 * 7 * 9
        em = emit.emit(m, tmp_path / str(k), name="cnn", kernels=target)
        x = np.concatenate([check.random_inputs(m.input.shape, 48), check.extreme_inputs(m.input.shape)])
        y, _, _ = host.build(em, tmp_path / str(k) / "b").run(x)
        assert np.array_equal(golden.run(m, x).reshape(y.shape), y)
