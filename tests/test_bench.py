"""bitgen bench on the emulated boards: totals, the per-layer split, the kernel choice, and
kernels whose instructions only run there (SMLAD, cross-compiled 3x3 planes); tools/profile.py."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bitgen
from bitgen import ir
from bitgen.cli import main
from models_for_tests import mlp


def test_bench_splits_instructions_per_layer(tmp_path, capsys):
    path = tmp_path / "m.pt"
    bitgen.save(mlp(widths=(64, 32, 10)), path)
    out = tmp_path / "bench.json"
    assert main(["bench", "--board", "ch32v003-sim", str(path), "--random", "4",
                 "--json", str(out), "--md", str(tmp_path / "bench.md")]) == 0
    rep = json.loads(out.read_text())
    assert rep["mismatches"] == 0 and rep["compared"] == 4
    ins = rep["instructions"]
    assert 0 < ins["min"] <= ins["median"] <= ins["max"]
    assert rep["flash_bytes"] <= rep["flash_budget"] and rep["sram_bytes"] <= rep["sram_budget"]
    assert rep["kernels"] == "rv32ec"
    assert [(lay["op"], lay["kernel"]) for lay in rep["layers"]] == [
        ("linear", "lut"), ("shiftnorm", "generic"), ("linear", "lut")]
    split = sum(lay["instructions"] for lay in rep["layers"])
    # the split covers the model run; the total also holds the call and the argmax
    assert 0.9 * ins["mean"] < split <= ins["mean"]
    assert "| 0 | linear | lut |" in (tmp_path / "bench.md").read_text()


def test_bench_runs_the_simd_kernel_on_the_emulated_cortex_m4(tmp_path):
    """The SMLAD/SXTB16 instructions themselves (the host check runs their C equivalents):
    partial input groups (30, 13 inputs) and padding rows (13, 10 outputs), bit-exact."""
    path = tmp_path / "m.pt"
    bitgen.save(mlp(seed=5, widths=(30, 13, 10)), path)
    out = tmp_path / "bench.json"
    assert main(["bench", "--board", "max78000-sim", str(path), "--random", "8", "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["mismatches"] == 0 and rep["compared"] == 8
    assert [lay["kernel"] for lay in rep["layers"] if lay["op"] == "linear"] == ["simd", "simd"]


def _plane_cnn(h: int, w: int, seed: int) -> ir.Model:
    """BitNetMCU's CNN layout, narrower: 3x3 conv on the input, ReLU and >> 4 on int32, then
    two depthwise 3x3 convs each with a fused 2x2 max pool, and a linear layer."""
    rng = np.random.default_rng(seed)
    shift = lambda: ir.Requant(multiplier=[1], shift=[4], rounding="floor", out_dtype="int32")  # noqa: E731
    conv = lambda groups: ir.Conv2d(weight=rng.integers(-128, 128, (3, 1, 3, 3)), encoding="8bit",  # noqa: E731
                                    groups=groups)
    layers = [conv(1), ir.ReLU(), shift(), conv(3), ir.ReLU(), shift(), ir.MaxPool2d(2),
              conv(3), ir.ReLU(), shift(), ir.MaxPool2d(2), ir.Flatten(), ir.ShiftNorm()]
    t = ir.Model(ir.InputSpec((1, h, w)), layers).validate()[-1]
    layers.append(ir.Linear(weight=rng.choice([-3, -1, 1, 3], (10, t.size)), encoding="2bitsym"))
    return ir.Model(ir.InputSpec((1, h, w)), layers)


@pytest.mark.parametrize("board, h, w", [
    ("rv32emc-sim", 16, 16),   # BitNetMCU's 16x16: rows of 14 (tiles of 5, 5, 4), pooled 12 and 4
    ("rv32emc-sim", 12, 13),   # rows of 11 (5, 5 and an overlapping 2); the pool reads 8 of 9 columns
    ("max78000-sim", 12, 42),  # rows of 40: more tiles than the kernel unrolls, a loop
])
def test_bench_runs_the_fixed_3x3_kernel_on_emulated_cores(tmp_path, board, h, w):
    """The cross-compiled bg_conv3x3.inc instances (the host check compiles the same C with
    the host compiler), bit-exact on the emulated RV32EMC and Cortex-M4."""
    path = tmp_path / "m.pt"
    bitgen.save(_plane_cnn(h, w, seed=h + w), path)
    out = tmp_path / "bench.json"
    assert main(["bench", "--board", board, str(path), "--random", "6", "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["mismatches"] == 0 and rep["compared"] == 6
    assert [lay["kernel"] for lay in rep["layers"] if lay["op"] == "conv2d"] == [
        "conv3x3+offset/channelwise", "conv3x3/channelwise", "conv3x3/channelwise"]


def test_profile_tool_splits_an_inference_by_function(tmp_path):
    path = tmp_path / "m.pt"
    bitgen.save(mlp(widths=(64, 32, 10)), path)
    tool = Path(__file__).resolve().parent.parent / "tools" / "profile.py"
    r = subprocess.run([sys.executable, str(tool), str(path), "--board", "ch32v003-sim", "--random"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    total = int(r.stdout.splitlines()[0].split()[0].replace(",", ""))
    counts = {ln.split()[-1]: int(ln.split()[0].replace(",", "")) for ln in r.stdout.splitlines()[1:]}
    assert counts["bg_lut_block"] > 0 and "main" in counts
    assert sum(counts.values()) <= total


def test_an_image_over_the_part_is_benched_only_on_request_on_an_enlarged_emulator(tmp_path, capsys):
    """256-128-10 with 4-bit weights: 16.6 KB of weights, over the CH32V003's 16 KB of flash.
    `--over-budget` counts it on the emulator with twice the part's memory, bit-exact, and says
    that it does not fit; without it the bench refuses the image."""
    path = tmp_path / "m.pt"
    bitgen.save(mlp(widths=(256, 128, 10)), path)
    assert main(["bench", "--board", "ch32v003-sim", str(path), "--random", "2", "--json", "-"]) == 2
    assert "does not fit ch32v003" in capsys.readouterr().err
    out = tmp_path / "bench.json"
    assert main(["bench", "--board", "ch32v003-sim", str(path), "--random", "2", "--over-budget", "--count-only",
                 "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["mismatches"] == 0 and rep["compared"] == 2 and rep["instructions"]["median"] > 0
    assert rep["image_fits"] is False and rep["memory_scale"] == 2 and rep["kernels"] == "rv32ec"
    assert rep["flash_bytes"] > rep["flash_budget"] == 16384 and rep["sram_budget"] == 2048
    assert rep["protocol_firmware"] is None and all(lay["instructions"] is None for lay in rep["layers"])
    assert "does not fit the part: measured on the emulator with 2 times" in capsys.readouterr().out

    small = tmp_path / "s.pt"  # a model that fits: --over-budget changes nothing
    bitgen.save(mlp(widths=(64, 32, 10)), small)
    assert main(["bench", "--board", "ch32v003-sim", str(small), "--random", "2", "--over-budget",
                 "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["image_fits"] is True and rep["memory_scale"] == 1 and rep["protocol_firmware"]["fits"]

    capsys.readouterr()
    assert main(["bench", "--board", "mps2-an386", str(small), "--random", "2", "--over-budget"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--over-budget: only on a Unicorn-emulated board" in err[0]


def test_an_enlarged_board_grows_only_flash_and_sram():
    from bitgen.harness import boards

    sim = boards.get("ch32v003-sim")
    big = boards.enlarged(sim, 4)
    assert (big.image_board.flash.size, big.image_board.sram.size) == (4 * 16384, 4 * 2048)
    assert big.image_board.stack_bytes == sim.image_board.stack_bytes
    mem = {m["name"]: m["size"] for m in big.emulator["memory"]}
    assert (mem["flash"], mem["sram"]) == (4 * 16384, 4 * 2048)
    assert {m["name"]: m["size"] for m in sim.emulator["memory"]} == {"flash": 16384, "sram": 2048}  # untouched
    assert boards.get("ch32v003").flash.size == 16384
