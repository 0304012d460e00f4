"""pytest plugin: test a model on a board from your own project, emulated in CI, real on a desk.

Installed with bitgen (a ``pytest11`` entry point), so in any project::

    pytest --board ch32v003-sim                                  # the emulated CH32V003
    pytest --board ch32v003 --port /dev/ttyACM0                  # a real one, flashed by the test
    pytest --board ch32v003 --port /dev/ttyACM0 --no-flash       # ... already flashed

A complete test (``test_board.py`` beside your ``model.pt``)::

    import numpy as np
    from bitgen.harness.pytest_plugin import assert_matches_golden

    def test_model_on_the_board(dut):
        board = dut("model.pt")                      # a model file or a bitgen.ir.Model
        x = np.random.default_rng(0).integers(-128, 128, (20, *board.model.input.shape), dtype=np.int8)
        assert_matches_golden(board, x)              # every output value, bit for bit

``dut(model)`` builds the firmware of the model for ``--board`` (default ``ch32v003-sim``; for a
real board it also flashes it unless ``--no-flash``), starts the emulator or opens ``--port``,
checks that the board runs that model, and returns the connected
:class:`bitgen.harness.session.Session` (``.model``, ``.board``, ``.link``, ``.info``).
Tests marked ``hardware`` run only with a real ``--board`` and its ``--port``, and otherwise
skip saying which is missing. An unknown ``--board`` is a usage error, before any test runs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

DEFAULT_BOARD = "ch32v003-sim"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("bitgen boards")
    group.addoption("--board", default=None, help=f"board to run the board tests on (default {DEFAULT_BOARD}; "
                                                  "a real one, e.g. ch32v003, needs --port)")
    group.addoption("--port", default=None, help="serial port of that board (e.g. /dev/ttyACM0)")
    group.addoption("--no-flash", action="store_true", help="the board is already flashed with the test model")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "hardware: needs a real board (run with --board NAME --port PORT)")
    name = config.getoption("--board")
    if name is not None:
        from bitgen.harness import boards
        from bitgen.errors import BitgenError

        try:
            boards.get(name)
        except BitgenError as e:
            raise pytest.UsageError(f"--board {name}: {e}") from None


def _board(config: pytest.Config):
    from bitgen.harness import boards

    return boards.get(config.getoption("--board") or DEFAULT_BOARD)


def _hardware_skip_reason(config: pytest.Config) -> str | None:
    """Why a hardware test cannot run with these options (None: it can)."""
    name = config.getoption("--board")
    if not name:
        return "a hardware test: run it with --board NAME --port PORT (a real board)"
    if _board(config).is_emulated:
        return f"a hardware test: --board {name} is emulated; give a real board and its --port"
    if not config.getoption("--port"):
        return f"--board {name} is real hardware: give its serial port (--port /dev/ttyACM0, or a pyserial URL)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    why = _hardware_skip_reason(config)
    if why is None:
        return
    skip = pytest.mark.skip(reason=why)
    for item in items:
        if "hardware" in item.keywords:
            item.add_marker(skip)


def _ir(model: Any):
    """A bitgen.ir.Model from a model file's path, a loaded model or an IR."""
    from bitgen import ir, modelfile

    if isinstance(model, ir.Model):
        return model
    if isinstance(model, modelfile.LoadedModel):
        return model.ir
    if isinstance(model, (str, Path)):
        return modelfile.load(model).ir
    raise TypeError(f"dut() takes a model file's path or a bitgen.ir.Model, not {type(model).__name__}")


@pytest.fixture
def dut(request: pytest.FixtureRequest, tmp_path):
    """Factory: ``dut(model, **session_options)`` -> an open Session on the board under test
    (``model``: a path to a model file, or a bitgen.ir.Model)."""
    from bitgen.harness import firmware, flash
    from bitgen.harness.session import Session

    config = request.config
    board = _board(config)
    port = config.getoption("--port")
    sessions = []

    def make(model: Any, **kw: Any):
        m = _ir(model)
        if not board.is_emulated and not port:
            pytest.skip(_hardware_skip_reason(config) or "no --port")
        if not board.is_emulated and not config.getoption("--no-flash"):
            firmware.build(m, board, tmp_path / "fw", name="model")
            flash.flash(board, tmp_path / "fw")
        s = Session(board, m, port=port, name="model", workdir=str(tmp_path / "sim"), **kw)
        sessions.append(s)
        return s.__enter__()

    yield make
    for s in sessions:
        s.close()


def assert_matches_golden(session: Any, x: np.ndarray) -> list[Any]:
    """Run every input of ``x`` on the board of ``session`` (a model with state: sequences
    (N, T, *input shape), each from the reset) and assert that every output value and class
    equal the golden model's. Returns the board's results (``.outputs``, ``.cls``, ``.cycles``)."""
    from bitgen import golden

    model = session.model
    x = np.asarray(x, dtype=np.int8)
    if model.states:
        if x.ndim != len(model.input.shape) + 2:
            raise ValueError(f"a model with state takes sequences (N, T, *{model.input.shape}), got {x.shape}")
        want = golden.run_sequence(model, x).reshape(x.shape[0] * x.shape[1], -1)
        got = [r for seq in x for r in session.run_frames(seq)]
    else:
        x = x.reshape((-1,) + model.input.shape)
        want = golden.run(model, x).reshape(len(x), -1)
        got = [session.link.classify(row) for row in x]
    want_cls = golden.argmax(want)
    bad = [i for i, r in enumerate(got)
           if not np.array_equal(r.outputs.reshape(-1), want[i]) or r.cls != want_cls[i]]
    if bad:
        i = bad[0]
        out = got[i].outputs.reshape(-1)
        j = int(np.flatnonzero(out != want[i])[0]) if not np.array_equal(out, want[i]) else None
        where = (f"output {j} is {int(out[j])}, golden {int(want[i][j])}" if j is not None
                 else f"class {got[i].cls}, golden {int(want_cls[i])}")
        raise AssertionError(f"{len(bad)} of {len(got)} inputs differ from the golden model on "
                             f"{session.board.name}; first: input {i}: {where}")
    return got
