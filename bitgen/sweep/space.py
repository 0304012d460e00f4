"""A design space: what `bitgen sweep SPACE.toml` trains and measures.

```toml
[train]            # what every point shares: any key of a `bitgen train --config` file
dataset = "usps"
data = "../../shared/datasets/usps"    # paths are relative to this file
epochs = 10
# config = "net.toml"                  # a base training config; [train] keys win over it

[sweep]            # the values swept: a training option, or a path into the config
arch = ["mlp:16,16", "mlp:32,32"]
weights = ["2bitsym", "4bitsym"]
"nodes.conv1.args.out_channels, nodes.conv2.args.in_channels" = [8, 16]   # one value, several fields
lr = { min = 1e-3, max = 1e-2, log = true }    # a range: random and pareto search only

[search]           # method = "grid" (every combination, the default), "random" or "pareto"
method = "pareto"
samples = 30       # random and pareto: how many points
seed = 0
board = "ch32v003-sim"                  # pareto: whose instructions count (default: the first board)
objectives = ["accuracy", "instructions"]

[check]            # bitgen check of every kernel set a point deploys
random = 10000
[bench]            # bitgen bench: instructions per inference over the first N test inputs
limit = 8

[boards.ch32v003-sim]                   # every point is built and benched on each board
constraints = ["flash <= 16384", "sram <= 2048"]
# kernels = "rv32ec"   max_arena = 400  (as bitgen build / bench take them)
[boards.max78000-sim]
```

A path names nested fields with dots; in a list an entry is named by its index or by its
``name`` (graph nodes). A point's id is a hash of everything that decides its result (its
training config as written, the boards' kernels and arena limit, the check and bench
settings), so a sweep restarted into the same folder knows the points it has already run.
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BitgenError

METHODS = ("grid", "random", "pareto")
# What a row measures per board, and what the Pareto search can minimise or maximise.
METRICS = ("accuracy", "instructions", "flash", "sram")
MAXIMISED = ("accuracy",)
PATH_KEYS = ("data",)  # training options that name files: relative to the space file


class SpaceError(BitgenError):
    """A design space that cannot be read or run; one-line message."""


@dataclass(frozen=True)
class Range:
    """A continuous (or whole-number) interval, drawn by the random and Pareto searches."""

    low: float
    high: float
    log: bool = False
    step: float | None = None

    @property
    def integer(self) -> bool:
        return all(isinstance(v, int) for v in (self.low, self.high)) and (self.step is None or isinstance(self.step, int))

    def domain(self):
        from ray import tune

        if self.integer:
            step = self.step or 1
            if self.log:
                return tune.lograndint(self.low, self.high + 1) if step == 1 else tune.qlograndint(self.low, self.high, step)
            return tune.qrandint(self.low, self.high, step)
        if self.step:
            return (tune.qloguniform if self.log else tune.quniform)(self.low, self.high, self.step)
        return (tune.loguniform if self.log else tune.uniform)(self.low, self.high)


@dataclass(frozen=True)
class Constraint:
    """``metric op bound`` of one board, e.g. ``flash <= 16384`` or ``accuracy >= 0.9``."""

    metric: str
    op: str
    bound: float

    OPS = {"<=": lambda a, b: a <= b, "<": lambda a, b: a < b, ">=": lambda a, b: a >= b, ">": lambda a, b: a > b}

    @classmethod
    def parse(cls, text: str) -> "Constraint":
        m = re.fullmatch(r"\s*([a-z_]+)\s*(<=|>=|<|>)\s*([-+0-9.eE_]+)\s*", str(text))
        if not m or m[1] not in METRICS:
            raise SpaceError(f"constraint '{text}': expected METRIC OP NUMBER with METRIC one of "
                             f"{', '.join(METRICS)} and OP one of <=, <, >=, > (e.g. 'flash <= 16384')")
        try:
            bound = float(m[3].replace("_", ""))
        except ValueError:
            raise SpaceError(f"constraint '{text}': '{m[3]}' is not a number") from None
        return cls(m[1], m[2], int(bound) if bound.is_integer() else bound)

    def holds(self, value: float | None) -> bool:
        return value is not None and self.OPS[self.op](value, self.bound)

    def violation(self, value: float | None) -> float:
        """How far ``value`` is on the wrong side (> 0: violated; 0 or less: met), for Optuna."""
        if value is None:
            return 1.0
        return float(value - self.bound if self.op in ("<=", "<") else self.bound - value) + (
            1e-9 if self.op in ("<", ">") else 0.0)

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.bound}"


@dataclass
class BoardSpec:
    name: str
    kernels: str | None = None
    max_arena: int | None = None
    constraints: list[Constraint] = field(default_factory=list)


@dataclass
class Point:
    """One point of the space: the swept values and the whole training config they give."""

    id: str
    params: dict[str, Any]
    train: dict[str, Any]  # as written (relative paths), what the id hashes

    def job(self, space: "Space", out: Path) -> dict[str, Any]:
        """Everything a worker needs to run this point (plain data, paths absolute)."""
        train = dict(self.train)
        for key in PATH_KEYS:
            if isinstance(train.get(key), str):
                train[key] = str(space.resolve(train[key]))
        train.setdefault("threads", 1)  # one core per point; Ray runs several points at once
        return {"id": self.id, "params": self.params, "train": train,
                "boards": {b.name: {"kernels": b.kernels, "max_arena": b.max_arena} for b in space.boards},
                "check_random": space.check_random, "bench_limit": space.bench_limit,
                "dir": str((out / "points" / self.id).resolve())}


@dataclass
class Space:
    path: Path
    train: dict[str, Any]  # the shared config: the base config file's keys, then [train]'s
    sweep: dict[str, list[Any] | Range]
    boards: list[BoardSpec]
    method: str = "grid"
    samples: int | None = None
    seed: int = 0
    search_board: str | None = None
    objectives: list[str] = field(default_factory=lambda: ["accuracy", "instructions"])
    check_random: int = 10000
    bench_limit: int = 8

    # ------------------------------------------------------------------ reading
    @classmethod
    def load(cls, path: str | Path, data: str | None = None) -> "Space":
        """Read a space file; ``data``: the dataset of every point instead of [train]'s
        (``bitgen sweep --data``, relative to the current folder)."""
        p = Path(path)
        if not p.is_file():
            raise SpaceError(f"{path}: no such space file")
        try:
            d = tomllib.loads(p.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise SpaceError(f"{path}: not valid TOML ({str(e).splitlines()[0]})") from None
        if data is not None:
            if not Path(data).exists():
                raise SpaceError(f"--data {data}: no such file or folder")
            train = d.setdefault("train", {})
            if isinstance(train, dict):
                train["data"] = str(Path(data).resolve())
        return cls.from_dict(d, p)

    @classmethod
    def from_dict(cls, d: dict[str, Any], path: Path) -> "Space":
        unknown = sorted(set(d) - {"train", "sweep", "search", "check", "bench", "boards"})
        if unknown:
            raise SpaceError(f"{path}: unknown table(s) {', '.join(unknown)} (known: train, sweep, search, "
                             "check, bench, boards)")
        train = {_option(k): v for k, v in _table(d, "train", path).items()}
        base = train.pop("config", None)
        if base is not None:
            from ..commands.train_cmd import _read_config

            conf = {_option(k): v for k, v in _read_config(str(_relative(path, base))).items() if not k.startswith("_")}
            conf.update(train)
            train = conf  # the id hashes these contents, not the file's name
        for key in train:
            _check_option(key, path, "[train]")
        sweep = {}
        for key, values in _table(d, "sweep", path).items():
            for part in _fields(key):
                _check_option(_option(part.split(".")[0]), path, "[sweep]")
            sweep[key] = _values(key, values, path)
        boards = []
        for name, spec in _table(d, "boards", path).items():
            if not isinstance(spec, dict):
                raise SpaceError(f"{path}: [boards.{name}] must be a table")
            bad = sorted(set(spec) - {"kernels", "max_arena", "constraints"})
            if bad:
                raise SpaceError(f"{path}: [boards.{name}]: unknown key(s) {', '.join(bad)} "
                                 "(known: kernels, max_arena, constraints)")
            cons = spec.get("constraints", [])
            if isinstance(cons, str):
                cons = [c for c in cons.split(",") if c.strip()]
            boards.append(BoardSpec(name, spec.get("kernels"), spec.get("max_arena"), [Constraint.parse(c) for c in cons]))
        if not boards:
            raise SpaceError(f"{path}: no [boards.NAME] to build and bench on")
        _check_boards(boards, path)

        search = _table(d, "search", path)
        bad = sorted(set(search) - {"method", "samples", "seed", "board", "objectives"})
        if bad:
            raise SpaceError(f"{path}: [search]: unknown key(s) {', '.join(bad)}")
        space = cls(path=path.resolve(), train=train, sweep=sweep, boards=boards,
                    method=search.get("method", "grid"), samples=search.get("samples"), seed=search.get("seed", 0),
                    search_board=search.get("board"),
                    objectives=list(search.get("objectives", ["accuracy", "instructions"])),
                    check_random=_table(d, "check", path).get("random", 10000),
                    bench_limit=_table(d, "bench", path).get("limit", 8))
        space._validate()
        return space

    def _validate(self) -> None:
        where = str(self.path)
        if self.method not in METHODS:
            raise SpaceError(f"{where}: [search] method '{self.method}' (known: {', '.join(METHODS)})")
        if self.method == "grid":
            ranges = [k for k, v in self.sweep.items() if isinstance(v, Range)]
            if ranges:
                raise SpaceError(f"{where}: a grid needs lists of values; {', '.join(ranges)} is a range "
                                 "(use method = \"random\" or \"pareto\")")
        elif not isinstance(self.samples, int) or self.samples < 1:
            raise SpaceError(f"{where}: [search] method '{self.method}' needs samples = N (N >= 1)")
        if self.method != "grid" and not self.sweep:
            raise SpaceError(f"{where}: nothing to search: [sweep] is empty")
        names = [b.name for b in self.boards]
        if self.search_board is not None and self.search_board not in names:
            raise SpaceError(f"{where}: [search] board '{self.search_board}' is not one of the [boards] ({', '.join(names)})")
        bad = [o for o in self.objectives if o not in METRICS]
        if bad or not self.objectives:
            raise SpaceError(f"{where}: [search] objectives must be among {', '.join(METRICS)}, got {self.objectives}")
        if not isinstance(self.check_random, int) or self.check_random < 0:
            raise SpaceError(f"{where}: [check] random must be a whole number 0 or more")
        if not isinstance(self.bench_limit, int) or self.bench_limit < 1:
            raise SpaceError(f"{where}: [bench] limit must be a whole number 1 or more")
        if "dataset" not in self.train:
            raise SpaceError(f"{where}: [train] needs dataset = ... (as bitgen train --dataset)")
        if self.method == "grid":
            self.point({k: v[0] for k, v in self.sweep.items()})  # every path exists

    def resolve(self, p: str) -> Path:
        return _relative(self.path, p)

    @property
    def board(self) -> str:
        """The board whose measurements the Pareto search optimises."""
        return self.search_board or self.boards[0].name

    def board_spec(self, name: str) -> BoardSpec:
        return next(b for b in self.boards if b.name == name)

    # ------------------------------------------------------------------ points
    def point(self, params: dict[str, Any]) -> Point:
        train = copy.deepcopy(self.train)
        for key, value in params.items():
            for path in _fields(key):
                _set(train, path, value, self.path)
        ident = {
            "train": train,
            "boards": {b.name: {"kernels": b.kernels, "max_arena": b.max_arena} for b in self.boards},
            "check_random": self.check_random, "bench_limit": self.bench_limit,
        }
        digest = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()
        return Point(digest[:12], dict(params), train)

    def grid(self) -> list[Point]:
        keys = list(self.sweep)
        return [self.point(dict(zip(keys, combo))) for combo in itertools.product(*(self.sweep[k] for k in keys))]

    def size(self) -> float:
        """Number of distinct points (inf with a continuous range)."""
        n = 1.0
        for v in self.sweep.values():
            if isinstance(v, Range):
                if not v.integer:
                    return math.inf
                n *= (v.high - v.low) // (v.step or 1) + 1
            else:
                n *= len(v)
        return n

    def random(self) -> list[Point]:
        """``samples`` distinct points drawn with Ray Tune's samplers, seeded: the same space
        draws the same points (fewer when the space has fewer)."""
        import numpy as np

        domains = self.domains()
        rng = np.random.default_rng(self.seed)
        want = int(min(self.samples, self.size()))
        points: dict[str, Point] = {}
        for _ in range(100 * want):
            if len(points) == want:
                break
            params = {self.name_of(n): _plain(d.sample(random_state=rng)) for n, d in domains.items()}
            p = self.point(params)
            points.setdefault(p.id, p)
        return list(points.values())

    def domains(self) -> dict[str, Any]:
        """Ray Tune search domains, under short names p0, p1, ... (keys can be paths)."""
        from ray import tune

        return {f"p{i}": (v.domain() if isinstance(v, Range) else tune.choice(v))
                for i, (k, v) in enumerate(self.sweep.items())}

    def name_of(self, short: str) -> str:
        return list(self.sweep)[int(short[1:])]

    def params_of(self, config: dict[str, Any]) -> dict[str, Any]:
        """The swept values of a Tune config of :meth:`domains`."""
        return {self.name_of(n): _plain(v) for n, v in config.items() if re.fullmatch(r"p\d+", n)}

    def study_name(self) -> str:
        """The Optuna study of a Pareto search of this space (resumed from OUT/optuna.journal)."""
        key = {"space": self.point({}).train, "sweep": {k: repr(v) for k, v in self.sweep.items()},
               "boards": [b.name for b in self.boards], "objectives": self.objectives, "board": self.board,
               "seed": self.seed}
        return "sweep-" + hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]


# ---------------------------------------------------------------------- helpers
def _table(d: dict[str, Any], name: str, path: Path) -> dict[str, Any]:
    t = d.get(name, {})
    if not isinstance(t, dict):
        raise SpaceError(f"{path}: '{name}' must be a table ([{name}])")
    return t


def _option(key: str) -> str:
    return key.replace("-", "_")


def _check_option(key: str, path: Path, where: str) -> None:
    from ..commands.train_cmd import config_keys

    known = config_keys()
    if key not in known:
        raise SpaceError(f"{path}: {where} '{key}' is not a training option (known: {', '.join(sorted(known))})")


def _fields(key: str) -> list[str]:
    """The config paths one swept key sets (several, comma-separated, take the same value)."""
    parts = [p.strip() for p in key.split(",")]
    if not all(parts):
        raise SpaceError(f"[sweep] key '{key}': an empty path")
    return [p if "." in p else _option(p) for p in parts]


def _values(key: str, values: Any, path: Path) -> list[Any] | Range:
    if isinstance(values, list):
        if not values:
            raise SpaceError(f"{path}: [sweep] '{key}' has no values")
        return values
    if isinstance(values, dict):
        bad = sorted(set(values) - {"min", "max", "log", "step"})
        if bad or "min" not in values or "max" not in values:
            raise SpaceError(f"{path}: [sweep] '{key}': a range is {{ min = A, max = B [, log = true] [, step = S] }}")
        lo, hi = values["min"], values["max"]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lo, hi)) or lo > hi:
            raise SpaceError(f"{path}: [sweep] '{key}': min and max must be numbers with min <= max")
        if values.get("log") and lo <= 0:
            raise SpaceError(f"{path}: [sweep] '{key}': a log range needs min > 0")
        return Range(lo, hi, bool(values.get("log", False)), values.get("step"))
    raise SpaceError(f"{path}: [sweep] '{key}' must be a list of values or a range {{ min = A, max = B }}")


def _set(conf: dict[str, Any], path: str, value: Any, where: Path) -> None:
    """Set a dotted path of a training config; list entries by index or by their 'name'."""
    parts = path.split(".")
    node: Any = conf
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, dict):
            if last:
                node[part] = copy.deepcopy(value)
                return
            if part not in node:
                hint = " (give a base config in [train]: config = FILE)" if i == 0 else ""
                raise SpaceError(f"{where}: [sweep] path '{path}': no '{part}' in the training config{hint}")
            node = node[part]
        elif isinstance(node, list):
            idx = int(part) if part.isdigit() else next(
                (j for j, e in enumerate(node) if isinstance(e, dict) and e.get("name") == part), None)
            if idx is None or idx >= len(node):
                raise SpaceError(f"{where}: [sweep] path '{path}': no entry '{part}' in '{'.'.join(parts[:i])}'")
            if last:
                node[idx] = copy.deepcopy(value)
                return
            node = node[idx]
        else:
            raise SpaceError(f"{where}: [sweep] path '{path}': '{'.'.join(parts[:i])}' is a value, not a table")


def _relative(space: Path, p: str) -> Path:
    q = Path(p).expanduser()
    return q if q.is_absolute() else (space.parent / q).resolve()


def shown(params: dict[str, Any]) -> str:
    """The swept values for people: ``arch=mlp:16,16 lr=0.00223`` (floats to 3 digits)."""
    return " ".join(f"{k}={f'{v:.3g}' if isinstance(v, float) else v}" for k, v in params.items())


def _plain(v: Any) -> Any:
    """NumPy scalars (from Tune's samplers) as Python values: JSON and hashing see the same."""
    if hasattr(v, "item") and not isinstance(v, (list, dict, str)):
        return v.item()
    return v


def _check_boards(boards: list[BoardSpec], path: Path) -> None:
    from ..harness import boards as known

    names = known.available()
    for b in boards:
        if b.name not in names:
            raise SpaceError(f"{path}: unknown board '{b.name}' (available: {', '.join(names)})")
        if b.kernels is not None and b.kernels not in known.get(b.name).image_board.kernels:
            raise SpaceError(f"{path}: board {b.name} builds with {', '.join(known.get(b.name).image_board.kernels)} "
                             f"kernels, not {b.kernels}")
