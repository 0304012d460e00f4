"""C literals of the emitted source: element types, integers, byte and word tables."""
from __future__ import annotations

import numpy as np

SUFFIX = {"int8": "s8", "int32": "s32"}  # kernel name suffix per element type
C_TYPE = {"int8": "int8_t", "int32": "int32_t"}


def c_int(v: int) -> str:
    return "(-2147483647 - 1)" if v == -(2**31) else str(v)


def hex_lines(data: bytes, per_line: int = 16) -> list[str]:
    return [" ".join(f"0x{b:02x}," for b in data[i : i + per_line]) for i in range(0, len(data), per_line)] or ["0"]


def int_lines(values: np.ndarray, per_line: int = 12) -> list[str]:
    vals = [int(v) for v in np.asarray(values).ravel()]
    return [", ".join(c_int(v) for v in vals[i : i + per_line]) + "," for i in range(0, len(vals), per_line)]


def word_lines(words: np.ndarray, per_line: int = 8) -> list[str]:
    vals = [int(v) for v in np.asarray(words, dtype=np.uint64).ravel()]
    return [" ".join(f"0x{v:08x}u," for v in vals[i : i + per_line]) for i in range(0, len(vals), per_line)]


def arena_ptr(offset: int, ctype: str, const: bool = False) -> str:
    """A pointer of type ``ctype *`` to byte `offset` of the model's arena."""
    return f"({'const ' if const else ''}{ctype} *)(arena + {offset})"
