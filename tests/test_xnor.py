"""XNOR-popcount kernels (bg_xnor.c): binary x binary convolutions and fully connected layers
on every kernel set that has them, equal to golden on every layer; chosen exactly where the
input is proved binary and every weight is ±1."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitgen import check, golden, ir
from bitgen.backends.c import emit, host, targets

XNOR_SETS = [name for name in targets.NAMES if targets.get(name).xnor]


def _run_all_layers(model, tmp_path, kernels, runtime, sanitized=False):
    em = emit.emit(model, tmp_path / "c", name="xn", kernels=kernels)
    build = host.build_sanitized if sanitized else host.build
    hm = build(em, tmp_path / "b", runtime=runtime)
    try:
        x = np.concatenate([check.random_inputs(model.input.shape, 40, seed=3), check.extreme_inputs(model.input.shape)])
        want = golden.run(model, x, all_layers=True)
        y, pred, got = hm.run(x, trace=True)
        for i, (w, g) in enumerate(zip(want, got)):
            if g is not None:
                assert np.array_equal(w.reshape(g.shape), g), f"layer {i} ({model.layers[i].kind}) differs"
        assert np.array_equal(pred, golden.argmax(want[-1]))
    finally:
        hm.close()
    return [layer["kernel"] for layer in em.report["layers"]]


@st.composite
def binary_convs(draw):
    """Sign, then a ±1 convolution of any shape, stride, padding and groups, run on its own
    (its output read by a flatten) or channel by channel (followed by a ReLU and a max pool)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    groups = draw(st.integers(1, 3))
    c = groups * draw(st.integers(1, 20))
    co = groups * draw(st.integers(1, 4))
    h, w = draw(st.integers(1, 10)), draw(st.integers(1, 10))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    kh, kw = draw(st.integers(1, min(5, h + 2 * ph))), draw(st.integers(1, min(5, w + 2 * pw)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    bias = rng.integers(-1000, 1000, co) if draw(st.booleans()) else None
    thresholds = rng.integers(-20, 20, c if draw(st.booleans()) else 1)
    conv = ir.Conv2d(weight=rng.choice([-1, 1], (co, c // groups, kh, kw)), encoding=draw(st.sampled_from(
        ["binary", "2bitsym", "8bit"])), bias=bias, stride=stride, padding=(ph, pw), groups=groups)
    nodes = [ir.Node(ir.Sign(threshold=thresholds), ["input"], "s"), ir.Node(conv, ["s"], "y")]
    if draw(st.booleans()):
        nodes.append(ir.Node(ir.Flatten(), ["y"], "out"))
    else:
        nodes.append(ir.Node(ir.ReLU(), ["y"], "out"))
    return ir.Model(ir.InputSpec((c, h, w)), nodes=nodes)


@pytest.mark.parametrize("kernels", XNOR_SETS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(model=binary_convs())
def test_binary_convolutions_of_every_shape_are_bit_exact(host_runtime, tmp_path, kernels, model):
    chosen = _run_all_layers(model, tmp_path, kernels, host_runtime)
    assert chosen[1].startswith("xnor")


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(model=binary_convs())
def test_binary_convolutions_are_clean_under_sanitizers(sanitized_runtime, tmp_path, model):
    chosen = _run_all_layers(model, tmp_path, "rv32ec", sanitized_runtime, sanitized=True)
    assert chosen[1].startswith("xnor")


@pytest.mark.parametrize("n_in", [1, 31, 32, 33, 64, 65, 200])
@pytest.mark.parametrize("dtype", ["int8", "int32"])
def test_binary_fully_connected_layers_across_word_boundaries(host_runtime, tmp_path, n_in, dtype):
    rng = np.random.default_rng(n_in)
    nodes = [ir.Node(ir.Sign(threshold=[0]), ["input"], "s")]
    if dtype == "int32":  # a plain product of binary tensors, stored as int32, stays binary
        nodes.append(ir.Node(ir.Mul(out_dtype="int32"), ["s", "s"], "s32"))
    nodes.append(ir.Node(ir.Linear(weight=rng.choice([-1, 1], (9, n_in)), encoding="binary",
                                   bias=rng.integers(-5, 5, 9)), [nodes[-1].output], "y"))
    model = ir.Model(ir.InputSpec((n_in,)), nodes=nodes)
    assert model.infer_types()[0][-2].binary
    for kernels in XNOR_SETS:
        assert _run_all_layers(model, tmp_path / kernels, kernels, host_runtime)[-1] == "xnor"


def test_binary_int32_input_convolution(host_runtime, tmp_path):
    rng = np.random.default_rng(0)
    model = ir.Model(ir.InputSpec((5, 6, 7)), nodes=[
        ir.Node(ir.Sign(threshold=[0]), ["input"], "s"),
        ir.Node(ir.Mul(out_dtype="int32"), ["s", "s"], "s32"),
        ir.Node(ir.Conv2d(weight=rng.choice([-1, 1], (3, 5, 3, 3)), encoding="binary", padding=1), ["s32"], "y"),
    ])
    assert _run_all_layers(model, tmp_path, "rv32emc", host_runtime)[-1] == "xnor"


def _sign_conv(weight, first=None):
    nodes = [ir.Node(ir.Sign(threshold=[0]), ["input"], "s")] if first is None else [first]
    nodes.append(ir.Node(ir.Conv2d(weight=weight, encoding="8bit", padding=1), [nodes[-1].output], "y"))
    return ir.Model(ir.InputSpec((2, 5, 5)), nodes=nodes)


def test_the_kernel_is_chosen_only_for_binary_inputs_and_unit_weights():
    ones = np.ones((3, 2, 3, 3), dtype=np.int64)
    assert emit.plan_model(_sign_conv(ones), "rv32ec").choices[-1].kernel == "xnor"
    assert emit.plan_model(_sign_conv(ones), "generic").choices[-1].kernel == "generic"
    three = ones.copy()
    three[0, 0, 0, 0] = 3  # one weight that is not ±1
    assert emit.plan_model(_sign_conv(three), "rv32ec").choices[-1].kernel != "xnor"
    zero = ones.copy()
    zero[1, 1, 1, 1] = 0
    assert emit.plan_model(_sign_conv(zero), "rv32ec").choices[-1].kernel != "xnor"
    # values in [-1, 1] that are not proved binary (a clamp can give 0)
    clamp = ir.Node(ir.Add(out_min=-1, out_max=1), ["input", "input"], "s")
    model = _sign_conv(ones, first=clamp)
    t = model.infer_types()[0][0]
    assert (t.lo, t.hi, t.binary) == (-1, 1, False)
    assert emit.plan_model(model, "rv32ec").choices[-1].kernel != "xnor"



def test_the_arena_limit_gives_up_xnor_columns_where_they_set_the_peak():
    """XNOR columns are optional scratch: under --max-arena the generic kernel takes the layers
    whose columns set the peak, and only those."""
    import test_recurrent

    m = test_recurrent.conv_rnn(hw=12)
    fast, plain = emit.plan_model(m, "rv32ec"), emit.plan_model(m, "generic")
    assert fast.memory.arena_bytes > plain.memory.arena_bytes
    assert sum(c.kernel == "xnor" for c in fast.choices) == 5  # four convolutions and the product
    limited = emit.plan_within(m, "rv32ec", plain.memory.arena_bytes)
    assert limited.memory.arena_bytes <= plain.memory.arena_bytes
    assert 0 < sum(c.kernel == "xnor" for c in limited.choices) < 5
    assert emit.plan_within(m, "rv32ec", fast.memory.arena_bytes).memory.arena_bytes == fast.memory.arena_bytes
