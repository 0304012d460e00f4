"""bitgen sweep: a tiny design space on a local Ray runtime (every point trained, checked, built
and benched; a point that cannot train is a row with its reason; a point over the part's flash
is benched on the emulator enlarged to hold it and shown as not deployable), a restart that
skips the finished points, the Pareto search and its restart, the front, and --fuzz as Ray
tasks (a planted mismatch is caught and saved with its model and inputs).

The sweeps run in this process on one Ray runtime shared by the module (``ray_runtime``): a
sweep joins a runtime that is already up and leaves it running, so the suite pays Ray's
start-up once. A real Ray cluster (nodes started with the ``ray`` CLI) is
test_a_sweep_spreads_over_a_ray_cluster, behind BITGEN_RAY_CLUSTER_TEST."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray.tune", reason="bitgen sweep needs the [sweep] extra")
pytest.importorskip("optuna", reason="bitgen sweep needs the [sweep] extra")

import bitgen  # noqa: E402
from bitgen import cli, fuzz  # noqa: E402
from bitgen.harness import boards  # noqa: E402
from bitgen.sweep import front, runner  # noqa: E402
from bitgen.sweep.results import Results  # noqa: E402
from bitgen.sweep.space import Space, SpaceError  # noqa: E402

needs_rv = pytest.mark.skipif(shutil.which("riscv64-unknown-elf-gcc") is None, reason="needs gcc-riscv64-unknown-elf")

SPACE = """
[train]
dataset = "npz"
data = "d.npz"
epochs = 1
seed = 0
weights = "8bit"

[sweep]
# mlp:0 does not train: a failed row, not a crash; mlp:128,128 (8-bit weights, 18 KB) is over the
# CH32V003's 16 KB of flash: benched all the same, on the emulator with twice the part's memory
arch = ["mlp:4", "mlp:0", "mlp:128,128"]

[check]
random = 8
[bench]
limit = 2

[boards.ch32v003-sim]
constraints = ["flash <= 16384", "sram <= 2048"]
"""


@pytest.fixture(scope="module")
def ray_runtime():
    """One local Ray runtime (2 CPUs) for every sweep of this module."""
    rt = runner.Ray(None, 2)
    rt.connect()
    yield
    import ray

    ray.shutdown()


def _sweep(*argv: str, capsys) -> tuple[int, str, str]:
    """bitgen sweep in this process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    rc = cli.main(["sweep", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _space(tmp_path: Path, text: str = SPACE) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 12)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=(x[:, 0] > 0).astype(np.int64))
    (tmp_path / "space.toml").write_text(text)
    return tmp_path / "space.toml"


def _rows(out: Path) -> list[dict]:
    return Results(out).rows()  # a line cut short by a kill is left out


@needs_rv
def test_a_sweep_runs_every_point_and_a_restart_skips_the_finished_ones(tmp_path, ray_runtime, capsys, monkeypatch):
    space = _space(tmp_path)
    out = tmp_path / "out"
    rc, stdout, stderr = _sweep(str(space), "-o", str(out), "--json", str(tmp_path / "sweep.json"), "--workers", "2",
                                capsys=capsys)
    assert rc == 0, stdout + stderr
    assert "Traceback" not in stderr and "3 to run on 2 Ray worker(s)" in stdout

    rows = {row["params"]["arch"]: row for row in _rows(out)}
    assert sorted(rows) == ["mlp:0", "mlp:128,128", "mlp:4"]
    bad, good, big = rows["mlp:0"], rows["mlp:4"], rows["mlp:128,128"]
    assert bad["status"] == "failed" and bad["reason"].startswith("does not train:") and "mlp" in bad["reason"]
    assert good["status"] == "ok" and good["mismatches"] == 0 and good["compared"] > 0
    b = good["boards"]["ch32v003-sim"]
    assert b["fits"] and b["kernels"] == "rv32ec" and b["mismatches"] == 0 and b["bench_memory_scale"] == 1
    assert all(isinstance(b[k], int) and b[k] > 0 for k in ("flash", "sram", "instructions"))
    assert 0 <= good["accuracy"] <= 1 and good["checks"]["rv32ec"]["mismatches"] == 0
    assert (out / good["model"]).is_file()
    bitgen.load(out / good["model"])  # the row's model file is a bitgen model
    assert good["ray_node"] and good["seconds"]["bench"] > 0

    # over the part's flash: measured (bit-exact) on the enlarged emulator, never deployable
    nb = big["boards"]["ch32v003-sim"]
    assert nb["fits"] is False and nb["flash"] > nb["flash_budget"] == 16384 and "does not fit" in nb["reason"]
    assert nb["bench_memory_scale"] == 2 and nb["bench_kernels"] == "rv32ec"
    assert nb["instructions"] > b["instructions"] and nb["mismatches"] == 0 and big["mismatches"] == 0
    assert big["checks"]["rv32ec"]["mismatches"] == 0 and big["accuracy"] is not None
    assert big["status"] == "failed" and "does not fit" in big["reason"]  # it fits no board of the space

    csv = (out / "results.csv").read_text().splitlines()
    assert len(csv) == 4 and "ch32v003-sim.instructions" in csv[0]

    summary = json.loads((tmp_path / "sweep.json").read_text())
    assert summary["report"] == "sweep" and summary["count"] == 3 and summary["mismatches"] == 0
    assert sorted(f["params"]["arch"] for f in summary["failed"]) == ["mlp:0", "mlp:128,128"]
    assert [p["id"] for p in summary["front"]["ch32v003-sim"]] == [good["id"]]
    assert Path(summary["front_png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shown = json.loads((out / "front.json").read_text())["boards"]["ch32v003-sim"]
    assert shown["front"] == [good["id"]]
    assert shown["limits"]["constraints"] == ["flash <= 16384", "sram <= 2048"]
    drawn = {p["id"]: p for p in shown["points"]}
    assert drawn[big["id"]]["instructions"] == nb["instructions"] and not drawn[big["id"]]["deployable"]
    assert not drawn[big["id"]]["failed"] and drawn[bad["id"]]["failed"]  # red (over a limit), grey (failed)
    assert "does not fit" in drawn[big["id"]]["not_deployable_because"][0]
    assert any("violates flash <= 16384" in w for w in drawn[big["id"]]["not_deployable_because"])

    # killed halfway: the failed point's row never written, the last line cut short
    lines = (out / "results.jsonl").read_text().splitlines()
    kept = [line for line in lines if json.loads(line)["id"] != bad["id"]]
    (out / "results.jsonl").write_text("\n".join(kept) + "\n" + '{"id": "' + bad["id"][:5])
    model_time = (out / good["model"]).stat().st_mtime_ns
    rc, stdout, stderr = _sweep(str(space), "-o", str(out), "--workers", "1", capsys=capsys)
    assert rc == 0, stdout + stderr
    assert "3 points, 2 already in" in stdout and "1 to run" in stdout
    assert (out / good["model"]).stat().st_mtime_ns == model_time  # the finished point was not run again
    again = _rows(out)
    assert [row["id"] for row in again] == [json.loads(k)["id"] for k in kept] + [bad["id"]]
    assert again[:2] == [json.loads(k) for k in kept]

    # nothing left: Ray is not even asked for
    monkeypatch.setattr(runner.Ray, "connect", lambda self: pytest.fail("Ray joined with nothing to run"))
    rc, stdout, stderr = _sweep(str(space), "-o", str(out), capsys=capsys)
    assert rc == 0 and "all already in" in stdout, stdout + stderr
    assert len(_rows(out)) == 3


def test_dry_run_lists_the_points_and_what_the_folder_holds(tmp_path, capsys):
    space = _space(tmp_path, SPACE.replace('arch = ["mlp:4", "mlp:0", "mlp:128,128"]', 'arch = ["mlp:4", "mlp:8"]\n'
                                           'weights = ["2bitsym", "ternary"]'))
    out = tmp_path / "out"
    first = Space.load(space).grid()[0]
    out.mkdir()
    (out / "results.jsonl").write_text(json.dumps({"id": first.id, "params": first.params}) + "\n")
    assert cli.main(["sweep", str(space), "-o", str(out), "--dry-run", "--json", str(tmp_path / "plan.json")]) == 0
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["count"] == 4 and plan["done"] == 1
    assert {tuple(p["params"].values()) for p in plan["points"]} == {
        ("mlp:4", "2bitsym"), ("mlp:4", "ternary"), ("mlp:8", "2bitsym"), ("mlp:8", "ternary")}


SPACES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("sweep-*.toml"))


@pytest.mark.parametrize("path", SPACES, ids=[p.stem for p in SPACES])
def test_every_example_space_loads(path):
    space = Space.load(path)
    points = space.grid() if space.method == "grid" else space.random()
    assert len({p.id for p in points}) == len(points) >= 2
    assert space.train["dataset"] and all(b.name.endswith("-sim") for b in space.boards)


def test_the_usps_example_is_the_issues_space():
    space = Space.load(Path(__file__).resolve().parents[1] / "examples" / "sweep-usps-mlp.toml")
    assert len(space.grid()) >= 24 and set(space.sweep) == {"arch", "weights", "norm"}
    assert [b.name for b in space.boards] == ["ch32v003-sim", "max78000-sim"]


def test_point_ids_hash_what_decides_a_result(tmp_path):
    space = Space.load(_space(tmp_path))
    a, b, _ = space.grid()
    assert a.id != b.id and space.point(a.params).id == a.id
    (tmp_path / "space.toml").write_text(SPACE.replace("random = 8", "random = 9"))
    assert Space.load(tmp_path / "space.toml").point(a.params).id != a.id


@pytest.mark.parametrize("text, message", [
    ("[train]\ndataset = 'npz'\n[nosuch]\n", "unknown table"),
    ("[train]\ndataset = 'npz'\n[sweep]\nepochz = [1]\n[boards.ch32v003-sim]\n", "'epochz' is not a training option"),
    ("[train]\ndataset = 'npz'\n[sweep]\nlr = { min = 0.1, max = 0.2 }\n[boards.ch32v003-sim]\n", "is a range"),
    ("[train]\ndataset = 'npz'\n[boards.nosuch]\n", "unknown board 'nosuch'"),
    ("[train]\ndataset = 'npz'\n[boards.ch32v003-sim]\nconstraints = ['flash =< 3']\n", "constraint 'flash =< 3'"),
    ("[train]\ndataset = 'npz'\n[boards.ch32v003-sim]\nkernels = 'cortex-m4'\n", "not cortex-m4"),
    ("[train]\ndataset = 'npz'\n[sweep]\n'layers.0.out' = [1]\n[boards.ch32v003-sim]\n", "no 'layers'"),
    ("[train]\ndataset = 'npz'\n[search]\nmethod = 'random'\n[boards.ch32v003-sim]\n", "needs samples"),
    ("[train\n", "not valid TOML"),
])
def test_a_bad_space_is_one_line_before_any_work(tmp_path, capsys, text, message):
    (tmp_path / "s.toml").write_text(text)
    with pytest.raises(SpaceError, match=message):
        Space.load(tmp_path / "s.toml")
    assert cli.main(["sweep", str(tmp_path / "s.toml"), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bitgen sweep: error: ")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("address", ["127.0.0.1:1", "ray://127.0.0.1:1", "nocolon"])
def test_a_cluster_that_cannot_be_joined_is_one_line_at_once(tmp_path, capsys, address):
    space = _space(tmp_path)
    assert cli.main(["sweep", str(space), "-o", str(tmp_path / "out"), "--address", address]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"bitgen sweep: error: --address {address}: "), err


def test_a_swept_path_sets_every_field_it_names(tmp_path):
    (tmp_path / "net.json").write_text(json.dumps({"layers": [{"kind": "linear", "out": 8}, {"kind": "linear", "out": 4}]}))
    (tmp_path / "s.toml").write_text("[train]\ndataset = 'digits'\nconfig = 'net.json'\n"
                                     "[sweep]\n'layers.0.out, layers.1.out' = [16, 32]\n[boards.ch32v003-sim]\n")
    points = Space.load(tmp_path / "s.toml").grid()
    assert [[lay["out"] for lay in p.train["layers"]] for p in points] == [[16, 16], [32, 32]]


def test_the_front_keeps_the_deployable_points_none_beats():
    assert front.pareto([(0.9, 100), (0.8, 50), (0.85, 120), (0.9, 100), (0.7, 60)], [True, False]) == [0, 1, 3]
    space = Space.from_dict({"train": {"dataset": "digits"}, "boards": {"ch32v003-sim": {
        "constraints": ["flash <= 1000"]}}}, Path("s.toml"))

    def row(ident, acc, ins, flash, fits=True, mismatches=0):
        return {"id": ident, "status": "ok", "params": {}, "accuracy": acc, "mismatches": mismatches,
                "boards": {"ch32v003-sim": {"fits": fits, "instructions": ins, "flash": flash, "sram": 10}}}

    rows = [row("fast", 0.8, 100, 900), row("best", 0.9, 200, 900), row("slow", 0.85, 300, 900),
            row("big", 0.95, 50, 2000), row("wrong", 0.99, 10, 500, mismatches=1), row("nofit", 0.99, 10, 500, False)]
    b = front.front_data(rows, space)["boards"]["ch32v003-sim"]
    assert b["front"] == ["fast", "best"]
    why = {p["id"]: p["not_deployable_because"] for p in b["points"]}
    assert why["big"] == ["violates flash <= 1000 (2000)"]
    assert "not bit-exact (1 mismatches)" in why["wrong"] and why["nofit"] == ["does not fit"]


def test_the_fuzz_batch_catches_a_planted_mismatch_and_keeps_its_model(tmp_path, monkeypatch):
    def off_by_one(real):  # a golden model whose last layer disagrees with the C
        def run(model, x, all_layers=False):
            out = real(model, x, all_layers=all_layers)
            return out[:-1] + [out[-1] ^ 1] if all_layers else out
        return run

    monkeypatch.setattr(fuzz.golden, "run", off_by_one(fuzz.golden.run))
    monkeypatch.setattr(fuzz.golden, "run_sequence", off_by_one(fuzz.golden.run_sequence))
    r = fuzz.run_batch(seed=3, count=3, kernel_sets=["generic"], runtime_dir=tmp_path / "rt")
    assert r["models"] == 3 and r["comparisons"] == 3
    assert len(r["mismatches"]) == 3, "a planted difference was not found"
    saved = fuzz.save_mismatch(r["mismatches"][0], tmp_path / "m")
    model = bitgen.load(saved["model"]).ir
    assert model.digest() == r["mismatches"][0]["model_hash"]
    assert np.load(saved["inputs"]).shape == tuple(saved["input_shape"])
    assert "differs" in saved["what"]


def test_the_same_seed_draws_the_same_models(tmp_path):
    a = fuzz.run_batch(seed=5, count=2, kernel_sets=["generic"], runtime_dir=tmp_path / "rt")
    b = fuzz.run_batch(seed=5, count=2, kernel_sets=["generic"], runtime_dir=tmp_path / "rt")
    assert a["mismatches"] == b["mismatches"] == [] and a["inputs"] == b["inputs"] > 0


def test_fuzz_on_ray_counts_models_and_a_restart_skips_finished_batches(tmp_path, ray_runtime, capsys):
    out = tmp_path / "fuzz"
    rc, stdout, stderr = _sweep("--fuzz", "4", "--batch", "2", "--kernels", "generic", "-o", str(out),
                                "--json", str(tmp_path / "fuzz.json"), capsys=capsys)
    assert rc == 0, stdout + stderr
    rep = json.loads((tmp_path / "fuzz.json").read_text())
    assert rep["report"] == "fuzz" and rep["models"] == 4 and rep["mismatches"] == 0 and rep["inputs"] > 0
    assert rep["batches"] == 2 and rep["failed_batches"] == []
    rc, stdout, stderr = _sweep("--fuzz", "4", "--batch", "2", "--kernels", "generic", "-o", str(out), capsys=capsys)
    assert rc == 0 and "2 batches already in" in stdout, stdout + stderr
    assert json.loads((out / "fuzz.json").read_text())["models"] == 4


def test_random_search_draws_distinct_points_the_same_way_each_time(tmp_path):
    _space(tmp_path, SPACE.replace('arch = ["mlp:4", "mlp:0", "mlp:128,128"]', 'arch = ["mlp:4", "mlp:8"]\n'
                                   'lr = { min = 0.001, max = 0.1, log = true }\n'
                                   'batch_size = { min = 8, max = 64, step = 8 }')
                     + '[search]\nmethod = "random"\nsamples = 5\nseed = 1\n')
    space = Space.load(tmp_path / "space.toml")
    a, b = space.random(), space.random()
    assert [p.id for p in a] == [p.id for p in b] and len({p.id for p in a}) == 5
    for p in a:
        assert p.params["arch"] in ("mlp:4", "mlp:8") and 0.001 <= p.params["lr"] <= 0.1
        assert isinstance(p.params["batch_size"], int) and p.params["batch_size"] % 8 == 0
        assert p.train["lr"] == p.params["lr"]


@needs_rv
def test_the_pareto_search_runs_on_ray_and_resumes_its_study(tmp_path, ray_runtime, capsys, monkeypatch):
    space = _space(tmp_path, SPACE.replace('arch = ["mlp:4", "mlp:0", "mlp:128,128"]', 'arch = ["mlp:4", "mlp:6"]\n'
                                           'lr = { min = 0.001, max = 0.1, log = true }')
                   + '[search]\nmethod = "pareto"\nsamples = 2\n')
    out = tmp_path / "out"
    rc, stdout, stderr = _sweep(str(space), "-o", str(out), "--workers", "2", capsys=capsys)
    assert rc == 0, stdout + stderr
    rows = _rows(out)
    assert 1 <= len(rows) <= 2 and all(row["status"] == "ok" for row in rows)  # a point proposed twice runs once
    assert (out / "optuna.journal").is_file() and (out / "front.png").is_file()
    monkeypatch.setattr(runner.Ray, "connect", lambda self: pytest.fail("Ray joined with nothing to run"))
    rc, stdout, stderr = _sweep(str(space), "-o", str(out), capsys=capsys)
    assert rc == 0 and "2 trials, 2 already in" in stdout, stdout + stderr
    assert len(_rows(out)) == len(rows)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@needs_rv
@pytest.mark.skipif(not os.environ.get("BITGEN_RAY_CLUSTER_TEST"),
                    reason="starts a two-node Ray cluster with the ray CLI (about a minute): BITGEN_RAY_CLUSTER_TEST=1")
def test_a_sweep_spreads_over_a_ray_cluster(tmp_path):
    """Two Ray nodes of one CPU each, started with the ray CLI as on two machines (a head, and a
    node joining it); `bitgen sweep --address` runs one point on each."""
    ray_cli = Path(sys.executable).with_name("ray")
    if not ray_cli.is_file():
        pytest.skip("no ray command beside this Python (pip install 'bitgen[sweep]')")
    port = _free_port()
    env = os.environ | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": os.urandom(32).hex(), "RAY_USAGE_STATS_ENABLED": "0"}
    common = ["--num-cpus=1", "--disable-usage-stats", "--block"]
    nodes = []
    temp = Path(tempfile.mkdtemp(prefix="bg-ray-"))  # short: Ray's socket paths must stay under 108 bytes
    log = (tmp_path / "nodes.log").open("w")
    try:
        # each `ray start --block` keeps its node's processes as its children and stops them on SIGTERM
        nodes.append(subprocess.Popen([str(ray_cli), "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1",
                                       "--include-dashboard=false", f"--temp-dir={temp}", *common],
                                      env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        address = f"127.0.0.1:{port}"
        for _ in range(60):
            if subprocess.run([str(ray_cli), "status", f"--address={address}"], env=env,
                              capture_output=True).returncode == 0:
                break
            assert nodes[0].poll() is None, "the head node stopped: " + (tmp_path / "nodes.log").read_text()[-2000:]
            time.sleep(0.5)
        nodes.append(subprocess.Popen([str(ray_cli), "start", f"--address={address}", "--node-ip-address=127.0.0.1",
                                       *common], env=env, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True))
        for _ in range(60):
            st = subprocess.run([str(ray_cli), "status", f"--address={address}"], env=env, capture_output=True, text=True)
            if st.stdout.count(" node_") >= 2:
                break
            assert nodes[1].poll() is None, "the second node stopped: " + (tmp_path / "nodes.log").read_text()[-2000:]
            time.sleep(0.5)
        assert st.stdout.count(" node_") >= 2, st.stdout + st.stderr

        space = _space(tmp_path, SPACE.replace('arch = ["mlp:4", "mlp:0", "mlp:128,128"]', 'arch = ["mlp:4", "mlp:6"]'))
        code = "import sys; from bitgen.cli import main; sys.exit(main(sys.argv[1:]))"
        r = subprocess.run([sys.executable, "-c", code, "sweep", str(space), "-o", str(tmp_path / "out"),
                            "--address", address, "--json", str(tmp_path / "sweep.json")],
                           env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "2 to run on 2 Ray worker(s)" in r.stdout
        rows = _rows(tmp_path / "out")
        assert len(rows) == 2 and all(row["status"] == "ok" for row in rows)
        assert len({row["ray_node"] for row in rows}) == 2, "both points ran on one node"
        assert json.loads((tmp_path / "sweep.json").read_text())["ray_address"] == address
    finally:
        for p in reversed(nodes):
            p.terminate()
        for p in reversed(nodes):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        log.close()
        shutil.rmtree(temp, ignore_errors=True)
