"""bitgen flash: write a built firmware to a board through its flasher (WCH-LinkE, CMSIS-DAP)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..harness import boards, flash
from .build_cmd import default_dir


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--board", required=True, help=f"board (available: {', '.join(boards.available())})")
    p.add_argument("firmware", nargs="?", metavar="DIR",
                   help="folder written by bitgen build (default: build/BOARD)")
    p.add_argument("--dry-run", action="store_true", help="show the flashers and commands, touch nothing")


def run(args: argparse.Namespace) -> int:
    board = boards.get(args.board)
    fw_dir = Path(args.firmware) if args.firmware else default_dir(board)
    used = flash.flash(board, fw_dir, dry_run=args.dry_run)
    if used is not None:
        print(f"flashed {board.name} with {used.name}")
    return 0
