"""The graph IR and its ops: validation over named tensors, the file format, and each new op's
integer semantics against hand-computed values or PyTorch."""
import numpy as np
import pytest
import torch

from bitgen import golden, ir, modelfile
from bitgen.backends.c import emit, host


def _residual(ch=2, hw=4, seed=0):
    """input -> conv -> relu -> conv, + input (a residual block), then flatten and linear."""
    rng = np.random.default_rng(seed)
    conv = lambda: ir.Conv2d(weight=rng.integers(-3, 4, (ch, ch, 3, 3)), encoding="8bit", padding=1)  # noqa: E731
    nodes = [
        ir.Node(conv(), ["input"], "c1"),
        ir.Node(ir.Requant(multiplier=[1], shift=[4], out_min=0), ["c1"], "r1"),
        ir.Node(conv(), ["r1"], "c2"),
        ir.Node(ir.Requant(multiplier=[1], shift=[4]), ["c2"], "r2"),
        ir.Node(ir.Add(), ["r2", "input"], "sum"),
        ir.Node(ir.Flatten(), ["sum"], "flat"),
        ir.Node(ir.Linear(weight=rng.integers(-1, 2, (3, ch * hw * hw)), encoding="ternary"), ["flat"], "logits"),
    ]
    return ir.Model(ir.InputSpec((ch, hw, hw)), nodes=nodes)


def test_graph_golden_is_the_composition_of_its_ops():
    m = _residual()
    x = np.random.default_rng(1).integers(-128, 128, (5, 2, 4, 4)).astype(np.int8)
    outs = golden.run(m, x, all_layers=True)
    r2 = outs[3]
    expect_sum = np.clip(r2.astype(np.int64) + x, -128, 127)
    assert np.array_equal(outs[4], expect_sum)
    assert np.array_equal(outs[-1], golden.run(m, x))


@pytest.mark.parametrize("nodes, msg", [
    ([ir.Node(ir.ReLU(), ["nothing"], "a")], "reads tensor 'nothing' before"),
    ([ir.Node(ir.ReLU(), ["input"], "a"), ir.Node(ir.ReLU(), ["input"], "a")], "already exists"),
    ([ir.Node(ir.ReLU(), ["input"], "a"), ir.Node(ir.ReLU(), ["input"], "b")], "'a' is never read"),
    ([ir.Node(ir.Add(), ["input"], "a")], "takes 2 input"),
    ([ir.Node(ir.ReLU(), ["input", "input"], "a")], "takes 1 input"),
    ([ir.Node(ir.Flatten(), ["input"], "f"), ir.Node(ir.Add(), ["f", "input"], "a")], "shapes"),
])
def test_graph_validation_errors_are_one_line(nodes, msg):
    with pytest.raises(ir.IRError, match=msg) as e:
        ir.Model(ir.InputSpec((1, 2, 2)), nodes=nodes).validate()
    assert "\n" not in str(e.value)


def test_cycles_are_impossible_a_node_cannot_read_a_later_tensor():
    nodes = [ir.Node(ir.Add(), ["input", "b"], "a"), ir.Node(ir.ReLU(), ["a"], "b")]
    with pytest.raises(ir.IRError, match="reads tensor 'b' before"):
        ir.Model(ir.InputSpec((4,)), nodes=nodes).validate()


def test_sequential_models_keep_ir_version_1_and_their_identity(tmp_path):
    seq = ir.Model(ir.InputSpec((4,)), layers=[ir.ReLU(), ir.Abs()])
    d = seq.to_dict()
    assert d["version"] == 1 and "layers" in d and "nodes" not in d
    same = ir.Model(ir.InputSpec((4,)), nodes=[ir.Node(ir.ReLU(), ["input"], "x"), ir.Node(ir.Abs(), ["x"], "y")])
    assert same.is_sequential and same.digest() == seq.digest()


def test_graph_round_trips_through_a_model_file(tmp_path):
    m = _residual()
    d = m.to_dict()
    assert d["version"] == 2 and d["nodes"][4]["inputs"] == ["r2", "input"]
    modelfile.save(m, tmp_path / "g.pt")
    back = modelfile.load(tmp_path / "g.pt").ir
    assert back.digest() == m.digest() and [n.inputs for n in back.nodes] == [n.inputs for n in m.nodes]
    x = np.random.default_rng(2).integers(-128, 128, (4, 2, 4, 4)).astype(np.int8)
    assert np.array_equal(golden.run(back, x), golden.run(m, x))


def test_add_and_sub_round_half_up_once_then_saturate():
    a = np.array([[100, -100, 3, -3, 1]], dtype=np.int8)
    b = np.array([[100, -100, 0, 0, 0]], dtype=np.int8)
    assert ir.Add().golden(a, b).tolist() == [[127, -128, 3, -3, 1]]
    # (3 * a + b + 2) >> 2: 3 -> (9 + 2) >> 2 = 2; -3 -> (-9 + 2) >> 2 = -2 (-1.75); 1 -> (3 + 2) >> 2 = 1
    assert ir.Add(scale_a=3, shift=2).golden(a, b).tolist() == [[100, -100, 2, -2, 1]]
    assert ir.Sub(out_dtype="int32").golden(a, b).tolist() == [[0, 0, 3, -3, 1]]
    assert ir.Sub().golden(b, a * 0 + 127).tolist() == [[-27, -128, -127, -127, -127]]


def test_add_refuses_an_int32_overflow():
    t = ir.TensorType((4,), "int32", -(2**30), 2**30)
    with pytest.raises(ir.IRError, match="overflow"):
        ir.Add(out_dtype="int32").infer(t, t)


def test_abs_saturates():
    assert ir.Abs().golden(np.array([[-128, -127, 0, 5]], dtype=np.int8)).tolist() == [[127, 127, 0, 5]]
    x = np.array([[-(2**31), 7]], dtype=np.int32)
    assert ir.Abs().golden(x).tolist() == [[2**31 - 1, 7]]
    t = ir.Abs().infer(ir.TensorType((2,), "int8", -128, -3))
    assert (t.lo, t.hi) == (3, 127)


def test_concat_and_upsample():
    a = np.arange(4, dtype=np.int8).reshape(1, 1, 2, 2)
    b = -a
    assert ir.Concat().golden(a, b).reshape(-1).tolist() == [0, 1, 2, 3, 0, -1, -2, -3]
    up = ir.Upsample(factor=(2, 3)).golden(a)
    assert up.shape == (1, 1, 4, 6) and up[0, 0, 3].tolist() == [2, 2, 2, 3, 3, 3]
    with pytest.raises(ir.IRError, match="requantize"):
        ir.Concat().infer(ir.TensorType((2,), "int8", 0, 1), ir.TensorType((2,), "int32", 0, 1))


def test_conv_transpose2d_equals_pytorch_and_its_bounds_hold():
    rng = np.random.default_rng(0)
    tried = 0
    while tried < 150:
        c = int(rng.integers(1, 5))
        g = int(rng.choice([d for d in range(1, c + 1) if c % d == 0]))
        cog, (kh, kw), (sh, sw) = int(rng.integers(1, 4)), rng.integers(1, 5, 2), rng.integers(1, 4, 2)
        ph, pw, oph, opw = rng.integers(0, kh), rng.integers(0, kw), rng.integers(0, sh), rng.integers(0, sw)
        h, w = rng.integers(1, 6, 2)
        wt = rng.integers(-8, 8, (c, cog, kh, kw))
        b = rng.integers(-100, 100, cog * g)
        op = ir.ConvTranspose2d(weight=wt, encoding="4bit", bias=b, stride=(sh, sw), padding=(ph, pw),
                                output_padding=(oph, opw), groups=g)
        try:
            t_out = op.infer(ir.TensorType((c, h, w), "int8", -128, 127))
        except ir.IRError:
            continue
        tried += 1
        x = rng.integers(-128, 128, (3, c, h, w))
        y = op.golden(x)
        ref = torch.nn.functional.conv_transpose2d(
            torch.tensor(x, dtype=torch.float64), torch.tensor(wt, dtype=torch.float64),
            torch.tensor(b, dtype=torch.float64), stride=(int(sh), int(sw)), padding=(int(ph), int(pw)),
            output_padding=(int(oph), int(opw)), groups=g).numpy().astype(np.int64)
        assert y.shape[1:] == t_out.shape and np.array_equal(y, ref)
        assert t_out.lo <= y.min() and y.max() <= t_out.hi
        # MACs: the products that land inside the output, counted one by one
        inside = sum(1 for i in range(h) for u in range(kh) if 0 <= i * sh + u - ph < t_out.shape[1]) * \
            sum(1 for j in range(w) for v in range(kw) if 0 <= j * sw + v - pw < t_out.shape[2])
        assert op.macs(t_out) == cog * g * (c // g) * inside


@pytest.mark.parametrize("kernels", ["generic", "rv32ec", "rv32emc", "cortex-m4"])
def test_residual_graph_in_c_equals_golden(tmp_path, kernels):
    m = _residual(ch=3, hw=5, seed=4)
    em = emit.emit(m, tmp_path / "c", name="res", kernels=kernels)
    x = np.concatenate([np.random.default_rng(3).integers(-128, 128, (20, 3, 5, 5)).astype(np.int8),
                        np.full((1, 3, 5, 5), -128, np.int8), np.full((1, 3, 5, 5), 127, np.int8)])
    hm = host.build(em, tmp_path / "b")
    try:
        y, _, layers = hm.run(x, trace=True)
    finally:
        hm.close()
    want = golden.run(m, x, all_layers=True)
    assert np.array_equal(y.reshape(want[-1].shape), want[-1])
    for w, g in zip(want, layers):
        assert g is None or np.array_equal(w.reshape(g.shape), g)
    # the input is read again by the Add: its bytes are the caller's, and c1's output must not
    # have been placed where r2 still needs to be read
    assert em.report["arena_bytes"] > 0


# ------------------------------------------------------------------------------------ state
def _leaky(init=7):
    """h_t = round((x_t + h_{t-1}) / 2): a running average of the frames; y_t = W h_t."""
    rng = np.random.default_rng(0)
    nodes = [ir.Node(ir.Add(shift=1), ["input", "h"], "h_new"),
             ir.Node(ir.Linear(weight=rng.integers(-3, 4, (3, 4)), encoding="8bit"), ["h_new"], "y")]
    return ir.Model(ir.InputSpec((4,)), nodes=nodes, states=[ir.State("h", (4,), "int8", "h_new", init=init)])


def test_state_carries_a_value_from_frame_to_frame():
    m = _leaky(init=7)
    x = np.array([[[1, 2, 3, -4], [9, 9, 9, 9], [0, 0, 0, 0]]], dtype=np.int8)  # one sequence, 3 frames
    h = golden.run_sequence(m, x, all_layers=True)[0]
    # (x + h + 1) >> 1 from h = 7: (1+7+1)>>1 = 4, (2+7+1)>>1 = 5, (3+7+1)>>1 = 5, (-4+7+1)>>1 = 2
    assert h[0, 0].tolist() == [4, 5, 5, 2]
    assert h[0, 1].tolist() == [7, 7, 7, 6] and h[0, 2].tolist() == [4, 4, 4, 3]
    # golden.run treats each sample as the first frame of a sequence
    assert np.array_equal(golden.run(m, x[:, 0]), golden.run_sequence(m, x[:, :1])[:, 0])
    _, states = m.infer_types()
    # the fixed point of the recurrence: lo = (-128 + lo + 1) >> 1 settles at -127, hi at 127
    assert (states["h"].lo, states["h"].hi) == (-127, 127)


@pytest.mark.parametrize("state, msg", [
    (ir.State("h", (4,), "int8", "nowhere"), "no node writes its source"),
    (ir.State("h", (4,), "int32", "h_new"), "is int32 \\(4,\\), its source 'h_new' is int8 \\(4,\\)"),
    (ir.State("input", (4,), "int8", "h_new"), "named like another tensor"),
    (ir.State("h", (4,), "int8", "h_new", init=300), "initial value 300 is outside int8"),
    (ir.State("h", (4,), "int16", "h_new"), "dtype must be int8 or int32"),
])
def test_state_errors_are_one_line(state, msg):
    m = _leaky()
    m.states = [state]
    with pytest.raises(ir.IRError, match=msg) as e:
        m.validate()
    assert "\n" not in str(e.value)


def test_a_model_with_state_round_trips_and_is_not_sequential(tmp_path):
    m = _leaky(init=-3)
    assert not m.is_sequential and m.to_dict()["states"][0] == {
        "name": "h", "shape": [4], "dtype": "int8", "source": "h_new", "init": -3}
    modelfile.save(m, tmp_path / "s.pt")
    back = modelfile.load(tmp_path / "s.pt").ir
    assert back.digest() == m.digest() and back.states[0].init == -3


@pytest.mark.parametrize("kernels", ["generic", "rv32ec", "cortex-m4"])
def test_state_in_c_every_frame_equals_golden(tmp_path, kernels):
    m = _leaky()
    em = emit.emit(m, tmp_path / "c", name="leaky", kernels=kernels)
    assert "void leaky_reset(void);" in (tmp_path / "c" / "leaky.h").read_text()
    x = np.random.default_rng(5).integers(-128, 128, (6, 10, 4)).astype(np.int8)
    want = golden.run_sequence(m, x)
    hm = host.build(em, tmp_path / "b")
    try:
        assert np.array_equal(hm.run_sequence(x)[0].reshape(want.shape), want)
        # each sequence starts from the initial state, whatever ran before
        assert np.array_equal(hm.run_sequence(x[::-1])[0].reshape(want.shape), want[::-1])
    finally:
        hm.close()


def test_check_compares_every_frame_and_names_the_one_that_differs(tmp_path):
    from bitgen import check

    m = _leaky()
    em = emit.emit(m, tmp_path / "c", name="leaky")
    hm = host.build(em, tmp_path / "b")

    class OneFrameWrong:  # frame 3 of sequence 1 off by one: check must say where
        def run_sequence(self, x, trace=False):
            y, pred, layers = hm.run_sequence(x, trace=trace)
            if x.shape[0] > 1:
                y = y.copy()
                y[1, 3, 0] += 1
            return y, pred, layers

    x = check.as_sequences(check.random_inputs((4,), 64, seed=1), 8)
    try:
        res, _, _ = check.compare(m, hm, check.InputSet("random", x, sequence=True))
        assert res.compared == 64 and res.mismatches == 0
        res, _, _ = check.compare(m, OneFrameWrong(), check.InputSet("random", x, sequence=True))
        assert res.mismatches == 1 and res.first_mismatch["input_index"] == 1 and res.first_mismatch["frame"] == 3
    finally:
        hm.close()
