"""bitgen import: convert another tool's model (ONNX, a BitNetMCU header) into a bitgen model file."""
from __future__ import annotations

import argparse

from .. import modelfile
from .common import count
from .outputs import output_file


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .quantize_cmd import add_ptq_arguments

    p.add_argument("model", help="an ONNX file (.onnx) or a BitNetMCU header (BitNetMCU_model.h)")
    p.add_argument("--input-size", type=count(1, 1 << 20), metavar="N",
                   help="BitNetMCU: the input length of an MLP whose first layer is ternary (padded to ten)")
    g = p.add_argument_group("float ONNX models (post-training quantization, as bitgen quantize)")
    add_ptq_arguments(g, dataset_required=False)
    p.add_argument("--name", help="model name stored in the file (default: the input file's stem)")
    p.add_argument("-o", "--out", required=True, metavar="FILE", help="bitgen model file to write")


def run(args: argparse.Namespace) -> int:
    from .. import importers

    out = output_file(args.out, "-o")
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
