"""The front door, fuzzed: whatever a user or an attacker hands the command line (a model file, a
build folder, a dataset file, an argument vector, an output path), ``bitgen`` either does its
job (exit 0) or refuses with exit status 2 and exactly one line on stderr, no traceback, within
a few seconds, and never runs out of memory or hangs.

Every case runs ``bitgen.cli.main`` in a child forked from a fork server that imported torch and
bitgen once, under a time limit (SIGALRM) and an address-space limit; stdout and stderr are
files. A child that is killed, or exits with anything but 0 or 2, or prints a traceback or more
than one line of error, fails the example.

Hypothesis draws the inputs by mutating valid ones: model dicts (every op kind, sequential and
graph, with a state), build.json files of a real build, dataset files of every format, and
argument vectors of every command. Cases per class: BITGEN_FUZZ_EXAMPLES (default 100), each
class a test of its own, so a run covers 6 x that many cases (plus the fixed cases below).
"""
from __future__ import annotations

import copy
import gzip
import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bitgen
from bitgen import encodings, ir
from bitgen.cli import main
import frontdoor_child
from models_for_tests import every_kernel_model, mlp


def _examples() -> int:
    text = os.environ.get("BITGEN_FUZZ_EXAMPLES", "100")
    if not text.isdigit() or int(text) < 1:
        raise pytest.UsageError(f"BITGEN_FUZZ_EXAMPLES={text!r}: expected a positive whole number")
    return int(text)


EXAMPLES = _examples()
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large, HealthCheck.large_base_example])
ERROR_SECONDS = 10.0  # a refusal comes this fast (2 shared cores, under load)
HARD_LIMIT_S = 40  # any case: killed after this (a hang)
MEMORY_MARGIN = 2 << 30  # bytes of address space a case may add to what this process has mapped
needs_rv = pytest.mark.skipif(shutil.which("riscv64-unknown-elf-gcc") is None, reason="needs gcc-riscv64-unknown-elf")


# ------------------------------------------------------------------------ running one case
@dataclass
class Outcome:
    argv: list[str]
    rc: int | None  # None: killed by a signal
    signal: int | None
    stdout: str
    stderr: str
    seconds: float

    def describe(self) -> str:
        how = f"signal {signal.Signals(self.signal).name}" if self.signal else f"exit {self.rc}"
        return f"bitgen {' '.join(map(repr, self.argv))} -> {how} in {self.seconds:.1f} s; stderr:\n{self.stderr[-3000:]}"


# Cases run in children of a fork server: a fresh process that imported torch and bitgen but
# never computed (a child forked from this test process, where other tests ran PyTorch's OpenMP
# pool, could hang in its first parallel region).
_FORKS = multiprocessing.get_context("forkserver")
_FORKS.set_forkserver_preload(["torch", "numpy", "bitgen.cli", "bitgen.modelfile", "bitgen.backends.c.emit",
                               "frontdoor_child"])


def run_cli(argv: list[str], cwd: Path, limit_s: int = HARD_LIMIT_S) -> Outcome:
    """``bitgen.cli.main(argv)`` in a child process with cwd, a time and a memory limit."""
    out_path, err_path = cwd / ".stdout", cwd / ".stderr"
    start = time.monotonic()
    p = _FORKS.Process(target=frontdoor_child.run, args=(list(argv), str(cwd), str(out_path), str(err_path), limit_s,
                                                        MEMORY_MARGIN))
    p.start()
    p.join(limit_s + 20)
    if p.is_alive():  # the alarm did not end it
        p.kill()
        p.join()
    seconds = time.monotonic() - start
    rc = p.exitcode
    sig = -rc if rc is not None and rc < 0 else None
    read = lambda p: p.read_text(errors="replace") if p.exists() else ""  # noqa: E731
    return Outcome(list(argv), None if sig else rc, sig, read(out_path), read(err_path), seconds)


def check_front_door(o: Outcome, *, must_refuse: bool = False) -> None:
    """Exit 0 (the input was fine after all), or exit 2 with one line, fast; nothing else."""
    assert o.signal is None, f"killed (hang or out of memory): {o.describe()}"
    assert "Traceback" not in o.stderr, o.describe()
    if o.rc == 0 and not must_refuse:
        return
    assert o.rc == 2, f"expected a refusal (exit 2): {o.describe()}"
    lines = o.stderr.splitlines()
    command = next((a for a in o.argv if not a.startswith("-")), "")
    assert len(lines) == 1, f"expected exactly one line on stderr: {o.describe()}"
    assert lines[0].startswith(f"bitgen {command}: error: ") or lines[0].startswith("bitgen: error: "), o.describe()
    assert o.seconds < ERROR_SECONDS, f"refused, but slowly: {o.describe()}"


@pytest.fixture
def case_dir(tmp_path):
    """A fresh folder per hypothesis example (tmp_path is shared by all examples of a test)."""
    def make() -> Path:
        return Path(tempfile.mkdtemp(dir=tmp_path))
    return make


# ------------------------------------------------------------------------------ the models
def graph_model() -> ir.Model:
    """Every graph op and a state: flatten/unflatten, a transposed conv, upsample, concat, abs,
    max pool, sign, mul, sub, linear."""
    rng = np.random.default_rng(1)
    values = lambda enc, shape: rng.choice(np.array(encodings.get(enc).values), size=shape)  # noqa: E731
    nodes = [
        ir.Node(ir.Flatten(), ["input"], "flat"),
        ir.Node(ir.Unflatten(shape=(1, 4, 4)), ["flat"], "un"),
        ir.Node(ir.ConvTranspose2d(weight=values("ternary", (1, 2, 3, 3)), encoding="ternary", stride=2,
                                   padding=1, output_padding=1), ["un"], "up1"),
        ir.Node(ir.Requant(multiplier=[1], shift=[2]), ["up1"], "rq"),
        ir.Node(ir.Upsample(factor=2), ["input"], "ups"),
        ir.Node(ir.Concat(), ["rq", "ups"], "cat"),
        ir.Node(ir.Abs(), ["cat"], "abs"),
        ir.Node(ir.MaxPool2d(2), ["abs"], "pool"),
        ir.Node(ir.Sign(threshold=[3]), ["pool"], "sg"),
        ir.Node(ir.Mul(), ["sg", "h"], "hn"),
        ir.Node(ir.Sub(shift=1), ["pool", "hn"], "d"),
        ir.Node(ir.Flatten(), ["d"], "f2"),
        ir.Node(ir.Linear(weight=values("2bitsym", (5, 48)), encoding="2bitsym"), ["f2"], "out"),
    ]
    h = ir.State("h", (3, 4, 4), "int8", source="hn", init=1)
    return ir.Model(ir.InputSpec((1, 4, 4)), nodes=nodes, states=[h], name="graph")


BASES = {"every": every_kernel_model, "graph": graph_model, "mlp": lambda: mlp(widths=(16, 8, 4))}


def _torchify(v):
    if isinstance(v, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(v))
    if isinstance(v, dict):
        return {k: _torchify(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_torchify(x) for x in v]
    return v


def save_payload(payload: dict, path: Path) -> Path:
    """A model file as bitgen.save writes it, from a (possibly broken) payload."""
    torch.save(_torchify(payload), path)
    return path


def payload_of(model: ir.Model) -> dict:
    return {"format": "bitgen-model", "version": 1, "ir": model.to_dict(), "qat": None}


# -------------------------------------------------------------------------- mutations
WEIRD = [None, True, False, 0, -1, 1, 3, 2**31, -(2**31) - 1, 2**63 - 1, 2**64, 10**30, 0.5, -2.5,
         float("nan"), float("inf"), "", "x", "xy", "7", "int8", "4bitsym", "input", "\n", "a\nb",
         [], [0], [1, 2], [1, 2, 3], ["a", "b"], [[1, 2]], [2**32, 2**32], {}, {"a": 1}]
WEIRD_ARRAYS = [np.zeros((0,), np.int64), np.zeros((), np.int64), np.ones((2, 2, 2, 2, 2), np.int64),
                np.full((3, 3), 0.5), np.ones((4,), bool), np.array([2**40, -(2**40)]),
                np.full((2, 2), np.nan), np.arange(6, dtype=np.int16).reshape(2, 3),
                np.ones((1, 1, 1, 1), np.float32), np.ones((1, 2 ** 20), np.int8)]


def paths_of(tree, prefix=()):
    """Every path to a node of a nested dict/list structure (arrays are leaves)."""
    out = [prefix] if prefix else []
    if isinstance(tree, dict):
        for k, v in tree.items():
            out += paths_of(v, prefix + (k,))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            out += paths_of(v, prefix + (i,))
    return out


def weird_values():
    return st.one_of(st.sampled_from(WEIRD), st.integers(), st.floats(), st.text(max_size=6),
                     st.lists(st.integers(-3, 2**33), max_size=4), st.sampled_from(WEIRD_ARRAYS))


@st.composite
def mutated(draw, tree, values=None):
    """``tree`` with one to three mutations: a node replaced, deleted, or a key added."""
    tree = copy.deepcopy(tree)
    values = values if values is not None else weird_values()
    for _ in range(draw(st.integers(1, 3))):
        paths = paths_of(tree)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = tree
        for k in path[:-1]:
            parent = parent[k]
        key = path[-1]
        action = draw(st.sampled_from(["replace", "replace", "replace", "delete", "add"]))
        if action == "replace":
            parent[key] = draw(values)
        elif action == "delete":
            del parent[key]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(["extra", "kind", "inputs", "shape", "version", "bias"]))] = draw(values)
        else:
            parent.append(draw(values))
    return tree


# Structural mutations that make a model huge or absurd without a huge file.
def _huge_input(d, dims):
    d["ir"]["input"]["shape"] = dims
    return d


HUGE_SHAPES = [[1, 2**32, 2**32], [1, 60000, 60000], [2**24], [1, 2**16, 2**16], [0, 4, 4], [-1, 4, 4], [],
               [1, 2**62, 2**62, 2**62], [1, 4]]


# ------------------------------------------------------------------------------ model files
@given(data=st.data())
@FUZZ
def test_mutated_model_files(data, case_dir):
    """Wrong-typed or missing fields anywhere in a model file: ops' fields, input, states,
    labels, the file's own format tag and version, shapes."""
    base = data.draw(st.sampled_from(sorted(BASES)), label="model")
    payload = data.draw(mutated(payload_of(BASES[base]())), label="payload")
    d = case_dir()
    path = save_payload(payload, d / "model.pt")
    command = data.draw(st.sampled_from(["emit", "emit", "check"]), label="command")
    argv = ["emit", str(path), "-o", str(d / "c")] if command == "emit" else ["check", str(path), "--random", "8"]
    check_front_door(run_cli(argv, d))


@given(data=st.data())
@FUZZ
def test_huge_or_absurd_shapes(data, case_dir):
    """Declared shapes that overflow or would take all memory or hours: the input, a linear
    layer with 2^24 outputs, an upsample by 2^16, an unflatten to a huge plane, a state."""
    kind = data.draw(st.sampled_from(["input", "linear", "upsample", "unflatten", "state"]), label="kind")
    if kind == "input":
        payload = _huge_input(payload_of(mlp(widths=(16, 8, 4))), data.draw(st.sampled_from(HUGE_SHAPES)))
    elif kind == "linear":
        payload = payload_of(ir.Model(ir.InputSpec((1,)), [ir.Linear(weight=np.ones((2**24, 1), np.int8), encoding="8bit")]))
    else:
        payload = payload_of(graph_model())
        nodes = payload["ir"]["nodes"]
        big = data.draw(st.sampled_from([2**16, 2**20, 2**31, 2**40]), label="factor")
        if kind == "upsample":
            next(n for n in nodes if n["kind"] == "upsample")["factor"] = [big, big]
        elif kind == "unflatten":
            next(n for n in nodes if n["kind"] == "unflatten")["shape"] = [big, big, 1]
        else:
            payload["ir"]["states"][0]["shape"] = [big, big, 3]
    d = case_dir()
    path = save_payload(payload, d / "model.pt")
    argv = data.draw(st.sampled_from([["emit", str(path), "-o", str(d / "c")], ["check", str(path), "--random", "8"]]))
    check_front_door(run_cli(argv, d))


# -------------------------------------------------------------------------- output paths
def _output_targets(d: Path) -> dict[str, str]:
    (d / "a_file").write_text("x")
    (d / "a_dir").mkdir()
    return {"file": str(d / "a_file"), "dir": str(d / "a_dir"), "under_file": str(d / "a_file" / "sub"),
            "dev_null": "/dev/null", "dash": "-", "empty": "", "proc": "/proc/bitgen-no/x", "new": str(d / "new" / "x")}


@given(data=st.data())
@FUZZ
def test_output_paths(data, case_dir, tmp_path_factory):
    """-o, --json and --keep pointing at a file, a folder, /dev/null, under a file, '-', nowhere."""
    d = case_dir()
    model = d / "model.pt"
    bitgen.save(mlp(widths=(16, 8, 4)), model)
    targets = _output_targets(d)
    which = data.draw(st.sampled_from(sorted(targets)), label="target")
    target = targets[which]
    argv = data.draw(st.sampled_from([
        ["emit", str(model), "-o", target],
        ["check", str(model), "--random", "4", "--json", target],
        ["check", str(model), "--random", "4", "--keep", target],
    ]), label="argv")
    o = run_cli(argv, d)
    check_front_door(o)
    if o.rc == 0 and "--json" in argv and target == "-":
        assert json.loads(o.stdout[o.stdout.index("{"):])["mismatches"] == 0  # '-' is standard output
    if o.rc == 0:
        assert not Path(d / "-").exists(), "--json - wrote a file named '-'"


@needs_rv
@pytest.mark.parametrize("option, which", [("-o", "file"), ("-o", "under_file"), ("-o", "dev_null"),
                                           ("--json", "dir"), ("--json", "under_file")])
def test_build_output_paths_are_refused_before_building(option, which, tmp_path):
    model = tmp_path / "model.pt"
    bitgen.save(mlp(widths=(16, 8, 4)), model)
    argv = ["build", "--board", "ch32v003", str(model), "-o", str(tmp_path / "fw"), "--prove", "4"]
    argv += [option, _output_targets(tmp_path)[which]]
    o = run_cli(argv, tmp_path)
    check_front_door(o, must_refuse=True)
    assert not (tmp_path / "fw" / "firmware.elf").exists(), "built before refusing the output path"


# ------------------------------------------------------------------------------ build.json
@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A real CH32V003 build (proved, hashed) to mutate."""
    if shutil.which("riscv64-unknown-elf-gcc") is None:
        pytest.skip("needs gcc-riscv64-unknown-elf")
    d = tmp_path_factory.mktemp("built")
    bitgen.save(mlp(widths=(16, 8, 4)), d / "model.pt")
    assert main(["build", "--board", "ch32v003", str(d / "model.pt"), "-o", str(d / "fw"), "--prove", "8"]) == 0
    return d


def _build_copy(built: Path, d: Path) -> Path:
    fw = d / "build" / "ch32v003"
    shutil.copytree(built / "fw", fw)
    rep = json.loads((fw / "build.json").read_text())
    # the copy's own paths, as a build in this folder would have written them
    rep["files"] = {k: (str(fw / Path(v).name) if v else v) for k, v in rep["files"].items()}
    rep["model"]["path"] = str(built / "model.pt")
    (fw / "build.json").write_text(json.dumps(rep))
    return fw


def _outside_image(rep: dict, d: Path) -> dict:
    """build.json naming a file outside its build folder as the image, with that file's hash."""
    secret = d / "secret.bin"
    secret.write_bytes(b"not firmware")
    rep = copy.deepcopy(rep)
    rep["files"]["bin"] = str(secret)
    rep["sha256"]["bin"] = hashlib.sha256(secret.read_bytes()).hexdigest()
    return rep


@given(data=st.data())
@FUZZ
def test_mutated_build_json(data, built, case_dir):
    """flash and run read build.json: invalid JSON, a list, wrong types, missing keys, an image
    outside the build folder."""
    d = case_dir()
    fw = _build_copy(built, d)
    rep = json.loads((fw / "build.json").read_text())
    kind = data.draw(st.sampled_from(["mutate", "mutate", "mutate", "text", "outside"]), label="kind")
    must_refuse = False
    if kind == "mutate":
        text = json.dumps(data.draw(mutated(rep, st.one_of(weird_values().filter(lambda v: not isinstance(v, np.ndarray)))),
                                    label="build.json"), default=str)
    elif kind == "text":
        text = data.draw(st.sampled_from(["", "{", "[]", "[1, 2]", "null", "5", '"x"', "{\"fits\": true}", "\x00\xff"]))
    else:
        text = json.dumps(_outside_image(rep, d))
        must_refuse = True
    (fw / "build.json").write_text(text, errors="replace")
    argv = data.draw(st.sampled_from([["flash", "--board", "ch32v003", str(fw), "--dry-run"],
                                      ["flash", "--board", "ch32v003-sim", str(fw)],
                                      ["run", "--board", "ch32v003", "--random", "2"]]), label="argv")
    o = run_cli(argv, d)
    check_front_door(o, must_refuse=must_refuse and argv[0] == "flash")


# ------------------------------------------------------------------------------ datasets
def _dataset_files(d: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    np.savez(d / "ok.npz", x=rng.normal(size=(12, 1, 4, 4)), y=rng.integers(0, 4, 12))
    usps = d / "usps"
    usps.mkdir()
    rows = [" ".join([str(int(rng.integers(0, 10)))] + [f"{v:.4f}" for v in rng.uniform(-1, 1, 256)])
            for _ in range(6)]
    (usps / "zip.test.gz").write_bytes(gzip.compress(("\n".join(rows) + "\n").encode()))
    mnist = d / "mnist"
    mnist.mkdir()
    imgs = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    head = bytes([0, 0, 8, 3]) + b"".join(int(v).to_bytes(4, "big") for v in imgs.shape)
    (mnist / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(head + imgs.tobytes()))
    labs = rng.integers(0, 10, 5, dtype=np.uint8)
    (mnist / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes([0, 0, 8, 1]) + (5).to_bytes(4, "big") + labs.tobytes()))
    return {"npz": d / "ok.npz", "usps": usps / "zip.test.gz", "mnist": mnist / "t10k-images-idx3-ubyte.gz"}


NPZ_BAD = {
    "x": [np.zeros((0, 1, 4, 4)), np.zeros(()), np.zeros((12,)), np.full((12, 1, 4, 4), np.nan),
          np.ones((12, 1, 4, 4), complex), np.array(["a"] * 12), np.ones((12, 1, 5, 5)), np.ones((12, 1, 4, 4), np.int8)],
    "y": [np.zeros((0,), np.int64), np.array(3), np.full(12, 10**9), np.full(12, 2**64 - 1, np.uint64),
          np.full(12, -1), np.full(12, 0.5), np.ones((12, 2), np.int64), np.full(12, 4), np.full(12, 9)],
    "labels": [np.array("abc"), np.array([]), np.array([1.5, 2.5]), np.array(["a"] * 3)],
}


@st.composite
def broken_bytes(draw, raw: bytes):
    how = draw(st.sampled_from(["truncate", "zero_body", "flip", "empty", "garbage"]))
    if how == "truncate":
        return raw[: draw(st.integers(0, max(0, len(raw) - 1)))]
    if how == "zero_body":
        return raw[:10] + bytes(len(raw) - 10)
    if how == "flip":
        b = bytearray(raw)
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(b) - 1))
            b[i] ^= 1 << draw(st.integers(0, 7))
        return bytes(b)
    if how == "empty":
        return b""
    return draw(st.binary(min_size=1, max_size=64))


@given(data=st.data())
@FUZZ
def test_mutated_dataset_files(data, case_dir):
    """npz arrays of the wrong kind (empty, 0-d, NaN, huge or negative labels, labels beyond the
    model's outputs), damaged gzip/IDX/USPS files, IDX headers declaring huge sizes."""
    d = case_dir()
    files = _dataset_files(d)
    kind = data.draw(st.sampled_from(["npz", "npz", "usps", "mnist", "idx_header"]), label="kind")
    model = d / "model.pt"
    if kind == "npz":
        rng = np.random.default_rng(0)
        arrays = {"x": rng.normal(size=(12, 1, 4, 4)), "y": rng.integers(0, 4, 12)}
        for key in data.draw(st.lists(st.sampled_from(sorted(NPZ_BAD)), min_size=1, max_size=2, unique=True)):
            arrays[key] = data.draw(st.sampled_from(NPZ_BAD[key]), label=key)
        np.savez(d / "bad.npz", **arrays)
        bitgen.save(ir.Model(ir.InputSpec((1, 4, 4)), [ir.Flatten(), ir.Linear(weight=np.ones((4, 16), np.int64), encoding="8bit")]), model)
        argv = ["check", str(model), "--dataset", "npz", "--data", str(d / "bad.npz"), "--random", "0"]
    elif kind == "usps":
        files["usps"].write_bytes(data.draw(broken_bytes(files["usps"].read_bytes())))
        bitgen.save(mlp(widths=(256, 8, 10)), model)
        argv = ["check", str(model), "--dataset", "usps", "--data", str(files["usps"].parent), "--random", "0"]
    else:
        path = files["mnist"]
        if kind == "mnist":
            path.write_bytes(data.draw(broken_bytes(path.read_bytes())))
        else:
            dims = data.draw(st.lists(st.integers(0, 2**32 - 1), min_size=3, max_size=3), label="dims")
            head = bytes([0, 0, 8, 3]) + b"".join(v.to_bytes(4, "big") for v in dims)
            path.write_bytes(gzip.compress(head + bytes(data.draw(st.integers(0, 64)))))
        bitgen.save(mlp(widths=(784, 8, 10)), model)
        argv = ["check", str(model), "--dataset", "mnist", "--data", str(path.parent), "--random", "0"]
    check_front_door(run_cli(argv, d))


@pytest.mark.parametrize("labels", [[0, 1, 2, 7], [0, 1, 2, 4]])
def test_labels_beyond_the_models_outputs_are_refused(labels, tmp_path):
    """A dataset whose labels name classes the model does not have gives no 0 % accuracy."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(4, 1, 4, 4)), y=np.array(labels))
    bitgen.save(ir.Model(ir.InputSpec((1, 4, 4)), [ir.Flatten(), ir.Linear(weight=np.ones((4, 16), np.int64), encoding="8bit")]),
                tmp_path / "m.pt")
    o = run_cli(["check", str(tmp_path / "m.pt"), "--data", str(tmp_path / "d.npz"), "--random", "0"], tmp_path)
    check_front_door(o, must_refuse=True)
    assert "outputs" in o.stderr


# ---------------------------------------------------------------------- argument vectors
BAD_INTS = ["-1", "0", "-5", "x", "", "1e3", "nan", "99999999999999999999", "0x10", "2.5"]
BAD_FLOATS = ["-1", "0", "nan", "inf", "-inf", "x", ""]
BAD_NAMES = ["bg", "bg_net", "1net", "net\n", "a-b", "int", "x" * 80, "", "ü", "firmware", "BG_X"]

# command -> (the valid base argv (MODEL, DIR placeholders), option -> bad values)
COMMANDS = {
    "emit": (["emit", "MODEL", "-o", "DIR/c"],
             {"--name": BAD_NAMES, "--kernels": ["nosuch", "", "generic,rv32ec"], "--max-arena": BAD_INTS,
              "--target": ["nosuch", "rv32ec"], "--input-shape": ["x", "1,,2", "-1", "0,0", "1e9,1e9"]}),
    "check": (["check", "MODEL", "--random", "4"],
              {"--random": BAD_INTS, "--seed": BAD_INTS, "--frames": BAD_INTS, "--limit": BAD_INTS,
               "--board": ["nosuch", "", "../x"], "--kernels": ["nosuch"], "--dataset": ["nosuch"],
               "--data": ["/nonexistent", "/dev/null", "/", "DIR"]}),
    "build": (["build", "--board", "ch32v003", "MODEL", "-o", "DIR/fw"],
              {"--board": ["nosuch", "", "host/../ch32v003"], "--prove": BAD_INTS, "--max-arena": BAD_INTS,
               "--name": BAD_NAMES, "--kernels": ["nosuch", "cortex-m4"]}),
    "flash": (["flash", "--board", "ch32v003", "DIR/nofw", "--dry-run"],
              {"--board": ["nosuch", ""]}),
    "run": (["run", "--board", "ch32v003-sim", "MODEL", "--random", "2"],
            {"--timeout": BAD_FLOATS, "--infer-timeout": BAD_FLOATS, "--retries": BAD_INTS, "--random": BAD_INTS,
             "--frames": BAD_INTS, "--board": ["nosuch"], "--limit": BAD_INTS, "--kernels": ["nosuch"],
             "--port": ["/nonexistent"], "--stream": ["/nonexistent", "DIR", "/dev/null", "DIR/bad.json"]}),
    "bench": (["bench", "--board", "ch32v003-sim", "MODEL", "--random", "1"],
              {"--random": BAD_INTS, "--max-arena": BAD_INTS, "--board": ["nosuch"], "--limit": BAD_INTS,
               "--kernels": ["nosuch"]}),
    "train": (["train", "--dataset", "npz", "--data", "DIR/d.npz", "--arch", "mlp:4", "--epochs", "1", "-o", "DIR/t.pt"],
              {"--epochs": BAD_INTS, "--lr": BAD_FLOATS, "--batch-size": BAD_INTS, "--threads": BAD_INTS,
               "--seed": ["x", "-1"], "--arch": ["mlp:", "mlp:0", "cnn:zz", "mlp:99999999999", "x"],
               "--config": ["/nonexistent", "DIR/d.npz", "DIR/bad.json"], "--warmup": BAD_INTS}),
    "quantize": (["quantize", "DIR/d.npz", "--dataset", "npz", "--data", "DIR/d.npz", "-o", "DIR/q.pt"],
                 {"--calib": BAD_INTS, "--limit": BAD_INTS, "--percentile": BAD_FLOATS + ["101"],
                  "--weights": ["nosuch"], "-o": ["DIR", "/dev/null/x"], "--json": ["DIR"], "--arch": ["x:y", "nosuch"],
                  "--arch-args": ["[", "5"]}),
    "import": (["import", "DIR/bad.json", "-o", "DIR/i.pt"],
               {"--input-size": BAD_INTS, "-o": ["DIR", "/dev/null/x", ""], "--dataset": ["nosuch"]}),
    "datasets": (["datasets", "make", "static-video", "--frames", "4", "-o", "DIR/s.npz"],
                 {"--frames": BAD_INTS, "--seed": BAD_INTS, "-o": ["DIR", "/dev/null/x", "", "-"]}),
    "tune-thresholds": (["tune-thresholds", "MODEL", "--stream", "DIR/d.npz", "--tolerance", "0.01", "-o", "DIR/t.pt"],
                        {"--tolerance": BAD_FLOATS + ["1", "2"], "--stream": ["/nonexistent", "DIR", "/dev/null"],
                         "-o": ["DIR", "/dev/null", ""], "--json": ["DIR", "/dev/null/x"]}),
}
GENERIC_BAD = [["--no-such-option"], [], ["--json"], ["-o"]]


@given(data=st.data())
@FUZZ
def test_argument_vectors(data, case_dir):
    """Each command with one to three of its options given a bad value, an unknown option, or a
    required argument left out; the rest of the vector is valid."""
    d = case_dir()
    bitgen.save(mlp(widths=(16, 8, 4)), d / "model.pt")
    rng = np.random.default_rng(0)
    np.savez(d / "d.npz", x=rng.normal(size=(8, 16)), y=rng.integers(0, 4, 8))
    (d / "bad.json").write_text('{"epochs": "many", "layers": 5}')
    command = data.draw(st.sampled_from(sorted(COMMANDS)), label="command")
    base, options = COMMANDS[command]
    argv = [a.replace("MODEL", str(d / "model.pt")).replace("DIR", str(d)) for a in base]
    chosen = data.draw(st.lists(st.sampled_from(sorted(options)), min_size=1, max_size=3, unique=True), label="options")
    for opt in chosen:
        value = data.draw(st.sampled_from(options[opt]), label=opt).replace("DIR", str(d))
        if opt in argv:
            argv[argv.index(opt) + 1] = value
        else:
            argv += [opt, value]
    if data.draw(st.booleans(), label="also generic"):
        extra = data.draw(st.sampled_from(GENERIC_BAD))
        if extra == [] and len(argv) > 2:
            del argv[data.draw(st.integers(1, len(argv) - 1))]  # something required, or a value, goes missing
        argv += extra
    check_front_door(run_cli(argv, d))


# --------------------------------------------------------------- fixed cases from the issue
@pytest.mark.parametrize("name", ["model\n", "bg", "bg_x", "BG", "firmware", "_x", "net-1"])
def test_names_that_are_no_usable_c_identifier_are_refused(name, tmp_path):
    bitgen.save(mlp(widths=(16, 8, 4)), tmp_path / "m.pt")
    o = run_cli(["emit", str(tmp_path / "m.pt"), "-o", str(tmp_path / "c"), "--name", name], tmp_path)
    check_front_door(o, must_refuse=True)
    assert not list(tmp_path.glob("c/*")), "files were written for a refused name"
