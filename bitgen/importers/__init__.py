"""Models from other tools -> bitgen's integer IR: ONNX (:mod:`.onnx_import`) and BitNetMCU's
exported C headers (:mod:`.bitnetmcu`). :func:`read` picks the importer by the file's kind
(:mod:`bitgen.filetype`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import filetype, ir
from .errors import ModelImportError

__all__ = ["ModelImportError", "read"]


def read(path: str | Path, **options: Any) -> ir.Model:
    """The IR of an ONNX file or a BitNetMCU header (raises ModelImportError, one line).
    ``options`` go to the importer (see its ``read``)."""
    path = Path(path)
    if not path.is_file():
        raise ModelImportError(f"{path}: no such file")
    kind = filetype.kind(path)
    if kind == "bitnetmcu":
        from . import bitnetmcu

        return bitnetmcu.read(path, input_size=options.get("input_size"))
    if kind == "onnx":
        from . import onnx_import

        if float_onnx(path) is not None:
            raise ModelImportError(f"{path}: a float ONNX model; quantize it with calibration data: `bitgen import "
                                   f"{path} --dataset NAME --data PATH -o model.pt` (or quantize it with "
                                   "onnxruntime first)")
        return onnx_import.read(path)
    if kind in ("torch", "pickle"):
        raise ModelImportError(f"{path}: a PyTorch file; a float model is quantized with `bitgen quantize`, "
                               "a bitgen model needs no import")
    raise ModelImportError(filetype.foreign(path, kind) or f"{path}: not a model file bitgen can import")


def float_onnx(path: str | Path) -> Any:
    """The torch module of a float ONNX model (no quantized operator), for post-training
    quantization; None for a quantized one or another kind of file."""
    path = Path(path)
    if filetype.kind(path) != "onnx":
        return None
    from . import onnx_float
    from .onnx_import import _require_onnx

    onnx, _ = _require_onnx()
    try:
        model = onnx.load(str(path))
    except Exception as e:  # protobuf decode errors, missing external data
        raise ModelImportError(f"{path}: not a readable ONNX file ({str(e).splitlines()[0][:200]})") from None
    return onnx_float.to_torch(model, str(path)) if onnx_float.is_float(model) else None
