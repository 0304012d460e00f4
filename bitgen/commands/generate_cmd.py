"""bitgen generate: draw images with a conditional decoder (the electronic die, bitgen.dice):
with the golden model, or on a board (emulated or real) whose every pixel is compared with
golden; score them with the evaluation classifier (the "judge"), trained by bitgen on augmented
dice the first time and kept next to the output."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from .. import console, golden, reports
from ..errors import BitgenError
from ..harness import boards
from ..harness.link import LinkError
from .common import UsageError, add_kernels_argument, add_tiling_arguments, count, resolve_kernels, seconds
from .emit_cmd import default_name
from .outputs import STDOUT, output_dir, output_file, write_json

JUDGE_FILE = "dice-judge.pt"  # the evaluation classifier, cached beside the output
SHEET_ANGLES = 8


def _latent(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not -1.0 <= v <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text} is outside the latent's range -1..1")
    return v


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a decoder's model file (bitgen train with task = \"decoder\")")
    p.add_argument("--label", help="what to draw: one of the decoder's labels (the die: 1..6 pips)")
    p.add_argument("--latent", type=_latent, default=0.0,
                   help="the latent in -1..1 (the die: the angle, -1 is 0 degrees, 1 is 90; default 0)")
    p.add_argument("--sheet", action="store_true",
                   help="draw every label at --angles latents spread over -1..1, one row per label")
    p.add_argument("--angles", type=count(1, 1000), default=SHEET_ANGLES,
                   help=f"latents per label of --sheet (default {SHEET_ANGLES})")
    p.add_argument("--scale", type=count(1, 32), default=4, help="pixels per image pixel in the PNG (default 4)")
    p.add_argument("-o", "--out", required=True, metavar="PNG", help="the picture to write")
    p.add_argument("--json", metavar="FILE", help="write the report here ('-': standard output)")
    p.add_argument("--judge", metavar="FILE",
                   help=f"the evaluation classifier (default: {JUDGE_FILE} beside -o, trained there the first time)")
    p.add_argument("--board", help=f"draw on this board and compare every pixel with golden "
                                   f"(available: {', '.join(boards.available())})")
    p.add_argument("--port", help="serial port of a real board")
    p.add_argument("--keep", metavar="DIR", help="emulated boards: keep the firmware built for the run here")
    add_kernels_argument(p, "emulated boards: kernel set of the firmware (default: the board's fastest that fits)")
    add_tiling_arguments(p)
    p.add_argument("--timeout", type=seconds(3600), default=3.0, metavar="S", help="seconds per command (default 3)")
    p.add_argument("--infer-timeout", type=seconds(), default=120.0, metavar="S",
                   help="seconds per image on a board (default 120)")


def _decoder(path: str):
    from .. import modelfile

    loaded = modelfile.load(path)
    irm = loaded.ir
    dec = irm.meta.get("decoder") if irm.meta.get("task") == "decoder" else None
    if not isinstance(dec, dict) or not isinstance(dec.get("labels"), list):
        raise UsageError(f"{path}: not a decoder (train one with a config that says task = \"decoder\", "
                         "e.g. examples/die-decoder.toml)")
    labels = [str(s) for s in dec["labels"]]
    if irm.input.size != len(labels) + 1:
        raise UsageError(f"{path}: its input has {irm.input.size} values, not {len(labels)} labels and a latent")
    return irm, labels


def _requests(args: argparse.Namespace, labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(classes, latents) of the images to draw."""
    if args.sheet:
        if args.label is not None:
            raise UsageError("--sheet draws every label: give it without --label")
        latents = -1.0 + 2.0 * np.arange(args.angles) / args.angles
        return np.repeat(np.arange(len(labels)), args.angles), np.tile(latents, len(labels))
    if args.label is None:
        raise UsageError(f"give --label (one of {', '.join(labels)}) or --sheet")
    if args.label not in labels:
        raise UsageError(f"--label {args.label}: the decoder draws labels {', '.join(labels)}")
    return np.array([labels.index(args.label)]), np.array([args.latent])


def _judge(args: argparse.Namespace, out: Path, labels: list[str], shape: tuple[int, ...]):
    """The evaluation classifier: --judge, or the cached one beside the output, or a new one."""
    from .. import dice, modelfile

    path = Path(args.judge) if args.judge else out.parent / JUDGE_FILE
    if args.judge or path.exists():
        judge = modelfile.load(path).ir
        if tuple(judge.input.shape) != tuple(shape) or list(judge.labels or []) != labels:
            raise UsageError(f"{path}: not an evaluation classifier for these images (input {tuple(shape)}, "
                             f"labels {', '.join(labels)})")
        return judge, path
    if labels != dice.LABELS or tuple(shape) != (1, dice.SIZE, dice.SIZE):
        raise UsageError("only the die has a built-in evaluation classifier: give --judge FILE")
    import sys
    import time

    import torch

    from .. import datasets
    from ..nn import export

    if not console.quiet():
        print(f"training the evaluation classifier on augmented dice (once; kept in {path})", file=sys.stderr)
    torch.set_num_threads(1)  # small convolutions: one thread is the fastest on shared cores
    start = time.perf_counter()
    model = dice.train_judge(seed=0, progress=not console.quiet())
    took = time.perf_counter() - start
    test = datasets.load("dice", split="test")
    acc = float(np.mean(golden.predict(export.to_ir(model), dice.pixels(test.x)) == test.y))
    meta = {"task": "classifier", "dataset": "dice", "purpose": "evaluation classifier of generated dice",
            "accuracy": {"golden": acc, "split": "test", "samples": len(test)}, "train_seconds": round(took, 2)}
    try:
        judge = modelfile.save(model, path, name="dice_judge", meta=meta)
    except OSError as e:
        raise BitgenError(f"cannot write {path}: {e.strerror or e}") from None
    console.note(f"evaluation classifier: {100 * acc:.2f} % of {len(test)} held-out dice ({took:.0f} s to train)")
    return judge, path


def _png(images: np.ndarray, classes: np.ndarray, latents: np.ndarray, labels: list[str], sheet: bool,
         per_row: int, scale: int):
    """One image, or the sheet: one row per label (its name at the left), one column per latent
    (its angle at the top)."""
    from PIL import Image, ImageDraw

    from .. import dice

    grey = dice.to_grey(images.reshape(len(images), *images.shape[-2:]))
    h, w = grey.shape[1:]
    if not sheet:
        return Image.fromarray(grey[0]).resize((w * scale, h * scale), Image.Resampling.NEAREST)
    rows = math.ceil(len(grey) / per_row)
    gap, left, top = 2 * scale, 16 * scale, 8 * scale
    tw, th = w * scale + gap, h * scale + gap
    page = Image.new("L", (left + per_row * tw, top + rows * th), 96)
    draw = ImageDraw.Draw(page)
    for i, g in enumerate(grey):
        r, c = divmod(i, per_row)
        page.paste(Image.fromarray(g).resize((w * scale, h * scale), Image.Resampling.NEAREST),
                   (left + c * tw, top + r * th))
        if c == 0:
            name = labels[classes[i]] + (" pip" + "s" * int(classes[i] > 0) if labels == dice.LABELS else "")
            draw.text((4, top + r * th + h * scale // 2 - 5), name, fill=255)
        if r == 0:
            draw.text((left + c * tw, 2), f"{float(dice.angle_of(latents[i])):.0f} deg", fill=255)
    return page


def run(args: argparse.Namespace) -> int:
    from .. import dice

    out = output_file(args.out, "-o")
    json_to = output_file(args.json, "--json", stdout=True)
    keep = output_dir(args.keep, "--keep")
    say = (lambda *a: None) if json_to == STDOUT else print  # noqa: E731
    kernels = resolve_kernels(args)
    board = boards.get(args.board) if args.board else None
    if board is None and (args.port or kernels or keep or args.tiling != "auto" or args.strip_rows):
        raise UsageError("--port, --kernels, --keep, --tiling and --strip-rows go with --board")
    irm, labels = _decoder(args.model)
    classes, latents = _requests(args, labels)
    x = dice.decoder_inputs(classes, latents)
    expect = golden.run(irm, x)
    images, cycles, board_info = expect, [], None
    if board is not None:
        from ..harness.session import Session

        got = []
        bar = console.progress(total=len(x), unit="image", desc=board.name)
        with Session(board, irm, port=args.port, name=default_name(irm.name), workdir=keep, timeout=args.timeout,
                     infer_timeout=args.infer_timeout, kernels=kernels, tiles=args.tiling,
                     strip_rows=args.strip_rows) as s:
            try:
                for row in x:
                    try:
                        r = s.link.classify(row)
                    except LinkError as e:
                        raise s.explain(e) from None
                    got.append(r.outputs.reshape(expect.shape[1:]))
                    cycles.append(r.cycles)
                    bar.update(1)
            finally:
                bar.close()
            fw = s.firmware.report if s.firmware else None
            board_info = {"name": board.name, "kernels": fw.get("kernels") if fw else None,
                          "flash_bytes": fw.get("flash_bytes") if fw else None,
                          "sram_bytes": fw.get("sram_bytes") if fw else None,
                          "tiling": ((fw.get("model") or {}).get("tiling")) if fw else None,
                          "instruction_source": board.cycle_source}
        images = np.stack(got).astype(expect.dtype)
    differ = images.astype(np.int64) != expect.astype(np.int64)
    mismatches = int(differ.sum())
    judge, judge_path = _judge(args, out, labels, tuple(expect.shape[1:]))
    judged = golden.predict(judge, images.reshape((len(images),) + tuple(judge.input.shape)).astype(np.int8))
    hit = float(np.mean(judged == classes))
    picture = _png(images, classes, latents, labels, args.sheet, args.angles, args.scale)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        picture.save(out, format="PNG")
    except OSError as e:
        raise BitgenError(f"cannot write {out}: {e.strerror or e}") from None
    per_image = [{"label": labels[int(c)], "latent": float(lat), "angle": float(dice.angle_of(lat)),
                  "classified_as": labels[int(j)], "mismatches": int(d.sum())}
                 | ({"instructions": int(cy)} if cycles else {})
                 for c, lat, j, d, cy in zip(classes, latents, judged, differ, cycles or [None] * len(x))]
    rep = reports.header("generate") | {
        "model_hash": irm.digest(),
        "model": {"name": irm.name, "path": str(Path(args.model).resolve())},
        "board": board_info,
        "images": len(images),
        "mismatches": mismatches,
        "classified_as_requested": hit,
        "judge": {"path": str(judge_path.resolve()), "accuracy": (judge.meta.get("accuracy") or {}).get("golden")},
        "instructions": reports.count_stats(cycles),
        "per_image": per_image,
        "png": str(out.resolve()),
    }
    write_json(json_to, rep)
    where = board.name if board else "golden"
    say(f"drew {len(images)} image{'s' if len(images) != 1 else ''} on {where}: {mismatches} pixels differ from golden; "
        f"{100 * hit:.1f} % classified as requested by the evaluation classifier")
    if cycles:
        c = rep["instructions"]
        say(f"instructions per image min {c['min']} median {c['median']} max {c['max']} ({board.cycle_source})")
    say(f"wrote {out}")
    return 1 if mismatches else 0
