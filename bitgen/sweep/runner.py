"""Running a sweep's points on Ray Tune.

Ray Tune schedules the points (one trial each, one CPU each, at most ``workers`` at a time) on
a local Ray runtime started on this machine's cores, or on an existing cluster (``address``),
and retries a trial whose worker died. Grid and random points are given to Tune as a list (the
points already in results.jsonl left out); the Pareto search is Optuna's TPE sampler through
Tune's OptunaSearch, its study kept in OUT/optuna.journal so a restarted search goes on from
what it has seen. Each finished point is appended to results.jsonl by a Tune callback in this
process, the moment Tune reports it.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable

# Tune's own result files would repeat results.jsonl; its progress tables the lines printed here.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

import ray  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune.search.optuna import OptunaSearch  # noqa: E402

from ..errors import BitgenError  # noqa: E402
from . import point  # noqa: E402
from .front import measurements  # noqa: E402
from .results import Results  # noqa: E402
from .space import MAXIMISED, Space, shown  # noqa: E402

MAX_FAILURES = 2  # retries of a trial whose worker process died (an exception is a row, not a retry)


def _reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse at once a cluster address where nothing answers (Ray itself retries for minutes).
    ``auto`` (the cluster this machine belongs to) is left to Ray."""
    if address == "auto":
        return
    host, sep, port = address.split("://", 1)[-1].rpartition(":")
    if not sep or not host or not port.isdigit():
        raise BitgenError(f"--address {address}: expected HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except (OSError, ValueError) as e:
        raise BitgenError(f"--address {address}: nothing answers there "
                          f"({getattr(e, 'strerror', None) or e})") from None


class Ray:
    """The Ray runtime of one sweep, started (or joined) the first time a point must run: a
    restarted sweep with nothing left to do starts no Ray. Joins the cluster at ``address``, or
    starts a local runtime with ``workers`` CPUs (default: this machine's cores); a runtime it
    started is shut down on leaving the ``with`` block."""

    def __init__(self, address: str | None, workers: int | None):
        self.address, self.requested = address, workers
        self.workers: int | None = None  # points run at once, once connected
        self._started = False

    def connect(self) -> int:
        if self.workers is not None:
            return self.workers
        if self.address:
            _reachable(self.address)
        if not ray.is_initialized():
            # Ray's warnings (token authentication on a local runtime, Tune's missing result
            # files that results.jsonl replaces) would bury the sweep's own lines
            common = dict(log_to_driver=False, logging_level=logging.ERROR, configure_logging=True)
            if self.address:
                try:
                    ray.init(address=self.address, **common)
                except (ConnectionError, RuntimeError, ValueError) as e:
                    raise BitgenError(f"--address {self.address}: cannot join the Ray cluster "
                                      f"({str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__})") from None
            else:
                ray.init(num_cpus=self.requested or os.cpu_count() or 1, include_dashboard=False, **common)
            self._started = True
            logging.getLogger("ray.tune").setLevel(logging.ERROR)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = max(1, min(self.requested or cpus, cpus))
        return self.workers

    def __enter__(self) -> "Ray":
        return self

    def __exit__(self, *exc) -> None:
        if self._started:
            ray.shutdown()


def objectives(row: dict[str, Any], space: Space) -> dict[str, Any]:
    """What a trial reports for the search: the search board's measurements and Optuna's
    constraint values (> 0: violated): the firmware fits, then each of the board's constraints."""
    m = measurements(row, space.board)
    b = row.get("boards", {}).get(space.board) or {}
    deployable = row.get("status") == "ok" and not row.get("mismatches")
    cons = [0.0 if (b.get("fits") and deployable) else 1.0]
    cons += [c.violation(m[c.metric]) for c in space.board_spec(space.board).constraints]
    return m | {"constraints": cons}


class ConstrainedOptunaSearch(OptunaSearch):
    """Tune's OptunaSearch, telling Optuna each point's constraint values (> 0: violated), which
    its samplers read to prefer feasible points, and a point with nothing measured as failed."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if result is not None and trial_id in self._ot_trials:
            for i, value in enumerate(result.get("constraints") or [1.0]):
                self._ot_trials[trial_id].set_constraint(f"c{i}", value)
            if any(result.get(m) is None for m in self.metric):
                result, error = None, True
        super().on_trial_complete(trial_id, result, error)


@ray.remote(num_cpus=0)
class Known:
    """The rows known so far (from results.jsonl and this run), for trials the search proposes
    twice: a point already run is reported again, not run again."""

    def __init__(self, rows: dict[str, dict[str, Any]]):
        self.rows = rows

    def get(self, ident: str) -> dict[str, Any] | None:
        return self.rows.get(ident)

    def put(self, ident: str, row: dict[str, Any]) -> None:
        self.rows[ident] = row


def _trainable(config: dict[str, Any], space: Space, out: str, known=None) -> None:
    job = config["job"] if "job" in config else space.point(space.params_of(config)).job(space, Path(out))
    row = ray.get(known.get.remote(job["id"])) if known is not None else None
    cached = row is not None
    if row is None:
        row = point.run(job) | {"ray_node": ray.get_runtime_context().get_node_id()}  # which node of the cluster
    tune.report(objectives(row, space) | {"row": json.dumps(row), "cached": cached})


class _Rows(tune.Callback):
    """Appends each finished point to results.jsonl (and results.csv) in the driver."""

    def __init__(self, results: Results, space: Space, out: Path, say: Callable[[str], None], total: int,
                 known=None):
        self.results, self.space, self.out, self.say, self.total = results, space, out, say, total
        self.known = known
        self.count = 0

    def _write(self, row: dict[str, Any]) -> None:
        self.results.append(row)
        self.results.write_csv()
        if self.known is not None:
            self.known.put.remote(row["id"], row)
        self.count += 1
        self.say(f"[{self.count}/{self.total}] {summary_line(row)}")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if not result.get("cached"):
            self._write(json.loads(result["row"]))

    def on_trial_error(self, iteration, trials, trial, **info):
        config = trial.config
        job = config["job"] if "job" in config else self.space.point(self.space.params_of(config)).job(
            self.space, self.out)
        try:
            err = str(trial.get_error()).strip().splitlines()[-1]
        except Exception:  # the error could not be read back: say so
            err = "no error message"
        self._write({"id": job["id"], "params": job["params"], "status": "failed",
                     "reason": f"worker failed {MAX_FAILURES + 1} times: {err}", "accuracy": None,
                     "mismatches": 0, "boards": {}, "model": None, "wall_s": None})


def summary_line(row: dict[str, Any]) -> str:
    params = shown(row.get("params", {}))
    if row.get("accuracy") is None:
        return f"{row['id']} {params}: failed: {row.get('reason')}"
    parts = [f"accuracy {100 * row['accuracy']:.2f} %", f"mismatches {row.get('mismatches', 0)}"]
    for name, b in row.get("boards", {}).items():
        ins = "-" if b.get("instructions") is None else f"{b['instructions']:,.0f} instr"
        fits = "fits" if b.get("fits") else "does not fit"
        parts.append(f"{name} {ins}, {b.get('flash') or '-'} B flash ({fits})")
    state = "" if row.get("status") == "ok" else f"  FAILED: {row.get('reason')}"
    return f"{row['id']} {params}: {', '.join(parts)} ({row.get('wall_s')} s){state}"


def _trial_dir(trial) -> str:
    job = trial.config.get("job")
    return f"point-{job['id']}" if job else f"trial-{trial.trial_id}"


def run(space: Space, out: Path, runtime: Ray, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the points of ``space`` not yet in OUT/results.jsonl, on ``runtime``.
    Returns {"planned": ids of this space's points (grid/random), "ran": points run now,
    "skipped": points found done}."""
    out = out.resolve()
    results = Results(out)
    done = results.done()
    run_config = tune.RunConfig(
        storage_path=str(out / "ray"), name=f"{space.method}-{time.strftime('%Y%m%d-%H%M%S')}", verbose=0,
        failure_config=tune.FailureConfig(max_failures=MAX_FAILURES))
    trainable = tune.with_resources(tune.with_parameters(_trainable, space=space, out=str(out)), {"cpu": 1})

    if space.method in ("grid", "random"):
        points = space.grid() if space.method == "grid" else space.random()
        todo = [p.job(space, out) for p in points if p.id not in done]
        if not todo:
            say(f"{len(points)} points, all already in {results.jsonl}")
            return {"planned": [p.id for p in points], "skipped": len(points)}
        workers = runtime.connect()
        say(f"{len(points)} points, {len(points) - len(todo)} already in {results.jsonl}, "
            f"{len(todo)} to run on {workers} Ray worker(s)")
        if todo:
            tuner = tune.Tuner(trainable, param_space={"job": tune.grid_search(todo)},
                               tune_config=tune.TuneConfig(max_concurrent_trials=workers, reuse_actors=True,
                                                           trial_dirname_creator=_trial_dir),
                               run_config=_with_callback(run_config, _Rows(results, space, out, say, len(todo))))
            tuner.fit()
        return {"planned": [p.id for p in points], "skipped": len(points) - len(todo)}

    # the Pareto search: Optuna's (multi-objective, constrained) TPE sampler, through Tune
    import optuna

    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "optuna.journal")))
    name = space.study_name()
    seen = 0
    if name in optuna.get_all_study_names(storage):
        seen = sum(t.state.is_finished() for t in optuna.load_study(study_name=name, storage=storage).trials)
    todo = max(0, space.samples - seen)
    workers = runtime.connect() if todo else 0
    say(f"Pareto search of {space.objectives} on {space.board}: {space.samples} trials, {seen} already in "
        f"{out / 'optuna.journal'}, {todo} to run on {workers} Ray worker(s)")
    if todo:
        out.mkdir(parents=True, exist_ok=True)
        known = Known.remote(done)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = optuna.samplers.TPESampler(seed=space.seed,
                                             n_startup_trials=min(10, max(2, space.samples // 3)), multivariate=True)
        search = ConstrainedOptunaSearch(metric=list(space.objectives),
                                         mode=["max" if o in MAXIMISED else "min" for o in space.objectives],
                                         sampler=sampler, storage=storage, study_name=name)
        trainable = tune.with_resources(tune.with_parameters(_trainable, space=space, out=str(out), known=known),
                                        {"cpu": 1})
        tuner = tune.Tuner(trainable, param_space=space.domains(),
                           tune_config=tune.TuneConfig(search_alg=search, num_samples=todo,
                                                       max_concurrent_trials=workers, reuse_actors=True,
                                                       trial_dirname_creator=_trial_dir),
                           run_config=_with_callback(run_config, _Rows(results, space, out, say, todo, known)))
        tuner.fit()
    return {"planned": None, "skipped": None}


def _with_callback(rc: tune.RunConfig, cb: tune.Callback) -> tune.RunConfig:
    rc.callbacks = [cb]
    return rc
