"""bitgen.schema: files are checked against dataclass declarations before anything is built."""
import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from bitgen import ir, schema
from bitgen.ops import OPS
from random_models import graphs, models


@dataclass
class Example:
    n: int
    pair: tuple[int, int] = (1, 1)
    three: tuple[int, int, int] = (1, 1, 1)
    shape: tuple[int, ...] = ()
    scale: float = 1.0
    w: np.ndarray | None = None
    names: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@pytest.mark.parametrize("data, message", [
    ({}, "missing field 'n'"),
    ({"n": 1, "x": 2}, "unknown field 'x'"),
    ({"n": "1"}, "n: expected an integer, got '1'"),
    ({"n": True}, "n: expected an integer, got True"),
    ({"n": 2**64}, "n: expected an integer"),
    ({"n": 1, "pair": "xy"}, "pair: expected an int or two ints, got 'xy'"),
    ({"n": 1, "pair": [1, 2, 3]}, "pair: expected an int or two ints, got [1, 2, 3]"),
    ({"n": 1, "three": [1, 2]}, "three: expected a list of 3 values"),
    ({"n": 1, "shape": [1, "a"]}, "shape[1]: expected an integer, got 'a'"),
    ({"n": 1, "scale": float("nan")}, "scale: expected a finite number"),
    ({"n": 1, "w": np.array(["a"])}, "w: expected an array of integers"),
    ({"n": 1, "w": np.zeros((0,))}, "w: expected a non-empty array"),
    ({"n": 1, "w": np.zeros((1,) * 5)}, "w: expected a non-empty array of at most 4 dimensions"),
    ({"n": 1, "names": ["a", 1]}, "names[1]: expected a string, got 1"),
    ({"n": 1, "meta": {1: 2}}, "meta key: expected a string, got 1"),
])
def test_each_field_is_checked_and_named(data, message):
    with pytest.raises(schema.SchemaError, match=message.replace("[", r"\[").replace("]", r"\]")):
        schema.check_fields(data, Example)


def test_checked_values_are_normalized():
    out, _ = schema.check_fields({"n": np.int64(3), "pair": 2, "shape": [1, 2], "w": [[1, 2]]}, Example)
    assert out["n"] == 3 and type(out["n"]) is int and out["pair"] == (2, 2) and out["shape"] == (1, 2)
    assert isinstance(out["w"], np.ndarray) and out["w"].shape == (1, 2)


def test_every_op_declares_fields_the_schema_understands():
    """A new op's annotations must be ones bitgen.schema reads (else loading its files breaks)."""
    for kind, op in OPS.items():
        fields = {f.name for f in dataclasses.fields(op)}
        for name, hint in typing.get_type_hints(op).items():
            if name in fields:
                try:
                    schema.check(object(), hint, f"{kind}.{name}")
                except schema.SchemaError:
                    pass  # understood (and refused, as an object() should be)


@given(m=models())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_models_of_every_op_pass_their_own_schema(m):
    back = ir.Model.from_dict(m.to_dict())
    assert back.digest() == m.digest()


@given(m=graphs())
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_graphs_pass_their_own_schema(m):
    back = ir.Model.from_dict(m.to_dict())
    assert back.digest() == m.digest()
