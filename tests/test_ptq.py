"""Post-training quantization of float torch.nn models (bitgen.ptq, `bitgen quantize`)."""
from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

import bitgen
from bitgen import check, datasets, golden, ptq
from bitgen.cli import main
from bitgen.ptq.trace import PTQError, trace

torch.set_num_threads(1)


def _one_line_error(capsys, argv, match):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and match in err, err


class Graphy(nn.Module):
    """Every structure PTQ knows: BN folding, fused ReLU / ReLU6, a residual +, torch.cat,
    pooling, a transposed conv, nearest upsampling, x.view and a global mean."""

    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.c2, self.b2 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.side = nn.Conv2d(8, 4, 1)
        self.up = nn.ConvTranspose2d(12, 6, 2, stride=2)
        self.bu = nn.BatchNorm2d(6)
        self.head = nn.Conv2d(6, 8, 3, stride=2)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = torch.relu(self.b1(self.c1(x)))
        y = nn.functional.max_pool2d(x, 2)
        z = torch.relu(self.b2(self.c2(y)) + y)
        z = torch.cat([z, nn.functional.relu6(self.side(y))], 1)
        z = nn.functional.avg_pool2d(z, 2)
        z = torch.relu(self.bu(self.up(z)))
        z = nn.functional.interpolate(z, scale_factor=2, mode="nearest")
        z = self.head(z).mean((2, 3))
        return self.fc(z.view(z.size(0), -1))


def _graphy() -> nn.Module:
    torch.manual_seed(0)
    m = Graphy()
    for bn in (m.b1, m.b2, m.bu):
        bn.running_mean.uniform_(-0.3, 0.3)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.2, 0.2)
    return m.eval()


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, 1, 16, 16))


def test_batchnorm_is_folded_into_the_layer_before_it():
    m = _graphy()
    g = trace(m, (1, 16, 16))
    c1 = g.nodes[0]
    assert c1.op == "conv" and c1.act == "relu" and c1.value == "relu"
    x = torch.from_numpy(_images(4))
    folded = torch.relu(nn.functional.conv2d(x, torch.from_numpy(c1.weight), torch.from_numpy(c1.bias), padding=1))
    with torch.no_grad():
        want = torch.relu(m.b1(m.c1(x.float()))).double()
    np.testing.assert_allclose(folded.numpy(), want.numpy(), atol=1e-5)


def test_every_supported_structure_quantizes_close_to_the_float_model():
    m, x = _graphy(), _images(300)
    q = bitgen.quantize(m, x[:200], weights="8bit")
    kinds = {op.kind for op in q.layers}
    assert {"conv2d", "requant", "maxpool2d", "add", "concat", "avgpool2d", "conv_transpose2d", "upsample",
            "flatten", "linear"} <= kinds
    assert not q.is_sequential and q.input.zero_point == 0
    rep = ptq.error_report(m, q, x[200:])
    assert [e.name for e in rep.layers][:4] == ["c1", "max_pool2d", "c2", "add"]
    assert min(e.sqnr_db for e in rep.layers) > 25, rep.lines()
    assert rep.agreement >= 0.95
    relu6 = next(op for op in q.layers if op.name == "side_requant")
    scale = next(e["scale"] for e in q.meta["ptq"]["tensors"] if e["name"] == "side")
    assert relu6.out_min == 0 and relu6.out_max == min(127, int(np.floor(6 / scale + 0.5)))
    q4 = bitgen.quantize(m, x[:200], weights="4bit", activations="mse")
    assert {int(v) for op in q4.layers if op.kind == "conv2d" for v in np.unique(op.weight)} <= set(range(-8, 8))
    assert min(e.sqnr_db for e in ptq.error_report(m, q4, x[200:]).layers) > 12


def test_quantized_graph_is_bit_exact_in_c():
    m, x = _graphy(), _images(64)
    q = bitgen.quantize(m, x, weights="4bitsym", activations="percentile")
    xq = q.input.quantize(x)
    res = check.run_check(q, [check.InputSet("dataset", xq), check.InputSet("extreme", check.extreme_inputs(q.input.shape))],
                          kernels="cortex-m4")
    assert res.mismatches == 0 and res.compared == len(xq) + 5


@pytest.mark.parametrize("layer, match", [
    (nn.Sigmoid(), "unsupported layer Sigmoid"),
    (nn.MaxPool2d(2, padding=1), "padding"),
    (nn.BatchNorm2d(1), "BatchNorm must directly follow"),
])
def test_unsupported_layers_are_named(layer, match):
    m = nn.Sequential(layer, nn.Flatten(), nn.Linear(64 if isinstance(layer, nn.MaxPool2d) else 256, 3))
    if isinstance(layer, nn.MaxPool2d):
        m = nn.Sequential(layer, nn.Flatten(), nn.Linear(81, 3))
    with pytest.raises(PTQError, match=match):
        bitgen.quantize(m, _images(8))


def test_bad_options_are_errors():
    m = nn.Sequential(nn.Flatten(), nn.Linear(256, 3))
    with pytest.raises(PTQError, match="unknown weight encoding"):
        bitgen.quantize(m, _images(8), weights="3bit")
    with pytest.raises(PTQError, match="activation range"):
        bitgen.quantize(m, _images(8), activations="kl")
    with pytest.raises(PTQError, match="NaN"):
        bitgen.quantize(m, np.full((2, 1, 16, 16), np.nan))


def _digits_cnn() -> nn.Sequential:
    """A float CNN trained for a few epochs on scikit-learn's 8x8 digits (seconds)."""
    torch.manual_seed(0)
    ds = datasets.load("digits", split="train")
    m = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    x, y = torch.from_numpy(ds.x.astype(np.float32)), torch.from_numpy(ds.y)
    for _ in range(6):
        for idx in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(m(x[idx]), y[idx]).backward()
            opt.step()
    return m.eval()


def test_quantize_command_with_a_pickled_module(tmp_path, capsys):
    path = tmp_path / "float.pt"
    torch.save(_digits_cnn(), path)
    _one_line_error(capsys, ["quantize", str(path), "--dataset", "digits", "-o", str(tmp_path / "q.pt")],
                    "--trust-pickle")
    out = tmp_path / "q.pt"
    assert main(["quantize", str(path), "--trust-pickle", "--dataset", "digits", "--weights", "8bit",
                 "-o", str(out), "--json", str(tmp_path / "q.json")]) == 0
    text = capsys.readouterr().out
    assert "accuracy  float" in text and "conv+relu" in text
    import json

    rep = json.loads((tmp_path / "q.json").read_text())
    assert rep["options"]["weights"] == "8bit" and len(rep["layers"]) == 7
    assert abs(rep["accuracy"]["float"] - rep["accuracy"]["golden"]) <= 0.02
    loaded = bitgen.load(out)  # an ordinary bitgen model file: weights_only
    assert loaded.torch_model is None and loaded.ir.meta["ptq"]["report"]["inputs"] == rep["inputs"]
    assert torch.load(out, weights_only=True)["format"] == "bitgen-model"
    assert main(["check", str(out), "--dataset", "digits", "--random", "200"]) == 0


def test_quantize_command_with_a_state_dict_and_arch(tmp_path, capsys, monkeypatch):
    pkg = tmp_path / "mynets"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "models.py").write_text(textwrap.dedent("""
        import torch
        class Net(torch.nn.Module):
            def __init__(self, width=6):
                super().__init__()
                self.conv = torch.nn.Conv2d(1, width, 3)
                self.fc = torch.nn.Linear(width * 36, 10)
            def forward(self, x):
                return self.fc(torch.flatten(torch.relu(self.conv(x)), 1))
    """))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    sys.modules.pop("mynets", None)
    sys.modules.pop("mynets.models", None)
    torch.manual_seed(0)
    sd = tmp_path / "net.pt"
    net = nn.Module()
    net.conv, net.fc = nn.Conv2d(1, 4, 3), nn.Linear(4 * 36, 10)
    torch.save(net.state_dict(), sd)
    _one_line_error(capsys, ["quantize", str(sd), "--dataset", "digits", "-o", "q.pt"], "--arch")
    _one_line_error(capsys, ["quantize", str(sd), "--arch", "mynets.models:Net", "--dataset", "digits", "-o", "q.pt"],
                    "does not fit mynets.models:Net")
    _one_line_error(capsys, ["quantize", str(sd), "--arch", "mynets.nothere:Net", "--dataset", "digits", "-o", "q.pt"],
                    "cannot import module")
    assert main(["quantize", str(sd), "--arch", "mynets.models:Net", "--arch-args", '{"width": 4}',
                 "--dataset", "digits", "--activations", "mse", "-o", "q.pt"]) == 0
    q = bitgen.load(tmp_path / "q.pt").ir
    assert q.layers[0].weight.shape == (4, 1, 3, 3) and q.meta["ptq"]["activations"] == "mse"
    # the quantized file is not a float model any more
    _one_line_error(capsys, ["quantize", "q.pt", "--dataset", "digits", "-o", "q2.pt"], "already a bitgen model")


def test_golden_of_the_quantized_model_runs_from_the_file_alone(tmp_path):
    m, x = _graphy(), _images(50)
    q = bitgen.quantize(m, x)
    bitgen.save(q, tmp_path / "q.pt")
    back = bitgen.load(tmp_path / "q.pt").ir
    xq = q.input.quantize(x)
    np.testing.assert_array_equal(golden.run(back, xq), golden.run(q, xq))
    assert back.digest() == q.digest()
