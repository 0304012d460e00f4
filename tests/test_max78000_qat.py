"""QAT for the MAX78000's accelerator (bitgen.nn.Max78000Layer / Max78000Add): the trained
model's evaluation equals golden's max78000_layer bit for bit, layer by layer; export, plain-data
round trip, `bitgen train --target max78000-cnn` and its refusals."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bitgen import golden, ir, modelfile
from bitgen import nn as bnn
from bitgen.nn import export

sys.path.insert(0, str(Path(__file__).parent))
import test_max78000  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
USPS = ROOT / ".." / "shared" / "datasets" / "usps"
Q7 = ir.InputSpec((1, 16, 16), scale=1 / 128)


def _bitgen(capsys, *args, cwd):
    return test_max78000._bitgen(capsys, *args, cwd=cwd)


def _layer_outputs(model: torch.nn.Module, x: np.ndarray) -> list[np.ndarray]:
    """Every Max78000Layer's eval-mode output, in call order."""
    outs: list[np.ndarray] = []
    hooks = [m.register_forward_hook(lambda m, a, y: outs.append(y.detach().numpy()))
             for m in model.modules() if isinstance(m, bnn.Max78000Layer)]
    model.eval()
    try:
        with torch.no_grad():
            model(torch.from_numpy(x.astype(np.float32)))
    finally:
        for h in hooks:
            h.remove()
    return outs


def _assert_exact(model: torch.nn.Module, x: np.ndarray) -> ir.Model:
    """Golden of the exported model equals the PyTorch evaluation on every layer."""
    irm = export.to_ir(model)
    want = golden.run(irm, x, all_layers=True)
    got = _layer_outputs(model, x)
    assert len(got) == len(want) == len(irm.nodes)
    for node, g, t in zip(irm.nodes, want, got):
        assert isinstance(node.op, ir.Max78000Layer)
        assert np.array_equal(t.reshape(g.shape), g), node.output
    return irm


def _randomize(layer: bnn.Max78000Layer, rng: np.random.Generator) -> None:
    """Weights of a random magnitude (so that the derived shifts vary) and biases in range."""
    with torch.no_grad():
        if layer.weight is not None:
            layer.weight.mul_(float(rng.uniform(0.05, 8)))
        if layer.bias is not None:
            layer.bias.uniform_(-2, 2)


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
@pytest.mark.parametrize("pool", ["none", "max", "avg"])
def test_one_layer_equals_golden_on_random_inputs(bits, pool):
    rng = np.random.default_rng(bits * 7 + len(pool))
    torch.manual_seed(bits)
    for k, act, rounding in ((3, "relu", False), (1, "abs", True), (3, "none", True)):
        layer = bnn.Max78000Layer(3, 5, kernel_size=k, pool=pool, pool_size=2, pool_stride=2 if k == 3 else 1,
                                  activation=act, weight_bits=bits, avg_pool_rounding=rounding)
        _randomize(layer, rng)
        model = torch.nn.Sequential(layer)
        model.input_spec = ir.InputSpec((3, 9, 9), scale=1 / 128)
        x = rng.integers(-128, 128, (48, 3, 9, 9)).astype(np.int8)
        irm = _assert_exact(model, x)
        op = irm.layers[0]
        assert (op.weight_bits, op.pool, op.activation) == (bits, pool, act)
        assert op.output_shift == layer.output_shift()


@pytest.mark.parametrize("bits", [2, 8])
def test_linear_wide_output_and_padding_equal_golden(bits):
    rng = np.random.default_rng(bits)
    layers = [bnn.Max78000Layer(2, 4, kernel_size=3, padding=2, activation="relu", weight_bits=bits),
              bnn.Max78000Layer(4, 4, kernel_size=3, padding=0, pool="avg", pool_size=3, pool_stride=2),
              bnn.Max78000Layer(4 * 2 * 2, 6, operation="linear", flatten=True, activation="none",
                                output_width=32, weight_bits=bits)]
    for ly in layers:
        _randomize(ly, rng)
    model = torch.nn.Sequential(*layers)
    model.input_spec = ir.InputSpec((2, 8, 8), scale=1 / 128)
    irm = _assert_exact(model, rng.integers(-128, 128, (64, 2, 8, 8)).astype(np.int8))
    assert irm.validate()[-1].dtype == "int32" and irm.layers[-1].flatten


def _residual(rng: np.random.Generator | None = None) -> bnn.Graph:
    g = bnn.graph([
        {"name": "a", "type": "Max78000Layer", "args": {"in_channels": 2, "out_channels": 4}},
        {"name": "b", "type": "Max78000Layer", "args": {"in_channels": 4, "out_channels": 4, "activation": "none"}},
        {"name": "s", "type": "Max78000Add", "inputs": ["b", "a"]},
        {"name": "d", "type": "Max78000Layer", "inputs": ["s", "a", "b"],
         "args": {"in_channels": 4, "out_channels": 4, "eltwise": "sub", "operands": 3, "pool": "avg",
                  "pool_first": False, "weight_bits": 4, "activation": "abs"}},
        {"name": "e", "type": "Max78000Layer", "inputs": ["d", "d"],
         "args": {"in_channels": 4, "out_channels": 4, "eltwise": "add", "operands": 2, "pool": "max",
                  "pool_size": 1, "kernel_size": 1}},
        {"name": "fc", "type": "Max78000Layer", "args": {"operation": "linear", "in_channels": 64,
                                                         "out_channels": 3, "flatten": True,
                                                         "activation": "none", "output_width": 32}}])
    if rng is not None:
        for m in g.modules():
            if isinstance(m, bnn.Max78000Layer):
                _randomize(m, rng)
    g.input_spec = ir.InputSpec((2, 8, 8), scale=1 / 128)
    return g


def test_residual_graph_exports_eltwise_layers_reading_earlier_tensors():
    rng = np.random.default_rng(5)
    torch.manual_seed(5)
    g = _residual(rng)
    irm = _assert_exact(g, rng.integers(-128, 128, (64, 2, 8, 8)).astype(np.int8))
    nodes = {n.output: n for n in irm.nodes}
    assert [n.output for n in irm.nodes] == ["a", "b", "s", "d", "e", "fc"]
    s, d, e = nodes["s"].op, nodes["d"].op, nodes["e"].op
    # the residual add: a passthrough element-wise layer whose operands are earlier layers' outputs
    assert nodes["s"].inputs == ("b", "a") and (s.operation, s.eltwise, s.operands) == ("passthrough", "add", 2)
    assert s.weight is None and s.output_shift == 0 and not s.packed_operands
    # fused: element-wise before the pooling before the conv
    assert nodes["d"].inputs == ("s", "a", "b")
    assert (d.operation, d.eltwise, d.operands, d.pool, d.pool_first) == ("conv2d", "sub", 3, "avg", False)
    assert (e.eltwise, e.pool_first, e.weight.shape[2:]) == ("add", True, (1, 1))


def test_saved_model_rebuilds_the_same_program(tmp_path):
    rng = np.random.default_rng(1)
    g = _residual(rng)
    g.labels = ["x", "y", "z"]
    saved = modelfile.save(g, tmp_path / "m.pt")
    loaded = modelfile.load(tmp_path / "m.pt")
    assert loaded.ir.digest() == saved.digest()
    again = export.to_ir(loaded.torch_model)
    assert again.digest() == export.to_ir(g).digest() == saved.digest()


def test_training_mode_follows_eval_and_the_warmup_does_not_round():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    g = _residual()  # as initialized (random weights of a larger size saturate: no gradient)
    x = torch.from_numpy(rng.integers(-128, 128, (16, 2, 8, 8)).astype(np.float32))
    g.eval()
    with torch.no_grad():
        y_eval = g(x).double()
    g.train()
    y_train = g(x)
    y_train.sum().backward()  # gradients reach every weight through the roundings
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in g.parameters())
    assert torch.allclose(y_train.detach().double(), y_eval, rtol=1e-4, atol=2.0)
    bnn.set_quantization(g, False)
    with torch.no_grad():
        y_float = g(x)
    assert not torch.equal(torch.round(y_float), y_float)  # unrounded in the float warm-up
    bnn.set_quantization(g, True)


def test_layer_arguments_the_hardware_cannot_take_are_refused():
    for kwargs, why in (({"kernel_size": 5}, "3x3 or 1x1"), ({"weight_bits": 3}, "1, 2, 4 or 8"),
                        ({"padding": 3}, "padding 3"), ({"eltwise": "xor", "operands": 2}, "no gradient"),
                        ({"pool": "max", "pool_size": 17}, "1..16"),
                        ({"output_width": 32}, "no activation"), ({"output_shift": 20}, "output_shift 20")):
        with pytest.raises(ValueError, match=why):
            bnn.Max78000Layer(4, 4, **kwargs)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_train_target_refuses_what_the_accelerator_cannot_take(tmp_path, capsys):
    if not (USPS / "zip.test.gz").exists():
        pytest.skip("../shared/datasets/usps missing")
    data = ["--dataset", "usps", "--data", str(USPS), "--target", "max78000-cnn", "-o", "m.pt"]
    _write(tmp_path, "plain.toml", '[[layers]]\ntype = "Flatten"\n[[layers]]\ntype = "QuantLinear"\n'
                                   'args = { in_features = 256, out_features = 10 }\n')
    _write(tmp_path, "k5.toml", '[[layers]]\ntype = "Max78000Layer"\n'
                                'args = { in_channels = 1, out_channels = 4, kernel_size = 5 }\n')
    _write(tmp_path, "wide.toml", '[[layers]]\ntype = "Max78000Layer"\n'
                                  'args = { in_channels = 1, out_channels = 65, pool = "max", pool_size = 4 }\n'
                                  '[[layers]]\ntype = "Max78000Layer"\nargs = { operation = "linear", '
                                  'in_channels = 1040, out_channels = 10, flatten = true, activation = "none" }\n')
    _write(tmp_path, "graph.toml", '[[nodes]]\nname = "stem"\ntype = "Max78000Layer"\n'
                                   'args = { in_channels = 1, out_channels = 80 }\n'
                                   '[[nodes]]\nname = "sum"\ntype = "Max78000Add"\ninputs = ["stem", "stem"]\n'
                                   '[[nodes]]\nname = "fc"\ntype = "Max78000Layer"\nargs = { operation = "linear", '
                                   'in_channels = 20480, out_channels = 10, flatten = true, activation = "none" }\n')
    for args, msg in ((["--config", "plain.toml"], "is flatten, not an accelerator layer"),
                      (["--config", "k5.toml"], "3x3 or 1x1"),
                      (["--config", "wide.toml"], "flatten over more than 64 channels \\(several passes\\) is not supported yet"),
                      (["--config", "graph.toml"], "flatten: layer 2: flattens 20480 values"),
                      (["--arch", "mlp:32"], "not an --arch string")):
        r = _bitgen(capsys, "train", *args, *data, cwd=tmp_path)
        assert r.returncode != 0
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert re.search(msg, r.stderr), r.stderr
    assert not (tmp_path / "m.pt").exists()


def test_train_emit_and_run_a_chain_on_the_emulated_accelerator(tmp_path, capsys):
    """The whole chain on a 1-epoch model: train (golden == torch on every layer of the USPS test
    images), emit the layer program, run 20 test digits on max78000-sim with no mismatch."""
    if not (USPS / "zip.test.gz").exists():
        pytest.skip("../shared/datasets/usps missing")
    r = _bitgen(capsys, "train", "--config", str(ROOT / "examples" / "ai8x-chain.toml"), "--target", "max78000-cnn",
                "--dataset", "usps", "--data", str(USPS), "--seed", "0", "--epochs", "2", "-o", "c.pt", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    loaded = modelfile.load(tmp_path / "c.pt")
    assert loaded.ir.input.scale == 1 / 128  # USPS pixels -1..1 -> round(128 * pixel), as ai8x's normalize
    from bitgen import datasets

    test = datasets.load("usps", str(USPS), split="test")
    x = test.quantized(loaded.ir.input)
    assert x.min() == -128 and x.max() == 127
    _assert_exact(loaded.torch_model, x)
    meta = loaded.ir.meta
    assert meta["target"] == "max78000-cnn" and meta["accuracy"]["torch"] == meta["accuracy"]["golden"] > 0.5

    from test_max78000_program import toolchain_or_skip

    toolchain_or_skip()
    r = _bitgen(capsys, "emit", "--target", "max78000-cnn", "c.pt", "-o", "cnn", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "eltwise" not in (tmp_path / "cnn" / "network.yaml").read_text()
    r = _bitgen(capsys, "run", "--board", "max78000-sim", "--target", "max78000-cnn", "c.pt", "--dataset", "usps",
                "--data", str(USPS), "--limit", "20", "--json", "run.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "run.json").read_text())
    assert rep["compared"] == 20 and rep["mismatches"] == 0 and rep["emulator"]["cnn_layers"] == 20 * 4
    # the program's known-answer test on a test digit, in the emulated accelerator
    from test_max78000_program import run_program

    kat, got, want = run_program(loaded.ir, tmp_path / "kat", sample=x[0])
    assert kat.passed and int(np.frombuffer(kat.memory["cnn_kat_errors"], "<i4")[0]) == 0, kat.console
    assert np.array_equal(got, want)
