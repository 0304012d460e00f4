"""bitgen build: model.pt -> firmware for a board (ELF, BIN, HEX) and a size report."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..harness import boards, firmware
from .common import (CNN_TARGET, UsageError, add_kernels_argument, add_max_arena_argument, add_model_argument,
                     add_tiling_arguments, cnn_target, count, load_model, resolve_kernels)
from .emit_cmd import check_name, default_name
from .outputs import STDOUT, output_dir, output_file, write_text


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--board", required=True, help=f"board (available: {', '.join(boards.available())})")
    add_model_argument(p)
    p.add_argument("-o", "--out", metavar="DIR", help="output folder (default: build/BOARD)")
    p.add_argument("--json", metavar="FILE", help="also write the build report (build.json) here ('-': to "
                                                  "standard output, instead of the text report)")
    p.add_argument("--name", help="C name prefix (default: the model's name, else 'model')")
    add_kernels_argument(p, "kernel set (default: the board's, fastest that fits)")
    add_max_arena_argument(p)
    add_tiling_arguments(p)
    p.add_argument("--prove", type=count(1, 10**6), metavar="N",
                   help="random int8 inputs on which the image's own sources, compiled for this machine, "
                        f"are compared with the golden model, besides the extreme ones (default "
                        f"{firmware.DEFAULT_PROVE}, at least 1: bitgen flash refuses an unproved image); "
                        f"--target {CNN_TARGET}: inputs on which the image itself runs on max78000-sim "
                        f"(default {firmware.CNN_DEFAULT_PROVE})")


def default_dir(board: boards.Board) -> Path:
    return Path("build") / board.image_board.name


def run(args: argparse.Namespace) -> int:
    target = CNN_TARGET if cnn_target(args) else "c"
    kernels = None if target == CNN_TARGET else resolve_kernels(args)
    board = boards.get(args.board)
    check_name(args.name)
    out = output_dir(args.out or default_dir(board), "-o")
    if out.is_dir() and any(out.iterdir()) and not (out / "build.json").is_file():
        raise UsageError(f"-o {out}: a folder that holds other files (no build.json): bitgen build replaces "
                         "its src/ and obj/; give a new or empty folder, or an earlier build's")
    json_to = output_file(args.json, "--json", stdout=True)
    say = (lambda *a: None) if json_to == STDOUT else print  # noqa: E731  (stdout holds the JSON)
    loaded = load_model(args)
    name = args.name or default_name(loaded.ir.name)
    try:
        fw = firmware.build(loaded.ir, board, out, name=name, model_path=str(Path(args.model).resolve()),
                         kernels=kernels, max_arena=args.max_arena, prove=args.prove, target=target,
                         tiles=args.tiling, strip_rows=args.strip_rows)
        rep = fw.report
    except firmware.BudgetError as e:
        say(firmware.format_report(e.report))
        _write_json(json_to, out / "build.json")
        raise
    img = board.image_board
    kept = firmware.describe_attempt(rep["kernels_tried"][-1])
    for t in rep["kernels_tried"]:
        if not t["fits"]:
            say(f"note: with {firmware.describe_attempt(t)} the image needs {t['flash_bytes']} B flash and "
                f"{t['sram_bytes']} B SRAM: over budget, so {kept} were used")
    how = kept if target != CNN_TARGET else "the layer program on the CNN accelerator"
    say(f"built {img.name} firmware ({how}) for model {rep['model_hash'][:16]} in {out}/")
    if rep["flash_bytes"] is not None:
        say(firmware.format_report(rep))
        h = rep["harness"]
        say(f"  harness (protocol + board support + glue): flash {h['flash']} B, SRAM {h['sram']} B")
    tiled = (rep.get("model") or {}).get("tiling")
    for run in (tiled or {}).get("runs", []):
        what = (f"{run['strips']} strips of {run['strip_rows']} rows" if not run["columns_tiled"] else
                f"{run['strips']} tiles of {run['strip_rows']} rows x {run['tile_cols']} columns")
        say(f"{'tiles' if run['columns_tiled'] else 'row strips'}: layers {run['first_layer']}..{run['last_layer']} in {what}"
            f"{', the output streamed band by band' if run['stream'] else ''}: "
            f"arena {tiled['arena_layer_by_layer']} B layer by layer, "
            f"{tiled['arena_tiled']} B tiled; halos recompute {run['recompute_macs']} MACs "
            f"(+{run['recompute_percent']} %)")
    hand = (rep.get("model") or {}).get("handover")
    if hand and hand["cortex_m4_layers"]:
        say(f"hand-over: the accelerator runs the first {hand['accelerator_layers']} layers, the Cortex-M4 the last "
            f"{hand['cortex_m4_layers']} (from '{hand['tensor']}', {'x'.join(map(str, hand['shape']))} int8)"
            + (f"; accelerator layers moved there because {hand['moved']}" if hand["moved"] else ""))
    p = rep["proof"]
    what = (f"the {p['kernels']} sources in {out / 'src'}" if target != CNN_TARGET else
            f"the image on max78000-sim (the emulated CNN accelerator; sources in {out / 'src'})")
    say(f"proved on this machine: {what} (sha256 {p['sha256'][:16]}) "
          f"equal the golden model on {p['compared']} inputs ({p['inputs']['random']} random, "
          f"{p['inputs']['extreme']} extreme) in {p['seconds']:.2f} s")
    for kind, file in rep["files"].items():
        if file:
            say(f"  {kind:<4} {out / file}  sha256 {rep['sha256'][kind][:16]}")
    _write_json(json_to, out / "build.json")
    return 0


def _write_json(dest: Path | str | None, src: Path) -> None:
    """A copy of the build folder's build.json (the report of the failed build, when it failed)."""
    if dest is None or (dest != STDOUT and Path(dest).resolve() == src.resolve()):
        return
    text = src.read_text() if src.is_file() else json.dumps({"error": "no report"}) + "\n"
    write_text(dest, text, "--json")
