"""Datasets for training and checking: raw samples, labels and a recommended input spec.

``load(name, data=None, split="train")`` returns a :class:`Dataset` whose ``x`` holds raw
float samples ``(N, *shape)`` (or int8 samples that are already quantized, with an input
spec of scale 1), ``y`` integer class indices, ``labels`` the class names and ``input`` the
:class:`bitgen.ir.InputSpec` that turns ``x`` into the model's int8 input.

| name      | ``data``                                   | shape      | raw values, spec |
|-----------|--------------------------------------------|------------|------------------|
| digits    | none (scikit-learn's 8x8 digits)           | (1, 8, 8)  | 0..16, scale 16/127; a fixed 80/20 split (seeded permutation) |
| usps      | folder with zip.train[.gz] / zip.test[.gz], or one such file | (1, 16, 16) | -1..1, scale 1/127 |
| mnist     | folder with {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] | (1, 28, 28) | 0..1 (pixel/255), scale 1/127 |
| mnist16   | as mnist                                   | (1, 16, 16) | int8, BitNetMCU's "MNIST-16" preprocessing (below) |
| usps-clips | as usps                                  | (1, 16, 16) per frame, 16 frames | as usps: each digit moving through the frame (below) |
| clips     | none (synthetic), or a folder of real frames ``ROOT/<class>/<video>/*.jpg`` | (1, 64, 64) per frame, 16 frames | hand-gesture clips for PixelRNN-shaped models (:mod:`bitgen.clips`); synthetic: -1..1, scale 1/127; real: ImageNet-normalized grey, scale 2.4/127 |
| dice      | none (synthetic: :mod:`bitgen.dice`)         | (1, 32, 32) | -1..1, scale 1/127; a die face of 1..6 pips (class 0..5) at a random angle (``angle``, degrees) |
| npz       | a .npz with ``x``, ``y`` (and optionally ``labels``), or ``x_train``/``y_train``/``x_test``/``y_test`` | x.shape[1:]; (N, H, W) becomes (1, H, W); a 5-D x (N, T, C, H, W) holds clips | int8: already quantized (scale 1); float: scale max|x|/127 |

MNIST-16: bilinear resize of the uint8 image to 16x16 exactly as Pillow's
``Image.resize((16, 16), Image.BILINEAR)`` computes it (reimplemented below, fixed point),
then ``x / 255``, ``(x - 0.1307) / 0.3081``, and per image ``round(x * 127 / max|x|)``
clipped to int8 (float32 arithmetic, like the PyTorch pipeline it reproduces).

USPS clips (for models with state; ``x`` is ``(N, 16, 1, 16, 16)``, ``frames`` is 16): each USPS
image becomes a clip in which the digit drifts through the frame at a constant velocity (up to
a quarter pixel per frame on each axis, through the centre at the middle of the clip; the background
-1 fills what moves in), with Gaussian noise of standard deviation 0.4 added to every frame and
clipped to -1..1. One label per clip. Motions and noise come from a generator seeded by the split,
so every machine builds the same clips.
"""
from __future__ import annotations

import gzip
import math
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import ir
from .errors import BitgenError

NAMES = ("digits", "usps", "usps-clips", "clips", "mnist", "mnist16", "dice", "npz")
NO_PATH = ("digits", "clips", "dice")  # datasets that need no --data
SPLITS = ("train", "test")
# What a loader reads is checked against these before it is allocated (a file's header or a
# compressed stream can declare anything).
MAX_FILE_BYTES = 512 << 20  # one file, or one array of an .npz, after decompression
MAX_CLASSES = 1 << 16  # class indices 0..MAX_CLASSES - 1


class DatasetError(BitgenError):
    """A dataset that is missing, malformed or does not fit the model (one-line message)."""


@dataclass
class Dataset:
    name: str
    split: str
    x: np.ndarray  # raw float (N, *shape), or int8 when already quantized
    y: np.ndarray  # int64 (N,)
    labels: list[str]
    input: ir.InputSpec  # recommended: how x becomes the model's int8 input
    distinct_splits: bool = True  # False: "train" and "test" are the same samples (npz x, y)
    angle: np.ndarray | None = None  # dice: each face's rotation in degrees, the decoder's latent

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def frames(self) -> int:
        """Frames per sample of a clip dataset (x is (N, T, *frame)), 0 for single images."""
        return int(self.x.shape[1]) if self.x.ndim == len(self.input.shape) + 2 else 0

    @property
    def prequantized(self) -> bool:
        return self.x.dtype == np.int8

    def quantized(self, spec: ir.InputSpec | None = None) -> np.ndarray:
        """int8 model inputs ``(N, *spec.shape)`` (default: this dataset's own spec)."""
        spec = spec or self.input
        check_fits(self, spec)
        if self.frames:  # (N, T, *spec.shape): each frame quantized like an image
            n, t = self.x.shape[:2]
            frames = self.x.reshape((n * t,) + self.x.shape[2:])
            q = frames.reshape((n * t,) + spec.shape) if self.prequantized else spec.quantize(frames)
            return q.reshape((n, t) + spec.shape)
        if self.prequantized:
            return self.x.reshape((len(self),) + spec.shape)
        return spec.quantize(self.x)


def check_fits(ds: Dataset, spec: ir.InputSpec) -> None:
    """Raise :class:`DatasetError` unless ``ds`` samples have ``spec``'s number of values."""
    shape = tuple(ds.x.shape[2:] if ds.frames else ds.x.shape[1:])  # of one frame, for clips
    per = math.prod(shape)
    if per != spec.size:
        raise DatasetError(
            f"dataset '{ds.name}' has {'frames' if ds.frames else 'samples'} of shape {shape} ({per} values), "
            f"the model expects {tuple(spec.shape)} ({spec.size} values)")


def load(name: str, data: str | Path | None = None, split: str = "train") -> Dataset:
    """Load dataset ``name`` (see the module docstring); raises :class:`DatasetError`."""
    if split not in SPLITS:
        raise DatasetError(f"unknown split '{split}' (known: {', '.join(SPLITS)})")
    loaders = {"digits": _digits, "usps": _usps, "usps-clips": _usps_clips, "clips": _clips, "mnist": _mnist,
               "mnist16": _mnist16, "dice": _dice, "npz": _npz}
    if name not in loaders:
        raise DatasetError(f"unknown dataset '{name}' (known: {', '.join(NAMES)})")
    if name not in NO_PATH and data is None:
        raise DatasetError(f"dataset '{name}' needs a path (--data)")
    ds = loaders[name](None if data is None else Path(data), split)
    if len(ds) == 0:
        raise DatasetError(f"{data}: the {split} split of dataset '{name}' holds no samples")
    return ds


# ------------------------------------------------------------------------------- digits
DIGITS_TEST_FRACTION = 0.2


def _digits(_data: Path | None, split: str) -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.images.astype(np.float64).reshape(-1, 1, 8, 8)
    y = d.target.astype(np.int64)
    # fixed permutation: the same split on every machine and every run
    order = np.random.default_rng(0).permutation(len(y))
    n_test = int(round(len(y) * DIGITS_TEST_FRACTION))
    idx = np.sort(order[:n_test] if split == "test" else order[n_test:])
    return Dataset("digits", split, x[idx], y[idx], [str(i) for i in range(10)],
                   ir.InputSpec((1, 8, 8), scale=16.0 / 127.0))


# --------------------------------------------------------------------------------- usps
def _read_maybe_gz(path: Path) -> bytes:
    """The bytes of a file, decompressed if it is gzip, at most MAX_FILE_BYTES of them."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise DatasetError(f"{path}: larger than {MAX_FILE_BYTES >> 20} MiB")
        with open(path, "rb") as f:
            gz = f.read(2) == b"\x1f\x8b"
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DatasetError(f"{path}: cannot read ({_one_line(e)})") from None
    if len(raw) > MAX_FILE_BYTES:
        raise DatasetError(f"{path}: decompresses to more than {MAX_FILE_BYTES >> 20} MiB")
    return raw


def _one_line(e: BaseException) -> str:
    return (str(e).strip() or type(e).__name__).splitlines()[0][:200]


def _find(folder: Path, stems: list[str], what: str) -> Path:
    if not folder.exists():
        raise DatasetError(f"{folder}: no such file or folder")
    for stem in stems:
        for cand in (folder / stem, folder / (stem + ".gz")):
            if cand.is_file():
                return cand
    raise DatasetError(f"{folder}: no {what} file (looked for {', '.join(s + '[.gz]' for s in stems)})")


def _usps(data: Path, split: str) -> Dataset:
    path = data if data.is_file() else _find(data, [f"zip.{split}"], f"USPS {split}")
    text = _read_maybe_gz(path)
    try:
        rows = [line.split() for line in text.decode("ascii").splitlines() if line.strip()]
        if not rows or any(len(r) != 257 for r in rows):
            bad = next((i for i, r in enumerate(rows) if len(r) != 257), 0)
            raise ValueError(f"line {bad + 1} does not hold a label and 256 values")
        arr = np.array(rows, dtype=np.float64)
    except (UnicodeDecodeError, ValueError) as e:
        raise DatasetError(f"{path}: not a USPS zip.train/zip.test text file ({e})") from None
    y = arr[:, 0]
    if np.any(y != np.round(y)) or y.min() < 0 or y.max() > 9:
        raise DatasetError(f"{path}: labels must be digits 0..9")
    return Dataset("usps", split, arr[:, 1:].reshape(-1, 1, 16, 16), y.astype(np.int64),
                   [str(i) for i in range(10)], ir.InputSpec((1, 16, 16), scale=1.0 / 127.0))


CLIP_FRAMES = 16
CLIP_NOISE = 0.4
CLIP_MAX_SPEED = 0.25  # pixels per frame on each axis: at most 2 pixels off the centre


def _usps_clips(data: Path, split: str) -> Dataset:
    still = _usps(data, split)
    x = moving_clips(still.x[:, 0], CLIP_FRAMES, np.random.default_rng(SPLITS.index(split)))
    return Dataset("usps-clips", split, x[:, :, None], still.y, still.labels, still.input)


def moving_clips(images: np.ndarray, frames: int, rng: np.random.Generator, background: float = -1.0,
                 noise: float = CLIP_NOISE) -> np.ndarray:
    """(N, H, W) images in -1..1 -> (N, frames, H, W) float32 clips: each image drifts at its own
    constant velocity, passing the centre at the middle of the clip, shifted by whole pixels
    (what moves in is ``background``), plus Gaussian noise of standard deviation ``noise``,
    clipped to -1..1; see the module docstring."""
    n, h, w = images.shape
    speed = rng.uniform(-CLIP_MAX_SPEED, CLIP_MAX_SPEED, (n, 2))
    t = np.arange(frames) - (frames - 1) / 2
    offsets = np.rint(speed[:, None, :] * t[None, :, None]).astype(np.int64)  # (n, frames, 2)
    pad = max(1, int(np.abs(offsets).max()))
    big = np.full((n, h + 2 * pad, w + 2 * pad), background, dtype=np.float32)
    big[:, pad:pad + h, pad:pad + w] = images
    rows = pad - offsets[:, :, 0, None] + np.arange(h)  # (n, frames, h): the frame's source rows
    cols = pad - offsets[:, :, 1, None] + np.arange(w)
    clips = big[np.arange(n)[:, None, None, None], rows[:, :, :, None], cols[:, :, None, :]]
    clips += rng.normal(0.0, noise, clips.shape).astype(np.float32)
    return np.clip(clips, -1.0, 1.0)


def _clips(data: Path | None, split: str) -> Dataset:
    from . import clips

    if data is None:
        x, y = clips.synthetic(split)
        return Dataset("clips", split, x, y, list(clips.LABELS), ir.InputSpec((1, clips.SIZE, clips.SIZE), scale=1.0 / 127.0))
    if not data.is_dir():
        raise DatasetError(f"{data}: not a folder of <class>/<video>/ frames")
    try:
        x, y, labels = clips.frame_folder(data, split)
    except (ValueError, OSError) as e:
        raise DatasetError(f"{data}: {e}") from None
    return Dataset("clips", split, x, y, labels, ir.InputSpec((1, clips.SIZE, clips.SIZE), scale=2.4 / 127.0))


# --------------------------------------------------------------------------------- dice
def _dice(_data: Path | None, split: str) -> Dataset:
    from . import dice

    x, y, angle = dice.make(dice.SPLIT_SIZES[split], dice.SPLIT_SEEDS[split])
    return Dataset("dice", split, x, y, list(dice.LABELS), ir.InputSpec((1, dice.SIZE, dice.SIZE),
                   scale=dice.INPUT_SCALE), angle=angle)


# -------------------------------------------------------------------------------- mnist
def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzip-compressed) of unsigned bytes -> uint8 array."""
    raw = _read_maybe_gz(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetError(f"{path}: not an IDX file of unsigned bytes")
    nd = raw[3]
    head = 4 + 4 * nd
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(nd)]
    if len(raw) < head or len(raw) != head + math.prod(dims):  # exact: no int64 wrap-around
        raise DatasetError(f"{path}: IDX size {len(raw)} does not match its dimensions {dims}")
    return np.frombuffer(raw, dtype=np.uint8, offset=head).reshape(dims)


def _mnist_raw(data: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    prefix = "train" if split == "train" else "t10k"
    imgs = _find(data, [f"{prefix}-images-idx3-ubyte", f"{prefix}-images.idx3-ubyte"], f"MNIST {split} images")
    labs = _find(data, [f"{prefix}-labels-idx1-ubyte", f"{prefix}-labels.idx1-ubyte"], f"MNIST {split} labels")
    x, y = read_idx(imgs), read_idx(labs)
    if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0] or min(x.shape[1:], default=0) < 1:
        raise DatasetError(f"{data}: MNIST images {x.shape} and labels {y.shape} do not match")
    if y.size and y.max() > 9:
        raise DatasetError(f"{labs}: labels must be digits 0..9, found {int(y.max())}")
    return x, y.astype(np.int64)


def _mnist(data: Path, split: str) -> Dataset:
    x, y = _mnist_raw(data, split)
    h, w = x.shape[1:]
    return Dataset("mnist", split, (x.astype(np.float64) / 255.0).reshape(-1, 1, h, w), y,
                   [str(i) for i in range(10)], ir.InputSpec((1, h, w), scale=1.0 / 127.0))


def _mnist16(data: Path, split: str) -> Dataset:
    x, y = _mnist_raw(data, split)
    return Dataset("mnist16", split, mnist16(x).reshape(-1, 1, 16, 16), y,
                   [str(i) for i in range(10)], ir.InputSpec((1, 16, 16), scale=1.0))


def _bilinear_coeffs(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pillow's resampling weights for the triangle filter, in its 22-bit fixed point.

    Returns (first input index, fixed-point weights (out, taps)), the taps padded with zeros.
    """
    precision = 22
    scale = in_size / out_size
    fscale = max(scale, 1.0)
    support = 1.0 * fscale
    taps = int(np.ceil(support)) * 2 + 1
    first = np.zeros(out_size, dtype=np.int64)
    kk = np.zeros((out_size, taps), dtype=np.int64)
    for o in range(out_size):
        center = (o + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        n = min(int(center + support + 0.5), in_size) - lo
        k = [max(1.0 - abs((i + lo - center + 0.5) / fscale), 0.0) for i in range(n)]
        total = sum(k)
        for i, w in enumerate(k):
            w = w / total if total != 0.0 else w
            # C's (int) truncation of w * 2**22 +- 0.5
            kk[o, i] = int(w * (1 << precision) + (0.5 if w >= 0 else -0.5))
        first[o] = lo
    return first, kk


def _resample_axis(img: np.ndarray, out_size: int, axis: int) -> np.ndarray:
    in_size = img.shape[axis]
    first, kk = _bilinear_coeffs(in_size, out_size)
    dense = np.zeros((out_size, in_size + kk.shape[1]), dtype=np.int64)  # (out, in) weights
    for o in range(out_size):
        dense[o, first[o]: first[o] + kk.shape[1]] = kk[o]
    a = np.moveaxis(img.astype(np.int64), axis, -1)
    acc = a @ dense[:, :in_size].T + (1 << 21)  # exact: |acc| < 2**31
    out = np.clip(acc >> 22, 0, 255).astype(np.uint8)
    return np.moveaxis(out, -1, axis)


def resize_bilinear(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 images (N, H, W) -> (N, *size), equal to Pillow's ``resize(size, BILINEAR)``:
    a horizontal pass, then a vertical one, each rounded to uint8."""
    out = images
    if images.shape[2] != size[1]:
        out = _resample_axis(out, size[1], axis=2)
    if images.shape[1] != size[0]:
        out = _resample_axis(out, size[0], axis=1)
    return out


def mnist16(images: np.ndarray) -> np.ndarray:
    """BitNetMCU's MNIST-16 int8 inputs (N, 16, 16) from uint8 MNIST images (N, 28, 28)."""
    small = resize_bilinear(images, (16, 16)).astype(np.float32) / np.float32(255.0)
    norm = (small - np.float32(0.1307)) / np.float32(0.3081)
    peak = np.abs(norm).reshape(norm.shape[0], -1).max(axis=1)
    s = (np.float32(127.0) / np.maximum(peak, np.float32(1e-12))).astype(np.float32)
    q = np.round(norm * s[:, None, None])
    return np.clip(q, -128, 127).astype(np.int8)


# ---------------------------------------------------------------------------------- npz
def npz_arrays(path: Path, names: list[str]) -> dict[str, np.ndarray]:
    """The named arrays of an .npz that has them; each array's header (shape, dtype) is checked
    against the bytes the archive holds for it before the array is read."""
    out = {}
    with zipfile.ZipFile(path) as z:
        members = {n[:-4]: n for n in z.namelist() if n.endswith(".npy")}
        for name in names:
            if name not in members:
                continue
            info = z.getinfo(members[name])
            with z.open(info) as f:
                version = np.lib.format.read_magic(f)
                read_header = np.lib.format.read_array_header_2_0 if version >= (2, 0) else np.lib.format.read_array_header_1_0
                shape, _, dtype = read_header(f)
            if dtype.hasobject:
                raise DatasetError(f"{path}: array '{name}' holds Python objects (not read: that could run code)")
            nbytes = math.prod(shape) * dtype.itemsize
            if nbytes > min(info.file_size, MAX_FILE_BYTES):
                raise DatasetError(f"{path}: array '{name}' declares shape {shape} ({nbytes} bytes), more than "
                                   f"the file holds or {MAX_FILE_BYTES >> 20} MiB")
            with z.open(info) as f:
                out[name] = np.lib.format.read_array(f, allow_pickle=False)
    return out


def _npz(data: Path, split: str) -> Dataset:
    if not data.is_file():
        raise DatasetError(f"{data}: no such file")
    try:
        with zipfile.ZipFile(data) as z:
            keys = {n[:-4] for n in z.namelist() if n.endswith(".npy")}
        distinct = {f"x_{split}", f"y_{split}"} <= keys
        if distinct:
            xk, yk = f"x_{split}", f"y_{split}"
        elif {"x", "y"} <= keys:
            xk, yk = "x", "y"
        else:
            raise DatasetError(f"{data}: needs arrays 'x' and 'y' (or 'x_{split}' and 'y_{split}'), "
                               f"found {', '.join(sorted(keys)) or 'none'}")
        arrays = npz_arrays(data, [xk, yk, "labels"])
    except DatasetError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as e:
        raise DatasetError(f"{data}: not a readable .npz file ({_one_line(e)})") from None
    x, y, labels_a = arrays[xk], arrays[yk], arrays.get("labels")
    if x.ndim < 2 or x.ndim > 5 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise DatasetError(f"{data}: x {x.shape} and y {y.shape} do not match (x: (N, ...) of 1 to 4 more "
                           "dimensions, y: (N,))")
    if y.dtype.kind not in "iu" or (y.size and (y.min() < 0 or y.max() >= MAX_CLASSES)):
        raise DatasetError(f"{data}: y must hold class indices 0..K-1 (K at most {MAX_CLASSES})")
    if x.ndim == 3:
        x = x[:, None]  # (N, H, W): one channel
    n_classes = int(y.max()) + 1 if y.size else 0
    if labels_a is None:
        labels = [str(i) for i in range(n_classes)]
    else:
        if labels_a.ndim != 1 or len(labels_a) > MAX_CLASSES or labels_a.dtype.kind not in "iufUS":
            raise DatasetError(f"{data}: 'labels' must be a list of at most {MAX_CLASSES} class names")
        labels = [str(s) for s in labels_a]
        if len(labels) < n_classes:
            raise DatasetError(f"{data}: {len(labels)} labels but class index {n_classes - 1} occurs")
    shape = tuple(x.shape[2:] if x.ndim == 5 else x.shape[1:])  # (N, T, C, H, W): clips of frames
    if min(shape, default=0) < 1:
        raise DatasetError(f"{data}: samples of shape {shape} hold no values")
    if x.dtype == np.int8:
        spec = ir.InputSpec(shape, scale=1.0)
    elif x.dtype.kind in "iuf":
        x = x.astype(np.float64)
        if not np.all(np.isfinite(x)):
            raise DatasetError(f"{data}: x holds NaN or infinite values")
        peak = float(np.abs(x).max()) if x.size else 1.0
        spec = ir.InputSpec(shape, scale=(peak or 1.0) / 127.0)
    else:
        raise DatasetError(f"{data}: x must be numeric, got dtype {x.dtype}")
    return Dataset("npz", split, x, y.astype(np.int64), labels, spec, distinct_splits=distinct)
