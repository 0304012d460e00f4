"""bitgen emit: model.pt -> NAME.h, NAME.c, runtime kernels and NAME.json."""
from __future__ import annotations

import argparse

from ..backends.c import emit
from .common import (UsageError, add_kernels_argument, add_max_arena_argument, add_model_argument, load_model,
                     resolve_kernels)
from .outputs import output_dir


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_argument(p)
    p.add_argument("-o", "--out", required=True, metavar="OUTDIR", help="output folder")
    p.add_argument("--name", help="C name prefix (default: the model's name, else 'model')")
    add_kernels_argument(p, "kernel set (default: generic)")
    add_max_arena_argument(p)
    from .scamp5_cmd import add_emit_arguments

    add_emit_arguments(p)


def default_name(model_name: str) -> str:
    return "model" if emit.name_problem(model_name) else model_name


def check_name(name: str | None) -> None:
    """Refuse a --name that cannot prefix the C, before any work is done."""
    why = None if name is None else emit.name_problem(name)
    if why:
        raise UsageError(f"--name {name!r} {why}")


def run(args: argparse.Namespace) -> int:
    if args.target == "scamp5":
        from . import scamp5_cmd

        return scamp5_cmd.emit(args, args.name or default_name(load_model(args).ir.name))
    kernels = resolve_kernels(args) or "generic"
    check_name(args.name)
    out = output_dir(args.out, "-o")
    loaded = load_model(args)
    name = args.name or default_name(loaded.ir.name)
    em = emit.emit(loaded.ir, out, name=name, kernels=kernels, max_arena=args.max_arena)
    r = em.report
    print(f"wrote {len(em.files)} files to {em.outdir}/ ({name}.h, {name}.c, {name}.json, {kernels} kernels)")
    print(f"  layers {len(r['layers'])}  weights {r['weight_bytes']} B  arena {r['arena_bytes']} B  "
          f"MACs {r['macs']}  model {r['model_hash'][:16]}")
    return 0
