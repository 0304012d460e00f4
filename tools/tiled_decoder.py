"""Decoders with random weights for the figures of README "Tiled execution": the die decoder's
shape (Linear 7 -> 4x4x8, three 3x3 transposed convolutions stride 2 to 32x32x8, two 3x3
convolutions there, a 3x3 convolution to one channel) and a smaller one (4x4x4 image, two
transposed convolutions to 16x16x4, one 3x3 convolution there, one to one channel). Writes
OUT/die.pt and OUT/decoder16.pt and prints, per strip height, the arena (rv32ec kernels) and
the multiply-accumulates the halos recompute; then, for the layout of examples/die-decoder.toml
(one 8-channel convolution at 32x32; OUT/die1.pt), the arena with the output streamed band by
band, in full-width strips and in 2-D tiles (rows x columns), and the planner's choice under
the CH32V003's arena limit:

    .venv/bin/python tools/tiled_decoder.py OUT
    .venv/bin/bitgen bench --board ch32v003-sim OUT/decoder16.pt --random 3
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import bitgen  # noqa: E402
from bitgen.backends.c import emit, targets, tiling  # noqa: E402
from bitgen.backends.c.kernels import bands  # noqa: E402
from models_for_tests import decoder  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="folder for die.pt and decoder16.pt")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    models = {"die": decoder(), "decoder16": decoder(ch=4, ups=2, full=1, latent=None)}
    print("| model | strip rows | arena (B) | recomputed MACs | MACs layer by layer |")
    print("|---|---:|---:|---:|---:|")
    for name, m in models.items():
        bitgen.save(m, args.out / f"{name}.pt")
        base = emit.plan_model(m, "rv32ec")
        print(f"| {name} | layer by layer | {base.memory.arena_bytes} | - | - |")
        stages = tiling.runs(m, base.types)[0]
        for h in (1, 2, 4, 8, 16, 32):
            if h not in tiling.heights(stages, base.types):
                continue
            t = tiling.plan(m, base.types, stages, h)
            arena = emit.plan_model(m, "rv32ec", tiles={t.first: t}).memory.arena_bytes
            print(f"| {name} | {h} | {arena} | {t.recompute_macs} (+{t.report()['recompute_percent']} %) | {t.macs} |")
    die1 = decoder(full=1)
    bitgen.save(die1, args.out / "die1.pt")
    base = emit.plan_model(die1, "rv32ec")
    stages = tiling.runs(die1, base.types)[0]
    print()
    print(f"die decoder (examples/die-decoder.toml layout): layer by layer {base.memory.arena_bytes} B")
    print("| tile (rows x columns) | arena, output streamed (B) | strip buffers (B) | recomputed MACs | estimated instructions |")
    print("|---|---:|---:|---:|---:|")
    fused = {st.first: c.scratch for st in stages
             if (c := bands.fused_choice(die1, base.types, st, targets.get("rv32ec"))) is not None}
    for h, w in ((1, 32), (2, 32), (4, 32), (8, 32), (1, 16), (2, 16), (4, 16), (2, 8), (4, 8), (2, 4), (4, 4), (8, 4)):
        t = tiling.plan(die1, base.types, stages, h, fused, w, stream=True)
        arena = emit.plan_model(die1, "rv32ec", tiles={t.first: t}).memory.arena_bytes
        print(f"| {h} x {w} | {arena} | {t.scratch} | {t.recompute_macs} (+{t.report()['recompute_percent']} %) "
              f"| {t.instructions} |")
    for limit in (1536,):
        mp = emit.plan_within(die1, "rv32ec", limit, stream=True)
        (t,) = mp.tiles.values()
        print(f"arena limit {limit} B: {t.strip_rows} x {t.tile_cols or 32} tiles, arena {mp.memory.arena_bytes} B")
    return 0


if __name__ == "__main__":
    sys.exit(main())
