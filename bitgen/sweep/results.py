"""OUT/results.jsonl (one row per point, appended as each point finishes: what a restarted sweep
skips) and OUT/results.csv (the same rows, one column per parameter and per board measurement)."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

# per-board columns of the CSV, in order
BOARD_COLUMNS = ("fits", "kernels", "flash", "sram", "instructions", "mismatches", "reason")


class Results:
    def __init__(self, out: str | Path, name: str = "results"):
        self.out = Path(out)
        self.jsonl = self.out / f"{name}.jsonl"
        self.csv = self.out / f"{name}.csv"

    def rows(self) -> list[dict[str, Any]]:
        """Every complete row, in the order written (a last line cut short by a kill is left out)."""
        if not self.jsonl.exists():
            return []
        rows = []
        for line in self.jsonl.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
        return rows

    def done(self) -> dict[str, dict[str, Any]]:
        """Rows by point id (the last one where a point was written twice)."""
        return {r["id"]: r for r in self.rows()}

    def append(self, row: dict[str, Any]) -> None:
        """One line, flushed to disk before the next point can be reported."""
        self.out.mkdir(parents=True, exist_ok=True)
        line = json.dumps(self.relative(row), sort_keys=False) + "\n"
        with self.jsonl.open("a") as f:
            if f.tell() and not self._ends_with_newline():
                f.write("\n")  # a line cut short by a kill stays on its own line
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def _ends_with_newline(self) -> bool:
        with self.jsonl.open("rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"

    def relative(self, row: dict[str, Any]) -> dict[str, Any]:
        """Paths of a row relative to OUT (the folder can move)."""
        row = dict(row)
        for key in ("model", "dir"):
            if row.get(key) and Path(row[key]).is_absolute():
                try:
                    row[key] = str(Path(row[key]).relative_to(self.out.resolve()))
                except ValueError:
                    pass
        return row

    def write_csv(self, rows: list[dict[str, Any]] | None = None) -> None:
        rows = self.rows() if rows is None else rows
        params = list(dict.fromkeys(k for r in rows for k in r.get("params", {})))
        boards = list(dict.fromkeys(b for r in rows for b in r.get("boards", {})))
        head = ["id", "status", "reason", *params, "accuracy", "mismatches", "compared",
                *(f"{b}.{c}" for b in boards for c in BOARD_COLUMNS), "wall_s", "model"]
        with self.csv.open("w", newline="") as f:
            w = csv.DictWriter(f, head, extrasaction="ignore")
            w.writeheader()
            for r in rows:
                flat = {k: r.get(k) for k in ("id", "status", "reason", "accuracy", "mismatches", "compared",
                                             "wall_s", "model")}
                flat |= {p: _cell(v) for p, v in r.get("params", {}).items()}
                flat |= {f"{b}.{c}": v.get(c) for b, v in r.get("boards", {}).items() for c in BOARD_COLUMNS}
                w.writerow(flat)


def _cell(v: Any) -> Any:
    return json.dumps(v) if isinstance(v, (list, dict)) else v
