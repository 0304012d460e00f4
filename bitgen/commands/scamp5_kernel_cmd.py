"""bitgen scamp5-kernel: compile integer convolution kernels into SCAMP-5d analog macros (the
AUKE / Cain problem), verified by the simulator.

KERNEL.json: ``{"kernel": [[...], ...], "registers": 6}`` or ``{"kernels": [[[...]], ...]}``
(several kernels compiled together, sharing what they can); weights are integers or fractions
``m / 2**d`` (given as numbers, e.g. 0.0625)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .. import reports
from .common import UsageError, count
from .outputs import output_file, write_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("kernel", metavar="KERNEL.json", help='{"kernel": [[...]], "registers": 6}')
    p.add_argument("--json", metavar="FILE", help="write the program and its counts here (k.json)")
    p.add_argument("--registers", type=count(2, 6), help="analog registers A..F to use (default: the file's, else 6)")


def _read(path: str) -> dict:
    try:
        d = json.loads(Path(path).read_text())
    except OSError as e:
        raise UsageError(f"{path}: cannot read ({e.strerror or e})") from None
    except ValueError as e:
        raise UsageError(f"{path}: not valid JSON ({str(e).splitlines()[0]})") from None
    if not isinstance(d, dict) or ("kernel" in d) == ("kernels" in d):
        raise UsageError(f'{path}: give "kernel": [[...]] (one kernel) or "kernels": [...] (several)')
    return d


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..backends.scamp5 import isa, kernels

    json_to = output_file(args.json, "--json")
    d = _read(args.kernel)
    ks = [d["kernel"]] if "kernel" in d else d["kernels"]
    try:
        arrays = [np.asarray(k, dtype=float) for k in ks]
    except (TypeError, ValueError):
        raise UsageError(f"{args.kernel}: kernels must be rectangular lists of numbers") from None
    if not ks or any(a.ndim != 2 or a.size == 0 or not np.all(np.isfinite(a)) for a in arrays):
        raise UsageError(f"{args.kernel}: kernels must be non-empty 2-D lists of numbers")
    registers = args.registers or int(d.get("registers", 6))
    try:
        c = kernels.compile_kernels([a.tolist() for a in arrays], registers=registers)
    except kernels.KernelError as e:
        raise UsageError(str(e)) from None
    bus = sum(isa.SPECS[i["op"]].bus for i in c.instructions)
    outs = [c.registers[o] for o in c.plan.outputs]
    rep = reports.header("scamp5-kernel") | {"instructions": len(c.instructions), "bus_ops": bus, "strategy": c.strategy, "registers": registers,
           "input": "A", "outputs": outs, "halvings": c.scale_bits,
           "verified": "exact simulator, random images", "program": c.instructions,
           "kernels": [a.tolist() for a in arrays]}
    for i in c.instructions:
        print(f"{i['op']}({', '.join(map(str, i['args']))});")
    print(f"{len(c.instructions)} instructions ({bus} bus operations), input A, output{'s' if len(outs) > 1 else ''} "
          f"{', '.join(outs)}; verified in the simulator")
    write_json(json_to, rep)
    return 0
