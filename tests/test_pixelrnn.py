"""PixelRNN as a bitgen model (scamp5.md §2): the Tile op (PixelRNN's scamp_shape), its noise-aware
training, the hand-gesture clips (synthetic and a folder of real frames) and the model of
examples/pixelrnn.toml."""
import numpy as np
import pytest
import torch

from bitgen import check, clips, datasets, golden, ir
from bitgen import nn as bnn
from bitgen.backends.c import emit, host
from bitgen.commands.train_cmd import _read_config
from bitgen.nn import export


def test_tile_puts_channel_k_at_tile_row_k_mod_rows_and_column_k_div_rows():
    x = np.arange(6 * 2 * 3).reshape(1, 6, 2, 3).astype(np.int8)
    y = ir.Tile(rows=2, cols=3).golden(x)
    assert y.shape == (1, 1, 4, 9)
    for k in range(6):
        r, c = k % 2, k // 2
        assert np.array_equal(y[0, 0, 2 * r:2 * r + 2, 3 * c:3 * c + 3], x[0, k])
    t = torch.from_numpy(x.astype(np.float32))
    assert np.array_equal(bnn.Tile(2, 3)(t).numpy(), y)
    with pytest.raises(ir.IRError, match="holds 4 channels"):
        ir.Tile(rows=2, cols=2).infer(ir.TensorType((6, 2, 3), "int8", -128, 127))


def test_a_tiled_model_is_bit_exact_in_c(tmp_path):
    rng = np.random.default_rng(0)
    m = ir.Model(ir.InputSpec((1, 6, 6)), layers=[
        ir.Sign(threshold=[3]),
        ir.Conv2d(weight=rng.choice([-1, 1], (4, 1, 3, 3)), encoding="binary", padding=(1, 1)),
        ir.MaxPool2d((2, 2), (2, 2)),
        ir.Tile(rows=2, cols=2),
        ir.Flatten(),
        ir.Linear(weight=rng.integers(-7, 8, (3, 36)) * 2 + 1, encoding="4bitsym"),
    ])
    em = emit.emit(m, tmp_path / "c", name="tiled")
    hm = host.build(em, tmp_path / "b")
    try:
        res, _, _ = check.compare(m, hm, check.InputSet("random", check.random_inputs(m.input.shape, 300)))
    finally:
        hm.close()
    assert res.mismatches == 0 and res.compared == 300


def test_noise_is_added_before_thresholds_after_products_only_in_training():
    conf = _read_config("examples/pixelrnn.toml")
    model = bnn.graph(conf["nodes"])
    names = bnn.set_noise(model, 0.6, 1.0)
    assert names == ["layers.threshold", "layers.rnn"]  # not the frame's binarization, which sees pixels
    assert model.layers["threshold"].noise == 0.6 and model.layers["binarize"].noise == 0.0
    cell = model.layers["rnn"]
    assert cell.gate.noise == 0.6 and cell.out_noise == 1.0
    sign = bnn.Sign(0, noise=5.0)
    x = torch.full((1, 4000), 0.5)
    sign.train()
    torch.manual_seed(0)
    assert (sign(x) < 0).any()  # noise of 5 flips many 0.5 > 0 decisions
    sign.eval()
    assert (sign(x) > 0).all()  # never in eval mode
    # the noise is part of the layer's description, so a saved model keeps its recipe
    assert bnn.from_spec(bnn.to_spec(model)).layers["rnn"].out_noise == 1.0


def test_pixelrnn_exports_the_shapes_of_the_paper():
    conf = _read_config("examples/pixelrnn.toml")
    model = bnn.graph(conf["nodes"])
    model.input_spec = ir.InputSpec((1, 64, 64))
    m = export.to_ir(model)
    types = dict(zip([n.output for n in m.nodes], m.validate()))
    assert types["pool"].shape == (16, 16, 16) and types["tile"].shape == (1, 64, 64)
    assert types["rnn"].shape == (1, 64, 64) and (types["rnn"].lo, types["rnn"].hi) == (-50, 50)
    assert m.states[0].shape == (1, 64, 64) and m.states[0].init == 1
    assert types["classifier"].shape == (9,)


def test_synthetic_clips_are_deterministic_and_balanced():
    x, y = clips.synthetic("test", per_class=2)
    x2, y2 = clips.synthetic("test", per_class=2)
    assert x.shape == (18, 16, 1, 64, 64) and x.dtype == np.float32
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert np.bincount(y).tolist() == [2] * 9
    assert -1.0 <= x.min() and x.max() <= 1.0
    xt, _ = clips.synthetic("train", per_class=2)
    assert not np.array_equal(x, xt)  # the splits differ
    # left and right motions move the bright mass opposite ways
    def centre_x(clip):
        w = np.clip(clip[:, 0], 0, None)
        return (w * np.arange(64)).sum(axis=(1, 2)) / np.maximum(w.sum(axis=(1, 2)), 1e-6)
    left, right = centre_x(x[0]), centre_x(x[1])  # classes 0 (flat-left) and 1 (flat-right)
    assert left[-1] < left[0] - 5 and right[-1] > right[0] + 5


def test_the_clips_dataset_needs_no_path():
    ds = datasets.load("clips", None, split="test")
    assert ds.frames == 16 and len(ds) == 180 and ds.labels == clips.LABELS
    assert ds.quantized().shape == (180, 16, 1, 64, 64)


def _write_folder(root, classes=3, videos=10, frames=(20, 12)):
    from PIL import Image

    for c in range(classes):
        for v in range(videos):
            d = root / str(c + 1) / f"Set1_{c + 1}_{v:04d}"
            d.mkdir(parents=True)
            n = frames[v % len(frames)]
            for t in range(n):
                level = (10 * c + 7 * t) % 256  # grey level encodes class and frame
                Image.new("RGB", (80, 60), (level, level, level)).save(d / f"{t:04d}.jpg", quality=100)


def test_a_folder_of_real_frames_loads_in_pixelrnns_layout(tmp_path):
    _write_folder(tmp_path)
    train = datasets.load("clips", tmp_path, split="train")
    test = datasets.load("clips", tmp_path, split="test")
    assert train.labels == ["1", "2", "3"] and train.frames == 16
    assert len(train) == 24 and len(test) == 3  # 80 % and half of the remaining 20 %
    assert sorted(test.y.tolist()) == [0, 1, 2]  # stratified
    assert train.x.shape[2:] == (1, 64, 64)
    # frames sampled as PixelRNN evaluates: 16 of 20 at linspace, ending on the last frame
    assert clips.frame_indices(20) == [1, 2, 3, 4, 6, 7, 8, 9, 11, 12, 13, 14, 16, 17, 18, 19]
    grey = test.x[0, :, 0, 32, 32]
    c = int(test.y[0])
    # a flat grey frame: ImageNet-normalized grey of its level, whatever the resize
    levels = np.array([(10 * c + 7 * t) % 256 for t in range(20)])[clips.frame_indices(20)] / 255.0
    mean, std = np.array(clips.IMAGENET_MEAN), np.array(clips.IMAGENET_STD)
    expect = ((levels[:, None] - mean) / std) @ np.array(clips.GREY)
    assert np.allclose(grey, expect, atol=0.05)  # JPEG rounding


def test_a_bad_frame_folder_is_a_one_line_error(tmp_path):
    (tmp_path / "a" / "v").mkdir(parents=True)
    with pytest.raises(datasets.DatasetError, match="at least 2 classes"):
        datasets.load("clips", tmp_path, split="test")
    with pytest.raises(datasets.DatasetError, match="not a folder"):
        datasets.load("clips", tmp_path / "missing", split="test")


def test_a_small_pixelrnn_trains_with_noise_and_its_scamp5_program_equals_golden():
    """End to end at a small size: PixelRNN's shape with 4 kernels and 3x3 cells, one epoch of
    noise-aware training on synthetic clips, the SCAMP-5 program in the exact simulator."""
    from bitgen import train
    from bitgen.backends.scamp5 import execute, lower

    nodes = [dict(n) for n in _read_config("examples/pixelrnn.toml")["nodes"]]
    for n in nodes:
        if n["name"] == "conv":
            n["args"] = dict(n["args"], out_channels=4, kernel_size=3, padding=1)
        if n["name"] == "tile":
            n["args"] = {"rows": 2, "cols": 2}
        if n["name"] == "rnn":
            n["args"] = dict(n["args"], kernel_size=3)
        if n["name"] == "classifier":
            n["args"] = dict(n["args"], in_features=1024)
    model = bnn.graph(nodes)
    spec = ir.InputSpec((1, 64, 64))
    model.input_spec = spec
    x, y = clips.synthetic("train", per_class=2)
    recipe = train.Recipe(epochs=1, batch_size=6, lr=0.003, noise=0.6)
    train.fit(model, spec.quantize(x.reshape(-1, 1, 64, 64)).reshape(x.shape), y, recipe, seed=0, progress=False)
    m = export.to_ir(model)
    xt, _ = clips.synthetic("test", per_class=1)
    q = spec.quantize(xt.reshape(-1, 1, 64, 64)).reshape(xt.shape)[:, :6]
    prog, a = lower.lower(m, lower.Options(weights="streamed"))
    res = execute.simulate(prog, a, q)
    cmp = execute.compare(m, a, q, res)
    assert cmp["mismatches"] == 0, cmp["tensors"]
    assert np.array_equal(res.classes, golden.predict(m, q))
