"""The SCAMP-5 back end: the simulator's instruction semantics, the lowering of PixelRNN's
in-pixel layers and the property that random small programs (thresholds, binary convolutions,
the recurrent cell) in the simulator's ideal mode equal golden on every decision and readout."""
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitgen import ir, modelfile
from bitgen.backends.scamp5 import execute, isa, lower
from bitgen.backends.scamp5.program import Program
from bitgen.backends.scamp5.simulator import NoiseModel, SimulationError, Simulator
from bitgen.cli import main


def model(h=8, c=4, k=3, p=2, kr=3, rnn=True, t0=0, t1=1, tr=0, relu=True, seed=0, grid=(2, 2), decoder=False):
    """PixelRNN's shape at a small size: sign, C binary kernels, [ReLU], pool, sign, tile, cell."""
    rng = np.random.default_rng(seed)
    nodes = [ir.Node(ir.Sign(threshold=[t0]), ["input"], "b0"),
             ir.Node(ir.Conv2d(weight=rng.choice([-1, 1], (c, 1, k, k)), encoding="binary", padding=k // 2),
                     ["b0"], "conv")]
    prev = "conv"
    if relu:
        nodes.append(ir.Node(ir.ReLU(), [prev], "relu"))
        prev = "relu"
    if p > 1:
        nodes.append(ir.Node(ir.MaxPool2d((p, p), (p, p)), [prev], "pool"))
        prev = "pool"
    nodes.append(ir.Node(ir.Sign(threshold=np.atleast_1d(t1)), [prev], "b1"))
    prev = "b1"
    if c > 1:
        nodes.append(ir.Node(ir.Tile(rows=grid[0], cols=grid[1]), [prev], "tile"))
        prev = "tile"
    states = []
    if rnn:
        def conv(i, o):
            return ir.Node(ir.Conv2d(weight=rng.choice([-1, 1], (1, 1, kr, kr)), encoding="binary", padding=kr // 2),
                           [i], o)
        nodes += [conv(prev, "fi"), conv("h", "fh"), ir.Node(ir.Add(out_dtype="int32"), ["fi", "fh"], "gs"),
                  ir.Node(ir.Sign(threshold=[tr]), ["gs"], "f"), ir.Node(ir.Mul(), ["f", "h"], "hn"),
                  conv(prev, "oi"), conv("h", "oh"), ir.Node(ir.Add(out_dtype="int32"), ["oi", "oh"], "o")]
        states = [ir.State("h", (1, grid[0] * h // p, grid[1] * h // p), "int8", source="hn", init=1)]
        prev = "o"
    if decoder:
        n = grid[0] * grid[1] * (h // p) ** 2
        nodes += [ir.Node(ir.Flatten(), [prev], "flat"),
                  ir.Node(ir.Linear(weight=rng.integers(-7, 8, (3, n)) * 2 + 1, encoding="4bitsym"), ["flat"], "fc")]
    return ir.Model(ir.InputSpec((1, h, h)), nodes=nodes, states=states, labels=["a", "b", "c"] if decoder else None)


def run_exact(m, clips, weights="streamed", iw=10):
    prog, a = lower.lower(m, lower.Options(weights=weights, iw=iw))
    res = execute.simulate(prog, a, clips)
    return prog, a, res, execute.compare(m, a, clips, res)


# ------------------------------------------------------------------------ the simulator
def sim(shape=(8, 8), batch=1):
    return Simulator(Program(shape), batch)


def test_analog_neighbour_reads_and_digital_moves_follow_the_documented_orientation():
    s = sim()
    s.a["A"] = np.arange(64).reshape(1, 8, 8)
    s.execute(isa.instruction("movx", "B", "A", "east"))
    assert s.a["B"][0, 2, 3] == s.a["A"][0, 2, 4]  # x0_east: the value of the east neighbour
    s.execute(isa.instruction("subx", "C", "A", "north", "B"))
    assert s.a["C"][0, 2, 3] == s.a["A"][0, 1, 3] - s.a["B"][0, 2, 3]
    s.d["R5"] = np.zeros((1, 8, 8), bool)
    s.d["R5"][0, 2, 3] = True
    s.execute(isa.instruction("SET", "R4"))  # RE: bits move east
    s.execute(isa.instruction("DNEWS0", "R6", "R5"))
    assert np.argwhere(s.d["R6"][0]).tolist() == [[2, 4]]
    s.execute(isa.instruction("scamp5_load_pattern", "R7", 1, 2, 0x01, 0x03))  # rows 0..1, cols 0..3
    assert s.d["R7"][0, :2, :4].all() and s.d["R7"].sum() == 8


def test_flag_masks_analog_writes_only():
    s = sim()
    s.a["A"] = np.full((1, 8, 8), 3)
    s.d["R5"] = np.zeros((1, 8, 8), bool)
    s.d["R5"][0, 0] = True
    s.execute(isa.instruction("WHERE", "R5"))
    s.execute(isa.instruction("add", "B", "A", "A"))
    s.execute(isa.instruction("NOT", "R6", "R5"))  # digital: not masked
    assert (s.a["B"][0, 0] == 6).all() and (s.a["B"][0, 1:] == 0).all() and s.d["R6"][0, 1:].all()


def test_what_the_hardware_cannot_do_is_refused():
    with pytest.raises(ValueError, match="in place"):
        isa.check(isa.instruction("sub", "A", "B", "A"))
    s = sim()
    s.a["A"] = np.full((1, 8, 8), 3)
    with pytest.raises(SimulationError, match="odd"):
        s.execute(isa.instruction("divq", "B", "A"))
    s.execute(isa.instruction("AND", "R5", "R6", "R7"))
    with pytest.raises(SimulationError, match="clobbered"):
        s.execute(isa.instruction("MOV", "R8", "R0"))
    with pytest.raises(SimulationError, match="outside"):
        s.execute(isa.instruction("scamp5_load_in", 128))


# --------------------------------------------------------------------------- lowering
@pytest.mark.parametrize("weights", ["streamed", "in-pixel"])
def test_pixelrnn_at_a_small_size_equals_golden_on_every_decision_and_readout(weights):
    m = model(decoder=True)
    clips = np.random.default_rng(1).integers(-128, 128, (6, 5, 1, 8, 8)).astype(np.int8)
    prog, a, res, cmp = run_exact(m, clips, weights)
    assert cmp["mismatches"] == 0, cmp["tensors"]
    assert set(cmp["tensors"]) >= {"b0", "conv", "tile", "gs", "f", "hn", "o", "readout:o"}
    assert all(v["compared"] > 0 for v in cmp["tensors"].values())
    assert np.array_equal(res.classes, cmp["golden_classes"])
    assert prog.meta["registers"]["digital_peak"] <= 7  # R5..R11
    used = {arg for s in prog.sections.values() for ins in s for arg in ins["args"] if isinstance(arg, str)}
    assert used & set(isa.AREGS) <= set(isa.AREGS) and not used & {"R0", "R12"}


def test_thresholds_are_exact_at_ties():
    # every pre-activation equal to its threshold must give -1 (strict >), as golden does
    m = model(rnn=False, relu=False, p=1, c=1, k=1, t0=5, t1=1, grid=(1, 1))
    clips = np.full((1, 1, 1, 8, 8), 5, np.int8)
    clips[0, 0, 0, ::2] = 6
    _, _, res, cmp = run_exact(m, clips)
    assert cmp["mismatches"] == 0
    assert set(np.unique(res.probes["b0"])) == {-1, 1}


def test_the_sensor_part_and_the_decoder_split_at_the_readout():
    a = lower.analyse(model(decoder=True))
    assert a.readout == "o" and a.host is not None and a.host.input.shape == (1, 8, 8)
    assert [n.op.kind for n in a.host.nodes] == ["flatten", "linear"]


def _with_conv(m, w):
    m.nodes[1] = ir.Node(ir.Conv2d(weight=w, encoding="4bitsym", padding=1), ["b0"], "conv")
    return m


@pytest.mark.parametrize("change, message", [
    (lambda m: _with_conv(m, np.full((4, 1, 3, 3), 3)), "±1"),
    (lambda m: model(p=1), "lattice of pooling blocks"),
    (lambda m: ir.Model(ir.InputSpec((1, 6, 6)), layers=[ir.Sign(threshold=[0])]), "power of two"),
])
def test_models_the_array_cannot_run_get_a_one_line_error(change, message):
    m = change(model())
    with pytest.raises(lower.Scamp5Error, match=message):
        lower.analyse(m) if message != "±1" else lower.lower(m)


# ------------------------------------------------------------- property: ideal == golden
@settings(max_examples=int(__import__("os").environ.get("BITGEN_EXAMPLES", 200)) // 8, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_small_programs_equal_golden_in_the_ideal_mode(data):
    d = data.draw
    c = d(st.sampled_from([1, 2, 4]))
    grid = {1: (1, 1), 2: d(st.sampled_from([(1, 2), (2, 1)])), 4: d(st.sampled_from([(2, 2), (1, 4), (4, 1)]))}[c]
    h = d(st.sampled_from([4, 8]))
    p = d(st.sampled_from([2, 4])) if h >= 4 else 2
    rnn = d(st.booleans())
    k = d(st.sampled_from([1, 3, 5]))
    kr = d(st.sampled_from([1, 3, 5]))
    t1 = d(st.integers(-3, 4)) if not d(st.booleans()) else [d(st.integers(-2, 3)) for _ in range(c)]
    m = model(h=h, c=c, k=k, p=p, kr=kr, rnn=rnn, grid=grid, relu=d(st.booleans()), seed=d(st.integers(0, 99)),
              t0=d(st.sampled_from([-129, -128, -1, 0, 3, 126, 127])), t1=t1, tr=d(st.integers(-4, 4)))
    weights = "in-pixel" if h >= 8 and d(st.booleans()) else "streamed"
    frames = d(st.integers(1, 4)) if rnn else 1
    rng = np.random.default_rng(d(st.integers(0, 2**16)))
    clips = rng.integers(-128, 128, (3, frames, 1, h, h)).astype(np.int8)
    clips[0] = rng.integers(-2, 3, clips[0].shape)  # values at the binarization's threshold
    _, _, _, cmp = run_exact(m, clips, weights, iw=d(st.sampled_from([2, 10])))
    assert cmp["mismatches"] == 0, cmp["tensors"]


# --------------------------------------------------------------------------- noisy mode
def test_noisy_mode_reports_flips_and_no_noise_gives_none():
    m = model()
    clips = np.random.default_rng(2).integers(-128, 128, (4, 3, 1, 8, 8)).astype(np.int8)
    prog, a = lower.lower(m, lower.Options(weights="streamed"))
    quiet = NoiseModel(threshold=0.0, output=0.0, op_rel=0.0, fixed_pattern=0.0)
    dec = execute.decisions(m, a, clips, execute.simulate(prog, a, clips, noise=quiet))
    assert dec["flips"] == 0 and dec["decisions"] > 0
    loud = execute.decisions(m, a, clips, execute.simulate(prog, a, clips, noise=NoiseModel(threshold=3.0, seed=1)))
    assert loud["flip_rate"] > 0.01
    assert loud["margins_products"]["conv"]["min"] >= 0.5  # integer sums sit half a product off the level


# -------------------------------------------------------------------------- command line
def test_emit_and_run_on_the_command_line(tmp_path, capsys):
    m = model(decoder=True)
    modelfile.save(m, tmp_path / "m.pt", name="tiny")
    assert main(["emit", "--target", "scamp5", str(tmp_path / "m.pt"), "-o", str(tmp_path / "s")]) == 0
    files = {f.name for f in (tmp_path / "s").iterdir()}
    assert files == {"program.cpp", "program.json", "tiny.json", "decoder.pt"}
    rep = json.loads((tmp_path / "s" / "tiny.json").read_text())
    assert rep["instructions_per_frame"]["instructions"] == sum(v["instructions"] for v in rep["per_layer"].values())
    assert rep["data"]["readout_bytes_per_sequence"] == 64 and rep["data"]["raw_frames_bytes"] == 16 * 64
    Program.from_dict(json.loads((tmp_path / "s" / "program.json").read_text()))
    cpp = (tmp_path / "s" / "program.cpp").read_text()
    assert "void tiny_frame(const int8_t *frame)" in cpp and "scamp5_kernel_begin();" in cpp
    decoder = modelfile.load(tmp_path / "s" / "decoder.pt").ir
    assert decoder.input.shape == (1, 8, 8)
    rng = np.random.default_rng(3)
    np.savez(tmp_path / "clips.npz", x=rng.integers(-128, 128, (5, 4, 1, 8, 8)).astype(np.int8),
             y=np.arange(5) % 3)
    args = ["run", "--board", "scamp5-sim", str(tmp_path / "m.pt"), "--dataset", "npz", "--data",
            str(tmp_path / "clips.npz")]
    assert main(args + ["--json", str(tmp_path / "run.json")]) == 0
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["compared"] == 5 and run["mismatches"] == 0 and run["accuracy"] == run["golden_accuracy"]
    assert main(args + ["--noise", "0.6", "--json", str(tmp_path / "noisy.json")]) == 0
    noisy = json.loads((tmp_path / "noisy.json").read_text())
    assert noisy["mode"] == "noisy" and 0 <= noisy["flip_rate"] <= 1 and "accuracy" in noisy


@pytest.mark.skipif(__import__("shutil").which("g++") is None, reason="needs g++")
@pytest.mark.parametrize("weights, rnn", [("in-pixel", True), ("streamed", False)])
def test_the_emitted_program_is_well_formed_cpp_against_the_api_signatures(tmp_path, weights, rnn):
    import subprocess
    from pathlib import Path

    from bitgen.backends.base import Options
    from bitgen.backends.scamp5 import Scamp5Backend, Scamp5Options

    m = model(rnn=rnn)
    Scamp5Backend(Scamp5Options(weights=weights)).emit(m, tmp_path, Options(name="tiny"))
    mock = Path(__file__).parent / "data" / "scamp5_mock"
    r = subprocess.run(["g++", "-std=c++11", "-fsyntax-only", "-Wall", "-Werror", "-I", str(mock),
                        str(tmp_path / "program.cpp")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_the_back_end_seam_runs_the_artifact_in_the_simulator(tmp_path):
    from bitgen import golden
    from bitgen.backends.base import Options
    from bitgen.backends.scamp5 import Scamp5Backend

    m = model(decoder=True)
    be = Scamp5Backend()
    be.legalize(m, Options())
    art = be.emit(m, tmp_path, Options(name="tiny"))
    x = np.random.default_rng(4).integers(-128, 128, (3, 4, 1, 8, 8)).astype(np.int8)
    out, cls, _ = be.executor(art).run_sequence(x)
    want = golden.run_sequence(m, x)
    assert np.array_equal(out, want.reshape(out.shape)) and np.array_equal(cls, want.argmax(axis=2))
