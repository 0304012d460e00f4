"""pytest plugin: the same board tests against emulated boards in CI and real boards on a desk.

Loaded by the project's pytest configuration (``-p bitgen.harness.pytest_plugin`` in pyproject.toml),
early enough that ``--port /dev/ttyACM0`` is parsed as an option value.

    pytest tests/test_run.py                                   # emulated boards only
    pytest --board ch32v003 --port /dev/ttyACM0 -m hardware     # a real CH32V003 (flashed by the
                                                                # test through its WCH-LinkE)

Tests marked ``hardware`` run only when ``--board`` names a real board; they get the ``dut``
fixture: ``dut(model)`` builds (and, for a real board, flashes) the firmware of ``model`` and
returns a connected :class:`bitgen.harness.session.Session`. Without ``--board`` the ``dut`` fixture uses
``ch32v003-sim``.
"""
from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("bitgen boards")
    group.addoption("--board", default=None, help="board to run the board tests on (e.g. ch32v003)")
    group.addoption("--port", default=None, help="serial port of that board (e.g. /dev/ttyACM0)")
    group.addoption("--no-flash", action="store_true", help="the board is already flashed with the test model")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "hardware: needs a real board (run with --board NAME --port PORT)")


def _real_board(config: pytest.Config):
    name = config.getoption("--board")
    if not name:
        return None
    from bitgen.harness import boards

    board = boards.get(name)
    return None if board.is_emulated else board


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _real_board(config) is not None and config.getoption("--port"):
        return
    skip = pytest.mark.skip(reason="needs a real board: pytest --board NAME --port PORT -m hardware")
    for item in items:
        if "hardware" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def dut(request: pytest.FixtureRequest, tmp_path):
    """Factory: dut(model) -> an open bitgen.harness.session.Session on the board under test."""
    from bitgen.harness import boards, firmware, flash
    from bitgen.harness.session import Session

    config = request.config
    board = boards.get(config.getoption("--board") or "ch32v003-sim")
    port = config.getoption("--port")
    sessions = []

    def make(model, **kw):
        if not board.is_emulated and not config.getoption("--no-flash"):
            firmware.build(model, board, tmp_path / "fw", name="model")
            flash.flash(board, tmp_path / "fw")
        s = Session(board, model, port=port, name="model", workdir=str(tmp_path / "sim"), **kw)
        sessions.append(s)
        return s.__enter__()

    yield make
    for s in sessions:
        s.close()
