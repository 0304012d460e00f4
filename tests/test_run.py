"""bitgen run end to end: emulated boards give the golden outputs, the report holds what it
promises, and a wrong model or a wrong output makes the exit status non-zero."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bitgen.harness import boards, firmware
from bitgen import cli, golden, modelfile
from bitgen.harness.session import Session
from bitgen.sim import start
from models_for_tests import mlp

USPS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "usps"
needs_rv = pytest.mark.skipif(shutil.which("riscv64-unknown-elf-gcc") is None, reason="needs gcc-riscv64-unknown-elf")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "usps_mlp.pt"
    modelfile.save(mlp(seed=11, widths=(256, 64, 64, 10)), path)
    return path


@needs_rv
def test_run_on_ch32v003_sim_with_usps(model_path, tmp_path, capsys):
    if not USPS.is_dir():
        pytest.skip(f"no USPS data at {USPS}")
    out = tmp_path / "run.json"
    rc = cli.main(["run", "--board", "ch32v003-sim", str(model_path), "--dataset", "usps", "--data", str(USPS),
                   "--limit", "24", "--random", "4", "--json", str(out)])
    assert rc == 0, capsys.readouterr()
    rep = json.loads(out.read_text())
    assert rep["compared"] == 28 and rep["mismatches"] == 0
    assert rep["accuracy"] == rep["golden_accuracy"] is not None
    c = rep["instructions"]
    assert 0 < c["min"] <= c["median"] <= c["max"]
    assert rep["instruction_source"].startswith("retired instructions")
    assert rep["build"]["flash_bytes"] <= rep["build"]["flash_budget"] == 16384
    assert rep["build"]["sram_bytes"] <= rep["build"]["sram_budget"] == 2048
    # the static bound from the call graph holds what the emulator saw the stack reach
    stack = rep["build"]["stack"]
    assert stack["bounded"] and "mlp_run" in stack["path"]
    assert 0 < rep["emulator"]["stack_peak"] <= stack["bytes"] <= stack["reserved"]
    assert "bit-exact: every output of 28 inputs" in capsys.readouterr().out


def test_run_on_host_board(model_path, tmp_path):
    out = tmp_path / "run.json"
    assert cli.main(["run", "--board", "host", str(model_path), "--random", "10", "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["compared"] == 10 and rep["mismatches"] == 0 and rep["accuracy"] is None
    assert "nanoseconds" in rep["instruction_source"]


def test_run_kernels_option_builds_that_kernel_set(model_path, tmp_path, capsys):
    out = tmp_path / "run.json"
    argv = ["run", "--board", "host", str(model_path), "--random", "3", "--json", str(out)]
    assert cli.main([*argv, "--kernels", "rv32ec"]) == 0
    assert json.loads(out.read_text())["build"]["kernels"] == "rv32ec"
    assert cli.main([*argv, "--target", "cortex-m4"]) == 0
    assert json.loads(out.read_text())["build"]["kernels"] == "cortex-m4"
    assert "note: the kernel set is now --kernels cortex-m4" in capsys.readouterr().err
    rc = cli.main(["run", "--board", "ch32v003", "--port", "loop://", str(model_path), "--random", "1",
                   "--kernels", "generic"])
    err = capsys.readouterr().err
    assert rc != 0 and err.count("\n") == 1 and "--kernels builds the firmware of an emulated board" in err


def test_any_output_mismatch_exits_non_zero(model_path, monkeypatch, capsys):
    real = golden.run

    def off_by_one(model, x, **kw):
        y = real(model, x, **kw)
        y[-1, 0] += 1
        return y

    monkeypatch.setattr(golden, "run", off_by_one)
    rc = cli.main(["run", "--board", "host", str(model_path), "--random", "3"])
    out = capsys.readouterr().out
    assert rc == 1 and "compared 3 inputs: 1 mismatches" in out and "MISMATCH at input 2" in out


@needs_rv
def test_model_hash_mismatch_exits_non_zero(model_path, tmp_path, capsys):
    """A board (here the emulated one, reached on its port like a real one) that runs another
    model than the one given is caught before any input is sent."""
    other = mlp(seed=12, widths=(256, 64, 64, 10))
    fw = firmware.build(other, boards.get("ch32v003"), tmp_path / "fw", name="model")
    with start(boards.get("ch32v003-sim"), fw) as em:
        rc = cli.main(["run", "--board", "ch32v003", "--port", em.url, str(model_path), "--random", "2"])
    err = capsys.readouterr().err
    assert rc != 0
    assert f"the board runs model 'model' {other.digest()[:16]}" in err
    assert modelfile.load(model_path).ir.digest()[:16] in err


def test_real_board_needs_a_port(model_path, capsys):
    rc = cli.main(["run", "--board", "ch32v003", str(model_path), "--random", "1"])
    assert rc != 0 and "give its serial port" in capsys.readouterr().err


def test_nothing_to_run_is_a_usage_error(model_path, capsys):
    rc = cli.main(["run", "--board", "host", str(model_path)])
    assert rc != 0 and "nothing to run" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                    reason="needs qemu-system-arm and gcc-arm-none-eabi")
def test_qemu_cortex_m_board_matches_golden(tmp_path):
    model = mlp(seed=13, widths=(64, 16, 10))
    x = np.random.default_rng(13).integers(-128, 128, (4, 64)).astype(np.int8)
    expect = golden.run(model, x)
    with Session(boards.get("mps2-an386"), model, workdir=str(tmp_path)) as s:
        assert s.info.board == "mps2-an386"
        for i in range(len(x)):
            r = s.link.classify(x[i])
            assert np.array_equal(r.outputs, expect[i]) and r.cycles > 0


@pytest.mark.hardware
def test_board_matches_golden(dut):
    """pytest --board ch32v003 --port /dev/ttyACM0 -m hardware: flashes the board, then compares."""
    model = mlp(seed=21, widths=(256, 64, 64, 10))
    session = dut(model, timeout=5.0)
    x = np.random.default_rng(21).integers(-128, 128, (20, 256)).astype(np.int8)
    x[0], x[1] = -128, 127
    expect = golden.run(model, x)
    for i in range(len(x)):
        r = session.link.classify(x[i])
        assert np.array_equal(r.outputs, expect[i]) and r.cls == golden.argmax(expect[i : i + 1])[0]


@needs_rv
def test_an_emulated_board_is_an_executor_check_compares_like_the_host(tmp_path):
    """check.compare takes any back end's executor: here the emulated CH32V003 running the
    protocol firmware, against golden, with the same result object as the host build."""
    from bitgen import check

    model = mlp(seed=17, widths=(64, 16, 10))
    inputs = check.InputSet("random", check.random_inputs(model.input.shape, 6, seed=3))
    with Session(boards.get("ch32v003-sim"), model, workdir=str(tmp_path)) as s:
        res, gold, pred = check.compare(model, s, inputs)
    assert res.compared == 6 and res.mismatches == 0
    assert np.array_equal(gold, pred)


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="needs gcc-arm-none-eabi")
def test_cortex_m_stack_bound_counts_the_reset_handler(tmp_path):
    """On the MAX78000 the reset handler is C with a frame of its own under main's: the bound
    starts there, and holds what the emulator saw (before, it started at main and was 8 B short)."""
    path = tmp_path / "m.pt"
    modelfile.save(mlp(seed=5, widths=(64, 32, 10)), path)
    out = tmp_path / "run.json"
    assert cli.main(["run", "--board", "max78000-sim", str(path), "--random", "3", "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    stack = rep["build"]["stack"]
    assert stack["path"][0] == "reset_handler" and stack["path"][1] == "main"
    assert 0 < rep["emulator"]["stack_peak"] <= stack["bytes"]


@needs_rv
def test_a_model_with_state_runs_sequences_on_the_emulated_ch32v003(tmp_path):
    """bg-reset starts each sequence; every frame of every sequence equals golden (check.compare
    with the board session as the executor)."""
    from bitgen import check, ir

    rng = np.random.default_rng(2)
    nodes = [ir.Node(ir.Add(shift=1), ["input", "h"], "h_new"),
             ir.Node(ir.Linear(weight=rng.integers(-3, 4, (4, 16)), encoding="4bit"), ["h_new"], "y")]
    model = ir.Model(ir.InputSpec((16,)), nodes=nodes, states=[ir.State("h", (16,), "int8", "h_new", init=-5)])
    seqs = check.as_sequences(check.random_inputs((16,), 3 * 16, seed=4), 16)
    with Session(boards.get("ch32v003-sim"), model, workdir=str(tmp_path)) as s:
        res, _, _ = check.compare(model, s, check.InputSet("random", seqs, sequence=True))
        assert res.compared == 48 and res.mismatches == 0
        # a second run of the first sequence gives the same frames: reset really resets
        y, _, _ = s.run_sequence(seqs[:1])
    assert np.array_equal(y[0], golden.run_sequence(model, seqs[:1])[0].reshape(16, -1))


@needs_rv
def test_bitgen_run_streams_sequences_of_frames(tmp_path, capsys):
    from bitgen import ir

    rng = np.random.default_rng(3)
    nodes = [ir.Node(ir.Sub(shift=1), ["input", "h"], "h_new"),
             ir.Node(ir.Linear(weight=rng.integers(-3, 4, (4, 16)), encoding="4bit"), ["h_new"], "y")]
    path = tmp_path / "rnn.pt"
    modelfile.save(ir.Model(ir.InputSpec((16,)), nodes=nodes, states=[ir.State("h", (16,), "int8", "h_new")]), path)
    out = tmp_path / "run.json"
    assert cli.main(["run", "--board", "ch32v003-sim", str(path), "--random", "32", "--frames", "8",
                     "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["compared"] == 32 and rep["mismatches"] == 0
    assert cli.main(["run", "--board", "ch32v003-sim", str(path), "--random", "30", "--frames", "8"]) == 2
    assert "not whole sequences" in capsys.readouterr().err
