"""Firmware builds: every board's toolchain, the size report, the budgets, determinism."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from bitgen.harness import boards, firmware
from bitgen import cli, ir, modelfile
from models_for_tests import mlp

HAVE = {p: shutil.which(p + "gcc") is not None for p in ("riscv64-unknown-elf-", "arm-none-eabi-")}
USPS_MLP = (256, 64, 64, 10)  # the USPS 4-bit MLP's shape


def needs(board):
    prefix = boards.get(board).image_board.toolchain.get("prefix", "")
    return pytest.mark.skipif(prefix and not HAVE.get(prefix, True), reason=f"needs {prefix}gcc")


@pytest.fixture(scope="module")
def usps_sized():
    return mlp(seed=0, widths=USPS_MLP)


@pytest.mark.parametrize("board", [
    pytest.param("ch32v003", marks=needs("ch32v003")),
    pytest.param("max78000", marks=needs("max78000")),
    pytest.param("mps2-an386", marks=needs("mps2-an386")),
    "host",
])
def test_firmware_builds(board, usps_sized, tmp_path):
    fw = firmware.build(usps_sized, boards.get(board), tmp_path, name="usps")
    rep = json.loads((tmp_path / "build.json").read_text())
    assert rep["fits"] and rep["model_hash"] == usps_sized.digest()
    assert fw.elf.stat().st_size > 0
    for key in ("flash_bytes", "sram_bytes", "flash_budget", "sram_budget"):
        assert key in rep
    if board != "host":
        assert fw.bin.stat().st_size == rep["flash_bytes"]  # the flashed image is all flash holds
        assert fw.hex.read_text().startswith(":")
        assert 0 < rep["flash_bytes"] <= rep["flash_budget"] and 0 < rep["sram_bytes"] <= rep["sram_budget"]
        assert sum(c["flash"] for c in rep["components"].values()) == rep["flash_bytes"]
        assert sum(c["sram"] for c in rep["components"].values()) == rep["sram_bytes"]


@needs("ch32v003")
def test_ch32v003_harness_budget(usps_sized, tmp_path):
    """Protocol (with the model's texts) + board support stay under 3 KB of flash (3,009 B
    measured; 3,174 B before issue 13, when the protocol also pulled in libgcc's division) and
    256 B of SRAM beyond the model's arena, I/O tensors and the stack."""
    fw = firmware.build(usps_sized, boards.get("ch32v003"), tmp_path, name="usps")
    rep = fw.report
    c = rep["components"]
    assert c["protocol"]["flash"] + c["bsp"]["flash"] < 3072, c
    for division in ("__udivsi3", "__umodsi3", "__divsi3", "__modsi3"):  # 180 B the protocol no longer needs
        assert fw.symbol(division) is None, division
    assert c["protocol"]["sram"] + c["bsp"]["sram"] + c["glue"]["sram"] < 256, c
    assert rep["harness"]["flash"] == c["protocol"]["flash"] + c["bsp"]["flash"] + c["glue"]["flash"]
    assert c["stack"]["sram"] >= boards.get("ch32v003").stack_bytes


@needs("ch32v003")
def test_builds_are_deterministic_and_the_sim_runs_the_same_image(usps_sized, tmp_path):
    a = firmware.build(usps_sized, boards.get("ch32v003"), tmp_path / "a", name="usps")
    b = firmware.build(usps_sized, boards.get("ch32v003-sim"), tmp_path / "b", name="usps")
    assert a.bin.read_bytes() == b.bin.read_bytes()


@needs("ch32v003")
def test_ch32v003_image_has_no_multiply_instruction(usps_sized, tmp_path):
    """RV32EC has no M extension: not in the model, the kernels, the protocol, nor libgcc."""
    fw = firmware.build(usps_sized, boards.get("ch32v003"), tmp_path, name="usps")
    dis = subprocess.run(["riscv64-unknown-elf-objdump", "-d", str(fw.elf)], capture_output=True, text=True).stdout
    assert "__mulsi3" in dis or "bg_linear_lut" in dis  # multiplication happens, in software
    assert not re.search(r"\s(mul|mulh|mulhu|mulhsu|div|divu|rem|remu)\s", dis)


@needs("ch32v003")
def test_over_budget_model_is_refused_with_a_per_section_report(tmp_path, capsys):
    rng = np.random.default_rng(0)
    big = ir.Model(ir.InputSpec((256,)), [
        ir.Linear(weight=rng.integers(-128, 128, (96, 256)), encoding="8bit"),  # 24 KB of weights
        ir.Requant(multiplier=[1], shift=[12]),
        ir.Linear(weight=rng.integers(-8, 8, (10, 96)), encoding="4bit"),
    ], name="big")
    path = tmp_path / "big.pt"
    modelfile.save(big, path)
    out = tmp_path / "fw"
    rc = cli.main(["build", "--board", "ch32v003", str(path), "-o", str(out), "--json", str(tmp_path / "b.json")])
    captured = capsys.readouterr()
    assert rc != 0
    assert re.search(r"model does not fit ch32v003: flash \d+ B of 16384", captured.err)
    assert re.search(r"\.text\s+\d{5}\s+0", captured.out) and "largest symbols: big_w" in captured.out
    rep = json.loads((tmp_path / "b.json").read_text())
    assert not rep["fits"] and rep["flash_bytes"] > rep["flash_budget"] == 16384
    assert {s["name"] for s in rep["sections"]} >= {".text", ".bss"}
    assert rep["components"]["model"]["flash"] > 24000
    assert not (out / "firmware.bin").exists() and not (out / "firmware.elf").exists()


@needs("ch32v003")
def test_sram_over_budget_is_refused(tmp_path):
    m = ir.Model(ir.InputSpec((1, 24, 24)), [
        ir.Conv2d(weight=np.ones((8, 1, 3, 3), int), encoding="binary", padding=1),  # 8x24x24 int32 = 18 KB
        ir.Requant(multiplier=[1], shift=[4]),
        ir.Flatten(),
        ir.Linear(weight=np.ones((2, 8 * 24 * 24), int), encoding="binary"),
    ])
    with pytest.raises(firmware.BudgetError, match=r"SRAM \d+ B of 2048") as e:
        firmware.build(m, boards.get("ch32v003"), tmp_path)
    assert e.value.report["sram_bytes"] > 2048


@needs("ch32v003")
def test_an_image_over_its_sram_budget_is_retried_with_less_kernel_scratch(tmp_path):
    """A binary conv-RNN whose XNOR columns take the CH32V003 over its 2 KB: the same kernel
    set is built again with the arena that fits (the XNOR kernels that set the peak give way to
    the generic one) before another kernel set is tried; both images are in kernels_tried."""
    import test_recurrent

    m = test_recurrent.conv_rnn(hw=9)
    fw = firmware.build(m, boards.get("ch32v003"), tmp_path, prove=0)
    tried = fw.report["kernels_tried"]
    assert fw.report["kernels"] == "rv32ec" and fw.report["sram_bytes"] <= 2048
    assert tried[0]["kernels"] == "rv32ec" and not tried[0]["fits"] and tried[0]["sram_bytes"] > 2048
    assert tried[-1] == {"kernels": "rv32ec", "max_arena": tried[-1]["max_arena"], "fits": True,
                         "flash_bytes": fw.report["flash_bytes"], "sram_bytes": fw.report["sram_bytes"]}
    assert tried[-1]["max_arena"] < fw.report["sram_budget"]  # the kept one, with the smaller arena
    kernels = [layer["kernel"] for layer in json.loads((tmp_path / "src" / "model.json").read_text())["layers"]]
    assert "generic" in [k for k, layer in zip(kernels, m.layers) if layer.kind == "conv2d"]


@needs("ch32v003")
def test_stack_reserve_below_the_call_graph_bound_is_refused(tmp_path):
    """A copy of the CH32V003 that reserves 64 bytes of stack: the image links, but the
    protocol's call chain into the model needs more, so it must not reach a flasher."""
    shutil.copytree(boards.BOARDS / "ch32v003", tmp_path / "tiny-stack")
    toml = tmp_path / "tiny-stack" / "board.toml"
    text = toml.read_text().replace('name = "ch32v003"', 'name = "tiny-stack"')
    toml.write_text(re.sub(r"(?m)^stack = \d+", "stack = 64", text))
    board = boards.get("tiny-stack", root=tmp_path)
    with pytest.raises(firmware.BudgetError, match=r"the stack can reach \d+ B, over the 64 B reserved") as e:
        firmware.build(mlp(widths=(16, 4)), board, tmp_path / "out")
    st = e.value.report["stack"]
    assert st["bounded"] and st["bytes"] > 64 and st["path"][0] == "main"
    assert not (tmp_path / "out" / "firmware.elf").exists()


def test_build_cli_writes_build_json(tmp_path, capsys):
    path = tmp_path / "m.pt"
    modelfile.save(mlp(widths=(16, 8, 4)), path)
    rc = cli.main(["build", "--board", "host", str(path), "-o", str(tmp_path / "fw"), "--json", str(tmp_path / "b.json")])
    assert rc == 0
    rep = json.loads((tmp_path / "b.json").read_text())
    assert rep["board"] == "host" and rep["fits"] and rep["flash_budget"] is None


def static_norm_mlp(seed=0, classes=10):
    """The USPS MLP as `bitgen train --norm static` makes it: per-channel multiplier + shift."""
    rng = np.random.default_rng(seed)
    odd = np.arange(-15, 16, 2)

    def rq():
        return ir.Requant(multiplier=rng.integers(16384, 32768, 64), shift=rng.integers(17, 25, 64),
                          out_min=0, out_max=127)

    return ir.Model(ir.InputSpec((256,)), [
        ir.Linear(weight=rng.choice(odd, (64, 256)), encoding="4bitsym"), rq(),
        ir.Linear(weight=rng.choice(odd, (64, 64)), encoding="4bitsym"), rq(),
        ir.Linear(weight=rng.choice(odd, (classes, 64)), encoding="4bitsym"),
    ], name="static")


@needs("ch32v003")
def test_falls_back_to_smaller_kernels_when_the_fast_ones_do_not_fit(tmp_path, capsys):
    # 34 classes: about 16.6 KB with the lookup-table kernels, 15.7 KB with the generic ones
    path = tmp_path / "static.pt"
    modelfile.save(static_norm_mlp(classes=34), path)
    assert cli.main(["build", "--board", "ch32v003", str(path), "-o", str(tmp_path / "fw")]) == 0
    rep = json.loads((tmp_path / "fw" / "build.json").read_text())
    tried, kept = rep["kernels_tried"]  # every attempt, the one kept included
    assert tried["kernels"] == "rv32ec" and not tried["fits"] and tried["flash_bytes"] > 16384
    assert kept == {"kernels": "generic", "max_arena": None, "flash_bytes": rep["flash_bytes"],
                    "sram_bytes": rep["sram_bytes"], "fits": True}
    assert rep["kernels"] == "generic" and rep["fits"] and rep["flash_bytes"] <= 16384
    assert rep["proof"]["kernels"] == "generic" and rep["proof"]["mismatches"] == 0  # the image kept is proved
    assert "over budget, so generic kernels were used" in capsys.readouterr().out
    with pytest.raises(firmware.BudgetError):  # asked for explicitly, the fast kernels are refused
        firmware.build(static_norm_mlp(classes=34), boards.get("ch32v003"), tmp_path / "fast", kernels="rv32ec")


def _board_with_flash(tmp_path, flash: int):
    """A copy of the CH32V003 with `flash` bytes of flash."""
    shutil.copytree(boards.BOARDS / "ch32v003", tmp_path / "small-flash")
    toml = tmp_path / "small-flash" / "board.toml"
    text = toml.read_text().replace('name = "ch32v003"', 'name = "small-flash"')
    toml.write_text(text.replace("size = 16384", f"size = {flash}"))
    return boards.get("small-flash", root=tmp_path)


@needs("ch32v003")
def test_an_image_over_its_flash_budget_gives_up_the_costliest_fast_kernels_first(tmp_path):
    """A small BitNetMCU-style CNN on a CH32V003 with less flash: its lookup-table kernels do
    not all fit, so the fully connected layers (their LUT code is the most flash per
    multiply-accumulate) take the generic kernel, and the convolutions keep theirs."""
    import test_emit

    m = test_emit._cnn_into_shiftnorm(hw=10)
    fast = firmware.build(m, boards.get("ch32v003"), tmp_path / "fast", prove=0)
    assert fast.report["kernels"] == "rv32ec" and len(fast.report["kernels_tried"]) == 1
    # the same image with the fully connected layer on the generic kernel
    fc = [i for i, layer in enumerate(m.layers) if layer.kind == "linear"]
    mixed = firmware._build(m, boards.get("ch32v003"), tmp_path / "mixed", "model", None, None, "rv32ec", [],
                            "protocol", None, 0, frozenset(fc))
    assert mixed.report["flash_bytes"] < fast.report["flash_bytes"] - 256
    board = _board_with_flash(tmp_path, (mixed.report["flash_bytes"] + fast.report["flash_bytes"]) // 2)
    fw = firmware.build(m, board, tmp_path / "out", prove=20)
    first, kept = fw.report["kernels_tried"]
    assert first["kernels"] == "rv32ec" and not first["fits"] and "generic_layers" not in first
    assert kept == {"kernels": "rv32ec", "max_arena": None, "generic_layers": fc, "fits": True,
                    "flash_bytes": fw.report["flash_bytes"], "sram_bytes": fw.report["sram_bytes"]}
    assert fw.report["proof"]["mismatches"] == 0
    kernels = [layer["kernel"] for layer in json.loads((tmp_path / "out" / "src" / "model.json").read_text())["layers"]]
    assert kernels[0].startswith("dw_lut") and kernels[fc[0]] == "generic"
    assert firmware.describe_attempt(kept) == f"rv32ec kernels (layer {fc[0]} generic)"


@needs("ch32v003")
def test_an_image_over_its_flash_budget_with_lut_convt_keeps_a_fitting_one(tmp_path):
    """A transposed convolution alone: lut_convt brings the LUT kernel's code (more flash than
    the generic kernel and libgcc's multiply, less SRAM: no int32 tensor). Under a flash budget
    between the two images the build gives it up and keeps a fitting, bit-exact image."""
    rng = np.random.default_rng(3)
    m = ir.Model(ir.InputSpec((4, 4, 4)), [
        ir.ConvTranspose2d(weight=rng.integers(-7, 8, (4, 4, 3, 3)), encoding="4bit", stride=2, padding=1,
                           output_padding=1, bias=rng.integers(-50, 50, 4)),
        ir.Requant(multiplier=rng.integers(1, 4, 4), shift=np.full(4, 6)), ir.ReLU()])
    fast = firmware.build(m, boards.get("ch32v003"), tmp_path / "fast", prove=0)
    slow = firmware._build(m, boards.get("ch32v003"), tmp_path / "slow", "model", None, None, "rv32ec", [],
                           "protocol", None, 0, frozenset([0]))
    assert slow.report["flash_bytes"] < fast.report["flash_bytes"]
    board = _board_with_flash(tmp_path, (slow.report["flash_bytes"] + fast.report["flash_bytes"]) // 2)
    fw = firmware.build(m, board, tmp_path / "out", prove=20)
    assert fw.report["fits"] and fw.report["flash_bytes"] <= fw.report["flash_budget"] < fast.report["flash_bytes"]
    assert not fw.report["kernels_tried"][0]["fits"] and fw.report["proof"]["mismatches"] == 0
    kernels = [layer["kernel"] for layer in json.loads((tmp_path / "out" / "src" / "model.json").read_text())["layers"]]
    assert kernels[0] == "generic"


# ------------------------------------------------------------------ the build proves what it compiles
def _emitted_hash(model, folder, **kw):
    from bitgen.backends.c import emit

    em = emit.emit(model, folder, name="usps", **kw)
    return firmware.sources_sha256(folder, firmware.proved_files(em))


@needs("ch32v003")
def test_build_proves_the_very_sources_it_compiles(usps_sized, tmp_path):
    import hashlib

    fw = firmware.build(usps_sized, boards.get("ch32v003"), tmp_path / "fw", name="usps")
    rep = json.loads((tmp_path / "fw" / "build.json").read_text())
    p = rep["proof"]
    assert rep["kernels"] == p["kernels"] == "rv32ec" and p["max_arena"] is None
    assert p["compared"] == firmware.DEFAULT_PROVE + 5 and p["mismatches"] == 0
    assert p["inputs"] == {"random": firmware.DEFAULT_PROVE, "extreme": 5, "seed": 0}
    src = tmp_path / "fw" / "src"
    # every model source the cross compiler read is among the proved files, byte for byte
    compiled = {o.stem for o in (tmp_path / "fw" / "obj").glob("*.o")}
    assert {n.removesuffix(".c") for n in p["sources"] if n.endswith(".c")} <= compiled
    assert p["sha256"] == firmware.sources_sha256(src, list(p["sources"]))
    assert all(firmware.file_sha256(src / n) == h for n, h in p["sources"].items())
    # the rv32ec emission, not the generic one `bitgen check` proves by default
    assert p["sha256"] == _emitted_hash(usps_sized, tmp_path / "rv32ec", kernels="rv32ec")
    assert p["sha256"] != _emitted_hash(usps_sized, tmp_path / "generic", kernels="generic")
    for kind, path in ((k, getattr(fw, k)) for k in ("bin", "hex", "elf")):
        assert rep["sha256"][kind] == hashlib.sha256(path.read_bytes()).hexdigest()


@needs("ch32v003")
def test_the_proof_covers_the_max_arena_emission(tmp_path):
    m = mlp(seed=3, widths=(256, 64, 64, 10))
    rep = firmware.build(m, boards.get("ch32v003"), tmp_path / "fw", name="usps", max_arena=400, prove=50).report
    p = rep["proof"]
    assert p["max_arena"] == 400 and p["arena_bytes"] <= 400 and p["compared"] == 55
    assert p["sha256"] == _emitted_hash(m, tmp_path / "small", kernels="rv32ec", max_arena=400)
    assert p["sha256"] != _emitted_hash(m, tmp_path / "fast", kernels="rv32ec")


def _corrupt_first_weight(monkeypatch):
    """Make the emitter write one wrong bit into the first weight word of the model it emits: what
    a kernel or emitter bug would ship."""
    real = firmware.emit.emit

    def emit_with_a_bug(model, outdir, **kw):
        em = real(model, outdir, **kw)
        c = em.outdir / f"{em.name}.c"
        text = c.read_text()
        m = re.search(r"_w0\[\] = \{\s*0x([0-9a-f]{8})u", text)
        word = f"{int(m.group(1), 16) ^ 1:08x}"
        c.write_text(text[: m.start(1)] + word + text[m.end(1):])
        return em

    monkeypatch.setattr(firmware.emit, "emit", emit_with_a_bug)


@needs("ch32v003")
def test_a_mismatch_refuses_the_build_naming_the_first_layer(tmp_path, monkeypatch, capsys):
    path = tmp_path / "m.pt"
    modelfile.save(mlp(widths=(16, 8, 4)), path)
    _corrupt_first_weight(monkeypatch)
    out = tmp_path / "fw"
    rc = cli.main(["build", "--board", "ch32v003", str(path), "-o", str(out)])
    err = capsys.readouterr().err
    assert rc != 0 and err.count("\n") == 1, err
    assert re.search(r"error: the rv32ec C in \S+/src differs from the golden model on \d+ of 2005 inputs "
                     r"\(first at layer 0 \(linear '\w+'\), random input \d+, element \d+: golden -?\d+, C -?\d+\); "
                     r"no image written", err), err
    assert not any((out / f"firmware.{k}").exists() for k in ("bin", "hex", "elf"))
    rep = json.loads((out / "build.json").read_text())
    assert rep["proof"]["mismatches"] > 0 and rep["proof"]["first_mismatch"]["layer"] == 0
    assert cli.main(["flash", "--board", "ch32v003", str(out), "--dry-run"]) != 0


def test_build_cli_prove_option(tmp_path, capsys):
    path = tmp_path / "m.pt"
    modelfile.save(mlp(widths=(16, 8, 4)), path)
    assert cli.main(["build", "--board", "host", str(path), "-o", str(tmp_path / "fw"), "--prove", "40"]) == 0
    assert json.loads((tmp_path / "fw" / "build.json").read_text())["proof"]["compared"] == 45
    assert "equal the golden model on 45 inputs (40 random, 5 extreme)" in capsys.readouterr().out
    for n in ("0", "-3"):
        rc = cli.main(["build", "--board", "host", str(path), "-o", str(tmp_path / "x"), "--prove", n])
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1 and f"argument --prove: {n} is outside 1..1000000" in err
    assert not (tmp_path / "x").exists()


@needs("ch32v003")
def test_bench_images_carry_no_proof(tmp_path):
    rep = firmware.build(mlp(widths=(16, 4)), boards.get("ch32v003"), tmp_path, harness="bench").report
    assert rep["proof"] is None


def test_build_target_with_a_kernel_set_is_kernels(tmp_path, capsys):
    path = tmp_path / "m.pt"
    modelfile.save(mlp(widths=(16, 8, 4)), path)
    assert cli.main(["build", "--board", "host", str(path), "-o", str(tmp_path / "fw"), "--target", "rv32ec"]) == 0
    rep = json.loads((tmp_path / "fw" / "build.json").read_text())
    assert rep["kernels"] == rep["proof"]["kernels"] == "rv32ec"
    assert "note: the kernel set is now --kernels rv32ec" in capsys.readouterr().err


@needs("ch32v003")
def test_over_budget_says_which_layer_sets_the_sram_peak_and_which_weights_dominate_flash(tmp_path):
    rng = np.random.default_rng(0)
    model = ir.Model(ir.InputSpec((1, 24, 24)), [
        ir.Conv2d(weight=rng.integers(-7, 8, (8, 1, 3, 3)), encoding="4bit", padding=1, name="wide"),
        ir.Requant(multiplier=[1], shift=[6]),
        ir.Flatten(),
        ir.Linear(weight=rng.integers(-7, 8, (10, 8 * 24 * 24)), encoding="4bit", name="head"),
    ])
    with pytest.raises(firmware.BudgetError) as e:
        firmware.build(model, boards.get("ch32v003"), tmp_path, kernels="generic")
    msg = str(e.value)
    assert "\n" not in msg
    assert re.search(r"SRAM \d+ B of 2048 B \(the arena's \d+ B peak is at layers 0-1 \('wide' to 'requant1', "
                     r"computed together\) \(requant, output 8x24x24: ", msg)
    assert re.search(r"flash \d+ B of 16384 B \(weights \d+ B, most in layer 3 'head' \(linear\): \d+ B, \d+ %\)", msg)
    assert "fewer weight bits in layer 3" in msg and "try smaller layers 0-1 or a smaller input" in msg
    assert "a board with more memory (max78000: 512 KB flash, 128 KB SRAM)" in msg
    rep = json.loads((tmp_path / "build.json").read_text())
    assert rep["model"]["arena_peak"]["first_name"] == "wide" and rep["kernels_tried"][-1]["fits"] is False


@needs("ch32v003")
def test_a_model_far_over_budget_is_refused_before_anything_is_compiled(tmp_path):
    huge = ir.Model(ir.InputSpec((1024,)), [ir.Linear(weight=np.ones((1100, 1024), np.int8), encoding="8bit")])
    with pytest.raises(firmware.BudgetError, match=r"model does not fit ch32v003: .*flash 1126400 B of 16384 B"):
        firmware.build(huge, boards.get("ch32v003"), tmp_path, kernels="generic")
    assert not list((tmp_path / "obj").glob("*.o"))  # refused on the weights alone: never compiled
    rep = json.loads((tmp_path / "build.json").read_text())
    assert rep["estimate"].startswith("at least") and rep["flash_bytes"] >= 1100 * 1024 and not rep["fits"]
