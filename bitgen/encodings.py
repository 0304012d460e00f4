"""Weight encodings: which integers a weight may take and how they are packed into bytes.

The IR stores weights as plain integers (the *values*, e.g. -15..15 odd for 4-bit symmetric).
An encoding says which values are legal, how many bits one weight occupies in flash and the
bijection value <-> code. Every back end packs with :func:`pack_rows`, and the C side decodes
with the matching ``bg_decode_*`` in ``c_runtime/bg_weights.h``.

Packing (all encodings): weights are packed row by row (one row = one output channel), each
row starts on a byte boundary, codes are placed LSB-first inside a byte, and bytes follow in
increasing address. So code ``k`` of a row sits at bit ``(k * bits) % 8`` of byte
``(k * bits) // 8``. Unused bits at the end of a row are zero.

| name      | bits | values                 | code -> value                     |
|-----------|------|------------------------|-----------------------------------|
| binary    | 1    | -1, +1                 | 0 -> -1, 1 -> +1                   |
| ternary   | 2    | -1, 0, +1              | two's complement, code 2 unused    |
| 2bitsym   | 2    | -3, -1, +1, +3         | 2*c - 3                            |
| 4bitsym   | 4    | odd -15..+15           | 2*c - 15                           |
| 4bit      | 4    | -8..7                  | two's complement                   |
| fp130     | 4    | +-1, +-2, ... +-128    | c = sign<<3 | e, value = +-(1 << e) |
| 8bit      | 8    | -128..127              | two's complement                   |
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Encoding:
    name: str
    bits: int
    values: tuple[int, ...]  # value of each code, indexed by code; None-like gaps are absent codes
    codes: tuple[int, ...]  # code of each entry of `values`
    c_id: str  # the C enumerator / function suffix

    @property
    def value_set(self) -> frozenset[int]:
        return frozenset(self.values)

    @property
    def max_abs(self) -> int:
        return max(abs(v) for v in self.values)

    def encode(self, weights: np.ndarray) -> np.ndarray:
        """Integer values -> codes (uint8). Raises ValueError on a value outside the encoding."""
        w = np.asarray(weights)
        lut = {v: c for v, c in zip(self.values, self.codes)}
        bad = ~np.isin(w, np.array(self.values))
        if bad.any():
            raise ValueError(
                f"weight value {int(w[bad].flat[0])} is not representable in encoding "
                f"'{self.name}' (allowed: {sorted(self.values)})"
            )
        table = np.zeros(256 + 256, dtype=np.uint8)
        for v, c in lut.items():
            table[v + 256] = c
        return table[w.astype(np.int64) + 256]

    def decode(self, codes: np.ndarray) -> np.ndarray:
        table = np.zeros(1 << self.bits, dtype=np.int64)
        for v, c in zip(self.values, self.codes):
            table[c] = v
        return table[np.asarray(codes, dtype=np.int64)]

    def row_bytes(self, row_len: int) -> int:
        return (row_len * self.bits + 7) // 8

    def pack_rows(self, weights: np.ndarray) -> bytes:
        """Pack a 2-D array (rows, row_len) of weight values; see module docstring."""
        w = np.asarray(weights)
        if w.ndim != 2:
            raise ValueError("pack_rows expects a 2-D array (rows, row_len)")
        codes = self.encode(w).astype(np.uint8)
        rows, n = codes.shape
        bits = np.unpackbits(codes[:, :, None], axis=2, bitorder="little")[:, :, : self.bits]
        bits = bits.reshape(rows, n * self.bits)
        pad = self.row_bytes(n) * 8 - n * self.bits
        bits = np.pad(bits, ((0, 0), (0, pad)))
        return np.packbits(bits, axis=1, bitorder="little").tobytes()

    def unpack_rows(self, data: bytes, rows: int, row_len: int) -> np.ndarray:
        raw = np.frombuffer(data, dtype=np.uint8).reshape(rows, self.row_bytes(row_len))
        bits = np.unpackbits(raw, axis=1, bitorder="little")[:, : row_len * self.bits]
        bits = bits.reshape(rows, row_len, self.bits)
        weights = (bits.astype(np.int64) << np.arange(self.bits)).sum(axis=2)
        return self.decode(weights)


def _twos(bits: int, exclude: tuple[int, ...] = ()) -> tuple[tuple[int, ...], tuple[int, ...]]:
    vals, codes = [], []
    for c in range(1 << bits):
        v = c - (1 << bits) if c >= (1 << (bits - 1)) else c
        if v in exclude:
            continue
        vals.append(v)
        codes.append(c)
    return tuple(vals), tuple(codes)


def _affine(bits: int, scale: int, offset: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    codes = tuple(range(1 << bits))
    return tuple(scale * c + offset for c in codes), codes


def _fp130() -> tuple[tuple[int, ...], tuple[int, ...]]:
    codes = tuple(range(16))
    return tuple((-1 if c & 8 else 1) * (1 << (c & 7)) for c in codes), codes


ENCODINGS: dict[str, Encoding] = {
    e.name: e
    for e in [
        Encoding("binary", 1, *_affine(1, 2, -1), c_id="BINARY"),
        Encoding("ternary", 2, *_twos(2, exclude=(-2,)), c_id="TERNARY"),
        Encoding("2bitsym", 2, *_affine(2, 2, -3), c_id="2BITSYM"),
        Encoding("4bitsym", 4, *_affine(4, 2, -15), c_id="4BITSYM"),
        Encoding("4bit", 4, *_twos(4), c_id="4BIT"),
        Encoding("fp130", 4, *_fp130(), c_id="FP130"),
        Encoding("8bit", 8, *_twos(8), c_id="8BIT"),
    ]
}


def get(name: str) -> Encoding:
    try:
        return ENCODINGS[name]
    except KeyError:
        raise ValueError(
            f"unknown weight encoding '{name}' (known: {', '.join(ENCODINGS)})"
        ) from None
