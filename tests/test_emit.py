import json
import shutil

import numpy as np
import pytest

from bitgen.backends.c import emit, host, kernels, targets
from bitgen.backends.c.kernels import lut
from bitgen import ir
from models_for_tests import every_kernel_model, mlp

CROSS = {
    "riscv64-unknown-elf-gcc": "-ffreestanding -march=rv32ec -mabi=ilp32e -misa-spec=2.2 -Os",
    "arm-none-eabi-gcc": "-ffreestanding -mcpu=cortex-m4 -mthumb -Os",
}


def test_same_model_gives_same_bytes(tmp_path):
    a = emit.emit(every_kernel_model(), tmp_path / "a", name="net")
    b = emit.emit(every_kernel_model(), tmp_path / "b", name="net")
    assert [f.name for f in a.files] == [f.name for f in b.files]
    for fa, fb in zip(a.files, b.files):
        assert fa.read_bytes() == fb.read_bytes(), fa.name


@pytest.mark.parametrize("target", kernels.TARGETS)
@pytest.mark.parametrize("compiler", sorted(CROSS) + ["cc"])
def test_every_target_compiles_warning_free(tmp_path, compiler, target):
    assert shutil.which(compiler), f"{compiler} is not installed (make setup installs it)"
    em = emit.emit(every_kernel_model(), tmp_path, name="net", kernels=target)
    flags = CROSS.get(compiler, "-O2").split()
    host.compile_check(em, compiler, host.STRICT_FLAGS + flags)


def test_report_describes_layers_and_sizes(tmp_path):
    m = mlp()
    em = emit.emit(m, tmp_path, name="mlp")
    rep = json.loads((tmp_path / "mlp.json").read_text())
    assert rep == em.report
    assert rep["model_hash"] == m.digest()
    assert rep["macs"] == 256 * 32 + 32 * 10 == m.macs()
    assert rep["weight_bytes"] == 32 * 128 + 10 * 16  # 4-bit packed rows
    assert [l["op"] for l in rep["layers"]] == ["linear", "shiftnorm", "linear"]
    assert all(l["kernel"] == "generic" for l in rep["layers"])
    # int32 acc (128 B) at one end; shiftnorm writes its 32 int8 to the other end (cheaper than in
    # place, which would keep 128 B alive under the next layer); next acc (40 B) over the first
    assert rep["arena_bytes"] == 128 + 32
    header = (tmp_path / "mlp.h").read_text()
    assert "#define MLP_ARENA_BYTES 160" in header and "#define MLP_INPUT_SIZE 256" in header


@pytest.mark.parametrize("target", kernels.TARGETS)
def test_planner_never_overlaps_live_memory(target):
    """Input, output and scratch of every step are disjoint unless the kernel runs in place."""
    m = every_kernel_model()
    m.layers += [ir.Requant(multiplier=[1], shift=[4]), ir.Linear(weight=np.ones((20, 5)), encoding="8bit")]
    m.labels = None
    mp = emit.plan_model(m, target)
    plan, types = mp.memory, mp.types
    for k, st in enumerate(mp.steps):
        choice = mp.choices[st.first]
        a, b = plan.locations[k], plan.locations[k + 1]
        out_bytes = types[st.last + 1].nbytes
        out = range(b.offset, b.offset + max(out_bytes, 0 if st.channelwise else choice.out_region or 0))
        assert b.external or (b.offset % 4 == 0 and out.stop <= plan.arena_bytes)
        spans = [out]
        if plan.scratch[k] is not None:
            if st.channelwise:  # its plane buffers (one where kernels run in place), then kernels' own
                scratch = sum(emit._step_planes(types, mp.reads, mp.choices, st)[2]) + emit._step_scratch(mp.choices, st)[1]
            else:
                scratch = choice.scratch
            spans.append(range(plan.scratch[k], plan.scratch[k] + scratch))
            assert spans[-1].stop <= plan.arena_bytes
        if not a.external and not (choice.in_place and not st.channelwise and a.offset == b.offset):
            spans.append(range(a.offset, a.offset + types[st.first].nbytes))
        for j, r in enumerate(spans):
            for q in spans[j + 1:]:
                assert not set(r) & set(q), f"step {k}: overlapping buffers"


def test_first_layer_never_writes_the_callers_input(tmp_path):
    m = ir.Model(ir.InputSpec((1, 4, 4)), [ir.ReLU(), ir.MaxPool2d(2), ir.Flatten()])
    em = emit.emit(m, tmp_path, name="ro")
    src = (tmp_path / "ro.c").read_text()
    assert "bg_relu_s8(input, (int8_t *)(arena + 0), 16);" in src
    hm = host.build(em, tmp_path / "b")
    x = np.arange(-8, 8, dtype=np.int8).reshape(1, 1, 4, 4)
    y, _, _ = hm.run(x)
    assert y.tolist() == [[0, 0, 5, 7]]


@pytest.mark.parametrize("name, kernels, msg", [
    ("1bad", "generic", "not a C name"),
    ("ok", "avr", "unknown kernel set"),
])
def test_bad_emit_options(tmp_path, name, kernels, msg):
    with pytest.raises(emit.EmitError, match=msg):
        emit.emit(mlp(), tmp_path, name=name, kernels=kernels)


def test_max_arena_trades_lut_tables_for_sram(tmp_path):
    """The 4-bit 256-64-64-10 MLP: 8 tables per pass by default on RV32EC; under a 400-byte
    limit only the layers that must build fewer, and the result stays bit-exact."""
    from bitgen import check, golden

    m = mlp(seed=3, widths=(256, 64, 64, 10))
    fast = emit.plan_model(m, "rv32ec")
    assert fast.memory.arena_bytes > 400
    em = emit.emit(m, tmp_path / "c", name="small", kernels="rv32ec", max_arena=400)
    rep = em.report
    assert rep["arena_bytes"] <= 400 and rep["max_arena"] == 400
    scratch = {lay["index"]: lay["scratch_bytes"] for lay in rep["layers"] if lay["kernel"] == "lut"}
    default = lut.scratch_bytes(targets.get("rv32ec").lut_chunk)
    assert min(scratch.values()) < default  # some layer gave up tables...
    assert scratch[max(scratch)] == default  # ...but not the last, small one
    x = np.concatenate([check.random_inputs(m.input.shape, 32), check.extreme_inputs(m.input.shape)])
    assert np.array_equal(golden.run(m, x), host.build(em, tmp_path / "b").run(x)[0])
    with pytest.raises(emit.EmitError, match=r"arena needs \d+ B at least, over the limit of 100 B"):
        emit.emit(m, tmp_path / "d", kernels="rv32ec", max_arena=100)


def test_the_header_carries_the_input_quantization_firmware_needs(tmp_path):
    """NAME_INPUT_SCALE and NAME_INPUT_ZERO_POINT quantize raw values in C exactly as the
    model's input spec does (round half up, clamp to int8)."""
    import subprocess

    model = mlp(widths=(16, 8, 4))
    model.input = ir.InputSpec((16,), scale=0.0371, zero_point=-3)
    emit.emit(model, tmp_path, name="net")
    raw = np.linspace(-6.0, 6.0, 16)
    (tmp_path / "q.c").write_text(
        '#include <math.h>\n#include <stdio.h>\n#include "net.h"\n'
        f"static const double raw[16] = {{{', '.join(repr(float(v)) for v in raw)}}};\n"
        "int main(void) { int i; for (i = 0; i < NET_INPUT_SIZE; i++) {\n"
        "    long q = (long)floor(raw[i] / NET_INPUT_SCALE + 0.5) + NET_INPUT_ZERO_POINT;\n"
        '    printf("%d\\n", (int)(q < -128 ? -128 : q > 127 ? 127 : q)); } return 0; }\n')
    subprocess.run(["cc", "-std=c99", "-Wall", "-Werror", "-I", str(tmp_path), str(tmp_path / "q.c"), "-lm",
                    "-o", str(tmp_path / "q")], check=True)
    got = [int(v) for v in subprocess.run([str(tmp_path / "q")], capture_output=True, text=True).stdout.split()]
    assert got == model.input.quantize(raw[None])[0].tolist()


def test_a_plane_overwrites_its_input_only_where_no_later_output_reads_the_bytes():
    from bitgen.backends.c.kernels.dw_lut import raster_in_place
    # a valid 3x3 convolution, 14x14 -> 12x12, int32 over int32 or uint16 over uint16, pooled or not
    assert raster_in_place((12, 12), (1, 1), 14, False, 4, 4)
    assert raster_in_place((12, 12), (1, 1), 14, True, 2, 2)
    assert raster_in_place((6, 6), (2, 2), 14, False, 4, 4)  # stride 2
    # wider outputs: output (0, 0)'s int32 covers the input that output (0, 1) reads next
    assert not raster_in_place((12, 12), (1, 1), 14, True, 2, 4)
    assert not raster_in_place((14, 14), (1, 1), 16, False, 1, 4)


def test_a_channel_step_keeps_one_plane_where_its_kernels_run_in_place():
    """A conv -> ReLU -> shift -> depthwise conv -> ReLU -> pool chain: on RV32EC the first LUT
    kernel stores its plane, the second (with the ReLU and pool fused) writes the step's output:
    one plane buffer. The generic kernels run ReLU and requantization in place, but the int32
    output of the second convolution cannot overwrite its int8 input: a second buffer, of its
    own 6x6 int32 plane's size."""
    rng = np.random.default_rng(1)
    layers = [ir.Conv2d(weight=rng.integers(-20, 20, (4, 1, 3, 3)), encoding="8bit"), ir.ReLU(),
              ir.Requant(multiplier=[1], shift=[4]),
              ir.Conv2d(weight=rng.integers(-20, 20, (4, 1, 3, 3)), groups=4, encoding="8bit"), ir.ReLU(),
              ir.MaxPool2d(kernel=(2, 2), stride=(2, 2)),
              ir.Flatten(), ir.Linear(weight=rng.choice([-1, 1], (3, 36)), encoding="2bitsym")]
    m = ir.Model(input=ir.InputSpec(shape=(1, 10, 10)), layers=layers)
    for kernels in ("rv32ec", "generic"):
        mp = emit.plan_model(m, kernels)
        st = mp.steps[0]
        assert st.channelwise
        narrow, slots, regions = emit._step_planes(mp.types, mp.reads, mp.choices, st)
        assert regions == ([8 * 8] if kernels == "rv32ec" else [8 * 8 * 4, 6 * 6 * 4]), kernels


def _cnn_into_shiftnorm(seed: int = 2, hw: int = 14) -> ir.Model:
    """BitNetMCU's CNN layout in small: conv 1->8, ReLU, shift, depthwise conv, ReLU, shift,
    pool, then Flatten -> ShiftNorm -> linear. Its channel-by-channel step ends in an int32
    tensor (8x5x5) four times the bytes of the ShiftNorm's int8 output."""
    rng = np.random.default_rng(seed)
    layers = [ir.Conv2d(weight=rng.integers(-60, 60, (8, 1, 3, 3)), encoding="8bit"), ir.ReLU(),
              ir.Requant(multiplier=[1], shift=[4], out_dtype="int32"),
              ir.Conv2d(weight=rng.integers(-60, 60, (8, 1, 3, 3)), groups=8, encoding="8bit"), ir.ReLU(),
              ir.Requant(multiplier=[1], shift=[2], out_dtype="int32"), ir.MaxPool2d(kernel=(2, 2), stride=(2, 2)),
              ir.Flatten(), ir.ShiftNorm(),
              ir.Linear(weight=rng.integers(-7, 8, (10, 8 * ((hw - 4) // 2) ** 2)), encoding="4bit")]
    return ir.Model(input=ir.InputSpec(shape=(1, hw, hw)), layers=layers)


@pytest.mark.parametrize("target", kernels.TARGETS)
def test_a_step_before_a_shiftnorm_runs_twice_to_hold_int8(tmp_path, target):
    """Only where the arena must shrink: the step takes the ShiftNorm in, keeps the running
    maximum in a first pass and writes each plane normalized in a second, so its output is the
    int8 tensor. Every traced layer (the pooled int32 planes of both passes, the ShiftNorm's
    output) equals golden."""
    from bitgen import check, golden

    m = _cnn_into_shiftnorm()
    fast = emit.plan_model(m, target)
    assert not any(st.norm_first is not None for st in fast.steps)
    two = emit.plan_model(m, target, two_pass=frozenset({0}))
    st = two.steps[0]
    assert (st.first, st.norm_first, st.last) == (0, 7, 8) and st.planes_last == 6
    # the int32 output (800 B) became int8 (200 B); the last pooled plane (5x5 int32) may
    # need a buffer of its own now
    assert two.memory.arena_bytes <= fast.memory.arena_bytes - 600 + 100
    # a limit that kernel scratch alone cannot meet (fewer LUT tables per pass come first)
    limit = emit._trade_scratch(m, target, 0).memory.arena_bytes - 4
    em = emit.emit(m, tmp_path / "c", name="cnn", kernels=target, max_arena=limit)
    assert em.report["arena_bytes"] <= limit
    assert em.report["layers"][8]["kernel"] == "shiftnorm/two-pass/channelwise"
    rng = np.random.default_rng(5)
    x = np.concatenate([check.random_inputs(m.input.shape, 100), check.extreme_inputs(m.input.shape),
                        np.where(rng.random((8, 1, 14, 14)) < 0.6, -127,
                                 rng.integers(-128, 128, (8, 1, 14, 14))).astype(np.int8)])
    y, _, layers = host.build(em, tmp_path / "b").run(x, trace=True)
    want = golden.run(m, x, all_layers=True)
    traced = [i for i, g in enumerate(layers) if g is not None]
    assert 6 in traced and 8 in traced
    for i in traced:
        assert np.array_equal(want[i].reshape(layers[i].shape), layers[i]), f"layer {i} ({m.layers[i].kind})"
    assert np.array_equal(want[-1].reshape(y.shape), y)
    with pytest.raises(emit.EmitError, match="over the limit"):
        emit.emit(m, tmp_path / "d", kernels=target,
                  max_arena=emit._trade_scratch(m, target, 0, frozenset({0})).memory.arena_bytes - 4)
