"""`bitgen datasets make static-video`: write a synthetic stream file (bitgen/streams.py)."""
from __future__ import annotations

import argparse
import json

from .. import streams
from .common import SEED, count
from .outputs import output_file

KINDS = {"static-video": "a static camera, a textured background, objects crossing it one at a time"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["make"], help="make: generate a dataset file")
    p.add_argument("kind", choices=sorted(KINDS), help="; ".join(f"{k}: {v}" for k, v in KINDS.items()))
    p.add_argument("--frames", type=count(2, 100000), default=200, help="frames of the stream (default 200)")
    p.add_argument("--seed", type=SEED, default=0, help="the stream's seed (the file is the same for a seed)")
    p.add_argument("--size", type=count(16, streams.MAX_SIZE), default=streams.SIZE,
                   help=f"frame width and height in pixels (default {streams.SIZE}; larger: a wider view, "
                        "objects of the same size)")
    p.add_argument("-o", "--output", required=True, help="the .npz file to write")


def run(args: argparse.Namespace) -> int:
    summary = streams.make_static_video(output_file(args.output, "-o"), args.frames, args.seed,
                                           size=args.size)
    print(f"wrote {summary['path']}: {summary['frames']} frames {'x'.join(map(str, summary['shape']))} int8 "
          f"(scale 1/127), {summary['train_frames']} training frames; pixels changed per frame: "
          f"mean {100 * summary['changed_fraction']['mean']:.1f} %, max {100 * summary['changed_fraction']['max']:.1f} %")
    print(json.dumps({"frames_per_class": dict(zip(summary["classes"], summary["frames_per_class"]))}))
    return 0
