"""Board descriptions: every board folder loads, emulated boards agree with the parts they
emulate, and a new board is a new folder."""
from __future__ import annotations

import shutil

import pytest

from bitgen.harness import boards
from bitgen.harness.boards import BoardError
from bitgen.paths import BOARDS


def test_every_board_loads():
    names = boards.available()
    assert {"ch32v003", "ch32v003-sim", "max78000", "max78000-sim", "mps2-an386", "host"} <= set(names)
    for name in names:
        b = boards.get(name)
        assert b.name == name and b.description
        assert b.image_board.toolchain, f"{name}: no toolchain to build its image"
        assert b.cycle_source


def test_ch32v003_facts():
    b = boards.get("ch32v003")
    assert (b.flash.size, b.sram.size) == (16384, 2048)
    assert b.clock_hz == 48_000_000 and b.uart["baud"] == 115200
    assert (b.uart["tx"], b.uart["rx"]) == ("PD5", "PD6")
    assert [f["name"] for f in b.flash_tool["flashers"]] == ["rvprog", "minichlink", "wlink"]
    assert not b.is_emulated


@pytest.mark.parametrize("sim, part", [("ch32v003-sim", "ch32v003"), ("max78000-sim", "max78000")])
def test_emulated_board_matches_its_part(sim, part):
    """Same image, same budgets; the emulator's memory has exactly the part's sizes."""
    s, p = boards.get(sim), boards.get(part)
    assert s.image_board.name == part and s.is_emulated
    assert (s.flash, s.sram, s.clock_hz) == (p.flash, p.sram, p.clock_hz)
    mem = {m["name"]: m for m in s.emulator["memory"]}
    assert mem["flash"]["size"] == p.flash.size and mem["sram"]["size"] == p.sram.size
    assert mem["flash"]["image"] is True
    assert "retired instructions" in s.cycle_source


def test_unknown_board_lists_the_known_ones():
    with pytest.raises(BoardError, match=r"unknown board 'esp32' \(available: .*ch32v003"):
        boards.get("esp32")


def test_a_new_board_is_a_new_folder(tmp_path):
    """Copy a board under a new name: found, built, no code involved."""
    from bitgen.harness import firmware
    from models_for_tests import mlp

    shutil.copytree(BOARDS / "ch32v003", tmp_path / "my-ch32")
    toml = tmp_path / "my-ch32" / "board.toml"
    toml.write_text(toml.read_text().replace('name = "ch32v003"', 'name = "my-ch32"'))
    assert boards.available(tmp_path) == ["my-ch32"]
    b = boards.get("my-ch32", root=tmp_path)
    fw = firmware.build(mlp(widths=(16, 4)), b, tmp_path / "out")
    assert fw.report["image_board"] == "my-ch32" and fw.bin.stat().st_size > 0


def test_board_name_must_match_its_folder(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "board.toml").write_text('name = "y"\n')
    with pytest.raises(BoardError, match="differs from its folder"):
        boards.get("x", root=tmp_path)


def test_missing_compiler_is_named(monkeypatch):
    b = boards.get("ch32v003")
    monkeypatch.setitem(b.spec["toolchain"], "prefix", "no-such-prefix-")
    with pytest.raises(BoardError, match=r"'no-such-prefix-gcc', not found on PATH \(Debian: apt-get install gcc-riscv64-unknown-elf\)"):
        b.require_toolchain()
