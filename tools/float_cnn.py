#!/usr/bin/env python3
"""Train an ordinary float PyTorch CNN on USPS: the input of the post-training quantization example.

Two padded 3x3 convolutions with BatchNorm and ReLU, each followed by 2x2 max pooling, then two
linear layers; plain ``torch.nn`` (no bitgen layers), trained with Adam. Writes
``OUT/float_model.pt`` (the whole ``nn.Sequential``, pickled: ``bitgen quantize --trust-pickle``)
and ``OUT/float_state.pt`` (its state_dict: ``bitgen quantize --arch tools.float_cnn:build``).

    .venv/bin/python tools/float_cnn.py --data ../shared/datasets/usps -o out/ptq
    .venv/bin/bitgen quantize out/ptq/float_model.pt --trust-pickle --dataset usps \\
        --data ../shared/datasets/usps --weights 8bit -o out/ptq/q8.pt
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# run as a script, tools/ is on the path and tools/profile.py would hide the standard library's
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "tools"] + [str(ROOT)]

import numpy as np  # noqa: E402
import torch  # noqa: E402


def build(c1: int = 8, c2: int = 16, hidden: int = 64, classes: int = 10) -> torch.nn.Sequential:
    """The float CNN for 1x16x16 inputs."""
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, c1, 3, padding=1), nn.BatchNorm2d(c1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1), nn.BatchNorm2d(c2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(c2 * 16, hidden), nn.ReLU(), nn.Linear(hidden, classes),
    )


def train(x: np.ndarray, y: np.ndarray, epochs: int = 12, seed: int = 0, **arch) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    model = build(**arch)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=4e-3, total_steps=epochs * (-(-len(x) // 64)))
    xt, yt = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        model.train()
        for idx in np.array_split(rng.permutation(len(x)), -(-len(x) // 64)):
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def main() -> int:
    from bitgen import datasets

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="USPS folder (zip.train.gz, zip.test.gz)")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--out", required=True, help="output folder")
    args = ap.parse_args()
    torch.set_num_threads(2)
    tr, te = datasets.load("usps", args.data, "train"), datasets.load("usps", args.data, "test")
    model = train(tr.x, tr.y, args.epochs, args.seed)
    with torch.no_grad():
        acc = (model(torch.from_numpy(te.x.astype(np.float32))).argmax(1).numpy() == te.y).mean()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model, out / "float_model.pt")
    torch.save(model.state_dict(), out / "float_state.pt")
    print(f"float CNN: USPS test accuracy {100 * acc:.2f} % ({len(te)} images); wrote {out}/float_model.pt, "
          f"{out}/float_state.pt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
