"""Compile emitted C for the host and call it through cffi.

The emitted sources are built with the system C compiler into a shared library and loaded
with cffi in ABI mode (no Python headers needed, one compiler call per model). A small
wrapper runs a whole batch in C and, when asked, records every layer's output (through the
``BG_LAYER_DONE`` hook of the generated code) so a mismatch can be traced to its first layer.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import cffi
import numpy as np

from .emit import Emitted
from ...errors import BitgenError

STRICT_FLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]

_WRAPPER = """\
/* Host-only wrapper around {name}.c: batch runs and per-layer traces. */
#include <stdint.h>
#include <string.h>

static uint8_t *bg_host_trace; /* NULL: no trace */
static const uint32_t bg_host_trace_offset[] = {{ {offsets} }};

static void bg_host_layer_part(int index, uint32_t offset, const void *data, uint32_t bytes)
{{
    if (bg_host_trace)
        memcpy(bg_host_trace + bg_host_trace_offset[index] + offset, data, bytes);
}}

#define BG_LAYER_PART(index, offset, data, bytes) bg_host_layer_part((index), (offset), (data), (bytes))
#include "{name}.c"

int bg_host_run(const int8_t *x, uint32_t count, {name}_output_t *y, int32_t *pred,
                uint8_t *trace)
{{
    uint32_t i;
    for (i = 0; i < count; i++) {{
        bg_host_trace = trace ? trace + (uint64_t)i * {trace_bytes}u : 0;
        pred[i] = {name}_run(x + (uint64_t)i * {upper}_INPUT_SIZE, y + (uint64_t)i * {upper}_OUTPUT_SIZE);
    }}
    bg_host_trace = 0;
    return 0;
}}
"""

NP = {"int8": np.int8, "int32": np.int32}
CC = os.environ.get("CC", "cc")


class HostBuildError(BitgenError):
    pass


def compile_check(emitted: Emitted, compiler: str = CC, flags: list[str] | None = None) -> None:
    """Compile every emitted source with strict warnings (-Werror); raise on any diagnostic."""
    flags = flags if flags is not None else STRICT_FLAGS + ["-O2"]
    with tempfile.TemporaryDirectory() as tmp:
        for src in emitted.sources:
            cmd = [compiler, *flags, "-I", str(emitted.outdir), "-c", str(src), "-o", str(Path(tmp) / (src.stem + ".o"))]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0 or r.stderr.strip():
                raise HostBuildError(f"{compiler} rejected {src.name}: {r.stderr.strip().splitlines()[0] if r.stderr.strip() else r.returncode}")


class HostModel:
    """The emitted model, compiled for this machine."""

    def __init__(self, emitted: Emitted, build_dir: str | Path | None = None):
        self.emitted = emitted
        rep = emitted.report
        self.name = emitted.name
        self.layers = rep["layers"]
        # layers fused into an earlier kernel never exist in memory: nothing to compare
        self.traced = [lay.get("traced", True) for lay in self.layers]
        self.input_size = int(np.prod(rep["input"]["shape"]))
        self.output_size = int(np.prod(rep["output"]["shape"]))
        self.output_dtype = rep["output"]["dtype"]
        offsets, pos = [], 0
        for lay in self.layers:
            offsets.append(pos)
            pos += lay["out_bytes"]
        self.trace_offsets = offsets
        self.trace_bytes = pos
        self._tmp = None
        if build_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="bitgen-host-")
            build_dir = self._tmp.name
        self.build_dir = Path(build_dir)
        self._lib = self._build()

    def _build(self):
        name = self.name
        wrapper = _WRAPPER.format(
            name=name,
            upper=name.upper(),
            offsets=", ".join(str(o) for o in self.trace_offsets),
            trace_bytes=max(self.trace_bytes, 1),
        )
        self.build_dir.mkdir(parents=True, exist_ok=True)
        wrap = self.build_dir / f"{name}_host.c"
        wrap.write_text(wrapper)
        runtime = [s for s in self.emitted.sources if s.name != f"{name}.c"]
        key = hashlib.sha256(wrapper.encode())
        for s in [*self.emitted.sources]:
            key.update(s.read_bytes())
        lib = self.build_dir / f"lib{name}_{key.hexdigest()[:12]}.so"
        if not lib.exists():
            cmd = [CC, "-std=c99", "-O1", "-shared", "-fPIC", "-I", str(self.emitted.outdir),
                   str(wrap), *map(str, runtime), "-o", str(lib)]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise HostBuildError(f"host compile failed: {r.stderr.strip()[:2000]}")
        out_t = self.out_ctype = "int8_t" if self.output_dtype == "int8" else "int32_t"
        self.ffi = cffi.FFI()
        self.ffi.cdef(
            f"int bg_host_run(const int8_t *x, uint32_t count, {out_t} *y, int32_t *pred, uint8_t *trace);"
        )
        return self.ffi.dlopen(str(lib))

    def run(self, x: np.ndarray, trace: bool = False):
        """Run int8 inputs (N, ...) -> (outputs (N, out), argmax (N,), per-layer list or None).

        In the per-layer list, layers that are not traced (fused) are None."""
        x = np.ascontiguousarray(np.asarray(x, dtype=np.int8).reshape(-1, self.input_size))
        n = x.shape[0]
        y = np.zeros((n, self.output_size), dtype=NP[self.output_dtype])
        pred = np.zeros(n, dtype=np.int32)
        tr = np.zeros((n, self.trace_bytes), dtype=np.uint8) if trace else None
        ffi = self.ffi
        self._lib.bg_host_run(
            ffi.from_buffer("int8_t[]", x),
            n,
            ffi.from_buffer(f"{self.out_ctype}[]", y),
            ffi.from_buffer("int32_t[]", pred),
            ffi.from_buffer("uint8_t[]", tr) if trace else ffi.NULL,
        )
        layers = None
        if trace:
            layers = []
            for lay, off, traced in zip(self.layers, self.trace_offsets, self.traced):
                if not traced:
                    layers.append(None)
                    continue
                raw = np.ascontiguousarray(tr[:, off : off + lay["out_bytes"]])
                arr = raw.view(NP[lay["out_dtype"]]).reshape((n, *lay["out_shape"]))
                layers.append(arr)
        return y, pred, layers

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def build(emitted: Emitted, build_dir: str | Path | None = None) -> HostModel:
    if shutil.which(CC) is None:
        raise HostBuildError(f"no C compiler '{CC}' found on PATH (install gcc)")
    return HostModel(emitted, build_dir)
