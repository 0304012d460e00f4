"""What every JSON report bitgen writes has in common (the fields are documented in README.md,
"JSON reports").

Every report starts with ``report`` (which command wrote it: emit, check, build, run, bench),
``schema`` (the version of its fields: it changes when a field is renamed, removed or changes
meaning) and ``bitgen_version``. The same things have the same names in all of them:
``model_hash`` (the model's identity, :meth:`bitgen.ir.Model.digest`), ``kernels`` (the kernel
set), ``instructions`` (the count per inference, with ``instruction_source`` saying what was
counted) and integers stay integers.
"""
from __future__ import annotations

from typing import Any, Iterable

from . import __version__

SCHEMA = 1


def header(report: str) -> dict[str, Any]:
    return {"report": report, "schema": SCHEMA, "bitgen_version": __version__}


def count_stats(values: Iterable[int]) -> dict[str, Any] | None:
    """min, median, max (integers: the median of an even number of counts is the lower of the
    two middle ones, a count that was measured) and the mean of counts; None for no counts."""
    v = sorted(int(c) for c in values)
    if not v:
        return None
    return {"min": v[0], "median": v[(len(v) - 1) // 2], "max": v[-1], "mean": round(sum(v) / len(v), 1)}
