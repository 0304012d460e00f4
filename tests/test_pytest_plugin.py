"""The pytest plugin from a user's own project: a folder outside this repository, with only a
model file and a test file, run with `pytest --board ...` (the plugin comes from bitgen's
pytest11 entry point, not from this repository's configuration)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import bitgen
from models_for_tests import mlp

needs_rv = pytest.mark.skipif(shutil.which("riscv64-unknown-elf-gcc") is None, reason="needs gcc-riscv64-unknown-elf")
ROOT = Path(__file__).resolve().parent.parent

# The test shown in README.md ("Test on a board from your own project"), verbatim.
USER_TEST = '''\
import numpy as np
from bitgen.harness.pytest_plugin import assert_matches_golden


def test_model_on_the_board(dut):
    board = dut("model.pt")                      # a model file or a bitgen.ir.Model
    x = np.random.default_rng(0).integers(-128, 128, (20, *board.model.input.shape), dtype=np.int8)
    assert_matches_golden(board, x)              # every output value, bit for bit
'''

HARDWARE_TEST = '''\
import pytest


@pytest.mark.hardware
def test_on_a_real_board(dut):
    dut("model.pt")
'''


def test_the_readme_shows_this_user_test():
    assert USER_TEST in (ROOT / "README.md").read_text()


@pytest.fixture
def project(tmp_path):
    """A user's project: a folder outside the repository, no configuration of its own."""
    d = tmp_path / "project"
    d.mkdir()
    assert ROOT not in d.resolve().parents
    bitgen.save(mlp(widths=(16, 8, 4)), d / "model.pt")
    return d


def _pytest(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS",
                                                             "PYTEST_DISABLE_PLUGIN_AUTOLOAD")}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", *args], cwd=folder,
                          env=env, capture_output=True, text=True, timeout=600)


@needs_rv
def test_a_users_test_passes_on_the_emulated_board_from_outside_the_repository(project):
    (project / "test_board.py").write_text(USER_TEST)
    r = _pytest(project, "--board", "ch32v003-sim")
    assert r.returncode == 0 and "1 passed" in r.stdout, r.stdout + r.stderr
    assert f"rootdir: {project}" in r.stdout  # the user's project, not bitgen's configuration


def test_an_unknown_board_is_a_usage_error_not_an_internal_error(project):
    (project / "test_board.py").write_text(USER_TEST)
    r = _pytest(project, "--board", "nosuch")
    out = r.stdout + r.stderr
    assert r.returncode == 4 and "INTERNALERROR" not in out and "Traceback" not in out, out
    assert "--board nosuch: unknown board 'nosuch' (available: " in out


@pytest.mark.parametrize("argv, why", [
    ([], "run it with --board NAME --port PORT"),
    (["--board", "ch32v003-sim"], "--board ch32v003-sim is emulated"),
    (["--board", "ch32v003"], "--board ch32v003 is real hardware: give its serial port"),
])
def test_a_hardware_test_says_why_it_skips(project, argv, why):
    (project / "test_hw.py").write_text(HARDWARE_TEST)
    r = _pytest(project, *argv)
    assert r.returncode == 0 and "1 skipped" in r.stdout and why in r.stdout, r.stdout + r.stderr


def test_the_plugin_is_registered_once_inside_this_repository():
    """pyproject's `-p bitgen.harness.pytest_plugin` and the entry point name the same plugin."""
    r = subprocess.run([sys.executable, "-m", "pytest", "--co", "-q", "-p", "no:cacheprovider",
                        "tests/test_pytest_plugin.py"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "already registered" not in r.stdout + r.stderr, r.stdout + r.stderr
