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


def test_check_every_kernel_set(model_file, tmp_path, capsys):
    for kernels in ("rv32ec", "rv32emc", "cortex-m4"):
        js = tmp_path / f"{kernels}.json"
        assert main(["check", str(model_file), "--random", "300", "--kernels", kernels, "--json", str(js)]) == 0
        assert f"{kernels} kernels" in capsys.readouterr().out
        rep = json.loads(js.read_text())
        assert rep["kernels"] == kernels and rep["target"] == "c" and rep["mismatches"] == 0


def test_check_json_names_kernels_and_back_end(model_file, tmp_path):
    js = tmp_path / "check.json"
    assert main(["check", str(model_file), "--random", "10", "--json", str(js)]) == 0
    rep = json.loads(js.read_text())
    assert rep["kernels"] == "generic" and rep["target"] == "c" and rep["compared"] == 15


@pytest.mark.parametrize("argv", [["emit", "-o", "OUT"], ["check", "--random", "10", "--json", "OUT/x.json"]])
def test_target_with_a_kernel_set_is_kernels_with_one_note(model_file, tmp_path, capsys, argv):
    argv = [a.replace("OUT", str(tmp_path / "o")) for a in argv]
    assert main([argv[0], str(model_file), *argv[1:], "--target", "rv32ec"]) == 0
    out, err = capsys.readouterr()
    assert err == "bitgen " + argv[0] + ": note: the kernel set is now --kernels rv32ec (--target names the back end: c)\n"
    if argv[0] == "emit":
        (report,) = (tmp_path / "o").glob("*.json")
        emitted = json.loads(report.read_text())
        assert emitted.get("kernels", emitted.get("target")) == "rv32ec"  # the emitter's key is being renamed
    else:
        assert json.loads((tmp_path / "o" / "x.json").read_text())["kernels"] == "rv32ec"
    assert main([argv[0], str(model_file), *argv[1:], "--target", "c", "--kernels", "cortex-m4"]) == 0
    assert capsys.readouterr().err == ""  # --target c: the back end, no note


@pytest.mark.parametrize("command", ["emit", "check", "build", "bench", "run"])
@pytest.mark.parametrize("flags, match", [
    (["--target", "avr"], "unknown --target 'avr' (back ends: c; kernel sets go in --kernels: generic, rv32ec"),
    (["--kernels", "avr"], "unknown kernel set 'avr' for --kernels (available: generic, rv32ec"),
    (["--target", "rv32ec", "--kernels", "generic"], "--target rv32ec and --kernels generic disagree"),
])
def test_kernel_options_are_checked_on_every_command(tmp_path, capsys, command, flags, match):
    argv = [command, str(tmp_path / "nope.pt"), *flags]
    if command in ("build", "bench", "run"):
        argv += ["--board", "ch32v003-sim"]
    if command == "emit":
        argv += ["-o", str(tmp_path / "c")]
    _one_line_error(capsys, argv, match)


def test_check_board_checks_its_first_kernel_set(model_file, tmp_path, capsys):
    js = tmp_path / "check.json"
    assert main(["check", str(model_file), "--random", "10", "--board", "ch32v003", "--json", str(js)]) == 0
    assert json.loads(js.read_text())["kernels"] == "rv32ec" and "rv32ec kernels" in capsys.readouterr().out
    _one_line_error(capsys, ["check", str(model_file), "--board", "ch32v003", "--kernels", "cortex-m4"],
                    "board ch32v003 builds with rv32ec, generic kernels, not cortex-m4")


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
    _one_line_error(capsys, ["check", str(path)], "not a model file")


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
