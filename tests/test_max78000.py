"""The MAX78000 CNN accelerator: its arithmetic (the max78000_layer op), izer's network YAML, the
ai8x checkpoint importer and the emulated accelerator, checked against ADI's own tool (izer, in
../shared/oracles; tests that need it skip with the reason when it is absent).

`make test` runs a handful of izer's `arch: test` networks; BITGEN_IZER_ALL=1 runs every one
(several minutes per hundred networks). `python tests/izer_oracle.py OUT.json` counts them all.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bitgen import golden, ir, modelfile
from bitgen.backends.max78000 import network_yaml
from bitgen.importers import ai8x

sys.path.insert(0, str(Path(__file__).resolve().parent))
import izer_oracle  # noqa: E402

ALL = os.environ.get("BITGEN_IZER_ALL") == "1"
# A few networks that cover the layer kinds: conv1d with 1/2/4/8-bit weights, element-wise add
# before and after average pooling and fused into a convolution, flatten + linear with 4-bit
# weights, Abs, 32-bit output, ConvTranspose2d, xor.
QUICK = ["test-conv1d-multilayer-q1248", "test-eltwiseadd-poolafter-avg", "test-eltwiseadd-combined-conv-avgpool",
         "test-flatten-fc-quant4", "test-conv1d-abs", "test-conv1d-pool-5-wide", "test-upsample-nonsquare-pad1A",
         "test-eltwisexor"]
# the last: 100 outputs in two passes of 52 lanes, the second partly used
QUICK_FIRMWARE = ["test-conv1d-multilayer", "test-eltwiseadd-poolafter-avg", "test-mlpflatten12to100"]


def layer(**kw) -> ir.Max78000Layer:
    return ir.Max78000Layer(**kw)


def one(op: ir.Max78000Layer, *xs) -> np.ndarray:
    return op.golden(*(np.asarray(x, dtype=np.int8)[None] for x in xs))[0]


# ------------------------------------------------------------------ the arithmetic, by hand
def test_output_stage_rounds_half_up_once_and_clamps():
    # a 1x1 conv of weight 1: acc = x; shift 0 (8-bit) divides by 128 with one rounding, half up
    op = layer(weight=np.ones((1, 1, 1, 1)), padding=0, bias=np.array([0]))
    x = np.array([[[64, -64, -65, 127, -128, 63]]])
    assert one(op, x).tolist() == [[[1, 0, -1, 1, -1, 0]]]
    # output_shift 7 multiplies by 128: 127 stays, and 2 * 64 saturates
    op = layer(weight=np.full((1, 1, 1, 1), 2), padding=0, output_shift=7)
    assert one(op, np.array([[[64, -64, 1]]])).tolist() == [[[127, -128, 2]]]
    # a bias byte enters as 128 * bias: bias 1 adds one output step
    op = layer(weight=np.ones((1, 1, 1, 1)), padding=0, bias=np.array([1]))
    assert one(op, np.array([[[64, -64, -65]]])).tolist() == [[[2, 1, 0]]]


def test_narrow_weights_shift_implicitly():
    # 4-bit weights: the hardware shifts by output_shift + 4, so weight 1 * 8 (x) with shift 0 -> 8/8
    op = layer(weight=np.ones((1, 1, 1, 1)), weight_bits=4, padding=0)
    assert op.shift == 4
    assert one(op, np.array([[[8, 4, 3, -4]]])).tolist() == [[[1, 1, 0, 0]]]
    with pytest.raises(ir.IRError, match="4-bit weights must lie in -8..7"):
        layer(weight=np.full((1, 1, 1, 1), 8), weight_bits=4, padding=0).infer(ir.TensorType((1, 1, 4), "int8", -128, 127))
    with pytest.raises(ir.IRError, match="outside -15..15"):
        layer(weight=np.ones((1, 1, 1, 1)), weight_bits=1, padding=0, output_shift=9).infer(
            ir.TensorType((1, 1, 4), "int8", -128, 127))


def test_activations_and_wide_output():
    w = np.ones((1, 1, 1, 1))
    x = np.array([[[-128, -5, 5]]])
    assert one(layer(weight=w, padding=0, output_shift=7, activation="relu"), x).tolist() == [[[0, 0, 5]]]
    assert one(layer(weight=w, padding=0, output_shift=7, activation="abs"), x).tolist() == [[[127, 5, 5]]]
    wide = layer(weight=np.full((1, 1, 1, 1), 100), padding=0, output_width=32, bias=np.array([3]))
    out = one(wide, x)
    assert out.dtype == np.int32 and out.tolist() == [[[-12800 + 384, -500 + 384, 500 + 384]]]


def test_average_pooling_truncates_or_rounds_half_away_from_zero():
    x = np.array([[[-3, -2], [-1, 0]], [[3, 2], [1, 0]], [[-3, -2], [-1, -1]]])  # sums -6, 6, -7 over 4
    passthrough = dict(operation="passthrough", pool="avg", pool_size=2, pool_stride=2)
    assert one(layer(**passthrough), x).reshape(-1).tolist() == [-1, 1, -1]
    assert one(layer(**passthrough, avg_pool_rounding=True), x).reshape(-1).tolist() == [-2, 2, -2]
    assert one(layer(operation="passthrough", pool="max", pool_size=2, pool_stride=2), x).reshape(-1).tolist() == [0, 3, -1]


def test_eltwise_saturates_and_pool_first_orders_the_steps():
    a, b = np.array([[[100, -100], [1, 2]]]), np.array([[[100, 100], [3, 4]]])
    assert one(layer(operation="passthrough", eltwise="add", operands=2), a, b).reshape(-1).tolist() == [127, 0, 4, 6]
    assert one(layer(operation="passthrough", eltwise="sub", operands=2), b * -1, a).reshape(-1).tolist() == [-128, 0, -4, -6]
    assert one(layer(operation="passthrough", eltwise="xor", operands=2), a, b).reshape(-1).tolist() == [0, -8, 2, 6]
    # pool then add: max(100,-100,1,2) + max(100,100,3,4) saturates; add then pool: max(200->127, 0, 4, 6)
    pooled = dict(operation="passthrough", eltwise="add", operands=2, pool="max", pool_size=2, pool_stride=2)
    assert one(layer(**pooled), a, b).reshape(-1).tolist() == [127]
    assert one(layer(**pooled, pool_first=False), a, -b).reshape(-1).tolist() == [0]  # max(0, -128, -2, -2)


def test_convtranspose_doubles_the_size():
    op = layer(operation="convtranspose2d", weight=np.ones((2, 1, 3, 3)), padding=1, output_shift=7)
    t = op.infer(ir.TensorType((1, 4, 5), "int8", -128, 127))
    assert t.shape == (2, 8, 10)
    out = one(op, np.ones((1, 4, 5)))
    assert out.shape == (2, 8, 10) and out[0, 0, 0] == 1 and out[0, 1, 1] == 4  # one input, then four around


# ------------------------------------------------------------------ the network YAML
YAML = """
arch: net
dataset: mnist
layers:
  - processors: 0x1
    max_pool: 2
    activate: ReLU
  - processors: 0xff
    op: linear
    flatten: true
    output_width: 32
"""


def test_yaml_defaults_are_izers():
    net = network_yaml.parse(YAML)
    a, b = net.layers
    assert (a.operation, a.pad, a.kernel_size, a.pool, a.pool_size, a.pool_stride) == ("conv2d", 1, 3, "max", (2, 2), (1, 1))
    assert (b.operation, b.pad, b.flatten, b.output_width, b.quantization_given) == ("linear", 0, True, 32, False)
    assert net.refusals() == []


@pytest.mark.parametrize("text, message", [
    ("arch: a\nlayers: []\n", "has `arch`, `dataset` and `layers`"),
    ("arch: a\ndataset: b\nlayers:\n  - op: conv2d\n", "no `processors`"),
    ("arch: a\ndataset: b\nlayers:\n  - processors: 0x1\n    op: conv5d\n", "unknown operation 'conv5d'"),
    ("arch: a\ndataset: b\nlayers:\n  - processors: 0x1\n    colour: red\n", "unknown key(s) colour"),
    ("arch: [\n", "not valid YAML"),
])
def test_yaml_errors_are_one_line(text, message):
    with pytest.raises(network_yaml.NetworkYamlError, match=None) as e:
        network_yaml.parse(text, "n.yaml")
    assert message in str(e.value) and "\n" not in str(e.value)


def test_yaml_refuses_what_bitgen_does_not_model():
    net = network_yaml.parse("arch: a\ndataset: b\nlayers:\n  - processors: 0x1\n    streaming: true\n"
                             "  - processors: 0x1\n    groups: 1\n    streaming: false\n")
    assert net.refusals() == ["layer 0: streaming (FIFO input)", "layer 1: depth-wise/grouped convolution"]


# ------------------------------------------------------------------ golden against izer
def _izer_or_skip():
    why = izer_oracle.missing()
    if why:
        pytest.skip(why)


def _networks(quick: list[str]) -> list[str]:
    if ALL and izer_oracle.TESTS.is_dir():
        return [p.stem for p in izer_oracle.test_networks()]
    return quick


@pytest.mark.parametrize("name", _networks(QUICK))
def test_golden_equals_izer_layer_by_layer(name, tmp_path):
    _izer_or_skip()
    config = izer_oracle.TESTS / f"{name}.yaml"
    net = network_yaml.parse(config.read_text(), str(config))
    if net.refusals():
        pytest.skip(f"outside bitgen's subset: {net.refusals()[0]}")
    try:
        folder = izer_oracle.run(config, tmp_path, name)
    except izer_oracle.IzerFailed as e:
        pytest.skip(f"izer refuses it: {e}")
    assert izer_oracle.golden_vs_izer(config, folder) == []


@pytest.fixture(scope="module")
def multilayer(tmp_path_factory):
    """izer's output for test-conv1d-multilayer, run once for the tests that alter a copy of it."""
    _izer_or_skip()
    return izer_oracle.run(izer_oracle.TESTS / "test-conv1d-multilayer.yaml", tmp_path_factory.mktemp("izer"), "c")


def _copy(folder: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(folder, tmp_path / folder.name))


def test_the_izer_comparison_sees_one_changed_value(multilayer, tmp_path):
    config = izer_oracle.TESTS / "test-conv1d-multilayer.yaml"
    folder = _copy(multilayer, tmp_path)
    recs = izer_oracle.records(folder / "data.npy")
    layers = len(recs) // 5
    recs[-1].flat[3] += 1  # the last layer's output
    with open(folder / "data.npy", "wb") as f:
        for r in recs:
            np.save(f, r)
    diffs = izer_oracle.golden_vs_izer(config, folder)
    assert len(diffs) == 1 and diffs[0].startswith(f"layer {layers - 1} output: 1 of"), diffs


# ------------------------------------------------------------------ izer's firmware on the emulator
def _firmware_or_skip():
    _izer_or_skip()
    from bitgen.errors import BitgenError
    from bitgen.harness import boards

    try:
        boards.get("max78000").require_toolchain()
    except BitgenError as e:
        pytest.skip(str(e))


@pytest.mark.parametrize("name", _networks(QUICK_FIRMWARE))
def test_emulated_accelerator_runs_izers_firmware_and_passes_its_known_answer_test(name, tmp_path):
    _firmware_or_skip()
    config = izer_oracle.TESTS / f"{name}.yaml"
    if network_yaml.parse(config.read_text()).refusals():
        pytest.skip("outside bitgen's subset")
    try:
        folder = izer_oracle.run(config, tmp_path, name)
    except izer_oracle.IzerFailed as e:
        pytest.skip(f"izer refuses it: {e}")
    r = izer_oracle.run_firmware(izer_oracle.build_firmware(folder, tmp_path / "fw"))
    assert r.passed, r.console
    assert r.cnn_layers > 0


def test_a_wrong_expected_word_fails_izers_known_answer_test(multilayer, tmp_path):
    _firmware_or_skip()
    folder = _copy(multilayer, tmp_path)
    text = (folder / "sampleoutput.h").read_text()
    head, _, tail = text.partition("SAMPLE_OUTPUT")
    first = tail.index("0x", tail.index("0x", tail.index("0x") + 1) + 1)  # address, mask, then the count
    first = tail.index("0x", first + 1)  # the first expected word
    word = int(tail[first:first + 10], 16)
    (folder / "sampleoutput.h").write_text(head + "SAMPLE_OUTPUT" + tail[:first] + f"0x{word ^ 1:08x}" + tail[first + 10:])
    r = izer_oracle.run_firmware(izer_oracle.build_firmware(folder, tmp_path / "fw"))
    assert not r.passed and "FAIL" in r.console


def test_an_unmodelled_control_bit_stops_the_emulator_with_a_fault_that_names_it(multilayer, tmp_path):
    from bitgen.sim.machine import SimFault

    _firmware_or_skip()
    folder = _copy(multilayer, tmp_path)
    src = (folder / "cnn.c").read_text()
    assert "= 0x00100009; // Master enable quadrant 0" in src
    (folder / "cnn.c").write_text(src.replace("= 0x00100009; // Master enable", "= 0x00104009; // Master enable"))
    with pytest.raises(SimFault, match="streaming"):
        izer_oracle.run_firmware(izer_oracle.build_firmware(folder, tmp_path / "fw"))


# ------------------------------------------------------------------ ai8x checkpoints
NET_YAML = """---
arch: ai85net-test
dataset: MNIST
layers:
  - processors: 0x0000000000000001
    out_offset: 0x2000
    operation: conv2d
    kernel_size: 3x3
    max_pool: 2
    pool_stride: 2
    activate: ReLU
  - processors: 0x00000000000000ff
    out_offset: 0x0000
    avg_pool: 2
    pool_stride: 2
    activate: ReLU
  - processors: 0x000000000000ffff
    out_offset: 0x2000
    operation: linear
    flatten: true
    output_width: 32
"""


def write_checkpoint(path: Path, extra: dict | None = None, seed: int = 0) -> dict:
    """An ai8x-synthesis quantized checkpoint (quantize.py's layout: `NAME.op.weight` integers as
    floats, `NAME.op.bias` = bias byte * 2**(weight_bits-1), `NAME.weight_bits`,
    `NAME.output_shift`) with an SGD optimizer beside it, as ai8x-training saves one."""
    import collections

    import torch

    rng = np.random.default_rng(seed)
    sd = collections.OrderedDict()
    truth = {}
    for name, shape, wb, shift in (("conv1", (8, 1, 3, 3), 8, -1), ("conv2", (16, 8, 3, 3), 4, 0),
                                   ("fc", (10, 16 * 7 * 7), 2, 1)):
        w = rng.integers(-(1 << (wb - 1)), 1 << (wb - 1), shape)
        b = rng.integers(-(1 << (wb - 1)), 1 << (wb - 1), shape[0])
        sd[f"{name}.output_shift"] = torch.tensor([float(shift)])
        sd[f"{name}.weight_bits"] = torch.tensor([float(wb)])
        sd[f"{name}.op.weight"] = torch.tensor(w, dtype=torch.float32)
        # quantize.py stores the bias times 2**(wb-1); izer floors it back (+3 is dropped for wb 8)
        sd[f"{name}.op.bias"] = torch.tensor(b * 2.0 ** (wb - 1) + (3 if wb == 8 else 0), dtype=torch.float32)
        truth[name] = (w, b, shift)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1, momentum=0.9)
    torch.save({"epoch": 3, "arch": "ai85net-test", "state_dict": sd, "optimizer": opt, **(extra or {})}, path)
    return truth


def test_import_reads_an_ai8x_checkpoint(tmp_path):
    ck, y = tmp_path / "net-q.pth.tar", tmp_path / "net.yaml"
    truth = write_checkpoint(ck)
    y.write_text(NET_YAML)
    model = ai8x.read(ck, y)
    assert model.input.shape == (1, 28, 28)
    ops = [n.op for n in model.nodes]
    for op, name, bits in zip(ops, ("conv1", "conv2", "fc"), (8, 4, 2)):
        w, b, shift = truth[name]
        assert op.weight_bits == bits and op.output_shift == shift
        assert np.array_equal(op.weight, w) and np.array_equal(op.bias, b)
    assert (ops[0].pool, ops[1].pool, ops[2].flatten, ops[2].output_width) == ("max", "avg", True, 32)


def test_imported_checkpoint_equals_izer_on_the_same_checkpoint(tmp_path):
    _izer_or_skip()
    ck, y, sample = tmp_path / "net-q.pth.tar", tmp_path / "net.yaml", tmp_path / "sample.npy"
    write_checkpoint(ck, seed=1)
    y.write_text(NET_YAML)
    x = np.random.default_rng(2).integers(-128, 128, (1, 28, 28))
    np.save(sample, x)
    model = ai8x.read(ck, y)
    folder = izer_oracle.run(y, tmp_path / "izer", "ck", checkpoint=ck, sample=sample)
    logs = izer_oracle.layer_logs(folder)
    outs = golden.run(model, x.reshape((1,) + model.input.shape).astype(np.int8), all_layers=True)
    assert len(outs) == len(logs) == 3
    for mine, log in zip(outs, logs):
        assert np.array_equal(mine.reshape(-1), log.output.reshape(-1))


# Two more networks for the importer against izer: a ConvTranspose2d (whose PyTorch weight,
# (in, out, 3, 3), izer flips and transposes) between 2-D convolutions with 8-, 2- and 4-bit
# weights; conv1d with average pooling, 4-bit and 1-bit weights, ReLU and Abs.
MORE = {
    "2d": ("""---
arch: ai85net-t
dataset: test_t
layers:
  - processors: 0x0000000000000007
    out_offset: 0x2000
    operation: conv2d
    kernel_size: 3x3
    pad: 1
    activate: ReLU
  - processors: 0x00000000000000ff
    out_offset: 0x0000
    operation: convtranspose2d
    kernel_size: 3x3
    pad: 1
  - processors: 0x000000000000000f
    out_offset: 0x2000
    operation: conv2d
    kernel_size: 1x1
    pad: 0
    max_pool: 2
    pool_stride: 2
    output_width: 32
""", [("conv1", (8, 3, 3, 3), 8, 0), ("up", (8, 4, 3, 3), 2, 2), ("conv3", (5, 4, 1, 1), 4, 0)], (3, 8, 6)),
    "1d": ("""---
arch: ai85net-k
dataset: test_k
layers:
  - processors: 0x000000000000000f
    out_offset: 0x2000
    operation: conv1d
    kernel_size: 5
    pad: 2
    avg_pool: 2
    pool_stride: 2
    activate: ReLU
  - processors: 0x000000000000003f
    out_offset: 0x0000
    operation: conv1d
    kernel_size: 3
    pad: 1
    activate: Abs
""", [("conv1", (6, 4, 5), 4, 1), ("conv2", (3, 6, 3), 1, 3)], (4, 40)),
}


def write_layers(path: Path, arch: str, layers: list, seed: int) -> None:
    import collections

    import torch

    rng = np.random.default_rng(seed)
    sd = collections.OrderedDict()
    for name, shape, wb, shift in layers:
        sd[f"{name}.output_shift"] = torch.tensor([float(shift)])
        sd[f"{name}.weight_bits"] = torch.tensor([float(wb)])
        sd[f"{name}.op.weight"] = torch.tensor(rng.integers(-(1 << (wb - 1)), 1 << (wb - 1), shape), dtype=torch.float32)
        out = shape[1] if name == "up" else shape[0]  # ConvTranspose2d: (in, out, k, k)
        sd[f"{name}.op.bias"] = torch.tensor(rng.integers(-20, 20, out) * 2.0 ** (wb - 1), dtype=torch.float32)
    torch.save({"epoch": 1, "arch": arch, "state_dict": sd}, path)


@pytest.mark.parametrize("kind", sorted(MORE))
def test_imported_convtranspose_and_conv1d_equal_izer(kind, tmp_path):
    _izer_or_skip()
    text, layers, shape = MORE[kind]
    ck, y, sample = tmp_path / "net-q.pth.tar", tmp_path / "net.yaml", tmp_path / "sample.npy"
    write_layers(ck, network_yaml.parse(text).arch, layers, seed=3)
    y.write_text(text)
    x = np.random.default_rng(4).integers(-128, 128, shape)
    np.save(sample, x)
    model = ai8x.read(ck, y, input_shape=shape)
    folder = izer_oracle.run(y, tmp_path / "izer", kind, checkpoint=ck, sample=sample)
    logs = izer_oracle.layer_logs(folder)
    outs = golden.run(model, x.reshape((1,) + shape).astype(np.int8), all_layers=True)
    assert len(outs) == len(logs) == len(layers)
    for k, (mine, log) in enumerate(zip(outs, logs)):
        assert mine.size == log.output.size and np.array_equal(mine.reshape(-1), log.output.reshape(-1)), k


def test_loading_a_checkpoint_runs_no_code_from_it(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    ck, y = tmp_path / "evil.pth.tar", tmp_path / "net.yaml"
    write_checkpoint(ck, extra={"payload": Payload()})
    y.write_text(NET_YAML)
    with pytest.raises(ai8x.Ai8xImportError, match="does not load safely .*GLOBAL"):
        ai8x.read(ck, y)
    assert not marker.exists()


def _bitgen(capsys, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The command line, in this process (faster than a new Python per call), run in ``cwd``."""
    from bitgen import cli

    here = Path.cwd()
    capsys.readouterr()
    os.chdir(cwd)
    try:
        rc = cli.main(list(args))
    finally:
        os.chdir(here)
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, rc, out.out, out.err)


def test_bitgen_import_with_yaml(tmp_path, capsys):
    ck, y = tmp_path / "net-q.pth.tar", tmp_path / "net.yaml"
    write_checkpoint(ck)
    y.write_text(NET_YAML)
    r = _bitgen(capsys, "import", str(ck), "--yaml", str(y), "-o", str(tmp_path / "m.pt"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "3 layers" in r.stdout and "outputs int32" in r.stdout
    loaded = modelfile.load(tmp_path / "m.pt").ir
    assert [n.op.kind for n in loaded.nodes] == ["max78000_layer"] * 3
    x = np.random.default_rng(0).integers(-128, 128, (4, 1, 28, 28)).astype(np.int8)
    assert np.array_equal(golden.run(loaded, x), golden.run(ai8x.read(ck, y), x))


@pytest.mark.parametrize("edit, args, message", [
    (None, ["--yaml", "missing.yaml"], "missing.yaml: no such file"),
    ("arch: other\n", [], "does not match the checkpoint's 'ai85net-test'"),
    ("dataset: speech\n", [], "give --input-shape"),
    ("extra:\n  - processors: 0x1\n", [], "no weights for layer 3"),
    ("layers:\n  - processors: 0x1\n    kernel_size: 1x1\n", [], "kernel (3, 3); layer 0's kernel_size is 1"),
    ("layers:\n  - processors: 0x1\n    quantization: 2\n", [], "outside the 2-bit range"),
    (None, ["--dataset", "mnist"], "already quantized"),
])
def test_bitgen_import_errors_are_one_line(tmp_path, edit, args, message, capsys):
    ck, y = tmp_path / "net-q.pth.tar", tmp_path / "net.yaml"
    write_checkpoint(ck)
    text = NET_YAML
    if edit:
        key = edit.split(":")[0]
        if key == "layers":
            text = text[:text.index("layers:")] + edit
        elif key == "extra":  # one more layer than the checkpoint has weights for
            text = text + edit[len("extra:\n"):]
        else:
            text = "\n".join(edit.strip() if ln.startswith(key + ":") else ln for ln in text.splitlines()) + "\n"
    y.write_text(text)
    argv = ["import", str(ck)] + (args if "--yaml" in args else ["--yaml", str(y)] + args) + ["-o", "m.pt"]
    r = _bitgen(capsys, *argv, cwd=tmp_path)
    assert r.returncode != 0
    assert message in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_bitgen_import_refuses_a_file_that_is_not_a_checkpoint(tmp_path, capsys):
    (tmp_path / "net.yaml").write_text(NET_YAML)
    np.save(tmp_path / "x.npy", np.zeros(3))
    r = _bitgen(capsys, "import", "x.npy", "--yaml", "net.yaml", "-o", "m.pt", cwd=tmp_path)
    assert r.returncode != 0 and "not a PyTorch checkpoint" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "m.pt").exists()
