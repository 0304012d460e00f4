"""BitNetMCU's own inference engine, compiled on this machine, as a test oracle.

The engine (GPL, in ``../shared/oracles/BitNetMCU``) is compiled as it is, with its own
``BitMnistInference`` (``BitNetMCU_MNIST_dll.c``) and a model header, into a shared library.
Nothing of it is copied into bitgen: the build copies the driver file into a temporary folder
beside a small shim that stands in for ``BitNetMCU_inference.c``. The shim includes the real
engine and then (a) records the output of every fully connected layer, so the last one's int32
logits can be read back, and (b) sizes the driver's activation buffers for 256 values (the
shipped driver's ``MAX_N_ACTIVATIONS`` buffer is too small for the CNN headers' 16x16 plane,
see ../shared/oracles/README.md). The headers in every weight format come from
:func:`write_mlp_header`, written here from the format's description in
``bitgen/importers/bitnetmcu.py``.
"""
from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
ORACLE = (ROOT / ".." / "shared" / "oracles" / "BitNetMCU").resolve()
MNIST = (ROOT / ".." / "shared" / "datasets" / "mnist-test").resolve()

SHIM = r"""
#include "%(engine)s"
#include <string.h>

static int32_t bg_oracle_logits[1024];
static uint32_t bg_oracle_outputs;

static void bg_oracle_fc(int8_t *in, const uint32_t *w, int32_t bpw, uint32_t n_in, uint32_t n_out, int32_t *out)
{
    processfclayer(in, w, bpw, n_in, n_out, out);
    memcpy(bg_oracle_logits, out, n_out * sizeof(int32_t));
    bg_oracle_outputs = n_out;
}
#define processfclayer bg_oracle_fc
#undef MAX_N_ACTIVATIONS
#define MAX_N_ACTIVATIONS 256

uint32_t BitMnistInference(int8_t *input);

/* n inputs of `size` int8 values -> the class and the last layer's int32 outputs of each */
uint32_t bg_oracle_run(int8_t *x, uint32_t n, uint32_t size, int32_t *logits, uint32_t *classes)
{
    for (uint32_t i = 0; i < n; i++) {
        classes[i] = BitMnistInference(x + i * size);
        memcpy(logits + i * bg_oracle_outputs, bg_oracle_logits, bg_oracle_outputs * sizeof(int32_t));
    }
    return bg_oracle_outputs;
}
"""


def available() -> bool:
    return (ORACLE / "BitNetMCU_inference.c").is_file() and shutil.which("gcc") is not None


class Engine:
    """BitNetMCU's engine built for one header: ``run(x)`` -> (classes, int32 logits)."""

    def __init__(self, header: Path, workdir: Path):
        workdir.mkdir(parents=True, exist_ok=True)
        shutil.copy(ORACLE / "BitNetMCU_MNIST_dll.c", workdir / "driver.c")
        shutil.copy(header, workdir / "BitNetMCU_model.h")
        (workdir / "BitNetMCU_inference.c").write_text(SHIM % {"engine": ORACLE / "BitNetMCU_inference.c"})
        lib = workdir / "oracle.so"
        subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-w", "-I", str(ORACLE), "-o", str(lib),
                        str(workdir / "driver.c")], check=True, capture_output=True)
        self.lib = ctypes.CDLL(str(lib))

    def run(self, x: np.ndarray, outputs: int) -> tuple[np.ndarray, np.ndarray]:
        x = np.ascontiguousarray(x.reshape(len(x), -1), dtype=np.int8)
        # the engine may read a few values past an input (ternary rows padded to ten): room for them
        buf = np.zeros(x.size + 64, dtype=np.int8)
        buf[: x.size] = x.ravel()
        logits = np.zeros((len(x), outputs), dtype=np.int32)
        classes = np.zeros(len(x), dtype=np.uint32)
        p = ctypes.POINTER(ctypes.c_int8)
        n = self.lib.bg_oracle_run(buf.ctypes.data_as(p), ctypes.c_uint32(len(x)), ctypes.c_uint32(x.shape[1]),
                                   logits.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)),
                                   classes.ctypes.data_as(ctypes.POINTER(ctypes.c_uint32)))
        assert n == outputs, (n, outputs)
        return classes.astype(np.int64), logits


# ------------------------------------------------------------- headers in every weight format
FORMATS = {"Binary": (1, 1), "2bitsym": (2, 2), "4bitsym": (4, 4), "4bit": (12, 4), "8bit": (16, 8),
           "FP130": (20, 4), "Ternary": (64, None)}
VALUES = {"Binary": [-1, 1], "2bitsym": [-3, -1, 1, 3], "4bitsym": list(range(-15, 16, 2)),
          "4bit": list(range(-8, 8)), "8bit": list(range(-128, 128)),
          "FP130": [s * (1 << e) for s in (-1, 1) for e in range(8)], "Ternary": [-1, 0, 1]}


def _codes(w: np.ndarray, fmt: str) -> np.ndarray:
    if fmt == "Binary":
        return (w > 0).astype(np.uint64)
    if fmt in ("2bitsym", "4bitsym"):
        sign = 1 if fmt == "2bitsym" else 3
        return ((w < 0).astype(np.uint64) << np.uint64(sign)) | ((np.abs(w) - 1) // 2).astype(np.uint64)
    if fmt == "4bit":
        return (w & 15).astype(np.uint64)
    if fmt == "8bit":
        return (w & 255).astype(np.uint64)
    if fmt == "FP130":
        return ((w < 0).astype(np.uint64) << np.uint64(3)) | np.log2(np.abs(w)).astype(np.uint64)
    raise AssertionError(fmt)


def _ternary_words(w: np.ndarray) -> np.ndarray:
    rows, cols = w.shape
    pad = (-cols) % 10
    w = np.pad(w, ((0, 0), (0, pad)))
    trit = np.where(w == 1, 0, np.where(w == -1, 1, 2)).reshape(rows, -1, 10)
    value = np.zeros(trit.shape[:2], dtype=np.int64)
    for j in range(10):
        value = value * 3 + trit[:, :, j]
    return (value * 65536 + 59048) // 59049


def write_mlp_header(path: Path, layers: list[tuple[str, np.ndarray]]) -> None:
    """A BitNetMCU MLP header: ``layers`` of (format name, int weights (out, in))."""
    lines = ["#include <stdint.h>", "#ifndef BITNETMCU_MODEL_H", "#define BITNETMCU_MODEL_H", "#define MODEL_FCMNIST",
             f"#define NUM_LAYERS {len(layers)}", f"#define MAX_N_ACTIVATIONS {max(w.shape[1] for _, w in layers)}"]
    for i, (fmt, w) in enumerate(layers, 1):
        qid, bits = FORMATS[fmt]
        n_out, n_in = w.shape
        if bits is None:
            words = _ternary_words(w)
            n_in = words.shape[1] * 10
            body, ctype = ",".join(f"0x{v:04x}" for v in words.ravel()), "uint16_t"
        else:
            per = 32 // bits
            codes = _codes(w, fmt).reshape(-1, per)
            shifts = np.array([32 - bits - j * bits for j in range(per)], dtype=np.uint64)
            words = np.bitwise_or.reduce(codes << shifts, axis=1)
            body, ctype = ",".join(f"0x{int(v):08x}" for v in words), "uint32_t"
        lines += [f"// Layer: L{i}", f"#define L{i}_active", f"#define L{i}_bitperweight {qid}",
                  f"#define L{i}_incoming_weights {n_in}", f"#define L{i}_outgoing_weights {n_out}",
                  f"const {ctype} L{i}_weights[] = {{{body}}};"]
    lines.append("#endif")
    path.write_text("\n".join(lines) + "\n")
