#!/usr/bin/env python3
"""bitgen's golden model of ONNX models quantized by onnxruntime's quantizer, against onnxruntime.

The USPS float CNN of tools/float_cnn.py (its state_dict) is exported to ONNX, quantized by
``onnxruntime.quantization.quantize_static`` (QDQ; int8 or uint8 activations; per-tensor or
per-channel weights; calibrated on 300 USPS training images), imported with ``bitgen import``
and run by golden and by onnxruntime on the USPS test images and on uniform random images.
Both as QDQ and as QOperator models. Also a small residual CNN (untrained, random weights): as
QDQ, onnxruntime computes one Conv and the Add in float32 (their input is read twice, so its
optimizer does not fuse them into integer kernels); as QOperator, its QLinearAdd runs the AVX2
float kernel on x86 machines with AVX2, which rounds near-ties unlike the fixed point bitgen
reproduces. Prints, per model, the inputs whose outputs differ and the largest difference in
output steps.

    .venv/bin/python tools/float_cnn.py --data ../shared/datasets/usps -o out/ptq
    .venv/bin/python tools/onnx_vs_onnxruntime.py --data ../shared/datasets/usps --state out/ptq/float_state.pt
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "tools"] + [str(ROOT)]

import numpy as np  # noqa: E402
import torch  # noqa: E402


class Residual(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2 = torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.Conv2d(8, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8 * 8 * 8, 10)

    def forward(self, x):
        y = torch.nn.functional.max_pool2d(torch.relu(self.c1(x)), 2)
        return self.fc(torch.flatten(torch.relu(self.c2(y) + y), 1))


def compare(module: torch.nn.Module, calib: np.ndarray, sets: dict[str, np.ndarray], activations: str,
            per_channel: bool, workdir: Path, fmt: str = "QDQ") -> list[str]:
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from bitgen import golden, importers

    fpath, qpath = workdir / "float.onnx", workdir / "qdq.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), torch.zeros(1, 1, 16, 16), fpath, dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib.astype(np.float32)[:, None])

        def get_next(self):
            v = next(self.it, None)
            return None if v is None else {"x": v}

    logging.disable(logging.WARNING)
    quantize_static(str(fpath), str(qpath), Reader(), quant_format=getattr(QuantFormat, fmt),
                    activation_type=getattr(QuantType, activations), weight_type=QuantType.QInt8,
                    per_channel=per_channel)
    logging.disable(logging.NOTSET)
    model = importers.read(qpath)
    sess = ort.InferenceSession(str(qpath), providers=["CPUExecutionProvider"])
    info = model.meta["onnx"]
    rows = []
    for name, x in sets.items():
        x = x.astype(np.float32)
        want = sess.run(None, {"x": x})[0].reshape(len(x), -1)
        xq = np.clip(np.rint(x / np.float32(model.input.scale)) + model.input.zero_point, -128, 127).astype(np.int8)
        q = golden.run(model, xq.reshape((len(x),) + model.input.shape))
        got = (q.astype(np.float32) + info["output_offset"] - info["output_zero_point"]) * np.float32(info["output_scale"])
        steps = np.abs(got - want) / info["output_scale"]
        bad = np.any(steps > 0, axis=1)
        rows.append(f"{fmt:9s} {activations:6s} {'per-channel' if per_channel else 'per-tensor':11s} {name:8s} "
                    f"{len(x):6d} inputs  differ {int(bad.sum()):4d}  values differ {int((steps > 0).sum()):4d} "
                    f"of {steps.size}  max {steps.max():.0f} step(s)")
    return rows


def main() -> int:
    from bitgen import datasets

    sys.path.insert(0, str(ROOT / "tools"))
    from float_cnn import build  # noqa: E402  (the same architecture)

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="USPS folder")
    ap.add_argument("--state", required=True, help="float_state.pt written by tools/float_cnn.py")
    ap.add_argument("--random", type=int, default=10000, help="random inputs (default 10000)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    tr, te = datasets.load("usps", args.data, "train"), datasets.load("usps", args.data, "test")
    cnn = build()
    cnn.load_state_dict(torch.load(args.state, weights_only=True))
    torch.manual_seed(0)
    residual = Residual()
    sets = {"usps": te.x, "random": np.random.default_rng(0).uniform(-1, 1, (args.random, 1, 16, 16))}
    with tempfile.TemporaryDirectory() as tmp:
        for title, module in (("USPS CNN (tools/float_cnn.py)", cnn), ("residual CNN (random weights)", residual)):
            print(title)
            for fmt in ("QDQ", "QOperator"):
                for act, pc in (("QInt8", False), ("QUInt8", False), ("QInt8", True), ("QUInt8", True)):
                    for row in compare(module, tr.x[:300], sets, act, pc, Path(tmp), fmt):
                        print("  " + row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
