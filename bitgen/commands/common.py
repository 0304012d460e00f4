"""Arguments and loading steps shared by the subcommands (model file, dataset, numbers)."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from .. import console, ir, modelfile
from ..datasets import NAMES as DATASETS
from ..errors import BitgenError

# Bytes of inputs and outputs a command may hold at once (random inputs, a dataset's samples,
# their golden outputs): a request beyond it is refused up front, not met with a MemoryError.
MEMORY_BUDGET = 1 << 30


class UsageError(BitgenError):
    pass


# ------------------------------------------------------------- numbers on the command line
def count(lo: int = 0, hi: int = 10**7):
    """An argparse type: a whole number in lo..hi."""
    def parse(text: str) -> int:
        try:
            v = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{v} is outside {lo}..{hi}")
        return v
    parse.__name__ = "count"
    return parse


def seconds(hi: float = 86400.0):
    """An argparse type: a number of seconds, more than 0 and at most hi."""
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds") from None
        if not (math.isfinite(v) and 0 < v <= hi):
            raise argparse.ArgumentTypeError(f"{text} is not a number of seconds in (0, {hi:g}]")
        return v
    parse.__name__ = "seconds"
    return parse


def number(lo: float, hi: float):
    """An argparse type: a finite number in lo..hi."""
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
        if not (math.isfinite(v) and lo <= v <= hi):
            raise argparse.ArgumentTypeError(f"{text} is outside {lo:g}..{hi:g}")
        return v
    parse.__name__ = "number"
    return parse


SEED = count(0, 2**32 - 1)
BYTES = count(0, 2**32 - 1)


def check_memory(values: int, what: str, option: str) -> None:
    """Refuse to hold ``values`` bytes of inputs or outputs beyond MEMORY_BUDGET."""
    if values > MEMORY_BUDGET:
        raise UsageError(f"{what} would take {values / 2**30:.1f} GiB, over the {MEMORY_BUDGET >> 30} GiB "
                         f"bitgen allows itself: use fewer ({option})")


def add_model_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model file written by bitgen train / bitgen.save()")
    p.add_argument("--trust-pickle", action="store_true",
                   help="also open a plain pickled nn.Module (this runs code from the file)")
    p.add_argument("--input-shape", metavar="C,H,W",
                   help="input shape of a pickled module (bitgen model files carry it)")


def add_max_arena_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-arena", type=BYTES, metavar="BYTES",
                   help="largest arena (activations and kernel scratch) to plan for; kernels trade "
                        "speed for SRAM to fit it (default: the fastest kernels)")


def add_tiling_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tiling", choices=("auto", "rows", "off"), default="auto",
                   help="run stacks of convolutions, transposed convolutions, upsamplings and poolings in "
                        "strips of output rows or 2-D tiles (depth-first, halos recomputed; the narrower "
                        "tiles where the strips do not fit): rows always, auto (default) "
                        "only where the layers do not fit the arena limit (--max-arena, the board's SRAM) "
                        "one after the other, off never")
    p.add_argument("--strip-rows", type=count(1, 255), metavar="N",
                   help="output rows per strip (default: the height that fits with the fewest instructions)")


BACKENDS = ("c",)  # what --target names for every command; emit also takes scamp5 (commands/scamp5_cmd.py)
# and max78000-cnn (commands/emit_cmd.py: the MAX78000 CNN accelerator's layer program), which
# build and run also take (cnn_target: the layer program behind the protocol firmware)


def add_kernels_argument(p: argparse.ArgumentParser, help: str) -> None:
    """--kernels (the kernel set) and --target (the back end; a kernel set there still works)."""
    from ..backends.c import kernels

    p.add_argument("--kernels", metavar="SET", help=f"{help} ({', '.join(kernels.TARGETS)})")
    p.add_argument("--target", metavar="BACKEND",
                   help=f"back end ({', '.join(BACKENDS)}; bitgen build and run also take max78000-cnn: the "
                        "MAX78000's CNN accelerator); a kernel set given here is taken as --kernels")


CNN_TARGET = "max78000-cnn"  # the MAX78000's CNN accelerator (backends/max78000)


def cnn_target(args: argparse.Namespace) -> bool:
    """--target max78000-cnn, for the commands that build firmware (build, run): the layer
    program on the accelerator behind the protocol firmware. Refused with --kernels (C kernels)."""
    if getattr(args, "target", None) != CNN_TARGET:
        return False
    if getattr(args, "kernels", None) is not None:
        raise UsageError(f"--kernels chooses C kernels; --target {CNN_TARGET} runs the model on the CNN accelerator")
    return True


def resolve_kernels(args: argparse.Namespace) -> str | None:
    """The kernel set of --kernels, or of an old-style --target KERNELS (with a note); None when
    neither names one."""
    from ..backends.c import kernels

    chosen = args.kernels
    target = getattr(args, "target", None)
    if target == CNN_TARGET:
        raise UsageError(f"--target {CNN_TARGET}: layer programs for the MAX78000's CNN accelerator are written by "
                         f"`bitgen emit --target {CNN_TARGET}` and run by `bitgen run` / `bitgen build`; this "
                         "command does not take them")
    if target is not None and target not in BACKENDS:
        if target not in kernels.TARGETS:
            raise UsageError(f"unknown --target '{target}' (back ends: {', '.join(BACKENDS)}; kernel sets "
                             f"go in --kernels: {', '.join(kernels.TARGETS)})")
        if chosen is not None and chosen != target:
            raise UsageError(f"--target {target} and --kernels {chosen} disagree: give --kernels only")
        console.note(f"the kernel set is now --kernels {target} (--target names the back end: {', '.join(BACKENDS)})")
        chosen = target
    if chosen is not None and chosen not in kernels.TARGETS:
        raise UsageError(f"unknown kernel set '{chosen}' for --kernels (available: {', '.join(kernels.TARGETS)})")
    return chosen


def load_model(args: argparse.Namespace) -> modelfile.LoadedModel:
    spec = None
    if getattr(args, "input_shape", None):
        try:
            shape = tuple(int(v, 10) for v in args.input_shape.split(","))
            ir.limits.check_shape(shape, "--input-shape")
        except ValueError:
            raise UsageError(f"--input-shape '{args.input_shape}' is not a comma-separated list of integers") from None
        except ir.IRError as e:
            raise UsageError(str(e)) from None
        spec = ir.InputSpec(shape)
    return modelfile.load(args.model, trust_pickle=args.trust_pickle, input=spec)


def add_dataset_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", choices=DATASETS, help="dataset format (guessed from --data when omitted)")
    p.add_argument("--data", metavar="PATH", help="dataset folder or file")
    p.add_argument("--limit", type=count(1), metavar="N", help="use only the first N samples")


def guess_dataset(data: str) -> str:
    path = Path(data)
    if path.suffix == ".npz":
        return "npz"
    if path.is_dir() and any(path.glob("zip.t*")):
        return "usps"
    if path.is_dir() and any(path.glob("*idx*")):
        return "mnist"
    raise UsageError(f"cannot tell the format of '{data}'; pass --dataset {{{','.join(DATASETS)}}}")


def load_dataset(args: argparse.Namespace, model: ir.Model, split: str = "test"):
    """-> (int8 inputs quantized with the model's input spec, labels) or None without --dataset/--data.
    A clip dataset gives clips (N, T, *input shape), one label each (see :func:`is_clips`)."""
    name = args.dataset or (guess_dataset(args.data) if args.data else None)
    if name is None:
        return None
    from .. import datasets

    ds = datasets.load(name, args.data, split=split)
    x, y = ds.x, np.asarray(ds.y)
    if args.limit is not None:
        x, y = x[: args.limit], y[: args.limit]
    frames = ds.frames
    if frames:  # every frame is quantized like an image
        x = x.reshape((-1,) + x.shape[2:])
    try:
        xq = x if x.dtype == np.int8 and x[0].size == model.input.size else model.input.quantize(x)
        xq = np.asarray(xq).reshape((-1,) + model.input.shape)
    except ir.IRError as e:
        raise UsageError(f"dataset '{name}' does not fit the model: {e}") from None
    outputs = model.validate()[-1].size
    if y.size and int(y.max()) >= outputs:
        raise UsageError(f"dataset '{name}' does not fit the model: its labels go up to {int(y.max())}, the model "
                         f"has {outputs} outputs (classes 0..{outputs - 1})")
    if frames:
        if not model.states:
            raise UsageError(f"dataset '{name}' holds clips of {frames} frames; this model has no state "
                             "(train one with a recurrent cell or a graph with states)")
        xq = xq.reshape((-1, frames) + model.input.shape)
    return xq, y


def is_clips(x: np.ndarray, model: ir.Model) -> bool:
    """Whether inputs from :func:`load_dataset` are clips (N, T, *input shape)."""
    return x.ndim == len(model.input.shape) + 2
