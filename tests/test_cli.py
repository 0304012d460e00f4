"""The emit and check commands, and the one-line errors for bad input."""
import json
import subprocess
import sys

import pytest
import torch

import bitgen
from bitgen.cli import main
from models_for_tests import every_kernel_model


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "model.pt"
    bitgen.save(every_kernel_model(), path)
    return path


def test_emit_writes_header_source_runtime_and_report(model_file, tmp_path, capsys):
    out = tmp_path / "c"
    assert main(["emit", str(model_file), "-o", str(out), "--name", "net"]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"net.h", "net.c", "net.json", "bg_runtime.h", "bg_linear.c", "bg_conv2d.c"} <= names
    assert "weights" in capsys.readouterr().out


def test_check_reports_bit_exact_and_writes_json(model_file, tmp_path, capsys):
    js = tmp_path / "check.json"
    assert main(["check", str(model_file), "--random", "2000", "--json", str(js)]) == 0
    rep = json.loads(js.read_text())
    assert rep["mismatches"] == 0 and rep["compared"] == 2005
    assert set(rep["accuracy"]) == {"torch", "golden", "c"}
    assert "bit-exact" in capsys.readouterr().out


def test_check_every_target(model_file, capsys):
    for target in ("rv32ec", "rv32emc", "cortex-m4"):
        assert main(["check", str(model_file), "--random", "300", "--target", target]) == 0
        assert f"{target} kernels" in capsys.readouterr().out


def _one_line_error(capsys, argv, match):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1, err
    assert match in err, err


def test_missing_model(tmp_path, capsys):
    _one_line_error(capsys, ["emit", str(tmp_path / "nope.pt"), "-o", str(tmp_path)], "no such file")


def test_truncated_model(model_file, tmp_path, capsys):
    data = model_file.read_bytes()
    model_file.write_bytes(data[: len(data) // 2])
    _one_line_error(capsys, ["emit", str(model_file), "-o", str(tmp_path / "c")], "not a readable model file")


def test_file_that_is_not_a_bitgen_model(tmp_path, capsys):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    _one_line_error(capsys, ["check", str(path)], "not a bitgen model")
    path.write_text("hello")
    _one_line_error(capsys, ["check", str(path)], "not a readable model file")


def test_pickled_module_needs_trust_pickle(tmp_path, capsys):
    path = tmp_path / "pickled.pt"
    torch.save(torch.nn.Sequential(torch.nn.Flatten()), path)
    _one_line_error(capsys, ["emit", str(path), "-o", str(tmp_path / "c")], "--trust-pickle")
    assert not (tmp_path / "c").exists()  # nothing written


def test_console_script_prints_no_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "bitgen.cli", "check", str(tmp_path / "x.pt")],
                       capture_output=True, text=True)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1
