"""bitgen bench on the emulated CH32V003: totals, the per-layer split and the kernel choice."""
import json

import bitgen
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
