"""model.pt written from a QAT model: round trip, pickled modules, and bad input."""
import numpy as np
import pytest
import torch
from torch import nn as tnn

import bitgen
from bitgen.nn import export
from bitgen import golden, ir, modelfile
from bitgen import nn as bnn
from bitgen.cli import main


def _qat_model(norm: str = "static") -> tnn.Sequential:
    torch.manual_seed(0)
    n = (lambda c: bnn.Requant(c)) if norm == "static" else (lambda c: bnn.ShiftNorm())
    m = tnn.Sequential(bnn.QuantConv2d(1, 4, 3, padding=1, encoding="ternary"), n(4), tnn.ReLU(),
                       tnn.MaxPool2d(2), tnn.Flatten(), bnn.QuantLinear(16, 5, encoding="fp130", bias=True))
    m.train()
    m(torch.randint(-128, 128, (32, 1, 4, 4)).float())  # calibrate the norm
    m.eval()
    m.input_spec = ir.InputSpec((1, 4, 4), scale=0.1)
    return m


@pytest.mark.parametrize("norm", ["static", "shiftnorm"])
def test_qat_model_round_trips_through_model_pt(tmp_path, norm):
    m = _qat_model(norm)
    path = tmp_path / "m.pt"
    saved = bitgen.save(m, path, labels=list("abcde"), name="tiny", meta={"note": "x"})
    torch.load(path, weights_only=True)  # opening never needs code from the file
    loaded = bitgen.load(path)
    assert loaded.ir.digest() == saved.digest() == export.to_ir(m, labels=list("abcde")).digest()
    assert loaded.ir.labels == list("abcde") and loaded.ir.input.scale == 0.1
    assert loaded.ir.meta["note"] == "x" and loaded.ir.name == "tiny"
    x = np.random.default_rng(0).integers(-128, 128, (100, 1, 4, 4)).astype(np.int8)
    with torch.no_grad():
        t = loaded.torch_model(torch.from_numpy(x).float()).numpy()
    np.testing.assert_array_equal(t, golden.run(loaded.ir, x))


def test_pickled_sequential_of_supported_layers_exports_with_trust(tmp_path):
    m = _qat_model()
    path = tmp_path / "pickled.pt"
    torch.save(m, path)
    with pytest.raises(modelfile.ModelFileError, match="--trust-pickle"):
        bitgen.load(path)
    loaded = bitgen.load(path, trust_pickle=True)
    assert loaded.ir.digest() == export.to_ir(m).digest()
    # a pickled plain Sequential without an input spec takes the shape from the caller
    plain = tnn.Sequential(*list(m))
    torch.save(plain, path)
    with pytest.raises(export.ExportError, match="input shape is unknown"):
        bitgen.load(path, trust_pickle=True)
    got = bitgen.load(path, trust_pickle=True, input=ir.InputSpec((1, 4, 4)))
    assert [layer.kind for layer in got.ir.layers] == [layer.kind for layer in loaded.ir.layers]
    out = tmp_path / "c"
    assert main(["emit", str(path), "--trust-pickle", "--input-shape", "1,4,4", "-o", str(out)]) == 0
    assert (out / "model.c").exists()


def _one_line_error(capsys, argv, match):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and match in err, err


def test_pickled_module_with_unsupported_layer_is_one_line_error(tmp_path, capsys):
    path = tmp_path / "rnn.pt"
    m = tnn.Sequential(tnn.Flatten(), bnn.QuantLinear(16, 8))
    m.add_module("rnn", tnn.GRU(8, 8))
    torch.save(m, path)
    _one_line_error(capsys, ["emit", str(path), "--trust-pickle", "--input-shape", "16", "-o",
                             str(tmp_path / "c")], "layer 2 'rnn': unsupported op GRU")


def test_saving_an_unsupported_model_fails_before_writing(tmp_path):
    m = tnn.Sequential(bnn.QuantLinear(4, 4), tnn.Tanh())
    with pytest.raises(export.ExportError, match="layer 1 '1': unsupported op Tanh"):
        bitgen.save(m, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_bad_model_files_are_one_line_errors(tmp_path, capsys):
    m = _qat_model()
    good = tmp_path / "good.pt"
    bitgen.save(m, good)
    _one_line_error(capsys, ["emit", str(tmp_path / "missing.pt"), "-o", str(tmp_path / "c")], "no such file")
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(good.read_bytes()[:300])
    _one_line_error(capsys, ["emit", str(trunc), "-o", str(tmp_path / "c")], "not a readable model file")
    other = tmp_path / "other.pt"
    torch.save({"state_dict": m.state_dict()}, other)
    _one_line_error(capsys, ["check", str(other)], "not a bitgen model")
    pickled = tmp_path / "pickled.pt"
    torch.save(m, pickled)
    _one_line_error(capsys, ["emit", str(pickled), "-o", str(tmp_path / "c")], "--trust-pickle")


def test_dataset_that_does_not_fit_the_model_is_one_line_error(tmp_path, capsys):
    path = tmp_path / "m.pt"
    bitgen.save(_qat_model(), path)  # input (1, 4, 4); digits are 8x8
    _one_line_error(capsys, ["check", str(path), "--dataset", "digits"], "does not fit the model")
