"""The training side of state: bitgen.nn's BinaryConvRNN cell and Graph states, trained over
clips through time, exported to IR states, equal to golden frame by frame, and the clip
datasets, config files and commands around them."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn as tnn

from bitgen import check, cli, datasets, golden, ir, modelfile
from bitgen import nn as bnn
from bitgen import train
from bitgen.backends.c import emit, host
from bitgen.nn import export


def small_rnn(channels=2, kernel=3, threshold=0):
    m = tnn.Sequential(bnn.Sign(0), bnn.BinaryConvRNN(1, channels, kernel, threshold=threshold), tnn.Flatten(),
                       bnn.QuantLinear(channels * 64, 10, encoding="4bitsym"))
    m.input_spec = ir.InputSpec((1, 8, 8))
    return m


def random_clips(n, frames, seed=0, shape=(1, 8, 8)):
    return np.random.default_rng(seed).integers(-128, 128, (n, frames) + shape).astype(np.int8)


def torch_frames(m, x):
    m.eval()
    return bnn.run_clips(m, torch.from_numpy(x).double()).numpy()


# ----------------------------------------------------------------------- the cell and export
def test_cell_is_pixelrnns_recurrence_and_exports_to_one_state():
    torch.manual_seed(0)
    m = small_rnn()
    irm = export.to_ir(m)
    (state,) = irm.states
    assert (state.shape, state.dtype, state.init) == ((2, 8, 8), "int8", 1)
    kinds = [n.op.kind for n in irm.nodes]
    assert kinds.count("conv2d") == 4 and kinds.count("sign") == 2 and kinds.count("mul") == 1
    x = random_clips(6, 9)
    assert np.array_equal(torch_frames(m, x), golden.run_sequence(irm, x))
    # the hidden state is the running product of the gates, from h_0 = +1
    cell = m[1]
    xb = torch.from_numpy(np.where(x > 0, 1.0, -1.0)).double()
    cell.reset_state()
    h, prods = None, torch.ones(6, 2, 8, 8, dtype=torch.float64)
    for t in range(9):
        prev = cell.h if cell.h is not None else torch.ones_like(prods)
        f = cell.gate(cell.fi(xb[:, t]) + cell.fh(prev))
        cell(xb[:, t])
        prods = prods * f
        h = cell.h
    assert torch.equal(h, prods)


def test_a_frame_reads_the_state_of_the_frame_before_and_reset_starts_again():
    torch.manual_seed(1)
    m = small_rnn()
    m.eval()
    x = torch.from_numpy(random_clips(3, 5, seed=2)).double()
    first = bnn.run_clips(m, x)
    assert torch.equal(first, bnn.run_clips(m, x))  # run_clips resets: the same clips, the same outputs
    assert not torch.equal(first[:, 0], first[:, 1]) or not torch.equal(x[:, 0], x[:, 1])
    with pytest.raises(ValueError, match="reset_states"):
        m(x[:2, 0])  # a batch of 2 after batches of 3, without a reset
    bnn.reset_states(m)
    assert torch.equal(m(x[:2, 0]), first[:2, 0])


def test_gradients_flow_back_through_the_frames():
    """The gate weights W_fi reach the output only through h, so only a clip of two frames or
    more gives them a gradient (backpropagation through time)."""
    torch.manual_seed(2)
    m = small_rnn()
    m.train()
    x = torch.from_numpy(random_clips(4, 3, seed=3)).float()
    for frames, nonzero in ((1, False), (3, True)):
        m.zero_grad()
        bnn.run_clips(m, x[:, :frames])[:, -1].sum().backward()
        grad = m[1].fi.weight.grad  # None: no path from W_fi to the loss
        assert (grad is not None and bool(grad.abs().sum() > 0)) is nonzero, frames
        assert m[1].oi.weight.grad.abs().sum() > 0


class TwoCells(tnn.Module):
    """Two cells side by side in a traced forward, their outputs summed."""

    def __init__(self):
        super().__init__()
        self.sign = bnn.Sign(0)
        self.a, self.b = bnn.BinaryConvRNN(1, 1, 3), bnn.BinaryConvRNN(1, 1, 5, threshold=2)
        self.add = bnn.Add(out_dtype="int32")
        self.head = tnn.Sequential(tnn.Flatten(), bnn.QuantLinear(64, 4, encoding="2bitsym"))
        self.input_spec = ir.InputSpec((1, 8, 8))

    def forward(self, x):
        s = self.sign(x)
        return self.head(self.add(self.a(s), self.b(s)))


class OneCellTwice(TwoCells):
    def forward(self, x):
        s = self.sign(x)
        return self.head(self.add(self.a(s), self.a(s)))  # h would advance twice per frame


def test_a_traced_module_with_two_cells_and_the_plain_data_round_trip(tmp_path):
    torch.manual_seed(3)
    m = TwoCells()
    irm = export.to_ir(m)
    assert [s.shape for s in irm.states] == [(1, 8, 8), (1, 8, 8)]
    x = random_clips(4, 6, seed=4)
    want = golden.run_sequence(irm, x)
    assert np.array_equal(torch_frames(m, x), want)
    saved = modelfile.save(m, tmp_path / "two.pt")
    loaded = modelfile.load(tmp_path / "two.pt")
    assert loaded.ir.digest() == saved.digest()
    assert np.array_equal(torch_frames(loaded.torch_model, x), want)
    with pytest.raises(export.ExportError, match="more than once"):
        export.to_ir(OneCellTwice())


def test_graph_states_are_any_recurrence():
    """An exponential moving average of the frames: s_t = (x_t + s_{t-1}) / 2, rounded half up."""
    g = bnn.graph([{"name": "avg", "type": "Add", "args": {"shift": 1}, "inputs": ["input", "s"]},
                   {"name": "out", "type": "Flatten"}],
                  states=[{"name": "s", "source": "avg", "shape": [1, 4, 4], "init": 0}])
    g.input_spec = ir.InputSpec((1, 4, 4))
    irm = export.to_ir(g)
    assert [(s.name, s.shape, s.dtype, s.source, s.init) for s in irm.states] == [("s", (1, 4, 4), "int8", "avg", 0)]
    x = random_clips(5, 7, seed=5, shape=(1, 4, 4))
    want = golden.run_sequence(irm, x)
    s = np.zeros((5, 16), dtype=np.int64)
    for t in range(7):
        s = np.clip((x[:, t].reshape(5, 16).astype(np.int64) + s + 1) >> 1, -128, 127)
        assert np.array_equal(want[:, t], s)
    assert np.array_equal(torch_frames(g, x), want)
    again = bnn.from_spec(bnn.to_spec(g))
    assert [st.spec() for st in again.states] == [st.spec() for st in g.states]


@pytest.mark.parametrize("states, msg", [
    ([{"name": "s", "source": "nowhere", "shape": [1, 4, 4]}], "no node writes its source 'nowhere'"),
    ([{"name": "s", "shape": [1, 4, 4]}], "needs 'name', 'source' and 'shape'"),
    ([{"name": "s", "source": "avg", "shape": [1, 0, 4]}], "must be positive sizes"),
    ([{"name": "s", "source": "avg", "shape": "1,4,4"}], "list of integers"),
    ([{"name": "s", "source": "avg", "shape": [1, 4, 4], "init": "one"}], "'init' must be an integer"),
    ([{"name": "s", "source": "avg", "shape": [1, 4, 4], "dtype": "float"}], "int8 or int32"),
    ([{"name": "s", "source": "avg", "shape": [1, 4, 4], "every": 2}], "unknown key"),
    ([{"name": "input", "source": "avg", "shape": [1, 4, 4]}], "used twice"),
])
def test_bad_states_are_one_line_errors(states, msg):
    with pytest.raises(ValueError, match=msg) as e:
        bnn.graph([{"name": "avg", "type": "Add", "inputs": ["input", "s"]}], states=states)
    assert "\n" not in str(e.value)


def test_a_state_whose_shape_does_not_match_its_source_is_refused_on_export():
    g = bnn.graph([{"name": "avg", "type": "Add", "inputs": ["input", "input"]}],
                  states=[{"name": "s", "source": "avg", "shape": [1, 2, 2]}])
    g.input_spec = ir.InputSpec((1, 4, 4))
    with pytest.raises(export.ExportError, match="state 's'"):
        export.to_ir(g)


# ---------------------------------------------------------------------------- clips and training
def test_moving_clips_drift_through_the_centre_and_are_deterministic():
    img = np.full((40, 9, 9), -1.0)
    img[:, 4, 4] = 1.0  # one bright pixel
    a = datasets.moving_clips(img, 16, np.random.default_rng(0))
    assert a.shape == (40, 16, 9, 9) and a.dtype == np.float32 and a.min() >= -1 and a.max() <= 1
    assert np.array_equal(a, datasets.moving_clips(img, 16, np.random.default_rng(0)))
    clean = datasets.moving_clips(img, 16, np.random.default_rng(0), noise=0.0)
    assert set(np.unique(clean)) == {-1.0, 1.0} and (clean == 1).sum(axis=(2, 3)).max() == 1
    where = np.array([[np.argwhere(f == 1)[0] if (f == 1).any() else (99, 99) for f in c] for c in clean])
    assert np.abs(where - 4).max() <= 2  # at most a quarter pixel per frame, for 7.5 frames each way
    assert np.abs(np.diff(where, axis=1)).max() <= 1
    assert np.abs(where[:, 7] - 4).max() <= 1 and np.abs(where[:, 8] - 4).max() <= 1  # the centre mid-clip
    assert (where[:, 0] != where[:, 15]).any()


USPS = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "usps"


@pytest.mark.skipif(not (USPS / "zip.train.gz").exists(), reason="../shared/datasets/usps missing")
def test_usps_clips_dataset():
    usps_dir = USPS
    ds = datasets.load("usps-clips", usps_dir, "test")
    still = datasets.load("usps", usps_dir, "test")
    assert ds.frames == 16 and ds.x.shape == (len(still), 16, 1, 16, 16) and np.array_equal(ds.y, still.y)
    q = ds.quantized()
    assert q.shape == (len(still), 16, 1, 16, 16) and q.dtype == np.int8
    assert np.array_equal(q, datasets.load("usps-clips", usps_dir, "test").quantized())
    assert not np.array_equal(q[:, 0], q[:, 15])  # the digits move


def digit_clips(split, frames=8):
    ds = datasets.load("digits", split=split)
    x = datasets.moving_clips(ds.x[:, 0] / 8.0 - 1.0, frames, np.random.default_rng(7))
    return ds.input.quantize(x.reshape(-1, 1, 8, 8)).reshape(len(ds), frames, 1, 8, 8), ds.y


def test_fit_over_clips_learns_and_the_trained_model_equals_golden():
    torch.manual_seed(0)
    m = small_rnn(channels=4)
    x, y = digit_clips("train")
    xt, yt = digit_clips("test")
    before = train.accuracy(m, xt, yt)
    train.fit(m, x, y, train.Recipe(epochs=3, lr=0.003, batch_size=64), seed=0, progress=False)
    acc = train.accuracy(m, xt, yt)
    assert acc > max(0.25, before + 0.1), (before, acc)  # ten classes: chance is 0.1
    irm = export.to_ir(m)
    assert float(np.mean(golden.predict(irm, xt) == yt)) == acc
    assert np.array_equal(torch_frames(m, xt[:50]), golden.run_sequence(irm, xt[:50]))


def test_the_trained_cell_in_c_equals_golden_on_every_frame(tmp_path):
    torch.manual_seed(1)
    m = small_rnn(channels=2, kernel=5, threshold=1)
    irm = export.to_ir(m)
    x, y = digit_clips("test")
    em = emit.emit(irm, tmp_path / "c", name="cell", kernels="rv32ec")
    hm = host.build(em, tmp_path / "b")
    try:
        res, want, got = check.compare(irm, hm, check.InputSet("clips", x[:40], y[:40], sequence=True))
    finally:
        hm.close()
    assert res.mismatches == 0 and res.compared == 40 * 8


def test_train_and_check_a_config_with_states_on_clips(tmp_path, capsys):
    """The command line end to end on a clip .npz: a graph whose state is a running sum."""
    x, y = digit_clips("train", frames=4)
    np.savez(tmp_path / "clips.npz", x=x[:300], y=y[:300])
    conf = {"epochs": 1, "nodes": [
        {"name": "acc", "type": "Add", "args": {"shift": 1}, "inputs": ["input", "s"]},
        {"name": "flat", "type": "Flatten"},
        {"name": "fc", "type": "QuantLinear", "args": {"in_features": 64, "out_features": 10}}],
        "states": [{"name": "s", "source": "acc", "shape": [1, 8, 8], "init": 0}]}
    (tmp_path / "c.json").write_text(json.dumps(conf))
    out = tmp_path / "m.pt"
    assert cli.main(["train", "--config", str(tmp_path / "c.json"), "--dataset", "npz", "--data",
                     str(tmp_path / "clips.npz"), "-q", "-o", str(out)]) == 0
    assert "clips of 4 frames" in capsys.readouterr().out
    assert cli.main(["check", str(out), "--dataset", "npz", "--data", str(tmp_path / "clips.npz"),
                     "--random", "64", "--frames", "4", "--json", str(tmp_path / "check.json")]) == 0
    rep = json.loads((tmp_path / "check.json").read_text())
    assert rep["mismatches"] == 0 and rep["compared"] == 300 * 4 + 64 + len(check.extreme_inputs((1, 8, 8))) * 4
    assert rep["accuracy"]["golden"] == rep["accuracy"]["c"] == rep["accuracy"]["torch"]
    # a stateless model refuses a clip dataset, and a stateful one a dataset of images
    (tmp_path / "plain.json").write_text(json.dumps({"epochs": 1, "layers": [
        {"type": "Flatten"}, {"type": "QuantLinear", "args": {"in_features": 64, "out_features": 10}}]}))
    assert cli.main(["train", "--config", str(tmp_path / "plain.json"), "--dataset", "npz", "--data",
                     str(tmp_path / "clips.npz"), "-q", "-o", str(tmp_path / "p.pt")]) != 0
    assert "has no state" in capsys.readouterr().err
    assert cli.main(["train", "--config", str(tmp_path / "c.json"), "--dataset", "digits", "-q",
                     "-o", str(tmp_path / "q.pt")]) != 0
    assert "single images" in capsys.readouterr().err
    (tmp_path / "orphan.json").write_text(json.dumps({"states": conf["states"], "arch": "mlp:8"}))
    assert cli.main(["train", "--config", str(tmp_path / "orphan.json"), "--dataset", "digits", "-q",
                     "-o", str(tmp_path / "r.pt")]) != 0
    assert "give 'nodes' too" in capsys.readouterr().err
