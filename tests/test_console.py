"""Progress and notes on stderr: plain lines where stderr is no terminal, nothing with -q, and
notes held until a command has finished (a failing command says one line: its error)."""
import bitgen
from bitgen import console
from bitgen.cli import main
from models_for_tests import mlp


def test_progress_off_a_terminal_is_plain_lines_not_carriage_returns(capsys, monkeypatch):
    monkeypatch.setattr(console, "LINE_INTERVAL_S", 0.0)  # a line at every update
    for _ in console.progress(range(3), desc="comparing", unit="input"):
        pass
    err = capsys.readouterr().err
    assert "\r" not in err and err.splitlines()[0] == "comparing: 1/3 inputs"
    assert err.splitlines()[-1].startswith("comparing: 3/3 inputs in ")


def test_a_short_step_prints_no_progress_and_quiet_prints_none(capsys, monkeypatch):
    bar = console.progress(total=5, desc="x")
    bar.update(5)
    bar.close()
    assert capsys.readouterr().err == ""  # done within LINE_INTERVAL_S: nothing to say
    monkeypatch.setattr(console, "LINE_INTERVAL_S", 0.0)
    console.set_quiet(True)
    try:
        for _ in console.progress(range(3), desc="x"):
            pass
        console.note("not shown")
        assert capsys.readouterr().err == "" and console.take_notes() == []
    finally:
        console.set_quiet(False)


def test_notes_follow_a_finished_command_and_a_failing_one_says_only_its_error(tmp_path, capsys):
    bitgen.save(mlp(widths=(16, 8, 4)), tmp_path / "m.pt")
    assert main(["emit", str(tmp_path / "m.pt"), "-o", str(tmp_path / "c"), "--target", "rv32ec"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == ["bitgen emit: note: the kernel set is now --kernels rv32ec (--target names the back end: c)"]
    assert main(["emit", str(tmp_path / "m.pt"), "-o", str(tmp_path / "c"), "--target", "rv32ec",
                 "--max-arena", "8"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("bitgen emit: error: the arena needs")
    assert main(["emit", str(tmp_path / "m.pt"), "-o", str(tmp_path / "c"), "--target", "rv32ec", "-q"]) == 0
    assert capsys.readouterr().err == ""
