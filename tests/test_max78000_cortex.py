"""MAX78000 accelerator models on its Cortex-M4.

* Lowered (bitgen/backends/c/lower_max78000.py): every ``max78000_layer`` written as the C back
  end's ops must have the same golden output bit for bit, and the C compiled from the lowered
  model must equal golden (host, and the Cortex-M4 of max78000-sim through the wire protocol).
* Handed over (bitgen/backends/max78000/handover.py): the accelerator runs a model's leading
  accelerator layers and the Cortex-M4 the rest, in one image, equal to golden.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from bitgen import golden, ir, modelfile
from bitgen.backends.c import lower_max78000
from bitgen.backends.c.lower_max78000 import LoweringError
from bitgen.backends.max78000 import handover
from bitgen.backends.max78000.limits import NotSupported
from bitgen.ops.max78000_layer import WEIGHT_RANGE

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_max78000_program  # noqa: E402
import test_max78000_run  # noqa: E402
from test_max78000 import _bitgen  # noqa: E402

USPS = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "usps"


def _same_golden(model: ir.Model, lowered: ir.Model, count: int = 200, seed: int = 1) -> None:
    x = np.random.default_rng(seed).integers(-128, 128, (count, *model.input.shape)).astype(np.int8)
    x = np.concatenate([x, np.stack([np.full(model.input.shape, v, dtype=np.int8) for v in (-128, 127, 0)])])
    np.testing.assert_array_equal(golden.run(lowered, x), golden.run(model, x))


def _layer(rng, c, o, bits=8, **kw) -> ir.Max78000Layer:
    lo, hi = WEIGHT_RANGE[bits]
    k = kw.pop("k", 3)
    return ir.Max78000Layer(weight=rng.integers(lo, hi + 1, (o, c, k, k)), weight_bits=bits,
                            bias=rng.integers(-64, 64, o), **kw)


def residual_graph(seed: int) -> ir.Model:
    """A stem, a residual block whose add is its own passthrough layer, one whose add is fused
    into the next convolution (element-wise first, then pooling), a subtraction pooled first,
    a transposed convolution and a flatten + linear layer: every lowered part in one graph."""
    rng = np.random.default_rng(seed)
    c = 8
    pool = dict(pool="avg", pool_size=2, pool_stride=2, avg_pool_rounding=bool(seed % 2))
    nodes = [
        ir.Node(_layer(rng, 1, c, padding=1, activation="relu", output_shift=-2), ("input",), "stem"),
        ir.Node(_layer(rng, c, c, 4, padding=1, activation="relu", output_shift=0), ("stem",), "b1"),
        ir.Node(_layer(rng, c, c, 2, padding=1, output_shift=3), ("b1",), "b2"),
        ir.Node(ir.Max78000Layer(operation="passthrough", eltwise="add", operands=2), ("b2", "stem"), "res1"),
        ir.Node(_layer(rng, c, c, 1, padding=1, activation="abs", output_shift=1, eltwise="add", operands=2,
                       pool_first=False, **pool), ("res1", "b1"), "fused"),
        ir.Node(_layer(rng, c, c, 8, k=1, padding=0, output_shift=-3, eltwise="sub", operands=2, pool="max",
                       pool_size=2, pool_stride=1), ("fused", "fused"), "diff"),
        ir.Node(_layer(rng, c, 4, 8, operation="convtranspose2d", padding=1, output_shift=-1,
                       activation="relu"), ("diff",), "up"),
        ir.Node(ir.Max78000Layer(operation="linear", flatten=True, weight=rng.integers(-8, 8, (5, 4 * 6 * 6)),
                                 weight_bits=4, output_width=32), ("up",), "logits"),
    ]
    model = ir.Model(ir.InputSpec((1, 8, 8), scale=1 / 128), nodes=nodes, name=f"residual{seed}")
    model.validate()
    return model


@pytest.mark.parametrize("seed", range(40))
def test_random_accelerator_chains_lower_to_the_same_golden(seed):
    m = test_max78000_program.random_chain(seed)
    _same_golden(m, lower_max78000.lower(m))


@pytest.mark.parametrize("seed", range(4))
def test_residual_graphs_lower_to_the_same_golden(seed):
    m = residual_graph(seed)
    lowered = lower_max78000.lower(m)
    assert not lower_max78000.needs_lowering(lowered)
    assert {n.op.kind for n in lowered.nodes} >= {"add", "sub", "conv_transpose2d", "abs", "sign", "requant"}
    _same_golden(m, lowered)


@pytest.mark.parametrize("rounding", [False, True])
@pytest.mark.parametrize("size", [(2, 2), (3, 3), (1, 3), (4, 4)])
def test_average_pooling_of_signed_data_truncates_or_rounds_as_the_hardware(rounding, size):
    """The model input is signed, so these windows have sums of both signs, ties included."""
    rng = np.random.default_rng(size[0] * 10 + size[1])
    m = ir.Model(ir.InputSpec((3, 9, 9)), layers=[
        ir.Max78000Layer(operation="passthrough", pool="avg", pool_size=size, pool_stride=(1, 2),
                         avg_pool_rounding=rounding),
        _layer(rng, 3, 2, 8, k=1, padding=0, output_shift=-1)])
    lowered = lower_max78000.lower(m)
    _same_golden(m, lowered, count=500)
    # the passthrough's pooled data, compared on its own: every window sum of a random input
    x = rng.integers(-128, 128, (300, 3, 9, 9)).astype(np.int8)
    want = m.layers[0].stages(x)["output"]
    got = golden.run(lowered, x, all_layers=True)[len(lowered.nodes) - 3]  # before the 1x1 layer's conv
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("layer, why", [
    (dict(operation="conv1d"), "conv1d has no C kernel"),
    (dict(eltwise="xor", operands=2), "element-wise xor"),
    (dict(eltwise="add", operands=3), "of 3 operands"),
])
def test_what_has_no_lowering_is_refused_in_one_line_naming_the_layer(layer, why):
    rng = np.random.default_rng(0)
    n = layer.get("operands", 1)
    if layer.get("operation") == "conv1d":
        op = ir.Max78000Layer(weight=rng.integers(-8, 8, (2, 2, 3)), weight_bits=4, padding=1, **layer)
        m = ir.Model(ir.InputSpec((2, 10)), layers=[op])
    else:
        op = ir.Max78000Layer(operation="passthrough", **layer)
        m = ir.Model(ir.InputSpec((2, 4, 4)), nodes=[ir.Node(op, ("input",) * n, "y")])
    with pytest.raises(LoweringError) as e:
        lower_max78000.for_c(m)
    assert why in str(e.value) and "layer 0" in str(e.value) and "\n" not in str(e.value)


def test_a_model_without_accelerator_layers_is_kept_as_it_is():
    m = ir.Model(ir.InputSpec((4,)), layers=[ir.Linear(weight=np.ones((2, 4), dtype=np.int64), encoding="8bit")])
    assert lower_max78000.for_c(m) is m


@pytest.mark.parametrize("kernels", ["generic", "cortex-m4"])
def test_the_c_of_lowered_accelerator_models_equals_golden(kernels, tmp_path, capsys):
    for i, m in enumerate([residual_graph(0), residual_graph(1), test_max78000_program.random_chain(2)]):
        modelfile.save(m, tmp_path / f"m{i}.pt")
        r = _bitgen(capsys, "check", f"m{i}.pt", "--kernels", kernels, "--random", "40", "--json", f"c{i}.json",
                    cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        rep = json.loads((tmp_path / f"c{i}.json").read_text())
        assert rep["mismatches"] == 0 and rep["compared"] >= 40


def test_an_accelerator_model_runs_on_the_cortex_m4_of_max78000_sim(tmp_path, capsys):
    """The board's own identity check passes (it reports the model file's hash, not the lowered
    graph's), and every output of the protocol run equals the original model's golden."""
    test_max78000_program.toolchain_or_skip()
    modelfile.save(residual_graph(2), tmp_path / "m.pt")
    r = _bitgen(capsys, "run", "--board", "max78000-sim", "m.pt", "--random", "12", "--json", "run.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "run.json").read_text())
    assert rep["compared"] >= 12 and rep["mismatches"] == 0 and rep["target"] == "c"


def mixed_model() -> ir.Model:
    """Three accelerator layers (USPS size), then a 4-bit linear layer and a ShiftNorm, which only
    the Cortex-M4 runs."""
    rng = np.random.default_rng(5)
    stem = test_max78000_run._usps_chain().nodes[:3]  # 32 x 4 x 4, int8
    nodes = list(stem) + [
        ir.Node(ir.Flatten(), (stem[-1].output,), "flat"),
        ir.Node(ir.Linear(weight=rng.integers(-8, 8, (10, 512)), encoding="4bit", bias=rng.integers(-99, 99, 10)),
                ("flat",), "fc"),
        ir.Node(ir.ShiftNorm(), ("fc",), "logits")]
    return ir.Model(ir.InputSpec((1, 16, 16), scale=1 / 128), nodes=nodes, name="mixed")


def test_the_accelerator_hands_its_output_to_the_cortex_m4_in_one_image(tmp_path, capsys):
    test_max78000_program.toolchain_or_skip()
    modelfile.save(mixed_model(), tmp_path / "m.pt")
    r = _bitgen(capsys, "run", "--board", "max78000-sim", "--target", "max78000-cnn", "m.pt", "--random", "10",
                "--json", "run.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "run.json").read_text())
    assert rep["compared"] >= 10 and rep["mismatches"] == 0 and rep["target"] == "max78000-cnn"
    assert rep["emulator"]["cnn_runs"] == rep["compared"]  # every inference started the accelerator


def test_emit_writes_the_layer_program_and_the_cortex_m4_part_with_the_hand_over(tmp_path, capsys):
    modelfile.save(mixed_model(), tmp_path / "m.pt")
    r = _bitgen(capsys, "emit", "--target", "max78000-cnn", "m.pt", "-o", "out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    assert {"cnn.c", "main.c", "mixed_m4.c", "mixed_m4.h", "network.yaml"} <= {p.name for p in out.iterdir()}
    hand = json.loads((out / "mixed.json").read_text())["handover"]
    assert hand["tensor"] == "t2" and hand["shape"] == [32, 4, 4] and hand["cortex_m4_layers"] == 3
    assert len(json.loads((out / "mixed.json").read_text())["layers"]) == 3  # the accelerator's part


@pytest.mark.parametrize("edit, why", [
    ("first", "layer 0 (flatten) is not an accelerator layer"),
    ("reads_input", "reads 'input', but only the accelerator's last output ('t2') is handed over"),
])
def test_a_model_the_hand_over_cannot_split_is_refused_in_one_line(edit, why):
    m = mixed_model()
    nodes = m.nodes
    if edit == "first":
        nodes = nodes[3:4]
        nodes[0].inputs = ("input",)
    else:
        nodes = nodes[:3] + [ir.Node(ir.Add(), ("t2", "t2"), "twice"),
                             ir.Node(ir.Flatten(), ("input",), "raw"), ir.Node(ir.Flatten(), ("twice",), "f2"),
                             ir.Node(ir.Concat(), ("raw", "f2"), "both")]
    m = ir.Model(m.input, nodes=nodes)
    with pytest.raises(NotSupported) as e:
        handover.split(m)
    assert why in str(e.value) and "\n" not in str(e.value)


def test_accelerator_layers_the_programs_do_not_take_move_to_the_cortex_m4(tmp_path, capsys):
    """A ConvTranspose2d layer with pooling before it (not in bitgen's layer programs yet) and the
    32-bit layer after it run on the Cortex-M4, lowered; the build says so, and the image equals
    golden."""
    test_max78000_program.toolchain_or_skip()
    rng = np.random.default_rng(7)
    m = ir.Model(ir.InputSpec((1, 8, 8), scale=1 / 128), layers=[
        _layer(rng, 1, 8, padding=1, activation="relu", output_shift=-2),
        _layer(rng, 8, 4, 4, padding=1, output_shift=0, activation="relu"),
        _layer(rng, 4, 4, 8, operation="convtranspose2d", padding=1, pool="max", pool_size=2, pool_stride=2,
               output_shift=-1, activation="relu"),
        ir.Max78000Layer(operation="linear", flatten=True, weight=rng.integers(-8, 8, (5, 4 * 8 * 8)), weight_bits=4,
                         output_width=32)], name="upsample")
    part = handover.split(m)
    assert len(part.accelerator.nodes) == 2 and "convtranspose2d with pooling is not supported yet" in part.moved
    modelfile.save(m, tmp_path / "m.pt")
    r = _bitgen(capsys, "build", "--board", "max78000", "--target", "max78000-cnn", "m.pt", "-o", "fw",
                "--prove", "8", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "the accelerator runs the first 2 layers, the Cortex-M4 the last 2" in r.stdout
    rep = json.loads((tmp_path / "fw" / "build.json").read_text())
    assert rep["proof"]["mismatches"] == 0 and rep["model"]["handover"]["cortex_m4_layers"] == 2
