"""Hand-gesture video clips for PixelRNN-shaped models (``--dataset clips``).

Neither the Cambridge hand-gesture set nor Tulips1 can be downloaded here and no package ships
them (``../shared/reference/scamp5.md`` §5), so there are two sources:

* :func:`synthetic`: a deterministic synthetic set with Cambridge's nine classes, three hand
  shapes (flat, spread, V) times three motions (leftward, rightward, contract), 64x64 frames, 16
  per clip, with lighting, position, size, rotation, speed, background and noise varying from
  clip to clip. Everything is drawn from a generator seeded by the split, so every machine
  builds the same clips.
* :func:`frame_folder`: a folder of real frames in the layout PixelRNN reads
  (``ROOT/<class>/<video>/*.jpg``, e.g. ``Cambridge_Hand_Gesture/1/Set1_1_0000/0000.jpg``), with
  PixelRNN's split, frame sampling and test transform (below).

Values are floats around -1..1 (synthetic) or ImageNet-normalized grey levels (real frames);
``x`` has the shape ``(N, 16, 1, 64, 64)``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

FRAMES = 16
SIZE = 64
SHAPES = ("flat", "spread", "v")
MOTIONS = ("left", "right", "contract")
LABELS = [f"{s}-{m}" for s in SHAPES for m in MOTIONS]  # Cambridge's order: shape-major
PER_CLASS = {"train": 60, "test": 20}  # 540 training and 180 test clips

# fingers of each shape: (angle from the hand's up axis in degrees, x of the base, length, width),
# in hand units (a hand is about 26 units tall at scale 1)
_FINGERS = {
    "flat": [(0, -4.5, 11, 2.9), (0, -1.5, 12, 2.9), (0, 1.5, 11.5, 2.9), (0, 4.5, 10, 2.9), (-35, -7, 7, 3.0)],
    "spread": [(-28, -4.5, 11, 2.4), (-9, -1.5, 12, 2.4), (9, 1.5, 11.5, 2.4), (28, 4.5, 10, 2.4), (-75, -7, 8, 2.6)],
    "v": [(-16, -2, 12.5, 2.6), (16, 2, 12, 2.6), (0, -4.5, 3, 2.8), (0, 4.5, 3, 2.8), (-60, -7, 4, 2.8)],
}


def _capsule(px: np.ndarray, py: np.ndarray, x0, y0, x1, y1, radius, pixels_per_unit) -> np.ndarray:
    """Coverage (0..1, one pixel of soft edge) of capsules from (x0, y0) to (x1, y1) in hand
    units; the segment parameters broadcast against the pixel grids."""
    dx, dy = x1 - x0, y1 - y0
    length2 = np.maximum(dx * dx + dy * dy, 1e-6)
    t = np.clip(((px - x0) * dx + (py - y0) * dy) / length2, 0.0, 1.0)
    d = np.hypot(px - x0 - t * dx, py - y0 - t * dy)
    return np.clip((radius - d) * pixels_per_unit + 0.5, 0.0, 1.0)


def _render(shape: str, cx, cy, scale, angle, extend, grid) -> np.ndarray:
    """Masks (n, T, H, W) of hands of one shape: centre, scale, rotation (radians) and finger
    extension (1: open, smaller: closing) per clip and frame, (n, T) arrays."""
    gy, gx = grid
    c, s = np.cos(angle)[..., None, None], np.sin(angle)[..., None, None]
    # pixel -> hand coordinates (x right, y up; the palm's centre at the origin)
    rx, ry = gx - cx[..., None, None], gy - cy[..., None, None]
    hx = (c * rx + s * ry) / scale[..., None, None]
    hy = (s * rx - c * ry) / scale[..., None, None]
    ppu = scale[..., None, None]  # pixels per hand unit
    mask = np.clip((1.0 - np.hypot(hx / 7.5, (hy + 2.0) / 8.5)) * 8.0 * ppu + 0.5, 0.0, 1.0)  # the palm
    ext = extend[..., None, None]
    for deg, bx, length, width in _FINGERS[shape]:
        a = np.deg2rad(deg)
        x0, y0 = bx, 4.0 if abs(deg) < 50 else -1.0
        x1, y1 = x0 + np.sin(a) * length * ext, y0 + np.cos(a) * length * ext
        mask = np.maximum(mask, _capsule(hx, hy, x0, y0, x1, y1, width / 2, ppu))
    return mask


def synthetic(split: str, per_class: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The synthetic clips of a split: x (N, 16, 1, 64, 64) float32 in -1..1, y (N,) class
    indices into :data:`LABELS`, classes interleaved (clip i has class i % 9)."""
    per = PER_CLASS[split] if per_class is None else int(per_class)
    rng = np.random.default_rng([16, ("train", "test").index(split)])
    n = per * len(LABELS)
    y = np.arange(n) % len(LABELS)
    t = np.linspace(-0.5, 0.5, FRAMES)[None, :]  # clip time, centred
    grid = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) + 0.5
    out = np.empty((n, FRAMES, 1, SIZE, SIZE), dtype=np.float32)

    # per clip: where the hand is, how big, how it is turned, how fast it moves
    scale = rng.uniform(1.2, 1.6, n)
    angle0 = rng.normal(0.0, 0.15, n)
    x_mid = SIZE / 2 + rng.uniform(-6, 6, n)
    y_mid = SIZE / 2 + 5 + rng.uniform(-4, 4, n)
    travel = rng.uniform(18, 30, n)  # pixels over the clip for left/right
    wobble = rng.normal(0.0, 0.6, (n, FRAMES))  # hand tremor, pixels
    # lighting and scene
    hand_level = rng.uniform(0.35, 0.9, n)
    bg_level = rng.uniform(-0.9, -0.3, n)
    gain = rng.uniform(0.7, 1.15, n)
    grad = rng.uniform(-0.5, 0.5, (n, 2))  # a linear lighting gradient over the frame
    freq = rng.uniform(0.05, 0.2, (n, 2, 2))  # two background sinusoids per clip
    phase = rng.uniform(0, 2 * np.pi, (n, 2))
    clutter = rng.uniform(0.0, 0.25, n)
    noise = rng.uniform(0.05, 0.15, n)

    for k in range(0, n, 36):  # rendered in chunks: (36, 16, 64, 64) float64 at a time
        sl = slice(k, min(k + 36, n))
        m = sl.stop - sl.start
        motion = y[sl] % 3
        direction = np.where(motion == 0, -1.0, np.where(motion == 1, 1.0, 0.0))[:, None]
        cx = x_mid[sl, None] + direction * travel[sl, None] * t + wobble[sl]
        cy = y_mid[sl, None] + 0.5 * wobble[sl][:, ::-1]
        closing = np.where(motion == 2, 1.0, 0.0)[:, None]
        extend = 1.0 - closing * 0.8 * (t + 0.5)  # contract: the fingers fold in over the clip
        sc = scale[sl, None] * (1.0 - closing * 0.15 * (t + 0.5)) * np.ones_like(t)
        ang = angle0[sl, None] + 0.0 * t
        mask = np.zeros((m, FRAMES, SIZE, SIZE))
        for si, shape in enumerate(SHAPES):
            which = (y[sl] // 3) == si
            if which.any():
                mask[which] = _render(shape, cx[which], cy[which], sc[which], ang[which], extend[which], grid)
        gy, gx = (grid - SIZE / 2) / SIZE
        bg = bg_level[sl, None, None] + clutter[sl, None, None] * (
            np.sin(2 * np.pi * (freq[sl, 0, 0, None, None] * gx * SIZE / 4 + freq[sl, 0, 1, None, None] * gy * SIZE / 4)
                   + phase[sl, 0, None, None])
            * np.cos(2 * np.pi * (freq[sl, 1, 0, None, None] * gy * SIZE / 4) + phase[sl, 1, None, None]))
        light = gain[sl, None, None] * (1.0 + grad[sl, 0, None, None] * gx + grad[sl, 1, None, None] * gy)
        img = (bg[:, None] + (hand_level[sl, None, None, None] - bg[:, None]) * mask) * light[:, None]
        img = img + noise[sl, None, None, None] * rng.standard_normal(img.shape)
        out[sl, :, 0] = np.clip(img, -1.0, 1.0)
    return out, y.astype(np.int64)


# ------------------------------------------------------------------ real frames (PixelRNN's layout)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GREY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale


def frame_indices(n: int, frames: int = FRAMES) -> list[int]:
    """PixelRNN's evaluation sampling of ``frames`` frames out of ``n`` (sorted) frames:
    ``linspace(0, n, frames, endpoint=False)`` moved to end on the last frame."""
    idx = np.linspace(0, n, frames, dtype=int, endpoint=False)
    return list(idx + (n - 1 - idx[-1]))


def load_frame(path: Path, size: int = SIZE) -> np.ndarray:
    """One frame as PixelRNN's test transform makes it: RGB in 0..1, ImageNet ``Normalize``,
    grey (torchvision's weights), bilinear resize to size x size (antialiased, as
    torchvision's ``Resize`` on tensors)."""
    import torch
    from PIL import Image

    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    norm = (rgb - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    grey = norm @ np.array(GREY, np.float32)
    t = torch.from_numpy(np.ascontiguousarray(grey))[None, None]
    small = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", align_corners=False,
                                            antialias=True)
    return small[0, 0].numpy()


def list_videos(root: Path) -> tuple[list[Path], list[str], list[str]]:
    """(video folders, their class names, the sorted class names) of ``root/<class>/<video>/``.
    Sorted by name (PixelRNN lists folders in the file system's order)."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    videos, labels = [], []
    for c in classes:
        for v in sorted(p for p in (root / c).iterdir() if p.is_dir() and not p.name.startswith(".")):
            videos.append(v)
            labels.append(c)
    return videos, labels, classes


def split_videos(labels: list[str], split: str) -> list[int]:
    """PixelRNN's split (``data_utils/utils.py:split_data``): a stratified 80/20 shuffle split
    with ``random_state=0``, the 20 % halved again (validation, test) the same way; ``train``
    is the 80 %, ``test`` the last half (the validation half is not used here)."""
    from sklearn.model_selection import StratifiedShuffleSplit

    idx = np.arange(len(labels))
    train, rest = next(StratifiedShuffleSplit(n_splits=2, test_size=0.2, random_state=0).split(idx, labels))
    if split == "train":
        return [int(i) for i in train]
    rest_labels = [labels[i] for i in rest]
    _, test = next(StratifiedShuffleSplit(n_splits=2, test_size=0.5, random_state=0).split(rest, rest_labels))
    return [int(rest[i]) for i in test]


def frame_folder(root: Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """x (N, 16, 1, 64, 64) float32, y (N,) and the class names of a folder of real frames
    (see the module docstring); raises ValueError with a one-line reason."""
    videos, labels, classes = list_videos(root)
    if len(classes) < 2 or len(videos) < 10:
        raise ValueError(f"expected ROOT/<class>/<video>/*.jpg with at least 2 classes and 10 videos, found "
                         f"{len(classes)} classes and {len(videos)} videos")
    chosen = split_videos(labels, split)
    x = np.empty((len(chosen), FRAMES, 1, SIZE, SIZE), dtype=np.float32)
    for k, i in enumerate(chosen):
        paths = sorted(p for p in videos[i].iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise ValueError(f"{videos[i]}: no frames ({', '.join(IMAGE_SUFFIXES)})")
        while len(paths) < FRAMES:  # short videos: leading frames repeated, as PixelRNN pads them
            paths = sorted(paths + paths[: FRAMES - len(paths)])
        for f, j in enumerate(frame_indices(len(paths))):
            x[k, f, 0] = load_frame(paths[j])
    y = np.array([classes.index(labels[i]) for i in chosen], dtype=np.int64)
    return x, y, classes
