"""`bitgen run --board max78000-sim --target max78000-cnn`: the layer program behind the wire
protocol (bitgen/backends/max78000/protocol.py), on the emulated accelerator, every output
compared with golden like every other board; `bitgen build --board max78000 --target
max78000-cnn` writes the same image, proved on the emulator, and `bitgen flash` takes it."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from bitgen import ir, modelfile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_max78000  # noqa: E402
import test_max78000_program  # noqa: E402

USPS = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "usps"


@pytest.fixture(autouse=True)
def _toolchain():
    test_max78000_program.toolchain_or_skip()


def _bitgen(capsys, *args, cwd):
    return test_max78000._bitgen(capsys, *args, cwd=cwd)


def _usps_chain() -> ir.Model:
    """A random chain for USPS's 1x16x16 digits: conv 3x3 with a bias, conv with max pooling
    (4-bit weights), conv with average pooling, flatten + linear (2-bit, 32-bit output)."""
    rng = np.random.default_rng(0)
    return ir.Model(ir.InputSpec((1, 16, 16), scale=1 / 128), layers=[
        ir.Max78000Layer(weight=rng.integers(-128, 128, (16, 1, 3, 3)), bias=rng.integers(-20, 20, 16), padding=1,
                         activation="relu", output_shift=-1),
        ir.Max78000Layer(weight=rng.integers(-8, 8, (32, 16, 3, 3)), weight_bits=4, padding=1, pool="max",
                         pool_size=2, pool_stride=2, activation="relu", output_shift=-3),
        ir.Max78000Layer(weight=rng.integers(-128, 128, (32, 32, 3, 3)), padding=1, pool="avg", pool_size=2,
                         pool_stride=2, activation="relu", output_shift=-4),
        ir.Max78000Layer(operation="linear", flatten=True, weight=rng.integers(-2, 2, (10, 32 * 4 * 4)), weight_bits=2,
                         output_width=32)], name="usps_random")


def _usps_residual() -> ir.Model:
    """A random residual network for USPS's 1x16x16 digits, the layout of the gesture project
    (examples/ai8x-resnet.toml): a conv 3x3 stem, two residual blocks (conv, conv, Add of the
    block's input: an element-wise add layer reading two earlier tensors), average pooling and
    flatten + linear (32-bit output)."""
    rng = np.random.default_rng(1)

    def conv(c: int, o: int, act: str = "relu", bits: int = 8, shift: int = -3) -> ir.Max78000Layer:
        lo, hi = {8: (-128, 127), 4: (-8, 7)}[bits]
        return ir.Max78000Layer(weight=rng.integers(lo, hi + 1, (o, c, 3, 3)), weight_bits=bits,
                                bias=rng.integers(-16, 16, o), padding=1, activation=act, output_shift=shift)

    add = ir.Max78000Layer(operation="passthrough", eltwise="add", operands=2)
    nodes = [ir.Node(conv(1, 16, shift=-1), (ir.INPUT,), "stem"),
             ir.Node(conv(16, 16, bits=4, shift=0), ("stem",), "b1a"),
             ir.Node(conv(16, 16, "none", bits=4, shift=1), ("b1a",), "b1b"),
             ir.Node(add, ("stem", "b1b"), "res1"),
             ir.Node(conv(16, 16, bits=4, shift=-1), ("res1",), "b2a"),
             ir.Node(conv(16, 16, "none", bits=4, shift=1), ("b2a",), "b2b"),
             ir.Node(add, ("res1", "b2b"), "res2"),
             ir.Node(ir.Max78000Layer(operation="passthrough", pool="avg", pool_size=4, pool_stride=4), ("res2",), "pool"),
             ir.Node(ir.Max78000Layer(operation="linear", flatten=True, weight=rng.integers(-128, 128, (10, 16 * 4 * 4)),
                                      output_width=32), ("pool",), "fc")]
    return ir.Model(ir.InputSpec((1, 16, 16), scale=1 / 128), nodes=nodes, name="usps_residual")


def _run(capsys, tmp_path, model_file: str, *more: str):
    r = _bitgen(capsys, "run", "--board", "max78000-sim", "--target", "max78000-cnn", model_file, *more,
                "--json", "run.json", cwd=tmp_path)
    rep = json.loads((tmp_path / "run.json").read_text()) if (tmp_path / "run.json").is_file() else None
    return r, rep


@pytest.mark.parametrize("seed", [0, 3])
def test_random_chains_run_through_the_protocol_with_no_mismatch(seed, tmp_path, capsys):
    modelfile.save(test_max78000_program.random_chain(seed), tmp_path / "m.pt")
    r, rep = _run(capsys, tmp_path, "m.pt", "--random", "6")
    assert r.returncode == 0, r.stderr
    assert rep["compared"] == 6 and rep["mismatches"] == 0 and rep["target"] == "max78000-cnn"
    assert rep["instructions"]["min"] > 0
    assert rep["emulator"]["cnn_runs"] == 6  # each inference ran on the emulated accelerator


def test_a_1d_chain_runs_through_the_protocol_with_no_mismatch(tmp_path, capsys):
    """conv1d over (C, L) data, more than 64 channels in one layer (random_chain_1d(0))."""
    modelfile.save(test_max78000_program.random_chain_1d(0), tmp_path / "m.pt")
    r, rep = _run(capsys, tmp_path, "m.pt", "--random", "4")
    assert r.returncode == 0, r.stderr
    assert rep["compared"] == 4 and rep["mismatches"] == 0 and rep["emulator"]["cnn_runs"] == 4


# the chain: 4 hardware layers; the residual network: 9 layers and the 2 copies of its residual inputs
@pytest.mark.parametrize("make, hardware_layers", [(_usps_chain, 4), (_usps_residual, 11)])
def test_usps_digits_on_the_emulated_accelerator(make, hardware_layers, tmp_path, capsys):
    if not (USPS / "zip.test.gz").exists():
        pytest.skip("../shared/datasets/usps missing")
    modelfile.save(make(), tmp_path / "m.pt")
    r, rep = _run(capsys, tmp_path, "m.pt", "--dataset", "usps", "--data", str(USPS), "--limit", "10")
    assert r.returncode == 0, r.stderr
    assert rep["compared"] == 10 and rep["mismatches"] == 0
    assert rep["accuracy"] == rep["golden_accuracy"]
    assert rep["emulator"]["cnn_layers"] == 10 * hardware_layers


def test_an_imported_ai8x_checkpoint_runs_through_the_protocol(tmp_path, capsys):
    test_max78000.write_checkpoint(tmp_path / "net-q.pth.tar")
    (tmp_path / "net.yaml").write_text(test_max78000.NET_YAML)
    r = _bitgen(capsys, "import", "net-q.pth.tar", "--yaml", "net.yaml", "-o", "m.pt", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r, rep = _run(capsys, tmp_path, "m.pt", "--random", "4")
    assert r.returncode == 0, r.stderr
    assert rep["compared"] == 4 and rep["mismatches"] == 0


def _flip_a_kernel_word(monkeypatch):
    """Every layer program written from now on has one bit of its first kernel word flipped."""
    from bitgen.backends.max78000 import emit as cnn_emit

    real = cnn_emit.kernel_stream

    def flipped(prog):
        words = real(prog)
        words[2] ^= 0x00010000  # words[0]: the address, [1]: the count, [2]: the first data word
        return words

    monkeypatch.setattr(cnn_emit, "kernel_stream", flipped)


def test_a_flipped_kernel_word_in_the_firmware_is_seen_as_mismatches(tmp_path, capsys, monkeypatch):
    modelfile.save(test_max78000_program._chain(), tmp_path / "m.pt")
    _flip_a_kernel_word(monkeypatch)
    r, rep = _run(capsys, tmp_path, "m.pt", "--random", "4")
    assert r.returncode == 1
    assert rep["compared"] == 4 and rep["mismatches"] >= 1


def test_build_writes_the_same_image_proved_on_the_emulator_and_flash_takes_it(tmp_path, capsys):
    modelfile.save(test_max78000_program._chain(), tmp_path / "m.pt")
    r = _bitgen(capsys, "build", "--board", "max78000", "--target", "max78000-cnn", "m.pt", "-o", "fw",
                "--prove", "3", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "fw" / "build.json").read_text())
    p = rep["proof"]
    assert rep["kernels"] == "max78000-cnn" and p["mismatches"] == 0 and p["compared"] == 3 + p["inputs"]["extreme"]
    assert "max78000-sim" in p["method"]
    # the image `bitgen run` builds for the emulated board is this one, byte for byte
    r, _ = _run(capsys, tmp_path, "m.pt", "--random", "1", "--keep", "run-fw")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "run-fw" / "firmware.bin").read_bytes() == (tmp_path / "fw" / "firmware.bin").read_bytes()
    r = _bitgen(capsys, "flash", "--board", "max78000", "--target", "max78000-cnn", "fw", "--dry-run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = _bitgen(capsys, "flash", "--board", "max78000", "--target", "c", "fw", "--dry-run", cwd=tmp_path)
    assert r.returncode != 0 and "holds a --target max78000-cnn image, not c" in r.stderr
    # an edited layer program is not the proved one
    src = tmp_path / "fw" / "src" / "weights.h"
    src.write_text(src.read_text() + "\n")
    r = _bitgen(capsys, "flash", "--board", "max78000", "fw", "--dry-run", cwd=tmp_path)
    assert r.returncode != 0 and "differs from the sources proved" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_build_refuses_an_image_that_differs_from_golden_on_the_emulator(tmp_path, capsys, monkeypatch):
    modelfile.save(test_max78000_program._chain(), tmp_path / "m.pt")
    _flip_a_kernel_word(monkeypatch)
    r = _bitgen(capsys, "build", "--board", "max78000", "--target", "max78000-cnn", "m.pt", "-o", "fw",
                "--prove", "3", cwd=tmp_path)
    assert r.returncode != 0 and "differs from the golden model" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "fw" / "firmware.bin").exists()


@pytest.mark.parametrize("args, message", [
    (["run", "--board", "ch32v003-sim", "--random", "1"], "--target max78000-cnn runs on the MAX78000's CNN"),
    (["run", "--board", "max78000-sim", "--kernels", "generic", "--random", "1"], "--kernels chooses C kernels"),
    (["bench", "--board", "max78000-sim"], "this command does not take them"),
])
def test_what_the_target_does_not_take_is_refused_in_one_line(args, message, tmp_path, capsys):
    modelfile.save(test_max78000_program._chain(), tmp_path / "m.pt")
    r = _bitgen(capsys, *args[:1], "--target", "max78000-cnn", "m.pt", *args[1:], cwd=tmp_path)
    assert r.returncode != 0 and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
