"""Where the float model comes from: a state_dict plus the user's own class, or a pickled module.

* ``--arch mypkg.models:Net`` (the safe way): ``Net`` is imported from the user's code (the
  current directory is on the import path, as for ``python -m``) and called with no arguments
  (or with ``arch_args``); the file is read with ``torch.load(weights_only=True)`` and must hold
  its state_dict (also accepted under a ``"state_dict"``, ``"model"`` or ``"model_state_dict"`` key).
* A whole pickled ``nn.Module`` (``torch.save(model, path)``) is only unpickled with
  ``trust_pickle`` (unpickling runs code from the file).
"""
from __future__ import annotations

import importlib
import pickle
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

from .. import filetype
from .trace import PTQError


def import_arch(spec: str) -> Any:
    """``"package.module:Name"`` -> the object ``Name`` (a class or a function)."""
    mod_name, sep, attr = spec.partition(":")
    if not sep or not mod_name or not attr:
        raise PTQError(f"--arch '{spec}' must be module:Class, e.g. mypkg.models:Net")
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise PTQError(f"--arch: cannot import module '{mod_name}' ({e})") from None
    obj = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise PTQError(f"--arch: module '{mod_name}' has no '{attr}'")
        obj = getattr(obj, part)
    if not callable(obj):
        raise PTQError(f"--arch: '{spec}' is not a class or function")
    return obj


def _torch_load(path: Path, weights_only: bool) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.load(path, map_location="cpu", weights_only=weights_only)


def load_float_model(path: str | Path, *, arch: str | None = None, arch_args: dict | None = None,
                     trust_pickle: bool = False) -> torch.nn.Module:
    """The float module in eval mode (raises PTQError, one line)."""
    path = Path(path)
    if not path.is_file():
        raise PTQError(f"{path}: no such file")
    what = filetype.kind(path)
    if what not in ("torch", "pickle"):
        raise PTQError(filetype.foreign(path, what) or f"{path}: not a PyTorch file")
    if arch is not None:
        try:
            obj = _torch_load(path, weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
            raise PTQError(f"{path}: not a readable state_dict ({_first_line(e)}); with --arch the file must "
                           "hold model.state_dict()") from None
        if isinstance(obj, dict) and len(obj) == 1 and next(iter(obj)) in ("state_dict", "model", "model_state_dict"):
            obj = next(iter(obj.values()))
        if not filetype.is_state_dict(obj):
            kind = "a bitgen model (already quantized)" if isinstance(obj, dict) and "format" in obj else \
                f"a {type(obj).__name__}"
            raise PTQError(f"{path}: holds {kind}, not a state_dict")
        try:
            module = import_arch(arch)(**(arch_args or {}))
        except PTQError:
            raise
        except Exception as e:  # the user's constructor
            raise PTQError(f"--arch {arch}: building the model failed ({_first_line(e)})") from None
        if not isinstance(module, torch.nn.Module):
            raise PTQError(f"--arch {arch} made a {type(module).__name__}, not a torch.nn.Module")
        try:
            module.load_state_dict(obj, strict=True)
        except RuntimeError as e:
            raise PTQError(f"{path}: the state_dict does not fit {arch} ({_first_line(e)})") from None
        return module.eval()
    try:
        obj = _torch_load(path, weights_only=True)
    except pickle.UnpicklingError:
        if not trust_pickle:
            raise PTQError(f"{path} holds pickled Python objects (a whole nn.Module), which could run code when "
                           "opened; pass --trust-pickle if you trust this file, or save model.state_dict() and "
                           "give --arch module:Class") from None
        try:
            obj = _torch_load(path, weights_only=False)
        except Exception as e:  # arbitrary unpickling failures: the user vouched for this file
            raise PTQError(f"{path}: could not unpickle ({_first_line(e)})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise PTQError(f"{path}: not a readable PyTorch file ({_first_line(e)})") from None
    if isinstance(obj, torch.nn.Module):
        return obj.eval()
    if filetype.is_state_dict(obj):
        raise PTQError(f"{path}: a state_dict (weights without the architecture); give --arch module:Class, "
                       "the class (or function) that builds the network")
    if isinstance(obj, dict) and obj.get("format") == "bitgen-model":
        raise PTQError(f"{path}: already a bitgen model (integer); use it with emit / check / build directly")
    raise PTQError(f"{path}: holds a {type(obj).__name__}, not an nn.Module")


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
