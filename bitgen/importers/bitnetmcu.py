"""BitNetMCU's exported C headers (``BitNetMCU_model.h``) -> the integer IR.

The header format (written by BitNetMCU's ``exportquant.py``; facts read from it and from its
inference engine, ``BitNetMCU_inference.c``, no code taken) declares layers ``L<n>`` in order:

* fully connected: ``L<n>_bitperweight`` (the format id below), ``L<n>_incoming_weights``,
  ``L<n>_outgoing_weights`` and ``const uint32_t L<n>_weights[]``: the (out, in) weights row
  by row, packed most significant bits first into 32-bit words, ``32 / bits`` weights per word;
  ternary weights instead as ``const uint16_t``, ten trits per word per row (base 3, first trit
  most significant, scaled by ``ceil(v * 65536 / 59049)``; trit 0 is +1, 1 is -1, 2 is 0; rows
  padded with zero weights to a multiple of ten inputs);
* convolution (``L<n>_type BitConv2d``): channels, input and output sizes, kernel size, groups
  and ``const int8_t L<n>_weights[]`` (out, in / groups, k, k), stride 1, no padding;
* max pooling (``L<n>_type MaxPool2d``): ``L<n>_pool_size``.

| bitperweight | weights                    | bitgen encoding |
|-------------:|----------------------------|-----------------|
| 1            | binary (bit set: +1)       | ``binary``      |
| 2            | sign, magnitude: ±1, ±3    | ``2bitsym``     |
| 4            | sign, magnitude: ±1 … ±15 odd | ``4bitsym``  |
| 12           | 4-bit two's complement     | ``4bit``        |
| 16           | 8-bit two's complement     | ``8bit``        |
| 20           | FP1.3.0: sign, exponent: ±2^e | ``fp130``    |
| 64           | ternary, 10 trits / 16 bits | ``ternary``    |

The engine's arithmetic, which the IR reproduces exactly: a convolution's int32 sum goes
through ReLU and an arithmetic shift right by 4 (a constant of the engine, not in the header),
and stays int32 into the next convolution and the max pools; before the first fully connected
layer the tensor is flattened (channel-major) and normalized by one ShiftNorm (BitNetMCU's
``ReLUNorm``: a dynamic shift to int8, with ReLU); every fully connected layer but the last is
followed by a ShiftNorm; the last layer's int32 sums are the logits, and the class is the
first index of their maximum. The input is the int8 image (MNIST-16: ``bitgen.datasets``'
``mnist16``), scale 1.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .. import ir
from .errors import ModelImportError

CONV_SHIFT = 4  # the engine's constant right shift after each convolution's ReLU
ENCODINGS = {1: ("binary", 1), 2: ("2bitsym", 2), 4: ("4bitsym", 4), 12: ("4bit", 4), 16: ("8bit", 8),
             20: ("fp130", 4), 64: ("ternary", None)}
TRITS = np.array([1, -1, 0])  # the value of trit 0, 1, 2


def _decode(code: np.ndarray, fmt: int) -> np.ndarray:
    """Weight values of the codes of one packed format."""
    c = code.astype(np.int64)
    if fmt == 1:
        return np.where(c == 1, 1, -1)
    if fmt == 2:
        return np.where(c >> 1, -1, 1) * (2 * (c & 1) + 1)
    if fmt == 4:
        return np.where(c >> 3, -1, 1) * (2 * (c & 7) + 1)
    if fmt == 12:
        return np.where(c >= 8, c - 16, c)
    if fmt == 16:
        return np.where(c >= 128, c - 256, c)
    if fmt == 20:
        return np.where(c >> 3, -1, 1) * (1 << (c & 7))
    raise AssertionError(fmt)


def unpack_words(words: np.ndarray, fmt: int, rows: int, cols: int) -> np.ndarray:
    """The (rows, cols) weights of 32-bit words, most significant bits first."""
    bits = ENCODINGS[fmt][1]
    per = 32 // bits
    w = np.asarray(words, dtype=np.uint64)
    shifts = np.array([32 - bits - j * bits for j in range(per)], dtype=np.uint64)
    codes = (w[:, None] >> shifts[None, :]) & np.uint64((1 << bits) - 1)
    return _decode(codes.reshape(-1)[: rows * cols], fmt).reshape(rows, cols)


def unpack_trits(words: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """The (rows, cols) ternary weights of 16-bit words, ten per word: repeatedly multiplying
    the 16-bit fraction by 3, the bits above 16 are the next trit."""
    w = np.asarray(words, dtype=np.int64).reshape(rows, cols // 10)
    out = np.zeros((rows, cols // 10, 10), dtype=np.int64)
    for j in range(10):
        w = w * 3
        out[:, :, j] = TRITS[w >> 16]
        w &= 0xFFFF
    return out.reshape(rows, cols)


class _Header:
    def __init__(self, text: str, where: str):
        self.where = where
        text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
        text = re.sub(r"//[^\n]*", " ", text)
        self.defines = dict(re.findall(r"^[ \t]*#define[ \t]+(\w+)(?:[ \t]+([^\n]*?))?[ \t]*$", text, flags=re.M))
        self.arrays: dict[str, tuple[str, np.ndarray]] = {}
        for ctype, name, body in re.findall(r"const\s+(u?int\d+_t)\s+(\w+)\s*\[\s*\]\s*=\s*\{([^}]*)\}", text):
            try:
                vals = [int(v, 0) for v in body.replace("\n", " ").split(",") if v.strip()]
            except ValueError:
                raise ModelImportError(f"{where}: array {name} holds a value that is not an integer") from None
            self.arrays[name] = (ctype, np.array(vals, dtype=np.int64))

    def int(self, key: str) -> int:
        if key not in self.defines:
            raise ModelImportError(f"{self.where}: missing #define {key}")
        try:
            return int(self.defines[key].split()[0], 0)
        except (ValueError, IndexError):
            raise ModelImportError(f"{self.where}: #define {key} is not an integer") from None

    def weights(self, layer: str, ctype: str, count: int) -> np.ndarray:
        name = f"{layer}_weights"
        if name not in self.arrays:
            raise ModelImportError(f"{self.where}: no array {name}")
        got_type, vals = self.arrays[name]
        if got_type != ctype:
            raise ModelImportError(f"{self.where}: {name} is {got_type}, expected {ctype}")
        if len(vals) != count:
            raise ModelImportError(f"{self.where}: {name} has {len(vals)} values, expected {count}")
        return vals


def read(path: str | Path, input_size: int | None = None) -> ir.Model:
    """The model of a BitNetMCU header (raises ModelImportError, one line). ``input_size``: the
    input length of an MLP whose first layer is ternary (its incoming count is padded to a
    multiple of ten); default the largest multiple of 16 that fits the padding."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ModelImportError(f"{path}: cannot read ({e})") from None
    h = _Header(text, str(path))
    numbers = sorted({int(m) for m in re.findall(r"^L(\d+)_", "\n".join(h.defines), flags=re.M)})
    if not numbers:
        raise ModelImportError(f"{path}: no layers (L<n>_ defines) found; not a BitNetMCU model header")
    layers: list[ir.Op] = []
    shape: tuple[int, ...] | None = None  # of the tensor the next layer reads
    spec: ir.InputSpec | None = None
    classes = 0
    for n in numbers:
        name = f"L{n}"
        kind = h.defines.get(f"{name}_type", "").strip()
        where = f"{path}: layer {name}"
        if kind == "BitConv2d":
            cin, cout, g, k = (h.int(f"{name}_{f}") for f in ("in_channels", "out_channels", "groups", "kernel_size"))
            hx, hy = h.int(f"{name}_incoming_x"), h.int(f"{name}_incoming_y")
            if f"{name}_stride" in h.defines and (h.int(f"{name}_stride"), h.int(f"{name}_padding")) != (1, 0):
                raise ModelImportError(f"{where}: only stride 1 and no padding (what BitNetMCU's engine runs)")
            if h.int(f"{name}_bitperweight") != 8:
                raise ModelImportError(f"{where}: convolutions have 8-bit weights, got {h.int(f'{name}_bitperweight')} bits")
            if shape is None:
                spec = ir.InputSpec((cin, hy, hx), scale=1.0)
            elif len(shape) != 3 or shape != (cin, hy, hx):
                raise ModelImportError(f"{where}: reads ({cin}, {hy}, {hx}), the layer before gives {shape}")
            if g < 1 or cin % g or cout % g:
                raise ModelImportError(f"{where}: groups {g} do not divide the channels {cin} -> {cout}")
            w = h.weights(name, "int8_t", cout * (cin // g) * k * k).reshape(cout, cin // g, k, k)
            layers += [ir.Conv2d(weight=w, encoding="8bit", groups=g, name=name), ir.ReLU(name=f"{name}_relu"),
                       ir.Requant(multiplier=[1], shift=[CONV_SHIFT], rounding="floor", out_dtype="int32",
                                  name=f"{name}_shift")]
            shape = (cout, hy - k + 1, hx - k + 1)
        elif kind == "MaxPool2d":
            p = h.int(f"{name}_pool_size")
            if shape is None or len(shape) != 3:
                raise ModelImportError(f"{where}: max pooling needs a convolution before it")
            layers.append(ir.MaxPool2d(p, name=name))
            shape = (shape[0], (shape[1] - p) // p + 1, (shape[2] - p) // p + 1)
        elif kind:
            raise ModelImportError(f"{where}: unknown layer type '{kind}'")
        else:
            fmt = h.int(f"{name}_bitperweight")
            n_in, n_out = h.int(f"{name}_incoming_weights"), h.int(f"{name}_outgoing_weights")
            if fmt not in ENCODINGS:
                what = "NF4 (not integer; BitNetMCU's engine does not run it either)" if fmt == 36 else str(fmt)
                raise ModelImportError(f"{where}: unsupported weight format {what}")
            if shape is not None and len(shape) == 3:
                layers += [ir.Flatten(name=f"{name}_flatten"), ir.ShiftNorm(name=f"{name}_norm")]
                shape = (int(np.prod(shape)),)
            elif shape is not None:
                layers.append(ir.ShiftNorm(name=f"{name}_norm"))
            enc, bits = ENCODINGS[fmt]
            if bits is None:
                if n_in % 10:
                    raise ModelImportError(f"{where}: ternary rows must hold a multiple of 10 weights, got {n_in}")
                w = unpack_trits(h.weights(name, "uint16_t", n_out * n_in // 10), n_out, n_in)
                real = shape[0] if shape is not None else _ternary_input(w, input_size, where)
                if not n_in - 10 < real <= n_in or np.any(w[:, real:]):
                    raise ModelImportError(f"{where}: {n_in} ternary inputs do not fit the {real} values it reads")
                w = w[:, :real]
            else:
                if (n_in * bits) % 32:
                    raise ModelImportError(f"{where}: rows of {n_in} {bits}-bit weights do not fill 32-bit words")
                w = unpack_words(h.weights(name, "uint32_t", n_out * n_in * bits // 32), fmt, n_out, n_in)
                if shape is not None and shape[0] != n_in:
                    raise ModelImportError(f"{where}: reads {n_in} values, the layer before gives {shape[0]}")
            if spec is None:
                spec = ir.InputSpec((w.shape[1],), scale=1.0)
            layers.append(ir.Linear(weight=w, encoding=enc, name=name))
            shape, classes = (n_out,), n_out
    if not isinstance(layers[-1], ir.Linear):
        raise ModelImportError(f"{path}: the last layer must be fully connected (the logits)")
    model = ir.Model(input=spec, layers=layers, labels=[str(i) for i in range(classes)], name=path.stem,
                     meta={"source": "BitNetMCU header", "file": path.name})
    try:
        model.validate()
    except ir.IRError as e:
        raise ModelImportError(f"{path}: {e}") from None
    return model


def _ternary_input(w: np.ndarray, given: int | None, where: str) -> int:
    n_in = w.shape[1]
    if given is not None:
        return given
    for real in range(n_in, n_in - 10, -1):
        if real % 16 == 0 and not np.any(w[:, real:]):
            return real
    raise ModelImportError(f"{where}: cannot tell the input size of a first ternary layer of {n_in} (padded) "
                       "inputs; give --input-size")
