"""bitgen.datasets: loaders for digits, USPS, MNIST (IDX, MNIST-16) and npz; clear errors."""
import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from bitgen import datasets, ir

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"
USPS = SHARED / "usps"
MNIST = SHARED / "mnist-test"
needs_usps = pytest.mark.skipif(not (USPS / "zip.train.gz").exists(), reason="../shared/datasets/usps missing")
needs_mnist = pytest.mark.skipif(not MNIST.exists(), reason="../shared/datasets/mnist-test missing")


def test_digits_split_is_fixed_disjoint_and_complete():
    tr, te = datasets.load("digits", split="train"), datasets.load("digits", split="test")
    assert len(tr) + len(te) == 1797 and len(te) == 359
    assert tr.x.shape[1:] == (1, 8, 8) and tr.input == ir.InputSpec((1, 8, 8), 16 / 127)
    q = tr.quantized()
    assert q.dtype == np.int8 and q.min() == 0 and q.max() == 127
    from sklearn.datasets import load_digits

    def rows(x, y):
        return sorted(a.tobytes() + bytes([b]) for a, b in zip(x.reshape(len(y), -1), y))

    full = load_digits()
    assert rows(np.concatenate([tr.x, te.x]), np.concatenate([tr.y, te.y])) == \
        rows(full.images.astype(np.float64), full.target)  # a partition of the 1797 samples
    again = datasets.load("digits", split="test")
    np.testing.assert_array_equal(again.x, te.x)
    assert set(np.unique(te.y)) == set(range(10))


@needs_usps
def test_usps_files_load_with_their_published_sizes():
    tr, te = datasets.load("usps", USPS, "train"), datasets.load("usps", USPS, "test")
    assert tr.x.shape == (7291, 1, 16, 16) and te.x.shape == (2007, 1, 16, 16)
    assert tr.x.min() == -1 and tr.x.max() == 1
    assert te.quantized().min() == -127 and te.quantized().max() == 127
    assert np.bincount(te.y).tolist() == [359, 264, 198, 166, 200, 160, 170, 147, 166, 177]
    # a single file and an uncompressed copy read the same
    one = datasets.load("usps", USPS / "zip.test.gz", "test")
    np.testing.assert_array_equal(one.x, te.x)


def test_usps_bad_files(tmp_path):
    with pytest.raises(datasets.DatasetError, match="no USPS train file"):
        datasets.load("usps", tmp_path, "train")
    (tmp_path / "zip.train").write_text("3 " + "0.5 " * 255 + "\n")
    with pytest.raises(datasets.DatasetError, match="line 1 does not hold a label and 256 values"):
        datasets.load("usps", tmp_path, "train")
    (tmp_path / "zip.train").write_text("12 " + "0.5 " * 256 + "\n")
    with pytest.raises(datasets.DatasetError, match="labels must be digits"):
        datasets.load("usps", tmp_path, "train")
    with pytest.raises(datasets.DatasetError, match="no such file"):
        datasets.load("usps", tmp_path / "nope", "train")


def _write_idx(path: Path, arr: np.ndarray, compress: bool) -> None:
    head = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    data = head + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_idx_round_trip(tmp_path, compress):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (5, 28, 28))
    labs = rng.integers(0, 10, 5)
    sfx = ".gz" if compress else ""
    _write_idx(tmp_path / f"train-images-idx3-ubyte{sfx}", imgs, compress)
    _write_idx(tmp_path / f"train-labels-idx1-ubyte{sfx}", labs, compress)
    ds = datasets.load("mnist", tmp_path, "train")
    np.testing.assert_allclose(ds.x[:, 0] * 255, imgs)
    assert ds.y.tolist() == labs.tolist() and ds.input.shape == (1, 28, 28)
    with pytest.raises(datasets.DatasetError, match="no MNIST test images file"):
        datasets.load("mnist", tmp_path, "test")


def test_idx_errors(tmp_path):
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + (5).to_bytes(4, "big") * 3 + b"x")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"hello")
    with pytest.raises(datasets.DatasetError, match="does not match its dimensions"):
        datasets.load("mnist", tmp_path, "test")


@needs_mnist
def test_mnist16_resize_equals_pillow_bilinear():
    # reference: Pillow 13 Image.resize((16, 16), Image.BILINEAR) of the first 100 test images
    x = datasets.read_idx(MNIST / "t10k-images-idx3-ubyte.gz")[:100]
    small = datasets.resize_bilinear(x, (16, 16))
    assert hashlib.sha256(np.ascontiguousarray(small).tobytes()).hexdigest() == \
        "48074b307649f753a906813f2bc12ec67dae18a7a3126fe954a57347e26b3ee5"
    try:
        from PIL import Image
    except ImportError:
        return
    for img in x[:20]:
        ref = np.asarray(Image.fromarray(img).resize((12, 20), Image.BILINEAR))
        np.testing.assert_array_equal(datasets.resize_bilinear(img[None], (20, 12))[0], ref)


@needs_mnist
def test_mnist16_is_per_image_int8_with_full_range():
    ds = datasets.load("mnist16", MNIST, "test")
    assert ds.x.dtype == np.int8 and ds.x.shape == (10000, 1, 16, 16) and ds.input.scale == 1.0
    peak = np.abs(ds.x.reshape(10000, -1).astype(int)).max(axis=1)
    assert np.all(peak == 127)  # each image is scaled so its largest magnitude is 127
    np.testing.assert_array_equal(ds.quantized(), ds.x)


def test_npz_float_int8_and_split_keys(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 6)) * 3
    y = rng.integers(0, 4, 20)
    np.savez(tmp_path / "a.npz", x=x, y=y)
    ds = datasets.load("npz", tmp_path / "a.npz", "test")
    assert not ds.distinct_splits and ds.labels == ["0", "1", "2", "3"][: int(y.max()) + 1]
    assert ds.quantized().dtype == np.int8 and np.abs(ds.quantized()).max() == 127
    q = rng.integers(-128, 128, (10, 8, 8)).astype(np.int8)
    np.savez(tmp_path / "b.npz", x_train=q, y_train=np.arange(10) % 3, x_test=q[:4],
             y_test=np.arange(4) % 3, labels=np.array(["a", "b", "c"]))
    tr = datasets.load("npz", tmp_path / "b.npz", "train")
    te = datasets.load("npz", tmp_path / "b.npz", "test")
    assert tr.distinct_splits and len(te) == 4 and tr.labels == ["a", "b", "c"]
    assert tr.input == ir.InputSpec((1, 8, 8), 1.0)
    np.testing.assert_array_equal(tr.quantized()[:, 0], q)


def test_npz_errors(tmp_path):
    np.savez(tmp_path / "c.npz", a=np.zeros(3))
    with pytest.raises(datasets.DatasetError, match="needs arrays 'x' and 'y'"):
        datasets.load("npz", tmp_path / "c.npz")
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 2)), y=np.zeros(4, dtype=int))
    with pytest.raises(datasets.DatasetError, match="do not match"):
        datasets.load("npz", tmp_path / "d.npz")
    (tmp_path / "e.npz").write_text("garbage")
    with pytest.raises(datasets.DatasetError, match="not a readable .npz"):
        datasets.load("npz", tmp_path / "e.npz")
    with pytest.raises(datasets.DatasetError, match="needs a path"):
        datasets.load("npz")
    with pytest.raises(datasets.DatasetError, match="unknown dataset 'cifar'"):
        datasets.load("cifar")


def test_dataset_shape_mismatch_with_model_input_is_one_line():
    ds = datasets.load("digits", split="test")
    with pytest.raises(datasets.DatasetError) as e:
        datasets.check_fits(ds, ir.InputSpec((1, 16, 16)))
    assert "(1, 8, 8) (64 values), the model expects (1, 16, 16) (256 values)" in str(e.value)
    with pytest.raises(datasets.DatasetError):
        ds.quantized(ir.InputSpec((256,)))
    assert ds.quantized(ir.InputSpec((64,))).shape == (len(ds), 64)  # same size, other shape
