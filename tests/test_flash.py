"""Flashing, tested at the probe boundary: no flasher or no probe gives a clear error, --dry-run
shows the commands, and a flasher gets the image that was built."""
from __future__ import annotations

import json
import shutil
import stat
import sys
from pathlib import Path

import pytest

from bitgen.harness import boards, firmware
from bitgen import cli
from bitgen.harness.flash import FlashError, flash
from models_for_tests import mlp

needs_rv = pytest.mark.skipif(shutil.which("riscv64-unknown-elf-gcc") is None, reason="needs gcc-riscv64-unknown-elf")


@pytest.fixture(scope="module")
def fw_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("fw")
    if shutil.which("riscv64-unknown-elf-gcc"):
        firmware.build(mlp(widths=(16, 8, 4)), boards.get("ch32v003"), d, name="model")
    return d


@pytest.fixture
def bare_path(tmp_path, monkeypatch):
    """A PATH with only a folder for fake flashers (and none beside this Python)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    return bin_dir


def fake_tool(bin_dir, name, code: int, message: str = ""):
    """A stand-in flasher that records its arguments and answers like the real one would."""
    script = bin_dir / name
    log = bin_dir / f"{name}.args"
    script.write_text(f"#!/bin/sh\necho \"$@\" > {log}\necho '{message}' >&2\nexit {code}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return log


@needs_rv
def test_no_flasher_installed_names_every_one_tried(fw_dir, bare_path):
    with pytest.raises(FlashError) as e:
        flash(boards.get("ch32v003"), fw_dir, say=lambda s: None)
    msg = str(e.value)
    assert "could not flash ch32v003 (needs WCH-LinkE" in msg
    for tool, hint in [("rvprog", "pip install rvprog"), ("minichlink", "ch32fun"), ("wlink", "cargo install wlink")]:
        assert f"'{tool}' not found" in msg and hint in msg


@needs_rv
def test_no_probe_is_a_clear_error_and_the_next_flasher_is_tried(fw_dir, bare_path):
    fake_tool(bare_path, "rvprog", 1, "ERROR: No Programmer found!")
    wlink_log = fake_tool(bare_path, "wlink", 2, "Error: no WCH-Link probe detected")
    with pytest.raises(FlashError) as e:
        flash(boards.get("ch32v003"), fw_dir, say=lambda s: None)
    msg = str(e.value)
    assert "rvprog failed: ERROR: No Programmer found!" in msg
    assert "wlink failed: Error: no WCH-Link probe detected" in msg
    assert wlink_log.read_text().split()[:3] == ["flash", "--address", "0x08000000"]


@needs_rv
def test_flasher_gets_the_built_image(fw_dir, bare_path):
    log = fake_tool(bare_path, "minichlink", 0)
    used = flash(boards.get("ch32v003"), fw_dir, say=lambda s: None)
    assert used.name == "minichlink"
    args = log.read_text().split()
    assert args == ["-w", str(fw_dir / "firmware.bin"), "flash", "-b"]


@needs_rv
def test_dry_run_shows_the_commands_and_runs_nothing(fw_dir, bare_path, capsys):
    log = fake_tool(bare_path, "rvprog", 0)
    rc = cli.main(["flash", "--board", "ch32v003", str(fw_dir), "--dry-run"])
    out = capsys.readouterr().out
    assert rc == 0 and not log.exists()
    assert f"rvprog -f {fw_dir / 'firmware.bin'}" in out and "[available]" in out
    assert "minichlink -w" in out and "wlink flash --address 0x08000000" in out and "unavailable" in out


@needs_rv
def test_cli_without_probe_exits_non_zero_with_one_line(fw_dir, bare_path, capsys):
    rc = cli.main(["flash", "--board", "ch32v003", str(fw_dir)])
    err = capsys.readouterr().err
    assert rc != 0 and err.count("\n") == 1 and "bitgen flash: error: could not flash ch32v003" in err


def fake_build(d, board: str, image: bytes) -> None:
    """A build folder as bitgen build leaves it, without a toolchain: one source, its proof, one ELF."""
    (d / "src").mkdir(parents=True)
    (d / "src" / "model.c").write_text("int x;\n")
    elf = d / "firmware.elf"
    elf.write_bytes(image)
    proof = {"sha256": firmware.sources_sha256(d / "src", ["model.c"]),
             "sources": {"model.c": firmware.file_sha256(d / "src" / "model.c")},
             "kernels": "generic", "compared": 5, "mismatches": 0}
    (d / "build.json").write_text(json.dumps({"image_board": board, "fits": True, "kernels": "generic",
                                              "proof": proof, "files": {"elf": str(elf)},
                                              "sha256": {"elf": firmware.file_sha256(elf)}}))


def test_max78000_says_which_flashers_were_tried(tmp_path, bare_path, monkeypatch):
    fake_build(tmp_path / "fw", "max78000", b"\x7fELF")
    d = tmp_path / "fw"
    monkeypatch.delenv("MAXIM_PATH", raising=False)
    fake_tool(bare_path, "openocd", 0)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "pyocd" else real(n, *a))
    with pytest.raises(FlashError) as e:
        flash(boards.get("max78000"), d, say=lambda s: None)
    msg = str(e.value)
    assert "pyocd (not installed" in msg and "openocd (environment variable MAXIM_PATH is not set" in msg


@needs_rv
def test_refuses_firmware_of_another_board(fw_dir):
    with pytest.raises(FlashError, match="holds firmware for ch32v003, not max78000"):
        flash(boards.get("max78000"), fw_dir, dry_run=True, say=lambda s: None)


def test_refuses_a_missing_build(tmp_path):
    with pytest.raises(FlashError, match="no firmware in .*: run bitgen build --board ch32v003"):
        flash(boards.get("ch32v003"), tmp_path, say=lambda s: None)


def test_refuses_an_over_budget_build(tmp_path):
    (tmp_path / "build.json").write_text(json.dumps({"image_board": "ch32v003", "fits": False}))
    with pytest.raises(FlashError, match="over ch32v003's budget"):
        flash(boards.get("ch32v003"), tmp_path, say=lambda s: None)


@needs_rv
def test_emulated_board_needs_no_flashing(fw_dir):
    said = []
    assert flash(boards.get("ch32v003-sim"), fw_dir, say=said.append) is None
    assert "emulated: nothing to flash" in said[0]




# ------------------------------------------------------------------ only the proved image is flashed
def copy_build(src, dst):
    """A copy of a build folder whose build.json names the copy's files."""
    shutil.copytree(src, dst)
    rep = json.loads((dst / "build.json").read_text())
    rep["files"] = {k: v and str(dst / Path(v).name) for k, v in rep["files"].items()}
    (dst / "build.json").write_text(json.dumps(rep))
    return rep


def refusal(capsys, fw, *extra):
    """bitgen flash --dry-run's one-line error (it must fail)."""
    rc = cli.main(["flash", "--board", "ch32v003", str(fw), "--dry-run", *extra])
    err = capsys.readouterr().err
    assert rc != 0 and err.count("\n") == 1, err
    return err


@needs_rv
def test_untouched_build_carries_its_proof_and_passes_dry_run(fw_dir, tmp_path, capsys):
    rep = copy_build(fw_dir, tmp_path / "fw")
    p = rep["proof"]
    assert p["mismatches"] == 0 and p["compared"] == firmware.DEFAULT_PROVE + 5 and p["kernels"] == rep["kernels"]
    assert cli.main(["flash", "--board", "ch32v003", str(tmp_path / "fw"), "--dry-run"]) == 0
    assert "rebuild" not in capsys.readouterr().err


@needs_rv
@pytest.mark.parametrize("kind", ["bin", "hex", "elf"])
def test_an_edited_image_is_refused(fw_dir, tmp_path, capsys, kind):
    fw = tmp_path / "fw"
    copy_build(fw_dir, fw)
    image = fw / f"firmware.{kind}"
    data = bytearray(image.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one byte
    image.write_bytes(bytes(data))
    err = refusal(capsys, fw)
    assert f"{image} is not the image bitgen build wrote (its SHA-256 differs): rebuild with bitgen build" in err


@needs_rv
@pytest.mark.parametrize("name", ["model.c", "bg_runtime.h"])
def test_an_edited_source_is_refused(fw_dir, tmp_path, capsys, name):
    fw = tmp_path / "fw"
    copy_build(fw_dir, fw)
    with open(fw / "src" / name, "a") as f:
        f.write("/* edited */\n")
    assert f"{fw / 'src'} differs from the sources proved at build time ({name}): rebuild" in refusal(capsys, fw)


@needs_rv
def test_a_build_without_a_proof_is_refused(fw_dir, tmp_path, capsys):
    fw = tmp_path / "fw"
    rep = copy_build(fw_dir, fw)
    del rep["proof"]
    (fw / "build.json").write_text(json.dumps(rep))
    err = refusal(capsys, fw)
    assert "holds an unproved image (build.json has no host proof): rebuild with bitgen build --board ch32v003" in err
    with pytest.raises(FlashError, match="unproved image"):  # nor is it written without --dry-run
        flash(boards.get("ch32v003"), fw, say=lambda s: None)


@needs_rv
@pytest.mark.parametrize("edit, message", [
    (lambda r: r["proof"].update(mismatches=3), "the host proof did not pass (3 mismatches"),
    (lambda r: r["proof"].update(compared=0), "the host proof did not pass (0 mismatches of 0 inputs)"),
    (lambda r: r["proof"].update(kernels="generic"), "the proof is of generic kernels but the image has rv32ec"),
    (lambda r: r["sha256"].pop("bin"), "build.json records no SHA-256 for"),
    (lambda r: r["proof"].update(sha256="0" * 64), "differs from the sources proved at build time (the recorded hash)"),
])
def test_a_build_json_that_does_not_vouch_for_the_image_is_refused(fw_dir, tmp_path, capsys, edit, message):
    fw = tmp_path / "fw"
    rep = copy_build(fw_dir, fw)
    edit(rep)
    (fw / "build.json").write_text(json.dumps(rep))
    assert message in refusal(capsys, fw)


@needs_rv
def test_an_image_built_without_a_proof_is_refused(tmp_path, capsys):
    """What emulated sessions build (prove=0: the emulator compares that image with golden)."""
    fw = firmware.build(mlp(widths=(16, 8, 4)), boards.get("ch32v003"), tmp_path / "fw", name="model", prove=0)
    assert fw.report["proof"] is None and fw.bin.is_file()
    assert "holds an unproved image" in refusal(capsys, tmp_path / "fw")
