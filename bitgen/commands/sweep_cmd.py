"""bitgen sweep: train, check, build and bench every point of a design space on Ray, one row per
point in OUT/results.jsonl and results.csv, and the Pareto front of accuracy against
instructions per inference (OUT/front.json, OUT/front.png); or, with --fuzz N, the exactness
property over N random models as Ray tasks. Needs the optional extra: pip install 'bitgen[sweep]'.
See bitgen.sweep.space for the space file."""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from .. import reports
from ..errors import BitgenError
from .common import SEED, UsageError, add_kernels_argument, count, resolve_kernels
from .outputs import STDOUT, make_dir, output_dir, output_file, write_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("space", nargs="?", help="the design space (TOML; see examples/sweep-usps-mlp.toml)")
    p.add_argument("-o", "--out", required=True, metavar="DIR",
                   help="output folder: results.jsonl, results.csv, front.json, front.png, points/ "
                        "(a sweep restarted into it skips the points it holds)")
    p.add_argument("--json", metavar="FILE",
                   help="also write the summary (sweep.json / fuzz.json) here ('-': standard output)")
    p.add_argument("--data", metavar="PATH",
                   help="the dataset of every point (instead of the space's [train] data)")
    p.add_argument("--address", metavar="RAY_ADDRESS",
                   help="join this Ray cluster (e.g. ray://head:10001 or auto) instead of starting a local "
                        "Ray runtime; OUT must then be a folder every node sees")
    p.add_argument("--workers", type=count(1, 4096), metavar="N",
                   help="points (or fuzz batches) run at once (default: every CPU of this machine or the cluster)")
    p.add_argument("--dry-run", action="store_true",
                   help="list the points of the space (and which OUT holds already); run nothing")
    p.add_argument("--fuzz", type=count(1, 10**9), metavar="N",
                   help="instead of a space: compare N random models with golden")
    add_kernels_argument(p, "--fuzz: the kernel set to compare (default: every one)")
    p.add_argument("--seed", type=SEED, default=0, help="--fuzz: seed of the random models (default 0)")
    p.add_argument("--batch", type=count(1, 10**6), default=100, metavar="M",
                   help="--fuzz: models per Ray task (default 100)")


def _require_ray() -> None:
    try:
        import matplotlib  # noqa: F401
        import optuna  # noqa: F401
        import ray  # noqa: F401
        from ray import tune  # noqa: F401
    except ImportError as e:
        raise BitgenError(f"bitgen sweep needs Ray Tune, Optuna and matplotlib ({e.name} is missing): "
                          "pip install 'bitgen[sweep]'") from None


def run(args: argparse.Namespace) -> int:
    if (args.space is None) == (args.fuzz is None):
        raise UsageError("give a space file, or --fuzz N (not both)")
    out = output_dir(args.out, "-o")
    json_to = output_file(args.json, "--json", stdout=True)
    if args.fuzz is not None:
        return _fuzz(args, out, json_to)
    if args.data is not None and not args.data.strip():
        raise UsageError("--data: an empty path")
    if args.kernels is not None or args.target is not None or args.batch != 100 or args.seed != 0:
        raise UsageError("--kernels, --target, --seed and --batch are --fuzz options (a space file gives its "
                         "boards' kernels and its seeds)")

    from ..sweep.space import Space

    space = Space.load(args.space, data=args.data)  # errors before Ray starts
    if args.dry_run:
        return _dry_run(space, out, json_to)
    _require_ray()
    from ..sweep import front, runner
    from ..sweep.results import Results

    start = time.perf_counter()
    make_dir(out, "-o")
    with runner.Ray(args.address, args.workers) as ray_runtime:
        info = runner.run(space, out, ray_runtime)
    results = Results(out)
    results.write_csv()
    if info["planned"] is not None:
        done = results.done()
        rows = [done[i] for i in info["planned"] if i in done]
    else:  # the Pareto search: every row of a point of this space
        rows = [r for r in results.done().values() if _in_space(space, r)]
    data = front.write(rows, space, out.resolve())
    summary = reports.header("sweep") | {
        "space": str(Path(args.space).resolve()), "out": str(out.resolve()), "method": space.method,
        "workers": ray_runtime.workers, "ray_address": args.address,
        "count": len(rows), "skipped": info["skipped"],
        "failed": [{"id": r["id"], "params": r["params"], "reason": r["reason"]}
                   for r in rows if r.get("status") != "ok"],
        "mismatches": sum(r.get("mismatches") or 0 for r in rows),
        "front": {board: [_front_entry(p) for p in sorted((p for p in b["points"] if p["on_front"]),
                                                           key=lambda p: p["instructions"])]
                  for board, b in data["boards"].items()},
        "limits": {board: b["limits"] for board, b in data["boards"].items()},
        "front_png": data["png"], "front_json": str(out.resolve() / "front.json"),
        "results": {"jsonl": str(results.jsonl.resolve()), "csv": str(results.csv.resolve())},
        "wall_s": round(time.perf_counter() - start, 1),
        "points": rows,
    }
    write_json(out / "sweep.json", summary, "-o")
    write_json(json_to, summary)
    if json_to != STDOUT:
        _print_summary(summary, data, results, out)
    return 1 if summary["mismatches"] else 0


def _print_summary(summary: dict[str, Any], data: dict[str, Any], results, out: Path) -> None:
    from ..sweep.space import shown

    print(f"{summary['count']} points ({summary['skipped'] or 0} from an earlier run), {len(summary['failed'])} "
          f"failed, {summary['mismatches']} mismatches, {summary['wall_s']} s")
    for board, entries in summary["front"].items():
        print(f"Pareto front on {board} ({', '.join(data['objectives'])}):")
        for e in entries:
            print(f"  {100 * e['accuracy']:6.2f} %  {e['instructions']:>12,.0f} instructions  flash {e['flash']} B  "
                  f"SRAM {e['sram']} B  {shown(e['params'])}")
    print(f"wrote {results.jsonl}, {results.csv}, {out / 'front.json'}, {out / 'front.png'}")
    if summary["mismatches"]:
        print(f"MISMATCH: {summary['mismatches']} outputs differ from the golden model (see the rows' checks)")


def _dry_run(space, out: Path, json_to) -> int:
    from ..sweep.results import Results
    from ..sweep.space import shown

    if space.method == "pareto":
        raise UsageError("--dry-run lists the points of a grid or random space; a Pareto search chooses them "
                         "as it goes")
    points = space.grid() if space.method == "grid" else space.random()
    done = Results(out).done()
    listed = [{"id": p.id, "params": p.params, "done": p.id in done} for p in points]
    report = reports.header("sweep-plan") | {"space": str(space.path), "method": space.method,
                                             "count": len(listed), "done": sum(p["done"] for p in listed),
                                             "points": listed}
    write_json(json_to, report)
    if json_to != STDOUT:
        for p in listed:
            print(f"{p['id']}  {'done ' if p['done'] else 'to do'}  "
                  f"{shown(p['params'])}")
        print(f"{report['count']} points, {report['done']} already in {out}")
    return 0


def _in_space(space, row) -> bool:
    try:
        return space.point(row.get("params", {})).id == row["id"]
    except BitgenError:
        return False


def _front_entry(p: dict) -> dict:
    return {k: p[k] for k in ("id", "params", "accuracy", "instructions", "flash", "sram", "kernels", "model")}


def _fuzz(args: argparse.Namespace, out: Path, json_to) -> int:
    from ..backends.c import kernels as kernel_sets

    chosen = resolve_kernels(args)
    sets = [chosen] if chosen else list(kernel_sets.TARGETS)
    if args.dry_run or args.data is not None:
        raise UsageError("--dry-run and --data are for a space file; --fuzz draws random models and inputs")
    _require_ray()
    from ..sweep import fuzzing, runner

    start = time.perf_counter()
    make_dir(out, "-o")
    with runner.Ray(args.address, args.workers) as ray_runtime:
        summary = fuzzing.run(args.fuzz, sets, out, ray_runtime, seed=args.seed, batch=args.batch)
    summary = reports.header("fuzz") | summary | {
        "workers": ray_runtime.workers, "ray_address": args.address, "wall_s": round(time.perf_counter() - start, 1)}
    write_json(out / "fuzz.json", summary, "-o")
    write_json(json_to, summary)
    if json_to != STDOUT:
        print(f"{summary['models']} random models, {summary['inputs']} inputs, {summary['comparisons']} comparisons "
              f"({', '.join(sets)}): {summary['mismatches']} mismatches, {len(summary['failed_batches'])} failed "
              f"batches, {summary['wall_s']} s")
        for m in summary["mismatched"]:
            print(f"  MISMATCH {m['kernels']}: {m['what']}: {m['model']} with {m['inputs']}")
    return 1 if summary["mismatches"] or summary["failed_batches"] else 0
