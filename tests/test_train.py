"""Architecture strings, the QAT loop and the `bitgen train` command."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import bitgen
from bitgen import datasets, golden
from bitgen.nn import export
from bitgen import nn as bnn
from bitgen import train
from bitgen.cli import main

USPS = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "usps"


def _kinds(model):
    return [layer.kind for layer in export.to_ir(model, input=bitgen.ir.InputSpec((1, 16, 16))).layers]


def test_mlp_arch_string():
    m = train.model_from_arch("mlp:64,32", (1, 16, 16), 10)
    assert _kinds(m) == ["flatten", "linear", "requant", "linear", "requant", "linear"]
    assert m.fc1.in_features == 256 and m.fc2.out_features == 32 and m.classifier.out_features == 10
    m = train.model_from_arch("mlp:64,64,64", (1, 16, 16), 10, train.LayerOptions(norm="shiftnorm", weights="fp130"))
    assert _kinds(m) == ["flatten", "linear", "shiftnorm"] * 1 + ["linear", "shiftnorm"] * 2 + ["linear"]
    assert {mod.encoding for mod in m.modules() if isinstance(mod, bnn.QuantLinear)} == {"fp130"}


def test_cnn_arch_string_with_depthwise_pointwise_and_pools():
    m = train.model_from_arch("cnn:c8,p2,dw,pw12,a2,c4s2k5,fc16", (1, 16, 16), 10)
    irm = export.to_ir(m, input=bitgen.ir.InputSpec((1, 16, 16)))
    convs = [layer for layer in irm.layers if layer.kind == "conv2d"]
    assert [c.weight.shape for c in convs] == [(8, 1, 3, 3), (8, 1, 3, 3), (12, 8, 1, 1), (4, 12, 5, 5)]
    assert convs[1].groups == 8 and convs[3].stride == (2, 2) and convs[3].padding == (2, 2)
    types = [t.shape for t in irm.validate()]
    assert types[-1] == (10,)
    assert [layer.kind for layer in irm.layers].count("maxpool2d") == 1
    assert [layer.kind for layer in irm.layers].count("avgpool2d") == 1


@pytest.mark.parametrize("arch, match", [
    ("rnn:8", "expected mlp"),
    ("mlp:64,x", "positive integers"),
    ("cnn:c8,q3", "unknown layer 'q3'"),
    ("cnn:p2,p2,p2,p2,p2", "pool 2 does not fit"),
    ("cnn:fc8,c4", "needs an image input"),
])
def test_bad_arch_strings(arch, match):
    with pytest.raises(train.TrainError, match=match):
        train.model_from_arch(arch, (1, 16, 16), 10)


def _digits():
    tr, te = datasets.load("digits", split="train"), datasets.load("digits", split="test")
    return tr.quantized(), tr.y, te.quantized(), te.y


@pytest.mark.parametrize("norm", ["static", "shiftnorm"])
def test_fit_learns_digits_and_torch_equals_golden(norm):
    xtr, ytr, xte, yte = _digits()
    opts = train.LayerOptions(norm=norm)
    m = train.model_from_arch("mlp:32", (1, 8, 8), 10, opts)
    hist = train.fit(m, xtr, ytr, train.Recipe(epochs=5, layer=opts), seed=0, progress=False)
    assert hist.loss[-1] < hist.loss[0]
    acc = train.accuracy(m, xte, yte)
    assert acc > 0.8
    pred_golden = golden.predict(export.to_ir(m, input=bitgen.ir.InputSpec((1, 8, 8))), xte)
    assert np.mean(pred_golden == yte) == acc
    np.testing.assert_array_equal(pred_golden, train.predict(m, torch.from_numpy(xte).float()).numpy())


def test_fit_is_reproducible_for_a_seed_and_differs_across_seeds():
    xtr, ytr, _, _ = _digits()

    def run(seed):
        torch.manual_seed(seed)
        m = train.model_from_arch("cnn:c4,p2,fc8", (1, 8, 8), 10)
        train.fit(m, xtr[:300], ytr[:300], train.Recipe(epochs=2, float_warmup_epochs=1), seed=seed,
                  progress=False)
        return m.state_dict()

    a, b, c = run(3), run(3), run(4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_shift_augmentation_moves_images_by_at_most_one_pixel():
    x = torch.zeros(50, 1, 6, 6)
    x[:, 0, 2, 3] = 1
    out = train._shift_batch(x, torch.Generator().manual_seed(0))
    pos = [tuple(np.argwhere(o[0].numpy() == 1)[0]) for o in out]
    assert all(abs(r - 2) <= 1 and abs(c - 3) <= 1 for r, c in pos) and len(set(pos)) > 3


def test_recipe_checks_and_round_trips():
    r = train.Recipe(epochs=3, layer=train.LayerOptions(weights="ternary"))
    assert train.Recipe.from_dict(r.to_dict()) == r
    with pytest.raises(train.TrainError, match="unknown training option"):
        train.Recipe.from_dict({"epocs": 3})
    with pytest.raises(train.TrainError, match="warm-up"):
        train.Recipe(epochs=2, float_warmup_epochs=2).check()


# ---------------------------------------------------------------------------- the command
def _train(tmp_path, *extra):
    out = tmp_path / "m.pt"
    code = main(["train", "--dataset", "digits", "--epochs", "2", "-q", "-o", str(out), *extra])
    return code, out


def test_train_command_writes_a_model_that_checks_bit_exact(tmp_path, capsys):
    code, out = _train(tmp_path, "--arch", "cnn:c4,p2,dw,fc16", "--weights", "2bitsym", "--seed", "1")
    assert code == 0
    text = capsys.readouterr().out
    assert "accuracy on 359 test samples: torch" in text
    loaded = bitgen.load(out)
    meta = loaded.ir.meta
    assert meta["weights"] == "2bitsym" and meta["seed"] == 1 and meta["dataset"] == "digits"
    assert meta["accuracy"]["torch"] == meta["accuracy"]["golden"] > 0.3
    assert loaded.ir.labels == [str(i) for i in range(10)] and loaded.ir.input.shape == (1, 8, 8)
    assert loaded.torch_model is not None and not loaded.torch_model.training
    js = tmp_path / "check.json"
    assert main(["check", str(out), "--dataset", "digits", "--random", "500", "--json", str(js)]) == 0
    rep = json.loads(js.read_text())
    assert rep["mismatches"] == 0
    assert rep["accuracy"]["torch"] == rep["accuracy"]["golden"] == rep["accuracy"]["c"] == \
        pytest.approx(meta["accuracy"]["golden"])


def test_train_command_with_json_and_toml_config(tmp_path, capsys):
    layers = [{"type": "Flatten"},
              {"type": "QuantLinear", "args": {"in_features": 64, "out_features": 12, "encoding": "ternary"}},
              {"type": "ShiftNorm"},
              {"type": "QuantLinear", "args": {"in_features": 12, "out_features": 10}}]
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"layers": layers, "epochs": 1, "lr": 0.01}))
    code, out = _train(tmp_path, "--config", str(cfg))
    assert code == 0
    irm = bitgen.load(out).ir
    assert [layer.kind for layer in irm.layers] == ["flatten", "linear", "shiftnorm", "linear"]
    assert irm.layers[1].encoding == "ternary" and irm.meta["recipe"]["lr"] == 0.01
    toml = tmp_path / "c.toml"
    toml.write_text('arch = "mlp:8"\nweights = "fp130"\nnorm = "shiftnorm"\nepochs = 1\n')
    code, out = _train(tmp_path, "--config", str(toml), "--weights", "8bit")
    assert code == 0
    irm = bitgen.load(out).ir
    assert irm.layers[1].encoding == "8bit" and irm.layers[2].kind == "shiftnorm"


def test_train_command_with_a_graph_config(tmp_path, capsys):
    """A residual block in TOML `nodes`: trains, saves a graph, checks bit-exact."""
    toml = tmp_path / "res.toml"
    toml.write_text("""epochs = 1
[[nodes]]
name = "conv"
type = "QuantConv2d"
args = { in_channels = 1, out_channels = 1, kernel_size = 3, padding = 1, encoding = "4bitsym" }
[[nodes]]
name = "q"
type = "Requant"
[[nodes]]
name = "sum"
type = "Add"
inputs = ["q", "input"]
args = { out_min = 0 }
[[nodes]]
type = "Flatten"
[[nodes]]
type = "QuantLinear"
args = { in_features = 64, out_features = 10 }
""")
    code, out = _train(tmp_path, "--config", str(toml))
    assert code == 0, capsys.readouterr().err
    irm = bitgen.load(out).ir
    assert not irm.is_sequential and irm.nodes[2].op.kind == "add" and irm.nodes[2].inputs == ("q", "input")
    assert main(["check", str(out), "--dataset", "digits", "--random", "300"]) == 0
    toml.write_text(toml.read_text().replace('inputs = ["q", "input"]', 'inputs = ["q", "nowhere"]'))
    assert _train(tmp_path, "--config", str(toml))[0] != 0
    assert "reads 'nowhere' before any node writes it" in capsys.readouterr().err
    both = tmp_path / "both.json"
    both.write_text(json.dumps({"layers": [{"type": "Flatten"}], "nodes": [{"type": "Flatten"}]}))
    assert _train(tmp_path, "--config", str(both))[0] != 0
    assert "not both" in capsys.readouterr().err


@pytest.mark.parametrize("argv, match", [
    (["--arch", "mlp:x"], "positive integers"),
    (["--dataset", "usps", "--data", "/nonexistent/usps"], "no such file"),
    (["--epochs", "0"], "epochs"),
])
def test_train_command_one_line_errors(tmp_path, capsys, argv, match):
    out = tmp_path / "m.pt"
    base = ["train", "--dataset", "digits", "-q", "-o", str(out)]
    code = main(base + argv)
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and match in err, err
    assert not out.exists()


def test_config_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"arch": "mlp:8", "colour": "red"}')
    assert main(["train", "--dataset", "digits", "--config", str(bad), "-o", str(tmp_path / "m.pt")]) != 0
    assert "unknown option(s) colour" in capsys.readouterr().err
    bad.write_text('{"layers": [{"type": "LSTM"}]}')
    assert main(["train", "--dataset", "digits", "--config", str(bad), "-o", str(tmp_path / "m.pt")]) != 0
    assert "unknown layer type 'LSTM'" in capsys.readouterr().err
    bad.write_text("{not json")
    assert main(["train", "--dataset", "digits", "--config", str(bad), "-o", str(tmp_path / "m.pt")]) != 0
    assert "not valid JSON" in capsys.readouterr().err
    bad.write_text('{"layers": [{"type": "Flatten"}, {"type": "QuantLinear", "args": '
                   '{"in_features": 10, "out_features": 10}}]}')
    assert main(["train", "--dataset", "digits", "--config", str(bad), "-o", str(tmp_path / "m.pt")]) != 0
    assert "expects 10 inputs, previous layer gives 64" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(not (USPS / "zip.train.gz").exists(), reason="../shared/datasets/usps missing")
def test_usps_mlp_acceptance(tmp_path):
    """The issue's acceptance run: 4-bit symmetric 256-64-64-10 on USPS, >= 94 % on the test file."""
    out = tmp_path / "model.pt"
    assert main(["train", "--dataset", "usps", "--data", str(USPS), "--arch", "mlp:64,64",
                 "--weights", "4bitsym", "--seed", "0", "-q", "-o", str(out)]) == 0
    acc = bitgen.load(out).ir.meta["accuracy"]
    assert acc["golden"] >= 0.94 and abs(acc["golden"] - acc["torch"]) <= 0.003
