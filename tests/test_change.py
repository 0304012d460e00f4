"""Change-based inference (bitgen/ops/change_gate.py, bitgen/ir/change.py): the gate's exact
semantics, threshold 0 equal to the dense model, the feedback-loop invariant, and the C equal
to golden on every frame, on the host and on an emulated board through a stream."""
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitgen import golden, ir, streams
from bitgen.backends.c import emit, host


def small_cnn(seed=0, hw=10):
    rng = np.random.default_rng(seed)
    return ir.Model(ir.InputSpec((1, hw, hw)), layers=[
        ir.Conv2d(weight=rng.integers(-7, 8, (3, 1, 3, 3)), encoding="4bit", padding=1),
        ir.Requant(multiplier=[1], shift=[3], out_min=0),
        ir.MaxPool2d(kernel=(2, 2), stride=(2, 2)),
        ir.Conv2d(weight=rng.integers(-7, 8, (4, 3, 3, 3)), encoding="4bit", padding=1, bias=rng.integers(-50, 50, 4)),
        ir.Requant(multiplier=[3], shift=[5], out_min=0),
        ir.Flatten(),
        ir.Linear(weight=rng.integers(-7, 8, (5, 4 * (hw // 2) ** 2)), encoding="4bit"),
    ])


def slow_stream(n=1, frames=12, hw=10, seed=0, step=3):
    """Frames that change a little: a static random image, a few pixels nudged each frame."""
    rng = np.random.default_rng(seed)
    x = np.repeat(rng.integers(-100, 100, (n, 1, 1, hw, hw)), frames, axis=1)
    for t in range(1, frames):
        x[:, t] = x[:, t - 1]
        idx = rng.integers(0, hw, (n, 3, 2))
        for i in range(n):
            for r, c in idx[i]:
                x[i, t, 0, r, c] += rng.integers(-step, step + 1)
    return np.clip(x, -128, 127).astype(np.int8)


def test_the_gate_passes_pixels_that_moved_by_more_than_the_threshold():
    g = ir.ChangeGate(threshold=2)
    x = np.array([[[[0, 3, -3, 10]], [[0, 0, 0, 2]]]], dtype=np.int8)  # (1, 2 channels, 1, 4)
    r = np.array([[[[1, 0, 0, 10]], [[0, 0, 0, 0]]]], dtype=np.int8)
    y = g.golden(x, r)
    # pixel 0: moved 1 (kept); pixel 1: 3 > 2 in channel 0 (taken, both channels); pixel 2: 3;
    # pixel 3: a tie, exactly 2 in channel 1 (strict: kept)
    assert y[0, :, 0].tolist() == [[1, 3, -3, 10], [0, 0, 0, 0]]
    assert g.changed(x, r).tolist() == [[[False, True, True, False]]]
    wide = ir.ChangeGate(threshold=0).golden(np.array([[127]], np.int32), np.array([[-2**31]], np.int32))
    assert wide.tolist() == [[127]]  # the difference is exact, no wrap-around


def test_threshold_zero_is_the_dense_model_and_dense_takes_the_gates_away():
    m = small_cnn()
    x = slow_stream(n=2)
    gated = ir.change.with_thresholds(m, 0)
    assert ir.change.thresholds(gated) == {1: 0, 5: 0} and len(gated.states) == 2
    assert np.array_equal(golden.run_sequence(gated, x), golden.run(m, x.reshape(-1, 1, 10, 10)).reshape(2, 12, -1))
    assert ir.change.dense(gated).digest() == m.digest()
    assert ir.change.thresholds(ir.change.with_thresholds(gated, {1: 5})) == {1: 5, 5: 0}


def test_the_reference_never_strays_from_the_input_by_more_than_the_threshold():
    m = ir.change.with_thresholds(small_cnn(), 4)
    x = slow_stream(n=3, frames=20, step=6)
    layers = golden.run_sequence(m, x, all_layers=True)
    ref = layers[0].astype(np.int64)  # the first gate's output: the reference after each frame
    assert np.abs(ref - x.astype(np.int64)).max() <= 4
    assert not np.array_equal(ref, x)  # small moves were held back


def test_only_convolutions_take_a_threshold():
    with pytest.raises(ir.IRError, match="not a convolution"):
        ir.change.with_thresholds(small_cnn(), {2: 1})
    with pytest.raises(ir.IRError, match="0 or more"):
        ir.change.with_thresholds(small_cnn(), {0: -1})


# (kernel set, recompute): targets with a multiplier keep accumulators and add deltas unless
# told to recompute; RV32EC always recomputes; the generic set has no fused step
KERNELS = [("generic", False), ("rv32ec", False), ("rv32emc", False), ("cortex-m4", False), ("rv32emc", True),
           ("cortex-m4", True)]


@pytest.mark.parametrize("kernels,recompute", KERNELS)
@pytest.mark.parametrize("threshold", [0, 3])
def test_every_frame_and_every_count_is_bit_exact_in_c(tmp_path, kernels, recompute, threshold):
    m = ir.change.with_thresholds(small_cnn(), threshold)
    em = emit.emit(m, tmp_path / "c", name="cb", kernels=kernels, recompute=recompute)
    assert [g["threshold"] for g in em.report["change_gates"]] == [threshold, threshold]
    src = (tmp_path / "c" / "cb.c").read_text()
    # by deltas on a multiplier; else recomputing, with the dense row kernel where the target has one
    delta = kernels in ("rv32emc", "cortex-m4") and not recompute
    assert src.count('#include "bg_change_delta.inc"') == (2 if delta else 0)
    assert src.count("static void cb_band") == (2 if kernels in ("rv32emc", "cortex-m4") and recompute else 0)
    kept = {k["tensor"]: k["bytes"] for k in em.report.get("kept", [])}
    if delta:  # the accumulators are in the memory report, as state: 3 channels as int32, 4 as int16 pairs
        assert kept["layer 1's accumulators, [10][10][3]"] == 1200
        assert kept["layer 5's accumulators, [5][5][4], two per word"] == 200
        assert em.report["persistent_bytes"] == sum(kept.values()) + sum(st["bytes"] for st in em.report["states"])
    hm = host.build(em, tmp_path / "b")
    try:
        x = slow_stream(n=3, frames=15, step=5)
        y, pred, _ = hm.run_sequence(x)
        want = golden.run_sequence(m, x)
        assert np.array_equal(y.reshape(want.shape), want)
        for i in range(len(x)):
            hm.run_sequence(x[i:i + 1])
            assert hm.changed.tolist() == golden.changed_pixels(m, x[i])
    finally:
        hm.close()


@pytest.mark.parametrize("bias,packed", [([16638, 16511, -16512, 0], True), ([16639, 16511, -16512, 0], False),
                                         ([16638, 16512, -16512, 0], False), ([16638, 16511, -16513, 0], False)])
def test_accumulators_pair_up_in_a_word_exactly_up_to_the_int16_bound(tmp_path, bias, packed):
    """Two channels' accumulators share a word where every partial sum fits int16. Here 1x1
    weights 127, -127, 127, 1 on inputs -128 .. 127: the first packed biases reach 32767 (at
    127, at -128) and -32768 (at -128) exactly, and one more is over. The frames hit those
    extremes, in both halves of a word."""
    model = ir.change.with_thresholds(ir.Model(ir.InputSpec((1, 4, 4)), layers=[
        ir.Conv2d(weight=np.array([127, -127, 127, 1]).reshape(4, 1, 1, 1), encoding="8bit",
                  bias=np.array(bias)), ir.Flatten()]), 0)
    em = emit.emit(model, tmp_path / "c", name="pk", kernels="rv32emc")
    kept = [k["tensor"] for k in em.report["kept"]]
    assert any(k.endswith("two per word") for k in kept) == packed
    x = np.stack([np.full((1, 4, 4), v, dtype=np.int8) for v in (127, -128, 0, 127, -128, 5, 127)])
    x[3, 0, 1, 2], x[5, 0, 0, 0] = -128, -128  # single pixels that move back and forth
    hm = host.build(em, tmp_path / "b")
    try:
        y, _, _ = hm.run_sequence(x[None])
        want = golden.run_sequence(model, x[None])
        assert np.array_equal(y.reshape(want.shape), want)
        if packed:  # the bound, reached
            assert want.max() == 32767 and want.min() == -32768
    finally:
        hm.close()


def test_the_static_video_stream_is_deterministic_and_mostly_still(tmp_path):
    x, y = streams.static_video(60, seed=3)
    x2, y2 = streams.static_video(60, seed=3)
    assert np.array_equal(x, x2) and np.array_equal(y, y2) and x.dtype == np.int8 and x.shape == (60, 1, 16, 16)
    changed = (x[1:] != x[:-1]).reshape(59, -1).mean(axis=1)
    assert changed.mean() < 0.1 and changed.max() < 0.3
    summary = streams.make_static_video(tmp_path / "v.npz", 30, seed=1, train_streams=2, train_frames=20)
    loaded = streams.load(tmp_path / "v.npz")
    assert loaded.frames == 30 and summary["train_frames"] == 40 and loaded.labels == streams.LABELS


def test_a_wider_view_keeps_the_objects_size_so_less_of_each_frame_changes():
    x, y = streams.static_video(120, seed=2, size=48)
    assert x.shape == (120, 1, 48, 48) and y.max() > 0
    changed = (x[1:] != x[:-1]).reshape(119, -1).mean(axis=1)
    x16 = streams.static_video(120, seed=2)[0]
    assert changed.mean() < (x16[1:] != x16[:-1]).reshape(119, -1).mean()
    with pytest.raises(streams.StreamError, match="16 to 256"):
        streams.static_video(10, size=8)


def test_a_stream_runs_on_the_emulated_board_bit_exact_per_frame(tmp_path):
    from bitgen import cli, modelfile

    modelfile.save(small_cnn(hw=12), tmp_path / "m.pt")
    x = slow_stream(frames=8, hw=12)[0]
    np.savez(tmp_path / "s.npz", x=x, y=np.zeros(len(x), dtype=np.int64))
    rc = cli.main(["bench", "--board", "rv32emc-sim", str(tmp_path / "m.pt"), "--stream", str(tmp_path / "s.npz"),
                   "--change-threshold", "0", "--json", str(tmp_path / "b.json")])
    rep = json.loads((tmp_path / "b.json").read_text())
    assert rc == 0 and rep["frames"] == 8 and rep["mismatches"] == 0
    assert rep["change_based"]["change_count_mismatches"] == 0 and rep["dense"]["mismatches"] == 0
    assert rep["change_based"]["changed_per_frame"][0][0] > 100  # the first frame: against the zero reference
    assert 0 < rep["changed_fraction"] < 1


def test_a_stream_runs_through_the_wire_protocol_with_the_boards_changed_pixel_counts(tmp_path):
    """bitgen run --stream on the emulated CH32V003 (its protocol firmware): every frame's outputs
    and the changed-pixel counts the board reports (m-bg-changed) equal golden's."""
    from bitgen import cli, modelfile

    model = ir.change.with_thresholds(small_cnn(hw=8), 2)
    modelfile.save(model, tmp_path / "m.pt")
    x = slow_stream(frames=10, hw=8, step=6)[0]
    np.savez(tmp_path / "s.npz", x=x, y=np.zeros(len(x), dtype=np.int64))
    rc = cli.main(["run", "--board", "ch32v003-sim", str(tmp_path / "m.pt"), "--stream", str(tmp_path / "s.npz"),
                   "--json", str(tmp_path / "r.json"), "-q"])
    rep = json.loads((tmp_path / "r.json").read_text())
    want = golden.changed_pixels(model, x)
    assert rc == 0 and rep["compared"] == 10 and rep["mismatches"] == 0
    assert rep["changes"]["reported"] and rep["changes"]["per_frame"] == want and rep["changes"]["count_mismatches"] == 0
    assert want[0][0] > 32 and any(0 < row[0] < 32 for row in want[1:])  # counts that could be wrong
    assert len(rep["per_frame"]) == 10


@st.composite
def change_steps(draw):
    """A random change-based step: a gate, a convolution of any shape, stride and padding, maybe a
    ReLU / requantization stage and a square max pool; its input drifts a little every frame."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    c, h, w = draw(st.integers(1, 4)), draw(st.integers(1, 9)), draw(st.integers(1, 9))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    kh, kw = draw(st.integers(1, min(4, h + 2 * ph))), draw(st.integers(1, min(4, w + 2 * pw)))
    co = draw(st.integers(1, 5))
    wmax = draw(st.sampled_from([8, 128]))  # small weights: a delta step's accumulators pair up in words
    conv = ir.Conv2d(weight=rng.integers(-wmax, wmax, (co, c, kh, kw)), encoding="8bit",
                     bias=rng.integers(-5000, 5000, co) if draw(st.booleans()) else None,
                     stride=(draw(st.integers(1, 2)), draw(st.integers(1, 2))), padding=(ph, pw))
    layers = [conv]
    oh, ow = ir.infer_type(conv, ir.TensorType((c, h, w), "int8", -128, 127)).shape[1:]
    stage = draw(st.sampled_from(["none", "relu", "requant", "requant+relu"]))
    if stage == "relu":
        layers.append(ir.ReLU())
    if "requant" in stage:
        layers.append(ir.Requant(multiplier=rng.integers(1, 300, co), shift=rng.integers(6, 14, co),
                                 rounding=draw(st.sampled_from(["half_up", "floor"])),
                                 out_min=0 if "relu" in stage else -128))
    pool = draw(st.integers(1, 3))
    if pool > 1 and oh >= pool and ow >= pool:
        layers.append(ir.MaxPool2d(kernel=(pool, pool), stride=(pool, pool)))
    layers.append(ir.Flatten())
    if draw(st.booleans()):  # a classifier reading the step: a step by deltas keeps its sums too
        t = ir.TensorType((c, h, w), "int8", -128, 127)
        for layer in layers:
            t = ir.infer_type(layer, t)
        fo = draw(st.integers(1, 5))
        layers.append(ir.Linear(weight=rng.integers(-128, 128, (fo, t.size)), encoding="8bit",
                                bias=rng.integers(-9000, 9000, fo) if draw(st.booleans()) else None))
    model = ir.Model(ir.InputSpec((c, h, w)), layers=layers)
    return ir.change.with_thresholds(model, draw(st.sampled_from([0, 1, 3, 20]))), draw(st.integers(1, 40))


def _drifting(model, n, frames, step, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (n, 1) + model.input.shape)
    x = np.repeat(x, frames, axis=1) + np.cumsum(rng.integers(-step, step + 1, (n, frames) + model.input.shape)
                                                 * (rng.random((n, frames) + model.input.shape) < 0.2), axis=1)
    return np.clip(x, -128, 127).astype(np.int8)


def _assert_frames_match_golden(hm, model, n, frames, step):
    """n drifting sequences of `frames` frames through the built model hm, every frame equal to golden."""
    try:
        x = _drifting(model, n, frames, step, seed=step)
        y, _, _ = hm.run_sequence(x)
        assert np.array_equal(y.reshape(n, frames, -1), golden.run_sequence(model, x).reshape(n, frames, -1))
    finally:
        hm.close()


@pytest.mark.parametrize("kernels,recompute", KERNELS[1:])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(case=change_steps())
def test_change_based_steps_of_every_shape_are_bit_exact_every_frame(host_runtime, tmp_path, kernels, recompute,
                                                                     case):
    model, step = case
    em = emit.emit(model, tmp_path / "c", name="cs", kernels=kernels, recompute=recompute)
    delta = kernels in ("rv32emc", "cortex-m4") and not recompute
    assert em.report["layers"][0]["kernel"] == ("change-delta" if delta else "change")
    _assert_frames_match_golden(host.build(em, tmp_path / "b", runtime=host_runtime), model, 3, 12, step)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(case=change_steps())
def test_change_based_steps_are_clean_under_sanitizers(sanitized_runtime, tmp_path, case):
    model, step = case
    em = emit.emit(model, tmp_path / "c", name="cs", kernels="rv32emc")
    _assert_frames_match_golden(host.build_sanitized(em, tmp_path / "b", runtime=sanitized_runtime), model, 2, 8, step)


def test_tune_thresholds_keeps_the_error_within_the_tolerance(tmp_path):
    from bitgen import cli, modelfile

    m = small_cnn(hw=12)
    modelfile.save(m, tmp_path / "m.pt")
    x = slow_stream(frames=30, hw=12, step=4)[0]
    labels = golden.argmax(golden.run(m, x))  # the dense model is right on every frame
    np.savez(tmp_path / "s.npz", x=x, y=labels)
    assert cli.main(["tune-thresholds", str(tmp_path / "m.pt"), "--stream", str(tmp_path / "s.npz"),
                     "--tolerance", "0", "-o", str(tmp_path / "t.pt"), "--json", str(tmp_path / "t.json")]) == 0
    rep = json.loads((tmp_path / "t.json").read_text())
    tuned = modelfile.load(tmp_path / "t.pt").ir
    assert list(ir.change.thresholds(tuned).values()) == list(rep["thresholds"].values())  # in layer order
    pred = golden.argmax(golden.run_sequence(tuned, x[None])[0])
    assert np.array_equal(pred, labels)  # tolerance 0: not one frame changes its class
    assert rep["tuned"]["changed_fraction"] <= rep["dense"]["changed_fraction"]
    assert max(int(t) for t in rep["thresholds"].values()) > 0  # small nudges are let through


def test_a_board_whose_sram_cannot_hold_the_accumulators_gets_steps_that_recompute(tmp_path):
    """On rv32emc-sim (192 KB of SRAM) the accumulators of a 33-channel convolution over 48 x 48
    (int32: 304 KB) do not fit: the build tries again with a step that recomputes (its kept
    output is 19 KB), says so, and that image is bit-exact on the emulated board."""
    from bitgen.harness import boards, firmware
    from bitgen.sim import bench as sim_bench

    rng = np.random.default_rng(5)
    model = ir.change.with_thresholds(ir.Model(ir.InputSpec((1, 48, 48)), layers=[
        ir.Conv2d(weight=rng.integers(-100, 100, (33, 1, 3, 3)), encoding="8bit", padding=1),
        ir.Requant(multiplier=[1], shift=[8], out_min=0),
        ir.MaxPool2d(kernel=(2, 2), stride=(2, 2)), ir.MaxPool2d(kernel=(24, 24), stride=(24, 24)),
        ir.Flatten()]), 1)
    fw = firmware.build(model, boards.get("rv32emc-sim"), tmp_path / "fw", name="big", kernels="rv32emc",
                        harness="bench")
    tried = fw.report["kernels_tried"]
    assert [t["fits"] for t in tried] == [False, True] and tried[1]["recompute"] and "recompute" not in tried[0]
    assert "change-based steps recomputing" in firmware.describe_attempt(tried[1])
    layers = json.loads((fw.outdir / "src" / "big.json").read_text())["layers"]
    assert layers[0]["kernel"] == "change"
    x = slow_stream(frames=3, hw=48, step=9)[0]
    runs = sim_bench.run_stream(boards.get("rv32emc-sim"), fw, x, "int8", 33, gates=1)
    want = golden.run_sequence(model, x[None])[0]
    assert all(np.array_equal(r.outputs, w.reshape(-1)) for r, w in zip(runs, want))
