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

        return onnx_import.read(path, **{k: v for k, v in options.items() if k != "input_size"})
    if kind in ("torch", "pickle"):
        raise ModelImportError(f"{path}: a PyTorch file; a float model is quantized with `bitgen quantize`, "
                               "a bitgen model needs no import")
    raise ModelImportError(filetype.foreign(path, kind) or f"{path}: not a model file bitgen can import")
