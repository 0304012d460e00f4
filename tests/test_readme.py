"""README.md's examples run as written: the bitgen.nn example (define, train, save) and the
commands that deploy its model."""
from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path


from bitgen import cli

README = Path(__file__).resolve().parent.parent / "README.md"


def example(name: str) -> str:
    """The fenced block after ``<!-- example: NAME -->`` in README.md."""
    m = re.search(rf"<!-- example: {re.escape(name)} -->\n```[a-z]*\n(.*?)```", README.read_text(), re.S)
    assert m, f"README.md has no example '{name}'"
    return m.group(1)


def test_the_bitgen_nn_example_defines_trains_saves_and_deploys(tmp_path, monkeypatch, capsys):
    (tmp_path / "example.py").write_text(example("nn"))
    r = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    acc = float(re.search(r"golden accuracy (\S+)", r.stdout).group(1))
    assert acc > 0.8 and (tmp_path / "out" / "digits.pt").is_file()

    monkeypatch.chdir(tmp_path)
    for line in example("nn-deploy").splitlines():
        argv = shlex.split(line.split("#")[0])
        if argv[:2] == ["bitgen", "run"] and shutil.which("riscv64-unknown-elf-gcc") is None:
            continue  # the emulated board needs its cross compiler
        assert argv[0] == "bitgen" and cli.main(argv[1:]) == 0, line
    rep = json.loads((tmp_path / "out" / "check.json").read_text())
    assert rep["mismatches"] == 0 and rep["accuracy"]["golden"] == rep["accuracy"]["c"] > 0.8
    header = (tmp_path / "out" / "c" / "digits.h").read_text()
    assert "#define DIGITS_INPUT_SCALE 0.12598425196850394" in header  # 16 / 127: the digits' spec
    assert "#define DIGITS_INPUT_ZERO_POINT 0" in header
