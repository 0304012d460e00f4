"""Plain data read from a file, checked against a declared shape before anything is built from it.

The declaration is a dataclass: its fields, their type annotations and their defaults. The ops
of the IR already are such dataclasses (:mod:`bitgen.ops`), so a model file's every layer is
checked against the very fields its op declares, and an op added later is checked without a
line here; the other file formats (a model file's envelope, the IR around the layers, build.json)
declare theirs the same way, beside the code that reads them.

Why not a schema library: jsonschema would need a second description of every op's fields,
free to drift from the dataclasses; pydantic coerces by default (``"5"`` becomes ``5``), needs
custom types for NumPy arrays and is a compiled dependency. What a file may hold is small:

=====================  ==========================================================================
annotation             accepted
=====================  ==========================================================================
``int``                an integer in the int64 range (not a bool)
``float``              a finite int or float
``str`` / ``bool``     a str / a bool
``np.ndarray``         a non-empty array (or nested list) of integers, bools or floats, at most
                       4 dimensions (whether the values fit is the op's check)
``tuple[int, int]``    an int n (meaning (n, n), as the IR's ``pair``) or two ints
``tuple[int, ...]``    a list of ints; ``tuple[int, int, int]``: exactly three
``list[X]``            a list of X; ``dict[str, Any]``: a dict with str keys
``X | None``           None or X
a dataclass            a dict of its fields: unknown keys and missing required ones are refused
``Any``                anything
=====================  ==========================================================================

:func:`check` returns the value with lists of ints as tuples where a tuple is declared and
arrays as NumPy arrays, or raises :class:`SchemaError` naming the field (``layers[3].stride``).
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

import numpy as np

from .errors import BitgenError

INT64 = (-(2**63), 2**63 - 1)
MAX_ARRAY_DIMS = 4


class SchemaError(BitgenError, ValueError):
    """Data that does not have the declared shape; the message names the field."""


def _show(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return f"an array of shape {tuple(v.shape)} ({v.dtype})"
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _at(where: str) -> str:
    return f"{where}: " if where else ""


def _fail(where: str, want: str, got: Any) -> SchemaError:
    return SchemaError(f"{_at(where)}expected {want}, got {_show(got)}")


def is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _int(v: Any, where: str) -> int:
    if not is_int(v) or not INT64[0] <= int(v) <= INT64[1]:
        raise _fail(where, "an integer", v)
    return int(v)


def _array(v: Any, where: str) -> np.ndarray:
    if not isinstance(v, np.ndarray):
        if not isinstance(v, (list, tuple)):
            raise _fail(where, "an array of integers", v)
        try:
            v = np.asarray(v)
        except (ValueError, TypeError, OverflowError):
            raise _fail(where, "an array of integers", v) from None
    if v.dtype.kind not in "biuf":
        raise _fail(where, "an array of integers", v)
    if v.size == 0 or v.ndim > MAX_ARRAY_DIMS:
        raise _fail(where, f"a non-empty array of at most {MAX_ARRAY_DIMS} dimensions", v)
    return v


def check(value: Any, annotation: Any, where: str = "") -> Any:
    """``value`` checked against ``annotation`` (see the module docstring)."""
    if annotation is Any:
        return value
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return check(value, rest[0], where)
        raise TypeError(f"unsupported union {annotation}")  # a declaration bug, not user input
    if dataclasses.is_dataclass(annotation):
        return check_fields(value, annotation, where)[0]
    if annotation is int:
        return _int(value, where)
    if annotation is bool:
        if not isinstance(value, (bool, np.bool_)):
            raise _fail(where, "true or false", value)
        return bool(value)
    if annotation is float:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not math.isfinite(float(value)):
            raise _fail(where, "a finite number", value)
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise _fail(where, "a string", value)
        return value
    if annotation is np.ndarray:
        return _array(value, where)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            if not isinstance(value, (list, tuple)):
                raise _fail(where, "a list", value)
            return tuple(check(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if args == (int, int) and is_int(value):  # a pair given as one number, as ir.pair takes it
            return (_int(value, where),) * 2
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            want = "an int or two ints" if args == (int, int) else f"a list of {len(args)} values"
            raise _fail(where, want, value)
        return tuple(check(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise _fail(where, "a list", value)
        return [check(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _fail(where, "a dict", value)
        return {check(k, args[0], f"{where} key"): check(v, args[1], f"{where}.{k}") for k, v in value.items()}
    raise TypeError(f"unsupported annotation {annotation!r}")  # a declaration bug, not user input


def check_fields(value: Any, cls: type, where: str = "", *, ignore: tuple[str, ...] = (),
                 strict: bool = True) -> tuple[dict[str, Any], set[str]]:
    """A dict checked against the fields of dataclass ``cls``: (the checked fields, the keys of
    ``ignore`` that were present). Missing required fields are refused, and unknown keys too
    unless not ``strict`` (a reader of a few fields of a larger report)."""
    if not isinstance(value, dict):
        raise _fail(where, "a dict of fields", value)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in value if k not in fields and k not in ignore] if strict else []
    if unknown:
        raise SchemaError(f"{_at(where)}unknown field {_show(unknown[0])}"
                          f" (known: {', '.join(fields)})")
    out = {}
    for name, f in fields.items():
        here = f"{where}.{name}" if where else name
        if name not in value:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise SchemaError(f"{_at(where)}missing field '{name}'")
            continue
        out[name] = check(value[name], hints[name], here)
    return out, {k for k in ignore if k in value}
