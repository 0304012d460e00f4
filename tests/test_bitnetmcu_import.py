"""`bitgen import BitNetMCU_model.h`: every published header and every weight format the
exporter writes gives the same class and int32 logits as BitNetMCU's own engine, compiled here.

MNIST-16 test images: the first 500 by default; all 10,000 with BITGEN_BITNETMCU_FULL=1."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from bitgen import check, datasets, golden, importers
from bitgen.cli import main
from bitgen.harness import boards, session
from bitgen.importers import bitnetmcu

import bitnetmcu_oracle as oracle

pytestmark = pytest.mark.skipif(not oracle.available() or not oracle.MNIST.is_dir(),
                                reason="needs ../shared/oracles/BitNetMCU, ../shared/datasets/mnist-test and gcc")
COUNT = 10000 if os.environ.get("BITGEN_BITNETMCU_FULL") else 500
HEADERS = sorted(p.name for p in (oracle.ORACLE / "mcu").glob("BitNetMCU_model_*.h")) if oracle.available() else []


@pytest.fixture(scope="module")
def mnist16():
    ds = datasets.load("mnist16", oracle.MNIST, split="test")
    return ds.x[:COUNT], ds.y[:COUNT]


def _same_as_engine(model, header, x, tmp_path):
    outputs = model.validate()[-1].size
    classes, logits = oracle.Engine(header, tmp_path / "oracle").run(x, outputs)
    ours = golden.run(model, x.reshape((len(x),) + model.input.shape))
    np.testing.assert_array_equal(ours, logits)
    np.testing.assert_array_equal(golden.argmax(ours), classes)
    return classes


@pytest.mark.parametrize("name", HEADERS)
def test_published_header_equals_bitnetmcu_engine(name, mnist16, tmp_path):
    header = oracle.ORACLE / "mcu" / name
    model = importers.read(header)
    x, y = mnist16
    classes = _same_as_engine(model, header, x, tmp_path)
    if "letters" not in name:  # a 37-class EMNIST model: only its logits are comparable on digits
        assert np.mean(classes == y) > 0.9


@pytest.mark.parametrize("fmt", list(oracle.FORMATS))
def test_every_weight_format_equals_bitnetmcu_engine(fmt, mnist16, tmp_path):
    rng = np.random.default_rng(len(fmt))
    vals = np.array(oracle.VALUES[fmt])
    layers = [(fmt, rng.choice(vals, (64, 256))), (fmt, rng.choice(vals, (64, 64))), (fmt, rng.choice(vals, (10, 64)))]
    header = tmp_path / "BitNetMCU_model.h"
    oracle.write_mlp_header(header, layers)
    model = importers.read(header)
    for layer, (_, w) in zip([op for op in model.layers if op.kind == "linear"], layers):
        np.testing.assert_array_equal(layer.weight, w)
    _same_as_engine(model, header, mnist16[0], tmp_path)


def test_imported_models_are_bit_exact_in_c(tmp_path, mnist16):
    x = mnist16[0][:100]
    for name in ("BitNetMCU_model_cnn_16small.h", "BitNetMCU_model_12k_FP130.h"):
        model = importers.read(oracle.ORACLE / "mcu" / name)
        xq = x.reshape((len(x),) + model.input.shape)
        for kernels in ("generic", "rv32emc"):
            res = check.run_check(model, [check.InputSet("dataset", xq)], kernels=kernels)
            assert res.mismatches == 0 and res.compared == len(xq)


@pytest.mark.skipif(shutil.which("riscv64-unknown-elf-gcc") is None, reason="needs gcc-riscv64-unknown-elf")
@pytest.mark.parametrize("name", ["BitNetMCU_model_12k.h", "BitNetMCU_model_12k_FP130.h"])
def test_12k_models_fit_the_ch32v003_with_the_protocol(name, mnist16, tmp_path):
    """BitNetMCU's 12k MLPs (issue 13): the protocol firmware fits 16 KB / 2 KB and the emulated
    part answers bit-exactly (a few inputs here: 3.3 M instructions each with the generic kernels)."""
    model = importers.read(oracle.ORACLE / "mcu" / name)
    x = mnist16[0][:3].reshape((3,) + model.input.shape)
    expect = golden.run(model, x)
    with session.Session(boards.get("ch32v003-sim"), model, workdir=str(tmp_path), infer_timeout=120) as s:
        rep = s.firmware.report
        assert rep["fits"] and rep["flash_bytes"] <= 16384 and rep["sram_bytes"] <= 2048, rep["kernels_tried"]
        for i in range(len(x)):
            np.testing.assert_array_equal(s.link.classify(x[i]).outputs.reshape(expect[i].shape), expect[i])


def test_import_command(tmp_path, capsys):
    out = tmp_path / "m.pt"
    assert main(["import", str(oracle.ORACLE / "mcu" / "BitNetMCU_model_cnn_16.h"), "-o", str(out)]) == 0
    assert "BitNetMCU header" in capsys.readouterr().out
    assert main(["check", str(out), "--dataset", "mnist16", "--data", str(oracle.MNIST), "--limit", "50",
                 "--random", "50"]) == 0


def test_broken_headers_are_one_line_errors(tmp_path, capsys):
    text = (oracle.ORACLE / "mcu" / "BitNetMCU_model_1k.h").read_text()
    cases = {
        "short.h": text.replace("0x8022800, ", "", 1),
        "nf4.h": text.replace("L1_bitperweight 2", "L1_bitperweight 36"),
        "chain.h": text.replace("L2_incoming_weights 16", "L2_incoming_weights 32"),
    }
    for file, body in cases.items():
        (tmp_path / file).write_text(body)
        code = main(["import", str(tmp_path / file), "-o", str(tmp_path / "x.pt")])
        err = capsys.readouterr().err.strip()
        assert code != 0 and len(err.splitlines()) == 1, err
    with pytest.raises(importers.ModelImportError, match="NF4"):
        bitnetmcu.read(tmp_path / "nf4.h")


def test_cnn16_plans_within_the_ch32v003_sram_without_a_multiplier(mnist16):
    """BitNetMCU's CNN layout on RV32EC: one uint16 plane computed in place per channel (the
    14x14 plane, then its pooled 6x6 over it), the LUT plane kernels for every convolution (no
    libgcc multiply), and the arena small enough for the protocol firmware's 2,048 B."""
    from bitgen.backends.c import emit
    model = importers.read(oracle.ORACLE / "mcu" / "BitNetMCU_model_cnn_16.h")
    mp = emit.plan_model(model, "rv32ec")
    convs = [c.kernel for c, op in zip(mp.choices, model.layers) if op.kind == "conv2d"]
    assert convs == ["dw_lut"] * 3
    # 16x2x2 int32 output + one 14x14 uint16 plane + the first layer's 576 B of tables
    assert mp.memory.arena_bytes == 256 + 392 + 576
    x = mnist16[0][:100]
    xq = x.reshape((len(x),) + model.input.shape)
    res = check.run_check(model, [check.InputSet("dataset", xq)], kernels="rv32ec")
    assert res.mismatches == 0 and res.compared == len(xq)


def test_cnn32_fits_the_protocol_arena_with_one_table_per_tap():
    """CNN-32 within the arena the CH32V003's protocol firmware leaves (about 1.2 KB): the first
    layer's int8 input plus 128 through one table per tap (288 B instead of 576 B)."""
    from bitgen.backends.c import emit
    model = importers.read(oracle.ORACLE / "mcu" / "BitNetMCU_model_cnn_32.h")
    mp = emit.plan_within(model, "rv32ec", 1232)
    assert [c.kernel for c, op in zip(mp.choices, model.layers) if op.kind == "conv2d"] == ["dw_lut"] * 3
    assert mp.memory.arena_bytes == 32 * 2 * 2 * 4 + 392 + 288
