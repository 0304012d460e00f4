"""`bitgen bench --stream FILE`: instructions per frame of a model over a stream of frames,
its change-based convolutions against the same model dense (bitgen.ir.change).

The frames run as one sequence from the model's reset, on the emulated board's bench image
(bitgen.sim.bench.run_stream: each frame measured on its own, every output compared with
golden.run_sequence). The report holds the change-based run and the dense one, and the pixels
that changed per frame at each gate."""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .. import golden, ir, reports, streams
from ..harness import firmware
from ..sim import bench as sim_bench
from .common import UsageError, count
from .outputs import STDOUT, output_file, write_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stream", metavar="FILE", help="a stream file (frames x (T, C, H, W), optional labels y): "
                                                    "run them as one sequence, per-frame instructions")
    p.add_argument("--change-threshold", type=count(0, 2**31 - 1), metavar="T",
                   help="make every convolution change-based with threshold T (input LSBs; 0: exactly "
                        "the dense model)")


def with_threshold(model: ir.Model, threshold: int | None) -> ir.Model:
    if threshold is None:
        return model
    if threshold < 0:
        raise UsageError(f"--change-threshold must be 0 or more, got {threshold}")
    if not any(isinstance(n.op, ir.Conv2d) for n in model.nodes):
        raise UsageError("--change-threshold: the model has no convolution to make change-based")
    return ir.change.with_thresholds(model, threshold)


def frames_of(stream: streams.Stream, model: ir.Model) -> np.ndarray:
    """The stream's frames as the model's int8 inputs (T, *input shape)."""
    x = stream.x
    if int(np.prod(x.shape[1:])) != model.input.size:
        raise UsageError(f"{stream.path}: frames of {tuple(x.shape[1:])} do not fit the model's input "
                         f"{model.input.shape}")
    if x.dtype == np.int8:
        return x.reshape((len(x),) + model.input.shape)
    return model.input.quantize(x)


def measure(board, model: ir.Model, name: str, x: np.ndarray, kernels: str | None, max_arena: int | None,
            workdir: Path) -> dict[str, Any]:
    """Run the frames x (T, ...) as one sequence on the emulated board: per-frame instructions,
    mismatches against golden, changed pixels per gate."""
    t_out = model.validate()[-1]
    expect = golden.run_sequence(model, x[None])[0]
    fw = firmware.build(model, board, workdir, name=name, kernels=kernels, harness="bench", max_arena=max_arena)
    emitted = json.loads((fw.outdir / "src" / f"{name}.json").read_text())
    gates = emitted.get("change_gates", [])
    runs = sim_bench.run_stream(board, fw, x, t_out.dtype, t_out.size, gates=len(gates))
    want_cls = golden.argmax(expect)
    mismatches = sum(not (np.array_equal(r.outputs.reshape(e.shape), e) and r.cls == c)
                     for r, e, c in zip(runs, expect, want_cls))
    out: dict[str, Any] = {
        "kernels": fw.report["kernels"], "mismatches": int(mismatches),
        "instructions": reports.count_stats([r.cycles for r in runs]), "per_frame": [r.cycles for r in runs],
        "flash_bytes": fw.report.get("flash_bytes"), "sram_bytes": fw.report.get("sram_bytes"),
        "arena_bytes": emitted.get("arena_bytes"), "predictions": [r.cls for r in runs],
        "states": emitted.get("states", []),
    }
    if gates:
        pixels = sum(g["pixels"] for g in gates)
        per_gate = np.array([r.changed for r in runs], dtype=np.float64)  # (T, gates)
        out["gates"] = [{"layer": g["layer"], "threshold": g["threshold"], "pixels": g["pixels"],
                         "changed_fraction": float(per_gate[:, k].mean() / g["pixels"])} for k, g in enumerate(gates)]
        out["changed_fraction"] = float(per_gate.sum(axis=1).mean() / pixels)
        out["changed_per_frame"] = per_gate.astype(np.int64).tolist()
        want = golden.changed_pixels(model, x)
        out["change_count_mismatches"] = int(np.sum(np.asarray(want) != per_gate.astype(np.int64)))
    return out


def run(args: argparse.Namespace, board, model: ir.Model, name: str) -> int:
    """The stream benchmark of `bitgen bench --stream` (see the module docstring)."""
    json_to = output_file(args.json, "--json", stdout=True)
    stream = streams.load(args.stream)
    if (board.emulator or {}).get("kind") != "unicorn" or args.port:
        raise UsageError(f"--stream runs on a Unicorn-emulated board (not {board.name}"
                         f"{' through a port' if args.port else ''}); use bitgen run --stream for others")
    model = with_threshold(model, args.change_threshold)
    x = frames_of(stream, model)
    dense = ir.change.dense(model)
    with tempfile.TemporaryDirectory(prefix="bitgen-bench-") as tmp:
        cb = measure(board, model, name, x, args.kernels, args.max_arena, Path(tmp) / "cb")
        base = measure(board, dense, name, x, args.kernels, args.max_arena, Path(tmp) / "dense") \
            if dense is not model else None
    rep: dict[str, Any] = reports.header("bench") | {
        "model_hash": model.digest(), "board": board.name,
        "model": {"name": name, "path": str(Path(args.model).resolve())},
        "stream": str(Path(args.stream).resolve()), "frames": int(len(x)),
        "compared": int(len(x)), "mismatches": cb["mismatches"] + (base["mismatches"] if base else 0),
        "instructions": cb["instructions"], "instruction_source": board.cycle_source,
        "kernels": cb["kernels"], "thresholds": {str(i): t for i, t in ir.change.thresholds(model).items()},
        "changed_fraction": cb.get("changed_fraction"), "change_based": cb, "dense": base,
    }
    if base:
        rep["speedup"] = base["instructions"]["mean"] / cb["instructions"]["mean"]
    if stream.y is not None:
        rep["accuracy"] = {"change_based": float(np.mean(np.array(cb["predictions"]) == stream.y)),
                           "dense": float(np.mean(np.array(base["predictions"]) == stream.y)) if base else None}
    if json_to != STDOUT:
        print(summary(rep), end="")
    write_json(json_to, rep)
    bad = rep["mismatches"] or cb.get("change_count_mismatches")
    if bad:
        if json_to != STDOUT:
            print(f"MISMATCH: {rep['mismatches']} frames differ from the golden model, "
                  f"{cb.get('change_count_mismatches', 0)} changed-pixel counts differ")
        return 1
    return 0


def summary(rep: dict[str, Any]) -> str:
    cb, base = rep["change_based"], rep["dense"]
    lines = [f"**{rep['model']['name']}** ({rep['model_hash'][:12]}) on **{rep['board']}**, {rep['kernels']} "
             f"kernels, {rep['frames']} frames of {Path(rep['stream']).name}, {rep['mismatches']} mismatches"]
    row = lambda what, m: (f"| {what} | {m['instructions']['mean']:,.0f} | {m['instructions']['median']:,.0f} | "  # noqa: E731
                           f"{m['instructions']['min']:,} | {m['instructions']['max']:,} | {m['sram_bytes']} |")
    lines += ["", "| run | mean instructions per frame | median | min | max | SRAM (B) |", "|---|---:|---:|---:|---:|---:|",
              row("change-based" if cb.get("gates") else "as given", cb)]
    if base:
        lines.append(row("dense", base))
        lines.append("")
        lines.append(f"speed-up {rep['speedup']:.2f}x; pixels changed per frame: "
                     f"{100 * (rep['changed_fraction'] or 0):.1f} % (thresholds {rep['thresholds']})")
    return "\n".join(lines) + "\n"
