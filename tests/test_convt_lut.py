"""The transposed convolution without a multiplier (RV32EC, kernels/convt_lut.py, bg_convt_lut.c)
against golden: random layers of every encoding, kernel size, stride, padding and output
padding it takes, with the output stages it fuses, on random and extreme inputs (host cffi),
at the exactness bound, on bands and 2-D tiles of tiled stacks, and where it refuses a layer."""
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bitgen import check, encodings, golden, ir
from bitgen.backends.c import emit, host

ENCODINGS = ["8bit", "4bit", "4bitsym", "fp130", "2bitsym", "ternary", "binary"]
POSTS = ["none", "relu", "requant", "requant_relu", "relu_requant_relu"]


def _post(rng, co: int, kind: str) -> list[ir.Layer]:
    rq = ir.Requant(multiplier=rng.integers(1, 3000, co), shift=rng.integers(8, 18, co),
                    rounding="floor" if rng.random() < 0.5 else "half_up")
    return {"none": [], "relu": [ir.ReLU()], "requant": [rq], "requant_relu": [rq, ir.ReLU()],
            "relu_requant_relu": [ir.ReLU(), rq, ir.ReLU()]}[kind]


def _inputs(shape, n: int = 16, seed: int = 0) -> np.ndarray:
    return np.concatenate([check.random_inputs(shape, n, seed), check.extreme_inputs(shape)])


def _equal(m: ir.Model, em: emit.Emitted, runtime, where, x: np.ndarray) -> None:
    y = host.build(em, where, runtime=runtime).run(x)[0]
    g = golden.run(m, x).reshape(len(x), -1)
    diff = int((g != y.reshape(len(x), -1)).sum())
    assert diff == 0, f"{diff} outputs differ from golden"


@st.composite
def layers(draw):
    """A ConvTranspose2d the kernel claims (groups 1, stride <= kernel) and its output stage."""
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, kh)), draw(st.integers(1, kw))
    ph, pw = draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1))
    oph, opw = draw(st.integers(0, sh - 1)), draw(st.integers(0, sw - 1))
    c, co = draw(st.integers(1, 9)), draw(st.integers(1, 11))  # 11: a block of 8 and a tail of 4
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    enc = draw(st.sampled_from(ENCODINGS))
    post = draw(st.sampled_from(POSTS))
    seed = draw(st.integers(0, 2**16))
    assume((h - 1) * sh - 2 * ph + kh + oph >= 1 and (w - 1) * sw - 2 * pw + kw + opw >= 1)
    rng = np.random.default_rng(seed)
    values = np.array(encodings.get(enc).values)
    bias = rng.integers(-3000, 3000, co) if rng.random() < 0.8 else None
    layer = ir.ConvTranspose2d(weight=rng.choice(values, (c, co, kh, kw)), encoding=enc, bias=bias,
                               stride=(sh, sw), padding=(ph, pw), output_padding=(oph, opw))
    return ir.Model(ir.InputSpec((c, h, w)), [layer, *_post(rng, co, post)]), seed


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=layers())
def test_random_transposed_convolutions_equal_golden(case, host_runtime, tmp_path_factory):
    m, seed = case
    m.validate()
    mp = emit.plan_model(m, "rv32ec")
    assert mp.choices[0].kernel == "lut_convt"
    assert mp.choices[0].fuses == len(m.layers) - 1  # the whole output stage inside the kernel
    where = tmp_path_factory.mktemp("convt")
    em = emit.emit(m, where / "c", name="ct", kernels="rv32ec")
    _equal(m, em, host_runtime, where / "b", _inputs(m.input.shape, seed=seed))


def test_at_the_exactness_bound(host_runtime, tmp_path):
    """8-bit weights of -128 on every tap and a bias near the limit: the pixels whose phase has
    every tap (stride 1 here) reach int32's edge on the all -128 input."""
    c, k = 8, 3
    worst = 128 * 128 * c * k * k
    bias = np.array([2**31 - 1 - worst, -(2**31 - 1) + worst, 5])
    m = ir.Model(ir.InputSpec((c, 4, 5)), [
        ir.ConvTranspose2d(weight=np.full((c, 3, k, k), -128), encoding="8bit", bias=bias, padding=1)])
    m.validate()
    assert emit.plan_model(m, "rv32ec").choices[0].kernel == "lut_convt"
    em = emit.emit(m, tmp_path / "c", name="ct", kernels="rv32ec")
    x = np.concatenate([_inputs(m.input.shape), np.full((1, c, 4, 5), -128, dtype=np.int8)])
    _equal(m, em, host_runtime, tmp_path / "b", x)


def test_refusals_and_other_kernel_sets():
    rng = np.random.default_rng(1)
    w = rng.integers(-7, 8, (4, 4, 2, 2))
    wide = ir.Model(ir.InputSpec((4, 3, 3)), [ir.ConvTranspose2d(weight=w, encoding="4bit", stride=3)])
    grouped = ir.Model(ir.InputSpec((4, 3, 3)), [ir.ConvTranspose2d(weight=w[:, :2], encoding="4bit", groups=2,
                                                                    stride=2)])
    mp = emit.plan_model(wide, "rv32ec")  # outputs no tap reaches: the generic kernel
    assert mp.choices[0].kernel == "generic" and "stride 3x3 over the 2x2 kernel" in mp.refused[0][0].reason
    assert emit.plan_model(grouped, "rv32ec").choices[0].kernel == "generic"
    for ks in ("generic", "rv32emc", "cortex-m4"):  # only RV32EC lacks a multiplier
        assert emit.plan_model(grouped, ks).choices[0].kernel == "generic"


def _tiled_stack(seed: int) -> ir.Model:
    """Transposed convolutions of several kernels, strides, paddings and output paddings, each
    requantized (with a ReLU or not), between 3x3 convolutions, to one output channel."""
    rng = np.random.default_rng(seed)
    c = int(rng.integers(1, 5))
    layers: list[ir.Layer] = []
    shape = (c, int(rng.integers(2, 5)), int(rng.integers(2, 5)))
    t = ir.TensorType(shape, "int8", -128, 127)
    for k in range(3):
        co = int(rng.integers(1, 6)) if k < 2 else 1
        kh, kw = int(rng.integers(2, 5)), int(rng.integers(2, 5))
        sh, sw = int(rng.integers(1, min(kh, 3) + 1)), int(rng.integers(1, min(kw, 3) + 1))
        ph, pw = int(rng.integers(0, kh)), int(rng.integers(0, kw))
        op = ir.ConvTranspose2d(weight=rng.integers(-7, 8, (t.shape[0], co, kh, kw)), encoding="4bit",
                                stride=(sh, sw), padding=(ph, pw),
                                output_padding=(int(rng.integers(0, sh)), int(rng.integers(0, sw))),
                                bias=rng.integers(-50, 50, co))
        if min(op.infer(t).shape[1:]) < 2:
            op = ir.ConvTranspose2d(weight=op.weight, encoding="4bit", stride=(sh, sw), bias=op.bias)
        layers.append(op)
        t = op.infer(t)
        layers.append(ir.Requant(multiplier=rng.integers(1, 4, co), shift=np.full(co, 6)))
        t = layers[-1].infer(t)
        if k < 2 and rng.random() < 0.7:
            layers.append(ir.ReLU())
            t = layers[-1].infer(t)
        if k == 0:
            layers += [ir.Conv2d(weight=rng.integers(-7, 8, (co, co, 3, 3)), encoding="4bit", padding=1),
                       ir.Requant(multiplier=rng.integers(1, 4, co), shift=np.full(co, 7))]
            t = layers[-1].infer(layers[-2].infer(t))
    m = ir.Model(ir.InputSpec(shape), layers)
    m.validate()
    return m


@pytest.mark.parametrize("seed", range(6))
def test_on_bands_and_tiles_of_tiled_stacks(seed, host_runtime, tmp_path):
    """The kernel on the bands and 2-D tiles of tiled steps (the shifts as its paddings, rows
    and columns cut at every edge), the output streamed or not: equal to golden."""
    m = _tiled_stack(seed)
    _, oh, ow = m.validate()[-1].shape
    for k, (rows, cols) in enumerate([(1, None), (2, 3), (3, 2), (oh, max(1, ow // 2))]):
        em = emit.emit(m, tmp_path / f"c{k}", name="tt", kernels="rv32ec", tiles="rows", strip_rows=min(rows, oh),
                       tile_cols=None if cols is None else min(cols, ow), stream=k % 2 == 1)
        kinds = {lay["kernel"] for lay in em.report["layers"]}
        assert "lut_convt/tiled" in kinds, kinds
        _equal(m, em, host_runtime, tmp_path / f"b{k}", _inputs(m.input.shape, 8, seed))


def test_reads_and_writes_within_its_buffers(sanitized_runtime, tmp_path):
    """Under ASan + UBSan: whole layers (paddings beyond the stride, uneven kernels and strides,
    output padding) and tiled stacks whose tiles cut the receptive fields at every edge."""
    rng = np.random.default_rng(5)
    cases = [((3, 4, 5), 6, (3, 3), (2, 2), (2, 1), (1, 0)), ((2, 3, 3), 9, (4, 2), (3, 2), (0, 1), (2, 1)),
             ((5, 2, 6), 2, (1, 3), (1, 3), (0, 2), (0, 2))]
    models = []
    for shape, co, k, s, p, op in cases:
        layer = ir.ConvTranspose2d(weight=rng.integers(-7, 8, (shape[0], co, *k)), encoding="4bit", stride=s,
                                   padding=p, output_padding=op, bias=rng.integers(-99, 99, co))
        models.append((ir.Model(ir.InputSpec(shape), [layer, *_post(rng, co, "requant_relu")]), {}))
    for seed in (0, 3):
        m = _tiled_stack(seed)
        _, oh, ow = m.validate()[-1].shape
        models.append((m, dict(tiles="rows", strip_rows=min(2, oh), tile_cols=min(3, ow), stream=seed == 3)))
    for k, (m, kw) in enumerate(models):
        m.validate()
        em = emit.emit(m, tmp_path / f"c{k}", name="ct", kernels="rv32ec", **kw)
        assert any(lay["kernel"].startswith("lut_convt") for lay in em.report["layers"])
        x = _inputs(m.input.shape, 4, k)
        y = host.build_sanitized(em, tmp_path / f"b{k}", runtime=sanitized_runtime).run(x)[0]
        np.testing.assert_array_equal(y.reshape(len(x), -1), golden.run(m, x).reshape(len(x), -1))
