"""The binary ops of PixelRNN (Sign, Mul): hand-computed integer semantics (ties, per-channel
thresholds, rounding, saturation, the int32 proof), the C against them and against golden on
every kernel set, and the training side (eval equals golden, the tanh surrogate gradient)."""
import numpy as np
import pytest
import torch
from torch import nn as tnn

from bitgen import golden, ir, modelfile
from bitgen import nn as bnn
from bitgen.backends.c import emit, host, kernels
from bitgen.nn import export

I32 = ir.INT32


# ------------------------------------------------------------------ Sign: integer semantics
def test_sign_tie_gives_minus_one_and_never_zero():
    x = np.array([[-2, -1, 0, 1, 2]], dtype=np.int8)
    assert ir.Sign().golden(x).tolist() == [[-1, -1, -1, 1, 1]]  # 0 == T: -1
    assert ir.Sign(threshold=1).golden(x).tolist() == [[-1, -1, -1, -1, 1]]
    assert ir.Sign(threshold=-2).golden(x).tolist() == [[-1, 1, 1, 1, 1]]
    big = np.array([[I32[0], I32[1], 0]], dtype=np.int32)
    assert ir.Sign(threshold=I32[1]).golden(big).tolist() == [[-1, -1, -1]]  # nothing exceeds it
    assert ir.Sign(threshold=I32[0]).golden(big).tolist() == [[-1, 1, 1]]  # the minimum ties
    assert ir.Sign().golden(big).dtype == np.int8


def test_sign_per_channel_thresholds():
    x = np.array([[[[4, 5, 6]], [[4, 5, 6]]]], dtype=np.int8)  # (1, 2, 1, 3)
    assert ir.Sign(threshold=[4, 5]).golden(x).tolist() == [[[[-1, 1, 1]], [[-1, -1, 1]]]]
    v = np.array([[3, 3, 3], [-7, 0, 9]], dtype=np.int32)  # a vector: one threshold per element
    assert ir.Sign(threshold=[2, 3, 4]).golden(v).tolist() == [[1, -1, -1], [-1, -1, 1]]


def test_sign_type_interval_and_checks():
    t = ir.Sign(threshold=[1, 2]).infer(ir.TensorType((2, 3, 3), "int32", -500, 500))
    assert (t.shape, t.dtype, t.lo, t.hi) == ((2, 3, 3), "int8", -1, 1)
    assert ir.Sign().channel_local(ir.TensorType((2, 3, 3), "int8", -1, 1))
    assert not ir.Sign().channel_local(ir.TensorType((6,), "int8", -1, 1))
    for op, msg in [(ir.Sign(threshold=[0, 1, 2]), "1 or 2"), (ir.Sign(threshold=[2**31]), "int32 range"),
                    (ir.Sign(threshold=[-(2**31) - 1]), "int32 range")]:
        with pytest.raises(ir.IRError, match=msg) as e:
            op.infer(ir.TensorType((2, 3, 3), "int8", *ir.INT8))
        assert "\n" not in str(e.value)
    with pytest.raises(ir.IRError, match="integers"):
        ir.Sign(threshold=[0.5])


def test_binary_tensors_are_typed_as_such_and_only_where_no_zero_can_appear():
    B = ir.TensorType((2, 4, 4), "int8", -1, 1, binary=True)
    R = ir.TensorType((2, 4, 4), "int8", -1, 1)  # the same interval, but 0 is possible
    assert ir.Sign().infer(ir.TensorType((2, 4, 4), "int32", -9, 9)).binary
    assert ir.MaxPool2d(2).infer(B).binary and not ir.AvgPool2d(2).infer(B).binary
    assert ir.Flatten().infer(B).binary and ir.Upsample(2).infer(B).binary
    assert ir.Concat().infer(B, B).binary and not ir.Concat().infer(B, R).binary
    assert ir.Mul().infer(B, B).binary and not ir.Mul().infer(B, R).binary
    assert not ir.Mul(shift=1).infer(B, B).binary and not ir.Mul(out_min=0).infer(B, B).binary
    assert not ir.ReLU().infer(B).binary and not ir.Abs().infer(B).binary
    sign = ir.Node(ir.Sign(), ["input"], "s")
    for init, source, binary in [(1, "g", True), (-1, "g", True), (0, "g", False), (1, "r", False)]:
        nodes = [sign, ir.Node(ir.Mul(), ["s", "h"], "g"), ir.Node(ir.ReLU(), ["g"], "r")]
        m = ir.Model(ir.InputSpec((1, 3, 3)), nodes=nodes,
                     states=[ir.State("h", (1, 3, 3), "int8", source=source, init=init)])
        assert m.infer_types()[1]["h"].binary is binary, (init, source)


# ------------------------------------------------------------------- Mul: integer semantics
def test_mul_rounds_half_up_once_then_saturates():
    a = np.array([[3, -3, 5, -5, 100, 127, 1, -1]], dtype=np.int8)
    b = np.array([[1, 1, 1, 1, 2, -128, -1, -1]], dtype=np.int8)
    # exact products, saturated to int8: 200 -> 127, -16256 -> -128; ±1 times ±1 stays binary
    assert ir.Mul().golden(a, b).tolist() == [[3, -3, 5, -5, 127, -128, -1, 1]]
    # (p + 1) >> 1: 3 -> 2 (1.5 up), -3 -> -1 (-1.5 up), 5 -> 3, -5 -> -2, 200 -> 100, -16256 -> -8128
    assert ir.Mul(shift=1, out_dtype="int32").golden(a, b).tolist() == [[2, -1, 3, -2, 100, -8128, 0, 1]]
    assert ir.Mul(shift=1, out_min=-100, out_max=50).golden(a, b).tolist() == [[2, -1, 3, -2, 50, -100, 0, 1]]


def test_mul_interval_is_the_rounded_corners():
    a, b = ir.TensorType((3,), "int8", -1, 4), ir.TensorType((3,), "int8", -5, 3)
    t = ir.Mul(out_dtype="int32").infer(a, b)  # corners 5, -3, -20, 12
    assert (t.dtype, t.lo, t.hi) == ("int32", -20, 12)
    t = ir.Mul(shift=2).infer(a, b)  # (-20 + 2) >> 2 = -5 (-4.5 floors), (12 + 2) >> 2 = 3
    assert (t.lo, t.hi) == (-5, 3)
    s = ir.TensorType((3,), "int8", -1, 1)
    assert (ir.Mul().infer(s, s).lo, ir.Mul().infer(s, s).hi) == (-1, 1)


def test_mul_interval_holds_for_random_values():
    rng = np.random.default_rng(0)
    for _ in range(300):
        (alo, ahi), (blo, bhi) = np.sort(rng.integers(-3000, 3000, (2, 2)), axis=1)
        a, b = ir.TensorType((64,), "int32", int(alo), int(ahi)), ir.TensorType((64,), "int32", int(blo), int(bhi))
        op = ir.Mul(shift=int(rng.integers(0, 8)), out_dtype="int32")
        t = op.infer(a, b)
        xa = np.concatenate([[alo, ahi], rng.integers(alo, ahi + 1, 62)]).astype(np.int32)[None]
        xb = np.concatenate([[blo, bhi], rng.integers(blo, bhi + 1, 62)]).astype(np.int32)[None]
        y = op.golden(xa, xb)
        assert t.lo <= y.min() and y.max() <= t.hi
        # and tight: the corners are reached
        assert {t.lo, t.hi} <= set(op.golden(np.array([[alo, alo, ahi, ahi]], np.int32),
                                             np.array([[blo, bhi, blo, bhi]], np.int32)).ravel().tolist())


def test_mul_refuses_what_could_leave_int32_and_accepts_the_edge():
    one = ir.TensorType((2,), "int8", -1, 1)
    edge = ir.TensorType((2,), "int32", -(2**31 - 2), 2**31 - 2)
    ir.Mul(out_dtype="int32").infer(edge, one)  # (2^31 - 2) * 1 + 2^0 == 2^31 - 1 fits
    for a, b, shift in [(ir.TensorType((2,), "int32", 0, 2**31 - 1), one, 0),  # + 1 leaves int32
                        (edge, one, 1),  # + 2 leaves int32
                        (ir.TensorType((2,), "int32", -(2**16), 0), ir.TensorType((2,), "int32", 0, 2**15), 0)]:
        with pytest.raises(ir.IRError, match="overflow int32") as e:
            ir.Mul(shift=shift, out_dtype="int32").infer(a, b)
        assert "\n" not in str(e.value)
    for op, msg in [(ir.Mul(shift=31), "shift"), (ir.Mul(out_min=-200), "clamp range"), (ir.Mul(out_dtype="int16"), "out_dtype")]:
        with pytest.raises(ir.IRError, match=msg):
            op.infer(one, one)
    with pytest.raises(ir.IRError, match="shapes"):
        ir.Mul().infer(one, ir.TensorType((3,), "int8", -1, 1))


# ------------------------------------------------------------------------- in C, by hand
def _run_c(model, x, tmp_path, kernels_name="generic", sanitize=False):
    em = emit.emit(model, tmp_path / f"c-{kernels_name}", name="bin", kernels=kernels_name)
    host.compile_check(em)  # -std=c99 -Wall -Wextra -Werror -pedantic
    build = host.build_sanitized if sanitize else host.build
    hm = build(em, tmp_path / f"b-{kernels_name}")
    try:
        y, _, layers = hm.run(x, trace=True)
    finally:
        hm.close()
    return em, y, layers


def _sanitize() -> bool:
    return host.sanitizer_support() is None


def test_sign_in_c_ties_on_int8_and_int32_inputs(tmp_path):
    # s = Sign(x) on the int8 input; a = x + bias (int32), then Sign(a): ties on both
    nodes = [
        ir.Node(ir.Sign(threshold=[5, 4, -128, 127]), ["input"], "s"),
        ir.Node(ir.Linear(weight=np.eye(4, dtype=np.int64), encoding="8bit", bias=np.array([0, 1, 1000, -1000])),
                ["input"], "a"),
        ir.Node(ir.Sign(threshold=[5, 5, 872, -874]), ["a"], "sa"),
        ir.Node(ir.Mul(), ["s", "sa"], "y"),
    ]
    m = ir.Model(ir.InputSpec((4,)), nodes=nodes)
    x = np.array([[5, 5, -128, 127]], dtype=np.int8)  # a = [5, 6, 872, -873]
    _, y, layers = _run_c(m, x, tmp_path, sanitize=_sanitize())
    assert layers[0].reshape(-1).tolist() == [-1, 1, -1, -1]  # 5 == 5, 5 > 4, -128 == -128, 127 == 127
    assert layers[2].reshape(-1).tolist() == [-1, 1, -1, 1]  # 5 == 5, 6 > 5, 872 == 872, -873 > -874
    assert y.reshape(-1).tolist() == [1, 1, 1, -1]
    assert np.array_equal(y.reshape(1, 4), golden.run(m, x))


def test_mul_in_c_at_the_int32_edge(tmp_path):
    """|a| * |s| + 2^shift reaches 2^31 - 1, the most the proof admits; UBSan (when available)
    fails the run on any signed overflow in the C."""
    bias = 2**31 - 3 - 127  # a = x + bias reaches 2^31 - 3; |a| * 1 + 2^1 = 2^31 - 1
    nodes = [
        ir.Node(ir.Sign(), ["input"], "s"),
        ir.Node(ir.Linear(weight=np.eye(2, dtype=np.int64), encoding="8bit", bias=np.array([bias, bias])),
                ["input"], "a"),
        ir.Node(ir.Mul(shift=1, out_dtype="int32"), ["a", "s"], "y"),
    ]
    m = ir.Model(ir.InputSpec((2,)), nodes=nodes)
    x = np.array([[127, -128], [0, 1]], dtype=np.int8)
    _, y, _ = _run_c(m, x, tmp_path, sanitize=_sanitize())
    # 2147483645 * 1 -> (2147483645 + 1) >> 1 = 1073741823; (2147483390 * -1 + 1) >> 1 = -1073741695
    # 2147483518 * -1 (0 is no more than 0) -> -1073741759 (-1073741758.5 up); 2147483519 -> 1073741760
    assert y.reshape(2, 2).tolist() == [[1073741823, -1073741695], [-1073741759, 1073741760]]
    assert np.array_equal(y.reshape(2, 2), golden.run(m, x))
    nodes[2] = ir.Node(ir.Mul(shift=2, out_dtype="int32"), ["a", "s"], "y")
    with pytest.raises(ir.IRError, match="overflow int32"):
        ir.Model(ir.InputSpec((2,)), nodes=nodes).validate()


def _binary_conv(thresholds_in=(0, 3), thresholds_out=(0, 2, 4, 6), seed=0):
    """PixelRNN's first layer, small: Sign, a ±1 conv, ReLU, 2x2 max pool, Sign."""
    rng = np.random.default_rng(seed)
    return ir.Model(ir.InputSpec((2, 6, 6)), layers=[
        ir.Sign(threshold=list(thresholds_in)),
        ir.Conv2d(weight=rng.choice([-1, 1], (4, 2, 3, 3)), encoding="binary", padding=1),
        ir.ReLU(),
        ir.MaxPool2d((2, 2), (2, 2)),
        ir.Sign(threshold=list(thresholds_out)),
    ])


def test_binary_conv_golden_equals_an_independent_float_computation():
    m = _binary_conv()
    x = np.random.default_rng(1).integers(-128, 128, (8, 2, 6, 6)).astype(np.int8)
    w = torch.tensor(m.layers[1].weight, dtype=torch.float64)
    s = torch.where(torch.tensor(x, dtype=torch.float64) > torch.tensor([0.0, 3.0]).reshape(1, 2, 1, 1), 1.0, -1.0).double()
    h = torch.nn.functional.max_pool2d(torch.relu(torch.nn.functional.conv2d(s, w, padding=1)), 2)
    want = torch.where(h > torch.tensor([0.0, 2.0, 4.0, 6.0]).reshape(1, 4, 1, 1), 1, -1).numpy()
    got = golden.run(m, x)
    assert got.dtype == np.int8 and np.array_equal(got, want)
    assert set(np.unique(got)) == {-1, 1}


@pytest.mark.parametrize("target", kernels.TARGETS)
def test_binary_conv_network_in_c_equals_golden(tmp_path, target):
    m = _binary_conv()
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.integers(-128, 128, (30, 2, 6, 6)), rng.integers(-2, 5, (30, 2, 6, 6)),
                        np.full((1, 2, 6, 6), -128), np.full((1, 2, 6, 6), 127)]).astype(np.int8)
    want = golden.run(m, x, all_layers=True)
    em, y, layers = _run_c(m, x, tmp_path, target)
    for i, (w, g) in enumerate(zip(want, layers)):
        assert g is None or np.array_equal(w.reshape(g.shape), g), f"layer {i} differs"
    assert np.array_equal(y.reshape(want[-1].shape), want[-1])
    # the second Sign ran per channel plane inside the conv's channel-by-channel step, with its
    # own channel's threshold (they differ per channel, so a wrong index would show above)
    kinds = {lay["op"]: lay["kernel"] for lay in em.report["layers"]}
    if kinds["conv2d"].endswith("/channelwise"):
        assert em.report["layers"][4]["kernel"].endswith("/channelwise")


def test_binary_conv_sign_per_channel_plane_is_exercised(tmp_path):
    """At least one kernel set runs the last Sign per channel (else the test above proves less)."""
    ran = set()
    for target in kernels.TARGETS:
        em = emit.emit(_binary_conv(), tmp_path / target, name="bin", kernels=target)
        ran.add(em.report["layers"][4]["kernel"])
    assert "generic/channelwise" in ran


# ------------------------------------------------------------------------- training side
class Gate(tnn.Module):
    """A binary conv layer then PixelRNN's gate h = f * h' (traced: ``a * b`` and bnn.Mul)."""

    def __init__(self):
        super().__init__()
        self.sign_in = bnn.Sign(threshold=[0, 3])
        self.conv = bnn.QuantConv2d(2, 4, 3, padding=1, encoding="binary")
        self.relu, self.pool = tnn.ReLU(), tnn.MaxPool2d(2)
        self.f = bnn.Sign(threshold=[0, 2, 4, 6])
        self.h = bnn.Sign(threshold=1)
        self.mul = bnn.Mul()

    def forward(self, x):
        y = self.pool(self.relu(self.conv(self.sign_in(x))))
        return self.mul(self.f(y), self.h(y)) * self.f(y)


def test_eval_torch_equals_golden_of_the_exported_ir(tmp_path):
    torch.manual_seed(0)
    seq = tnn.Sequential(bnn.Sign(threshold=[0, 3]), bnn.QuantConv2d(2, 4, 3, padding=1, encoding="binary"),
                         tnn.ReLU(), tnn.MaxPool2d(2), bnn.Sign(threshold=[0, 2, 4, 6])).eval()
    seq.input_spec = ir.InputSpec((2, 6, 6))
    x = torch.randint(-4, 8, (40, 2, 6, 6)).double()
    irm = export.to_ir(seq)
    assert [layer.kind for layer in irm.layers] == ["sign", "conv2d", "relu", "maxpool2d", "sign"]
    got = golden.run(irm, x.numpy().astype(np.int8))
    assert np.array_equal(seq(x).numpy(), got)
    modelfile.save(seq, tmp_path / "seq.pt")  # thresholds are plain data and a buffer
    back = modelfile.load(tmp_path / "seq.pt")
    assert back.ir.digest() == irm.digest()
    assert np.array_equal(back.torch_model(x).detach().numpy(), got)

    g = Gate().eval()
    g.input_spec = ir.InputSpec((2, 6, 6))
    irg = export.to_ir(g)
    kinds = [n.op.kind for n in irg.nodes]
    assert kinds.count("mul") == 2 and kinds.count("sign") == 4
    assert np.array_equal(g(x).numpy(), golden.run(irg, x.numpy().astype(np.int8)))


def test_set_threshold_and_checks():
    s = bnn.Sign(threshold=0).eval()
    x = torch.tensor([[-1.0, 0.0, 1.0, 2.0]])
    assert s(x).tolist() == [[-1, -1, 1, 1]]
    s.set_threshold(1)
    assert s(x).tolist() == [[-1, -1, -1, 1]]
    assert export.to_ir(tnn.Sequential(s), input=ir.InputSpec((4,))).layers[0].threshold.tolist() == [1]
    for bad in (0.5, 2**31, []):
        with pytest.raises(ValueError):
            bnn.Sign(threshold=bad)


def test_sign_surrogate_gradient_is_pixelrnns_tanh():
    x = torch.tensor([[-1.5, -0.25, 0.0, 0.25, 1.0, 3.0]], dtype=torch.float64, requires_grad=True)
    for m, t in ((2.0, 0), (3.0, 1)):
        s = bnn.Sign(threshold=t, m=m).train()
        y = s(x)
        assert y.tolist() == [[1.0 if v > t else -1.0 for v in x[0].tolist()]]  # forward: exactly ±1
        (g,) = torch.autograd.grad(y.sum(), x)
        want = m * (1 - torch.tanh(m * (x.detach() - t)) ** 2)
        assert torch.allclose(g, want, rtol=0, atol=1e-12)  # float64: 1 - tanh^2 cancels, so absolute
    # per channel: each channel's own threshold in the gradient
    s = bnn.Sign(threshold=[0, 2]).train()
    xc = torch.zeros(1, 2, 1, 1, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(s(xc).sum(), xc)
    assert torch.allclose(g.reshape(-1), torch.tensor([2.0, 2 * (1 - np.tanh(-4.0) ** 2)], dtype=torch.float64),
                          rtol=0, atol=1e-12)


def test_mul_module_rounds_like_golden_and_passes_gradients():
    a = torch.tensor([[3.0, -3.0, 5.0, 100.0, 127.0]])
    b = torch.tensor([[1.0, 1.0, 1.0, 2.0, -128.0]])
    mod = bnn.Mul(shift=1).eval()
    want = ir.Mul(shift=1).golden(a.numpy().astype(np.int8), b.numpy().astype(np.int8))
    assert mod(a, b).tolist() == want.tolist() == [[2, -1, 3, 100, -128]]
    a.requires_grad_(True)
    (g,) = torch.autograd.grad(bnn.Mul(shift=1).train()(a, b).sum(), a)
    assert g.tolist() == [[0.5, 0.5, 0.5, 1.0, 0.0]]  # b / 2, zero where it saturates


def test_torch_sign_is_not_exported_as_a_binary_sign():
    class Ternary(tnn.Module):
        def __init__(self):
            super().__init__()
            self.relu = tnn.ReLU()  # a module with children is traced

        def forward(self, x):
            return torch.sign(self.relu(x))

    with pytest.raises(export.ExportError, match="ternary") as e:
        export.to_ir(Ternary(), input=ir.InputSpec((4,)))
    assert "\n" not in str(e.value)
