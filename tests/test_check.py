import numpy as np

from bitgen import check
from bitgen.backends.c import emit, host
from models_for_tests import every_kernel_model


def test_check_passes_on_correct_c(tmp_path):
    m = every_kernel_model()
    sets = [check.InputSet("random", check.random_inputs(m.input.shape, 500)),
            check.InputSet("extreme", check.extreme_inputs(m.input.shape))]
    res = check.run_check(m, sets, workdir=tmp_path)
    assert res.mismatches == 0 and res.compared == 505


def test_sabotaged_c_is_caught_and_located(tmp_path):
    """Flip one weight in the emitted C of the depthwise layer: check must name layer 4."""
    m = every_kernel_model()
    em = emit.emit(m, tmp_path / "c", name="net")
    src = em.outdir / "net.c"
    text = src.read_text()
    start = text.index("net_w4[] = {")
    first_byte = text.index("0x", start)
    byte = int(text[first_byte : first_byte + 4], 16)
    text = text[:first_byte] + f"0x{byte ^ 0x01:02x}" + text[first_byte + 4 :]
    src.write_text(text)
    hm = host.build(em, tmp_path / "b")
    x = check.random_inputs(m.input.shape, 200)
    res, _, _ = check.compare(m, hm, check.InputSet("random", x))
    assert res.mismatches > 0
    assert res.first_mismatch["layer"] == 4 and res.first_mismatch["op"] == "conv2d"


def test_extreme_inputs_cover_both_rails():
    x = check.extreme_inputs((2, 3))
    flat = x.reshape(len(x), -1)
    assert x.dtype == np.int8 and x.shape[1:] == (2, 3)
    assert {-128, 127} <= set(flat[0].tolist()) | set(flat[1].tolist())
    assert flat[3].tolist() == [-128, 127, -128, 127, -128, 127]
    assert flat[4].tolist() == [127, -128, 127, -128, 127, -128]
