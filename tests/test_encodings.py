import numpy as np
import pytest

from bitgen import encodings

ALL = list(encodings.ENCODINGS.values())


@pytest.mark.parametrize("enc", ALL, ids=lambda e: e.name)
def test_pack_unpack_roundtrip(enc):
    rng = np.random.default_rng(1)
    for rows, n in [(1, 1), (3, 7), (5, 17), (2, 64)]:
        w = rng.choice(np.array(enc.values), size=(rows, n))
        packed = enc.pack_rows(w)
        assert len(packed) == rows * enc.row_bytes(n)
        assert np.array_equal(enc.unpack_rows(packed, rows, n), w)


def test_value_sets():
    E = encodings.ENCODINGS
    assert sorted(E["binary"].values) == [-1, 1]
    assert sorted(E["ternary"].values) == [-1, 0, 1]
    assert sorted(E["2bitsym"].values) == [-3, -1, 1, 3]
    assert sorted(E["4bitsym"].values) == list(range(-15, 16, 2))
    assert sorted(E["4bit"].values) == list(range(-8, 8))
    assert sorted(E["fp130"].values) == sorted([s * (1 << e) for s in (-1, 1) for e in range(8)])
    assert sorted(E["8bit"].values) == list(range(-128, 128))


def test_packing_layout_is_lsb_first_and_rows_start_on_bytes():
    # 4bitsym: value = 2c - 15 -> -15 is code 0, 15 is code 15; first weight in the low nibble.
    assert encodings.get("4bitsym").pack_rows(np.array([[-15, 15]])) == bytes([0xF0])
    # binary: +1 is bit 1; 9 weights per row take 2 bytes, the second row starts on a new byte.
    row = [1, -1, -1, -1, -1, -1, -1, -1, 1]
    assert encodings.get("binary").pack_rows(np.array([row, row])) == bytes([0x01, 0x01, 0x01, 0x01])
    # fp130: -4 is sign 1, exponent 2 -> code 0b1010.
    assert encodings.get("fp130").pack_rows(np.array([[-4, 1]])) == bytes([0x0A])


def test_unrepresentable_value_is_refused():
    with pytest.raises(ValueError, match="not representable in encoding '4bitsym'"):
        encodings.get("4bitsym").encode(np.array([2]))
    with pytest.raises(ValueError, match="unknown weight encoding"):
        encodings.get("3bit")


def test_c_enum_matches_python_order():
    """bg_config.h's encoding mask and the kernels' BG_ENC_* values index ENCODINGS in order."""
    import re

    from bitgen.paths import C_RUNTIME

    text = (C_RUNTIME / "bg_runtime.h").read_text()
    enum = {m.group(1): int(m.group(2)) for m in re.finditer(r"BG_ENC_(\w+) = (\d+)", text)}
    assert enum == {e.c_id: i for i, e in enumerate(encodings.ENCODINGS.values())}
