"""bitgen emit: model.pt -> NAME.h, NAME.c, runtime kernels and NAME.json."""
from __future__ import annotations

import argparse

from ..backends.c import emit, lower_max78000
from .common import (UsageError, add_kernels_argument, add_max_arena_argument, add_model_argument,
                     add_tiling_arguments, load_model, resolve_kernels)
from .outputs import output_dir


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_argument(p)
    p.add_argument("-o", "--out", required=True, metavar="OUTDIR", help="output folder")
    p.add_argument("--name", help="C name prefix (default: the model's name, else 'model')")
    add_kernels_argument(p, "kernel set (default: generic)")
    add_max_arena_argument(p)
    add_tiling_arguments(p)
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
    if args.target == "max78000-cnn":
        return emit_max78000(args)
    kernels = resolve_kernels(args) or "generic"
    check_name(args.name)
    out = output_dir(args.out, "-o")
    loaded = load_model(args)
    name = args.name or default_name(loaded.ir.name)
    model = lower_max78000.for_c(loaded.ir)  # accelerator layers, if any, as the C back end's ops
    em = emit.emit(model, out, name=name, kernels=kernels, max_arena=args.max_arena, tiles=args.tiling,
                   strip_rows=args.strip_rows)
    r = em.report
    print(f"wrote {len(em.files)} files to {em.outdir}/ ({name}.h, {name}.c, {name}.json, {kernels} kernels)")
    kept = f"  kept between frames {r['persistent_bytes']} B" if r.get("persistent_bytes") else ""
    print(f"  layers {len(r['layers'])}  weights {r['weight_bytes']} B  arena {r['arena_bytes']} B{kept}  "
          f"MACs {r['macs']}  model {r['model_hash'][:16]}")
    if r.get("tiling"):
        t = r["tiling"]
        for run in t["runs"]:
            what = (f"row strips: layers {run['first_layer']}..{run['last_layer']} in {run['strips']} strips of "
                    f"{run['strip_rows']} rows" if not run["columns_tiled"] else
                    f"tiles: layers {run['first_layer']}..{run['last_layer']} in {run['strips']} tiles of "
                    f"{run['strip_rows']} rows x {run['tile_cols']} columns")
            print(f"  {what}; arena {t['arena_layer_by_layer']} B layer by layer, "
                  f"{t['arena_tiled']} B tiled; halos recompute {run['recompute_macs']} MACs "
                  f"(+{run['recompute_percent']} %)")
    return 0


def emit_max78000(args: argparse.Namespace) -> int:
    """The layer program for the MAX78000's CNN accelerator (backends/max78000/emit.py), and C for
    the Cortex-M4 for the layers after the accelerator's part (handover.py). A model over a
    hardware limit leaves NAME.json with the per-resource report and fails in one line."""
    import json

    from ..backends.max78000 import emit as cnn_emit
    from ..backends.max78000 import handover, limits

    if args.kernels is not None or args.max_arena is not None or args.tiling != "auto" or args.strip_rows is not None:
        raise UsageError("--kernels, --max-arena, --tiling and --strip-rows are for the C back end, "
                         "not --target max78000-cnn")
    check_name(args.name)
    out = output_dir(args.out, "-o")
    loaded = load_model(args)
    name = args.name or default_name(loaded.ir.name)
    part = handover.split(loaded.ir)
    try:
        em = cnn_emit.emit(part.accelerator, out, name)
    except limits.DoesNotFit as e:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.json").write_text(json.dumps({"target": "max78000-cnn", "name": name,
                                                      "fit": e.report.to_dict()}, indent=1) + "\n")
        raise
    r = em.report
    used = r["fit"]["resources"]
    print(f"wrote {len(em.files)} files to {em.outdir}/ (cnn.c, cnn.h, weights.h, main.c, sampledata.h, "
          f"sampleoutput.h, network.yaml, {name}.json)")
    print(f"  layers {len(r['layers'])}  quadrants {r['quadrants']}  kernel words per processor "
          f"{used['kernel memory words per processor']['used']}/768  data words per instance "
          f"{used['data memory words per instance']['used']}/8192  bias bytes {used['bias bytes']['used']}/2048")
    tail = part.emit_cortex(out, name)
    if tail is not None:
        hand = part.to_dict(name)
        report = json.loads((out / f"{name}.json").read_text()) | {"handover": hand}
        (out / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
        print(f"  hand-over: '{hand['tensor']}' ({'x'.join(map(str, hand['shape']))} int8) to the Cortex-M4, which runs "
              f"the last {hand['cortex_m4_layers']} layers: {name}_m4.c, {name}_m4.h ({tail.report['arena_bytes']} B arena)")
        if part.moved:
            print(f"  accelerator layers on the Cortex-M4, because {part.moved}")
    return 0
