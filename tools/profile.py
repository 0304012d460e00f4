#!/usr/bin/env python3
"""Instructions per function of one inference on a Unicorn-emulated board.

Builds the bench image of a model (as `bitgen bench` does), runs it on one input with a hook
on every instruction, and prints the functions by the instructions they retired, most first.
`bitgen bench` splits the count per layer; this splits it per function (a fused kernel, a
table builder, start-up), which is what to look at before changing a kernel.

    .venv/bin/python tools/profile.py out/bench/cnn.pt --board rv32emc-sim --data ../shared/datasets/usps
    .venv/bin/python tools/profile.py MODEL --board max78000-sim --random   # a random int8 input
    .venv/bin/python tools/profile.py MODEL --stream out/video.npz --frames 20  # frames 1..19 of a stream

The counts are exact (the emulator counts instructions) and include the start-up code run
before `main`; the Python hook makes the run slow (seconds per million instructions).
"""
from __future__ import annotations

import argparse
import bisect
import collections
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import bitgen
from bitgen.harness import boards, firmware
from bitgen import check, datasets
from bitgen.errors import BitgenError
from bitgen.sim import bench as sim_bench


def functions(elf: Path, prefix: str) -> tuple[list[int], list[str]]:
    """Start addresses (sorted) and names of the image's code symbols."""
    out = subprocess.run([f"{prefix}nm", "-n", str(elf)], capture_output=True, text=True, check=True).stdout
    starts, names = [], []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tTW":
            starts.append(int(parts[0], 16) & ~1)  # Thumb addresses carry bit 0
            names.append(parts[2])
    return starts, names


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--board", default="rv32emc-sim")
    ap.add_argument("--dataset", default="usps")
    ap.add_argument("--data", help="dataset folder (the test split's first image is run)")
    ap.add_argument("--index", type=int, default=0, help="which test image")
    ap.add_argument("--random", action="store_true", help="a random int8 input instead of a dataset")
    ap.add_argument("--stream", help="a stream (.npz with frames x): its first --frames run as one sequence, "
                    "and the frames after the first are profiled")
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    board = boards.get(args.board)
    if not board.emulator or board.emulator.get("kind") != "unicorn":
        print(f"profile: board {board.name} is not emulated with Unicorn", file=sys.stderr)
        return 1
    try:
        model = bitgen.load(args.model).ir
        if args.stream:
            x = np.load(args.stream)["x"][: args.frames]
        elif args.random:
            x = check.random_inputs(model.input.shape, 1)[0]
        else:
            x = datasets.load(args.dataset, args.data, split="test").quantized(model.input)[args.index]
    except BitgenError as e:
        print(f"profile: {e}", file=sys.stderr)
        return 1
    t_out = model.validate()[-1]
    per_pc: collections.Counter[int] = collections.Counter()
    with tempfile.TemporaryDirectory(prefix="bitgen-profile-") as tmp:
        fw = firmware.build(model, board, Path(tmp), name="model", harness="bench")
        starts, names = functions(fw.elf, board.image_board.toolchain["prefix"])
        if args.stream:  # the first frame (from reset) is not counted
            counting = [False]
            gates = json.loads((fw.outdir / "src" / "model.json").read_text()).get("change_gates", [])
            sim_bench.run_stream(board, fw, x, t_out.dtype, t_out.size, len(gates),
                                 on_input=lambda: counting.__setitem__(0, True),
                                 on_instruction=lambda address: counting[0] and per_pc.update((address,)))
        else:
            sim_bench.run(board, fw, np.asarray(x)[None], t_out.dtype, t_out.size,
                          on_instruction=lambda address: per_pc.update((address,)))
    # The image may run from an alias of its flash; symbols hold the link address.
    flash = next(r for r in board.emulator["memory"] if r.get("image"))
    linked = board.image_board.flash.origin
    per_fn: collections.Counter[str] = collections.Counter()
    for pc, n in per_pc.items():
        for base in (flash["base"], *flash.get("aliases", [])):
            if base <= pc < base + flash["size"]:
                pc = pc - base + linked
        k = bisect.bisect_right(starts, pc) - 1
        per_fn[names[k] if k >= 0 else f"0x{pc:08x}"] += n
    total = sum(per_fn.values())
    what = f"frames 1 to {len(x) - 1} of the stream" if args.stream else "from reset to the end of the inference"
    print(f"{total:,} instructions, {what} ({board.name}, {Path(args.model).name})")
    for name, n in per_fn.most_common(args.top):
        print(f"{n:>10,} {100 * n / total:5.1f} %  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
