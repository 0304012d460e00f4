"""Requant's ONNX roundings (ties to even; ONNX Runtime's float32 arithmetic) and its output zero
point: golden against float32 NumPy, and the C kernel against golden on every int8 input."""
from __future__ import annotations

import numpy as np
import pytest

from bitgen import check, golden, ir
from bitgen.ops.requant import round_significant, shift_half_away, shift_half_even


def _fp32_parts(scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(multiplier, shift) with multiplier / 2**shift == the float32 scale exactly."""
    mant, e = np.frexp(np.asarray(scale, dtype=np.float32).astype(np.float64))
    return (mant * 2**24).astype(np.int64), (24 - e).astype(np.int64)


def test_fp32_rounding_is_onnxruntimes_float_arithmetic():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.integers(-2**31, 2**31, 100000), rng.integers(-3000, 3000, 100000),
                        [2**31 - 1, -2**31, 2**24 + 1, 2**24 + 3, -(2**25) - 2]])
    scale = np.concatenate([rng.uniform(1e-7, 0.05, len(x) - 5).astype(np.float32), np.float32([0.5] * 5)])
    m, s = _fp32_parts(scale)
    want = np.rint(x.astype(np.float32) * scale)  # float32 product, then ties to even
    got = shift_half_even(round_significant(round_significant(x) * m), s)
    np.testing.assert_array_equal(got, want.astype(np.int64))


def test_ties():
    v = np.array([5, 6, 7, -5, -6, -7, 3, -3])
    np.testing.assert_array_equal(shift_half_even(v, np.int64(1)), [2, 3, 4, -2, -3, -4, 2, -2])
    np.testing.assert_array_equal(shift_half_away(v, np.int64(1)), [3, 3, 4, -3, -3, -4, 2, -2])


def _requant_model(rq: ir.Requant, bias: int) -> ir.Model:
    """acc = x + bias (one int8 input, weight 1), then the requantization under test."""
    return ir.Model(input=ir.InputSpec((1,)), layers=[
        ir.Linear(weight=np.array([[1]]), encoding="8bit", bias=np.array([bias])), rq])


@pytest.mark.parametrize("rounding", ["half_even", "half_away", "fp32", "half_up", "floor"])
def test_c_kernel_equals_golden_on_every_input(rounding):
    x = np.arange(-128, 128, dtype=np.int8).reshape(-1, 1)
    cases = [(1, 1, 0, 0), (3, 2, 5, -7), (12345, 20, 2**30, 3), (2**24 - 1, 40, -(2**31) + 200, 0),
             (11184811, 31, 2**24 + 77, -128), (1, 0, 1000, 9)]
    for m, s, bias, zp in cases:
        if rounding == "fp32" or m < 2**24:
            rq = ir.Requant(multiplier=[m], shift=[s], rounding=rounding, zero_point=zp, out_dtype="int32")
            model = _requant_model(rq, bias)
            acc = x.astype(np.int64) + bias
            if rounding == "fp32":  # against float32 NumPy directly
                want = np.rint(acc.astype(np.float32) * np.float32(m / 2**s)) + zp
                np.testing.assert_array_equal(golden.run(model, x), want.astype(np.int64))
            res = check.run_check(model, [check.InputSet("all", x)])
            assert res.mismatches == 0, (m, s, bias, zp)
            rq8 = ir.Requant(multiplier=[m], shift=[s], rounding=rounding, zero_point=zp, out_min=-100, out_max=90)
            res = check.run_check(_requant_model(rq8, bias), [check.InputSet("all", x)])
            assert res.mismatches == 0


def test_zero_point_is_stored_only_when_used():
    plain = ir.Requant(multiplier=[3], shift=[2])
    assert "zero_point" not in plain.params()
    shifted = ir.Requant(multiplier=[3], shift=[2], zero_point=-5, rounding="half_even")
    m = ir.Model(input=ir.InputSpec((2,)), layers=[ir.Linear(weight=np.ones((2, 2)), encoding="8bit"), shifted])
    back = ir.Model.from_dict(m.to_dict())
    assert back.layers[1].zero_point == -5 and back.digest() == m.digest()
    assert m.validate()[-1].lo == -128  # (-256 * 3 / 4) - 5, clamped


def test_fp32_needs_a_float32_significand():
    rq = ir.Requant(multiplier=[2**24], shift=[30], rounding="fp32")
    m = ir.Model(input=ir.InputSpec((1,)), layers=[ir.Linear(weight=np.ones((1, 1)), encoding="8bit"), rq])
    with pytest.raises(ir.IRError, match="2\\*\\*24"):
        m.validate()
