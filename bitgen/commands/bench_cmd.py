"""bitgen bench: instructions per inference (min/median/max and per layer), flash by section,
SRAM and the kernel chosen for each layer, measured on a board. Writes JSON and a Markdown table.

On a Unicorn-emulated board the measured image is the bench harness (board start-up and the
model, inputs placed in memory by the emulator: bitgen.sim.bench), so that models which leave no
room for the serial protocol can still be measured; the count is exact retired instructions,
and a second image with a mark after every layer gives the per-layer split. Whether the full
protocol firmware (what `bitgen flash` writes) fits is reported beside it. On a real board
(--port) or a QEMU board the protocol firmware is measured through the serial port, without a
per-layer split."""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .. import console, golden, reports
from ..harness import boards, firmware
from ..harness.link import LinkError
from ..harness.session import Session
from ..sim import bench as sim_bench
from . import bench_stream
from .common import (UsageError, add_dataset_arguments, add_kernels_argument, add_max_arena_argument,
                     add_model_argument, add_tiling_arguments, check_memory, count, load_dataset, load_model,
                     resolve_kernels)
from .emit_cmd import default_name
from .outputs import STDOUT, output_file, write_json, write_text

# The firmware's layer hook, in builds made to split the count per layer: one volatile store
# of the layer index to the emulator's bench marker (bitgen.sim.peripherals.BenchMarker).
MARK = "BG_LAYER_PART(index,offset,data,bytes)=(*(volatile uint32_t *)BG_BENCH_MARKER = (uint32_t)(index))"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--board", required=True, help=f"board (available: {', '.join(boards.available())})")
    p.add_argument("--port", help="serial port of a real board (no per-layer split there)")
    add_model_argument(p)
    add_dataset_arguments(p)
    p.add_argument("--random", type=count(0), default=0, metavar="N", help="run N random int8 inputs (no dataset)")
    add_kernels_argument(p, "kernel set (default: the board's fastest that fits)")
    add_max_arena_argument(p)
    add_tiling_arguments(p)
    p.add_argument("--over-budget", action="store_true",
                   help="an image over the part's flash or SRAM is still measured, on the emulated board with "
                        "its memory enlarged to hold it (the report says it does not fit); Unicorn boards only")
    p.add_argument("--count-only", action="store_true",
                   help="on a Unicorn board, only the instructions per inference: no per-layer split and no "
                        "protocol-firmware fit (one image built instead of three; bitgen build says what fits)")
    p.add_argument("--json", metavar="FILE", help="write bench.json here ('-': to standard output, instead of "
                                                  "the table)")
    p.add_argument("--md", metavar="FILE", help="write the Markdown table here")
    bench_stream.add_arguments(p)


def _run_inputs(session: Session, x: np.ndarray, expect: np.ndarray, bar) -> tuple[list[int], int]:
    cycles, mismatches = [], 0
    for i in range(len(x)):
        try:
            r = session.link.classify(x[i])
        except LinkError as e:
            raise session.explain(e) from None
        mismatches += not (np.array_equal(r.outputs.reshape(expect[i].shape), expect[i])
                           and r.cls == golden.argmax(expect[i : i + 1])[0])
        cycles.append(r.cycles)
        bar.update(1)
    return cycles, mismatches


def _marker(board: boards.Board) -> int | None:
    emu = board.emulator or {}
    for p in emu.get("peripherals", []):
        if p.get("model") == "bitgen.bench_marker":
            return int(p["base"], 0) if isinstance(p["base"], str) else int(p["base"])
    return None


def markdown(rep: dict[str, Any]) -> str:
    ins = rep["instructions"]
    fw = rep.get("protocol_firmware") or {}
    fits = "" if not fw else (f"; the protocol firmware {'fits' if fw.get('fits') else 'does not fit'} "
                              f"({fw.get('flash_bytes')} B flash, {fw.get('sram_bytes')} B SRAM)")
    tried = "".join(f"; with {firmware.describe_attempt(t)} the image needs {t['flash_bytes']} B flash and "
                    f"{t['sram_bytes']} B SRAM, over budget" for t in rep.get("kernels_tried") or [] if not t.get("fits"))
    if rep.get("memory_scale", 1) > 1:
        tried += (f"; this image does not fit the part: measured on the emulator with {rep['memory_scale']} times its "
                  f"flash and SRAM ({rep['flash_budget']} B, {rep['sram_budget']} B)")
    lines = [
        f"**{rep['model']['name']}** ({rep['model_hash'][:12]}) on **{rep['board']}**, "
        f"{rep['kernels']} kernels: {ins['median']} instructions per inference "
        f"(min {ins['min']}, max {ins['max']}, {rep['compared']} inputs, {rep['mismatches']} mismatches); "
        f"{rep['image']} image: flash {rep['flash_bytes']} B, SRAM {rep['sram_bytes']} B{fits}{tried}.",
        "",
        "| # | layer | kernel | output | weights (B) | MACs | instructions | share |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    total = sum(lay["instructions"] or 0 for lay in rep["layers"]) or 1
    for lay in rep["layers"]:
        n = lay["instructions"]
        share = "" if n is None else f"{100 * n / total:.1f} %"
        lines.append(f"| {lay['index']} | {lay['op']} | {lay['kernel']} | {'x'.join(map(str, lay['out_shape']))} "
                     f"| {lay['weight_bytes']} | {lay['macs']} | {'' if n is None else n} | {share} |")
    notes = [f"- layer {lay['index']}: not {r['kernel']}: {r['reason']}" for lay in rep["layers"]
             for r in lay.get("refused", [])]
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def _check(outputs, classes, expect) -> int:
    """Number of inputs whose outputs or class differ from golden."""
    want_cls = golden.argmax(expect)
    return sum(not (np.array_equal(o.reshape(e.shape), e) and c == wc)
               for o, c, e, wc in zip(outputs, classes, expect, want_cls))


def _enlargement(board: boards.Board, over: dict[str, Any]) -> int | None:
    """The smallest power of two times the part's flash and SRAM that holds every image the
    failed build tried (so the fastest kernel set is the one measured), or None past
    firmware.MEASURE_SCALE (such an image was never linked)."""
    tried = over.get("kernels_tried") or [over]
    need_flash = max(t["flash_bytes"] or 0 for t in tried)
    need_sram = max(t["sram_bytes"] or 0 for t in tried)
    flash, sram = board.image_board.flash, board.image_board.sram
    scale = 2
    while scale <= firmware.MEASURE_SCALE:
        if need_flash <= flash.size * scale and need_sram <= sram.size * scale:
            return scale
        scale *= 2
    return None


def _bench_emulated(board, model, name, x, expect, kernels, max_arena, bar, over_budget=False, count_only=False,
                    tiles="auto", strip_rows=None):
    """The bench harness on a Unicorn board: (cycles, mismatches, report, emitted, per-layer,
    protocol firmware or None). ``over_budget``: an image that does not fit the part is measured
    on the board enlarged to hold it (boards.enlarged); the report's ``fits`` stays False.
    ``count_only``: neither the per-layer image nor the protocol firmware. ``tiles``,
    ``strip_rows``: row strips (emit.plan_within)."""
    strips = dict(tiles=tiles, strip_rows=strip_rows)
    t_out = model.validate()[-1]
    marker = None if count_only else _marker(board)
    tick = lambda: bar.update(1)  # noqa: E731
    part = board
    with tempfile.TemporaryDirectory(prefix="bitgen-bench-") as tmp:
        try:
            plain = firmware.build(model, board, Path(tmp) / "plain", name=name, kernels=kernels, harness="bench",
                                   max_arena=max_arena, **strips)
        except firmware.BudgetError as e:
            scale = _enlargement(board, e.report) if over_budget else None
            if scale is None:
                raise
            board = boards.enlarged(board, scale)
            plain = firmware.build(model, board, Path(tmp) / "plain", name=name, kernels=kernels, harness="bench",
                                   max_arena=max_arena, **strips)
            plain.report.update(  # the part's budgets, not the emulator's
                fits=False, memory_scale=scale, kernels_tried=e.report.get("kernels_tried", []),
                flash_budget=part.image_board.flash.size, sram_budget=part.image_board.sram.size)
        kernels = plain.report["kernels"]
        runs = sim_bench.run(board, plain, x, t_out.dtype, t_out.size, on_input=tick)
        mismatches = _check([r.outputs for r in runs], [r.cls for r in runs], expect)
        emitted = json.loads((plain.outdir / "src" / f"{name}.json").read_text())
        per_layer: dict[int, float] = {}
        if marker is not None:
            marked = firmware.build(model, board, Path(tmp) / "marked", name=name, kernels=kernels, harness="bench",
                                 extra_cflags=[f"-DBG_BENCH_MARKER=0x{marker:08x}u", f"-D{MARK}"],
                                 max_arena=max_arena, **strips)
            mruns = sim_bench.run(board, marked, x, t_out.dtype, t_out.size, on_input=tick)
            mismatches += _check([r.outputs for r in mruns], [r.cls for r in mruns], expect)
            for r in mruns:
                for i, n in r.layers.items():
                    per_layer[i] = per_layer.get(i, 0) + n / len(mruns)
        protocol = None
        try:  # does the firmware `bitgen flash` writes (with the protocol) fit as well?
            if not count_only:
                fw = firmware.build(model, part, Path(tmp) / "protocol", name=name, kernels=kernels,
                                    max_arena=max_arena, prove=0, **strips).report  # only measured, never flashed
                protocol = {"fits": True, "flash_bytes": fw["flash_bytes"], "sram_bytes": fw["sram_bytes"]}
        except firmware.BudgetError as e:
            protocol = {"fits": False, "flash_bytes": e.report["flash_bytes"], "sram_bytes": e.report["sram_bytes"]}
    return [r.cycles for r in runs], mismatches, plain.report, emitted, per_layer, protocol


def _by_kernel(emitted: dict[str, Any] | None, per_layer: dict[int, float]) -> list[float | None]:
    """Instructions per layer, each kernel's counted at the layer it computes first: the
    firmware marks a fused kernel's work after its last fused layer (whose output it writes),
    and the layers it fuses ("fused" kernels) get 0."""
    out: list[float | None] = []
    owner = None
    for k, lay in enumerate((emitted or {}).get("layers", [])):
        n = per_layer.get(lay["index"])
        if not per_layer:
            out.append(None)
            continue
        if lay["kernel"].split("/")[0] == "fused" and owner is not None:
            out[owner] = (out[owner] or 0.0) + (n or 0.0)
            out.append(0.0)
            continue
        owner = k
        out.append(n or 0.0)
    return out


def run(args: argparse.Namespace) -> int:
    args.kernels = resolve_kernels(args)
    board = boards.get(args.board)
    json_to = output_file(args.json, "--json", stdout=True)
    md_to = output_file(args.md, "--md", stdout=True)
    loaded = load_model(args)
    model = loaded.ir
    if args.stream is not None:  # frames of one sequence, change-based against dense
        if args.dataset or args.random:
            raise UsageError("--stream is the input: give it without --dataset or --random")
        if args.over_budget or args.count_only:
            raise UsageError("--over-budget and --count-only measure single inputs, not --stream")
        return bench_stream.run(args, board, model, default_name(model.name))
    if args.change_threshold is not None:
        model = bench_stream.with_threshold(model, args.change_threshold)
    check_memory(args.random * model.input.size, f"{args.random} random inputs of {model.input.size} values",
                 "--random")
    data = load_dataset(args, model)
    if data is not None:
        x = data[0].reshape((-1,) + model.input.shape)  # clips: each frame measured from reset
    elif args.random > 0:
        x = np.random.default_rng(0).integers(-128, 128, (args.random,) + model.input.shape).astype(np.int8)
    else:
        raise UsageError("nothing to run: give --dataset/--data, or --random N")
    expect = golden.run(model, x)
    name = default_name(model.name)

    emulated = not args.port and (board.emulator or {}).get("kind") == "unicorn"
    if args.count_only and not emulated:
        raise UsageError(f"--count-only: only on a Unicorn-emulated board, not {board.name}"
                         f"{' with --port' if args.port else ''}")
    if args.over_budget and not emulated:
        raise UsageError(f"--over-budget: only on a Unicorn-emulated board (ch32v003-sim, max78000-sim, ...), "
                         f"not {board.name}{' with --port' if args.port else ''}")
    per_layer: dict[int, float] = {}
    protocol = None
    marked = emulated and _marker(board) is not None and not args.count_only
    with console.progress(total=len(x) * (2 if marked else 1), desc=f"{board.name} bench", unit="run") as bar:
        if emulated:
            cycles, mismatches, fw, emitted, per_layer, protocol = _bench_emulated(
                board, model, name, x, expect, args.kernels, args.max_arena, bar, args.over_budget,
                args.count_only, args.tiling, args.strip_rows)
            image = "bench"
        else:  # a real board or QEMU: the protocol firmware through the serial port
            with Session(board, model, port=args.port, name=name, kernels=args.kernels,
                         max_arena=args.max_arena, tiles=args.tiling, strip_rows=args.strip_rows) as s:
                cycles, mismatches = _run_inputs(s, x, expect, bar)
                fw = s.firmware.report if s.firmware else {}
                emitted = json.loads((s.firmware.outdir / "src" / f"{name}.json").read_text()) if s.firmware else None
            image = "protocol"
    kernels = fw.get("kernels", args.kernels)

    layers = []
    for lay, n in zip((emitted or {}).get("layers", []), _by_kernel(emitted, per_layer)):
        layers.append({k: lay[k] for k in ("index", "op", "name", "kernel", "out_shape", "weight_bytes", "macs")}
                      | {"instructions": None if n is None else round(n)}
                      | ({"refused": lay["refused"]} if lay.get("refused") else {}))
    rep = reports.header("bench") | {
        "model_hash": model.digest(),
        "board": board.name,
        "model": {"name": name, "path": str(Path(args.model).resolve())},
        "compared": len(x),
        "mismatches": mismatches,
        "instructions": reports.count_stats(cycles),
        "instruction_source": board.cycle_source,
        "kernels": kernels,
        "kernels_tried": fw.get("kernels_tried", []),  # the board's faster sets whose image did not fit
        "image": image,
        # False only with --over-budget: measured on the emulator with memory_scale times the part's memory
        "image_fits": fw.get("fits", True) if image == "bench" else True,
        "memory_scale": fw.get("memory_scale", 1),
        "protocol_firmware": protocol,
        "flash_bytes": fw.get("flash_bytes"),
        "sram_bytes": fw.get("sram_bytes"),
        "flash_budget": fw.get("flash_budget"),
        "sram_budget": fw.get("sram_budget"),
        "components": fw.get("components"),
        "sections": fw.get("sections"),
        "arena_bytes": (emitted or {}).get("arena_bytes"),
        "tiling": (emitted or {}).get("tiling"),  # row strips: arena layer by layer and tiled, strip height
        "macs": (emitted or {}).get("macs"),
        "layers": layers,
        "layer_split": ("emulator marks after each layer (2-3 instructions each, counted in the layer)"
                        if per_layer else None),
    }
    table = markdown(rep)
    if STDOUT not in (json_to, md_to):
        print(table, end="")
    write_json(json_to, rep)
    write_text(md_to, table, "--md")
    if mismatches and json_to != STDOUT:
        print(f"MISMATCH: {mismatches} outputs differ from the golden model")
        return 1
    return 0
