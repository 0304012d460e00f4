"""Issue 11's convolution kernels against golden, on shapes chosen to hit their edge cases: the
dense row kernels (SMLAD on Cortex-M4, mul tiles on RV32EMC), the LUT convolution (RV32EC) and
the padded plane convolutions; the kernel each layer gets, and why a faster one was refused."""
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, find, settings

import bitgen
from bitgen import check, encodings, golden, ir
from bitgen.backends.c import emit, host
from bitgen.cli import main
from random_models import graphs, models

DENSE = {"cortex-m4": "rows_smlad", "rv32emc": "rows_mul", "rv32ec": "lut_conv"}


def _conv(rng, c: int, co: int, k: tuple[int, int], enc: str, **kw) -> ir.Conv2d:
    values = np.array(encodings.get(enc).values)
    return ir.Conv2d(weight=rng.choice(values, (co, c // kw.get("groups", 1), *k)), encoding=enc,
                     bias=rng.integers(-3000, 3000, co), **kw)


def _post(rng, co: int, kind: str) -> list[ir.Layer]:
    """The layers after a conv: none, a ReLU, a per-channel requantization to int8 (half up or
    floor), with a ReLU, and a 2x2 max pool."""
    rq = ir.Requant(multiplier=rng.integers(1, 3000, co), shift=rng.integers(8, 18, co),
                    rounding="floor" if "floor" in kind else "half_up")
    return {"none": [], "relu": [ir.ReLU()], "requant": [rq], "requant_floor": [rq],
            "requant_relu": [rq, ir.ReLU()], "relu_requant_pool": [ir.ReLU(), rq, ir.MaxPool2d(2)],
            "requant_relu_pool": [rq, ir.ReLU(), ir.MaxPool2d(2)]}[kind]


def _compare(tmp_path, m: ir.Model, target: str, extra: np.ndarray | None = None) -> dict:
    """Every layer's output of the emitted C against golden; returns NAME.json."""
    em = emit.emit(m, tmp_path, name="conv", kernels=target)
    hm = host.build(em, tmp_path / "b")
    x = np.concatenate([check.random_inputs(m.input.shape, 24), check.extreme_inputs(m.input.shape)]
                       + ([extra] if extra is not None else []))
    y, _, layers = hm.run(x, trace=True)
    want = golden.run(m, x, all_layers=True)
    for i, (w, g) in enumerate(zip(want, layers)):
        assert g is None or np.array_equal(w.reshape(g.shape), g), f"layer {i} ({m.layers[i].kind}) differs"
    assert np.array_equal(want[-1].reshape(y.shape), y)
    return em.report


# (input C, H, W), output channels, kernel, stride, padding, encoding, output stage
CASES = [
    ((1, 5, 7), 3, (3, 3), 1, 1, "8bit", "none"),                # one input channel (alone in its step:
    #                                                              with a ReLU after it, a plane conv)
    ((3, 9, 6), 5, (3, 3), 2, 1, "8bit", "requant_relu"),        # stride 2, odd height
    ((3, 8, 11), 4, (3, 3), 2, 0, "4bitsym", "relu"),            # stride 2, no padding, odd width
    ((5, 7, 7), 4, (1, 1), 1, 0, "8bit", "requant"),             # 1x1, odd channels
    ((2, 6, 5), 7, (3, 3), 1, 2, "8bit", "none"),                # padding 2, int32 output
    ((6, 8, 9), 3, (2, 2), 2, 0, "ternary", "requant_floor"),    # even kernel
    ((4, 5, 5), 2, (5, 5), 1, 2, "4bit", "requant_relu"),        # 5x5
    ((7, 4, 11), 1, (1, 3), (1, 2), (0, 1), "binary", "relu"),   # 1x3, uneven stride and padding
    ((9, 7, 6), 6, (3, 3), 1, 1, "fp130", "requant_relu"),       # FP1.3.0's +-128: no int8
    ((16, 6, 7), 5, (3, 3), 1, 1, "8bit", "requant_relu_pool"),  # fused pool, odd output
    ((3, 9, 9), 4, (3, 3), 1, 0, "2bitsym", "relu_requant_pool"),  # a pool that drops a row and column
    ((33, 3, 4), 2, (3, 3), 1, 1, "8bit", "requant_relu"),       # many channels, tiny plane
]


@pytest.mark.parametrize("target", DENSE)
@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-k{c[2]}-s{c[3]}-p{c[4]}-{c[5]}-{c[6]}" for c in CASES])
def test_dense_conv_kernels_equal_golden(tmp_path, target, case):
    shape, co, k, stride, pad, enc, post = case
    rng = np.random.default_rng(sum(shape) * 7 + co)
    layers = [_conv(rng, shape[0], co, k, enc, stride=stride, padding=pad), *_post(rng, co, post)]
    m = ir.Model(ir.InputSpec(shape), layers)
    mp = emit.plan_model(m, target)
    assert mp.choices[0].kernel == DENSE[target]
    assert mp.choices[0].fuses == len(layers) - 1  # the whole output stage runs inside the kernel
    _compare(tmp_path, m, target)


@pytest.mark.parametrize("target", DENSE)
def test_dense_conv_kernels_at_their_exactness_bound(tmp_path, target):
    """Weights of -128 on every tap and bias near the limit: every partial sum just fits int32,
    reached by the all -128 input (each SMLAD adds two products of 2^14)."""
    c, k = 8, 3
    worst = 128 * 128 * c * k * k
    bias = np.array([2**31 - 1 - worst, -(2**31 - 1) + worst, 5])
    m = ir.Model(ir.InputSpec((c, 4, 5)), [
        ir.Conv2d(weight=np.full((3, c, k, k), -128), encoding="8bit", bias=bias, padding=1)])
    assert emit.plan_model(m, target).choices[0].kernel == DENSE[target]
    _compare(tmp_path, m, target, extra=np.full((1, c, 4, 5), -128, dtype=np.int8))


# the output stage after an unrolled mul tile (rv32emc): multiplier, shift, rounding, output
# type and clamp, a ReLU before / after, a pool; and whether bias and rounding fold into k
FOLDS = [
    ("relu_after", dict(shift=20), "relu", True),                 # one shift: the lim compare
    ("per_channel_shift", dict(shift="per_channel"), "relu", True),  # no lim: the plain clamp
    ("no_relu", dict(shift=16, rounding="floor"), "", True),      # clamp to [-128, 127]
    ("relu_before_pool", dict(shift=18), "relu_requant_pool", True),  # a ReLU moved after
    ("clamp_at_0", dict(shift=17, out_min=0), "", True),         # lo 0 without a ReLU
    ("narrow_clamp", dict(shift=19, out_min=-5, out_max=100), "relu", True),
    ("at_the_bound", dict(shift=12, mult="largest"), "relu", True),  # |acc| * m + 2^shift = int32 max
    ("wide", dict(shift=24, mult="wide"), "relu", False),         # the product needs 64 bits
]


@pytest.mark.parametrize("name, rq, post, folds", FOLDS, ids=[f[0] for f in FOLDS])
def test_unrolled_mul_tiles_fold_the_output_stage(tmp_path, name, rq, post, folds):
    """rv32emc's unrolled tiles (a dot product of up to 128 elements) with bias and rounding
    folded into one constant per channel (sum * m + k): every output stage the fold takes, and
    one it refuses (a 64-bit product), against golden; an odd number of channels and columns
    (a last tile of one channel and one of one pixel)."""
    rng = np.random.default_rng(len(name))
    c, co, k = 6, 5, 3
    conv = ir.Conv2d(weight=rng.integers(-128, 128, (co, c, k, k)), encoding="8bit",
                     bias=rng.integers(-2**20, 2**20, co), padding=1)
    t_acc = ir.infer_type(conv, ir.TensorType((c, 7, 9), "int8", -128, 127))
    shift = rng.integers(14, 22, co) if rq["shift"] == "per_channel" else np.full(co, rq["shift"])
    mult = {"largest": (2**31 - 1 - 2 ** shift) // t_acc.amax, "wide": np.full(co, 2**12)}.get(
        rq.get("mult"), rng.integers(1, 2 ** (shift - 12) + 2, co))
    requant = ir.Requant(multiplier=mult, shift=shift, rounding=rq.get("rounding", "half_up"),
                         out_dtype=rq.get("out_dtype", "int8"), out_min=rq.get("out_min"), out_max=rq.get("out_max"))
    layers = {"relu": [conv, requant, ir.ReLU()], "": [conv, requant],
              "relu_requant_pool": [conv, ir.ReLU(), requant, ir.MaxPool2d(2)]}[post]
    m = ir.Model(ir.InputSpec((c, 7, 9)), layers)
    mp = emit.plan_model(m, "rv32emc")
    assert mp.choices[0].kernel == "rows_mul" and mp.choices[0].fuses == len(layers) - 1
    _compare(tmp_path, m, "rv32emc")
    src = (tmp_path / "conv.c").read_text()
    assert "#define BG_CR_UNROLL 1" in src and f"#define BG_CR_FOLD {int(folds)}" in src


def _int32_model(seed: int, spread: int) -> ir.Model:
    """A conv reading int32 inputs: a first conv's sums shifted to int32 values in about
    [-spread, spread]."""
    rng = np.random.default_rng(seed)
    first = ir.Conv2d(weight=rng.integers(-128, 128, (4, 2, 3, 3)), encoding="8bit", padding=1)
    t = ir.infer_type(first, ir.TensorType((2, 6, 7), "int8", -128, 127))
    shift = max(0, int(np.ceil(np.log2(t.amax / spread))))
    return ir.Model(ir.InputSpec((2, 6, 7)), [
        first, ir.Requant(multiplier=[1], shift=[shift], rounding="floor", out_dtype="int32"),
        _conv(rng, 4, 3, (3, 3), "8bit", padding=1), ir.ReLU()])


@pytest.mark.parametrize("target", ["cortex-m4", "rv32emc"])
def test_dense_conv_kernels_on_int32_inputs(tmp_path, target):
    """int32 inputs whose values fit int16 go through the int16 rows of the SMLAD kernel; wider
    ones through the mul kernel's int32 rows, and the SMLAD kernel says why not."""
    for spread, name in ((3000, "narrow"), (200_000, "wide")):
        m = _int32_model(seed=spread, spread=spread)
        mp = emit.plan_model(m, target)
        conv = len(m.layers) - 2
        assert mp.types[conv].dtype == "int32"
        wide_smlad = target == "cortex-m4" and spread > 32767
        assert mp.choices[conv].kernel == ("generic" if wide_smlad else DENSE[target])
        rep = _compare(tmp_path / name, m, target)
        if wide_smlad:
            (refusal,) = rep["layers"][conv]["refused"]
            assert refusal["kernel"] == "rows_smlad" and "int16" in refusal["reason"]


# (input C, H, W), kernel, padding, depthwise multiplier, output stage
PLANES = [
    ((3, 7, 9), (3, 3), (1, 1), 1, "requant_relu"),
    ((4, 5, 6), (3, 3), (2, 0), 1, "relu"),             # padding on one axis only
    ((2, 9, 5), (5, 5), (2, 2), 2, "requant_relu_pool"),  # 5x5, two outputs per channel, pooled
    ((5, 6, 13), (3, 3), (1, 2), 1, "relu"),            # int32 output, uneven padding
    ((4, 6, 7), (1, 1), (0, 0), 1, "relu"),             # no padding, an odd width: nothing staged
    ((3, 5, 7), (3, 3), (0, 0), 1, "requant_relu"),     # 3x3, no padding (on the input: offset)
]


PLANE_KERNELS = {"cortex-m4": ("dw3x3_smlad", "plane", "conv3x3"), "rv32emc": ("plane", "conv3x3"),
                 "rv32ec": ("dw_lut",)}


@pytest.mark.parametrize("target", PLANE_KERNELS)
@pytest.mark.parametrize("case", PLANES, ids=[f"{c[0]}-k{c[1]}-p{c[2]}-x{c[3]}-{c[4]}" for c in PLANES])
def test_padded_depthwise_conv_equals_golden(tmp_path, target, case):
    """Depthwise convs run on the plane kernels (on the Cortex-M4 3x3 ones with SMLAD where the
    inputs are signed, on RV32EC through tables), with padding each channel's plane staged into a
    zero-bordered copy (on the model input without padding, for the mul kernels: an offset copy);
    first on the model input, then on the planes of a previous layer."""
    shape, k, pad, mult, post = case
    c = shape[0]
    rng = np.random.default_rng(sum(shape) + k[0])
    dw = _conv(rng, c, c * mult, k, "8bit", padding=pad, groups=c)
    for where in ("first", "inside"):
        before = [] if where == "first" else [_conv(rng, c, c, (1, 1), "4bitsym", groups=c),
                                              *_post(rng, c, "requant_relu")]  # int8 planes
        m = ir.Model(ir.InputSpec(shape), [*before, dw, *_post(rng, c * mult, post)])
        kernel = emit.plan_model(m, target).choices[len(before)].kernel
        assert kernel.split("+")[0] in PLANE_KERNELS[target] and (kernel.endswith("+padded") == any(pad)), kernel
        if target == "cortex-m4" and k == (3, 3) and where == "first" and any(pad):  # signed inputs
            assert kernel.startswith("dw3x3_smlad")
        _compare(tmp_path / where, m, target)


def test_depthwise_without_padding_on_the_input_needs_one_plane_of_scratch(tmp_path):
    """Issue 11: a first-layer depthwise 3x3 without padding took an int32 copy of the whole
    input as scratch (131,072 B for 32x32x32) and did not fit the MAX78000 (`bitgen bench` then
    used the generic kernel set without a word); its offset copy is now one plane,
    on both kernel sets with a multiplier."""
    rng = np.random.default_rng(3)
    m = ir.Model(ir.InputSpec((32, 32, 32)), [_conv(rng, 32, 32, (3, 3), "8bit", groups=32), ir.ReLU()])
    for target in ("rv32emc", "cortex-m4"):
        choice = emit.plan_model(m, target).choices[0]
        assert choice.kernel == "conv3x3+offset" and choice.scratch == 4 * 32 * 32


def test_refused_kernels_are_reported(tmp_path, capsys):
    """A kernel set's faster kernel that does not take a layer says why, in NAME.json and in
    bitgen bench's report."""
    rng = np.random.default_rng(4)
    m = ir.Model(ir.InputSpec((3, 9, 9)), [_conv(rng, 3, 3, (3, 3), "8bit", groups=3, stride=2), ir.ReLU()])
    rep = emit.emit(m, tmp_path / "c", name="dw", kernels="rv32emc").report
    assert rep["layers"][0]["kernel"] == "generic/channelwise"
    assert rep["layers"][0]["refused"] == [{"kernel": "plane", "reason": "stride 2x2 (the plane kernels take 1)"}]
    path = tmp_path / "dw.pt"
    bitgen.save(m, path)
    assert main(["bench", "--board", "rv32emc-sim", str(path), "--random", "2", "--json", str(tmp_path / "b.json")]) == 0
    assert "layer 0: not plane: stride 2x2" in capsys.readouterr().out
    assert json.loads((tmp_path / "b.json").read_text())["layers"][0]["refused"][0]["kernel"] == "plane"


def test_max_arena_refuses_the_row_kernel_scratch(tmp_path):
    """Where the row buffers take the arena over --max-arena, the generic kernel computes the
    layer, and NAME.json says why."""
    rng = np.random.default_rng(6)
    m = ir.Model(ir.InputSpec((2, 4, 60)), [_conv(rng, 2, 2, (3, 3), "8bit", padding=1)])
    fast = emit.plan_model(m, "cortex-m4")
    assert fast.choices[0].kernel == "rows_smlad"
    limit = fast.memory.arena_bytes - 1
    rep = emit.emit(m, tmp_path, name="c", kernels="cortex-m4", max_arena=limit).report
    assert rep["arena_bytes"] <= limit and rep["layers"][0]["kernel"] == "generic"
    assert "--max-arena" in rep["layers"][0]["refused"][0]["reason"]


def _kernels(m: ir.Model, target: str) -> set[str]:
    return {c.kernel for c in emit.plan_model(m, target).choices}


@pytest.mark.parametrize("target, kernel", [
    ("cortex-m4", "rows_smlad"), ("rv32emc", "rows_mul"), ("rv32ec", "lut_conv"),
    ("cortex-m4", "dw3x3_smlad+padded"), ("rv32emc", "+padded"), ("rv32ec", "dw_lut")])
@pytest.mark.parametrize("kind", ["sequential", "graph"])
def test_random_models_reach_the_conv_kernels(target, kernel, kind):
    """The property tests' random models (tests/random_models.py) reach each new kernel (a
    padded plane conv: "+padded")."""
    strategy = models() if kind == "sequential" else graphs()
    find(strategy, lambda m: any(kernel in k for k in _kernels(m, target)),
         settings=settings(max_examples=2000, database=None, derandomize=True,
                           suppress_health_check=list(HealthCheck)))


@pytest.mark.parametrize("board, kernel, plane", [
    ("max78000-sim", "rows_smlad", "dw3x3_smlad+padded/channelwise"),
    ("rv32emc-sim", "rows_mul", "conv3x3+padded/channelwise"),
    ("rv32ec-sim", "lut_conv", "dw_lut+padded/channelwise")])
def test_conv_kernels_run_on_emulated_cores(tmp_path, board, kernel, plane):
    """The cross-compiled kernels (LDRD/SMLAD on the Cortex-M4; no multiply instruction on
    RV32EC, where the emulator stops on one), bit-exact: padding, stride 2, a fused pool, 1x1,
    a padded depthwise 3x3 on an odd width."""
    rng = np.random.default_rng(9)
    layers = [_conv(rng, 3, 8, (3, 3), "8bit", padding=1), *_post(rng, 8, "requant_relu_pool"),
              _conv(rng, 8, 6, (3, 3), "4bitsym", stride=2, padding=1), *_post(rng, 6, "requant_relu"),
              _conv(rng, 6, 5, (1, 1), "8bit"), *_post(rng, 5, "requant"),  # signed int8 for the depthwise
              _conv(rng, 5, 5, (3, 3), "8bit", padding=1, groups=5), *_post(rng, 5, "requant")]
    m = ir.Model(ir.InputSpec((3, 13, 11)), layers)
    path = tmp_path / "m.pt"
    bitgen.save(m, path)
    out = tmp_path / "bench.json"
    assert main(["bench", "--board", board, str(path), "--random", "4", "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["mismatches"] == 0 and rep["compared"] == 4
    assert [lay["kernel"] for lay in rep["layers"] if lay["op"] == "conv2d"] == [kernel] * 3 + [plane]
    assert rep["macs"] == sum(lay["macs"] for lay in rep["layers"])
    convs = [lay for lay in rep["layers"] if lay["op"] == "conv2d"]
    assert all(lay["instructions"] > 0 for lay in convs)  # a fused kernel's work counts at its conv
    assert all(lay["instructions"] == 0 for lay in rep["layers"] if lay["kernel"] == "fused")
