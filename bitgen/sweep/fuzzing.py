"""``bitgen sweep --fuzz N``: the exactness property of the random models (:mod:`bitgen.fuzz`)
over N models, in batches run as Ray tasks (one CPU each; Ray retries a task whose worker died).

Each batch is one seeded hypothesis run, so batch b of seed s draws the same models wherever it
runs; finished batches are rows of OUT/batches.jsonl and a restarted run skips them. A mismatch
comes back with its model file and inputs, saved under OUT/mismatches/.
"""
from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import ray

from .. import fuzz
from .results import Results


def batch_seed(seed: int, index: int) -> int:
    return seed * 1_000_003 + index


def _run_batch(seed: int, count: int, kernel_sets: list[str]) -> dict[str, Any]:
    # the runtime objects are shared by the tasks of one machine (keyed by their sources)
    return fuzz.run_batch(seed, count, kernel_sets, Path(tempfile.gettempdir()) / "bitgen-fuzz-runtime")


def run(n: int, kernel_sets: list[str], out: Path, runtime, seed: int = 0, batch: int = 100,
        say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the batches of N models not yet in OUT/batches.jsonl on ``runtime``
    (:class:`bitgen.sweep.runner.Ray`)."""
    out = out.resolve()
    results = Results(out, "batches")
    done = results.done()
    sizes = [min(batch, n - i * batch) for i in range(math.ceil(n / batch))]
    ids = [f"{seed}-{i}-{size}-{'+'.join(kernel_sets)}" for i, size in enumerate(sizes)]
    todo = [i for i in range(len(sizes)) if ids[i] not in done]
    skipped = len(sizes) - len(todo)
    workers = runtime.connect() if todo else 0
    task = ray.remote(num_cpus=1, max_retries=2)(_run_batch)
    pending = {task.remote(batch_seed(seed, i), sizes[i], kernel_sets): i for i in todo}
    say(f"{n} random models in {len(sizes)} batches of up to {batch}, {skipped} batches already "
        f"in {results.jsonl}, {len(pending)} to run on {workers} Ray worker(s), kernels {', '.join(kernel_sets)}")
    start, models = time.perf_counter(), 0
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        i = pending.pop(ready[0])
        row: dict[str, Any] = {"id": ids[i], "batch": i, "seed": batch_seed(seed, i)}
        try:
            r = ray.get(ready[0])
        except ray.exceptions.RayError as e:
            row |= {"status": "failed", "reason": str(e).strip().splitlines()[-1], "models": 0, "inputs": 0,
                    "comparisons": 0, "mismatches": []}
        else:
            saved = [fuzz.save_mismatch(m, out / "mismatches" / f"{ids[i]}-{m['model_index']}-{m['kernels']}")
                     for m in r["mismatches"]]
            row |= {"status": "ok", "models": r["models"], "inputs": r["inputs"], "comparisons": r["comparisons"],
                    "mismatches": saved, "seconds": r["seconds"]}
        results.append(row)
        models += row["models"]
        rate = models / max(time.perf_counter() - start, 1e-9)
        say(f"batch {i}: {row['models']} models, {len(row['mismatches'])} mismatches"
            + (f" (FAILED: {row['reason']})" if row["status"] != "ok" else "")
            + f"  [{len(sizes) - len(pending)}/{len(sizes)} batches, {rate:.1f} models/s]")
    rows = [r for r in results.rows() if r["id"] in set(ids)]
    return {
        "models": sum(r["models"] for r in rows),
        "inputs": sum(r["inputs"] for r in rows),
        "comparisons": sum(r["comparisons"] for r in rows),
        "kernels": kernel_sets,
        "mismatches": sum(len(r["mismatches"]) for r in rows),
        "mismatched": [m for r in rows for m in r["mismatches"]],
        "failed_batches": [{"batch": r["batch"], "reason": r["reason"]} for r in rows if r["status"] != "ok"],
        "batches": len(sizes), "batch_size": batch, "seed": seed,
        "batches_skipped": skipped,
    }
