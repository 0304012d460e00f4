"""Instruction counts of bitgen's SCAMP-5 kernel compiler against AUKE's and Cain's published
or measured counts (../shared/reference/scamp5.md §3.3), each program verified by the simulator.

    .venv/bin/python tools/scamp5_kernels.py [--random 100] [--model out/p.pt] [--json out/kernels.json]

--model adds the binary 5x5 kernels of a trained PixelRNN-shaped model (its CNN and cell)."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bitgen.backends.scamp5 import kernels  # noqa: E402

SOBEL = [[1, 0, -1], [2, 0, -2], [1, 0, -1]]
CASES = [  # name, kernels, AUKE (6 registers, measured), Cain (JSS examples)
    ("Sobel", [SOBEL], 7, 4),
    ("Laplacian", [[[0, 1, 0], [1, -4, 1], [0, 1, 0]]], 10, None),
    ("box 3x3", [[[1] * 3] * 3], 8, None),
    ("Gauss 3x3 (integer)", [[[1, 2, 1], [2, 4, 2], [1, 2, 1]]], 8, None),
    ("Gauss 3x3 / 16", [(np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16).tolist()], 12, 12),
    ("box 5x5", [[[1] * 5] * 5], 15, None),
    ("Sobel pair (jointly)", [SOBEL, np.array(SOBEL).T.tolist()], None, 9),
]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--random", type=int, default=100, help="random binary 5x5 kernels (seed 0)")
    ap.add_argument("--model", help="a model file whose binary 5x5 kernels to compile too")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    rows = []
    for name, ks, auke, cain in CASES:
        t = time.perf_counter()
        c = kernels.compile_kernels(ks)
        rows.append({"kernel": name, "bitgen": len(c.instructions), "strategy": c.strategy, "auke": auke,
                     "cain": cain, "seconds": round(time.perf_counter() - t, 1)})
        print(f"{name:24s} bitgen {len(c.instructions):3d} ({c.strategy})  AUKE {auke}  Cain {cain}", flush=True)
    rng = np.random.default_rng(0)
    counts = [len(kernels.compile_kernels([rng.choice([-1, 1], (5, 5)).tolist()]).instructions)
              for _ in range(args.random)]
    rows.append({"kernel": f"{args.random} random binary 5x5 (seed 0)", "bitgen_mean": float(np.mean(counts)),
                 "bitgen_min": int(min(counts)), "bitgen_max": int(max(counts)), "auke_pixelrnn_mean": 40.8})
    print(f"{args.random} random binary 5x5: mean {np.mean(counts):.2f} (min {min(counts)}, max {max(counts)}); "
          "AUKE on PixelRNN's 16 CNN kernels: 33-51, mean 40.8")
    if args.model:
        from bitgen import modelfile

        m = modelfile.load(args.model).ir
        ks = [w for layer in m.layers if layer.kind == "conv2d" and layer.weight.shape[2:] == (5, 5)
              for w in np.asarray(layer.weight).reshape(-1, 5, 5)]
        mc = [len(kernels.compile_kernels([k.tolist()]).instructions) for k in ks]
        rows.append({"kernel": f"{len(ks)} binary 5x5 kernels of {args.model}", "bitgen_mean": float(np.mean(mc)),
                     "bitgen_min": int(min(mc)), "bitgen_max": int(max(mc))})
        print(f"the model's {len(ks)} binary 5x5 kernels: mean {np.mean(mc):.2f} (min {min(mc)}, max {max(mc)})")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
