"""``model.pt``: the file a user trains into and every bitgen command reads.

Layout (a plain dict, written with ``torch.save``, read with ``torch.load(weights_only=True)``
so that opening a model never executes code from the file)::

    {
      "format": "bitgen-model", "version": 1,
      "ir":  Model.to_dict() with every numpy array stored as a torch tensor,
      "qat": None, or {"arch": <bitgen.nn.to_spec(): plain data, format "bitgen-nn">,
                      "state": <state_dict>}  (the PyTorch QAT model, rebuilt with
                      bitgen.nn.from_spec to report its accuracy)
    }

A plain pickled ``nn.Module`` is only opened with ``trust_pickle=True`` (``--trust-pickle``).
"""
from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import filetype, ir, schema
from .errors import BitgenError

FORMAT = "bitgen-model"
VERSION = 1


class ModelFileError(BitgenError):
    pass


@dataclass
class LoadedModel:
    ir: ir.Model
    torch_model: Any = None  # the QAT torch.nn.Module in eval mode, when the file has one
    path: Path | None = None


def _to_torch(v: Any) -> Any:
    import torch

    if isinstance(v, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(v))
    if isinstance(v, dict):
        return {k: _to_torch(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_to_torch(x) for x in v]
    return v


def _to_numpy(v: Any) -> Any:
    import torch

    if isinstance(v, torch.Tensor):
        return v.numpy()
    if isinstance(v, dict):
        return {k: _to_numpy(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_to_numpy(x) for x in v]
    return v


def save(model: Any, path: str | Path, *, input: ir.InputSpec | None = None,
         labels: list[str] | None = None, name: str | None = None,
         meta: dict[str, Any] | None = None, transform: Any = None) -> ir.Model:
    """Save an :class:`ir.Model` or a ``bitgen.nn`` QAT module; returns the IR that was stored.
    `transform`: a function applied to the module's IR before it is stored (e.g.
    ``ir.change.with_thresholds``: a deployment form the torch module does not know)."""
    import torch

    qat = None
    if isinstance(model, ir.Model):
        irm = model
    else:
        from . import nn
        from .nn import export

        irm = export.to_ir(model, input=input, labels=labels, name=name)
        # a user's own module class is stored as the Graph torch.fx traced (plain data)
        stored = model if export.as_plain_data(model) else export.as_graph(model)
        qat = {
            "arch": nn.to_spec(stored),
            "state": {k: v.detach().cpu().clone() for k, v in stored.state_dict().items()},
        }
    if transform is not None:
        irm = transform(irm)
    if name:
        irm.name = name
    if meta:
        irm.meta.update(meta)
    irm.validate()
    payload = {"format": FORMAT, "version": VERSION, "ir": _to_torch(irm.to_dict()), "qat": qat}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # never leave a half-written model behind
    return irm


def load(path: str | Path, *, trust_pickle: bool = False,
         input: ir.InputSpec | None = None) -> LoadedModel:
    """Read a model file; raises :class:`ModelFileError` with a one-line reason."""
    import torch

    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: no such file")
    if path.is_dir():
        raise ModelFileError(f"{path}: is a directory, expected a model file")
    _refuse_foreign(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights_only" not in str(e).lower() and "weights only" not in str(e).lower():
            raise ModelFileError(f"{path}: not a readable model file ({_first_line(e)})") from None
        if not trust_pickle:
            raise ModelFileError(
                f"{path} holds pickled Python objects (e.g. a whole nn.Module), which could run "
                "code when opened; save it with bitgen.save(), or pass --trust-pickle if you "
                "trust this file"
            ) from None
        return _load_pickled(path, input)
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError) as e:
        raise ModelFileError(
            f"{path}: not a readable model file (truncated or corrupt: {_first_line(e)})"
        ) from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        if filetype.is_state_dict(obj):
            raise ModelFileError(filetype.state_dict_message(path))
        raise ModelFileError(f"{path}: not a bitgen model (no '{FORMAT}' format tag)")
    try:
        f = ModelFile(**schema.check_fields(obj, ModelFile)[0])
    except schema.SchemaError as e:
        raise ModelFileError(f"{path}: malformed bitgen model ({e})") from None
    if f.version > VERSION:
        raise ModelFileError(f"{path}: model format version {f.version} is newer than this bitgen")
    try:
        irm = ir.Model.from_dict(_to_numpy(f.ir))
        irm.validate()
    except ir.IRError as e:
        raise ModelFileError(f"{path}: {e}") from None
    torch_model = _load_qat(f.qat, path) if f.qat else None
    return LoadedModel(ir=irm, torch_model=torch_model, path=path)


@dataclass
class ModelFile:
    """What a model file holds (checked by :mod:`bitgen.schema` before anything is built)."""

    format: str
    ir: dict[str, Any]  # ir.IRFile
    version: int = VERSION
    qat: dict[str, Any] | None = None  # QATPart


@dataclass
class QATPart:
    arch: dict[str, Any]  # bitgen.nn.to_spec()
    state: dict[str, Any]  # the state_dict


def _load_qat(qat: dict[str, Any], path: Path) -> Any:
    """The PyTorch QAT module, rebuilt from its plain-data description and state_dict. It is
    first built on PyTorch's meta device (no memory), so that a description declaring huge
    layers is refused, not allocated: its parameters must be exactly the file's tensors."""
    import torch

    from . import nn

    try:
        part = QATPart(**schema.check_fields(qat, QATPart, "qat")[0])
        with torch.device("meta"):
            probe = nn.from_spec(part.arch)
        want = {k: tuple(v.shape) for k, v in probe.state_dict().items()}
        have = {k: tuple(v.shape) for k, v in part.state.items() if isinstance(v, torch.Tensor)}
        if want != have or len(have) != len(part.state):
            raise ValueError("its architecture and its weights disagree")
        torch_model = nn.from_spec(part.arch)
        torch_model.load_state_dict(part.state)
        torch_model.eval()
        return torch_model
    # the description is data from the file, read by constructors that were not written to
    # distrust it: any of these means the file's PyTorch part is malformed
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError, OverflowError,
            NotImplementedError) as e:
        raise ModelFileError(f"{path}: its PyTorch part does not load ({_first_line(e)})") from None


def _load_pickled(path: Path, input: ir.InputSpec | None) -> LoadedModel:
    import torch

    from .nn import export

    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # arbitrary unpickling failures: the user vouched for this file
        raise ModelFileError(f"{path}: could not unpickle ({_first_line(e)})") from None
    if not isinstance(obj, torch.nn.Module):
        raise ModelFileError(f"{path}: holds a {type(obj).__name__}, not an nn.Module")
    irm = export.to_ir(obj, input=input)
    obj.eval()
    return LoadedModel(ir=irm, torch_model=obj, path=path)


def _refuse_foreign(path: Path) -> None:
    """A file of another kind (ONNX, TFLite, a BitNetMCU header, random bytes): say which."""
    reason = filetype.foreign(path)
    if reason:
        raise ModelFileError(reason) from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:200]
