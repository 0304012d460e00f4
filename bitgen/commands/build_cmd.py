"""bitgen build: model.pt -> firmware for a board (ELF, BIN, HEX) and a size report."""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from ..harness import boards, firmware
from .common import (UsageError, add_kernels_argument, add_max_arena_argument, add_model_argument, load_model,
                     resolve_kernels)
from .emit_cmd import default_name


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--board", required=True, help=f"board (available: {', '.join(boards.available())})")
    add_model_argument(p)
    p.add_argument("-o", "--out", metavar="DIR", help="output folder (default: build/BOARD)")
    p.add_argument("--json", metavar="FILE", help="also write the build report (build.json) here")
    p.add_argument("--name", help="C name prefix (default: the model's name, else 'model')")
    add_kernels_argument(p, "kernel set (default: the board's, fastest that fits)")
    add_max_arena_argument(p)
    p.add_argument("--prove", type=int, default=firmware.DEFAULT_PROVE, metavar="N",
                   help="random int8 inputs on which the image's own sources, compiled for this machine, "
                        f"are compared with the golden model, besides the extreme ones (default "
                        f"{firmware.DEFAULT_PROVE}, at least 1: bitgen flash refuses an unproved image)")


def default_dir(board: boards.Board) -> Path:
    return Path("build") / board.image_board.name


def run(args: argparse.Namespace) -> int:
    if args.prove < 1:
        raise UsageError(f"--prove {args.prove}: at least 1 input (an unproved image is never flashed)")
    kernels = resolve_kernels(args)
    board = boards.get(args.board)
    loaded = load_model(args)
    out = Path(args.out) if args.out else default_dir(board)
    name = args.name or default_name(loaded.ir.name)
    try:
        fw = firmware.build(loaded.ir, board, out, name=name, model_path=str(Path(args.model).resolve()),
                         kernels=kernels, max_arena=args.max_arena, prove=args.prove)
        rep = fw.report
    except firmware.BudgetError as e:
        rep = e.report
        print(firmware.format_report(rep))
        _write_json(args.json, out / "build.json")
        raise
    img = board.image_board
    for t in rep["kernels_tried"]:
        print(f"note: with {t['kernels']} kernels the image needs {t['flash_bytes']} B flash and "
              f"{t['sram_bytes']} B SRAM: over budget, so {rep['kernels']} kernels were used")
    print(f"built {img.name} firmware ({rep['kernels']} kernels) for model {rep['model']['hash'][:16]} in {out}/")
    if rep["flash_bytes"] is not None:
        print(firmware.format_report(rep))
        h = rep["harness"]
        print(f"  harness (protocol + board support + glue): flash {h['flash']} B, SRAM {h['sram']} B")
    p = rep["proof"]
    print(f"proved on this machine: the {p['kernels']} sources in {out / 'src'} (sha256 {p['sha256'][:16]}) "
          f"equal the golden model on {p['compared']} inputs ({p['inputs']['random']} random, "
          f"{p['inputs']['extreme']} extreme) in {p['seconds']:.2f} s")
    for kind, path in rep["files"].items():
        if path:
            print(f"  {kind:<4} {path}  sha256 {rep['sha256'][kind][:16]}")
    _write_json(args.json, out / "build.json")
    return 0


def _write_json(dest: str | None, src: Path) -> None:
    if dest and src.is_file():
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        if Path(dest).resolve() != src.resolve():
            shutil.copyfile(src, dest)
    elif dest:
        Path(dest).write_text(json.dumps({"error": "no report"}) + "\n")
