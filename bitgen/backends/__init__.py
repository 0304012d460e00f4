"""Back ends: what turns a validated IR into something that runs (:mod:`.base` is the seam).

``c``: static C for microcontrollers (:mod:`.c`), executed on the host through cffi and on
boards through the harness.
"""
from __future__ import annotations

import importlib

from ..errors import BitgenError
from .base import Artifact, Backend, Executor, Options  # noqa: F401

# back-end name -> "module:class", imported on first use
BACKENDS = {"c": "bitgen.backends.c:CBackend"}


class BackendError(BitgenError):
    pass


def get(name: str) -> Backend:
    if name not in BACKENDS:
        raise BackendError(f"unknown back end '{name}' (available: {', '.join(BACKENDS)})")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)()
