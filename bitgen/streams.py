"""Frame streams: a synthetic static-camera video and the stream files the commands read.

A stream file is an ``.npz`` holding ``x``, the frames ``(T, C, H, W)`` in order (int8: already
quantized, scale 1; float: quantized with the model's input scale), and optionally ``y``, one
class index per frame, and ``labels``, the class names. ``bitgen run``/``bench``/``monitor
--stream FILE`` feed its frames as one sequence (from the model's initial state). A file that
``bitgen datasets make static-video`` writes also holds ``x_train``/``y_train`` (frames of other,
independent streams of the same scene) and ``x_test``/``y_test`` (the stream again), so the same
file trains a model (``--dataset npz``) and is what it is measured on: the same camera (the same
background) at other times.

Static-camera video (``static_video``, deterministic for a seed): 16x16 grey frames by default
(a size whose change-based model fits a CH32V003's 2 KB of SRAM; ``size`` up to 256 films a
wider field of view with the same objects, as a surveillance camera sees them) of a fixed
textured background (a few
low-frequency waves and a fixed per-pixel pattern) seen by a camera that does not move; one
object at a time (a disk, a square or a cross, 5 to 7 pixels across, bright, drawn with
anti-aliased edges) enters at one side, crosses at a constant speed of 0.25 to 0.5 pixels per
frame and leaves, with a few empty frames between objects; the lighting drifts slowly (a global offset
of up to ±0.01 over hundreds of frames) and every frame carries sensor noise (Gaussian, σ = 0.00025,
before quantization to int8 with scale 1/127). The label of a frame is the class of the object
whose centre is in view, 0 ("empty") when there is none: a classification head for every frame.
"""
from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import BitgenError

SIZE = 16  # the default frame size
MAX_SIZE = 256
LABELS = ["empty", "disk", "square", "cross"]
SCALE = 1.0 / 127.0  # int8 = round(raw / SCALE), raw in -1..1
NOISE = 0.00025
DRIFT = 0.01


class StreamError(BitgenError):
    """A stream file that is missing or malformed (one-line message)."""


@dataclass
class Stream:
    x: np.ndarray  # (T, C, H, W), int8 or float
    y: np.ndarray | None  # (T,) class per frame, or None
    labels: list[str] | None
    path: str = ""

    @property
    def frames(self) -> int:
        return int(self.x.shape[0])


def load(path: str | Path) -> Stream:
    """A stream file (see the module docstring)."""
    p = Path(path)
    if not p.is_file():
        raise StreamError(f"{p}: no such stream file")
    from .datasets import DatasetError, npz_arrays

    try:  # each array's declared size checked before it is read
        arrays = npz_arrays(p, ["x", "y", "labels"])
    except DatasetError as e:
        raise StreamError(str(e)) from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        why = (str(e).strip() or type(e).__name__).splitlines()[0][:200]
        raise StreamError(f"{p}: not a readable .npz file ({why})") from None
    if "x" not in arrays:
        raise StreamError(f"{p}: a stream file needs an array 'x' of frames (T, C, H, W)")
    x, y, labels_a = arrays["x"], arrays.get("y"), arrays.get("labels")
    if labels_a is not None and labels_a.ndim != 1:
        raise StreamError(f"{p}: 'labels' must be a list of class names")
    labels = None if labels_a is None else [str(v) for v in labels_a]
    if x.ndim == 3:
        x = x[:, None]  # (T, H, W): one channel
    if x.ndim not in (2, 4) or x.shape[0] < 1:
        raise StreamError(f"{p}: x must hold frames (T, C, H, W) or (T, F), got shape {x.shape}")
    if x.dtype.kind not in "iuf" or (x.dtype.kind == "f" and not np.all(np.isfinite(x))):
        raise StreamError(f"{p}: x must hold finite numbers, got dtype {x.dtype}")
    if y is not None and (y.shape != (x.shape[0],) or y.dtype.kind not in "iu" or (y.size and y.min() < 0)):
        raise StreamError(f"{p}: y must hold one class index per frame ({x.shape[0]},), got {y.shape} {y.dtype}")
    return Stream(x, None if y is None else y.astype(np.int64), labels, str(p))


def _shape(kind: int, size: int) -> np.ndarray:
    """The object's coverage mask on a 4x supersampled grid, centred: (4 * size, 4 * size)."""
    s = 4 * size
    yy, xx = (np.mgrid[0:s, 0:s] + 0.5) / 4 - size / 2
    if kind == 1:  # disk
        return (xx ** 2 + yy ** 2 <= (size / 2) ** 2).astype(np.float32)
    if kind == 2:  # square
        return ((np.abs(xx) <= size * 0.4) & (np.abs(yy) <= size * 0.4)).astype(np.float32)
    arm = size * 0.16  # cross
    return (((np.abs(xx) <= arm) & (np.abs(yy) <= size / 2)) | ((np.abs(yy) <= arm) & (np.abs(xx) <= size / 2))
            ).astype(np.float32)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    bg = np.full((size, size), -0.3, dtype=np.float64)
    for _ in range(4):  # low-frequency texture
        fy, fx, ph = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0), rng.uniform(0, 2 * np.pi)
        bg += rng.uniform(0.05, 0.15) * np.sin(2 * np.pi * (fy * yy + fx * xx) + ph)
    return bg + rng.normal(0.0, 0.03, (size, size))  # fixed pattern: the same every frame


def static_video(frames: int, seed: int = 0, noise: float = NOISE, drift: float = DRIFT,
                 scene: int | None = None, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """One stream: int8 frames (T, 1, size, size) and their labels (T,); see the module
    docstring. `scene` seeds the background (default: `seed`): streams of one scene are what one
    static camera films at different times."""
    if frames < 1:
        raise StreamError(f"a stream needs at least one frame, got {frames}")
    if not 16 <= size <= MAX_SIZE:
        raise StreamError(f"frames of {size}x{size}: the size must be 16 to {MAX_SIZE}")
    bg = _background(np.random.default_rng([seed if scene is None else scene, 1]), size)
    rng = np.random.default_rng(seed)
    raw = np.repeat(bg[None], frames, axis=0)
    y = np.zeros(frames, dtype=np.int64)
    t = int(rng.integers(0, 12))  # a few empty frames before the first object
    while t < frames:
        kind, width = int(rng.integers(1, len(LABELS))), int(rng.integers(5, 8))
        speed = rng.uniform(0.25, 0.5)
        horizontal, forward = bool(rng.integers(0, 2)), bool(rng.integers(0, 2))
        across = rng.uniform(width / 2 + 1, size - width / 2 - 1)  # the other coordinate
        start, stop = -width / 2, size + width / 2
        steps = int(np.ceil((stop - start) / speed))
        mask = _shape(kind, width)
        level = rng.uniform(0.6, 0.9)
        for k in range(steps):
            if t + k >= frames:
                break
            along = start + k * speed if forward else stop - k * speed
            cy, cx = (across, along) if horizontal else (along, across)
            _draw(raw[t + k], mask, cy, cx, level)
            if 0 <= cy < size and 0 <= cx < size:
                y[t + k] = kind
        t += steps + int(rng.integers(3, 15))
    light = drift * np.sin(2 * np.pi * (np.arange(frames) / rng.uniform(300, 600)) + rng.uniform(0, 2 * np.pi))
    raw += light[:, None, None] + rng.normal(0.0, noise, raw.shape)
    x = np.clip(np.floor(raw / SCALE + 0.5), -128, 127).astype(np.int8)
    return x[:, None], y


def _draw(frame: np.ndarray, mask: np.ndarray, cy: float, cx: float, level: float) -> None:
    """Blend the supersampled mask centred at (cy, cx) into the frame (coverage-weighted)."""
    size = frame.shape[0]
    big = np.zeros((4 * size + 2 * mask.shape[0], 4 * size + 2 * mask.shape[0]), dtype=np.float32)
    oy = int(round(4 * cy)) - mask.shape[0] // 2 + mask.shape[0]
    ox = int(round(4 * cx)) - mask.shape[1] // 2 + mask.shape[1]
    if oy < 0 or ox < 0 or oy + mask.shape[0] > big.shape[0] or ox + mask.shape[1] > big.shape[1]:
        return  # entirely out of view
    big[oy:oy + mask.shape[0], ox:ox + mask.shape[1]] = mask
    m0 = mask.shape[0]
    cover = big[m0:m0 + 4 * size, m0:m0 + 4 * size].reshape(size, 4, size, 4).mean(axis=(1, 3))
    frame += cover * (level - frame)


def make_static_video(path: str | Path, frames: int, seed: int = 0, train_streams: int = 16,
                      train_frames: int = 240, size: int = SIZE) -> dict:
    """Write a stream file: the stream (x, y; also x_test, y_test) and training frames from
    `train_streams` other streams of the same generator (x_train, y_train). Returns a summary."""
    x, y = static_video(frames, seed, size=size)
    tx, ty = zip(*(static_video(train_frames, seed=1000 + 1000 * seed + k, scene=seed, size=size)
                   for k in range(train_streams)))
    x_train, y_train = np.concatenate(tx), np.concatenate(ty)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, x=x, y=y, x_test=x, y_test=y, x_train=x_train, y_train=y_train,
                        labels=np.array(LABELS))
    changed = (x[1:] != x[:-1]).any(axis=1).reshape(frames - 1, -1).mean(axis=1) if frames > 1 else np.zeros(0)
    return {"path": str(path), "frames": frames, "shape": list(x.shape[1:]), "train_frames": int(len(y_train)),
            "classes": LABELS, "frames_per_class": np.bincount(y, minlength=len(LABELS)).tolist(),
            "changed_fraction": {"mean": float(changed.mean()) if changed.size else 0.0,
                                 "max": float(changed.max()) if changed.size else 0.0}}
