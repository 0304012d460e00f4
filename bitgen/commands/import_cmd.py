"""bitgen import: convert another tool's model (ONNX, a BitNetMCU header, an ai8x checkpoint with its
izer YAML) into a bitgen model file."""
from __future__ import annotations

import argparse

from .. import modelfile
from .common import count
from .outputs import output_file


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .quantize_cmd import add_ptq_arguments

    p.add_argument("model", help="an ONNX file (.onnx), a BitNetMCU header (BitNetMCU_model.h) or a quantized "
                                 "ai8x checkpoint (.pth.tar, with --yaml)")
    p.add_argument("--yaml", metavar="NETWORK.yaml",
                   help="ai8x (MAX78000): the izer network description of the checkpoint; the input shape comes "
                        "from its dataset (mnist, cifar10, ...) or --input-shape")
    p.add_argument("--avg-pool-rounding", action="store_true",
                   help="ai8x: average pooling rounds (izer's --avg-pool-rounding) instead of truncating")
    p.add_argument("--input-size", type=count(1, 1 << 20), metavar="N",
                   help="BitNetMCU: the input length of an MLP whose first layer is ternary (padded to ten)")
    g = p.add_argument_group("float ONNX models (post-training quantization, as bitgen quantize)")
    add_ptq_arguments(g, dataset_required=False)
    p.add_argument("--name", help="model name stored in the file (default: the input file's stem)")
    p.add_argument("-o", "--out", required=True, metavar="FILE", help="bitgen model file to write")


def run(args: argparse.Namespace) -> int:
    from .. import importers

    out = output_file(args.out, "-o")
    if args.yaml is not None:
        return _import_ai8x(args, out)
    if args.avg_pool_rounding:
        raise importers.ModelImportError("--avg-pool-rounding is for ai8x checkpoints (with --yaml)")
    if args.dataset is not None:
        module = importers.float_onnx(args.model)
        if module is None:
            raise importers.ModelImportError(f"{args.model}: --dataset is for float ONNX models; this one is "
                                             "quantized (or not ONNX) and needs no calibration")
        from .quantize_cmd import quantize_and_report

        return quantize_and_report(module, args, shape=module.input_shape)
    model = importers.read(args.model, input_size=args.input_size)
    if args.name:
        model.name = args.name
    modelfile.save(model, out)
    source = model.meta.get("source", "model")
    print(f"imported {args.model} ({source}): input {'x'.join(map(str, model.input.shape))}, "
          f"{len(model.layers)} layers, {model.macs()} MACs, outputs {model.validate()[-1].dtype}")
    print(f"wrote {out} (model {model.digest()[:16]})")
    return 0


def _import_ai8x(args: argparse.Namespace, out) -> int:
    from ..importers import ai8x
    from .quantize_cmd import _shape

    if args.dataset is not None:
        raise ai8x.Ai8xImportError("--dataset calibrates float ONNX models; an ai8x checkpoint is already quantized")
    shape = _shape(args.input_shape)
    if shape is not None:
        from .. import ir

        ir.limits.check_shape(shape, "--input-shape")
    model = ai8x.read(args.model, args.yaml, input_shape=shape, avg_pool_rounding=args.avg_pool_rounding)
    if args.name:
        model.name = args.name
    modelfile.save(model, out)
    print(f"imported {args.model} with {args.yaml} (ai8x, MAX78000 accelerator layers): input "
          f"{'x'.join(map(str, model.input.shape))}, {len(model.nodes)} layers, {model.macs()} MACs, "
          f"outputs {model.validate()[-1].dtype}")
    print(f"wrote {out} (model {model.digest()[:16]})")
    return 0
