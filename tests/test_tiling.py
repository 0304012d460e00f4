"""Tiled depth-first execution (backends/c/tiling.py, kernels/bands.py): stacks of spatial layers
computed in strips of output rows or 2-D tiles equal golden for every strip height and tile
width, the planner's receptive fields, the automatic choice, the output streamed band by band,
a decoder that only fits the CH32V003's 2 KB in strips, and the die decoder's layout in tiles."""
import shutil

import numpy as np
import pytest

import bitgen
from bitgen import check, golden, ir
from bitgen.backends.c import emit, host, tiling
from bitgen.cli import main
from models_for_tests import decoder, requant


def random_stack(seed: int) -> ir.Model:
    """A decoder-like stack of random spatial layers, each followed (or not) by a requantization
    and a ReLU: 3x3 conv padding 1, 3x3 conv stride 2, 3x3 transposed conv stride 2 (output
    padding 1), nearest upsampling x2, 2x2 max pooling, 2x2 average pooling."""
    rng = np.random.default_rng(seed)
    c = int(rng.integers(1, 4))
    h, wd = int(rng.integers(5, 11)), int(rng.integers(4, 9))
    layers: list[ir.Layer] = []
    t = ir.TensorType((c, h, wd), "int8", -128, 127)
    for _ in range(int(rng.integers(2, 5))):
        co = int(rng.integers(1, 4))
        kind = rng.choice(["conv", "conv_s2", "convt", "up", "maxpool", "avgpool"])
        if kind in ("conv_s2", "maxpool", "avgpool") and t.shape[1] < 4:
            kind = "up"
        if kind in ("convt", "up") and t.shape[1] > 12:
            kind = "conv"
        wt = rng.integers(-7, 8, (co, t.shape[0], 3, 3))
        op = {"conv": lambda: ir.Conv2d(weight=wt, encoding="4bit", padding=1, bias=rng.integers(-50, 50, co)),
              "conv_s2": lambda: ir.Conv2d(weight=wt, encoding="4bit", stride=2, padding=1),
              "convt": lambda: ir.ConvTranspose2d(weight=rng.integers(-7, 8, (t.shape[0], co, 3, 3)),
                                                  encoding="4bit", stride=2, padding=1, output_padding=1,
                                                  bias=rng.integers(-50, 50, co)),
              "up": lambda: ir.Upsample(factor=(2, int(rng.integers(1, 3)))),
              "maxpool": lambda: ir.MaxPool2d(2),
              "avgpool": lambda: ir.AvgPool2d(2)}[kind]()
        layers.append(op)
        t = op.infer(t)
        if t.dtype == "int32" and rng.random() < 0.8:  # sometimes an int32 tensor flows on
            layers.append(requant(t.shape[0] if rng.random() < 0.5 else 1, rng, int(rng.integers(4, 9))))
            t = layers[-1].infer(t)
            if rng.random() < 0.6:
                layers.append(ir.ReLU())
                t = layers[-1].infer(t)
    m = ir.Model(ir.InputSpec((c, h, wd)), layers)
    m.validate()
    return m


def _inputs(m: ir.Model, n: int = 8) -> np.ndarray:
    return np.concatenate([check.random_inputs(m.input.shape, n), check.extreme_inputs(m.input.shape)])


def _equal_to_golden(m: ir.Model, em: emit.Emitted, runtime, where) -> None:
    x = _inputs(m)
    y = host.build(em, where, runtime=runtime).run(x)[0]
    g = golden.run(m, x).reshape(len(x), -1)
    assert np.array_equal(g, y.reshape(len(x), -1)), f"{int((g != y.reshape(len(x), -1)).sum())} outputs differ"


@pytest.mark.parametrize("kernels, rows", [("generic", 1), ("generic", 3), ("generic", 5), ("generic", 32),
                                           ("rv32ec", 1), ("rv32ec", 6)])
def test_die_like_decoder_equals_golden_in_strips_of_any_height(kernels, rows, tmp_path, host_runtime):
    m = decoder()
    em = emit.emit(m, tmp_path / "c", name="die", kernels=kernels, tiles="rows", strip_rows=rows)
    tiled = {lay["kernel"] for lay in em.report["layers"][4:]}
    # RV32EC (no multiplier): the 3x3 convolutions and the transposed ones take the LUT kernels
    # on their bands
    assert tiled == ({"lut_convt/tiled", "lut_conv/tiled", "fused/tiled"} if kernels == "rv32ec" else {"generic/tiled"})
    run = em.report["tiling"]["runs"][0]
    assert (run["first_layer"], run["last_layer"], run["strip_rows"]) == (4, len(m.layers) - 1, rows)
    assert run["strips"] == -(-32 // rows)
    assert run["recompute_macs"] == 0 if rows == 32 else run["recompute_macs"] > 0
    assert em.report["tiling"]["arena_tiled"] < em.report["tiling"]["arena_layer_by_layer"]
    _equal_to_golden(m, em, host_runtime, tmp_path / "b")


@pytest.mark.parametrize("seed", range(12))
def test_random_stacks_equal_golden_in_strips(seed, tmp_path, host_runtime):
    m = random_stack(seed)
    types = emit.plan_model(m).types
    found = tiling.runs(m, types)
    if not found:  # fewer than two spatial layers in a row: nothing to tile
        with pytest.raises(emit.EmitError, match="no run of two or more"):
            emit.emit(m, tmp_path / "none", tiles="rows")
        return
    out_rows = types[found[0][-1].last + 1].shape[1]
    for rows in sorted({1, 2, 3, out_rows}):
        if rows > out_rows:
            continue
        kernels = "rv32ec" if rows % 2 else "generic"  # LUT convolutions on bands too
        em = emit.emit(m, tmp_path / f"c{rows}", kernels=kernels, tiles="rows", strip_rows=rows)
        _equal_to_golden(m, em, host_runtime, tmp_path / f"b{rows}")


def test_receptive_fields_through_the_stack():
    """Rows each strip reads, derived by hand: a 3x3 conv (padding 1) reads one row more on
    each side, a transposed 3x3 conv stride 2 (padding 1) rows (lo - 1) / 2 .. (hi - 1) / 2, an
    upsampling x2 rows lo / 2 .. (hi - 1) / 2 with the phase lo % 2."""
    conv = ir.Conv2d(weight=np.ones((1, 1, 3, 3), dtype=int), encoding="4bit", padding=1)
    convt = ir.ConvTranspose2d(weight=np.ones((1, 1, 3, 3), dtype=int), encoding="4bit", stride=2, padding=1,
                               output_padding=1)
    assert tiling._need(conv, 0, 2, 8) == (0, 3, 1)  # the top padding row is the kernel's own
    assert tiling._need(conv, 3, 5, 8) == (2, 6, 0)
    assert tiling._need(conv, 6, 8, 8) == (5, 8, 0)
    # output row oy = 2 * iy - 1 + ky: rows 5 (iy 2, ky 2; iy 3, ky 0) and 6 (iy 3, ky 1) read input rows 2..3
    assert tiling._need(convt, 5, 7, 4) == (2, 4, 2)
    assert tiling._need(convt, 0, 1, 4) == (0, 1, 1)
    assert tiling._need(ir.Upsample(factor=(2, 2)), 3, 6, 4) == (1, 3, 1)
    assert tiling._need(ir.MaxPool2d(2), 1, 3, 7) == (2, 6, 0)


def test_tiling_is_only_chosen_where_the_layers_do_not_fit(tmp_path):
    m = decoder(ch=4, ups=2, full=1, latent=None)
    layered = emit.emit(m, tmp_path / "a", name="m")
    assert layered.report["tiling"] is None  # no limit: layer by layer, as before
    off = emit.emit(m, tmp_path / "b", name="m", tiles="off")
    assert (tmp_path / "a" / "m.c").read_text() == (tmp_path / "b" / "m.c").read_text()
    limit = layered.report["arena_bytes"] // 2
    tiled = emit.emit(m, tmp_path / "c", name="m", max_arena=limit)
    assert tiled.report["arena_bytes"] <= limit and tiled.report["tiling"]["arena_layer_by_layer"] > limit
    with pytest.raises(emit.EmitError, match=r"arena needs \d+ B at least, over the limit of 100 B"):
        emit.emit(m, tmp_path / "d", name="m", max_arena=100, tiles="off")
    with pytest.raises(emit.EmitError, match=r"in row strips or tiles \(\d+ B layer by layer\), over the limit of 100 B"):
        emit.emit(m, tmp_path / "e", name="m", max_arena=100, tiles="rows")
    with pytest.raises(emit.EmitError, match=r"strip height 17 is not within 1..16"):
        emit.emit(m, tmp_path / "f", name="m", strip_rows=17)


def test_emit_command_reports_the_strips(tmp_path, capsys):
    path = tmp_path / "m.pt"
    bitgen.save(decoder(ch=2, ups=2, full=1, latent=None), path)
    assert main(["emit", str(path), "-o", str(tmp_path / "c"), "--tiling", "rows", "--strip-rows", "3"]) == 0
    out = capsys.readouterr().out
    assert "row strips: layers 0..10 in 6 strips of 3 rows" in out
    assert main(["emit", str(path), "-o", str(tmp_path / "d"), "--tiling", "off", "--strip-rows", "3"]) != 0
    assert "--strip-rows needs tiling" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("riscv64-unknown-elf-gcc") is None, reason="needs gcc-riscv64-unknown-elf")
def test_a_decoder_over_2kb_layer_by_layer_runs_in_strips_on_the_ch32v003(tmp_path):
    """Two transposed convolutions to 16x16x4 and two 3x3 convolutions there: 5.4 KB of arena
    layer by layer. The protocol firmware's build finds it over the 2 KB, falls back to row
    strips and the emulated part answers bit-exactly."""
    from bitgen.harness import boards, session

    m = decoder(ch=4, ups=2, full=1, latent=None)
    assert emit.plan_model(m, "rv32ec").memory.arena_bytes > 2048
    x = _inputs(m, 2)[:3]
    expect = golden.run(m, x)
    with session.Session(boards.get("ch32v003-sim"), m, workdir=str(tmp_path), infer_timeout=120) as s:
        rep = s.firmware.report
        assert rep["fits"] and rep["flash_bytes"] <= 16384 and rep["sram_bytes"] <= 2048, rep["kernels_tried"]
        assert rep["model"]["tiling"]["arena_layer_by_layer"] > 2048
        for i in range(len(x)):
            np.testing.assert_array_equal(s.link.classify(x[i]).outputs.reshape(expect[i].shape), expect[i])


def test_grouped_layers_and_other_sizes_in_strips(tmp_path, host_runtime):
    """Depthwise and grouped (transposed) convolutions, a 5x5 kernel, an upsampling by 3 and a
    3x3 stride-2 pool: the band arithmetic of each, for several strip heights."""
    rng = np.random.default_rng(5)
    layers = [
        ir.Conv2d(weight=rng.integers(-7, 8, (4, 1, 3, 3)), encoding="4bit", padding=1, groups=4),  # depthwise
        requant(4, rng, 5), ir.ReLU(),
        ir.ConvTranspose2d(weight=rng.integers(-7, 8, (4, 1, 3, 3)), encoding="4bit", stride=2, padding=1,
                           output_padding=1, groups=2),
        requant(1, rng, 5),
        ir.Upsample(factor=(3, 1)),
        ir.Conv2d(weight=rng.integers(-7, 8, (3, 2, 5, 5)), encoding="4bit", padding=2),
        ir.AvgPool2d(3, stride=2),
        requant(3, rng, 6),
    ]
    m = ir.Model(ir.InputSpec((4, 5, 6)), layers)
    m.validate()
    for rows in (1, 4, 7):
        em = emit.emit(m, tmp_path / f"c{rows}", tiles="rows", strip_rows=rows)
        assert em.report["tiling"]["runs"][0]["strip_rows"] == rows
        _equal_to_golden(m, em, host_runtime, tmp_path / f"b{rows}")


@pytest.mark.parametrize("seed", range(12))
def test_random_stacks_equal_golden_in_2d_tiles(seed, tmp_path, host_runtime):
    """Tiles narrower than the tensor: columns derived like rows, halos recomputed both ways
    (through convolutions, strided ones, transposed ones and poolings); a one-channel output
    also streamed band by band (BG_STREAM puts it together in the output on the host)."""
    m = random_stack(seed)
    types = emit.plan_model(m).types
    found = tiling.runs(m, types)
    if not found:
        return
    out_c, out_h, out_w = types[found[0][-1].last + 1].shape
    if any(isinstance(m.layers[st.first], ir.Upsample) for st in found[0]):  # its column phase: strips only
        if out_w > 1:
            with pytest.raises(emit.EmitError, match="upsampling"):
                emit.emit(m, tmp_path / "up", tiles="rows", strip_rows=1, tile_cols=1)
        return
    stream = found[0][-1].last == len(m.layers) - 1 and out_c == 1 and types[-1].dtype == "int8"
    for k, (rows, cols) in enumerate(sorted({(1, 1), (2, 3), (3, 2), (out_h, max(1, out_w // 2))})):
        if rows > out_h or cols > out_w:
            continue
        kernels = "rv32ec" if k % 2 else "generic"  # LUT convolutions on tiles too
        em = emit.emit(m, tmp_path / f"c{k}", kernels=kernels, tiles="rows", strip_rows=rows, tile_cols=cols,
                       stream=stream)
        run = em.report["tiling"]["runs"][0]
        assert run["tile_cols"] == cols and run["stream"] == stream
        assert run["strips"] == -(-out_h // rows) * -(-out_w // cols)
        _equal_to_golden(m, em, host_runtime, tmp_path / f"b{k}")


def test_receptive_fields_of_columns():
    """Columns follow a layer's horizontal kernel, stride and padding, not its vertical ones."""
    conv = ir.Conv2d(weight=np.ones((1, 1, 3, 5), dtype=int), encoding="4bit", padding=(1, 2), stride=(1, 2))
    assert tiling._need(conv, 0, 2, 8, axis=0) == (0, 3, 1)
    # output columns 1..2 at stride 2, padding 2, width 5: input columns 0 .. 2 * 2 - 2 + 5 = 7
    assert tiling._need(conv, 1, 3, 9, axis=1) == (0, 7, 0)
    assert tiling._need(conv, 3, 4, 9, axis=1) == (4, 9, 0)
    convt = ir.ConvTranspose2d(weight=np.ones((1, 1, 3, 3), dtype=int), encoding="4bit", stride=2, padding=1,
                               output_padding=1)
    assert tiling._need(convt, 5, 7, 4, axis=1) == tiling._need(convt, 5, 7, 4, axis=0) == (2, 4, 2)
    assert tiling._need(ir.MaxPool2d((2, 3), stride=(2, 3)), 1, 2, 9, axis=1) == (3, 6, 0)


@pytest.mark.parametrize("kernels, rows, cols", [("generic", 4, 8), ("rv32ec", 4, 4), ("rv32ec", 3, 5)])
def test_die_layout_equals_golden_in_streamed_tiles(kernels, rows, cols, tmp_path, host_runtime):
    """The die decoder's layout (Linear 7 -> 4x4x8, three transposed convolutions to 32x32x8,
    a 3x3 convolution there and one to one channel) in 2-D tiles, its output streamed: every
    pixel equal to golden, smaller strip buffers than full-width strips of the same height, no
    output tensor in the arena."""
    m = decoder(full=1)
    em = emit.emit(m, tmp_path / "c", name="die", kernels=kernels, tiles="rows", strip_rows=rows, tile_cols=cols,
                   stream=True)
    run = em.report["tiling"]["runs"][0]
    assert em.report["stream"] and run["stream"] and run["columns_tiled"]
    strips = tiling.plan(m, emit.plan_model(m, kernels).types, tiling.runs(m, emit.plan_model(m, kernels).types)[0],
                         rows)
    assert run["strip_buffer_bytes"] < strips.scratch
    assert em.report["arena_bytes"] < 32 * 32 + run["strip_buffer_bytes"]  # no whole output
    assert "BG_STREAM(" in (tmp_path / "c" / "die.c").read_text()
    if kernels == "rv32ec":  # no stage multiplies: the transposed convolutions take lut_convt on tiles
        assert [lay["kernel"] for lay in em.report["layers"]][4:11:3] == ["lut_convt/tiled"] * 3
    _equal_to_golden(m, em, host_runtime, tmp_path / "b")


def test_the_planner_picks_narrower_tiles_only_where_strips_do_not_fit():
    m = decoder(full=1)
    roomy = emit.plan_within(m, "rv32ec", 20000, tiles="rows", stream=True)
    tight = emit.plan_within(m, "rv32ec", 1500, tiles="rows", stream=True)
    (t_roomy,), (t_tight,) = roomy.tiles.values(), tight.tiles.values()
    assert t_roomy.tile_cols == 0 and t_tight.tile_cols > 0  # full-width strips where they fit
    assert tight.memory.arena_bytes <= 1500 < emit.plan_within(m, "rv32ec", None, tiles="rows",
                                                               strip_rows=1, stream=True).memory.arena_bytes
    assert t_tight.recompute_macs > t_roomy.recompute_macs


@pytest.mark.skipif(shutil.which("riscv64-unknown-elf-gcc") is None, reason="needs gcc-riscv64-unknown-elf")
def test_the_die_layout_fits_the_ch32v003_and_streams_bit_exactly(tmp_path):
    """The die decoder's layout (random weights): over 16 KB of arena layer by layer; the protocol
    firmware for the CH32V003 falls back to 2-D tiles with the output streamed (no output
    buffer), fits 16 KB / 2 KB with its stack, and the emulated part answers every pixel."""
    from bitgen.harness import boards, session

    m = decoder(full=1)
    # (the transposed convolutions' output stage fused on RV32EC: no 32x32x8 int32 tensor)
    assert emit.plan_model(m, "rv32ec").memory.arena_bytes > 16 * 1024
    assert emit.plan_model(m, "generic").memory.arena_bytes > 32 * 1024
    x = _inputs(m, 1)[:2]
    expect = golden.run(m, x)
    with session.Session(boards.get("ch32v003-sim"), m, workdir=str(tmp_path), infer_timeout=120) as s:
        rep = s.firmware.report
        assert rep["fits"] and rep["flash_bytes"] <= 16384 and rep["sram_bytes"] <= 2048, rep["kernels_tried"]
        assert rep["stack"]["bytes"] <= rep["stack"]["reserved"]
        assert rep["model"]["stream"] and rep["components"]["model_io"]["sram"] < 32  # the input alone
        assert s.link.streams
        for i in range(len(x)):
            r = s.link.classify(x[i])
            np.testing.assert_array_equal(r.outputs.reshape(expect[i].shape), expect[i])
            assert r.cls == golden.argmax(expect[i:i + 1])[0]


def test_2d_tiles_read_and_write_within_their_buffers(sanitized_runtime, tmp_path):
    """Under ASan + UBSan: tiles whose receptive fields are cut at every edge (poolings that
    drop a column, transposed convolutions, strided convolutions), streamed or not."""
    for seed, stream in ((1, False), (4, False), (7, False), (10, True)):
        m = random_stack(seed)
        types = emit.plan_model(m).types
        found = tiling.runs(m, types)
        if not found or any(isinstance(m.layers[st.first], ir.Upsample) for st in found[0]):
            continue
        _, out_h, out_w = types[found[0][-1].last + 1].shape
        em = emit.emit(m, tmp_path / f"c{seed}", kernels="rv32ec", tiles="rows", strip_rows=min(2, out_h),
                       tile_cols=min(3, out_w), stream=stream)
        x = _inputs(m, 2)
        y = host.build_sanitized(em, tmp_path / f"b{seed}", runtime=sanitized_runtime).run(x)[0]
        np.testing.assert_array_equal(y.reshape(len(x), -1), golden.run(m, x).reshape(len(x), -1))
    m = decoder(ch=2, ups=2, full=1)
    em = emit.emit(m, tmp_path / "die", kernels="rv32ec", tiles="rows", strip_rows=3, tile_cols=5, stream=True)
    x = _inputs(m, 2)
    y = host.build_sanitized(em, tmp_path / "bdie", runtime=sanitized_runtime).run(x)[0]
    np.testing.assert_array_equal(y.reshape(len(x), -1), golden.run(m, x).reshape(len(x), -1))
