"""bitgen.nn: quantizers, QAT layers, norms, and the central promise: the eval-mode PyTorch
model computes exactly what the golden model computes for the exported IR."""
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn as tnn

from bitgen import encodings, golden, ir
from bitgen.nn import export
from bitgen import nn as bnn
from bitgen.check import extreme_inputs

ENCODINGS = list(encodings.ENCODINGS)
USPS = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "usps"


def _cnn(enc: str, norm: str, per_channel: bool) -> tnn.Sequential:
    def n(c):
        return bnn.Requant(c if per_channel else None) if norm == "static" else bnn.ShiftNorm()

    m = tnn.Sequential(
        bnn.QuantConv2d(1, 6, 3, padding=1, encoding=enc, per_channel=per_channel, bias=True), n(6), tnn.ReLU(),
        tnn.MaxPool2d(2),
        bnn.QuantConv2d(6, 6, 3, stride=2, padding=1, groups=6, encoding=enc), n(6), tnn.ReLU(),
        bnn.AvgPool2d(2, stride=1),
        tnn.Flatten(),
        bnn.QuantLinear(54, 20, encoding=enc, bias=True, per_channel=per_channel), n(20), tnn.ReLU(),
        bnn.QuantLinear(20, 10, encoding=enc),
    )
    m.input_spec = ir.InputSpec((1, 16, 16))
    return m


def _trained_briefly(m: tnn.Module, x: torch.Tensor, steps: int = 3) -> tnn.Module:
    """A few optimizer steps so that weights, biases and norm ranges are not the initial ones."""
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    y = torch.arange(x.shape[0]) % 10
    m.train()
    for _ in range(steps):
        loss = tnn.functional.cross_entropy(m(x) * 1e-3, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return m.eval()


def _inputs(n_random: int = 300) -> np.ndarray:
    rng = np.random.default_rng(1)
    parts = [rng.integers(-128, 128, (n_random, 1, 16, 16)), extreme_inputs((1, 16, 16))]
    if (USPS / "zip.test.gz").exists():
        from bitgen import datasets

        ds = datasets.load("usps", USPS, "test")
        parts.append(ds.quantized()[:300])
    return np.concatenate(parts).astype(np.int8)


@pytest.mark.parametrize("norm", ["static", "shiftnorm"])
@pytest.mark.parametrize("enc", ENCODINGS)
def test_eval_model_equals_golden_bit_for_bit(enc, norm):
    torch.manual_seed(0)
    x = _inputs()
    m = _trained_briefly(_cnn(enc, norm, per_channel=(enc in ("4bitsym", "fp130"))),
                         torch.from_numpy(x[:64].astype(np.float32)))
    irm = export.to_ir(m)
    with torch.no_grad():
        got = m(torch.from_numpy(x.astype(np.float32)))
    want = golden.run(irm, x)
    assert got.dtype == torch.float64
    np.testing.assert_array_equal(got.numpy(), want)
    # and every hidden activation is int8 of the IR's kind (the comparison above is not vacuous)
    assert np.abs(want).max() > 0 and len(np.unique(golden.argmax(want))) > 1


def test_real_data_inputs_are_part_of_the_exactness_check():
    if not (USPS / "zip.test.gz").exists():
        pytest.skip("../shared/datasets/usps not present")
    assert _inputs(0).shape[0] == 300 + 5


@pytest.mark.parametrize("enc", ENCODINGS)
@pytest.mark.parametrize("scale", bnn.SCALES)
def test_quantizer_gives_legal_values_and_straight_through_gradient(enc, scale):
    torch.manual_seed(0)
    w = torch.randn(8, 40, requires_grad=True)
    q = bnn.WeightQuantizer(enc, scale, per_channel=True)
    wq, s = q(w)
    encodings.get(enc).encode(wq.detach().numpy().astype(np.int64))  # raises on illegal values
    assert torch.equal(wq.detach().to(torch.int64), q.integers(w))
    wq.sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), (1 / s).expand_as(w).numpy(), rtol=1e-6)


def test_absmax_scale_uses_the_largest_level_per_channel():
    w = torch.tensor([[0.1, -0.3, 0.05], [2.0, 1.0, -0.2]])
    q = bnn.WeightQuantizer("4bitsym", "absmax", per_channel=True).integers(w)
    assert q[0].abs().max() == 15 and q[1].abs().max() == 15
    q = bnn.WeightQuantizer("4bitsym", "absmax", per_channel=False).integers(w)
    assert q[0].abs().max() < 15 and q[1, 0] == 15


def test_level_mapping_rounds_to_nearest_level():
    v = torch.tensor([-20.0, -2.1, -0.3, 0.0, 0.4, 1.9, 2.1, 3.0, 100.0])
    assert bnn.to_levels(v, "4bitsym").tolist() == [-15, -3, -1, 1, 1, 1, 3, 3, 15]
    assert bnn.to_levels(v, "2bitsym").tolist() == [-3, -3, -1, 1, 1, 1, 3, 3, 3]
    assert bnn.to_levels(v, "ternary").tolist() == [-1, -1, 0, 0, 0, 1, 1, 1, 1]
    assert bnn.to_levels(v, "binary").tolist() == [-1, -1, -1, 1, 1, 1, 1, 1, 1]
    assert bnn.to_levels(v, "4bit").tolist() == [-8, -2, 0, 0, 0, 2, 2, 3, 7]
    assert bnn.to_levels(v, "fp130").tolist() == [-16, -2, -1, 1, 1, 2, 2, 4, 128]


@pytest.mark.parametrize("ratio", [1e-6, 0.00123, 0.37, 1.0, 3.7, 1234.5])
@pytest.mark.parametrize("bits", [0, 8, 15])
def test_multiplier_shift_approximates_the_ratio(ratio, bits):
    m, s = bnn.multiplier_shift(ratio, bits)
    assert m >= 1 and 0 <= s <= 62
    if bits == 0:  # a power of two, the nearest in the log domain
        assert m & (m - 1) == 0 and (m == 1 or s == 0)
        assert abs(np.log2(m / 2**s) - np.log2(ratio)) <= 0.5
    else:
        assert m < (1 << bits) or s == 0
        assert abs(m / 2**s - ratio) <= max(ratio * 2.0 ** -(bits - 1), 0.5)


@pytest.mark.parametrize("per_channel", [False, True])
def test_requant_eval_matches_golden_requant_on_extreme_accumulators(per_channel):
    r = bnn.Requant(4 if per_channel else None)
    r.set_range(torch.tensor([1e3, 77.0, 5e6, 1.0])[: 4 if per_channel else 1].double())
    acc = torch.tensor([[-2**31, -1, 0, 1], [2**31 - 1, 123456, -98765, 64]], dtype=torch.float64)
    acc = acc[:, :, None].expand(2, 4, 3).contiguous()
    mult, shift = r.multipliers_shifts()
    layer = ir.Requant(multiplier=mult, shift=shift)
    got = r.eval()(acc).numpy()
    np.testing.assert_array_equal(got, layer.golden(acc.numpy().astype(np.int64)))


def test_shiftnorm_eval_matches_golden_on_extreme_accumulators():
    rng = np.random.default_rng(0)
    acc = np.concatenate([
        rng.integers(-2**31, 2**31 - 2**24, (20, 30)),
        rng.integers(-300, 300, (20, 30)),
        np.full((1, 30), -5), np.zeros((1, 30)), np.full((1, 30), 2**31 - 2**24),
        np.array([[127] * 15 + [128] * 15]), np.array([[255] * 15 + [256] * 15]),
    ]).astype(np.int64)
    got = bnn.ShiftNorm().eval()(torch.from_numpy(acc).double()).numpy()
    np.testing.assert_array_equal(got, ir.ShiftNorm().golden(acc))


def test_shiftnorm_training_forward_equals_eval_forward():
    acc = torch.randint(-5000, 20000, (16, 32)).float()
    sn = bnn.ShiftNorm()
    np.testing.assert_array_equal(sn.train()(acc).numpy(), sn.eval()(acc).numpy())


def test_static_requant_learns_its_range_from_batches_and_calibration():
    r = bnn.Requant(None, statistic="absmax", momentum=0.5)
    r.train()
    r(torch.full((4, 3), 1000.0))
    assert float(r.running_range[0]) == 1000.0
    r(torch.full((4, 3), 2000.0))
    assert float(r.running_range[0]) == 1500.0
    m = tnn.Sequential(bnn.QuantLinear(8, 4), r)
    x = torch.randint(-128, 128, (50, 8)).float()
    bnn.calibrate(m, x)
    acc = m[0].eval()(x)
    assert float(r.running_range[0]) == pytest.approx(float(acc.abs().max()))
    assert float(m.eval()(x).abs().max()) == 127  # the largest accumulator maps to 127


@pytest.mark.parametrize("per_channel", [False, True])
def test_range_gradient_keeps_the_forward_and_differentiates_the_batch_range(per_channel):
    torch.manual_seed(0)
    acc = (torch.randn(16, 4, 5, 5) * 300 + 50).requires_grad_(True)
    g = torch.randn(16, 4, 5, 5)
    outs, grads = [], []
    for on in (False, True):
        r = bnn.Requant(4 if per_channel else None, momentum=0.1).train()
        r.running_range.fill_(900.0)
        r.calibrated.fill_(True)
        bnn.set_range_gradient(r, on)
        bnn.set_quantization(r, False)  # no rounding: the gradient is exact
        out = r(acc)
        (out * g).sum().backward()
        outs.append(out.detach())
        grads.append(acc.grad.clone())
        acc.grad = None
    assert torch.equal(outs[0], outs[1])  # the running range scales both, bit for bit
    assert not torch.allclose(grads[0], grads[1])
    # through the batch's rms the output is scale-free, so no gradient points along the sums
    along = (grads[1] * acc.detach()).sum(dim=(0, 2, 3)) if per_channel else (grads[1] * acc.detach()).sum()
    assert torch.allclose(along, torch.zeros_like(along), atol=1e-3 * float(grads[1].abs().sum()))
    assert float((grads[0] * acc.detach()).sum().abs()) > 1.0


def test_float_warmup_switch_turns_rounding_off_in_training_only():
    torch.manual_seed(0)
    m = _cnn("4bitsym", "static", False).train()
    x = torch.randint(-128, 128, (8, 1, 16, 16)).float()
    bnn.set_quantization(m, False)
    out = m(x)
    assert not torch.equal(out, torch.round(out))
    m.eval()
    assert torch.equal(m(x), torch.round(m(x)))  # eval always integer
    bnn.set_quantization(m, True)
    m.train()
    out = m(x)
    assert torch.equal(out, torch.round(out))


def test_spec_round_trip_is_plain_data_and_rebuilds_the_same_model(tmp_path):
    torch.manual_seed(0)
    m = _trained_briefly(_cnn("fp130", "static", True), torch.randint(-128, 128, (16, 1, 16, 16)).float())
    m.labels = list("abcdefghij")
    spec = bnn.to_spec(m)

    def plain(v):
        if isinstance(v, dict):
            return all(isinstance(k, str) and plain(x) for k, x in v.items())
        if isinstance(v, list):
            return all(plain(x) for x in v)
        return v is None or isinstance(v, (str, int, float, bool))

    assert plain(spec)
    torch.save({"spec": spec, "state": m.state_dict()}, tmp_path / "s.pt")
    loaded = torch.load(tmp_path / "s.pt", weights_only=True)
    m2 = bnn.from_spec(loaded["spec"])
    m2.load_state_dict(loaded["state"])
    m2.eval()
    x = torch.randint(-128, 128, (64, 1, 16, 16)).float()
    assert torch.equal(m(x), m2(x))
    assert m2.labels == list("abcdefghij") and m2.input_spec == m.input_spec
    assert export.to_ir(m2).digest() == export.to_ir(m).digest()


def test_from_spec_refuses_unknown_types():
    with pytest.raises(ValueError, match="unknown layer type 'os.system'"):
        bnn.from_spec({"format": "bitgen-nn", "version": 1, "module": {"type": "os.system", "args": {}}})
    with pytest.raises(ValueError, match="not a bitgen.nn"):
        bnn.from_spec({"module": {}})


def test_bias_is_an_integer_added_to_the_accumulator():
    lin = bnn.QuantLinear(4, 3, bias=True).eval()
    with torch.no_grad():
        lin.bias.copy_(torch.tensor([0.5, -0.25, 0.0]))
    b = lin.integer_bias()
    x = torch.zeros(1, 4)
    assert torch.equal(lin(x)[0], b.double())
    assert b[0] > 0 > b[1] and b[2] == 0


def test_bitnetmcu_style_cnn_with_32bit_activations_equals_golden():
    """Convolutions on int32 activations (ReLU, then >> 4, no clamp) and one ShiftNorm before
    the classifier layers, as BitNetMCU's CNNs: eval equals golden, also on every target's C."""
    torch.manual_seed(0)

    def act():
        return [tnn.ReLU(), bnn.Shift(4)]

    m = tnn.Sequential(
        bnn.QuantConv2d(1, 8, 3, encoding="8bit"), *act(),
        bnn.QuantConv2d(8, 8, 3, groups=8, encoding="8bit"), *act(), tnn.MaxPool2d(2),
        bnn.QuantConv2d(8, 8, 3, groups=8, encoding="8bit"), *act(), tnn.MaxPool2d(2),
        tnn.Flatten(), bnn.ShiftNorm(),
        bnn.QuantLinear(32, 16, encoding="2bitsym"), bnn.ShiftNorm(),
        bnn.QuantLinear(16, 10, encoding="4bitsym"),
    )
    m.input_spec = ir.InputSpec((1, 16, 16))
    x = _inputs()
    m = _trained_briefly(m, torch.from_numpy(x[:64].astype(np.float32)))
    irm = export.to_ir(m)
    kinds = [(layer.kind, getattr(layer, "out_dtype", None)) for layer in irm.layers]
    assert ("requant", "int32") in kinds and irm.validate()[5].dtype == "int32"
    with torch.no_grad():
        got = m(torch.from_numpy(x.astype(np.float32)))
    np.testing.assert_array_equal(got.numpy(), golden.run(irm, x))
