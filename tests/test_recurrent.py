"""A small binary conv-RNN in PixelRNN's shape (the deployed cell `rnn_1_mul_noise_fixed`):

    x_b = sgn(x_t - T0)                       binary input (strict >: a tie gives -1)
    f_t = sgn(W_fi * x_b + W_fh * h_{t-1} - T) the forget gate, +-1
    h_t = f_t (.) h_{t-1}                      h_0 = +1: the running product of the gates
    o_t = W_oi * x_b + W_oh * h_{t-1}          the output of every frame

with +-1 3x3 kernels, over 16-frame clips: every frame equal to golden on the host (every kernel
set, and under ASan) and on the emulated CH32V003 through the wire protocol."""
import shutil

import numpy as np
import pytest

from bitgen import check, golden, ir
from bitgen.backends.c import emit, host
from bitgen.harness import boards
from bitgen.harness.session import Session

HW = 8
FRAMES = 16


def conv_rnn(seed=0, hw=HW):
    rng = np.random.default_rng(seed)
    kernel = lambda: rng.choice([-1, 1], (1, 1, 3, 3))  # noqa: E731
    conv = lambda name_in, out: ir.Node(ir.Conv2d(weight=kernel(), encoding="binary", padding=1), [name_in], out)  # noqa: E731
    nodes = [
        ir.Node(ir.Sign(threshold=[0]), ["input"], "xb"),
        conv("xb", "fi"), conv("h", "fh"),
        ir.Node(ir.Add(out_dtype="int32"), ["fi", "fh"], "f_pre"),
        ir.Node(ir.Sign(threshold=[1]), ["f_pre"], "f"),
        ir.Node(ir.Mul(), ["f", "h"], "h_new"),
        conv("xb", "oi"), conv("h", "oh"),
        ir.Node(ir.Add(out_dtype="int32"), ["oi", "oh"], "o"),
    ]
    state = ir.State("h", (1, hw, hw), "int8", source="h_new", init=1)
    return ir.Model(ir.InputSpec((1, hw, hw)), nodes=nodes, states=[state], name="convrnn")


def clips(n, seed=1):
    """Moving bright squares on noise: n clips of 16 frames."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-40, 40, (n, FRAMES, 1, HW, HW))
    for i in range(n):
        r, c, dr, dc = rng.integers(0, HW - 3, 2).tolist() + rng.choice([-1, 1], 2).tolist()
        for t in range(FRAMES):
            rr, cc = (r + dr * t) % (HW - 2), (c + dc * t) % (HW - 2)
            x[i, t, 0, rr:rr + 3, cc:cc + 3] = 100
    return x.astype(np.int8)


def test_the_hidden_state_is_the_running_product_of_the_gates():
    m = conv_rnn()
    x = clips(2)
    layers = golden.run_sequence(m, x, all_layers=True)
    f, h = layers[4], layers[5]
    assert set(np.unique(f)) <= {-1, 1} and set(np.unique(h)) <= {-1, 1}
    assert np.array_equal(h, np.cumprod(f.astype(np.int64), axis=1))  # h_0 = +1
    _, states = m.infer_types()
    assert (states["h"].lo, states["h"].hi) == (-1, 1)


@pytest.mark.parametrize("kernels", ["generic", "rv32ec", "rv32emc", "cortex-m4"])
def test_every_frame_of_every_clip_is_bit_exact_on_the_host(tmp_path, kernels):
    m = conv_rnn()
    em = emit.emit(m, tmp_path / "c", name="convrnn", kernels=kernels)
    inputs = [check.InputSet("clips", clips(6), sequence=True),
              check.InputSet("random", check.as_sequences(check.random_inputs(m.input.shape, 4 * FRAMES), FRAMES),
                             sequence=True),
              check.InputSet("extreme", check.held(check.extreme_inputs(m.input.shape), FRAMES), sequence=True)]
    builds = [host.build(em, tmp_path / "b")]
    if not host.sanitizer_support():
        builds.append(host.build_sanitized(em, tmp_path / "s"))
    for hm in builds:
        try:
            for s in inputs:
                res, _, _ = check.compare(m, hm, s)
                assert res.mismatches == 0 and res.compared == len(s.x) * FRAMES, (s.name, res.first_mismatch)
        finally:
            hm.close()


@pytest.mark.skipif(shutil.which("riscv64-unknown-elf-gcc") is None, reason="needs gcc-riscv64-unknown-elf")
def test_every_frame_is_bit_exact_on_the_emulated_ch32v003(tmp_path):
    m = conv_rnn()
    x = clips(3)
    with Session(boards.get("ch32v003-sim"), m, workdir=str(tmp_path)) as s:
        res, _, _ = check.compare(m, s, check.InputSet("clips", x, sequence=True))
        assert s.firmware.report["fits"] and s.firmware.report["kernels"] == "rv32ec"
    assert res.compared == 3 * FRAMES and res.mismatches == 0


@pytest.mark.skipif(shutil.which("riscv64-unknown-elf-gcc") is None, reason="needs gcc-riscv64-unknown-elf")
def test_the_build_proves_a_model_with_state_over_sequences(tmp_path):
    from bitgen.harness import firmware

    fw = firmware.build(conv_rnn(), boards.get("ch32v003"), tmp_path / "fw", prove=160)
    proof = fw.report["proof"]
    assert proof["mismatches"] == 0 and proof["inputs"]["random"] == 160  # 10 sequences of 16 frames
    assert proof["inputs"]["extreme"] == 5 * firmware.PROOF_FRAMES  # each extreme input held 16 frames
