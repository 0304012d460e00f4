"""The SCAMP-5 kernel compiler (the AUKE / Cain problem): programs no longer than AUKE's on
its kernels and than Cain's on the Sobel pair, each one checked by the exact simulator."""
import json

import numpy as np
import pytest

from bitgen.backends.scamp5 import isa, kernels
from bitgen.backends.scamp5.program import Program
from bitgen.backends.scamp5.simulator import Simulator
from bitgen.cli import main

SOBEL = [[1, 0, -1], [2, 0, -2], [1, 0, -1]]


def correlate(img, k):
    k = np.asarray(k)
    ch, cw = k.shape[0] // 2, k.shape[1] // 2
    out = np.zeros(img.shape, dtype=float)
    for i in range(k.shape[0]):
        for j in range(k.shape[1]):
            out += k[i, j] * np.roll(img, (ch - i, cw - j), axis=(0, 1))
    return out


def run(code, img):
    s = Simulator(Program(img.shape), 1)
    s.a["A"] = img[None].astype(np.int64)
    for ins in code:
        isa.check(ins)
        s.execute(ins)
    return s


@pytest.mark.parametrize("k, auke", [
    (SOBEL, 7),
    ([[0, 1, 0], [1, -4, 1], [0, 1, 0]], 10),
    ([[1, 2, 1], [2, 4, 2], [1, 2, 1]], 8),
    ([[1] * 5] * 5, 15),
])
def test_no_longer_than_auke_and_equal_to_the_correlation(k, auke):
    c = kernels.compile_kernels([k])
    assert len(c.instructions) <= auke
    img = np.random.default_rng(0).integers(-30, 31, (20, 20))
    s = run(c.instructions, img)
    got = s.a[c.registers[c.plan.outputs[0]]][0]
    assert np.array_equal(got[5:-5, 5:-5], correlate(img, k)[5:-5, 5:-5])
    used = {a for i in c.instructions for a in i["args"] if isinstance(a, str) and a in isa.AREGS}
    assert used <= set(isa.AREGS)


def test_fractional_weights_are_halved_at_the_end():
    k = (np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16).tolist()
    c = kernels.compile_kernels([k])
    assert len(c.instructions) <= 12 and c.scale_bits == 4
    assert [i["op"] for i in c.instructions[-4:]] == ["divq"] * 4


def test_binary_5x5_kernels_beat_auke_and_share_with_a_second_kernel():
    rng = np.random.default_rng(5)
    k = rng.choice([-1, 1], (5, 5))
    c = kernels.compile_kernels([k.tolist()])
    assert len(c.instructions) <= 33  # AUKE: 33..51 on PixelRNN's kernels
    pair = kernels.compile_kernels([SOBEL, np.array(SOBEL).T.tolist()])
    assert len(pair.instructions) <= 9  # Cain's joint Sobel pair
    img = np.random.default_rng(1).integers(-30, 31, (16, 16))
    s = run(pair.instructions, img)
    for out, kk in zip(pair.plan.outputs, (SOBEL, np.array(SOBEL).T)):
        assert np.array_equal(s.a[pair.registers[out]][0][4:-4, 4:-4], correlate(img, kk)[4:-4, 4:-4])


def test_register_limits_are_kept_or_refused():
    with pytest.raises(kernels.KernelError, match="registers"):
        kernels.compile_kernels([SOBEL], registers=7)
    c = kernels.compile_kernels([[[1, 1, 1]] * 3], registers=3)
    assert {a for i in c.instructions for a in i["args"] if isinstance(a, str) and a in isa.AREGS} <= {"A", "B", "C"}


def test_the_command_line(tmp_path, capsys):
    (tmp_path / "k.json").write_text(json.dumps({"kernel": [[0, 1, 0], [1, -4, 1], [0, 1, 0]], "registers": 6}))
    assert main(["scamp5-kernel", str(tmp_path / "k.json"), "--json", str(tmp_path / "out" / "k.json")]) == 0
    rep = json.loads((tmp_path / "out" / "k.json").read_text())
    assert rep["instructions"] == len(rep["program"]) <= 10 and rep["outputs"]
    (tmp_path / "bad.json").write_text('{"kernel": "x"}')
    assert main(["scamp5-kernel", str(tmp_path / "bad.json")]) != 0
    assert "lists of numbers" in capsys.readouterr().err
