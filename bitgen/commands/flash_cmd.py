"""bitgen flash: write a built firmware to a board through its flasher (WCH-LinkE, CMSIS-DAP)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..harness import boards, flash
from .build_cmd import default_dir
from .common import CNN_TARGET, UsageError


def _check_target(board: boards.Board, fw_dir: Path, target: str) -> None:
    """--target names the back end of the image in the build folder: refuse another one."""
    if target not in ("c", CNN_TARGET):
        raise UsageError(f"unknown --target '{target}' (c, {CNN_TARGET})")
    built = flash.read_build(fw_dir, board).get("kernels")
    held = CNN_TARGET if built == CNN_TARGET else "c"
    if held != target:
        raise UsageError(f"{fw_dir} holds a --target {held} image, not {target}: build it with bitgen build "
                         f"--board {board.image_board.name} --target {target} MODEL -o {fw_dir}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--board", required=True, help=f"board (available: {', '.join(boards.available())})")
    p.add_argument("firmware", nargs="?", metavar="DIR",
                   help="folder written by bitgen build (default: build/BOARD)")
    p.add_argument("--dry-run", action="store_true", help="show the flashers and commands, touch nothing")
    p.add_argument("--target", metavar="BACKEND",
                   help=f"the back end the build must hold (c, or {CNN_TARGET}: the model on the MAX78000's CNN "
                        f"accelerator, from bitgen build --target {CNN_TARGET})")


def run(args: argparse.Namespace) -> int:
    board = boards.get(args.board)
    fw_dir = Path(args.firmware) if args.firmware else default_dir(board)
    if args.target is not None:
        _check_target(board, fw_dir, args.target)
    used = flash.flash(board, fw_dir, dry_run=args.dry_run)
    if used is not None:
        print(f"flashed {board.name} with {used.name}")
    return 0
