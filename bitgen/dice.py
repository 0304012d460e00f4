"""The electronic die (issue 13): a synthetic data set of die faces, the decoder's conditioning
inputs and the evaluation classifier ("judge") that scores generated faces.

A face is drawn at 128x128 with Pillow (black background, a white rounded square, black round
pips in the usual layouts), rotated by ``angle`` degrees about the centre and scaled so that the
rotated square always fits with a margin, then reduced to 32x32 by area averaging (Pillow's
BOX filter) for anti-aliasing. Values are -1 (black) .. 1 (white). A square looks the same
after a quarter turn, so angles are drawn from [0, 90) degrees; the image is a function of the
pip count and the angle alone, which is what a decoder conditioned on both can learn.

The decoder's input is 7 values: the one-hot pip count (6) and the angle latent
``angle / 45 - 1`` in [-1, 1), quantized like any input of scale 1/127 (one-hot 127). Its
output, and the judge's input, are int8 pixels 0 (black) .. 127 (white) (:func:`pixels`):
black is the value a ReLU network gives for nothing, so the background costs the decoder
nothing (a -1..1 target left a 32x32 QAT decoder stuck at twice the error).
"""
from __future__ import annotations

import math

import numpy as np

SIZE = 32  # the face, SIZE x SIZE
RENDER = 128  # drawn at this size, then reduced
PIPS = 6
LABELS = [str(i) for i in range(1, PIPS + 1)]  # class k holds k + 1 pips
ANGLE_RANGE = 90.0  # degrees: a square repeats after a quarter turn
MARGIN = 4 / RENDER  # of the frame, each side: the rotated square never touches the border
CORNER = 0.2  # corner radius, as a fraction of the half side
PIP_RADIUS = 0.18  # of the half side
SPLIT_SIZES = {"train": 6000, "test": 1200}
SPLIT_SEEDS = {"train": 0, "test": 1}  # different seeds: the test faces are not the training faces
INPUT_SCALE = 1.0 / 127.0

# pip centres in units of the half side, for 1..6 pips
LAYOUTS = {
    1: [(0, 0)],
    2: [(-0.5, -0.5), (0.5, 0.5)],
    3: [(-0.5, -0.5), (0, 0), (0.5, 0.5)],
    4: [(-0.5, -0.5), (0.5, -0.5), (-0.5, 0.5), (0.5, 0.5)],
    5: [(-0.5, -0.5), (0.5, -0.5), (0, 0), (-0.5, 0.5), (0.5, 0.5)],
    6: [(-0.5, -0.5), (-0.5, 0), (-0.5, 0.5), (0.5, -0.5), (0.5, 0), (0.5, 0.5)],
}


def half_side(angle: float) -> float:
    """Half the square's side (pixels at RENDER size) that fills the frame at ``angle``: the
    rotated rounded square's half extent is ``(h - r)(|cos| + |sin|) + r`` with ``r = CORNER h``."""
    a = math.radians(angle)
    room = RENDER * (0.5 - MARGIN)
    return room / ((1 - CORNER) * (abs(math.cos(a)) + abs(math.sin(a))) + CORNER)


def render(pips: int, angle: float) -> np.ndarray:
    """One face, float32 (SIZE, SIZE) in -1..1: ``pips`` (1..6) rotated by ``angle`` degrees."""
    from PIL import Image, ImageDraw

    if pips not in LAYOUTS:
        raise ValueError(f"a die face has 1 to 6 pips, not {pips}")
    h = half_side(angle)
    r = CORNER * h
    a = math.radians(angle)
    c, s = math.cos(a), math.sin(a)
    mid = RENDER / 2

    def place(x: float, y: float) -> tuple[float, float]:
        return (mid + c * x - s * y, mid + s * x + c * y)

    outline = []  # the rounded square, corner arcs sampled every 10 degrees
    for cx, cy, start in ((h - r, h - r, 0), (-(h - r), h - r, 90), (-(h - r), -(h - r), 180), (h - r, -(h - r), 270)):
        for k in range(10):
            t = math.radians(start + 10 * k)
            outline.append(place(cx + r * math.cos(t), cy + r * math.sin(t)))
    img = Image.new("L", (RENDER, RENDER), 0)
    draw = ImageDraw.Draw(img)
    draw.polygon(outline, fill=255)
    pr = PIP_RADIUS * h
    for px, py in LAYOUTS[pips]:
        x, y = place(px * h, py * h)
        draw.ellipse((x - pr, y - pr, x + pr, y + pr), fill=0)
    small = img.resize((SIZE, SIZE), Image.Resampling.BOX)
    return (np.asarray(small, dtype=np.float32) / 127.5 - 1.0).astype(np.float32)


def make(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` faces from generator ``seed``: images (n, 1, SIZE, SIZE) in -1..1, classes (n,)
    (pips - 1, balanced and shuffled) and angles (n,) in degrees, [0, 90)."""
    rng = np.random.default_rng(seed)
    classes = rng.permutation(np.arange(n) % PIPS).astype(np.int64)
    angles = rng.uniform(0.0, ANGLE_RANGE, n)
    x = np.stack([render(int(k) + 1, float(a)) for k, a in zip(classes, angles)]) if n else np.zeros((0, SIZE, SIZE))
    return x.reshape(n, 1, SIZE, SIZE).astype(np.float32), classes, angles


# ------------------------------------------------------------------------------ the decoder
def latent_of(angle: np.ndarray | float) -> np.ndarray:
    """The angle latent in [-1, 1) of angles in degrees [0, 90)."""
    return np.asarray(angle, dtype=np.float64) / (ANGLE_RANGE / 2) - 1.0


def angle_of(latent: np.ndarray | float) -> np.ndarray:
    return (np.asarray(latent, dtype=np.float64) + 1.0) * (ANGLE_RANGE / 2)


def decoder_inputs(classes: np.ndarray, latents: np.ndarray) -> np.ndarray:
    """int8 decoder inputs (N, 7): one-hot classes (127) and the quantized latent."""
    classes = np.asarray(classes, dtype=np.int64)
    x = np.zeros((len(classes), PIPS + 1), dtype=np.int8)
    x[np.arange(len(classes)), classes] = 127
    x[:, PIPS] = np.clip(np.round(np.asarray(latents, dtype=np.float64) * 127), -128, 127).astype(np.int8)
    return x


def pixels(images: np.ndarray) -> np.ndarray:
    """The int8 pixels 0 (black) .. 127 (white) of images in -1..1: what a decoder draws."""
    return np.clip(np.round((np.asarray(images, dtype=np.float64) + 1.0) * 63.5), 0, 127).astype(np.int8)


def to_grey(values: np.ndarray) -> np.ndarray:
    """int8 pixels (0 black .. 127 white; below 0 is black) -> uint8 grey (0..254) for a PNG."""
    return (np.asarray(values, dtype=np.int16).clip(0, 127) * 2).astype(np.uint8)


# ------------------------------------------------------------------------------ the judge
JUDGE_ARCH = "cnn:c8,p2,c16,p2,c16,p2,fc32"
JUDGE_EPOCHS = 12
JUDGE_COPIES = 2  # augmented copies of each training face


def augment(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Faces (N, 1, H, W) in -1..1, each shifted by up to 2 pixels on each axis (black fills in),
    blurred (Gaussian, sigma 0..1 pixel), dimmed (contrast 0.6..1) and noisy (sigma 0.1)."""
    from scipy.ndimage import gaussian_filter

    n, _, h, w = images.shape
    out = np.empty_like(images)
    for i in range(n):
        dy, dx = rng.integers(-2, 3, 2)
        pad = np.pad(images[i, 0], 2, constant_values=-1.0)
        img = pad[2 - dy:2 - dy + h, 2 - dx:2 - dx + w]
        sigma = rng.uniform(0.0, 1.0)
        if sigma > 0.1:
            img = gaussian_filter(img, sigma, mode="constant", cval=-1.0)
        img = img * rng.uniform(0.6, 1.0) + rng.normal(0.0, 0.1, img.shape)
        out[i, 0] = np.clip(img, -1.0, 1.0)
    return out


def train_judge(seed: int = 0, n: int | None = None, epochs: int = JUDGE_EPOCHS, progress: bool = True):
    """The evaluation classifier: bitgen's QAT CNN trained on augmented dice (the training
    split's faces, JUDGE_COPIES augmented copies each). Returns the trained module, with
    ``input_spec`` and ``labels`` set, ready for :func:`bitgen.save`."""
    import torch

    from . import ir
    from . import train as tr
    from .datasets import load

    ds = load("dice", split="train")
    x, y = ds.x, ds.y
    if n is not None:
        x, y = x[:n], y[:n]
    rng = np.random.default_rng(seed)
    xa = np.concatenate([augment(x, rng) for _ in range(JUDGE_COPIES)])
    ya = np.concatenate([y] * JUDGE_COPIES)
    spec = ir.InputSpec((1, SIZE, SIZE), scale=INPUT_SCALE)  # pixels 0..127 stand for 0..1
    torch.manual_seed(seed)
    model = tr.model_from_arch(JUDGE_ARCH, spec.shape, PIPS)
    model.input_spec = spec
    model.labels = list(LABELS)
    tr.fit(model, pixels(xa), ya, tr.Recipe(epochs=epochs, augment="none"), seed=seed, progress=progress)
    return model
