"""The `bitgen` command. Each subcommand lives in its own module that provides
``add_arguments(parser)`` and ``run(args) -> int``; this file only wires them up and turns
:class:`~bitgen.errors.BitgenError`, and any error in the arguments themselves, into one line on
stderr and exit status 2. Notes (:mod:`bitgen.console`) follow a command that finished."""
from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__, console
from .errors import BitgenError

# subcommand -> (module, one-line help)
COMMANDS = {
    "train": ("bitgen.commands.train_cmd", "train a quantization-aware model and write model.pt"),
    "quantize": ("bitgen.commands.quantize_cmd", "post-training quantization of a float PyTorch model"),
    "import": ("bitgen.commands.import_cmd",
               "convert an ONNX model, a BitNetMCU header or an ai8x checkpoint (with --yaml) into model.pt"),
    "emit": ("bitgen.commands.emit_cmd", "turn model.pt into static C"),
    "check": ("bitgen.commands.check_cmd", "prove the emitted C bit-exact against the golden model"),
    "build": ("bitgen.commands.build_cmd", "cross-compile firmware for a board, with a size report"),
    "flash": ("bitgen.commands.flash_cmd", "write built firmware to a board"),
    "run": ("bitgen.commands.run_cmd", "run inputs on a board and compare with the golden model"),
    "generate": ("bitgen.commands.generate_cmd",
                 "draw images with a conditional decoder (the electronic die), with golden or on a board"),
    "bench": ("bitgen.commands.bench_cmd", "instructions per inference and per layer, sizes, kernels"),
    "datasets": ("bitgen.commands.datasets_cmd", "make a synthetic dataset file (a static-camera video stream)"),
    "monitor": ("bitgen.commands.monitor_cmd", "run a model on a board frame by frame, live in the browser"),
    "sweep": ("bitgen.commands.sweep_cmd",
              "train, check, build and bench a design space on Ray; the Pareto front (or --fuzz N random models)"),
    "tune-thresholds": ("bitgen.commands.tune_thresholds_cmd",
                        "choose change thresholds of a model's convolutions on a stream, within a tolerance"),
    "scamp5-kernel": ("bitgen.commands.scamp5_kernel_cmd", "compile convolution kernels to SCAMP-5 analog macros"),
}


class Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (``bitgen emit: error: ...``), like every other
    refusal, instead of the usage text and the error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser(chosen: str | None = None) -> argparse.ArgumentParser:
    """Only the chosen subcommand's module is imported (fast start; torch only when needed)."""
    parser = Parser(prog="bitgen", description="bitgen: tiny quantized networks to bit-exact integer C")
    parser.add_argument("--version", action="version", version=f"bitgen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            mod = importlib.import_module(module)
            mod.add_arguments(p)
            p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or notes")
            p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(chosen if chosen in COMMANDS else None)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a bad argument (one line already said why)
        return e.code if isinstance(e.code, int) else 2
    console.set_quiet(args.quiet)
    console.take_notes()  # none left from an earlier call in this process
    try:
        rc = int(args._run(args) or 0)
        for text in console.take_notes():
            print(f"bitgen {args.command}: note: {text}", file=sys.stderr)
        return rc
    except BitgenError as e:
        msg = " ".join(str(e).split())  # one line, whatever the message held
        print(f"bitgen {args.command}: error: {msg}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"bitgen {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
