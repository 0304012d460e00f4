#!/usr/bin/env python3
"""Instructions per multiply-accumulate of single convolution layers, every board, generic
kernels against each board's own.

Each layer shape of issue 11's table becomes a model of one convolution (random int8 weights,
a random bias), a per-channel requantization to int8 and a ReLU, built with the IR and saved
with bitgen.save. `bitgen bench --random N` then measures it on each emulated board with the
generic kernel set and with the board's fastest set (retired instructions per inference,
median over N random inputs, every output bit-exact against the golden model), and the table
gives instructions per MAC (the whole inference: the layer, the copy of the output and the
argmax) and the kernel the layer got.

    .venv/bin/python tools/conv_bench.py --out out/conv_bench                  # every shape, every board
    .venv/bin/python tools/conv_bench.py --out out/conv_bench --update-readme  # also rewrite README.md's tables
    .venv/bin/python tools/conv_bench.py --out out/conv_bench --shape s1_16 --board max78000-sim

The RV32 boards are virtual parts with room for these layers (boards/rv32emc-sim,
boards/rv32ec-sim); ch32v003-sim's 2 KB of SRAM holds none of them.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bitgen  # noqa: E402
from bitgen import ir  # noqa: E402

BITGEN = [sys.executable, "-m", "bitgen.cli"]

# key, title, (in channels, height, width), out channels, kernel, stride, padding, depthwise
# (or "transposed": a ConvTranspose2d, output padding stride - 1), CMSIS-NN's instructions per
# MAC on the emulated MAX78000 (issue 11, measured there)
SHAPES = [
    ("s1_8", "3×3 p1 s1, 16×16, 8→16", (8, 16, 16), 16, 3, 1, 1, False, 2.94),
    ("s1_16", "3×3 p1 s1, 16×16, 16→32", (16, 16, 16), 32, 3, 1, 1, False, 2.17),
    ("s1_32", "3×3 p1 s1, 32×32, 32→32", (32, 32, 32), 32, 3, 1, 1, False, 1.94),
    ("s2_16", "3×3 p1 s2, 32×32, 16→32", (16, 32, 32), 32, 3, 2, 1, False, 2.17),
    ("pw_32", "1×1, 16×16, 32→64", (32, 16, 16), 64, 1, 1, 0, False, 2.78),
    ("dw_32", "depthwise 3×3 p1, 32×32, 32 ch", (32, 32, 32), 32, 3, 1, 1, True, 8.58),
    ("dw_32_p0", "depthwise 3×3 p0, 32×32, 32 ch", (32, 32, 32), 32, 3, 1, 0, True, None),
    # the die decoder's transposed convolutions (issue 13): its last one, and one of twice the channels
    ("t2_8", "transposed 3×3 p1 s2, 16×16→32×32, 8→8", (8, 16, 16), 8, 3, 2, 1, "transposed", None),
    ("t2_16", "transposed 3×3 p1 s2, 8×8→16×16, 16→16", (16, 8, 8), 16, 3, 2, 1, "transposed", None),
]
# board, its fast kernel set, the column title
BOARDS = [("max78000-sim", "cortex-m4", "Cortex-M4"), ("rv32emc-sim", "rv32emc", "RV32EMC"),
          ("rv32ec-sim", "rv32ec", "RV32EC")]


def layer_model(shape: tuple[int, int, int], co: int, k: int, stride: int, pad: int, depthwise: bool | str,
                seed: int = 0) -> ir.Model:
    """One convolution with random int8 weights and bias, a per-channel requantization that
    scales each channel's sums (for uniform int8 inputs) to a spread of about 40, and a ReLU."""
    rng = np.random.default_rng(seed)
    c = shape[0]
    if depthwise == "transposed":  # (sums of fewer terms: the same requantization is ample)
        w = rng.integers(-128, 128, (co, c, k, k))
        conv = ir.ConvTranspose2d(weight=w.transpose(1, 0, 2, 3), encoding="8bit", bias=rng.integers(-2000, 2000, co),
                                  stride=stride, padding=pad, output_padding=stride - 1)
    else:
        groups = c if depthwise else 1
        w = rng.integers(-128, 128, (co, c // groups, k, k))
        conv = ir.Conv2d(weight=w, encoding="8bit", bias=rng.integers(-2000, 2000, co), stride=stride,
                         padding=pad, groups=groups)
    spread = np.sqrt((w.reshape(co, -1).astype(float) ** 2).sum(axis=1)) * 74  # std of a uniform int8 is 74
    shift = 20
    mult = np.maximum(1, np.round(40 / spread * 2**shift)).astype(np.int64)
    return ir.Model(ir.InputSpec(shape), [conv, ir.Requant(multiplier=mult, shift=np.full(co, shift)), ir.ReLU()])


def bench(model: Path, board: str, kernels: str, inputs: int, out: Path) -> dict:
    cmd = [*BITGEN, "bench", "--board", board, str(model), "--random", str(inputs), "--kernels", kernels,
           "--json", str(out)]
    print("+", " ".join(cmd), flush=True)
    r = subprocess.run(cmd, cwd=ROOT, text=True, capture_output=True)
    if r.returncode != 0:
        err = (r.stderr.strip().splitlines() or r.stdout.strip().splitlines() or [f"exit {r.returncode}"])[-1]
        print(f"  {board} {kernels}: {err}", flush=True)
        return {"error": err}
    return json.loads(out.read_text())


def per_mac(rep: dict) -> str:
    if "error" in rep:
        return "–"
    return f"{rep['instructions']['median'] / rep['macs']:.2f}"


def conv_kernel(rep: dict) -> str:
    if "error" in rep:
        return "–"
    return rep["layers"][0]["kernel"].split("/")[0]


def layer_per_mac(rep: dict) -> str:
    """The convolution's own kernel (with its fused output stage), without the output copy and
    the argmax of the inference."""
    if "error" in rep or rep["layers"][0]["instructions"] is None:
        return "–"
    return f"{rep['layers'][0]['instructions'] / rep['macs']:.2f}"


# the goals, instructions per MAC (board -> shape key -> at most)
GOALS = {
    "max78000-sim": {"s1_16": 1.5, "s1_32": 1.5, "s2_16": 2, "pw_32": 2, "dw_32": 3},
    "rv32emc-sim": {"s1_8": 3.5, "s1_16": 3.5, "s1_32": 3.5, "s2_16": 3.5, "pw_32": 3.5},
}


def table(results: dict, shapes: list, board: str, title: str) -> str:
    """One board: the generic kernels and the board's own (the whole inference), the layer alone,
    its kernel, and the goal (and CMSIS-NN's figure on the Cortex-M4)."""
    m4 = board == "max78000-sim"
    lines = [f"{title} (`{board}`), instructions per multiply-accumulate:", "",
             "| layer | MACs | generic | bitgen | layer only | kernel | goal |" + (" CMSIS-NN |" if m4 else ""),
             "|---|---:|---:|---:|---:|---|---:|" + ("---:|" if m4 else "")]
    for key, name, shape, co, k, s, p, dw, cmsis in shapes:
        res = results.get(key, {}).get(board, {})
        g, f = res.get("generic", {"error": ""}), res.get("fast", {"error": ""})
        macs = f.get("macs") or g.get("macs")
        goal = GOALS.get(board, {}).get(key)
        lines.append(f"| {name} | {f'{macs:,}' if macs else '–'} | {per_mac(g)} | {per_mac(f)} | {layer_per_mac(f)} "
                     f"| `{conv_kernel(f)}` | {f'≤ {goal}' if goal else ''} |" + (f" {cmsis or '–'} |" if m4 else ""))
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="out/conv_bench")
    ap.add_argument("--inputs", type=int, default=8, help="random inputs per bench (default 8)")
    ap.add_argument("--shape", action="append", help="only these shape keys")
    ap.add_argument("--board", action="append", help="only these boards")
    ap.add_argument("--fast-only", action="store_true", help="skip the generic kernels")
    ap.add_argument("--update-readme", action="store_true")
    ap.add_argument("--table-only", action="store_true", help="only render the stored results (results.json)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shapes = [s for s in SHAPES if not args.shape or s[0] in args.shape]
    boards = [b for b in BOARDS if not args.board or b[0] in args.board]
    store = out / "results.json"
    results = json.loads(store.read_text()) if store.exists() else {}
    for key, title, shape, co, k, s, p, dw, _ in ([] if args.table_only else shapes):
        path = out / f"{key}.pt"
        bitgen.save(layer_model(shape, co, k, s, p, dw), path)
        for board, fast, _ in boards:
            sets = [("fast", fast)] + ([] if args.fast_only else [("generic", "generic")])
            for label, kernels in sets:
                rep = bench(path, board, kernels, args.inputs, out / f"{key}.{board}.{kernels}.json")
                results.setdefault(key, {}).setdefault(board, {})[label] = rep
                if "error" not in rep:
                    print(f"  {key} {board} {kernels}: {per_mac(rep)} instructions per MAC "
                          f"({rep['instructions']['median']:.0f} / {rep['macs']}), {conv_kernel(rep)}", flush=True)
        store.write_text(json.dumps(results, indent=1) + "\n")
    text = "\n".join(table(results, SHAPES, board, title) for board, _, title in BOARDS)
    (out / "conv_bench.md").write_text(text)
    print(text)
    if args.update_readme:
        readme = ROOT / "README.md"
        src = readme.read_text()
        start, end = "<!-- conv-bench:start -->", "<!-- conv-bench:end -->"
        if start not in src:
            print("README.md has no conv-bench markers", file=sys.stderr)
            return 1
        note = (f"\nRetired instructions of the whole inference (median over {args.inputs} random int8 inputs, "
                f"every output bit-exact against the golden model) per multiply-accumulate of the layer; "
                f"\"layer only\": the convolution's kernel with its fused requantization and ReLU, from the "
                f"per-layer split, without copying the output and its argmax; \"–\": no measurement (the "
                f"generic kernel on RV32EC runs the 32×32 layer past the emulator's limit of 500 M "
                f"instructions per bench). CMSIS-NN: issue 11's measurement on the same emulated core. Regenerate: "
                f"`.venv/bin/python tools/conv_bench.py --update-readme`. (The transposed rows: "
                f"`.venv/bin/python tools/conv_bench.py --out OUT --shape t2_8 --shape t2_16`, issue 13; only "
                f"RV32EC has a kernel of its own for them, `lut_convt`.)\n")
        head, rest = src.split(start, 1)
        _, tail = rest.split(end, 1)
        readme.write_text(head + start + "\n" + text + note + end + tail)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
