"""The seam every back end plugs into: ``legalize -> plan -> emit -> execute``.

A back end turns a validated IR model into an artifact (C sources today; layer programs for
the MAX78000 accelerator or the SCAMP-5 array later) and gives an :class:`Executor` that runs
that very artifact (the C compiled for this machine, an emulated board, a simulator), so
:mod:`bitgen.check` compares any back end with the golden model the same way.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .. import ir


@dataclass(frozen=True)
class Options:
    """What a user may choose for one back-end run."""

    name: str = "model"  # prefix of every emitted symbol and file
    kernels: str = "generic"  # the C back end's kernel set (backends.c.targets)
    max_arena: int | None = None  # bytes of activations and scratch to plan within


@dataclass
class Artifact:
    """What a back end wrote: its files, the report (NAME.json) and what an executor loads."""

    name: str
    outdir: Path
    files: list[Path]
    report: dict[str, Any]
    sources: list[Path] = field(default_factory=list)


class Executor(Protocol):
    """Runs an artifact on int8 inputs (N, *input shape).

    ``run`` returns the outputs (N, output size), the argmax (N,) and, with ``trace``, every
    layer's output (None for a layer that never exists on its own, e.g. fused), or None where
    the executor cannot trace."""

    def run(self, x: np.ndarray, trace: bool = False) -> tuple[np.ndarray, np.ndarray, list | None]: ...

    def run_sequence(self, x: np.ndarray, trace: bool = False) -> tuple[np.ndarray, np.ndarray, list | None]:
        """For models with state: sequences (N, T, *input shape), each from the initial state;
        the same results with a frame axis after the first."""
        ...

    def close(self) -> None: ...


class Backend(ABC):
    name: str

    @abstractmethod
    def legalize(self, model: ir.Model, options: Options) -> None:
        """Raise a one-line BitgenError naming the first layer this back end cannot run."""

    @abstractmethod
    def plan(self, model: ir.Model, options: Options) -> Any:
        """Decide how each layer runs and where every tensor lives."""

    @abstractmethod
    def emit(self, model: ir.Model, outdir: str | Path, options: Options) -> Artifact:
        """Write the artifact into `outdir` (deterministic: same model, same bytes)."""

    def static_check(self, artifact: Artifact) -> str:
        """Checks of the artifact that need no input (raise a BitgenError on failure); the word
        for the report."""
        return "none"

    @abstractmethod
    def executor(self, artifact: Artifact, workdir: str | Path | None = None) -> Executor:
        """Something that runs the artifact on this machine."""
