"""The golden model's integer semantics, checked against hand-computed values."""
import numpy as np
import pytest

from bitgen import golden, ir
from bitgen.ops.shiftnorm import dynamic_shift


def test_requant_rounds_half_up_and_clamps():
    x = np.array([[-6, -5, -3, -2, 2, 3, 5, 6, 10000, -10000]], dtype=np.int32)
    y = ir.Requant(multiplier=[1], shift=[2]).golden(x)
    # (x + 2) >> 2: -5 -> -1 (-1.25), -2 -> 0 (tie -0.5 rounds up), 2 -> 1 (tie 0.5), 5 -> 1 (1.25)
    assert y.tolist() == [[-1, -1, -1, 0, 1, 1, 1, 2, 127, -128]]
    y = ir.Requant(multiplier=[1], shift=[2], rounding="floor").golden(x)
    assert y.tolist() == [[-2, -2, -1, -1, 0, 0, 1, 1, 127, -128]]


def test_requant_multiplier_per_channel_and_shift_zero():
    x = np.array([[[7, -7]], [[7, -7]]], dtype=np.int32).reshape(1, 2, 1, 2)
    rq = ir.Requant(multiplier=[3, 5], shift=[0, 1], out_dtype="int32")
    # channel 0: 21, -21 (no rounding at shift 0); channel 1: (35 + 1) >> 1 = 18, (-35 + 1) >> 1 = -17
    assert rq.golden(x).reshape(-1).tolist() == [21, -21, 18, -17]


def test_shiftnorm_matches_its_definition():
    # max = 1000: 1000 >> 7 = 7 has 3 bits -> shift 3, rounding 4.
    x = np.array([[1000, 3, 4, -50, 0, 1023]], dtype=np.int32)
    assert dynamic_shift(x).tolist() == [3]
    y = ir.ShiftNorm().golden(x)
    assert y.tolist() == [[125, 0, 1, 0, 0, 127]]  # (1023 + 4) >> 3 = 128 -> clamped to 127
    # max < 128: shift 0, values pass through; all negative: shift 0 and everything 0.
    assert ir.ShiftNorm().golden(np.array([[5, 127, -1]])).tolist() == [[5, 127, 0]]
    assert ir.ShiftNorm().golden(np.array([[-500, -1]])).tolist() == [[0, 0]]


def test_shiftnorm_is_per_sample():
    x = np.array([[256, 128], [100, 50]], dtype=np.int32)  # shifts 2 and 0
    assert ir.ShiftNorm().golden(x).tolist() == [[64, 32], [100, 50]]


def test_avgpool_rounds_half_up_with_floor_division():
    x = np.array([-1, -2, 0, 0], dtype=np.int8).reshape(1, 1, 2, 2)  # mean -0.75 -> -1
    assert ir.AvgPool2d(2).golden(x).item() == -1
    x = np.array([-1, -1, 0, 0], dtype=np.int8).reshape(1, 1, 2, 2)  # mean -0.5 -> 0 (half up)
    assert ir.AvgPool2d(2).golden(x).item() == 0
    x = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0], dtype=np.int8).reshape(1, 1, 3, 3)  # 1/9 -> 0
    assert ir.AvgPool2d(3).golden(x).item() == 0


def test_conv2d_against_a_direct_loop():
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (2, 4, 7, 6)).astype(np.int8)
    w = rng.integers(-8, 8, (6, 2, 3, 2))
    layer = ir.Conv2d(weight=w, encoding="4bit", bias=rng.integers(-99, 99, 6), stride=(2, 1), padding=(1, 2), groups=2)
    y = layer.golden(x)
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (1, 1), (2, 2)))
    oh, ow = (7 + 2 - 3) // 2 + 1, (6 + 4 - 2) // 1 + 1
    assert y.shape == (2, 6, oh, ow)
    for n in range(2):
        for o in range(6):
            g = o // 3
            for i in range(oh):
                for j in range(ow):
                    patch = xp[n, 2 * g : 2 * g + 2, 2 * i : 2 * i + 3, j : j + 2]
                    assert y[n, o, i, j] == layer.bias[o] + (patch * w[o]).sum()


def test_argmax_returns_first_maximum():
    assert golden.argmax(np.array([[3, 7, 7, 1], [-5, -5, -9, -5]])).tolist() == [1, 0]


def test_accumulator_overflow_is_refused_at_validation():
    w = np.full((1, 140000), 127)  # 140000 * 127 * 128 > 2**31
    m = ir.Model(ir.InputSpec((140000,)), [ir.Linear(weight=w, encoding="8bit")])
    with pytest.raises(ir.IRError, match="overflow"):
        m.validate()
    # int32 inputs with a wide proved range overflow much sooner
    m = ir.Model(ir.InputSpec((64,)), [
        ir.Linear(weight=np.full((64, 64), 127), encoding="8bit"),
        ir.Linear(weight=np.full((2, 64), 127), encoding="8bit"),
    ])
    with pytest.raises(ir.IRError, match="layer 1 .*overflow"):
        m.validate()


@pytest.mark.parametrize("layers, msg", [
    ([ir.Linear(weight=np.ones((4, 5)), encoding="4bit")], "expects 5 inputs, previous layer gives 16"),
    ([ir.Conv2d(weight=np.ones((4, 1, 3, 3)), encoding="4bit")], "expects a \\(C, H, W\\) input"),
    ([ir.Linear(weight=np.full((4, 16), 2), encoding="4bitsym")], "not representable"),
    ([ir.ShiftNorm()], "expects an int32 input"),
    ([ir.Linear(weight=np.ones((4, 16)), encoding="9bit")], "unknown weight encoding"),
])
def test_malformed_models_get_one_line_errors(layers, msg):
    with pytest.raises(ir.IRError, match=msg) as e:
        ir.Model(ir.InputSpec((16,)), layers).validate()
    assert "\n" not in str(e.value) and str(e.value).startswith("layer 0")


def test_input_quantization_and_shape_check():
    spec = ir.InputSpec((2, 2), scale=0.5)
    q = spec.quantize(np.array([[0.25, -0.26, 100.0, -0.75]]))
    assert q.tolist() == [[[1, -1], [127, -1]]]  # floor(x/0.5 + 0.5): 0.5 -> 1, -0.52 -> -1, -1.5 -> -1
    with pytest.raises(ir.IRError, match="expects 4"):
        spec.quantize(np.zeros((3, 5)))


def test_ir_roundtrip_preserves_digest():
    rng = np.random.default_rng(2)
    m = ir.Model(ir.InputSpec((1, 5, 5)), [
        ir.Conv2d(weight=rng.choice([-1, 1], (3, 1, 3, 3)), encoding="binary", padding=1, bias=np.arange(3)),
        ir.Requant(multiplier=[3, 4, 5], shift=[2, 3, 4]), ir.MaxPool2d(2), ir.Flatten(),
        ir.Linear(weight=rng.integers(-8, 8, (4, 12)), encoding="4bit"), ir.ShiftNorm(),
    ], labels=list("abcd"))
    m2 = ir.Model.from_dict(m.to_dict())
    assert m2.digest() == m.digest()
    x = rng.integers(-128, 128, (10, 1, 5, 5)).astype(np.int8)
    assert np.array_equal(golden.run(m, x), golden.run(m2, x))
    m2.layers[0].weight[0, 0, 0, 0] *= -1
    assert m2.digest() != m.digest()
