"""The C back end: IR -> static, pure-integer C99 (no malloc, no float, only <stdint.h>).

The pipeline, one module each:

* :mod:`.targets`: kernel sets as data (which kernels are fastest on a family of processors);
* :mod:`.kernels`: the kernel registry (which kernel computes each layer, its needs, its call);
* :mod:`.schedule`: the order the layers run in (layer by layer, or a channel at a time);
* :mod:`.memory`: the static arena plan;
* :mod:`.emit`: NAME.c / NAME.h / NAME.json and the runtime files from ``c_runtime/``;
* :mod:`.host`: the emitted C compiled for this machine and called through cffi (the executor).
"""
from __future__ import annotations

from pathlib import Path

from ... import ir
from ..base import Artifact, Backend, Executor, Options


class CBackend(Backend):
    name = "c"

    def legalize(self, model: ir.Model, options: Options) -> None:
        from . import emit

        emit.plan_model(model, options.kernels)  # raises EmitError naming the layer

    def plan(self, model: ir.Model, options: Options) -> "emit.ModelPlan":  # noqa: F821
        from . import emit

        return emit.plan_within(model, options.kernels, options.max_arena)

    def emit(self, model: ir.Model, outdir: str | Path, options: Options) -> Artifact:
        from . import emit

        return emit.emit(model, outdir, name=options.name, kernels=options.kernels, max_arena=options.max_arena)

    def static_check(self, artifact: Artifact) -> str:
        from . import host

        host.compile_check(artifact)  # -std=c99 -Wall -Wextra -Werror -pedantic
        return "ok"

    def executor(self, artifact: Artifact, workdir: str | Path | None = None) -> Executor:
        from . import host

        return host.build(artifact, workdir)
