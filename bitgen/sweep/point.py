"""One point of a sweep: train -> build -> bench -> check, through the bitgen commands
themselves (run in this process, their output kept in the point's log.txt), into one row.

- ``bitgen train --config train.json``: the point's whole training config.
- for each board, ``bitgen build``: whether the firmware `bitgen flash` would write fits, its
  flash and SRAM (measured also when over budget), the kernel set kept, and the host proof of
  its sources; then ``bitgen bench`` on the dataset's first test inputs with that kernel set:
  instructions per inference, every output compared with golden on the emulated board. A point
  that does not fit the part is benched all the same (``bench --over-budget``: the emulator with
  more memory than the part), so it has its place in the picture, marked as not fitting.
- ``bitgen check`` of every kernel set whose numbers the row reports (dataset, random and
  extreme inputs, every output value): the accuracy and the mismatches.

A point that does not train, fits no board or is not bit-exact is a row with ``status``
"failed" and its ``reason``; nothing here raises.
"""
from __future__ import annotations

import contextlib
import io
import json
import shutil
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any, TextIO


class _Failed(Exception):
    """The point cannot go on (it did not train); the message is the row's reason."""


def run(job: dict[str, Any]) -> dict[str, Any]:
    """Run a job of :meth:`bitgen.sweep.space.Point.job`; returns its row (also written to the
    point's folder as row.json)."""
    d = Path(job["dir"])
    if d.exists():  # left by a run that was stopped: nothing in it may be read as this run's
        shutil.rmtree(d)
    d.mkdir(parents=True)
    row: dict[str, Any] = {
        "id": job["id"], "params": job["params"], "status": "ok", "reason": None,
        "accuracy": None, "accuracy_torch": None, "mismatches": 0, "compared": 0, "macs": None,
        "boards": {}, "checks": {}, "model": None, "dir": str(d), "seconds": {}, "wall_s": None,
        "host": socket.gethostname(),
    }
    start = time.perf_counter()
    with (d / "log.txt").open("w") as log:
        try:
            _pipeline(job, d, row, log)
        except _Failed as e:
            row["status"], row["reason"] = "failed", str(e)
        except Exception as e:  # a bug: keep the point as a row, the traceback in its log
            row["status"], row["reason"] = "failed", f"internal error: {type(e).__name__}: {e}"
            traceback.print_exc(file=log)
    row["wall_s"] = round(time.perf_counter() - start, 2)
    (d / "row.json").write_text(json.dumps(row, indent=2) + "\n")
    return row


def _cli(argv: list[str], log: TextIO) -> tuple[int, str | None]:
    """A bitgen command in this process: (exit status, its one-line error or None)."""
    from .. import cli

    err = io.StringIO()
    print(f"$ bitgen {' '.join(argv)}", file=log, flush=True)
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(err):
        rc = cli.main(argv)
    log.write(err.getvalue())
    log.flush()
    lines = [ln for ln in err.getvalue().splitlines() if ": error: " in ln]
    return rc, (lines[-1].split(": error: ", 1)[1] if lines else None)


def _timed(row: dict[str, Any], step: str, start: float) -> None:
    row["seconds"][step] = round(row["seconds"].get(step, 0.0) + time.perf_counter() - start, 2)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _pipeline(job: dict[str, Any], d: Path, row: dict[str, Any], log: TextIO) -> None:
    from ..harness import boards as known

    train = job["train"]
    data = ["--dataset", str(train["dataset"])] + (["--data", str(train["data"])] if train.get("data") else [])
    model = d / "model.pt"

    t = time.perf_counter()
    (d / "train.json").write_text(json.dumps(train, indent=2) + "\n")
    rc, err = _cli(["train", "--config", str(d / "train.json"), "-q", "-o", str(model)], log)
    _timed(row, "train", t)
    if rc != 0:
        raise _Failed(f"does not train: {err or f'exit status {rc}'}")
    row["model"] = str(model)

    for name, spec in job["boards"].items():
        b = row["boards"][name] = {"fits": None, "kernels": None, "flash": None, "sram": None,
                                   "flash_budget": None, "sram_budget": None, "instructions": None,
                                   "instructions_min": None, "instructions_max": None, "bench_kernels": None,
                                   "bench_memory_scale": None, "mismatches": 0, "reason": None}
        limits = (["--kernels", spec["kernels"]] if spec.get("kernels") else []) + (
            ["--max-arena", str(spec["max_arena"])] if spec.get("max_arena") is not None else [])
        bd = d / name
        t = time.perf_counter()
        rc, err = _cli(["build", "--board", name, str(model), "-o", str(bd / "build"), *limits], log)
        _timed(row, "build", t)
        rep = _read(bd / "build" / "build.json")
        if rep is not None:
            b.update(fits=bool(rep.get("fits")) and rc == 0, kernels=rep.get("kernels"),
                     flash=rep.get("flash_bytes"), sram=rep.get("sram_bytes"),
                     flash_budget=rep.get("flash_budget"), sram_budget=rep.get("sram_budget"))
            proof = rep.get("proof") or {}
            b["mismatches"] += int(proof.get("mismatches") or 0)
            row["compared"] += int(proof.get("compared") or 0)
        if rc != 0:
            b["fits"] = False
            b["reason"] = f"build: {err or f'exit status {rc}'}"

        # instructions of the image that would be deployed (its kernel set), else of the
        # fastest bench image, on the emulator enlarged to hold it where the part cannot
        kernels = b["kernels"] if b["fits"] else spec.get("kernels")
        bench_args = (["--kernels", kernels] if kernels else []) + (
            ["--max-arena", str(spec["max_arena"])] if spec.get("max_arena") is not None else [])
        # the build above measured the firmware: the bench builds only the image it counts
        unicorn = (known.get(name).emulator or {}).get("kind") == "unicorn"
        over = ["--over-budget", "--count-only"] if unicorn else []
        t = time.perf_counter()
        rc, err = _cli(["bench", "--board", name, str(model), *data, "--limit", str(job["bench_limit"]),
                        *bench_args, *over, "--json", str(bd / "bench.json")], log)
        _timed(row, "bench", t)
        bench = _read(bd / "bench.json") if rc in (0, 1) else None  # 1: it ran, with mismatches
        if bench is not None:
            ins = bench["instructions"]
            b.update(instructions=ins["median"], instructions_min=ins["min"], instructions_max=ins["max"],
                     bench_kernels=bench["kernels"], bench_memory_scale=bench.get("memory_scale", 1))
            b["mismatches"] += int(bench["mismatches"])
            row["compared"] += int(bench["compared"])
        else:
            why = f"bench: {err or f'exit status {rc}'}"
            b["reason"] = f"{b['reason']}; {why}" if b["reason"] else why

    # every kernel set whose numbers the row reports, else the first board's fastest
    sets = [k for b in row["boards"].values() for k in (b["kernels"] if b["fits"] else None, b["bench_kernels"]) if k]
    if not sets:
        sets = [known.get(next(iter(job["boards"]))).image_board.kernels[0]]
    for kernels in dict.fromkeys(sets):
        out = d / f"check-{kernels}.json"
        t = time.perf_counter()
        rc, err = _cli(["check", str(model), *data, "--kernels", kernels, "--random", str(job["check_random"]),
                        "--json", str(out)], log)
        _timed(row, "check", t)
        rep = _read(out) if rc in (0, 1) else None
        if rep is None:
            raise _Failed(f"check with {kernels} kernels: {err or f'exit status {rc}'}")
        row["checks"][kernels] = {"compared": rep["compared"], "mismatches": rep["mismatches"],
                                  "first_mismatch": rep["first_mismatch"]}
        row["compared"] += rep["compared"]
        if row["accuracy"] is None:
            row["accuracy"], row["accuracy_torch"] = rep["accuracy"]["golden"], rep["accuracy"]["torch"]
            row["macs"] = rep["macs"]

    row["mismatches"] = sum(c["mismatches"] for c in row["checks"].values()) + sum(
        b["mismatches"] for b in row["boards"].values())
    problems = []
    if row["mismatches"]:
        where = [f"{k} kernels ({c['mismatches']})" for k, c in row["checks"].items() if c["mismatches"]]
        where += [f"{n} ({b['mismatches']})" for n, b in row["boards"].items() if b["mismatches"]]
        problems.append(f"not bit-exact: {row['mismatches']} mismatches: {', '.join(where)}")
    if not any(b["fits"] for b in row["boards"].values()):
        problems.append("; ".join(f"{n}: {b['reason'] or 'does not fit'}" for n, b in row["boards"].items()))
    if problems:
        row["status"], row["reason"] = "failed", "; ".join(problems)
    print(f"row: {json.dumps(row)}", file=log)
    sys.stdout.flush()
