"""What kind of file a path holds, for a clear error when it is not what a command reads.

:func:`kind` looks at the file without running anything from it: zip archives by their member
names (``torch.save``'s ``data.pkl``, TorchScript's ``constants.pkl``, NumPy's ``.npy``),
TensorFlow Lite by its flatbuffer identifier ``TFL3``, BitNetMCU's exported C headers by their
``L<n>_bitperweight`` defines, ONNX by parsing it with the ``onnx`` package (by the ``.onnx``
suffix where that package is not installed), pickles by their protocol header.
:func:`foreign` turns a kind into the one-line reason a bitgen model file was not found there.
"""
from __future__ import annotations

import re
import zipfile
from pathlib import Path

HEAD = 4096


def kind(path: str | Path) -> str:
    """One of ``torch`` (a ``torch.save`` archive), ``torchscript``, ``npz``, ``zip``, ``tflite``,
    ``bitnetmcu``, ``onnx``, ``pickle`` (a legacy ``torch.save`` or a plain pickle), ``empty``,
    ``text`` or ``unknown``."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(HEAD)
    if not head:
        return "empty"
    if head.startswith(b"PK\x03\x04"):
        return _zip_kind(path)
    if head[4:8] == b"TFL3":
        return "tflite"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "pickle"
    if _is_onnx(path):
        return "onnx"
    if _is_text(head):
        return "bitnetmcu" if re.search(rb"\bL\d+_bitperweight\b", _rest(path)) else "text"
    return "unknown"


def _rest(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(1 << 20)


def _is_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return b"\x00" not in head


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return "torch"  # a zip that does not open: most likely a truncated torch.save archive
    if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
        return "torchscript"
    if any(n.endswith("data.pkl") for n in names):
        return "torch"
    if names and all(n.endswith(".npy") for n in names):
        return "npz"
    return "zip"


def _is_onnx(path: Path) -> bool:
    try:
        import onnx
    except ImportError:
        return path.suffix.lower() == ".onnx"
    try:
        m = onnx.load(str(path), load_external_data=False)
    except Exception:  # protobuf's DecodeError and friends: not ONNX
        return False
    return m.ir_version > 0 and len(m.opset_import) > 0 and len(m.graph.node) > 0


def is_state_dict(obj: object) -> bool:
    """A PyTorch state_dict: a mapping of names to tensors (possibly under "state_dict" / "model")."""
    import torch

    if isinstance(obj, dict) and len(obj) == 1 and next(iter(obj)) in ("state_dict", "model", "model_state_dict"):
        obj = next(iter(obj.values()))
    return isinstance(obj, dict) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def foreign(path: str | Path, what: str | None = None) -> str | None:
    """The one-line reason a file of another kind is not a bitgen model file, or None when it
    is a PyTorch file (whose contents the caller judges). ``what`` is the kind when known."""
    path = Path(path)
    what = what or kind(path)
    messages = {
        "onnx": f"{path}: an ONNX model; convert it with `bitgen import {path} -o model.pt`",
        "bitnetmcu": f"{path}: a BitNetMCU model header; convert it with `bitgen import {path} -o model.pt`",
        "tflite": f"{path}: a TensorFlow Lite flatbuffer; TFLite models are not supported yet "
                  "(export the model to ONNX and use `bitgen import`)",
        "torchscript": f"{path}: a TorchScript archive, which bitgen does not read; save the module's state_dict "
                       "and quantize it with `bitgen quantize FILE --arch module:Class`",
        "npz": f"{path}: a NumPy .npz archive (a dataset?), not a model file",
        "empty": f"{path}: an empty file, not a model file",
    }
    if what in messages:
        return messages[what]
    if what in ("torch", "pickle"):
        return None
    return (f"{path}: not a model file (neither a bitgen or PyTorch model, an ONNX model, a TFLite "
            "flatbuffer nor a BitNetMCU header)")


def state_dict_message(path: str | Path) -> str:
    return (f"{path}: not a bitgen model but a PyTorch state_dict (weights without the architecture); quantize it with "
            f"`bitgen quantize {path} --arch module:Class --dataset ...`, where module:Class builds the network")
