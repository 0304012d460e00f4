"""Graphs on the training side: a user's own module (residual blocks, a transposed conv, a
concatenation) traced with torch.fx, a Graph built from plain data, saved and reloaded without
pickling, and in eval mode equal to the golden model of the exported IR bit for bit."""
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn as tnn

from bitgen import golden, ir, modelfile
from bitgen import nn as bnn
from bitgen.nn import export


class Block(tnn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = bnn.QuantConv2d(c, c, 3, padding=1, encoding="4bitsym")
        self.norm, self.relu, self.add = bnn.Requant(), tnn.ReLU(), bnn.Add()

    def forward(self, x):
        return self.add(self.relu(self.norm(self.conv(x))), x)


class Net(tnn.Module):
    def __init__(self):
        super().__init__()
        self.stem = tnn.Sequential(bnn.QuantConv2d(1, 4, 3, padding=1, encoding="8bit"), bnn.Requant(), tnn.ReLU())
        self.b1, self.b2 = Block(4), Block(4)
        self.up = bnn.QuantConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1, encoding="4bit", bias=True)
        self.q = bnn.Requant()
        self.head = bnn.QuantLinear(2 * 16 * 16 + 4 * 8 * 8, 10)

    def forward(self, x):
        y = self.b2(self.b1(self.stem(x)))
        u = self.q(self.up(y))
        return self.head(torch.cat([torch.flatten(u, 1), torch.flatten(y, 1)], 1))


def _calibrated(m, shape):
    torch.manual_seed(0)
    x = torch.randint(-128, 128, (64,) + shape).double()
    bnn.calibrate(m, x.float())
    return m.eval(), x


def test_traced_module_exports_a_graph_equal_to_torch(tmp_path):
    torch.manual_seed(1)
    m, x = _calibrated(Net(), (1, 8, 8))
    m.input_spec = ir.InputSpec((1, 8, 8))
    irm = export.to_ir(m)
    kinds = [n.op.kind for n in irm.nodes]
    assert kinds.count("add") == 2 and "concat" in kinds and "conv_transpose2d" in kinds
    assert "relu" not in kinds  # each ReLU folded into the clamp of the Requant it alone reads
    assert irm.nodes[4].inputs == ("b1_relu", "stem_2")  # the residual reads the stem's output
    got = golden.run(irm, x.numpy().astype(np.int8))
    assert np.array_equal(m(x).numpy(), got)
    modelfile.save(m, tmp_path / "net.pt")
    back = modelfile.load(tmp_path / "net.pt")
    assert back.ir.digest() == irm.digest()
    assert type(back.torch_model) is bnn.Graph  # stored as plain data, not as the class Net
    assert np.array_equal(back.torch_model(x).detach().numpy(), got)


def test_graph_from_plain_data_and_its_sequential_special_case():
    g = bnn.graph([
        {"name": "c", "type": "QuantConv2d", "args": {"in_channels": 1, "out_channels": 1, "kernel_size": 3, "padding": 1}},
        {"name": "q", "type": "Requant"},
        {"name": "a", "type": "Add", "inputs": ["q", "input"]},
        {"name": "f", "type": "Flatten"},
        {"name": "l", "type": "QuantLinear", "args": {"in_features": 64, "out_features": 3}},
    ])
    g.input_spec = ir.InputSpec((1, 8, 8))
    g, x = _calibrated(g, (1, 8, 8))
    gi = export.to_ir(g)
    assert gi.to_dict()["version"] == 2
    assert np.array_equal(g(x).numpy(), golden.run(gi, x.numpy().astype(np.int8)))
    chain = bnn.graph([{"type": "Flatten"}, {"type": "QuantLinear", "args": {"in_features": 64, "out_features": 3}}])
    chain.input_spec = ir.InputSpec((1, 8, 8))
    assert export.to_ir(chain).to_dict()["version"] == 1  # a chain is a sequential model


def test_add_trains_through_its_saturation_and_rounding():
    add = bnn.Add(scale_a=3, shift=2)
    a = torch.tensor([3.0, -3.0, 200.0], requires_grad=True)
    b = torch.zeros(3)
    y = add(a, b)
    assert y.tolist() == [2.0, -2.0, 127.0]  # half up once, then saturation
    y.sum().backward()
    assert a.grad.tolist() == [0.75, 0.75, 0.0]
    add.eval()
    ref = ir.Add(scale_a=3, shift=2).golden(np.array([[3, -3, 127]], np.int8), np.zeros((1, 3), np.int8))
    assert add(torch.tensor([[3.0, -3.0, 127.0]]), torch.zeros(1, 3)).tolist() == ref.tolist()


def test_a_small_conditional_decoder_exports_and_its_c_equals_golden(tmp_path):
    """The electronic die's shape at a small size: latent + one-hot label -> Linear -> 4x4xC ->
    transposed convolutions (stride 2, padding 1, output_padding 1) -> an image."""
    from bitgen.backends.c import emit, host

    torch.manual_seed(3)
    dec = tnn.Sequential(
        bnn.QuantLinear(7, 4 * 4 * 4, encoding="8bit", bias=True), bnn.Requant(), tnn.ReLU(),
        tnn.Unflatten(1, (4, 4, 4)),
        bnn.QuantConvTranspose2d(4, 4, 3, stride=2, padding=1, output_padding=1, encoding="4bit"), bnn.Requant(), tnn.ReLU(),
        bnn.QuantConvTranspose2d(4, 1, 3, stride=2, padding=1, output_padding=1, encoding="4bit"),
    )
    dec.input_spec = ir.InputSpec((7,))
    dec, x = _calibrated(dec, (7,))
    irm = export.to_ir(dec)
    assert irm.validate()[-1].shape == (1, 16, 16)
    got = golden.run(irm, x.numpy().astype(np.int8))
    assert np.array_equal(dec(x).numpy(), got)
    for kernels in ("generic", "rv32ec"):
        em = emit.emit(irm, tmp_path / kernels, name="die", kernels=kernels)
        hm = host.build(em, tmp_path / f"b{kernels}")
        try:
            y = hm.run(x.numpy().astype(np.int8))[0]
        finally:
            hm.close()
        assert np.array_equal(y.reshape(got.shape), got)


# the training configs (examples/sweep-*.toml are design spaces of `bitgen sweep`: tests/test_sweep.py)
EXAMPLES = sorted(p for p in (Path(__file__).resolve().parents[1] / "examples").glob("*.toml")
                  if not p.name.startswith("sweep-"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_config_builds_and_exports_at_usps_size(path):
    """What `bitgen train --config` does before training: the graph builds, chains at 16x16 and
    validates."""
    import tomllib

    conf = tomllib.loads(path.read_text())
    g = bnn.graph(conf["nodes"], conf.get("states"))
    if conf.get("task") == "decoder":  # the die: one-hot pips and the angle in, a 32x32 face out
        g.input_spec = ir.InputSpec((7,), scale=1 / 127)
        assert export.to_ir(g).validate()[-1].shape == (1, 32, 32)
        return
    # PixelRNN: 64x64 gesture clips; the video CNNs: streams of 4 classes, the wide one 64x64
    frame, classes = {"pixelrnn": (64, 9), "video-cnn": (16, 4), "video-cnn-wide": (64, 4)}.get(path.stem, (16, 10))
    g.input_spec = ir.InputSpec((1, frame, frame), scale=1 / 127)
    m = export.to_ir(g)
    # the MAX78000's linear layer writes (classes, 1, 1), as the accelerator does
    assert m.validate()[-1].shape == ((classes, 1, 1) if path.stem.startswith("ai8x-") else (classes,))
    assert bool(m.states) == (path.stem in ("convrnn", "pixelrnn"))  # the ones trained on clips
    if "change_threshold" in conf:  # stored change-based: a gate before every convolution
        gated = ir.change.with_thresholds(m, conf["change_threshold"])
        assert len(ir.change.thresholds(gated)) == sum(layer.kind == "conv2d" for layer in m.layers)
