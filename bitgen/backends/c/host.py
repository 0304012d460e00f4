"""Compile emitted C for the host and call it through cffi, or run it under the sanitizers.

The emitted sources are built with the system C compiler into a shared library and loaded
with cffi in ABI mode (no Python headers needed, one compiler call per model). A small
wrapper runs a whole batch in C and, when asked, records every layer's output (through the
``BG_LAYER_PART`` hook of the generated code) so a mismatch can be traced to its first layer.

:class:`SanitizedModel` has the same interface but builds a standalone executable with
AddressSanitizer and UndefinedBehaviorSanitizer (they cannot be dlopened into a normal Python
process) and talks to it through stdin/stdout; a sanitizer report becomes a
:class:`SanitizerError`.

:class:`HostRuntime` compiles the runtime's kernel sources once (every encoding enabled) so
that many models (the property tests) only compile their own source and link. ``bitgen check``
does not use it: it compiles exactly the sources it emits.
"""
from __future__ import annotations

import math
import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import cffi
import numpy as np

from .emit import Emitted
from ...errors import BitgenError
from ...paths import C_RUNTIME

STRICT_FLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
HOST_FLAGS = ["-std=c99", "-O1"]
SANITIZE_FLAGS = ["-std=c99", "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                  "-fno-omit-frame-pointer"]
# Leak checks need ptrace (often denied in containers) and the driver frees everything anyway.
SANITIZER_ENV = {"ASAN_OPTIONS": "detect_leaks=0:halt_on_error=1", "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}
# c_runtime sources that are no kernel: the firmware's side of the wire protocol.
NOT_KERNELS = {"bg_protocol.c"}

_TRACE_HOOK = """\
static uint8_t *bg_host_trace; /* NULL: no trace */
static const uint32_t bg_host_trace_offset[] = {{ {offsets} }};

static void bg_host_layer_part(int index, uint32_t offset, const void *data, uint32_t bytes)
{{
    if (bg_host_trace)
        memcpy(bg_host_trace + bg_host_trace_offset[index] + offset, data, bytes);
}}

#define BG_LAYER_PART(index, offset, data, bytes) bg_host_layer_part((index), (offset), (data), (bytes))
#include "{name}.c"
"""

_WRAPPER = """\
/* Host-only wrapper around {name}.c: batch runs and per-layer traces. */
#include <stdint.h>
#include <string.h>

""" + _TRACE_HOOK + """
/* count inputs; a model with state starts a new sequence every `frames` inputs; `changed`
 * (a model with change gates) gets each gate's changed pixels per input */
int bg_host_run(const int8_t *x, uint32_t count, uint32_t frames, {name}_output_t *y, int32_t *pred,
                uint8_t *trace, uint32_t *changed)
{{
    uint32_t i;
    for (i = 0; i < count; i++) {{
#ifdef {upper}_HAS_STATE
        if (i % frames == 0)
            {name}_reset();
#else
        (void)frames;
#endif
        bg_host_trace = trace ? trace + (uint64_t)i * {trace_bytes}u : 0;
        pred[i] = {name}_run(x + (uint64_t)i * {upper}_INPUT_SIZE, y + (uint64_t)i * {upper}_OUTPUT_SIZE);
#ifdef {upper}_CHANGE_GATES
        memcpy(changed + (uint64_t)i * {upper}_CHANGE_GATES, {name}_changed, sizeof {name}_changed);
#else
        (void)changed;
#endif
    }}
    bg_host_trace = 0;
    return 0;
}}
"""

_DRIVER = """\
/* Host-only sanitizer driver around {name}.c. stdin: uint32 count, uint32 trace flag, uint32
 * frames per sequence (a model with state is reset every `frames` inputs), then count inputs;
 * stdout: per input its int32 argmax, its output and (when traced) its trace. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

""" + _TRACE_HOOK + """
static void *bg_host_alloc(size_t n)
{{
    void *p = calloc(n, 1);
    if (!p) {{
        fputs("bitgen driver: out of memory\\n", stderr);
        exit(3);
    }}
    return p;
}}

static void bg_host_io(void *p, size_t n, int in)
{{
    if ((in ? fread(p, 1, n, stdin) : fwrite(p, 1, n, stdout)) != n) {{
        fputs(in ? "bitgen driver: short input\\n" : "bitgen driver: write failed\\n", stderr);
        exit(3);
    }}
}}

int main(void)
{{
    uint32_t head[3], i;
    bg_host_io(head, sizeof head, 1);
    for (i = 0; i < head[0]; i++) {{
#ifdef {upper}_HAS_STATE
        if (i % head[2] == 0)
            {name}_reset();
#endif
        /* every buffer on the heap at its exact size: any access past one is reported */
        int8_t *x = bg_host_alloc({upper}_INPUT_SIZE);
        {name}_output_t *y = bg_host_alloc(sizeof(*y) * {upper}_OUTPUT_SIZE);
        uint8_t *trace = head[1] ? bg_host_alloc({trace_bytes}u) : 0;
        int32_t pred;
        bg_host_io(x, {upper}_INPUT_SIZE, 1);
        bg_host_trace = trace;
        pred = {name}_run(x, y);
        bg_host_trace = 0;
        bg_host_io(&pred, sizeof pred, 0);
        bg_host_io(y, sizeof(*y) * {upper}_OUTPUT_SIZE, 0);
        if (trace)
            bg_host_io(trace, {trace_bytes}u, 0);
        free(x);
        free(y);
        free(trace);
    }}
    return fflush(stdout) != 0;
}}
"""

NP = {"int8": np.int8, "int32": np.int32}
CC = os.environ.get("CC", "cc")


class HostBuildError(BitgenError):
    pass


class SanitizerUnavailable(HostBuildError):
    """The compiler cannot build or run -fsanitize=address,undefined programs here."""


class SanitizerError(BitgenError):
    """A sanitizer reported an error while the emitted model ran."""


def _run_cc(cmd: list[str], what: str) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise HostBuildError(f"{what} failed: {r.stderr.strip()[:2000]}")


def _digest(*parts: bytes) -> str:
    key = hashlib.sha256()
    for p in parts:
        key.update(hashlib.sha256(p).digest())
    return key.hexdigest()[:12]


def compile_check(emitted: Emitted, compiler: str = CC, flags: list[str] | None = None) -> None:
    """Compile every emitted source with strict warnings (-Werror); raise on any diagnostic."""
    flags = flags if flags is not None else STRICT_FLAGS + ["-O2"]
    with tempfile.TemporaryDirectory() as tmp:
        for src in emitted.sources:
            cmd = [compiler, *flags, "-I", str(emitted.outdir), "-c", str(src), "-o", str(Path(tmp) / (src.stem + ".o"))]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0 or r.stderr.strip():
                raise HostBuildError(f"{compiler} rejected {src.name}: {r.stderr.strip().splitlines()[0] if r.stderr.strip() else r.returncode}")


@functools.lru_cache(maxsize=None)
def sanitizer_support(compiler: str = CC) -> str | None:
    """None when `compiler` builds and runs ASan+UBSan programs here, else the reason it does not."""
    if shutil.which(compiler) is None:
        return f"no C compiler '{compiler}' found on PATH"
    with tempfile.TemporaryDirectory(prefix="bitgen-san-") as tmp:
        src, exe = Path(tmp) / "probe.c", Path(tmp) / "probe"
        src.write_text("int main(void) { return 0; }\n")
        r = subprocess.run([compiler, *SANITIZE_FLAGS, str(src), "-o", str(exe)], capture_output=True, text=True)
        if r.returncode != 0:
            return f"{compiler} cannot build with -fsanitize=address,undefined: {_first_line(r.stderr)}"
        r = subprocess.run([str(exe)], capture_output=True, text=True, env=sanitizer_env())
        if r.returncode != 0:
            return f"sanitized programs do not run here: {_first_line(r.stderr) or f'exit {r.returncode}'}"
    return None


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else ""


def sanitizer_env() -> dict[str, str]:
    """The environment to run a sanitized program in: SANITIZER_ENV before the caller's options."""
    env = dict(os.environ)
    for k, v in SANITIZER_ENV.items():  # the caller's own options come last, so they win
        env[k] = v + (":" + env[k] if env.get(k) else "")
    return env


def sanitizer_report_line(stderr: str) -> str | None:
    """The first line of a sanitizer report in `stderr` with its first stack frame, on one line."""
    lines = stderr.splitlines()
    for i, ln in enumerate(lines):
        if ("Sanitizer" in ln and "ERROR" in ln) or "runtime error:" in ln:
            head = re.sub(r"^==\d+==\s*", "", ln.strip())
            frame = next((m.group(1) for f in lines[i + 1:]
                          if (m := re.match(r"\s*#0 0x[0-9a-f]+ in (.+)$", f))), None)
            return head + (f" (at {frame})" if frame else "")
    return None


class HostRuntime:
    """The runtime's kernel sources compiled once, with every weight encoding enabled
    (BG_ENCODINGS_USED 0x7F), to link with many models: the property tests' fast path.

    `sanitize`: objects for :class:`SanitizedModel` (ASan + UBSan), else position-independent
    objects for :class:`HostModel`. A `build_dir` that already holds objects of the same sources
    and flags is reused; models are refused when their runtime files differ from these."""

    def __init__(self, build_dir: str | Path | None = None, sanitize: bool = False, compiler: str = CC):
        if shutil.which(compiler) is None:
            raise HostBuildError(f"no C compiler '{compiler}' found on PATH (install gcc)")
        if sanitize and (why := sanitizer_support(compiler)):
            raise SanitizerUnavailable(why)
        self.sanitize = sanitize
        self.flags = SANITIZE_FLAGS if sanitize else HOST_FLAGS + ["-fPIC"]
        self._tmp = None
        if build_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="bitgen-runtime-")
            build_dir = self._tmp.name
        files = sorted(p for p in C_RUNTIME.iterdir() if p.is_file() and p.name not in NOT_KERNELS)
        self.files = {p.name: p.read_bytes() for p in files}
        config = b"/* bg_config.h for a runtime shared by many models: every encoding. */\n" \
                 b"#define BG_ENCODINGS_USED 0x7Fu\n"
        self.key = _digest(compiler.encode(), " ".join(self.flags).encode(), config,
                           *(n.encode() + b"\0" + d for n, d in self.files.items()))
        self.dir = Path(build_dir) / f"runtime-{'asan' if sanitize else 'host'}-{self.key}"
        src = self.dir / "src"
        self.objects = [self.dir / (Path(n).stem + ".o") for n in self.files if n.endswith(".c")]
        if all(o.exists() for o in self.objects):
            return
        src.mkdir(parents=True, exist_ok=True)
        for name, data in self.files.items():
            (src / name).write_bytes(data)
        (src / "bg_config.h").write_bytes(config)
        for obj in self.objects:
            part = obj.with_suffix(f".{os.getpid()}.tmp")  # then renamed: no half-written object
            _run_cc([compiler, *self.flags, "-I", str(src), "-c", str(src / (obj.stem + ".c")), "-o", str(part)],
                    f"runtime compile of {obj.stem}.c")
            os.replace(part, obj)

    def check(self, emitted: Emitted) -> None:
        """Raise unless every runtime file `emitted` ships is the one compiled here."""
        own = {f"{emitted.name}.c", f"{emitted.name}.h", f"{emitted.name}.json", "bg_config.h"}
        for f in emitted.files:
            if f.name in own:
                continue
            if self.files.get(f.name) != f.read_bytes():
                raise HostBuildError(f"{f.name} of the emitted model is not the prebuilt runtime's copy "
                                     f"(build a new HostRuntime)")

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


class _Built:
    """What both host builds share: the trace layout and the build directory."""

    def __init__(self, emitted: Emitted, build_dir: str | Path | None, runtime: HostRuntime | None,
                 sanitized: bool):
        if runtime is not None:
            if runtime.sanitize != sanitized:
                raise HostBuildError(f"a {'sanitized' if runtime.sanitize else 'plain'} HostRuntime cannot link "
                                     f"into a {'sanitized' if sanitized else 'plain'} host build")
            runtime.check(emitted)
        self.emitted = emitted
        self.runtime = runtime
        rep = emitted.report
        self.name = emitted.name
        self.layers = rep["layers"]
        # layers fused into an earlier kernel never exist in memory: nothing to compare
        self.traced = [lay.get("traced", True) for lay in self.layers]
        self.input_size = math.prod(rep["input"]["shape"])
        self.output_size = math.prod(rep["output"]["shape"])
        self.output_dtype = rep["output"]["dtype"]
        offsets, pos = [], 0
        for lay in self.layers:
            offsets.append(pos)
            pos += lay["out_bytes"]
        self.trace_offsets = offsets
        self.trace_bytes = pos
        # change gates (layer, pixels, threshold); after a run, .changed holds each input's
        # changed pixels per gate (HostModel)
        self.gates = rep.get("change_gates", [])
        self.changed = np.zeros((0, len(self.gates)), dtype=np.uint32)
        self._tmp = None
        if build_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="bitgen-host-")
            build_dir = self._tmp.name
        self.build_dir = Path(build_dir)

    def _source(self, template: str, suffix: str) -> tuple[Path, list[str], str]:
        """Writes the wrapper; returns it, the other inputs of the compile and a cache key."""
        name = self.name
        text = template.format(
            name=name,
            upper=name.upper(),
            offsets=", ".join(str(o) for o in self.trace_offsets),
            trace_bytes=max(self.trace_bytes, 1),
        )
        self.build_dir.mkdir(parents=True, exist_ok=True)
        wrap = self.build_dir / f"{name}_{suffix}.c"
        wrap.write_text(text)
        if self.runtime is None:
            others = [str(s) for s in self.emitted.sources if s.name != f"{name}.c"]
            key = _digest(text.encode(), *(f.read_bytes() for f in self.emitted.files))
        else:  # the model's own source (included by the wrapper) and its headers
            others = [str(o) for o in self.runtime.objects]
            own = [self.emitted.outdir / f"{name}.{ext}" for ext in ("c", "h")] + [self.emitted.outdir / "bg_config.h"]
            key = _digest(text.encode(), self.runtime.key.encode(), *(p.read_bytes() for p in own))
        return wrap, others, key

    def run_sequence(self, x: np.ndarray, trace: bool = False):
        """Sequences of frames (N, T, *input shape), each from the initial state ->
        (outputs (N, T, out), argmax (N, T), per-layer list of (N, T, ...) or None)."""
        x = np.asarray(x, dtype=np.int8)
        n, frames = x.shape[:2]
        y, pred, layers = self.run(x.reshape((n * frames, -1)), trace=trace, frames=max(frames, 1))
        split = lambda a: None if a is None else a.reshape((n, frames) + a.shape[1:])  # noqa: E731
        return split(y), split(pred), None if layers is None else [split(a) for a in layers]

    def _layers(self, tr: np.ndarray, n: int) -> list[np.ndarray | None]:
        """The per-layer list of a trace (n, trace_bytes); None for layers never stored."""
        layers: list[np.ndarray | None] = []
        for lay, off, traced in zip(self.layers, self.trace_offsets, self.traced):
            if not traced:
                layers.append(None)
                continue
            raw = np.ascontiguousarray(tr[:, off : off + lay["out_bytes"]])
            layers.append(raw.view(NP[lay["out_dtype"]]).reshape((n, *lay["out_shape"])))
        return layers

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


class HostModel(_Built):
    """The emitted model, compiled for this machine and loaded through cffi.
    `runtime`: link a prebuilt :class:`HostRuntime` instead of compiling the emitted runtime."""

    def __init__(self, emitted: Emitted, build_dir: str | Path | None = None, runtime: HostRuntime | None = None):
        super().__init__(emitted, build_dir, runtime, sanitized=False)
        self._lib = self._build()

    def _build(self):
        wrap, others, key = self._source(_WRAPPER, "host")
        lib = self.build_dir / f"lib{self.name}_{key}.so"
        if not lib.exists():
            _run_cc([CC, *HOST_FLAGS, "-shared", "-fPIC", "-I", str(self.emitted.outdir), str(wrap), *others,
                     "-o", str(lib)], "host compile")
        out_t = self.out_ctype = "int8_t" if self.output_dtype == "int8" else "int32_t"
        self.ffi = cffi.FFI()
        self.ffi.cdef(
            f"int bg_host_run(const int8_t *x, uint32_t count, uint32_t frames, {out_t} *y, int32_t *pred, "
            "uint8_t *trace, uint32_t *changed);"
        )
        return self.ffi.dlopen(str(lib))

    def run(self, x: np.ndarray, trace: bool = False, frames: int = 1):
        """Run int8 inputs (N, ...) -> (outputs (N, out), argmax (N,), per-layer list or None).
        A model with state starts a sequence every `frames` inputs (1: each input is the first
        frame, as golden.run; see run_sequence). In the per-layer list, layers that are not
        traced (fused) are None."""
        x = np.ascontiguousarray(np.asarray(x, dtype=np.int8).reshape(-1, self.input_size))
        n = x.shape[0]
        y = np.zeros((n, self.output_size), dtype=NP[self.output_dtype])
        pred = np.zeros(n, dtype=np.int32)
        tr = np.zeros((n, self.trace_bytes), dtype=np.uint8) if trace else None
        self.changed = np.zeros((n, len(self.gates)), dtype=np.uint32)
        ffi = self.ffi
        self._lib.bg_host_run(
            ffi.from_buffer("int8_t[]", x),
            n,
            frames,
            ffi.from_buffer(f"{self.out_ctype}[]", y),
            ffi.from_buffer("int32_t[]", pred),
            ffi.from_buffer("uint8_t[]", tr) if trace else ffi.NULL,
            ffi.from_buffer("uint32_t[]", self.changed) if self.gates else ffi.NULL,
        )
        return y, pred, self._layers(tr, n) if trace else None


class SanitizedModel(_Built):
    """The emitted model built with -fsanitize=address,undefined into a standalone executable,
    run as a subprocess; the interface of :class:`HostModel`. A sanitizer report raises
    :class:`SanitizerError` naming its first line. `runtime`: a sanitized :class:`HostRuntime`."""

    def __init__(self, emitted: Emitted, build_dir: str | Path | None = None, runtime: HostRuntime | None = None):
        if runtime is None and (why := sanitizer_support(CC)):
            raise SanitizerUnavailable(why)
        super().__init__(emitted, build_dir, runtime, sanitized=True)
        wrap, others, key = self._source(_DRIVER, "asan")
        self.exe = self.build_dir / f"{self.name}_{key}.asan"
        if not self.exe.exists():
            _run_cc([CC, *SANITIZE_FLAGS, "-I", str(self.emitted.outdir), str(wrap), *others, "-o", str(self.exe)],
                    "sanitized host compile")

    def run(self, x: np.ndarray, trace: bool = False, frames: int = 1):
        """As :meth:`HostModel.run`, in the sanitized executable."""
        x = np.ascontiguousarray(np.asarray(x, dtype=np.int8).reshape(-1, self.input_size))
        n = x.shape[0]
        head = np.array([n, 1 if trace else 0, frames], dtype=np.uint32).tobytes()
        r = subprocess.run([str(self.exe)], input=head + x.tobytes(), capture_output=True, env=sanitizer_env())
        err = r.stderr.decode(errors="replace")
        report = sanitizer_report_line(err)
        if report or r.returncode != 0:
            why = report or _first_line(err) or (f"killed by signal {-r.returncode}" if r.returncode < 0
                                                 else f"exit status {r.returncode}")
            raise SanitizerError(f"{self.name}: {why}")
        out_bytes = self.output_size * NP[self.output_dtype]().itemsize
        rec = 4 + out_bytes + (self.trace_bytes if trace else 0)
        if len(r.stdout) != n * rec:
            raise SanitizerError(f"{self.name}: the driver wrote {len(r.stdout)} bytes, expected {n * rec}")
        raw = np.frombuffer(r.stdout, dtype=np.uint8).reshape(n, rec)
        pred = np.ascontiguousarray(raw[:, :4]).view(np.int32).reshape(n)
        y = np.ascontiguousarray(raw[:, 4 : 4 + out_bytes]).view(NP[self.output_dtype]).reshape(n, self.output_size)
        return y, pred, self._layers(raw[:, 4 + out_bytes :], n) if trace else None


def build(emitted: Emitted, build_dir: str | Path | None = None, runtime: HostRuntime | None = None) -> HostModel:
    if shutil.which(CC) is None:
        raise HostBuildError(f"no C compiler '{CC}' found on PATH (install gcc)")
    return HostModel(emitted, build_dir, runtime)


def build_sanitized(emitted: Emitted, build_dir: str | Path | None = None,
                    runtime: HostRuntime | None = None) -> SanitizedModel:
    """The model under ASan + UBSan; raises SanitizerUnavailable where the compiler cannot."""
    return SanitizedModel(emitted, build_dir, runtime)
