"""IR -> static C: ``NAME.h``, ``NAME.c``, the runtime kernels they use, and ``NAME.json``.

The emitter reads only the IR. It plans the arena (:mod:`bitgen.memory`), packs weights
(:mod:`bitgen.encodings`), picks a kernel per layer and renders ``templates/model.*.j2``.
Output is deterministic: the same model gives the same bytes.
"""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from . import __version__, encodings, ir, memory
from .errors import BitgenError
from .paths import C_RUNTIME, TEMPLATES

SUFFIX = {"int8": "s8", "int32": "s32"}
C_TYPE = {"int8": "int8_t", "int32": "int32_t"}

# Runtime files each op needs (bg_runtime.h always).
RUNTIME_FILES = {
    "linear": ["bg_linear.c", "bg_linear.inc"],
    "conv2d": ["bg_conv2d.c", "bg_conv2d.inc"],
    "maxpool2d": ["bg_pool.c", "bg_pool.inc"],
    "avgpool2d": ["bg_pool.c", "bg_pool.inc"],
    "relu": ["bg_elementwise.c", "bg_elementwise.inc"],
    "requant": ["bg_elementwise.c", "bg_elementwise.inc"],
    "shiftnorm": ["bg_elementwise.c", "bg_elementwise.inc"],
    "flatten": [],
    "argmax": ["bg_elementwise.c", "bg_elementwise.inc"],
}

IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,40}$")


class EmitError(BitgenError):
    pass


@dataclass
class CArray:
    decl: str
    lines: list[str]
    nbytes: int


@dataclass
class LayerPlan:
    index: int
    op: str
    name: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    out_dtype: str
    out_bytes: int
    out_ptr: str
    call: str | None
    kernel: str
    encoding: str | None = None
    weight_bytes: int = 0
    macs: int = 0
    arena_offset: int | None = None

    def report(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "op": self.op,
            "name": self.name,
            "in_shape": list(self.in_shape),
            "out_shape": list(self.out_shape),
            "out_dtype": self.out_dtype,
            "out_bytes": self.out_bytes,
            "arena_offset": self.arena_offset,
            "kernel": self.kernel,
            "encoding": self.encoding,
            "weight_bytes": self.weight_bytes,
            "macs": self.macs,
        }


@dataclass
class Emitted:
    name: str
    outdir: Path
    files: list[Path]
    report: dict[str, Any]
    sources: list[Path] = field(default_factory=list)  # the .c files to compile


def _hex_lines(data: bytes, per_line: int = 16) -> list[str]:
    return [
        " ".join(f"0x{b:02x}," for b in data[i : i + per_line]) for i in range(0, len(data), per_line)
    ] or ["0"]


def _int_lines(values: np.ndarray, per_line: int = 12) -> list[str]:
    vals = [int(v) for v in np.asarray(values).ravel()]
    return [", ".join(str(v) for v in vals[i : i + per_line]) + "," for i in range(0, len(vals), per_line)]


def _c_int(v: int) -> str:
    # INT32_MIN cannot be written as a plain literal in C.
    return "(-2147483647 - 1)" if v == -(2**31) else str(v)


def _shape_str(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


class _Emitter:
    def __init__(self, model: ir.Model, name: str):
        self.model = model
        self.name = name
        self.arrays: list[CArray] = []

    def array(self, ctype: str, ident: str, lines: list[str], nbytes: int) -> str:
        full = f"{self.name}_{ident}"
        self.arrays.append(CArray(f"static const {ctype} {full}[]", lines, nbytes))
        return full

    def struct(self, ctype: str, ident: str, fields: list[Any]) -> str:
        full = f"{self.name}_{ident}"
        body = ", ".join(f if isinstance(f, str) else _c_int(int(f)) for f in fields)
        self.arrays.append(CArray(f"static const {ctype} {full}", [body], 0))
        return full

    def weights(self, i: int, layer: ir.Linear | ir.Conv2d) -> tuple[str, str, int]:
        enc = encodings.get(layer.encoding)
        packed = enc.pack_rows(layer.weight.reshape(layer.weight.shape[0], -1))
        w = self.array("uint8_t", f"w{i}", _hex_lines(packed), len(packed))
        nbytes = len(packed)
        b = "0"
        if layer.bias is not None:
            b = self.array("int32_t", f"b{i}", _int_lines(layer.bias), 4 * layer.bias.size)
            nbytes += 4 * layer.bias.size
        return w, b, nbytes


def emit(model: ir.Model, outdir: str | Path, name: str = "model", target: str = "generic") -> Emitted:
    """Write the C for `model` into `outdir`; returns the file list and the report."""
    if not IDENT.match(name):
        raise EmitError(f"--name '{name}' is not a C identifier (letters, digits, _; max 41)")
    if target != "generic":
        raise EmitError(f"unknown target '{target}' (available: generic)")
    types = [model.input_type()] + model.validate()
    plan = memory.plan(model.layers, types)
    em = _Emitter(model, name)
    layers: list[LayerPlan] = []
    runtime = {"bg_runtime.h"} | set(RUNTIME_FILES["argmax"])

    def ptr(loc: memory.Location, dtype: str, const: bool) -> str:
        base = "input" if loc.external else f"(arena + {loc.offset})"
        q = "const " if const else ""
        if loc.external and dtype == "int8":
            return "input"
        return f"({q}{C_TYPE[dtype]} *){base}"

    for i, layer in enumerate(model.layers):
        t_in, t_out = types[i], types[i + 1]
        loc_in, loc_out = plan.locations[i], plan.locations[i + 1]
        x = ptr(loc_in, t_in.dtype, const=True)
        y = ptr(loc_out, t_out.dtype, const=False)
        sin = SUFFIX[t_in.dtype]
        call, enc_name, wbytes, macs = None, None, 0, 0
        runtime.update(RUNTIME_FILES[layer.kind])
        if isinstance(layer, ir.Linear):
            w, b, wbytes = em.weights(i, layer)
            enc_name = layer.encoding
            enc = f"BG_ENC_{encodings.get(layer.encoding).c_id}"
            macs = layer.in_features * layer.out_features
            call = f"bg_linear_{sin}({x}, {y}, {layer.in_features}, {layer.out_features}, {w}, {enc}, {b});"
        elif isinstance(layer, ir.Conv2d):
            w, b, wbytes = em.weights(i, layer)
            enc_name = layer.encoding
            enc = f"BG_ENC_{encodings.get(layer.encoding).c_id}"
            c, h, wd = t_in.shape
            co, oh, ow = t_out.shape
            kh, kw = layer.weight.shape[2:]
            for v in (c, h, wd, co, oh, ow, layer.groups):
                if v > 0xFFFF:
                    raise EmitError(f"layer {i} {layer.describe()}: dimension {v} exceeds 65535")
            for v in (kh, kw, *layer.stride, *layer.padding):
                if v > 255:
                    raise EmitError(f"layer {i} {layer.describe()}: kernel/stride/padding {v} exceeds 255")
            s = em.struct(
                "bg_conv_shape_t", f"conv{i}",
                [c, h, wd, co, oh, ow, kh, kw, *layer.stride, *layer.padding, layer.groups],
            )
            macs = t_out.size * int(np.prod(layer.weight.shape[1:]))
            call = f"bg_conv2d_{sin}({x}, {y}, &{s}, {w}, {enc}, {b});"
        elif isinstance(layer, (ir.MaxPool2d, ir.AvgPool2d)):
            c, h, wd = t_in.shape
            _, oh, ow = t_out.shape
            s = em.struct("bg_pool_shape_t", f"pool{i}", [c, h, wd, oh, ow, *layer.kernel, *layer.stride])
            call = f"bg_{layer.kind}_{sin}({x}, {y}, &{s});"
        elif isinstance(layer, ir.ReLU):
            call = f"bg_relu_{sin}({x}, {y}, {t_in.size});"
        elif isinstance(layer, ir.Requant):
            ch = layer.multiplier.size
            m = em.array("int32_t", f"m{i}", _int_lines(layer.multiplier), 4 * ch)
            sh = em.array("uint8_t", f"s{i}", _int_lines(layer.shift), ch)
            q = em.struct(
                "bg_requant_t", f"q{i}",
                [m, sh, ch, 1 if layer.rounding == "half_up" else 0, layer.out_min, layer.out_max],
            )
            wbytes = 5 * ch
            call = f"bg_requant_to_{SUFFIX[t_out.dtype]}({x}, {y}, {t_in.size // ch}, &{q});"
        elif isinstance(layer, ir.ShiftNorm):
            call = f"bg_shiftnorm({x}, {y}, {t_in.size});"
        elif isinstance(layer, ir.Flatten):
            call = None
        else:  # validate() already rejects unknown layers
            raise EmitError(f"layer {i}: no C kernel for {layer.kind}")
        layers.append(
            LayerPlan(
                index=i, op=layer.kind, name=layer.name or f"{layer.kind}{i}",
                in_shape=t_in.shape, out_shape=t_out.shape, out_dtype=t_out.dtype,
                out_bytes=t_out.nbytes, out_ptr=ptr(loc_out, t_out.dtype, const=True),
                call=call, kernel="generic" if call else "alias", encoding=enc_name,
                weight_bytes=wbytes, macs=macs,
                arena_offset=None if loc_out.external else loc_out.offset,
            )
        )

    t_final = types[-1]
    digest = model.digest()
    context = {
        "name": name,
        "guard": f"BITGEN_{name.upper()}_H",
        "version": __version__,
        "hash": digest,
        "input_size": model.input.size,
        "input_shape": _shape_str(model.input.shape),
        "output_size": t_final.size,
        "output_shape": _shape_str(t_final.shape),
        "output_dtype": t_final.dtype,
        "output_suffix": SUFFIX[t_final.dtype],
        "arena_bytes": plan.arena_bytes,
        "weight_bytes": sum(a.nbytes for a in em.arrays),
        "macs": sum(lp.macs for lp in layers),
        "layers": layers,
        "data": em.arrays,
        "final_ptr": ptr(plan.locations[-1], t_final.dtype, const=True),
    }
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    files = []
    for tmpl, fname in (("model.h.j2", f"{name}.h"), ("model.c.j2", f"{name}.c")):
        text = env.get_template(tmpl).render(**context)
        (outdir / fname).write_text(text)
        files.append(outdir / fname)
    for fname in sorted(runtime):
        shutil.copyfile(C_RUNTIME / fname, outdir / fname)
        files.append(outdir / fname)
    report = {
        "name": name,
        "bitgen_version": __version__,
        "model_hash": digest,
        "target": target,
        "input": {"shape": list(model.input.shape), "dtype": "int8",
                  "scale": model.input.scale, "zero_point": model.input.zero_point},
        "output": {"shape": list(t_final.shape), "dtype": t_final.dtype},
        "labels": model.labels,
        "weight_bytes": context["weight_bytes"],
        "arena_bytes": plan.arena_bytes,
        "macs": context["macs"],
        "layers": [lp.report() for lp in layers],
    }
    (outdir / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    files.append(outdir / f"{name}.json")
    sources = [outdir / f"{name}.c"] + [outdir / f for f in sorted(runtime) if f.endswith(".c")]
    return Emitted(name=name, outdir=outdir, files=files, report=report, sources=sources)
