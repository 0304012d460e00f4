"""The SCAMP-5 parts of ``bitgen emit --target scamp5`` and ``bitgen run --board scamp5-sim``:
the in-pixel program, and the simulator with its exact and noisy modes."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from .. import reports
from .common import SEED, UsageError, count, load_dataset, load_model, number
from .outputs import output_file, write_json

SIGMA = number(0.0, 1e6)

BOARD = "scamp5-sim"


def add_emit_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("--target scamp5 (emit: the SCAMP-5 in-pixel program)")
    g.add_argument("--weights", choices=("in-pixel", "streamed"), default=None,
                   help="the CNN's kernels stored in the pixels (PixelRNN's way, default) or as pattern loads "
                        "in the instruction stream")
    g.add_argument("--iw", type=count(2, 1000), default=None, metavar="LEVELS",
                   help="analog levels per ±1 product in thresholded sums (even; default 10, as PixelRNN)")


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    add_emit_arguments(p)
    g = p.add_argument_group("--board scamp5-sim (noisy mode; the figures are assumptions, see "
                             "bitgen/backends/scamp5/simulator.py)")
    g.add_argument("--noise", type=SIGMA, metavar="SIGMA",
                   help="noisy mode: N(0, SIGMA) ±1 products before each threshold on a sum of products "
                        "(PixelRNN's 0.6), with the analog noise below")
    g.add_argument("--noise-output", type=SIGMA, default=1.0, metavar="SIGMA",
                   help="noise on each readout value, in ±1 products (default 1)")
    g.add_argument("--op-noise", type=SIGMA, default=0.005, metavar="FRACTION",
                   help="per bus operation, of the operands' magnitude (default 0.005, Cain's emulator)")
    g.add_argument("--fixed-pattern", type=SIGMA, default=0.1, metavar="LEVELS",
                   help="fixed offset per PE and register per bus operation, standard deviation (default 0.1)")
    g.add_argument("--saturation", type=SIGMA, metavar="LEVELS", help="soft saturation of analog values")
    g.add_argument("--noise-seed", type=SEED, default=0, help="seed of the simulated noise (default 0)")


def _options(args: argparse.Namespace):
    from ..backends.scamp5 import Scamp5Options

    return Scamp5Options(weights=args.weights or "in-pixel", iw=10 if args.iw is None else args.iw)


def emit(args: argparse.Namespace, name: str) -> int:
    from ..backends.base import Options
    from ..backends.scamp5 import Scamp5Backend

    loaded = load_model(args)
    art = Scamp5Backend(_options(args)).emit(loaded.ir, args.out, Options(name=name))
    r = art.report
    print(f"wrote {len(art.files)} files to {art.outdir}/ (program.cpp, program.json, {name}.json"
          f"{', decoder.pt' if r['decoder'] else ''}; weights {r['weights']}, IW {r['iw']})")
    print(f"  {r['instructions_per_frame']['instructions']} instructions per frame "
          f"({r['instructions_per_frame'].get('bus_ops', 0)} analog bus operations) on a "
          f"{r['array'][0]}x{r['array'][1]} array; per layer:")
    for layer, c in r["per_layer"].items():
        print(f"    {layer:32s} {c['instructions']:6d}")
    d = r["data"]
    print(f"  leaves the sensor: {d['readout_bytes_per_sequence']} B per {d['frames']} frames "
          f"({d['reduction_vs_frames']:.0f}x less than the frames, {d['reduction_vs_sensor']:.0f}x less than "
          "the full-resolution sensor)")
    return 0


def run_sim(args: argparse.Namespace) -> int:
    from ..backends.scamp5 import execute
    from ..backends.scamp5.lower import lower as lower_program
    from ..backends.scamp5.simulator import NoiseModel, SimulationError

    if args.model is None:
        raise UsageError("give the model file")
    json_to = output_file(args.json, "--json")
    loaded = load_model(args)
    model = loaded.ir
    data = load_dataset(args, model)
    if data is None:
        raise UsageError("give --dataset (and --data): the simulator runs a dataset's clips")
    x, y = data
    if x.ndim == len(model.input.shape) + 1:  # single images: clips of one frame
        x = x[:, None]
    program, a = lower_program(model, _options(args))
    noise = None
    if args.noise is not None:
        noise = NoiseModel(threshold=args.noise, output=args.noise_output, op_rel=args.op_noise,
                           fixed_pattern=args.fixed_pattern, saturation=args.saturation, seed=args.noise_seed)
    t0 = time.monotonic()
    try:
        res = execute.simulate(program, a, x, noise=noise)
    except SimulationError as e:
        raise UsageError(f"the simulator stopped: {e}") from None
    cmp = execute.compare(model, a, x, res)
    golden_cls = cmp.pop("golden_classes")
    counts = program.counts("frame")
    rep = reports.header("run") | {
        "board": BOARD, "mode": "noisy" if noise else "ideal",
        "model": {"name": model.name, "hash": model.digest(), "path": str(Path(args.model).resolve())},
        "dataset": {"name": args.dataset, "path": args.data, "limit": args.limit},
        "weights": program.meta["weights"], "iw": program.meta["iw"],
        "frames": int(x.shape[1]),
        "compared": cmp["compared"],
        "accuracy": None if y is None else float(np.mean(res.classes == y)),
        "golden_accuracy": None if y is None else float(np.mean(golden_cls == y)),
        "instructions_per_frame": sum(c["instructions"] for c in counts.values()),
        "per_layer": {k: v["instructions"] for k, v in counts.items()},
        "elapsed_s": round(time.monotonic() - t0, 3),
    }
    if noise is None:
        rep.update({"mismatches": cmp["mismatches"], "mismatch_indices": cmp["mismatch_indices"],
                    "tensors": cmp["tensors"]})
    else:
        dec = execute.decisions(model, a, x, res)
        rep.update({"noise": noise.to_dict(), "flip_rate": dec["flip_rate"], "flips": dec["flips"],
                    "decisions": dec["decisions"], "layers": dec["layers"], "margins": dec["margins_products"],
                    "clips_differing": cmp["mismatches"],
                    "class_agreement": float(np.mean(res.classes == golden_cls))})
    acc = "" if rep["accuracy"] is None else \
        f"  accuracy {100 * rep['accuracy']:.2f} % (golden {100 * rep['golden_accuracy']:.2f} %)"
    print(f"{BOARD} ({rep['mode']}): {rep['compared']} clips of {rep['frames']} frames, "
          f"{rep['instructions_per_frame']} instructions per frame{acc}", file=sys.stderr if args.json else sys.stdout)
    write_json(json_to, rep)
    if noise is None:
        print(f"compared {rep['compared']} clips: {rep['mismatches']} mismatches{acc}")
        if rep["mismatches"]:
            bad = {k: v for k, v in rep["tensors"].items() if v["mismatches"]}
            print(f"MISMATCH in clips {rep['mismatch_indices'][:10]}: {bad}")
            return 1
        print(f"bit-exact: every decision of every frame and the readout of {rep['compared']} clips equal golden")
        return 0
    print(f"noisy: flip rate {100 * rep['flip_rate']:.3f} % of {rep['decisions']} decisions{acc}")
    return 0
