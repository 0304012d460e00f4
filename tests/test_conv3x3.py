"""The fixed-shape 3x3 plane kernel (c_runtime/bg_conv3x3.inc) against golden.

Each model is a channel-by-channel step: a 3x3 conv on the model input (its offset copy) and
optionally a depthwise 3x3 conv on the result, each with a random output stage (ReLU, a shift,
per-channel requantization to int8 with rounding and clamps, 64-bit products) and optionally a fused 2x2 max pool. Plane widths run from the narrowest the kernel
takes (2 columns: two tiles of 2 for 3) to rows of more tiles than it unrolls (a loop), so
every tile and tail of bg_conv3x3.inc is compiled and compared.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitgen import check, encodings, golden, ir
from bitgen.backends.c import emit, host

ENCODINGS = ["8bit", "4bit", "fp130", "2bitsym", "binary"]


def _stage(draw, rng, t: ir.TensorType) -> list[ir.Layer]:
    """A random output stage for a conv whose output type is t."""
    c = t.shape[0]
    kind = draw(st.sampled_from(["none", "relu", "relu-shift", "requant", "relu-requant-relu"]))
    if kind == "none":
        return []
    if kind == "relu":
        return [ir.ReLU()]
    amax = max(abs(t.lo), abs(t.hi), 1)
    if kind == "relu-shift":  # BitNetMCU's: ReLU then a floor shift, int32
        return [ir.ReLU(), ir.Requant(multiplier=[1], shift=[draw(st.integers(0, 6))], rounding="floor",
                                      out_dtype="int32")]
    per_channel = draw(st.booleans())
    n = c if per_channel else 1
    big = draw(st.booleans())  # multipliers whose products need 64 bits
    mult = rng.integers(1 << 14, 1 << 16, n) if big else rng.integers(1, 300, n)
    shift = np.clip(amax.bit_length() + (int(mult.max()).bit_length()) - 7 + rng.integers(-2, 3, n), 0, 40)
    rq = ir.Requant(multiplier=mult, shift=shift, rounding=draw(st.sampled_from(["half_up", "floor"])),
                    out_dtype="int8", out_min=draw(st.sampled_from([-128, -5, 0])), out_max=draw(st.sampled_from([127, 90])))
    return [rq] if kind == "requant" else [ir.ReLU(), rq, ir.ReLU()]


@st.composite
def plane_steps(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    h, w, c = draw(st.integers(3, 11)), draw(st.integers(4, 42)), draw(st.integers(1, 3))
    layers: list[ir.Layer] = []
    t = ir.TensorType((1, h, w), "int8", *ir.INT8)
    for depthwise in (False, True):
        if depthwise and (t.shape[1] < 3 or t.shape[2] < 4 or not draw(st.booleans())):
            break
        enc = draw(st.sampled_from(ENCODINGS))
        wt = rng.choice(np.array(encodings.get(enc).values), (c, 1, 3, 3))
        bias = rng.integers(-3000, 3000, c) if draw(st.booleans()) else None
        conv = ir.Conv2d(weight=wt, encoding=enc, bias=bias, groups=c if depthwise else 1)
        stage = [conv]
        t = ir.infer_type(conv, t)
        for layer in _stage(draw, rng, t):
            stage.append(layer)
            t = ir.infer_type(layer, t)
        if t.shape[1] >= 2 and t.shape[2] >= 2 and draw(st.booleans()):
            stage.append(ir.MaxPool2d(2))
            t = ir.infer_type(stage[-1], t)
        layers += stage
    return ir.Model(ir.InputSpec((1, h, w)), layers)


def _images(shape, n, seed):
    """A constant background with sparse strokes, like digits: the zero-skipping path."""
    rng = np.random.default_rng(seed)
    return np.where(rng.random((n,) + shape) < 0.6, -127, rng.integers(-128, 128, (n,) + shape)).astype(np.int8)


@pytest.mark.parametrize("target", ["rv32emc", "cortex-m4"])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=plane_steps())
def test_fixed_3x3_planes_equal_golden(tmp_path_factory, target, model):
    mp = emit.plan_model(model, target)
    convs = [i for i, layer in enumerate(model.layers) if layer.kind == "conv2d"]
    assert mp.steps[0].channelwise or len(model.layers) == 1
    if mp.steps[0].channelwise:
        # the Cortex-M4 takes 3x3 planes with SMLAD (bg_dw3x3_smlad.inc) where their inputs fit int16
        ok = ("conv3x3", "dw3x3_smlad") if target == "cortex-m4" else ("conv3x3",)
        assert all(mp.choices[i].kernel.startswith(ok) for i in convs)
    out = tmp_path_factory.mktemp("c3")
    em = emit.emit(model, out, name="c3", kernels=target)
    hm = host.build(em, out / "b")
    try:
        x = np.concatenate([check.random_inputs(model.input.shape, 24), check.extreme_inputs(model.input.shape),
                            _images(model.input.shape, 8, seed=len(model.layers))])
        y, _, layers = hm.run(x, trace=True)
    finally:
        hm.close()
    want = golden.run(model, x, all_layers=True)
    for i, got in enumerate(layers):
        if got is not None:
            assert np.array_equal(want[i].reshape(got.shape), got), f"layer {i} ({model.layers[i].kind})"
    assert np.array_equal(want[-1].reshape(y.shape), y)
