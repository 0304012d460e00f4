"""The electronic die (issue 13): the dice data set, decoder training, bitgen generate with golden
and on an emulated board, and its one-line errors. Small on purpose: a decoder of 2 channels,
one epoch, a judge trained on a few faces for one epoch."""
import json
import shutil

import numpy as np
import pytest

import bitgen
from bitgen import datasets, dice
from bitgen.cli import main

needs_rv = pytest.mark.skipif(shutil.which("riscv64-unknown-elf-gcc") is None, reason="needs gcc-riscv64-unknown-elf")

TINY = """
task = "decoder"
epochs = 1
batch_size = 128
[[nodes]]
name = "fc"
type = "QuantLinear"
args = { in_features = 7, out_features = 32, encoding = "4bitsym" }
[[nodes]]
name = "fc_q"
type = "Requant"
args = { channels = 32 }
[[nodes]]
name = "fc_relu"
type = "ReLU"
[[nodes]]
name = "grid"
type = "Unflatten"
args = { dim = 1, unflattened_size = [2, 4, 4] }
[[nodes]]
name = "up1"
type = "QuantConvTranspose2d"
args = { in_channels = 2, out_channels = 2, kernel_size = 3, stride = 2, padding = 1, output_padding = 1 }
[[nodes]]
name = "up1_q"
type = "Requant"
args = { channels = 2 }
[[nodes]]
name = "up1_relu"
type = "ReLU"
[[nodes]]
name = "up2"
type = "QuantConvTranspose2d"
args = { in_channels = 2, out_channels = 2, kernel_size = 3, stride = 2, padding = 1, output_padding = 1 }
[[nodes]]
name = "up2_q"
type = "Requant"
args = { channels = 2 }
[[nodes]]
name = "up2_relu"
type = "ReLU"
[[nodes]]
name = "up3"
type = "QuantConvTranspose2d"
args = { in_channels = 2, out_channels = 1, kernel_size = 3, stride = 2, padding = 1, output_padding = 1, encoding = "8bit" }
[[nodes]]
name = "face_q"
type = "Requant"
args = { rms_factor = 1.5 }
"""


def test_dice_is_deterministic_and_splits_differ():
    a = datasets.load("dice", split="test")
    b = datasets.load("dice", split="test")
    train = datasets.load("dice", split="train")
    assert a.x.shape == (dice.SPLIT_SIZES["test"], 1, 32, 32) and a.x.dtype == np.float32
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y) and np.array_equal(a.angle, b.angle)
    assert a.labels == ["1", "2", "3", "4", "5", "6"] and set(a.y.tolist()) == set(range(6))
    assert np.all((0 <= a.angle) & (a.angle < 90)) and len(np.unique(np.round(a.angle, 3))) > 1000
    assert not np.array_equal(train.x[:50], a.x[:50]) and not np.isin(a.angle, train.angle).any()
    assert a.x.min() == -1.0 and a.x.max() == 1.0
    # never clipped: the outermost pixels are background at every angle
    border = np.concatenate([a.x[:, 0, 0], a.x[:, 0, -1], a.x[:, 0, :, 0], a.x[:, 0, :, -1]], axis=1)
    assert np.all(border == -1.0)


def test_render_pips_and_angle():
    one, six = dice.render(1, 30.0), dice.render(6, 30.0)
    # more pips, more black on the face
    assert (one < 0).sum() < (six < 0).sum()
    assert np.array_equal(dice.render(4, 0.0), dice.render(4, 0.0))
    assert not np.array_equal(dice.render(2, 10.0), dice.render(2, 40.0))
    with pytest.raises(ValueError):
        dice.render(7, 0.0)


def test_decoder_inputs_and_pixels():
    x = dice.decoder_inputs(np.array([0, 5]), np.array([-1.0, 0.25]))
    assert x.dtype == np.int8 and x.tolist() == [[127, 0, 0, 0, 0, 0, -127], [0, 0, 0, 0, 0, 127, 32]]
    assert dice.angle_of(dice.latent_of(30.0)) == pytest.approx(30.0)
    assert dice.pixels(np.array([-1.0, 0.0, 1.0])).tolist() == [0, 64, 127]
    assert dice.to_grey(np.array([-5, 0, 127], dtype=np.int8)).tolist() == [0, 0, 254]


@pytest.fixture(scope="module")
def decoder(tmp_path_factory):
    d = tmp_path_factory.mktemp("die")
    conf = d / "tiny.toml"
    conf.write_text(TINY)
    out = d / "die.pt"
    assert main(["train", "--config", str(conf), "--dataset", "dice", "--seed", "0", "-o", str(out)]) == 0
    judge = d / "judge.pt"
    bitgen.save(dice.train_judge(seed=0, n=120, epochs=1, progress=False), judge, name="judge")
    return out, judge


def test_train_decoder_writes_a_decoder(decoder):
    from bitgen import modelfile

    m = modelfile.load(decoder[0]).ir
    assert m.meta["task"] == "decoder" and m.meta["decoder"]["labels"] == dice.LABELS
    assert tuple(m.input.shape) == (7,) and tuple(m.validate()[-1].shape) == (1, 32, 32)
    assert 0 < m.meta["test_mse"] < 1


def test_generate_golden(decoder, tmp_path):
    from PIL import Image

    model, judge = decoder
    js = tmp_path / "gen.json"
    assert main(["generate", str(model), "--sheet", "--angles", "3", "-o", str(tmp_path / "sheet.png"),
                 "--json", str(js), "--judge", str(judge)]) == 0
    rep = json.loads(js.read_text())
    assert rep["report"] == "generate" and rep["images"] == 18 and rep["mismatches"] == 0
    assert 0.0 <= rep["classified_as_requested"] <= 1.0 and rep["instructions"] is None
    assert [p["label"] for p in rep["per_image"]] == [s for s in dice.LABELS for _ in range(3)]
    w, h = Image.open(tmp_path / "sheet.png").size
    assert w > 3 * 32 * 4 and h > 6 * 32 * 4
    assert main(["generate", str(model), "--label", "3", "--latent", "0.25", "-o", str(tmp_path / "die.png"),
                 "--judge", str(judge)]) == 0
    assert Image.open(tmp_path / "die.png").size == (128, 128)


@needs_rv
def test_generate_on_a_board_is_bit_exact(decoder, tmp_path):
    model, judge = decoder
    js = tmp_path / "gen.json"
    assert main(["generate", str(model), "--board", "rv32ec-sim", "--sheet", "--angles", "1",
                 "-o", str(tmp_path / "sheet.png"), "--json", str(js), "--judge", str(judge)]) == 0
    rep = json.loads(js.read_text())
    assert rep["images"] == 6 and rep["mismatches"] == 0 and rep["board"]["name"] == "rv32ec-sim"
    assert 0 < rep["instructions"]["min"] <= rep["instructions"]["max"]
    assert all(p["instructions"] > 0 and p["mismatches"] == 0 for p in rep["per_image"])


@needs_rv
def test_generate_on_the_ch32v003_in_streamed_tiles(decoder, tmp_path, capsys):
    """Layer by layer the decoder does not fit the CH32V003's 2 KB (`--tiling off`: a one-line
    refusal, no picture); in tiles with its output streamed it does, every pixel as golden's."""
    model, judge = decoder
    rc = main(["generate", str(model), "--board", "ch32v003-sim", "--label", "1", "-o", str(tmp_path / "d.png"),
               "--judge", str(judge), "--tiling", "off"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "does not fit ch32v003" in err[0]
    assert not (tmp_path / "d.png").exists()
    js = tmp_path / "gen.json"
    assert main(["generate", str(model), "--board", "ch32v003-sim", "--label", "4", "-o", str(tmp_path / "d.png"),
                 "--json", str(js), "--judge", str(judge)]) == 0
    rep = json.loads(js.read_text())
    assert rep["images"] == 1 and rep["mismatches"] == 0 and rep["instructions"]["min"] > 0
    assert rep["board"]["sram_bytes"] <= 2048 and rep["board"]["tiling"]["runs"][0]["stream"]


@pytest.mark.parametrize("argv, says", [
    (["--label", "7"], "the decoder draws labels 1, 2, 3, 4, 5, 6"),
    (["--label", "0"], "the decoder draws labels"),
    ([], "give --label"),
    (["--sheet", "--label", "2"], "without --label"),
    (["--label", "2", "--latent", "1.5"], "outside the latent's range"),
])
def test_generate_bad_requests(decoder, tmp_path, capsys, argv, says):
    rc = main(["generate", str(decoder[0]), "-o", str(tmp_path / "x.png"), "--judge", str(decoder[1])] + argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and says in err[0]


def test_generate_refuses_missing_model_and_classifiers(decoder, tmp_path, capsys):
    assert main(["generate", str(tmp_path / "none.pt"), "--label", "1", "-o", str(tmp_path / "x.png")]) == 2
    assert "no such file" in capsys.readouterr().err
    # the judge is a classifier, not a decoder
    assert main(["generate", str(decoder[1]), "--label", "1", "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a decoder" in err[0]
