"""`bitgen import model.onnx`: the ONNX backend node tests of bitgen's integer subset, and QDQ models
quantized by onnxruntime's quantizer, against their expected outputs and against onnxruntime.

The node tests ship inside the onnx package as their generators (onnx/backend/test/case/node);
:func:`onnx.backend.test.case.node.collect_testcases` makes the same models and data the
``data/node`` folders of older wheels hold. Every input after the first (weights, scales, zero
points) becomes a constant, as bitgen imports models with constant weights."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import numpy_helper  # noqa: E402

from bitgen import check, golden, importers  # noqa: E402
from bitgen.cli import main  # noqa: E402

SUBSET = {"QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"}


def node_cases():
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        cases = collect_testcases(None)
    return [c for c in cases if c.model.graph.node and {n.op_type for n in c.model.graph.node} <= SUBSET]


CASES = {c.name: c for c in node_cases()}


def _with_constants(case, path):
    """The test model with every input but the first as an initializer holding its test value."""
    m = onnx.ModelProto()
    m.CopyFrom(case.model)
    inputs = case.data_sets[0][0]
    for vi, value in zip(list(m.graph.input)[1:], inputs[1:]):
        m.graph.initializer.append(numpy_helper.from_array(np.asarray(value), vi.name))
    del m.graph.input[1:]
    onnx.save(m, path)


def test_node_tests_of_the_integer_subset_exist():
    assert len(CASES) == 12 and {n.op_type for c in CASES.values() for n in c.model.graph.node} == SUBSET


@pytest.mark.parametrize("name", sorted(CASES))
def test_node_test(name, tmp_path):
    case = CASES[name]
    path = tmp_path / f"{name}.onnx"
    _with_constants(case, path)
    model = importers.read(path)
    inputs, outputs = case.data_sets[0]
    x = np.asarray(inputs[0])
    offset = 128 if x.dtype == np.uint8 else 0
    xq = (x.astype(np.int64) - offset).astype(np.int8).reshape((-1,) + model.input.shape)
    want = np.asarray(outputs[0]).astype(np.int64)
    got = golden.run(model, xq).astype(np.int64) + model.meta["onnx"].get("output_offset", 0)
    np.testing.assert_array_equal(got.reshape(want.shape), want)
    res = check.run_check(model, [check.InputSet("node", xq)])
    assert res.mismatches == 0


# ------------------------------------------------------------------ onnxruntime's quantizer
def _float_cnn(residual: bool):
    import torch

    torch.manual_seed(0)
    nn = torch.nn

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
            self.fc = nn.Linear(8 * 8 * 8, 10)

        def forward(self, x):
            y = nn.functional.max_pool2d(torch.relu(self.c1(x)), 2)
            return self.fc(torch.flatten(torch.relu(self.c2(y) + y), 1))

    if residual:
        return Residual().eval()
    m = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Flatten(), nn.Linear(16 * 16, 32), nn.ReLU(), nn.Linear(32, 10))
    for mod in m:
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 2)
    return m.eval()


def _qdq(tmp_path, residual: bool, activations: str, per_channel: bool):
    import torch
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    float_path, q_path = tmp_path / "float.onnx", tmp_path / "qdq.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_float_cnn(residual), torch.zeros(1, 1, 16, 16), float_path, dynamo=False,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    calib = np.random.default_rng(5).uniform(-1, 1, (64, 1, 1, 16, 16)).astype(np.float32)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib)

        def get_next(self):
            v = next(self.it, None)
            return None if v is None else {"x": v}

    import logging

    logging.disable(logging.WARNING)
    try:
        quantize_static(str(float_path), str(q_path), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=getattr(QuantType, activations), weight_type=QuantType.QInt8,
                        per_channel=per_channel)
    finally:
        logging.disable(logging.NOTSET)
    return q_path


def _against_onnxruntime(path, x):
    """(bitgen model, golden's outputs dequantized, onnxruntime's outputs) on float inputs x."""
    model = importers.read(path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = sess.run(None, {"x": x})[0]
    # the input quantized as ONNX's QuantizeLinear does it (ties to even; InputSpec rounds half up)
    xq = np.clip(np.rint(x / np.float32(model.input.scale)) + model.input.zero_point, -128, 127).astype(np.int8)
    info = model.meta["onnx"]
    q = golden.run(model, xq.reshape((len(x),) + model.input.shape))
    got = (q.astype(np.float32) + info["output_offset"] - info["output_zero_point"]) * np.float32(info["output_scale"])
    return model, got, want.reshape(got.shape), xq


@pytest.mark.parametrize("activations, per_channel", [("QInt8", False), ("QUInt8", True)])
def test_qdq_cnn_equals_onnxruntime(tmp_path, activations, per_channel):
    path = _qdq(tmp_path, False, activations, per_channel)
    x = np.random.default_rng(0).uniform(-1, 1, (1000, 1, 16, 16)).astype(np.float32)
    model, got, want, xq = _against_onnxruntime(path, x)
    np.testing.assert_array_equal(got, want)
    assert {op.kind for op in model.layers} >= {"conv2d", "requant", "maxpool2d", "linear"}
    assert any(op.kind == "requant" and op.rounding == "fp32" for op in model.layers)
    res = check.run_check(model, [check.InputSet("x", xq[:200].reshape((200,) + model.input.shape))])
    assert res.mismatches == 0


def test_qdq_residual_differs_from_onnxruntime_only_where_it_computes_in_float(tmp_path):
    """onnxruntime leaves a Conv whose input has two readers, and the Add after it, in float32
    (DequantizeLinear -> float op -> QuantizeLinear); bitgen computes them in integers. The
    outputs differ by at most one step, on few values (README: measured rates)."""
    path = _qdq(tmp_path, True, "QInt8", False)
    x = np.random.default_rng(0).uniform(-1, 1, (1000, 1, 16, 16)).astype(np.float32)
    model, got, want, xq = _against_onnxruntime(path, x)
    steps = np.abs(got - want) / model.meta["onnx"]["output_scale"]
    assert steps.max() <= 1.0001 and np.mean(steps > 0) < 0.01
    assert any(op.kind == "add" for op in model.layers)
    assert check.run_check(model, [check.InputSet("x", xq[:100].reshape((100,) + model.input.shape))]).mismatches == 0


def test_import_command_and_check_with_npz(tmp_path, capsys):
    path = _qdq(tmp_path, False, "QUInt8", False)
    out = tmp_path / "m.pt"
    assert main(["import", str(path), "-o", str(out)]) == 0
    assert "ONNX" in capsys.readouterr().out
    x = np.random.default_rng(1).uniform(-1, 1, (50, 1, 16, 16)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.zeros(50, dtype=np.int64))
    assert main(["check", str(out), "--dataset", "npz", "--data", str(tmp_path / "d.npz"), "--random", "100",
                 "--json", str(tmp_path / "check.json")]) == 0


def test_float_onnx_without_data_is_a_clear_error(tmp_path, capsys):
    import torch

    path = tmp_path / "float.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_float_cnn(False), torch.zeros(1, 1, 16, 16), path, dynamo=False, input_names=["x"])
    code = main(["import", str(path), "-o", str(tmp_path / "m.pt")])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and "--dataset" in err, err


@pytest.mark.parametrize("residual", [False, True])
def test_float_onnx_goes_through_post_training_quantization(tmp_path, capsys, residual):
    import torch

    path = tmp_path / "float.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_float_cnn(residual), torch.zeros(1, 1, 16, 16), path, dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    x = np.random.default_rng(2).uniform(-1, 1, (300, 1, 16, 16)).astype(np.float32)
    with torch.no_grad():
        y = _float_cnn(residual)(torch.from_numpy(x)).argmax(1).numpy()
    np.savez(tmp_path / "d.npz", x=x, y=y)
    out = tmp_path / "q.pt"
    assert main(["import", str(path), "--dataset", "npz", "--data", str(tmp_path / "d.npz"), "--weights", "8bit",
                 "-o", str(out), "--json", str(tmp_path / "r.json")]) == 0
    text = capsys.readouterr().out
    assert "accuracy  float 100.00 %" in text  # the labels are the float model's own classes
    import json

    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["accuracy"]["golden"] >= 0.9 and min(e["sqnr_db"] for e in rep["layers"]) > 20
    assert main(["check", str(out), "--dataset", "npz", "--data", str(tmp_path / "d.npz"), "--random", "100"]) == 0
