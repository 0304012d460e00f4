"""IR -> static C: ``NAME.h``, ``NAME.c``, the runtime kernels they use, and ``NAME.json``.

The emitter reads only the IR. It plans the arena (:mod:`bitgen.memory`), packs weights
(:mod:`bitgen.encodings`), picks a kernel per layer (:mod:`bitgen.kernels`) and renders ``templates/model.*.j2``.
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

from . import __version__, ir, kernels, memory
from .errors import BitgenError
from .paths import C_RUNTIME, TEMPLATES

IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,40}$")
ALWAYS = ["bg_runtime.h", "bg_elementwise.c", "bg_elementwise.inc"]  # argmax lives there


class EmitError(BitgenError):
    pass


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
    flash_bytes: int = 0
    macs: int = 0
    arena_offset: int | None = None
    scratch_bytes: int = 0

    def report(self) -> dict[str, Any]:
        return {
            "index": self.index, "op": self.op, "name": self.name,
            "in_shape": list(self.in_shape), "out_shape": list(self.out_shape),
            "out_dtype": self.out_dtype, "out_bytes": self.out_bytes,
            "arena_offset": self.arena_offset, "scratch_bytes": self.scratch_bytes,
            "kernel": self.kernel, "encoding": self.encoding,
            "weight_bytes": self.flash_bytes, "macs": self.macs,
        }


@dataclass
class Emitted:
    name: str
    outdir: Path
    files: list[Path]
    report: dict[str, Any]
    sources: list[Path] = field(default_factory=list)  # the .c files to compile


def _shape_str(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


def _ptr(loc: memory.Location, dtype: str, const: bool) -> str:
    if loc.external:
        return "input"  # only ever an int8 input, read-only
    return f"({'const ' if const else ''}{kernels.C_TYPE[dtype]} *)(arena + {loc.offset})"


def plan_model(model: ir.Model, target: str = "generic"):
    """Types of every tensor, the kernel of every layer, and the arena plan."""
    if target not in kernels.TARGETS:
        raise EmitError(f"unknown target '{target}' (available: {', '.join(kernels.TARGETS)})")
    types = [model.input_type()] + model.validate()
    choices = []
    for i, layer in enumerate(model.layers):
        try:
            choices.append(kernels.choose(layer, types[i], types[i + 1], target, i))
        except kernels.KernelError as e:
            raise EmitError(f"layer {i} {layer.describe()}: {e}") from None
    plan = memory.plan([
        memory.Need(out_bytes=types[i + 1].nbytes, in_bytes=types[i].nbytes, in_place=c.in_place,
                    out_region=c.out_region, scratch=c.scratch, alias=c.kernel == "alias")
        for i, c in enumerate(choices)
    ])
    return types, choices, plan


def emit(model: ir.Model, outdir: str | Path, name: str = "model", target: str = "generic") -> Emitted:
    """Write the C for `model` into `outdir`; returns the file list and the report."""
    if not IDENT.match(name):
        raise EmitError(f"--name '{name}' is not a C identifier (letters, digits, _; max 41)")
    types, choices, plan = plan_model(model, target)
    em = kernels.Emitter(name)
    layers: list[LayerPlan] = []
    runtime = set(ALWAYS)
    for i, (layer, choice) in enumerate(zip(model.layers, choices)):
        t_in, t_out = types[i], types[i + 1]
        loc_out = plan.locations[i + 1]
        before = em.flash_bytes
        scratch = plan.scratch[i]
        ptrs = kernels.Pointers(
            x=_ptr(plan.locations[i], t_in.dtype, const=True),
            y=_ptr(loc_out, t_out.dtype, const=False),
            scratch=None if scratch is None else f"(int16_t *)(arena + {scratch})",
        )
        call = choice.render(em, i, ptrs)
        runtime.update(choice.files)
        is_mac = isinstance(layer, (ir.Linear, ir.Conv2d))
        layers.append(LayerPlan(
            index=i, op=layer.kind, name=layer.name or f"{layer.kind}{i}",
            in_shape=t_in.shape, out_shape=t_out.shape, out_dtype=t_out.dtype,
            out_bytes=t_out.nbytes, out_ptr=_ptr(loc_out, t_out.dtype, const=True),
            call=call, kernel=choice.kernel, encoding=layer.encoding if is_mac else None,
            flash_bytes=em.flash_bytes - before,
            macs=t_out.size * int(np.prod(layer.weight.shape[1:])) if is_mac else 0,
            arena_offset=None if loc_out.external else loc_out.offset,
            scratch_bytes=choice.scratch,
        ))

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
        "output_suffix": kernels.SUFFIX[t_final.dtype],
        "arena_bytes": plan.arena_bytes,
        "weight_bytes": em.flash_bytes,
        "macs": sum(lp.macs for lp in layers),
        "layers": layers,
        "data": em.data,
        "final_ptr": _ptr(plan.locations[-1], t_final.dtype, const=True),
        "headers": sorted(f for f in runtime if f.endswith(".h") and f != "bg_runtime.h"),
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
